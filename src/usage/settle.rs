//! When the answer is done (the log phase, or the first variable that asks): what it used —
//! the usage the provider reported, or the documented fallback — its cost, and the budgets
//! settled. An upstream that failed to answer (5xx, or no answer) is not charged; an error
//! answer (4xx: a bad request, the provider's own rate limit) counts as a request but uses no
//! tokens (providers do not bill them).

use std::cell::RefCell;
use std::collections::HashSet;

use gpt_auth_core::quota::Amounts;
use gpt_auth_core::usage::response::{estimate, from_json};
use gpt_auth_core::usage::Usage;
use ngx::http::Request;

use super::exchange::{self, Charged, Exchange, Reading, Source, State};
use crate::conf::usage::Fallback;
use crate::ngx::time::now;
use crate::ngx::RequestExt;
use crate::quota::charge::{self, upstream_failed};

std::thread_local! {
    /// Models without a price, logged once per worker each.
    static UNPRICED: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// The usage of a finished answer, or why there is none.
fn reported(x: &Exchange, st: &mut State) -> Result<Usage, &'static str> {
    match &mut st.reading {
        Reading::Json(body) => {
            let api = x.api.ok_or("not a metered API")?;
            match from_json(api, body) {
                Ok((u, model)) => {
                    st.answered_model = model;
                    Ok(u)
                }
                Err(_) => Err("the answer reports no readable usage"),
            }
        }
        Reading::Stream(s) => {
            let meter = &s.meter;
            st.answered_model = meter.model().map(str::to_owned);
            match meter.usage() {
                Some(u) => Ok(u),
                None if meter.ended() => Err("the stream ended without its usage"),
                None => Err("the stream was cut off before its usage"),
            }
        }
        Reading::Skipped(why) => Err(why),
        Reading::Models(_) | Reading::Pending => Err("no answer body"),
    }
}

/// Settles the exchange once; returns what was charged.
pub fn settle(r: &Request) -> Option<Charged> {
    let x = exchange::get(r)?;
    let mut st = x.state.try_borrow_mut().ok()?;
    if let Some(c) = st.charged {
        return Some(c);
    }
    let lcf = super::access::location(r)?;
    let failed = upstream_failed(r);
    let refused = r.as_ref().headers_out.status >= 400;
    let metered = lcf.usage.meters() && x.api.is_some() && !x.filter_models;
    let (usage, source) = if !metered {
        (Usage::default(), Source::Unmetered)
    } else if failed || refused {
        (Usage::default(), Source::Failed)
    } else {
        match reported(x, &mut st) {
            Ok(u) => (u, Source::Reported),
            Err(why) => (fallback(r, lcf, x, &st, why), Source::Estimated),
        }
    };
    let model = st.answered_model.clone().or_else(|| x.model.clone());
    let cost = match (lcf.usage.prices(), &model) {
        (Some(_), Some(_)) if source == Source::Failed => Some(0),
        (Some(p), Some(m)) => price(r, p, m, &usage),
        _ => None,
    };
    let charged = Charged { usage, cost, source };
    st.charged = Some(charged);
    drop(st);
    if let Some(c) = charge::charged(r) {
        let actual = if failed {
            Amounts::default()
        } else {
            Amounts {
                requests: 1,
                input: usage.input,
                output: usage.output,
                cost: cost.unwrap_or(0),
            }
        };
        if failed {
            let status = r.as_ref().headers_out.status;
            info!(r, "quota: not charged (the upstream failed: status {})", status);
        }
        charge::settle(r, c, &actual, model.as_deref());
    }
    Some(charged)
}

/// The documented fallback for an answer without readable usage (one notice line).
fn fallback(r: &Request, lcf: &crate::conf::LocConf, x: &Exchange, st: &State, why: &str) -> Usage {
    let mut u = estimate(x.request_bytes, st.response_bytes);
    if let Fallback::Tokens(n) = lcf.usage.fallback() {
        u.output = n;
    }
    notice!(
        r,
        "AI usage: {}; charged the fallback: {} input and {} output tokens",
        why,
        u.input,
        u.output
    );
    u
}

/// What `usage` of `model` costs by the price table (`None`, and a warning once, unpriced).
fn price(
    r: &Request,
    prices: &crate::files::Watched<gpt_auth_core::usage::price::PriceTable>,
    model: &str,
    usage: &Usage,
) -> Option<u64> {
    let c = prices.get(now(), r.log_ptr()).cost(model, usage);
    if c.is_none() {
        unpriced(r, model);
    }
    c
}

fn unpriced(r: &Request, model: &str) {
    let first = UNPRICED.with(|u| u.borrow_mut().insert(model.to_owned()));
    if first {
        warn!(
            r,
            "AI usage: no price for the model \"{}\" in gpt_auth_prices: its cost is not counted",
            model
        );
    }
}

/// What was charged, once settled (the log phase settles first of all log handlers).
pub fn charged(r: &Request) -> Option<Charged> {
    exchange::get(r)?.state.try_borrow().ok()?.charged
}

/// Log phase: settle a metered request (before the access log is written).
pub fn on_log(r: &Request) {
    if r.is_main() && super::access::location(r).is_some() {
        let _ = settle(r);
    }
}
