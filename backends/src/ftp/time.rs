//! Calendar arithmetic for FTP timestamps (MDTM/MFMT/MLSD `YYYYMMDDHHMMSS`,
//! and the dates of `LIST` lines), all in UTC, without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A UTC date and time as a `SystemTime`, or `None` if a field is out of range.
pub fn utc(year: i64, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Option<SystemTime> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(min) * 60
        + i64::from(sec);
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// Seconds since the epoch (negative before 1970).
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The UTC year of `t`.
pub fn year_of(t: SystemTime) -> i64 {
    civil_from_days(unix_secs(t).div_euclid(86_400)).0
}

/// Parses an RFC 3659 time value, `YYYYMMDDHHMMSS` with optional
/// fractional seconds (which are dropped).
pub fn parse_time_val(value: &str) -> Option<SystemTime> {
    let digits = value.split('.').next()?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().ok();
    utc(
        i64::from(n(0..4)?),
        n(4..6)?,
        n(6..8)?,
        n(8..10)?,
        n(10..12)?,
        n(12..14)?,
    )
}

/// 0000-01-01 00:00:00 UTC, the earliest time a time value can hold.
const MIN_TIME_VAL_SECS: i64 = -62_167_219_200;
/// 9999-12-31 23:59:59 UTC, the latest time a time value can hold.
const MAX_TIME_VAL_SECS: i64 = 253_402_300_799;

/// Formats `t` as an RFC 3659 time value (`YYYYMMDDHHMMSS`, UTC). A time
/// value has four digits of year: earlier or later times give the first
/// or last time it can hold.
pub fn format_time_val(t: SystemTime) -> String {
    let secs = unix_secs(t).clamp(MIN_TIME_VAL_SECS, MAX_TIME_VAL_SECS);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dates() {
        for days in [-800_000, -1, 0, 1, 11_016, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn parses_and_formats_time_values() {
        let t = parse_time_val("20170714024000").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_500_000_000));
        assert_eq!(format_time_val(t), "20170714024000");
        assert_eq!(parse_time_val("20170714024000.123"), Some(t));
        assert_eq!(parse_time_val("2017071402264"), None);
        assert_eq!(parse_time_val("20171314022640"), None);
        assert_eq!(format_time_val(UNIX_EPOCH), "19700101000000");
        let before = parse_time_val("19691231235959").unwrap();
        assert_eq!(format_time_val(before), "19691231235959");
        assert_eq!(year_of(t), 2017);
    }

    #[test]
    fn formats_only_four_digit_years() {
        assert_eq!(days_from_civil(0, 1, 1) * 86_400, MIN_TIME_VAL_SECS);
        assert_eq!(
            days_from_civil(10_000, 1, 1) * 86_400 - 1,
            MAX_TIME_VAL_SECS
        );
        // Found by fuzz/fuzz_targets/ftp_listing.rs: the leap second at the
        // very end of year 9999 was formatted as "100000101000000".
        let leap = parse_time_val("99991231235960").unwrap();
        assert_eq!(format_time_val(leap), "99991231235959");
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(format_time_val(far), "99991231235959");
        let early = UNIX_EPOCH - Duration::from_secs(100_000_000_000);
        assert_eq!(format_time_val(early), "00000101000000");
        let first = parse_time_val("00000101000000").unwrap();
        assert_eq!(format_time_val(first), "00000101000000");
    }
}
