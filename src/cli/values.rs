//! Parsers for option values that clap cannot check by type alone: durations, with a message
//! a person can act on, and those that must be more than zero.

use std::time::Duration;

/// A duration such as `30s`, `5m`, `24h` or `7d`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|_| {
        format!("{s:?} is not a duration: give a number and a unit, such as 30s, 5m, 24h or 7d")
    })
}

/// As [`duration`], more than zero (a zero timeout or retention would refuse or forget
/// everything at once).
pub fn positive(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err("must be more than zero, such as 30s or 5m".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_explained_and_zero_refused_where_it_breaks_things() {
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        let e = duration("banana").unwrap_err();
        assert!(e.contains("such as 30s") && !e.contains("at 0"), "{e}");
        assert!(positive("0s").unwrap_err().contains("more than zero"));
        assert_eq!(positive("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }
}
