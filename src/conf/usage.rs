//! The configuration of AI API control: which API a location fronts (`gpt_auth_api`), who may
//! use which model (`gpt_auth_models`), metering of the provider's answers (`gpt_auth_meter`,
//! `gpt_auth_stream_usage`, `gpt_auth_meter_fallback`), prices (`gpt_auth_prices`). Parsed by
//! `crate::usage::directives`; applied by `crate::usage`.

use std::rc::Rc;

use gpt_auth_core::usage::price::PriceTable;

use crate::files::{Watched, WatchedAllowlist};
use crate::ngx::Source;

/// The error format and request/response formats of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFlavor {
    /// OpenAI and everything compatible (Azure OpenAI, vLLM, Ollama, gateways).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

/// `gpt_auth_api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiSetting {
    Off,
    Flavor(ApiFlavor),
    /// By the request's path (`/messages`: Anthropic, else OpenAI).
    Auto,
}

/// Who a model rule lets in.
#[derive(Debug, Clone)]
pub enum Who {
    Everyone,
    List(Rc<WatchedAllowlist>),
}

/// One `gpt_auth_models PATTERN ... [allowlist=FILE]`.
#[derive(Debug, Clone)]
pub struct ModelRule {
    pub patterns: Vec<String>,
    pub who: Who,
    pub source: Source,
}

/// What is charged when an answer's usage cannot be read (compressed, unparseable,
/// interrupted, missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Estimated from the request and response sizes (about 4 bytes a token).
    Estimate,
    /// A fixed number of output tokens (plus the input estimated from the request).
    Tokens(u64),
}

pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// The AI settings of a location (each inherited on its own).
#[derive(Debug, Clone, Default)]
pub struct UsageConf {
    pub api: Option<ApiSetting>,
    /// `None`: not set at this level; `Some(vec![])`: `gpt_auth_models off`.
    pub models: Option<Vec<ModelRule>>,
    pub models_filter: Option<bool>,
    pub meter: Option<bool>,
    pub stream_usage: Option<bool>,
    pub fallback: Option<Fallback>,
    pub prices: Option<Option<Rc<Watched<PriceTable>>>>,
    pub body_limit: Option<usize>,
}

fn inherit<T: Clone>(this: &mut Option<T>, prev: &Option<T>) {
    if this.is_none() {
        this.clone_from(prev);
    }
}

impl UsageConf {
    pub fn inherit_from(&mut self, prev: &UsageConf) {
        inherit(&mut self.api, &prev.api);
        inherit(&mut self.models, &prev.models);
        inherit(&mut self.models_filter, &prev.models_filter);
        inherit(&mut self.meter, &prev.meter);
        inherit(&mut self.stream_usage, &prev.stream_usage);
        inherit(&mut self.fallback, &prev.fallback);
        inherit(&mut self.prices, &prev.prices);
        inherit(&mut self.body_limit, &prev.body_limit);
    }

    /// Whether this location fronts an AI API.
    pub fn enabled(&self) -> bool {
        !matches!(self.api, None | Some(ApiSetting::Off))
    }

    /// The API flavor of a request to `path`.
    pub fn flavor(&self, path: &[u8]) -> Option<ApiFlavor> {
        match self.api? {
            ApiSetting::Off => None,
            ApiSetting::Flavor(f) => Some(f),
            ApiSetting::Auto => {
                Some(if path.ends_with(b"/messages") || path.ends_with(b"/messages/count_tokens") {
                    ApiFlavor::Anthropic
                } else {
                    ApiFlavor::OpenAi
                })
            }
        }
    }

    pub fn rules(&self) -> &[ModelRule] {
        self.models.as_deref().unwrap_or_default()
    }

    /// Metering is on by default where an API is fronted.
    pub fn meters(&self) -> bool {
        self.enabled() && self.meter.unwrap_or(true)
    }

    pub fn adds_stream_usage(&self) -> bool {
        self.meters() && self.stream_usage.unwrap_or(true)
    }

    pub fn filters_models(&self) -> bool {
        self.enabled() && !self.rules().is_empty() && self.models_filter.unwrap_or(true)
    }

    pub fn fallback(&self) -> Fallback {
        self.fallback.unwrap_or(Fallback::Estimate)
    }

    pub fn prices(&self) -> Option<&Watched<PriceTable>> {
        self.prices.as_ref().and_then(|p| p.as_deref())
    }

    pub fn body_limit(&self) -> usize {
        self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT)
    }
}
