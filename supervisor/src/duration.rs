//! Durations on the command line: `500ms`, `30s`, `2m`, `1h`, or a bare
//! number of seconds.

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration: give e.g. 500ms, 30s, 2m or 1h")]
    Empty,
    /// The number part is not a whole number.
    #[error("'{0}' is not a duration: give a whole number with ms, s, m or h, e.g. 30s")]
    Malformed(String),
    /// The unit is not one of ms, s, m, h.
    #[error("'{0}' has an unknown unit: use ms, s, m or h")]
    Unit(String),
    /// The value does not fit.
    #[error("'{0}' is too long")]
    TooLong(String),
}

/// The longest duration accepted: a week (waits longer than this are
/// certainly a mistake, and they keep every loop bounded).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(DurationError::Malformed(text.to_owned()));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| DurationError::TooLong(text.to_owned()))?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError::Unit(text.to_owned())),
    };
    let millis = value
        .checked_mul(millis_per_unit)
        .ok_or_else(|| DurationError::TooLong(text.to_owned()))?;
    let duration = Duration::from_millis(millis);
    if duration > MAX_DURATION {
        return Err(DurationError::TooLong(text.to_owned()));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("10d").is_err());
        assert!(parse_duration("99999999999999999999999s").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
        assert!(parse_duration("8d").is_err());
        assert!(parse_duration("200h").is_err());
    }
}
