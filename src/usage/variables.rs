//! `$gpt_auth_model` (the model asked for), `$gpt_auth_input_tokens`, `$gpt_auth_output_tokens`
//! and `$gpt_auth_cost` (US dollars) of this request: known in the log phase (the module's log
//! handler settles the request before the access log is written), so `log_format` can write an
//! audit or billing line per request. Empty where the location fronts no AI API.

use gpt_auth_core::usage::price::format_usd;

use super::exchange::{Charged, Source};
use super::{exchange, settle};
use crate::ngx::pool;

ngx_entry! {
    pub variable fn model(r) {
        let m = exchange::get(r)?.model.as_deref()?;
        pool::copy(r, m.as_bytes())
    }
}

ngx_entry! {
    pub variable fn input_tokens(r) {
        let c = metered(r)?;
        pool::copy(r, c.usage.input.to_string().as_bytes())
    }
}

ngx_entry! {
    pub variable fn output_tokens(r) {
        let c = metered(r)?;
        pool::copy(r, c.usage.output.to_string().as_bytes())
    }
}

ngx_entry! {
    pub variable fn cost(r) {
        let c = settle::charged(r)?;
        pool::copy(r, format_usd(c.cost?).as_bytes())
    }
}

ngx_entry! {
    /// `$gpt_auth_usage_source`: `reported` (the provider's usage), `estimated` (the
    /// fallback) or `none` (no tokens: the upstream failed, nothing charged, or answered with
    /// an error, one request charged).
    pub variable fn usage_source(r) {
        Some(match metered(r)?.source {
            Source::Reported => b"reported".as_slice(),
            Source::Estimated => b"estimated",
            Source::Failed | Source::Unmetered => b"none",
        })
    }
}

/// What a metered request was charged (`None`: nothing metered, the variables are empty).
fn metered(r: &ngx::http::Request) -> Option<Charged> {
    settle::charged(r).filter(|c| c.source != Source::Unmetered)
}
