//! Durations in the configuration file: `"500ms"`, `"10s"`, `"30m"`, `"2h"`.
//!
//! One whole number and one unit, nothing else: no fractions, no spaces, no
//! compound forms like `"1m30s"`, so every value reads one way only.

use std::time::Duration;

/// What a duration looks like, for error messages.
pub(super) const EXAMPLE: &str = r#"a duration such as "500ms", "10s", "30m" or "2h""#;

/// Parses `"<digits><unit>"` with unit `ms`, `s`, `m` or `h`.
pub(super) fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("expected {EXAMPLE}, got {text:?}");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(invalid()),
    };
    let too_large = || format!("{text:?} is too large");
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    let millis = number.checked_mul(millis_per_unit).ok_or_else(too_large)?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(30 * 60)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(2 * 3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "", "10", "s", "ms", "-1s", "+1s", "1.5s", "10 s", " 10s", "10s ", "10S", "10sec",
            "1m30s", "1d", "10µs", "１s",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(r#""500ms""#), "{bad:?}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert!(
            parse("99999999999999999999s")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse("18446744073709551615h")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(
            parse("18446744073709551615ms"),
            Ok(Duration::from_millis(u64::MAX))
        );
    }
}
