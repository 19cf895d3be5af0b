//! Error answers in the AI provider's own format, so that its official SDKs raise their normal
//! errors (`PermissionDeniedError` for 403, `RateLimitError` for 429, ...) and a chat UI shows
//! the message: OpenAI's `{"error":{"message","type","param","code"}}` (also used by Azure
//! OpenAI, vLLM, Ollama and most gateways) and Anthropic's
//! `{"type":"error","error":{"type","message"}}`.

use gpt_auth_core::json::quote;

use crate::conf::usage::ApiFlavor;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// 401: no valid session or API key.
    Unauthenticated,
    /// 403: the user may not use this model.
    ModelNotAllowed,
    /// 429: a budget is used up.
    QuotaExceeded,
    /// 400: the body is not a JSON request of this API.
    BadRequest,
    /// 413: the body is larger than the module reads.
    TooLarge,
}

impl Error {
    fn openai(self) -> (&'static str, &'static str) {
        match self {
            Error::Unauthenticated => ("invalid_request_error", "invalid_api_key"),
            Error::ModelNotAllowed => ("permission_error", "model_not_allowed"),
            Error::QuotaExceeded => ("insufficient_quota", "insufficient_quota"),
            Error::BadRequest => ("invalid_request_error", "invalid_request"),
            Error::TooLarge => ("invalid_request_error", "request_too_large"),
        }
    }

    fn anthropic(self) -> &'static str {
        match self {
            Error::Unauthenticated => "authentication_error",
            Error::ModelNotAllowed => "permission_error",
            Error::QuotaExceeded => "rate_limit_error",
            Error::BadRequest => "invalid_request_error",
            Error::TooLarge => "request_too_large",
        }
    }
}

/// The JSON body of an error answer.
pub fn error_body(flavor: ApiFlavor, e: Error, message: &str) -> String {
    let message = quote(message);
    match flavor {
        ApiFlavor::OpenAi => {
            let (kind, code) = e.openai();
            let param = if e == Error::ModelNotAllowed { "\"model\"" } else { "null" };
            format!(
                "{{\"error\":{{\"message\":{message},\"type\":\"{kind}\",\"param\":{param},\
                 \"code\":\"{code}\"}}}}\n"
            )
        }
        ApiFlavor::Anthropic => format!(
            "{{\"type\":\"error\",\"error\":{{\"type\":\"{}\",\"message\":{message}}}}}\n",
            e.anthropic()
        ),
    }
}
