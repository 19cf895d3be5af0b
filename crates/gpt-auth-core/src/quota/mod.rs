//! Budgets: calendar periods ([`Clock`]), what is counted and how it is spent ([`budget`]), the
//! keys counters are kept under ([`key`]), per-user overrides ([`overrides`]), the usage report
//! ([`report`]), the state file ([`state_file`]) and zones shared through Redis ([`cluster`]).
//!
//! Periods are calendar days and months in UTC shifted by a configurable offset. For tests the
//! length of a day can be shortened; months are then calendar months made of such days.

pub mod budget;
pub mod cluster;
pub mod key;
pub mod overrides;
pub mod report;
pub mod state_file;

pub use budget::{Amounts, Caps, Counters, Exceeded, Limits, Period, Shares, Unit};
pub use key::Key;
pub use overrides::{Overrides, OverridesError};

pub const SECONDS_PER_DAY: u64 = 86400;

/// How periods are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Added to UTC (seconds), e.g. 3600 for UTC+01:00.
    pub utc_offset: i64,
    /// Length of a day in seconds: 86400, or shorter for tests.
    pub day_length: u64,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock { utc_offset: 0, day_length: SECONDS_PER_DAY }
    }
}

/// The current periods and when they end (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// Days since 1970-01-01 (in local time of the clock).
    pub day: u32,
    /// Months since 1970-01 (`year * 12 + month - 1` from 1970).
    pub month: u32,
    pub day_ends: u64,
    pub month_ends: u64,
}

impl Clock {
    pub fn periods(&self, now: u64) -> Periods {
        let len = self.day_length.max(1) as i64;
        let local = now as i64 + self.utc_offset;
        let day = local.div_euclid(len);
        let (y, m, _) = civil_from_days(day);
        let month = (y - 1970) * 12 + (m as i64 - 1);
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let next_month_day = days_from_civil(ny, nm, 1);
        let to_unix = |d: i64| (d * len - self.utc_offset).max(0) as u64;
        Periods {
            day: day.clamp(0, u32::MAX as i64) as u32,
            month: month.clamp(0, u32::MAX as i64) as u32,
            day_ends: to_unix(day + 1),
            month_ends: to_unix(next_month_day),
        }
    }

    /// `YYYY-MM-DD` of a day number (for reports).
    pub fn day_label(day: u32) -> String {
        let (y, m, d) = civil_from_days(day as i64);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// `YYYY-MM` of a month number.
    pub fn month_label(month: u32) -> String {
        format!("{:04}-{:02}", 1970 + month / 12, month % 12 + 1)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses a UTC offset `+HH:MM`, `-HH:MM`, `+HHMM` or `UTC`/`Z`, in seconds.
pub fn parse_utc_offset(s: &str) -> Result<i64, &'static str> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err("expected +HH:MM or -HH:MM"),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected +HH:MM or -HH:MM");
    }
    let h: i64 = digits[..2].parse().map_err(|_| "bad hours")?;
    let m: i64 = digits[2..].parse().map_err(|_| "bad minutes")?;
    if h > 14 || m > 59 {
        return Err("offset out of range");
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
pub fn format_utc(t: u64) -> String {
    let days = (t / SECONDS_PER_DAY) as i64;
    let secs = t % SECONDS_PER_DAY;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// "3 h 25 min", "12 min", "40 s": a short human duration.
pub fn format_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs.div_ceil(60)),
        3600..=86399 => format!("{} h {} min", secs / 3600, secs / 60 % 60),
        _ => format!("{} d {} h", secs / 86400, secs / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
        assert_eq!(days_from_civil(2024, 2, 29) + 1, days_from_civil(2024, 3, 1));
    }

    #[test]
    fn periods_utc() {
        // 2026-11-29 12:00:00 UTC
        let now = days_from_civil(2026, 11, 29) as u64 * 86400 + 12 * 3600;
        let p = Clock::default().periods(now);
        assert_eq!(Clock::day_label(p.day), "2026-11-29");
        assert_eq!(Clock::month_label(p.month), "2026-11");
        assert_eq!(p.day_ends, days_from_civil(2026, 11, 30) as u64 * 86400);
        assert_eq!(p.month_ends, days_from_civil(2026, 12, 1) as u64 * 86400);
    }

    #[test]
    fn periods_with_offset() {
        // 2026-11-30 23:30 UTC is already 2026-12-01 00:30 at UTC+01:00.
        let now = days_from_civil(2026, 11, 30) as u64 * 86400 + 23 * 3600 + 1800;
        let c = Clock { utc_offset: 3600, day_length: 86400 };
        let p = c.periods(now);
        assert_eq!(Clock::day_label(p.day), "2026-12-01");
        assert_eq!(Clock::month_label(p.month), "2026-12");
        assert_eq!(p.day_ends, now + 23 * 3600 + 1800);
        assert_eq!(parse_utc_offset("+01:00"), Ok(3600));
        assert_eq!(parse_utc_offset("-0530"), Ok(-19800));
        assert_eq!(parse_utc_offset("UTC"), Ok(0));
        assert!(parse_utc_offset("1").is_err());
        assert!(parse_utc_offset("+25:00").is_err());
    }

    #[test]
    fn short_days_for_tests() {
        let c = Clock { utc_offset: 0, day_length: 2 };
        let p = c.periods(100);
        assert_eq!(p.day, 50);
        assert_eq!(p.day_ends, 102);
        // Day 50 is 1970-02-20: the month ends with day 59 (1970-03-01).
        assert_eq!(p.month_ends, 59 * 2);
    }

    #[test]
    fn formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_795_935_600), "2026-11-29T07:00:00Z");
        assert_eq!(format_duration(40), "40 s");
        assert_eq!(format_duration(61), "2 min");
        assert_eq!(format_duration(3 * 3600 + 25 * 60), "3 h 25 min");
    }

    proptest! {
        #[test]
        fn prop_periods_consistent(now in 0u64..4_000_000_000, off in -50_000i64..50_000) {
            let c = Clock { utc_offset: off, day_length: 86400 };
            let p = c.periods(now);
            prop_assert!(p.day_ends > now && p.day_ends - now <= 86400);
            prop_assert!(p.month_ends >= p.day_ends);
            let q = c.periods(p.day_ends);
            prop_assert_eq!(q.day, p.day + 1);
            let m = c.periods(p.month_ends);
            prop_assert_eq!(m.month, p.month + 1);
            let label = Clock::day_label(m.day);
            prop_assert_eq!(label.get(8..), Some("01"));
        }

        #[test]
        fn prop_parsers_never_panic(s in "\\PC{0,200}") {
            let _ = parse_utc_offset(&s);
        }
    }
}
