//! The login's exchanges with the provider: the authorization redirect, the token request, and
//! taking in what a fetch brought back (discovery and keys are cached per worker).

use gpt_auth_core::discovery;
use gpt_auth_core::idtoken::Jwks;
use gpt_auth_core::jwks_cache::{expiry, DEFAULT_TTL, MAX_TTL, MIN_TTL};
use gpt_auth_core::log_safe::log_safe;
use gpt_auth_core::pkce;
use gpt_auth_core::state::{self, State};
use gpt_auth_core::token_response::{self, TokenResponseError};
use gpt_auth_core::url::percent_encode_into;
use nginx_sys::{ngx_int_t, NGX_ERROR, NGX_HTTP_GATEWAY_TIME_OUT};
use ngx::http::Request;
use std::rc::Rc;

use super::fetch::{FetchResult, FetchSpec, Purpose};
use super::flow::{Flow, Kind};
use super::{random, state as login_state};
use crate::conf::provider::TokenAuth;
use crate::conf::Provider;
use crate::pages::{self, Page};

/// How long a login may take from the login page to the callback.
pub const STATE_TTL: u64 = 600;

/// Takes in a finished fetch: caches discovery and keys, returns the ID token of a token
/// response. Errors are logged here (one line) and name the page to show.
pub fn absorb(
    r: &Request,
    p: &Provider,
    spec: &FetchSpec,
    res: FetchResult,
    now: u64,
) -> Result<Option<String>, Page> {
    let fail = |why: String, page: Page| {
        let url = log_safe(&spec.url, 200);
        error!(r, "provider \"{}\": {} \"{}\" failed: {}", p.name, spec.purpose.as_str(), url, why);
        page
    };
    if spec.purpose == Purpose::Token && (400..500).contains(&res.status) {
        return Err(token_refused(r, p, &res, fail));
    }
    if res.broken {
        let why = "no complete response (larger than subrequest_output_buffer_size, or the \
                   connection broke)";
        return Err(fail(why.into(), Page::ProviderDown));
    }
    if res.status == NGX_HTTP_GATEWAY_TIME_OUT as usize {
        return Err(fail("timed out".into(), Page::ProviderTimeout));
    }
    if !(200..300).contains(&res.status) {
        return Err(fail(format!("status {}", res.status), Page::ProviderDown));
    }
    if res.cut_off {
        let why = format!(
            "response cut off after {} bytes (the connection closed early)",
            res.body.len()
        );
        return Err(fail(why, Page::ProviderDown));
    }
    let exp = || expiry(now, res.cache_control.as_deref(), MIN_TTL, MAX_TTL, DEFAULT_TTL);
    match spec.purpose {
        Purpose::Discovery => {
            let d = discovery::parse(&res.body, &p.issuer)
                .map_err(|e| fail(e.to_string(), Page::ProviderDown))?;
            p.cache.borrow_mut().discovery = Some((Rc::new(d), exp()));
        }
        Purpose::Jwks => {
            let j = Jwks::parse(&res.body).map_err(|e| fail(e.to_string(), Page::ProviderDown))?;
            debug!(r, "provider \"{}\": {} keys, cached until {}", p.name, j.len(), exp());
            p.cache.borrow_mut().jwks = Some((Rc::new(j), exp()));
        }
        Purpose::Token => {
            let t = token_response::parse(&res.body)
                .map_err(|e| fail(e.to_string(), Page::ProviderDown))?;
            return Ok(Some(t.id_token));
        }
    }
    Ok(None)
}

/// The provider refused the code exchange: say why (`invalid_grant`: code reused or expired).
fn token_refused(
    r: &Request,
    p: &Provider,
    res: &FetchResult,
    fail: impl Fn(String, Page) -> Page,
) -> Page {
    match token_response::parse(&res.body) {
        Err(TokenResponseError::Provider { error, description }) => {
            let d = description.map(|d| format!(" ({d})")).unwrap_or_default();
            if error == "invalid_grant" {
                info!(r, "login refused: provider \"{}\": code rejected: {}{}", p.name, error, d);
                Page::StaleLogin
            } else {
                fail(format!("status {}: {}{}", res.status, error, d), Page::ProviderDown)
            }
        }
        _ => fail(format!("status {}", res.status), Page::ProviderDown),
    }
}

pub fn form_pair(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    percent_encode_into(out, name.as_bytes());
    out.push('=');
    percent_encode_into(out, value.as_bytes());
}

/// The token request of a code flow (with the PKCE verifier), authenticated as configured.
pub fn token_request(flow: &Flow, endpoint: &str) -> FetchSpec {
    let p = &flow.provider;
    let Kind::Code { state, code, .. } = &flow.kind else {
        return FetchSpec::get(Purpose::Token, endpoint);
    };
    let mut body = String::with_capacity(512);
    form_pair(&mut body, "grant_type", "authorization_code");
    form_pair(&mut body, "code", code);
    form_pair(&mut body, "redirect_uri", &flow.redirect_uri);
    form_pair(&mut body, "code_verifier", &state.verifier);
    let secret = p.client_secret.as_deref().unwrap_or_default();
    let authorization = match p.token_auth {
        TokenAuth::ClientSecretBasic => {
            // RFC 6749 §2.3.1: form-encode id and secret, then base64.
            let mut creds = String::new();
            percent_encode_into(&mut creds, p.client_id.as_bytes());
            creds.push(':');
            percent_encode_into(&mut creds, secret.as_bytes());
            use base64::Engine;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(creds))
        }
        TokenAuth::ClientSecretPost => {
            form_pair(&mut body, "client_id", &p.client_id);
            form_pair(&mut body, "client_secret", secret);
            String::new()
        }
    };
    FetchSpec::post_form(Purpose::Token, endpoint, body, authorization)
}

/// Sends the browser to the provider, with a fresh state cookie for this login.
pub fn authorize(
    r: &mut Request,
    flow: &Flow,
    endpoint: &str,
    return_url: &str,
    prompt: Option<&'static str>,
    now: u64,
) -> ngx_int_t {
    let (lcf, p) = (flow.lcf, &flow.provider);
    let Some(keys) = &lcf.keys else { return NGX_ERROR as ngx_int_t };
    let Some((sid, nonce, verifier)) = random::login_secrets() else {
        error!(r, "no randomness available for a login");
        return NGX_ERROR as ngx_int_t;
    };
    let st = State {
        sid: sid.clone(),
        nonce: nonce.clone(),
        verifier: verifier.clone(),
        return_url: return_url.to_owned(),
        provider: p.name.clone(),
        exp: now + STATE_TTL,
    };
    // Cannot fail for a checked return address (at most 1024 bytes); refuse politely if it does.
    if state::encode(keys.ring.signing_key(), "", &st).is_err() {
        info!(r, "login refused: return address too long");
        return pages::error(r, lcf, Page::StaleLogin);
    }
    if login_state::start(r, lcf, &st, false, now).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    let mut q = String::with_capacity(512);
    form_pair(&mut q, "response_type", "code");
    form_pair(&mut q, "client_id", &p.client_id);
    form_pair(&mut q, "redirect_uri", &flow.redirect_uri);
    form_pair(&mut q, "scope", &p.scope);
    form_pair(&mut q, "state", &sid);
    form_pair(&mut q, "nonce", &nonce);
    form_pair(&mut q, "code_challenge", &pkce::challenge_s256(&verifier));
    form_pair(&mut q, "code_challenge_method", pkce::METHOD);
    if let Some(prompt) = prompt {
        form_pair(&mut q, "prompt", prompt);
    }
    if let [hd] = p.hosted_domains.as_slice() {
        form_pair(&mut q, "hd", hd);
    }
    if !p.extra_auth_args.is_empty() {
        q.push('&');
        q.push_str(&p.extra_auth_args);
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    debug!(r, "login via provider \"{}\", state {}", p.name, sid);
    pages::redirect(r, &format!("{endpoint}{sep}{q}"))
}
