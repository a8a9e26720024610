//! Addresses and names as the file writes them: listener binds, server
//! addresses, route hosts, DNS names and CIDR blocks. Shape only: nothing
//! here resolves a name or opens a socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;

use super::{HostMatch, ServerAddr};

/// A listening address: `ip:port` (`[v6]:port`); port 0 picks a free one.
pub(super) fn bind(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(r#"expected "ip:port" such as "0.0.0.0:443" or "[::]:443", got {text:?}"#)
    })
}

/// A server address: `ip:port`, `[v6]:port` or `hostname:port`.
pub(super) fn server(text: &str) -> Result<ServerAddr, String> {
    let expected = || format!(r#"expected "host:port" or "ip:port", got {text:?}"#);
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("port must be 1..=65535, got {text:?}"));
        }
        return Ok(ServerAddr::Ip(addr));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    if host.contains(':') || host.starts_with('[') {
        return Err(format!(
            r#"expected "[ipv6]:port" (with brackets) such as "[::1]:8080", got {text:?}"#
        ));
    }
    if !is_digits(port) {
        return Err(expected());
    }
    let port = match port.parse::<u16>() {
        Ok(port) if port != 0 => port,
        _ => return Err(format!("port must be 1..=65535, got {text:?}")),
    };
    if !is_dns_name(host) {
        return Err(format!(
            "{host:?} is neither an IP address nor a valid host name, in {text:?}"
        ));
    }
    Ok(ServerAddr::Host {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// A route's host: `name`, `*.name` or an IPv4 address; a port is ignored.
pub(super) fn host_match(text: &str) -> Result<HostMatch, String> {
    let lower = text.to_ascii_lowercase();
    let host = match lower.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            if !is_digits(port) || port.parse::<u16>().is_err() {
                return Err(format!("bad port in {text:?}"));
            }
            host
        }
        Some(_) => {
            return Err(format!(
                "expected a host name such as \"example.com\" or \"*.example.com\", got {text:?}"
            ));
        }
        None => lower.as_str(),
    };
    if let Some(parent) = host.strip_prefix("*.") {
        if is_dns_name(parent) {
            return Ok(HostMatch::Wildcard(parent.to_owned()));
        }
    } else if host.contains('*') {
        return Err(format!(
            "a wildcard must be the whole first label, as in \"*.example.com\"; got {text:?}"
        ));
    } else if is_dns_name(host) || host.parse::<Ipv4Addr>().is_ok() {
        return Ok(HostMatch::Exact(host.to_owned()));
    }
    Err(format!(
        "expected a host name such as \"example.com\" or \"*.example.com\", got {text:?}"
    ))
}

/// A peer allowed to send PROXY headers: a CIDR block or one address.
pub(super) fn net(text: &str) -> Result<IpNet, String> {
    let net = if text.contains('/') {
        text.parse::<IpNet>().ok().map(|net| net.trunc())
    } else {
        text.parse::<IpAddr>().ok().map(IpNet::from)
    };
    net.ok_or_else(|| {
        format!(r#"expected a CIDR block such as "10.0.0.0/8" or an IP address, got {text:?}"#)
    })
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A DNS host name (letters, digits, `-` and `_` in labels of 1 to 63
/// characters, 253 at most), not one that looks like a mistyped IPv4
/// address (an all-digit last label).
pub(super) fn is_dns_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last_is_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    name.len() <= 253 && name.split('.').all(label_ok) && !last_is_numeric
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            server("10.0.1.10:8080"),
            Ok(ServerAddr::Ip("10.0.1.10:8080".parse().unwrap()))
        );
        assert_eq!(
            server("[::1]:8080"),
            Ok(ServerAddr::Ip("[::1]:8080".parse().unwrap()))
        );
        assert_eq!(
            server("App01.Internal:80"),
            Ok(ServerAddr::Host {
                host: "app01.internal".into(),
                port: 80
            })
        );
        assert_eq!(
            server("localhost:65535"),
            Ok(ServerAddr::Host {
                host: "localhost".into(),
                port: 65535
            })
        );
        let err = server("10.0.1.10").unwrap_err();
        assert_eq!(err, r#"expected "host:port" or "ip:port", got "10.0.1.10""#);
        for bad in [
            "",
            ":80",
            "app01:",
            "app01:http",
            "app 01:80",
            "-app:80",
            "a..b:80",
            "999.1.1.1:80",
            "app01:80:80",
            "[::1]",
            "*.example.com:80",
        ] {
            assert!(server(bad).is_err(), "{bad:?}");
        }
        assert!(server("::1:8080").unwrap_err().contains("brackets"));
        assert!(server("app01:0").unwrap_err().contains("1..=65535"));
        assert!(server("app01:65536").unwrap_err().contains("1..=65535"));
        assert!(server("10.0.0.1:0").unwrap_err().contains("1..=65535"));
        assert!(server(&format!("{}:80", "a".repeat(64))).is_err());
    }

    #[test]
    fn route_hosts() {
        let exact = |s: &str| Ok(HostMatch::Exact(s.into()));
        assert_eq!(host_match("api.example.com"), exact("api.example.com"));
        assert_eq!(host_match("API.Example.COM:8443"), exact("api.example.com"));
        assert_eq!(host_match("localhost"), exact("localhost"));
        assert_eq!(host_match("10.0.0.1"), exact("10.0.0.1"));
        assert_eq!(
            host_match("*.Example.com"),
            Ok(HostMatch::Wildcard("example.com".into()))
        );
        for bad in [
            "",
            "*",
            "*.",
            "*example.com",
            "a.*.example.com",
            "**.example.com",
            "*.*.example.com",
            "api.example.com:x",
            "api.example.com:99999",
            "[::1]",
            "::1",
            "a b",
            "example.com/",
        ] {
            assert!(host_match(bad).is_err(), "{bad:?}");
        }
        assert!(host_match("a.*.com").unwrap_err().contains("first label"));
    }

    #[test]
    fn nets() {
        assert_eq!(net("10.0.0.0/8"), Ok("10.0.0.0/8".parse().unwrap()));
        assert_eq!(net("10.1.2.3/8"), Ok("10.0.0.0/8".parse().unwrap()));
        assert_eq!(net("10.1.2.3"), Ok("10.1.2.3/32".parse().unwrap()));
        assert_eq!(net("fd00::1"), Ok("fd00::1/128".parse().unwrap()));
        assert_eq!(net("fd00::/8"), Ok("fd00::/8".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "10.0.0", "any", "10.0.0.0/"] {
            assert!(net(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn binds() {
        assert_eq!(bind("0.0.0.0:443"), Ok("0.0.0.0:443".parse().unwrap()));
        assert_eq!(bind("[::]:443"), Ok("[::]:443".parse().unwrap()));
        assert_eq!(bind("127.0.0.1:0"), Ok("127.0.0.1:0".parse().unwrap()));
        assert!(bind("localhost:443").unwrap_err().contains("0.0.0.0:443"));
        assert!(bind("443").is_err());
        assert!(bind(":443").is_err());
    }
}
