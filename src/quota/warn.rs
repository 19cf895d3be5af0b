//! Warnings before people are stopped: one `warn` line when a budget passes a chosen share
//! (`warn=80%`), and `$gpt_auth_quota_warning` while it is past it.

use gpt_auth_core::quota::budget::format_usd;
use gpt_auth_core::quota::{Counters, Limits, Period, Unit};
use ngx::http::Request;

/// Whose budget a warning is about; written only when a line is logged (no allocation on the
/// way).
pub enum Who<'a> {
    /// A user (the address).
    User(&'a [u8]),
    Group(&'a str),
}

impl core::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Who::User(e) => write!(f, "\"{}\"", String::from_utf8_lossy(e)),
            Who::Group(g) => write!(f, "group \"{g}\""),
        }
    }
}

/// Logs when `after` is past `warn` (per mille) of a budget that `before` was not.
pub fn crossed(
    r: &Request,
    who: Who<'_>,
    warn: Option<u64>,
    before: &Counters,
    after: &Counters,
    limits: &Limits,
) {
    let Some(warn) = warn else { return };
    for period in Period::ALL {
        for unit in Unit::ALL {
            let Some(cap) = limits.period(period).get(unit) else { continue };
            let share = |c: &Counters| {
                let used = c.used(period).of(unit);
                used.saturating_mul(1000).checked_div(cap).unwrap_or(1000)
            };
            if before.used(period) != after.used(period)
                && share(before) < warn
                && share(after) >= warn
            {
                let used = after.used(period).of(unit);
                warn!(
                    r,
                    "quota: {} passed {}% of the {} {} budget: {} of {}",
                    who,
                    warn / 10,
                    period.as_str(),
                    unit.as_str(),
                    amount(unit, used),
                    amount(unit, cap)
                );
            }
        }
    }
}

/// An amount as people read it (dollars for cost).
pub fn amount(unit: Unit, n: u64) -> String {
    match unit {
        Unit::Cost => format!("${}", format_usd(n)),
        _ => n.to_string(),
    }
}

/// `$gpt_auth_quota_warning`: "month cost 82%" while the user's highest budget share is past
/// the location's `warn=` share; empty otherwise.
pub fn warning(counters: &Counters, limits: &Limits, warn: Option<u64>) -> Option<String> {
    let warn = warn?;
    let (share, period, unit) = counters.highest_share(limits)?;
    (share >= warn).then(|| format!("{} {} {}%", period.as_str(), unit.as_str(), share / 10))
}
