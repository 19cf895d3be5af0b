//! `$gpt_auth_quota_day_used`, `..._day_remaining`, `..._month_used`, `..._month_remaining`: the
//! user's request budget after this request was admitted (a refused request: the state that
//! refused it; `unlimited` without a limit; empty for a request not charged), and
//! `$gpt_auth_quota_warning` (`month cost 82%` while a budget is past the location's `warn=`
//! share).

use gpt_auth_core::quota::{Period, Unit};
use ngx::http::Request;

use super::charge::charged;
use crate::ngx::pool;

/// The value, written into `buf` (no heap allocation: the variables may be logged or sent as a
/// header on every request).
fn value<'b>(
    r: &Request,
    period: Period,
    remaining: bool,
    buf: &'b mut [u8; 20],
) -> Option<&'b [u8]> {
    use std::io::Write;
    let (c, limits) = match charged(r) {
        Some(c) => (c.counters.get(), c.limits),
        None => {
            let refused = pool::stashed::<Refused>(r)?;
            (refused.0, refused.1)
        }
    };
    let used = c.used(period).requests.saturating_add(c.reserved.requests);
    let n = if remaining {
        match c.remaining(&limits, period, Unit::Requests) {
            Some(n) => n,
            None => return Some(b"unlimited"),
        }
    } else {
        used
    };
    let mut rest = &mut buf[..];
    write!(rest, "{n}").ok()?;
    let len = 20 - rest.len();
    buf.get(..len)
}

/// The counters and budgets that refused a request (for the variables of the 429).
pub struct Refused(pub gpt_auth_core::quota::Counters, pub gpt_auth_core::quota::Limits);

fn variable(r: &Request, period: Period, remaining: bool) -> Option<&[u8]> {
    let mut buf = [0u8; 20];
    let text = value(r, period, remaining, &mut buf)?;
    pool::copy(r, text)
}

ngx_entry! {
    pub variable fn day_used(r) { variable(r, Period::Day, false) }
}
ngx_entry! {
    pub variable fn day_remaining(r) { variable(r, Period::Day, true) }
}
ngx_entry! {
    pub variable fn month_used(r) { variable(r, Period::Month, false) }
}
ngx_entry! {
    pub variable fn month_remaining(r) { variable(r, Period::Month, true) }
}
ngx_entry! {
    pub variable fn warning(r) {
        let c = charged(r)?;
        let w = super::warn::warning(&c.counters.get(), &c.limits, c.q.warn)?;
        pool::copy(r, w.as_bytes())
    }
}
