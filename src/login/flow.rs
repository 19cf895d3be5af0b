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
//! stale login, 401 for a refused token, 502/504 when the provider failed). The steps that talk
//! to the provider are in [`super::provider`]; what happens once the token is genuine is in
//! [`super::session`].

use core::cell::RefCell;
use std::rc::Rc;

use gpt_auth_core::discovery::{self, Discovery};
use gpt_auth_core::idtoken::{self, Expectations, IdTokenError, Jwks};
use gpt_auth_core::state::State;
use nginx_sys::{ngx_int_t, NGX_DONE, NGX_ERROR};
use ngx::http::Request;

use super::fetch::{self, FetchResult, FetchSpec, Purpose};
use super::{provider, session};
use crate::conf::{LocConf, Provider};
use crate::ngx::pool;
use crate::ngx::response::{finalize, hold, set_wake_handler};
use crate::ngx::time::now;
use crate::pages::{self, Page};

pub enum Kind {
    Authorize { return_url: String, prompt: Option<&'static str> },
    Code { state: State, state_cookie: String, code: String },
    Credential { state: State, state_cookie: String, credential: String },
}

/// A login in progress.
pub struct Flow {
    pub provider: Rc<Provider>,
    pub lcf: &'static LocConf,
    pub kind: Kind,
    /// The redirect URI as the provider knows it (absolute).
    pub redirect_uri: String,
    /// The fetch in flight, if any.
    pub fetching: Option<Rc<FetchSpec>>,
    /// Its outcome, once the subrequest has finished.
    pub fetch_result: Option<FetchResult>,
    id_token: Option<String>,
    jwks_refetched: bool,
}

/// Where a waiting flow is kept: the main request's pool, so the fetch's end can find it.
pub struct FlowSlot(pub RefCell<Option<Flow>>);

/// What a step of the flow produced.
pub enum Step {
    /// A fetch was started; the request is suspended until it is done.
    Wait,
    /// The response was sent (or failed): finalize with this.
    Done(ngx_int_t),
}

impl Flow {
    pub fn new(
        provider: Rc<Provider>,
        lcf: &'static LocConf,
        kind: Kind,
        redirect_uri: String,
    ) -> Flow {
        Flow {
            provider,
            lcf,
            kind,
            redirect_uri,
            fetching: None,
            fetch_result: None,
            id_token: None,
            jwks_refetched: false,
        }
    }

    /// Clears the login-state cookie of this login (its answer came: it cannot be used again).
    fn used_up(&self, r: &mut Request) -> Option<()> {
        match &self.kind {
            Kind::Code { state_cookie, .. } | Kind::Credential { state_cookie, .. } => {
                super::state::finish(r, self.lcf, state_cookie)
            }
            Kind::Authorize { .. } => Some(()),
        }
    }

    fn fail(&self, r: &mut Request, page: Page) -> Step {
        Step::Done(pages::error(r, self.lcf, page))
    }
}

/// Starts `flow` for the main request `r`, from a content handler. Returns what the handler
/// returns.
pub fn start(r: &mut Request, flow: Flow) -> ngx_int_t {
    match step(r, flow) {
        Some(Step::Done(rc)) => rc,
        Some(Step::Wait) => {
            // The content phase finalizes with NGX_DONE, dropping one reference: take one.
            hold(r);
            NGX_DONE as ngx_int_t
        }
        None => NGX_ERROR as ngx_int_t,
    }
}

/// Continues a flow in a request that is not in the content phase any more (after reading a
/// body).
pub fn run(r: &mut Request, flow: Flow) {
    match step(r, flow) {
        Some(Step::Done(rc)) => finalize(r, rc),
        Some(Step::Wait) => {}
        None => finalize(r, NGX_ERROR as ngx_int_t),
    }
}

/// Drives `flow` as far as it goes; a flow that waits is parked in the request's slot.
fn step(r: &mut Request, mut flow: Flow) -> Option<Step> {
    let step = drive(r, &mut flow);
    if let Step::Wait = step {
        let slot = match pool::stashed::<FlowSlot>(r) {
            Some(slot) => slot,
            None => pool::stash(r, FlowSlot(RefCell::new(None)))?,
        };
        *slot.0.try_borrow_mut().ok()? = Some(flow);
        set_wake_handler(r, resume);
    }
    Some(step)
}

ngx_entry! {
    /// Wake handler: a fetch finished (or nginx woke the request for another reason).
    event fn resume(r) {
        let Some(slot) = pool::stashed::<FlowSlot>(r) else { return };
        let Ok(mut parked) = slot.0.try_borrow_mut() else { return };
        match parked.take() {
            Some(flow) if flow.fetching.is_some() && flow.fetch_result.is_none() => {
                *parked = Some(flow); // not for us: the fetch is still running
            }
            Some(flow) => {
                drop(parked);
                match step(r, flow) {
                    Some(Step::Done(rc)) => finalize(r, rc),
                    Some(Step::Wait) => {}
                    None => finalize(r, NGX_ERROR as ngx_int_t),
                }
            }
            None => {}
        }
    }
}

/// Starts a fetch and waits for it.
fn wait_for(r: &mut Request, flow: &mut Flow, spec: FetchSpec) -> Step {
    debug!(r, "{} fetch: {} {}", spec.purpose.as_str(), spec.method, spec.url);
    let spec = Rc::new(spec);
    flow.fetching = Some(spec.clone());
    flow.fetch_result = None;
    if !fetch::start(r, &flow.provider.fetch_location, spec) {
        let p = &flow.provider;
        error!(r, "provider \"{}\": cannot start a subrequest to \"{}\"", p.name, p.fetch_location);
        flow.fetching = None;
        return flow.fail(r, Page::ProviderDown);
    }
    Step::Wait
}

fn drive(r: &mut Request, flow: &mut Flow) -> Step {
    let now = now();
    if let Err(page) = take_fetched(r, flow, now) {
        return flow.fail(r, page);
    }
    let provider = flow.provider.clone();
    // Endpoints: configured, or from (cached) discovery.
    let disc = cached_discovery(&provider, now);
    if needs_discovery(flow) && disc.is_none() {
        let url = discovery::well_known_url(&provider.issuer);
        return wait_for(r, flow, FetchSpec::get(Purpose::Discovery, &url));
    }
    if let Kind::Authorize { return_url, prompt } = &flow.kind {
        let Some(endpoint) =
            endpoint(&provider.authorization_endpoint, &disc, |d| &d.authorization_endpoint)
        else {
            return flow.fail(r, Page::ProviderDown);
        };
        let (return_url, prompt) = (return_url.clone(), *prompt);
        return Step::Done(provider::authorize(r, flow, &endpoint, &return_url, prompt, now));
    }
    if matches!(flow.kind, Kind::Code { .. }) && flow.id_token.is_none() {
        let Some(endpoint) = endpoint(&provider.token_endpoint, &disc, |d| &d.token_endpoint)
        else {
            return flow.fail(r, Page::ProviderDown);
        };
        let spec = provider::token_request(flow, &endpoint);
        return wait_for(r, flow, spec);
    }
    let jwks = match &provider.jwks_file {
        Some(j) => j.clone(),
        None => match cached_jwks(&provider, now) {
            Some(j) => j,
            None => {
                let Some(uri) = endpoint(&provider.jwks_uri, &disc, |d| &d.jwks_uri) else {
                    return flow.fail(r, Page::ProviderDown);
                };
                return wait_for(r, flow, FetchSpec::get(Purpose::Jwks, &uri));
            }
        },
    };
    verify(r, flow, &jwks, now)
}

/// Takes in the fetch that just finished, if any.
fn take_fetched(r: &mut Request, flow: &mut Flow, now: u64) -> Result<(), Page> {
    let (Some(spec), Some(res)) = (flow.fetching.take(), flow.fetch_result.take()) else {
        return Ok(());
    };
    if let Some(id_token) = provider::absorb(r, &flow.provider, &spec, res, now)? {
        flow.id_token = Some(id_token);
    }
    Ok(())
}

fn needs_discovery(flow: &Flow) -> bool {
    let p = &flow.provider;
    let keys_known = p.jwks_file.is_some() || p.jwks_uri.is_some();
    match flow.kind {
        Kind::Authorize { .. } => p.authorization_endpoint.is_none(),
        Kind::Code { .. } => p.token_endpoint.is_none() || !keys_known,
        Kind::Credential { .. } => !keys_known,
    }
}

/// A configured endpoint, or the discovered one.
fn endpoint(
    configured: &Option<String>,
    disc: &Option<Rc<Discovery>>,
    discovered: fn(&Discovery) -> &String,
) -> Option<String> {
    match (configured, disc) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(d)) => Some(discovered(d).clone()),
        (None, None) => None,
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

/// Verifies the ID token; a token signed with a key not in the set refetches the set once.
fn verify(r: &mut Request, flow: &mut Flow, jwks: &Jwks, now: u64) -> Step {
    let provider = flow.provider.clone();
    let (token, nonce) = match &flow.kind {
        Kind::Credential { credential, state, .. } => (credential.clone(), state.nonce.clone()),
        Kind::Code { state, .. } => {
            (flow.id_token.clone().unwrap_or_default(), state.nonce.clone())
        }
        Kind::Authorize { .. } => return Step::Done(NGX_ERROR as ngx_int_t),
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
    match idtoken::verify(&token, jwks, &expect) {
        Ok(claims) => Step::Done(session::signed_in(r, flow, claims, now)),
        Err(IdTokenError::UnknownKey(kid))
            if provider.jwks_file.is_none() && !flow.jwks_refetched =>
        {
            if !provider.cache.borrow_mut().refetch.allow(now) {
                info!(
                    r,
                    "login refused: provider \"{}\": ID token signed with unknown key \"{}\" \
                     (key set refetched less than a minute ago)",
                    provider.name,
                    kid
                );
                if flow.used_up(r).is_none() {
                    return Step::Done(NGX_ERROR as ngx_int_t);
                }
                return flow.fail(r, Page::BadToken);
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
            // The login is used up: its state cookie goes, as after any answer to it.
            if flow.used_up(r).is_none() {
                return Step::Done(NGX_ERROR as ngx_int_t);
            }
            let page = match e {
                IdTokenError::EmailNotVerified => Page::Unverified,
                _ => Page::BadToken,
            };
            flow.fail(r, page)
        }
    }
}
