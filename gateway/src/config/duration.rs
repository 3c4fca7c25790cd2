//! Durations in the config file (`"30s"`, `"2m"`, `"1h 30m"`, as humantime
//! reads them), refused above a year: no setting of the gateway means
//! anything beyond that, and a value like `"99999999999999h"` would
//! overflow the clock arithmetic of timeouts and schedules.

use std::time::Duration;

use serde::{de::Error as _, Deserializer};

/// The longest duration any setting takes: 365 days.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

fn check(d: Duration) -> Result<Duration, String> {
    if d > MAX {
        Err("too long: at most 365 days".to_string())
    } else {
        Ok(d)
    }
}

/// For `#[serde(with = "duration")]` on a `Duration`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value: Duration = humantime_serde::deserialize(d)?;
    check(value).map_err(D::Error::custom)
}

/// For `#[serde(with = "duration::option")]` on an `Option<Duration>`.
pub mod option {
    use super::*;

    /// Deserializes an optional duration, bounded like [`super::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let value: Option<Duration> = humantime_serde::deserialize(d)?;
        value.map(check).transpose().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_year_passes_and_more_is_refused() {
        assert_eq!(check(MAX), Ok(MAX));
        let err = check(Duration::from_secs(99_999_999_999_999 * 3600)).unwrap_err();
        assert!(err.contains("too long: at most 365 days"), "{err}");
    }
}
