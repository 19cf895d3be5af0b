//! The login flow, as a small state machine that may wait for fetches from the provider:
//!
//! - `Authorize`: send the browser to the provider's authorization endpoint (needs the endpoint:
//!   configured, or from discovery);
//! - `Code`: finish an authorization code flow (token exchange, then the ID token);
//! - `Credential`: finish a Google Identity Services credential POST (the ID token).
//!
//! Each step that needs the provider starts a fetch subrequest and suspends the request; when
//! the fetch is done nginx wakes the request and [`resume`] continues where it stopped. Every
//! outcome is a response: a redirect, the not-allowed page, or an error page (400 for a broken or
//! stale login, 401 for a refused token, 502/504 when the provider failed).

use std::rc::Rc;

use gpt_auth_core::discovery::{self, Discovery};
use gpt_auth_core::idtoken::{self, Claims, Expectations, IdTokenError, Jwks};
use gpt_auth_core::jwks_cache::{expiry, DEFAULT_TTL, MAX_TTL, MIN_TTL};
use gpt_auth_core::log_safe::log_safe;
use gpt_auth_core::state::{self, State};
use gpt_auth_core::token_response::{self, TokenResponseError};
use gpt_auth_core::url::percent_encode_into;
use gpt_auth_core::{pkce, session, set_cookie};
use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_ERROR};

use crate::conf::LocConf;
use crate::fetch::{self, FetchResult, FetchSpec, Purpose};
use crate::ngx_ext::{add_response_header, finalize, guard, now, set_wake_handler};
use crate::pages::{self, Page};
use crate::provider::{Provider, TokenAuth};
use crate::{ctx, login_state, random};

/// How long a login may take from the login page to the callback.
pub const STATE_TTL: u64 = 600;

pub enum Kind {
    Authorize { return_url: String, prompt: Option<&'static str> },
    Code { state: State, state_cookie: String, code: String },
    Credential { state: State, state_cookie: String, credential: String },
}

/// A login in progress; owned by the main request's pool.
pub struct Flow {
    pub provider: Rc<Provider>,
    pub lcf: *const LocConf,
    pub kind: Kind,
    /// The redirect URI as the provider knows it (absolute).
    pub redirect_uri: String,
    /// Every fetch made, the last one current; kept until the request ends because the
    /// `$gpt_auth_fetch_*` variables of its subrequest point into it (boxed: addresses must not
    /// move when the vector grows).
    #[allow(clippy::vec_box)]
    pub fetches: Vec<Box<FetchSpec>>,
    /// A fetch is in flight.
    pub waiting: bool,
    pub fetch_result: Option<FetchResult>,
    id_token: Option<String>,
    jwks_refetched: bool,
}

/// What a step of the flow produced.
pub enum Step {
    /// A fetch was started; the request is suspended until it is done.
    Wait,
    /// The response was sent (or failed): finalize with this.
    Done(ngx_int_t),
}

impl Flow {
    pub fn new(provider: Rc<Provider>, lcf: &LocConf, kind: Kind, redirect_uri: String) -> Flow {
        Flow {
            provider,
            lcf,
            kind,
            redirect_uri,
            fetches: Vec::new(),
            waiting: false,
            fetch_result: None,
            id_token: None,
            jwks_refetched: false,
        }
    }

    fn lcf(&self) -> &LocConf {
        // SAFETY: location configurations live as long as the configuration cycle, which
        // outlives every request.
        unsafe { &*self.lcf }
    }
}

/// Starts `flow` for the main request `r`, from a content handler. Returns what the handler
/// returns.
pub fn start(r: &mut ngx_http_request_t, flow: Flow) -> ngx_int_t {
    let Some(flow) = crate::ngx_ext::pool_box(r, flow) else { return NGX_ERROR as ngx_int_t };
    let Some(c) = ctx::get_or_create(r) else { return NGX_ERROR as ngx_int_t };
    c.flow = flow;
    match drive(r, flow) {
        Step::Done(rc) => rc,
        Step::Wait => {
            // The content phase finalizes with NGX_DONE, dropping one reference: take one.
            crate::ngx_ext::hold(r);
            nginx_sys::NGX_DONE as ngx_int_t
        }
    }
}

/// Continues a flow in a request that is not in the content phase any more (after reading a
/// body, or woken after a fetch).
pub fn run(r: &mut ngx_http_request_t, flow: Flow) {
    let Some(flow) = crate::ngx_ext::pool_box(r, flow) else {
        return finalize(r, NGX_ERROR as ngx_int_t);
    };
    let Some(c) = ctx::get_or_create(r) else { return finalize(r, NGX_ERROR as ngx_int_t) };
    c.flow = flow;
    if let Step::Done(rc) = drive(r, flow) {
        finalize(r, rc);
    }
}

/// Wake handler: a fetch finished.
extern "C" fn resume(r: *mut ngx_http_request_t) {
    guard((), || {
        // SAFETY: nginx calls the write event handler with the live main request.
        let r = unsafe { &mut *r };
        let Some(flow) = ctx::get(r).and_then(|c| unsafe { c.flow.as_mut() }) else { return };
        if flow.waiting && flow.fetch_result.is_none() {
            return; // not for us: the fetch is still running
        }
        if let Step::Done(rc) = drive(r, flow) {
            finalize(r, rc);
        }
    })
}

fn wait_for(r: &mut ngx_http_request_t, flow: &mut Flow, spec: FetchSpec) -> Step {
    debug!(r, "{} fetch: {} {}", spec.purpose.as_str(), spec.method, spec.url);
    flow.fetches.push(Box::new(spec));
    flow.waiting = true;
    let location = flow.provider.fetch_location.clone();
    if !fetch::start(r, &location, flow) {
        error!(
            r,
            "provider \"{}\": cannot start a subrequest to \"{}\"", flow.provider.name, location
        );
        flow.waiting = false;
        return Step::Done(pages::error(r, flow.lcf(), Page::ProviderDown));
    }
    set_wake_handler(r, resume);
    Step::Wait
}

fn drive(r: &mut ngx_http_request_t, flow: &mut Flow) -> Step {
    let now = now();
    if flow.waiting {
        let (Some(res), Some(spec)) = (flow.fetch_result.take(), flow.fetches.last()) else {
            return Step::Wait;
        };
        flow.waiting = false;
        match absorb(r, &flow.provider, spec, res, now) {
            Ok(Some(id_token)) => flow.id_token = Some(id_token),
            Ok(None) => {}
            Err(page) => return Step::Done(pages::error(r, flow.lcf(), page)),
        }
    }

    let provider = flow.provider.clone();
    let need_token = matches!(flow.kind, Kind::Code { .. });

    // Endpoints: configured, or from (cached) discovery.
    let disc = cached_discovery(&provider, now);
    let keys_known = provider.jwks_file.is_some() || provider.jwks_uri.is_some();
    let needs_disc = match flow.kind {
        Kind::Authorize { .. } => provider.authorization_endpoint.is_none(),
        Kind::Code { .. } => provider.token_endpoint.is_none() || !keys_known,
        Kind::Credential { .. } => !keys_known,
    };
    if needs_disc && disc.is_none() {
        let url = discovery::well_known_url(&provider.issuer);
        return wait_for(r, flow, FetchSpec::get(Purpose::Discovery, &url));
    }

    if let Kind::Authorize { return_url, prompt } = &flow.kind {
        let endpoint = match (&provider.authorization_endpoint, &disc) {
            (Some(e), _) => e.clone(),
            (None, Some(d)) => d.authorization_endpoint.clone(),
            (None, None) => return Step::Done(pages::error(r, flow.lcf(), Page::ProviderDown)),
        };
        let (return_url, prompt) = (return_url.clone(), *prompt);
        return Step::Done(authorize(r, flow, &endpoint, &return_url, prompt, now));
    }

    if need_token && flow.id_token.is_none() {
        let endpoint = match (&provider.token_endpoint, &disc) {
            (Some(e), _) => e.clone(),
            (None, Some(d)) => d.token_endpoint.clone(),
            (None, None) => return Step::Done(pages::error(r, flow.lcf(), Page::ProviderDown)),
        };
        let spec = token_request(flow, &endpoint);
        return wait_for(r, flow, spec);
    }

    let jwks = match &provider.jwks_file {
        Some(j) => j.clone(),
        None => match cached_jwks(&provider, now) {
            Some(j) => j,
            None => {
                let uri = match (&provider.jwks_uri, &disc) {
                    (Some(u), _) => u.clone(),
                    (None, Some(d)) => d.jwks_uri.clone(),
                    (None, None) => {
                        return Step::Done(pages::error(r, flow.lcf(), Page::ProviderDown))
                    }
                };
                return wait_for(r, flow, FetchSpec::get(Purpose::Jwks, &uri));
            }
        },
    };

    let token = match &flow.kind {
        Kind::Credential { credential, .. } => credential.clone(),
        _ => flow.id_token.clone().unwrap_or_default(),
    };
    let nonce = match &flow.kind {
        Kind::Code { state, .. } | Kind::Credential { state, .. } => state.nonce.clone(),
        Kind::Authorize { .. } => String::new(),
    };
    let issuers = provider.accepted_issuers();
    let expect = Expectations {
        issuers: &issuers,
        client_id: &provider.client_id,
        nonce: Some(&nonce),
        now,
        leeway: provider.leeway,
        hosted_domains: &provider.hosted_domains,
    };
    match idtoken::verify(&token, &jwks, &expect) {
        Ok(claims) => Step::Done(signed_in(r, flow, claims, now)),
        Err(IdTokenError::UnknownKey(kid))
            if provider.jwks_file.is_none() && !flow.jwks_refetched =>
        {
            let allowed = provider.cache.borrow_mut().refetch.allow(now);
            if !allowed {
                info!(
                    r,
                    "login refused: provider \"{}\": ID token signed with unknown key \"{}\" \
                     (key set refetched less than a minute ago)",
                    provider.name,
                    kid
                );
                return Step::Done(pages::error(r, flow.lcf(), Page::BadToken));
            }
            info!(
                r,
                "provider \"{}\": ID token signed with unknown key \"{}\", refetching the key set",
                provider.name,
                kid
            );
            flow.jwks_refetched = true;
            provider.cache.borrow_mut().jwks = None;
            drive(r, flow)
        }
        Err(e) => {
            info!(r, "login refused: provider \"{}\": ID token {}", provider.name, e);
            Step::Done(pages::error(r, flow.lcf(), Page::BadToken))
        }
    }
}

fn cached_discovery(p: &Provider, now: u64) -> Option<Rc<Discovery>> {
    match &p.cache.borrow().discovery {
        Some((d, exp)) if *exp > now => Some(d.clone()),
        _ => None,
    }
}

fn cached_jwks(p: &Provider, now: u64) -> Option<Rc<Jwks>> {
    match &p.cache.borrow().jwks {
        Some((j, exp)) if *exp > now => Some(j.clone()),
        _ => None,
    }
}

/// Takes in a finished fetch: caches discovery and keys, returns the ID token of a token
/// response. Errors are logged here (one line) and name the page to show.
fn absorb(
    r: &mut ngx_http_request_t,
    p: &Provider,
    spec: &FetchSpec,
    res: FetchResult,
    now: u64,
) -> Result<Option<String>, Page> {
    let what = spec.purpose.as_str();
    let fail = |why: String, page: Page| {
        error!(
            r,
            "provider \"{}\": {} \"{}\" failed: {}",
            p.name,
            what,
            log_safe(&spec.url, 200),
            why
        );
        page
    };
    if spec.purpose == Purpose::Token && (400..500).contains(&res.status) {
        // The provider refused the exchange: say why (invalid_grant: code reused or expired).
        return match token_response::parse(&res.body) {
            Err(TokenResponseError::Provider { error, description }) => {
                let d = description.map(|d| format!(" ({d})")).unwrap_or_default();
                if error == "invalid_grant" {
                    info!(
                        r,
                        "login refused: provider \"{}\": code rejected: {}{}", p.name, error, d
                    );
                    Err(Page::StaleLogin)
                } else {
                    Err(fail(format!("status {}: {}{}", res.status, error, d), Page::ProviderDown))
                }
            }
            _ => Err(fail(format!("status {}", res.status), Page::ProviderDown)),
        };
    }
    if res.broken {
        return Err(fail(
            "no complete response (larger than subrequest_output_buffer_size, or the \
             connection broke)"
                .into(),
            Page::ProviderDown,
        ));
    }
    if res.status == nginx_sys::NGX_HTTP_GATEWAY_TIME_OUT as usize {
        return Err(fail("timed out".into(), Page::ProviderTimeout));
    }
    if !(200..300).contains(&res.status) {
        return Err(fail(format!("status {}", res.status), Page::ProviderDown));
    }
    if res.cut_off {
        return Err(fail(
            format!(
                "response cut off after {} bytes (the connection closed early)",
                res.body.len()
            ),
            Page::ProviderDown,
        ));
    }
    match spec.purpose {
        Purpose::Discovery => {
            let d = discovery::parse(&res.body, &p.issuer)
                .map_err(|e| fail(e.to_string(), Page::ProviderDown))?;
            let exp = expiry(now, res.cache_control.as_deref(), MIN_TTL, MAX_TTL, DEFAULT_TTL);
            p.cache.borrow_mut().discovery = Some((Rc::new(d), exp));
        }
        Purpose::Jwks => {
            let j = Jwks::parse(&res.body).map_err(|e| fail(e.to_string(), Page::ProviderDown))?;
            let exp = expiry(now, res.cache_control.as_deref(), MIN_TTL, MAX_TTL, DEFAULT_TTL);
            debug!(r, "provider \"{}\": {} keys, cached until {}", p.name, j.len(), exp);
            p.cache.borrow_mut().jwks = Some((Rc::new(j), exp));
        }
        Purpose::Token => {
            let t = token_response::parse(&res.body)
                .map_err(|e| fail(e.to_string(), Page::ProviderDown))?;
            return Ok(Some(t.id_token));
        }
    }
    Ok(None)
}

fn form_pair(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    percent_encode_into(out, name.as_bytes());
    out.push('=');
    percent_encode_into(out, value.as_bytes());
}

fn token_request(flow: &Flow, endpoint: &str) -> FetchSpec {
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
fn authorize(
    r: &mut ngx_http_request_t,
    flow: &Flow,
    endpoint: &str,
    return_url: &str,
    prompt: Option<&'static str>,
    now: u64,
) -> ngx_int_t {
    let lcf = flow.lcf();
    let p = &flow.provider;
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
    let url = format!("{endpoint}{sep}{q}");
    debug!(r, "login via provider \"{}\", state {}", p.name, sid);
    pages::redirect(r, &url)
}

/// The ID token is genuine: check the allowlist, set the session, go back.
fn signed_in(r: &mut ngx_http_request_t, flow: &Flow, claims: Claims, now: u64) -> ngx_int_t {
    let lcf = flow.lcf();
    let p = &flow.provider;
    let (state, state_cookie) = match &flow.kind {
        Kind::Code { state, state_cookie, .. } | Kind::Credential { state, state_cookie, .. } => {
            (state, state_cookie)
        }
        Kind::Authorize { .. } => return NGX_ERROR as ngx_int_t,
    };
    // The login is used up either way.
    if login_state::finish(r, lcf, state_cookie).is_none() {
        return NGX_ERROR as ngx_int_t;
    }

    let email = claims.email;
    if let Some(list) = lcf.allowlist() {
        let log = crate::log::as_log_ptr(&*r as &ngx_http_request_t);
        if !list.allows(email.as_bytes(), now, log) {
            info!(
                r,
                "login refused: \"{}\" (provider \"{}\") is not on the allowlist \"{}\"",
                email,
                p.name,
                list.path()
            );
            let switch = pages::Switch {
                return_url: &state.return_url,
                code_flow_provider: p.code_flow().then_some(p.name.as_str()),
            };
            return pages::not_allowed(r, lcf, &email, Some(switch));
        }
    }
    let Some(keys) = &lcf.keys else { return NGX_ERROR as ngx_int_t };
    let max_age = lcf.max_age();
    let value =
        session::encode(keys.ring.signing_key(), lcf.cookie_name(), &email, now, now + max_age);
    let header = set_cookie::set(lcf.cookie_name(), &value, max_age, &lcf.session_cookie_attrs());
    if add_response_header(r, "Set-Cookie", header.as_bytes()).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    info!(r, "login: \"{}\" signed in via provider \"{}\"", email, p.name);
    pages::redirect(r, &state.return_url)
}
