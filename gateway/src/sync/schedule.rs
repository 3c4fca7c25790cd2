//! When a sync runs by itself: never (on demand only), at a fixed interval,
//! or at the minutes a cron expression names on the wall clock of a time
//! zone.
//!
//! Cron expressions are standard five-field (Vixie) cron: `minute hour
//! day-of-month month day-of-week`, each `*`, a number, a range `a-b`, a
//! step `*/n`, `a/n` or `a-b/n`, or a comma list of those; month names
//! `JAN`-`DEC` and weekday names `SUN`-`SAT` in any case; weekday `0` and
//! `7` are both Sunday. When both day fields are restricted (neither starts
//! with `*`), a day matching either fires, as crontab(5) says. The
//! shorthands `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`,
//! `@yearly` and `@annually` are accepted.
//!
//! Daylight saving time: a wall-clock minute skipped by a spring-forward
//! jump fires at the shifted instant (02:30 becomes 03:30 when 02:00 jumps
//! to 03:00), and a minute repeated by a fall-back fires once, at its first
//! occurrence (jiff's "compatible" disambiguation, the one RFC 5545 and
//! Temporal use).

use std::fmt;
use std::time::{Duration, SystemTime};

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How many years ahead a cron schedule looks for a matching minute before
/// concluding it never fires (`0 0 30 2 *`). Eight years cover every leap
/// day, even across a century that skips one (2096 to 2104).
const SEARCH_YEARS: i16 = 8;

/// When a sync runs by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Never: only when started by hand (`gateway sync run`).
    Manual,
    /// At a fixed interval after the previous run.
    Every(Duration),
    /// At the minutes a cron expression names.
    Cron(CronSchedule),
}

impl Schedule {
    /// The next time the sync is due after `t`: `None` for a manual
    /// schedule (and for a cron expression that never fires), `t + d` for
    /// an interval, the first matching minute strictly after `t` for cron.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::Manual => None,
            Schedule::Every(d) => t.checked_add(*d),
            Schedule::Cron(c) => c.next_after(t),
        }
    }

    /// A short description for listings and logs: `manual`, `every 15m`,
    /// ``cron `0 2 * * *` Europe/Berlin``.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Manual => "manual".to_string(),
            Schedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => c.to_string(),
        }
    }
}

/// A parsed cron expression with the time zone whose wall clock it reads.
///
/// Each field is kept as a bit set of the values it allows, so finding the
/// next matching minute skips whole months, days and hours at a time.
#[derive(Clone, PartialEq, Eq)]
pub struct CronSchedule {
    /// The expression as written (trimmed), for [`Schedule::describe`].
    expression: String,
    /// The zone's name, for [`Schedule::describe`].
    zone_name: String,
    zone: TimeZone,
    /// Bits 0-59.
    minutes: u64,
    /// Bits 0-23.
    hours: u64,
    /// Bits 1-31.
    days: u64,
    /// Bits 1-12.
    months: u64,
    /// Bits 0-6, Sunday = 0.
    weekdays: u64,
    /// Day-of-month was written starting with `*` (Vixie's "unrestricted").
    days_star: bool,
    /// Day-of-week was written starting with `*`.
    weekdays_star: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("expression", &self.expression)
            .field("time_zone", &self.zone_name)
            .finish()
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron `{}` {}", self.expression, self.zone_name)
    }
}

/// Looks up a time zone by its IANA name (`Europe/Berlin`, `UTC`), in the
/// system's zoneinfo when there is one and otherwise in the copy built into
/// the binary. Separate from [`CronSchedule::parse`] so the config can name
/// the `time_zone` key rather than the `cron` key for an unknown zone.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    let unknown = || {
        format!("unknown time zone `{name}` (use an IANA name such as `Europe/Berlin` or `UTC`)")
    };
    if name.trim().is_empty() || name.eq_ignore_ascii_case("Etc/Unknown") {
        return Err(unknown());
    }
    TimeZone::get(name).map_err(|_| unknown())
}

impl CronSchedule {
    /// Parses a five-field cron expression (or a shorthand such as
    /// `@daily`) read on the wall clock of `time_zone` (an IANA name).
    /// The error says which field is wrong and why, or that the zone is
    /// unknown.
    pub fn parse(expr: &str, time_zone: &str) -> Result<CronSchedule, String> {
        let expression = expr.trim();
        let fields = expand_shorthand(expression)?;
        let parts: Vec<&str> = fields.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week); `{expression}` has {}",
                parts.len()
            ));
        }
        let mut bits = [0u64; 5];
        for (i, (part, spec)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            bits[i] = parse_field(i + 1, spec, part)?;
        }
        // Weekday 7 is Sunday too.
        let weekdays = (bits[4] & 0x7f) | u64::from(bits[4] & (1 << 7) != 0);
        let zone = parse_time_zone(time_zone)?;
        Ok(CronSchedule {
            expression: expression.to_string(),
            zone_name: zone.iana_name().unwrap_or(time_zone).to_string(),
            zone,
            minutes: bits[0],
            hours: bits[1],
            days: bits[2],
            months: bits[3],
            weekdays,
            days_star: parts[2].starts_with('*'),
            weekdays_star: parts[4].starts_with('*'),
        })
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The name of the time zone whose wall clock the expression reads.
    pub fn time_zone(&self) -> &str {
        &self.zone_name
    }

    /// The first matching minute strictly after `t`, or `None` when none
    /// comes within `SEARCH_YEARS` years (or `t` is outside the range
    /// the calendar handles, years -9999 to 9999).
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let now = Timestamp::try_from(t).ok()?;
        let wall = self.zone.to_datetime(now);
        let last_year = wall.year().saturating_add(SEARCH_YEARS);
        let one_minute = SignedDuration::from_mins(1);
        // The first whole wall-clock minute after `t`.
        let mut from = DateTime::new(
            wall.year(),
            wall.month(),
            wall.day(),
            wall.hour(),
            wall.minute(),
            0,
            0,
        )
        .ok()?
        .checked_add(one_minute)
        .ok()?;
        loop {
            let candidate = self.next_matching(from, last_year)?;
            // Skipped times move forward past the gap; repeated times
            // resolve to their first occurrence.
            let at = self
                .zone
                .to_ambiguous_timestamp(candidate)
                .compatible()
                .ok()?;
            // A candidate can resolve to `t` or earlier only when `t` is in
            // the second pass of a repeated hour: that minute has fired.
            if at > now {
                return SystemTime::try_from(at).ok();
            }
            from = candidate.checked_add(one_minute).ok()?;
        }
    }

    /// Whether the day-of-month and day-of-week fields allow `date`: both
    /// when either is unrestricted, either when both are restricted.
    fn day_matches(&self, date: Date) -> bool {
        let dom = has(self.days, date.day());
        let dow = has(self.weekdays, date.weekday().to_sunday_zero_offset());
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first wall-clock minute at or after `from` that the fields
    /// allow, whether or not it exists in the zone, searching up to the end
    /// of `last_year`.
    fn next_matching(&self, from: DateTime, last_year: i16) -> Option<DateTime> {
        let (mut year, mut month, mut day, mut hour, mut minute) = (
            from.year(),
            from.month(),
            from.day(),
            from.hour(),
            from.minute(),
        );
        loop {
            if year > last_year {
                return None;
            }
            if !has(self.months, month) || day > Date::new(year, month, 1).ok()?.days_in_month() {
                // Next month.
                (day, hour, minute) = (1, 0, 0);
                if month == 12 {
                    (year, month) = (year.checked_add(1)?, 1);
                } else {
                    month += 1;
                }
                continue;
            }
            if !self.day_matches(Date::new(year, month, day).ok()?) {
                (day, hour, minute) = (day + 1, 0, 0);
                continue;
            }
            match next_bit(self.hours, hour) {
                None => {
                    (day, hour, minute) = (day + 1, 0, 0);
                    continue;
                }
                Some(h) if h != hour => (hour, minute) = (h, 0),
                Some(_) => {}
            }
            match next_bit(self.minutes, minute) {
                Some(m) => return DateTime::new(year, month, day, hour, m, 0, 0).ok(),
                // Past this hour's last minute: try the next hour.
                None if hour < 23 => (hour, minute) = (hour + 1, 0),
                None => (day, hour, minute) = (day + 1, 0, 0),
            }
        }
    }
}

/// Whether bit `n` is set.
fn has(bits: u64, n: i8) -> bool {
    (0..64).contains(&n) && bits & (1 << n) != 0
}

/// The lowest set bit at or above `from`.
fn next_bit(bits: u64, from: i8) -> Option<i8> {
    if !(0..64).contains(&from) {
        return None;
    }
    let rest = bits & (u64::MAX << from);
    // trailing_zeros of a non-zero u64 is below 64.
    (rest != 0).then(|| rest.trailing_zeros() as i8)
}

/// The five fields for a shorthand (`@daily`), or `expr` itself.
fn expand_shorthand(expr: &str) -> Result<&str, String> {
    if expr.is_empty() {
        return Err("the cron expression is empty".to_string());
    }
    if !expr.starts_with('@') {
        return Ok(expr);
    }
    Ok(match expr.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@reboot" => return Err("`@reboot` is not supported: a sync runs on a schedule, not at start-up".to_string()),
        _ => {
            return Err(format!(
                "unknown shorthand `{expr}` (known: @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually)"
            ))
        }
    })
}

/// What one of the five fields allows.
struct FieldSpec {
    name: &'static str,
    min: u8,
    max: u8,
    /// Names for `min`, `min + 1`, ... (months and weekdays).
    names: &'static [&'static str],
    /// How the names are described in errors.
    names_hint: &'static str,
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_hint: "",
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_hint: "",
    },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        names_hint: "",
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
        names_hint: " or a month name (JAN-DEC)",
    },
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        names_hint: " or a weekday name (SUN-SAT)",
    },
];

/// Parses field number `index` (1-based, for errors) into a bit set.
fn parse_field(index: usize, spec: &FieldSpec, text: &str) -> Result<u64, String> {
    let what = format!("field {index} ({})", spec.name);
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("{what} `{text}` has an empty list item"));
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => {
                let n: u8 = step
                    .parse()
                    .map_err(|_| format!("{what} step `{step}` is not a number"))?;
                if n == 0 {
                    return Err(format!("{what} step `{item}` must be at least 1"));
                }
                (base, Some(n))
            }
            None => (item, None),
        };
        let (low, high) = if base == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (value(&what, spec, a)?, value(&what, spec, b)?);
            if a > b {
                return Err(format!("{what} range `{base}` runs backwards"));
            }
            (a, b)
        } else {
            let a = value(&what, spec, base)?;
            // `a/n` is `a` to the end of the field in steps of n.
            (a, if step.is_some() { spec.max } else { a })
        };
        let step = usize::from(step.unwrap_or(1));
        for v in (low..=high).step_by(step) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

/// One value of a field: a number in range or a name.
fn value(what: &str, spec: &FieldSpec, text: &str) -> Result<u8, String> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // At most 12 names, so the index fits.
        return Ok(spec.min + i as u8);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{what} `{text}` is not a number{}",
            spec.names_hint
        ));
    }
    match text.parse::<u8>() {
        Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{what} `{text}` is out of range {}-{}",
            spec.min, spec.max
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UTC instant from RFC 3339 text.
    fn at(text: &str) -> SystemTime {
        SystemTime::try_from(text.parse::<Timestamp>().unwrap()).unwrap()
    }

    /// The next firing after `from`, as RFC 3339 text in UTC.
    fn next(expr: &str, zone: &str, from: &str) -> Option<String> {
        let cron = CronSchedule::parse(expr, zone).unwrap();
        cron.next_after(at(from))
            .map(|t| Timestamp::try_from(t).unwrap().to_string())
    }

    /// The first `n` firings after `from`.
    fn firings(expr: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
        let cron = CronSchedule::parse(expr, zone).unwrap();
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = cron.next_after(t).unwrap();
            out.push(Timestamp::try_from(t).unwrap().to_string());
        }
        out
    }

    fn error(expr: &str, zone: &str) -> String {
        CronSchedule::parse(expr, zone).unwrap_err()
    }

    #[test]
    fn simple_expressions_in_utc() {
        assert_eq!(
            next("*/15 * * * *", "UTC", "2026-01-01T10:07:30Z").as_deref(),
            Some("2026-01-01T10:15:00Z")
        );
        // Strictly after: a matching instant is not its own next firing.
        assert_eq!(
            next("0 2 * * *", "UTC", "2026-01-01T02:00:00Z").as_deref(),
            Some("2026-01-02T02:00:00Z")
        );
        assert_eq!(
            next("0 2 * * *", "UTC", "2026-01-01T01:59:59.999Z").as_deref(),
            Some("2026-01-01T02:00:00Z")
        );
        // 2026-01-02 is a Friday: the next weekday morning is Monday.
        assert_eq!(
            next("30 9 * * 1-5", "UTC", "2026-01-02T10:00:00Z").as_deref(),
            Some("2026-01-05T09:30:00Z")
        );
        // Rolls over the end of the year.
        assert_eq!(
            next("0 0 1 * *", "UTC", "2026-12-15T00:00:00Z").as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            next("59 23 31 12 *", "UTC", "2026-12-31T23:59:00Z").as_deref(),
            Some("2027-12-31T23:59:00Z")
        );
        assert_eq!(
            firings("* * * * *", "UTC", "2026-01-01T23:58:10Z", 3),
            [
                "2026-01-01T23:59:00Z",
                "2026-01-02T00:00:00Z",
                "2026-01-02T00:01:00Z"
            ]
        );
    }

    #[test]
    fn steps_ranges_and_lists() {
        assert_eq!(
            firings("10-30/10 * * * *", "UTC", "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-01T00:10:00Z",
                "2026-01-01T00:20:00Z",
                "2026-01-01T00:30:00Z",
                "2026-01-01T01:10:00Z"
            ]
        );
        assert_eq!(
            firings("5/20 * * * *", "UTC", "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-01T00:05:00Z",
                "2026-01-01T00:25:00Z",
                "2026-01-01T00:45:00Z",
                "2026-01-01T01:05:00Z"
            ]
        );
        assert_eq!(
            firings("0 8-10,22 * * *", "UTC", "2026-01-01T09:30:00Z", 4),
            [
                "2026-01-01T10:00:00Z",
                "2026-01-01T22:00:00Z",
                "2026-01-02T08:00:00Z",
                "2026-01-02T09:00:00Z"
            ]
        );
    }

    #[test]
    fn month_and_weekday_names_in_any_case() {
        let by_name = CronSchedule::parse("0 0 1 jan,Jul *", "UTC").unwrap();
        let by_number = CronSchedule::parse("0 0 1 1,7 *", "UTC").unwrap();
        let from = at("2026-02-01T00:00:00Z");
        assert_eq!(by_name.next_after(from), by_number.next_after(from));
        assert_eq!(
            next("0 0 1 jan,Jul *", "UTC", "2026-02-01T00:00:00Z").as_deref(),
            Some("2026-07-01T00:00:00Z")
        );
        // 2026-01-01 is a Thursday.
        assert_eq!(
            firings("0 12 * * mon-WED/2,Sat", "UTC", "2026-01-01T00:00:00Z", 3),
            [
                "2026-01-03T12:00:00Z",
                "2026-01-05T12:00:00Z",
                "2026-01-07T12:00:00Z"
            ]
        );
    }

    #[test]
    fn weekday_seven_is_sunday() {
        // 2026-01-04 is a Sunday.
        for expr in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 * * 6-7"] {
            assert_eq!(
                next(expr, "UTC", "2026-01-01T00:00:00Z").as_deref(),
                Some(if expr.ends_with("6-7") {
                    "2026-01-03T00:00:00Z"
                } else {
                    "2026-01-04T00:00:00Z"
                }),
                "{expr}"
            );
        }
        assert_eq!(
            firings("0 0 * * 5-7", "UTC", "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-02T00:00:00Z",
                "2026-01-03T00:00:00Z",
                "2026-01-04T00:00:00Z",
                "2026-01-09T00:00:00Z"
            ]
        );
    }

    #[test]
    fn both_day_fields_restricted_fire_on_either() {
        // The 13th or any Friday: Fridays 2026-02-06 and 02-13 (also the
        // 13th), then 02-20, then Friday 03-13 is skipped to nothing new.
        assert_eq!(
            firings("0 0 13 * FRI", "UTC", "2026-02-01T00:00:00Z", 4),
            [
                "2026-02-06T00:00:00Z",
                "2026-02-13T00:00:00Z",
                "2026-02-20T00:00:00Z",
                "2026-02-27T00:00:00Z"
            ]
        );
        // 2026-04-13 is a Monday: fires although it is no Friday.
        assert_eq!(
            next("0 0 13 * FRI", "UTC", "2026-04-11T00:00:00Z").as_deref(),
            Some("2026-04-13T00:00:00Z")
        );
        // Day-of-week unrestricted: only the 13th.
        assert_eq!(
            next("0 0 13 * *", "UTC", "2026-02-01T00:00:00Z").as_deref(),
            Some("2026-02-13T00:00:00Z")
        );
        // A field starting with `*` counts as unrestricted (crontab(5)),
        // so `*/10` and Monday must both hold: the first Monday that is
        // the 1st, 11th, 21st or 31st of its month is 2026-05-11.
        assert_eq!(
            next("0 0 */10 * MON", "UTC", "2026-01-01T00:00:00Z").as_deref(),
            Some("2026-05-11T00:00:00Z")
        );
    }

    #[test]
    fn shorthands() {
        for (short, long) in [
            ("@hourly", "0 * * * *"),
            ("@daily", "0 0 * * *"),
            ("@MIDNIGHT", "0 0 * * *"),
            ("@weekly", "0 0 * * 0"),
            ("@monthly", "0 0 1 * *"),
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
        ] {
            let a = CronSchedule::parse(short, "UTC").unwrap();
            let b = CronSchedule::parse(long, "UTC").unwrap();
            let mut t = at("2026-03-15T13:14:15Z");
            for _ in 0..3 {
                let (x, y) = (a.next_after(t), b.next_after(t));
                assert_eq!(x, y, "{short}");
                t = x.unwrap();
            }
        }
        assert_eq!(
            next("@daily", "UTC", "2026-03-15T13:14:15Z").as_deref(),
            Some("2026-03-16T00:00:00Z")
        );
    }

    #[test]
    fn impossible_dates_end_the_search() {
        assert_eq!(next("0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z"), None);
        assert_eq!(
            next("0 0 31 4,6,9,11 *", "UTC", "2026-01-01T00:00:00Z"),
            None
        );
        // Leap days are found, even across 2100 (no leap day).
        assert_eq!(
            next("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z").as_deref(),
            Some("2028-02-29T00:00:00Z")
        );
        assert_eq!(
            next("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z").as_deref(),
            Some("2104-02-29T00:00:00Z")
        );
    }

    #[test]
    fn spring_forward_fires_at_the_shifted_instant() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does
        // not exist; it fires at 03:30 CEST (01:30 UTC), once.
        assert_eq!(
            firings("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]
        );
        // Every 30 minutes across the jump: no duplicate, no backwards step.
        assert_eq!(
            firings("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:15:00Z", 4),
            [
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-29T02:00:00Z"
            ]
        );
    }

    #[test]
    fn fall_back_fires_once_at_the_first_occurrence() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET, so 02:30
        // happens twice (00:30 and 01:30 UTC); it fires at the first only.
        assert_eq!(
            firings("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        // Starting inside the second pass: the repeated minute has fired.
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z").as_deref(),
            Some("2026-10-26T01:30:00Z")
        );
        // Every 30 minutes: the repeated hour runs once, then 03:00 CET.
        assert_eq!(
            firings("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:15:00Z", 3),
            [
                "2026-10-25T00:30:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T02:30:00Z"
            ]
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            error("0 25 * * *", "UTC"),
            "field 2 (hour) `25` is out of range 0-23"
        );
        assert_eq!(
            error("0 0 0 * *", "UTC"),
            "field 3 (day-of-month) `0` is out of range 1-31"
        );
        assert_eq!(
            error("0 0 * * 8", "UTC"),
            "field 5 (day-of-week) `8` is out of range 0-7"
        );
        assert_eq!(
            error("0 0 * FOO *", "UTC"),
            "field 4 (month) `FOO` is not a number or a month name (JAN-DEC)"
        );
        assert_eq!(
            error("0 JAN * * *", "UTC"),
            "field 2 (hour) `JAN` is not a number"
        );
        assert_eq!(
            error("30-10 * * * *", "UTC"),
            "field 1 (minute) range `30-10` runs backwards"
        );
        assert_eq!(
            error("*/0 * * * *", "UTC"),
            "field 1 (minute) step `*/0` must be at least 1"
        );
        assert_eq!(
            error("1,,2 * * * *", "UTC"),
            "field 1 (minute) `1,,2` has an empty list item"
        );
        assert!(error("0 0 * * * *", "UTC").contains("has 6"));
        assert!(error("0 0 * *", "UTC").contains("has 4"));
        assert_eq!(error("  ", "UTC"), "the cron expression is empty");
        assert!(error("@reboot", "UTC").contains("not supported"));
        assert!(error("@fortnightly", "UTC").contains("unknown shorthand `@fortnightly`"));
        assert!(
            error("0 2 * * *", "Europe/Berln").starts_with("unknown time zone `Europe/Berln`"),
            "{}",
            error("0 2 * * *", "Europe/Berln")
        );
        assert!(parse_time_zone("").is_err());
    }

    #[test]
    fn schedules_describe_themselves() {
        assert_eq!(Schedule::Manual.describe(), "manual");
        assert_eq!(
            Schedule::Every(Duration::from_secs(900)).describe(),
            "every 15m"
        );
        let cron = CronSchedule::parse(" 0 2 * * * ", "Europe/Berlin").unwrap();
        assert_eq!(
            Schedule::Cron(cron).describe(),
            "cron `0 2 * * *` Europe/Berlin"
        );
        let utc = CronSchedule::parse("@daily", "UTC").unwrap();
        assert_eq!(utc.to_string(), "cron `@daily` UTC");
    }

    #[test]
    fn next_after_per_kind() {
        let t = at("2026-01-01T00:00:00Z");
        assert_eq!(Schedule::Manual.next_after(t), None);
        assert_eq!(
            Schedule::Every(Duration::from_secs(60)).next_after(t),
            Some(at("2026-01-01T00:01:00Z"))
        );
        let cron = CronSchedule::parse("0 * * * *", "UTC").unwrap();
        assert_eq!(
            Schedule::Cron(cron).next_after(t),
            Some(at("2026-01-01T01:00:00Z"))
        );
    }
}
