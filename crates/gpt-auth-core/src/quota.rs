//! Per-user request budgets: calendar periods, counting, per-user overrides and the state file.
//!
//! A user's [`Counters`] hold the used count of the current day and month, each tagged with its
//! period number, so a new period starts from zero exactly once: the first request that sees a
//! newer period resets that counter. Periods are calendar days and months in UTC shifted by a
//! configurable offset. For tests the length of a day can be shortened; months are then calendar
//! months made of such days.

use std::collections::HashMap;

use crate::session::valid_email;

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

/// A budget for one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Max(u32),
}

impl Limit {
    pub fn parse(s: &str) -> Result<Limit, &'static str> {
        if s == "unlimited" {
            return Ok(Limit::Unlimited);
        }
        s.parse::<u32>().map(Limit::Max).map_err(|_| "expected a number or \"unlimited\"")
    }

    pub fn remaining(self, used: u32) -> Option<u32> {
        match self {
            Limit::Unlimited => None,
            Limit::Max(n) => Some(n.saturating_sub(used)),
        }
    }
}

/// Budgets per day and per month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub day: Limit,
    pub month: Limit,
}

/// A user's counters, as kept in shared memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub day: u32,
    pub day_used: u32,
    pub month: u32,
    pub month_used: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// What charging one request decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Counted; the counts after this request.
    Allowed { day_used: u32, month_used: u32 },
    /// Not counted: the budget of `period` is used up until `resets` (Unix seconds).
    Exceeded { period: Period, used: u32, limit: u32, resets: u64 },
}

impl Counters {
    /// Starts new periods where the clock moved on (each counter resets exactly once).
    pub fn roll(&mut self, p: &Periods) {
        if self.day != p.day {
            self.day = p.day;
            self.day_used = 0;
        }
        if self.month != p.month {
            self.month = p.month;
            self.month_used = 0;
        }
    }

    /// Counts one request if both budgets allow it.
    pub fn charge(&mut self, p: &Periods, limits: Limits) -> Charge {
        self.roll(p);
        if let Limit::Max(limit) = limits.day {
            if self.day_used >= limit {
                return Charge::Exceeded {
                    period: Period::Day,
                    used: self.day_used,
                    limit,
                    resets: p.day_ends,
                };
            }
        }
        if let Limit::Max(limit) = limits.month {
            if self.month_used >= limit {
                return Charge::Exceeded {
                    period: Period::Month,
                    used: self.month_used,
                    limit,
                    resets: p.month_ends,
                };
            }
        }
        self.day_used = self.day_used.saturating_add(1);
        self.month_used = self.month_used.saturating_add(1);
        Charge::Allowed { day_used: self.day_used, month_used: self.month_used }
    }
}

/// Per-user budgets that differ from a location's defaults: `user@domain` or `@domain`
/// followed by `day=N|unlimited` and/or `month=N|unlimited`; `#` comments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Lower-cased entries as bytes, hashed like the allowlist's (per request: no SipHash).
    entries: HashMap<Box<[u8]>, Budgets, crate::allowlist::Hasher>,
}

/// An override's day and month budgets (`None`: the location's default).
type Budgets = (Option<Limit>, Option<Limit>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct OverridesError {
    pub line: usize,
    pub reason: String,
}

impl Overrides {
    pub fn parse(text: &str) -> Result<Overrides, OverridesError> {
        let mut entries = HashMap::default();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let content = crate::allowlist::strip_comment(raw);
            let mut words = content.split_whitespace();
            let Some(who) = words.next() else { continue };
            let err = |reason: String| OverridesError { line, reason };
            let who = who.to_ascii_lowercase();
            let ok_who = match who.strip_prefix('@') {
                Some(d) => !d.is_empty() && !d.contains('@'),
                None => valid_email(&who),
            };
            if !ok_who {
                return Err(err(format!("\"{who}\" is not an address or @domain")));
            }
            let (mut day, mut month) = (None, None);
            for w in words {
                let (k, v) = w
                    .split_once('=')
                    .ok_or_else(|| err(format!("\"{w}\": expected day=N or month=N")))?;
                let limit = Limit::parse(v).map_err(|e| err(format!("\"{w}\": {e}")))?;
                match k {
                    "day" => day = Some(limit),
                    "month" => month = Some(limit),
                    _ => return Err(err(format!("\"{k}\": expected day or month"))),
                }
            }
            if day.is_none() && month.is_none() {
                return Err(err("no day= or month= budget".into()));
            }
            if entries.insert(who.as_bytes().into(), (day, month)).is_some() {
                return Err(err(format!("\"{who}\" is listed twice")));
            }
        }
        Ok(Overrides { entries })
    }

    /// The budgets of `email` (any case): its own entry, else its domain's, else `defaults`.
    pub fn limits_for(&self, email: &str, defaults: Limits) -> Limits {
        self.limits_for_lowercase(email.to_ascii_lowercase().as_bytes(), defaults)
    }

    /// [`Overrides::limits_for`] for an address already lower-cased (ASCII), as the module's
    /// quota key is: no allocation, no UTF-8 check. A domain entry `@example.com` is the
    /// address's own tail from its last `@`.
    pub fn limits_for_lowercase(&self, email: &[u8], defaults: Limits) -> Limits {
        let entry = self.entries.get(email).or_else(|| {
            let at = email.iter().rposition(|&b| b == b'@')?;
            self.entries.get(&email[at..])
        });
        match entry {
            Some((day, month)) => {
                Limits { day: day.unwrap_or(defaults.day), month: month.unwrap_or(defaults.month) }
            }
            None => defaults,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
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

/// One user's use in the current periods, for the usage report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub email: String,
    pub day_used: u32,
    pub month_used: u32,
}

/// The usage report's rows: current-period counts of every user who used anything this month,
/// heaviest users first.
pub fn report_rows(entries: Vec<(String, Counters)>, p: &Periods) -> Vec<ReportRow> {
    let mut rows: Vec<ReportRow> = entries
        .into_iter()
        .filter(|(_, c)| c.month == p.month && c.month_used > 0)
        .map(|(email, c)| ReportRow {
            email,
            day_used: if c.day == p.day { c.day_used } else { 0 },
            month_used: c.month_used,
        })
        .collect();
    rows.sort_by(|a, b| b.month_used.cmp(&a.month_used).then_with(|| a.email.cmp(&b.email)));
    rows
}

/// The usage report as JSON.
pub fn report_json(zone: &str, now: u64, p: &Periods, rows: &[ReportRow]) -> String {
    let users: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({"email": r.email, "day": r.day_used, "month": r.month_used}))
        .collect();
    let v = serde_json::json!({
        "zone": zone,
        "generated": format_utc(now),
        "day": Clock::day_label(p.day),
        "month": Clock::month_label(p.month),
        "day_resets": format_utc(p.day_ends),
        "month_resets": format_utc(p.month_ends),
        "users": users,
    });
    let mut out = v.to_string();
    out.push('\n');
    out
}

/// The state file: counters saved across restarts. Text, one user per line:
/// `gpt_auth_quota 1` then `<email> <day> <day_used> <month> <month_used>`.
pub mod state_file {
    use super::Counters;
    use crate::session::valid_email;

    pub const HEADER: &str = "gpt_auth_quota 1";

    pub fn write<'a>(entries: impl Iterator<Item = (&'a str, Counters)>) -> String {
        let mut out = String::from(HEADER);
        out.push('\n');
        for (email, c) in entries {
            out.push_str(&format!(
                "{email} {} {} {} {}\n",
                c.day, c.day_used, c.month, c.month_used
            ));
        }
        out
    }

    pub fn parse(text: &str) -> Result<Vec<(String, Counters)>, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(format!("line 1: expected \"{HEADER}\"")),
        }
        let mut out = Vec::new();
        for (idx, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(' ').collect();
            let bad = || format!("line {}: malformed entry", idx + 1);
            let [email, d, du, m, mu] = f.as_slice() else { return Err(bad()) };
            if !valid_email(email) {
                return Err(bad());
            }
            let n = |s: &str| s.parse::<u32>().map_err(|_| bad());
            out.push((
                (*email).to_owned(),
                Counters { day: n(d)?, day_used: n(du)?, month: n(m)?, month_used: n(mu)? },
            ));
        }
        Ok(out)
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
    fn charging_counts_and_refuses_exactly() {
        let clock = Clock::default();
        let limits = Limits { day: Limit::Max(2), month: Limit::Max(3) };
        let mut c = Counters::default();
        let p = clock.periods(1_000_000);
        assert_eq!(c.charge(&p, limits), Charge::Allowed { day_used: 1, month_used: 1 });
        assert_eq!(c.charge(&p, limits), Charge::Allowed { day_used: 2, month_used: 2 });
        assert_eq!(
            c.charge(&p, limits),
            Charge::Exceeded { period: Period::Day, used: 2, limit: 2, resets: p.day_ends }
        );
        // The next day: the day counter starts again, the month goes on.
        let p2 = clock.periods(p.day_ends);
        assert_eq!(c.charge(&p2, limits), Charge::Allowed { day_used: 1, month_used: 3 });
        assert_eq!(
            c.charge(&p2, limits),
            Charge::Exceeded { period: Period::Month, used: 3, limit: 3, resets: p2.month_ends }
        );
        // Counting resumes in the next month.
        let p3 = clock.periods(p2.month_ends);
        assert_eq!(c.charge(&p3, limits), Charge::Allowed { day_used: 1, month_used: 1 });
    }

    #[test]
    fn unlimited_and_zero() {
        let p = Clock::default().periods(5);
        let mut c = Counters::default();
        let free = Limits { day: Limit::Unlimited, month: Limit::Unlimited };
        for _ in 0..1000 {
            assert!(matches!(c.charge(&p, free), Charge::Allowed { .. }));
        }
        let none = Limits { day: Limit::Max(0), month: Limit::Unlimited };
        assert!(matches!(Counters::default().charge(&p, none), Charge::Exceeded { .. }));
    }

    #[test]
    fn overrides() {
        let o = Overrides::parse(
            "# power users\nAlice@Example.com day=1000 month=unlimited\n@partner.example day=10 \
             # partners\n\nbob@example.com\tmonth=50\t# tab before the comment\n",
        )
        .unwrap();
        let d = Limits { day: Limit::Max(200), month: Limit::Max(3000) };
        assert_eq!(
            o.limits_for("alice@example.com", d),
            Limits { day: Limit::Max(1000), month: Limit::Unlimited }
        );
        assert_eq!(o.limits_for("x@partner.example", d), Limits { day: Limit::Max(10), ..d });
        assert_eq!(o.limits_for("bob@example.com", d), Limits { month: Limit::Max(50), ..d });
        assert_eq!(o.limits_for("carol@example.com", d), d);
        // any case; the domain entry is matched on the part after the last '@'
        assert_eq!(o.limits_for("ALICE@example.COM", d).day, Limit::Max(1000));
        assert_eq!(o.limits_for("X@Partner.Example", d).day, Limit::Max(10));
        assert_eq!(o.limits_for("\"a@b\"@partner.example", d).day, Limit::Max(10));
        assert_eq!(o.limits_for("partner.example", d), d);
        assert_eq!(o.limits_for("x@sub.partner.example", d), d);
        assert_eq!(o.limits_for_lowercase(b"x@partner.example", d).day, Limit::Max(10));
        assert_eq!(o.limits_for_lowercase(b"alice@example.com", d).day, Limit::Max(1000));
        assert_eq!(o.limits_for_lowercase(b"\xff@example.com", d), d);
        for (bad, line) in [
            ("alice", 1),
            ("a@b.c day=1\nb@c.d day=x", 2),
            ("a@b.c hour=5", 1),
            ("a@b.c", 1),
            ("a@b.c day=1\nA@B.C day=2", 2),
        ] {
            assert_eq!(Overrides::parse(bad).unwrap_err().line, line, "{bad:?}");
        }
    }

    #[test]
    fn formatting_and_report() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_795_935_600), "2026-11-29T07:00:00Z");
        assert_eq!(format_duration(40), "40 s");
        assert_eq!(format_duration(61), "2 min");
        assert_eq!(format_duration(3 * 3600 + 25 * 60), "3 h 25 min");
        let p = Clock::default().periods(1_795_935_600);
        let c = |day, du, mu| Counters { day, day_used: du, month: p.month, month_used: mu };
        let rows = report_rows(
            vec![
                ("b@x.y".into(), c(p.day, 3, 9)),
                ("a@x.y".into(), c(p.day - 1, 5, 12)),
                ("old@x.y".into(), Counters { month: p.month - 1, ..c(1, 1, 1) }),
                ("c@x.y".into(), c(p.day, 0, 9)),
            ],
            &p,
        );
        let names: Vec<&str> = rows.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(names, ["a@x.y", "b@x.y", "c@x.y"]);
        assert_eq!(rows[0].day_used, 0, "yesterday's count is not today's");
        let json = report_json("chat", 1_795_935_600, &p, &rows);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["zone"], "chat");
        assert_eq!(v["day"], "2026-11-29");
        assert_eq!(v["users"][0]["email"], "a@x.y");
        assert_eq!(v["users"][0]["month"], 12);
    }

    #[test]
    fn state_file_roundtrip() {
        let c = Counters { day: 20000, day_used: 7, month: 671, month_used: 99 };
        let text = state_file::write([("alice@example.com", c)].into_iter());
        assert_eq!(text, "gpt_auth_quota 1\nalice@example.com 20000 7 671 99\n");
        assert_eq!(state_file::parse(&text).unwrap(), vec![("alice@example.com".into(), c)]);
        assert!(state_file::parse("").is_err());
        assert!(state_file::parse("gpt_auth_quota 1\nx 1 2 3\n").is_err());
        assert!(state_file::parse("gpt_auth_quota 1\nnot-an-address 1 2 3 4\n").is_err());
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
        fn prop_never_more_than_limit(limit in 0u32..50, n in 0usize..200) {
            let p = Clock::default().periods(1000);
            let limits = Limits { day: Limit::Max(limit), month: Limit::Unlimited };
            let mut c = Counters::default();
            let allowed = (0..n).filter(|_| matches!(c.charge(&p, limits), Charge::Allowed { .. })).count();
            prop_assert_eq!(allowed, n.min(limit as usize));
        }

        #[test]
        fn prop_parsers_never_panic(s in "\\PC{0,200}") {
            let _ = Overrides::parse(&s);
            let _ = state_file::parse(&s);
            let _ = parse_utc_offset(&s);
        }
    }
}
