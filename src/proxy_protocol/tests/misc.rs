//! Who may send a header, and what is counted and logged when one is refused.

use std::time::{Duration, Instant};

use super::*;

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|net| net.parse().unwrap()).collect()
}

#[test]
fn trusted_peers() {
    let proxy_from = nets(&["10.0.0.0/8", "192.0.2.10/32", "2001:db8::/32"]);
    let yes = [
        "10.1.2.3",
        "192.0.2.10",
        "2001:db8::5",
        "::ffff:10.9.9.9",
        "::ffff:192.0.2.10",
    ];
    for peer in yes {
        assert!(trusted(peer.parse().unwrap(), &proxy_from), "{peer}");
    }
    let no = [
        "11.0.0.1",
        "192.0.2.11",
        "2001:db9::1",
        "::ffff:11.0.0.1",
        "::1",
        "127.0.0.1",
    ];
    for peer in no {
        assert!(!trusted(peer.parse().unwrap(), &proxy_from), "{peer}");
    }
    assert!(!trusted("10.0.0.1".parse().unwrap(), &[]));
    // A network written IPv4-mapped still matches the mapped peer.
    let mapped = nets(&["::ffff:10.0.0.0/104"]);
    assert!(trusted("::ffff:10.0.0.1".parse().unwrap(), &mapped));
}

#[test]
fn every_rejection_has_its_spec_label() {
    let cases = [
        (
            Rejection::UntrustedPeer("11.0.0.1".parse().unwrap()),
            "untrusted_peer",
        ),
        (
            Rejection::Timeout {
                timeout: Duration::from_secs(5),
                received: 3,
            },
            "timeout",
        ),
        (Rejection::Silent(Duration::from_secs(5)), "timeout"),
        (
            Rejection::Malformed(ParseError::Malformed("x")),
            "malformed",
        ),
        (
            Rejection::from(ParseError::NotAllowed(Version::V1)),
            "malformed",
        ),
        (
            Rejection::Truncated {
                received: 0,
                source: None,
            },
            "malformed",
        ),
        (Rejection::Stacked, "stacked"),
        (
            Rejection::from(ParseError::Crc {
                expected: 1,
                actual: 2,
            }),
            "crc",
        ),
    ];
    for (rejection, label) in cases {
        assert_eq!(rejection.reason(), label, "{rejection}");
        assert_eq!(rejection.kind().as_str(), label);
    }
    let labels: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        ["untrusted_peer", "timeout", "malformed", "stacked", "crc"]
    );
}

#[test]
fn rejections_are_counted_by_reason() {
    let rejections = Rejections::new(addr("0.0.0.0:443"));
    assert_eq!(rejections.listener(), addr("0.0.0.0:443"));
    let peer = addr("10.0.0.1:1234");
    rejections.record(peer, &Rejection::Stacked);
    rejections.record(peer, &Rejection::Stacked);
    rejections.record(peer, &Rejection::Silent(Duration::from_secs(5)));
    rejections.count(Reason::Crc);
    assert_eq!(rejections.get(Reason::Stacked), 2);
    assert_eq!(rejections.get(Reason::Timeout), 1);
    assert_eq!(rejections.get(Reason::Malformed), 0);
    assert_eq!(
        rejections.counts(),
        [
            (Reason::UntrustedPeer, 0),
            (Reason::Timeout, 1),
            (Reason::Malformed, 0),
            (Reason::Stacked, 2),
            (Reason::Crc, 1),
        ]
    );
}

#[test]
fn at_most_one_log_line_per_10_seconds() {
    let rejections = Rejections::new(addr("[::]:443"));
    let start = Instant::now();
    let at = |secs: u64| start + Duration::from_secs(secs);
    assert_eq!(rejections.may_log(at(0)), Some(0));
    assert_eq!(rejections.may_log(at(1)), None);
    assert_eq!(rejections.may_log(at(5)), None);
    assert_eq!(rejections.may_log(at(9)), None);
    assert_eq!(rejections.may_log(at(10)), Some(3));
    assert_eq!(rejections.may_log(at(19)), None);
    assert_eq!(rejections.may_log(at(40)), Some(1));
    assert_eq!(rejections.may_log(at(50)), Some(0));
}
