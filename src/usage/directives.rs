//! The AI API directives (location level, inherited): `gpt_auth_api`, `gpt_auth_models`,
//! `gpt_auth_models_filter`, `gpt_auth_meter`, `gpt_auth_stream_usage`,
//! `gpt_auth_meter_fallback`, `gpt_auth_prices`, `gpt_auth_api_body_limit`.

use std::rc::Rc;

use gpt_auth_core::usage::price::PriceTable;
use nginx_sys::ngx_conf_t;

use crate::conf::directives::{set_once, utf8, value};
use crate::conf::usage::{ApiFlavor, ApiSetting, Fallback, ModelRule, Who};
use crate::conf::LocConf;
use crate::files::{Watched, WatchedAllowlist};
use crate::ngx::conf::parse_size;
use crate::ngx::{ConfError, NgxConfExt};

fn on_off(cf: &ngx_conf_t) -> Result<bool, ConfError> {
    match value(cf).as_slice() {
        b"on" => Ok(true),
        b"off" => Ok(false),
        v => Err(ConfError::invalid(format_args!(
            "invalid value \"{}\", it must be \"on\" or \"off\"",
            String::from_utf8_lossy(v)
        ))),
    }
}

ngx_entry! {
    /// `gpt_auth_api openai | anthropic | auto | off`
    pub directive fn api(cf, lcf: LocConf) {
        let v = match value(cf).as_slice() {
            b"openai" => ApiSetting::Flavor(ApiFlavor::OpenAi),
            b"anthropic" => ApiSetting::Flavor(ApiFlavor::Anthropic),
            b"auto" => ApiSetting::Auto,
            b"off" => ApiSetting::Off,
            v => {
                return Err(ConfError::invalid(format_args!(
                    "invalid value \"{}\", it must be \"openai\", \"anthropic\", \"auto\" or \"off\"",
                    String::from_utf8_lossy(v)
                )))
            }
        };
        set_once(&mut lcf.usage.api, v)
    }
}

ngx_entry! {
    /// `gpt_auth_models PATTERN ... [allowlist=FILE]` (in order; the first rule whose pattern
    /// matches decides) or `gpt_auth_models off`.
    pub directive fn models(cf, lcf: LocConf) {
        let args = cf.arg_strings();
        if args == ["off"] {
            if lcf.usage.models.as_ref().is_some_and(|m| !m.is_empty()) {
                return Err(ConfError::invalid("\"off\" after rules at the same level"));
            }
            lcf.usage.models = Some(Vec::new());
            return Ok(());
        }
        let mut patterns = Vec::new();
        let mut who = Who::Everyone;
        for a in args {
            if let Some(path) = a.strip_prefix("allowlist=") {
                who = Who::List(allowlist(cf, path)?);
            } else if a.is_empty() || a.contains('=') || !a.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfError::invalid(format_args!("invalid model pattern \"{a}\"")));
            } else {
                patterns.push(a.to_ascii_lowercase());
            }
        }
        if patterns.is_empty() {
            return Err(ConfError::invalid("needs a model name or pattern (gpt-4*, *)"));
        }
        lcf.usage.models.get_or_insert_with(Vec::new).push(ModelRule { patterns, who, source: cf.source() });
        Ok(())
    }
}

/// An allowlist file, shared with other directives that name it.
fn allowlist(cf: &mut ngx_conf_t, name: &str) -> Result<Rc<WatchedAllowlist>, ConfError> {
    crate::files::shared(cf, name.as_bytes(), |m| &mut m.allowlists)
}

ngx_entry! {
    /// `gpt_auth_models_filter on | off`
    pub directive fn models_filter(cf, lcf: LocConf) {
        let v = on_off(cf)?;
        set_once(&mut lcf.usage.models_filter, v)
    }
}

ngx_entry! {
    /// `gpt_auth_meter on | off`
    pub directive fn meter(cf, lcf: LocConf) {
        let v = on_off(cf)?;
        set_once(&mut lcf.usage.meter, v)
    }
}

ngx_entry! {
    /// `gpt_auth_stream_usage on | off`
    pub directive fn stream_usage(cf, lcf: LocConf) {
        let v = on_off(cf)?;
        set_once(&mut lcf.usage.stream_usage, v)
    }
}

ngx_entry! {
    /// `gpt_auth_meter_fallback estimate | TOKENS`
    pub directive fn meter_fallback(cf, lcf: LocConf) {
        let v = value(cf);
        let v = utf8(&v)?;
        let f = if v == "estimate" {
            Fallback::Estimate
        } else {
            Fallback::Tokens(v.parse().map_err(|_| {
                ConfError::invalid(format_args!(
                    "invalid value \"{v}\", it must be \"estimate\" or a number of tokens"
                ))
            })?)
        };
        set_once(&mut lcf.usage.fallback, f)
    }
}

ngx_entry! {
    /// `gpt_auth_prices FILE | off`: read once per configuration, re-read when it changes.
    pub directive fn prices(cf, lcf: LocConf) {
        let v = value(cf);
        if v == b"off" {
            return set_once(&mut lcf.usage.prices, None);
        }
        let path = cf.full_path(&v)?;
        let table = Rc::new(Watched::<PriceTable>::load(&path)?);
        crate::files::warn_if_unreadable_by_workers(cf, "price table", &path);
        set_once(&mut lcf.usage.prices, Some(table))
    }
}

ngx_entry! {
    /// `gpt_auth_api_body_limit SIZE`: request bodies the module reads (larger: 413).
    pub directive fn body_limit(cf, lcf: LocConf) {
        let v = value(cf);
        let v = utf8(&v)?;
        let n = parse_size(v)
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfError::invalid(format_args!("invalid size \"{v}\"")))?;
        set_once(&mut lcf.usage.body_limit, n)
    }
}
