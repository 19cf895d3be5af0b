//! The decision for one request: is there a valid session, and may its user pass?
//!
//! Computed at most once per request and location (by the access handler, or earlier by a
//! variable such as `limit_req_zone $gpt_auth_email` in the preaccess phase) and kept in the
//! main request's module context, so subrequests see the main request's user. This is the
//! per-request hot path: nothing here allocates on the heap.

use core::ptr;

use gpt_auth_core::api_key::{self, ApiKeyError};
use gpt_auth_core::session::SessionError;
use gpt_auth_core::session_cache::Memo;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, Request};

use crate::conf::LocConf;
use crate::files::WatchedAllowlist;
use crate::ngx::pool::{self, PoolStr};
use crate::ngx::time::now;
use crate::ngx::RequestExt;
use crate::GptAuthModule;

/// At most this many cookies with our name are tried per request (a client can send many).
const MAX_CANDIDATES: usize = 8;

/// Why a request passed or not; `$gpt_auth_result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Missing,
    Invalid,
    Expired,
    NotAllowed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Missing => "missing",
            Outcome::Invalid => "invalid",
            Outcome::Expired => "expired",
            Outcome::NotAllowed => "not_allowed",
        }
    }
}

/// The decision for one request under one location configuration.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// The configuration this was computed under (a `rewrite ... last` may change location).
    lcf: &'static LocConf,
    pub outcome: Outcome,
    /// The session's user, copied into the request pool (also set when not allowed, for the
    /// refusal page and log).
    email: Option<PoolStr>,
    /// Why the (best) candidate cookie, or the API key, was refused.
    pub error: Option<Refused>,
    /// The user came with a personal API key (not a session cookie).
    pub via_key: bool,
}

/// Why a credential was refused (safe to log: never the credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Cookie(SessionError),
    #[error("{0}")]
    Key(ApiKeyError),
    #[error("API key revoked or unknown to the zone")]
    KeyRevoked,
    /// The key was made before its owner's time in the `gpt_auth_revoked` file.
    #[error("API key revoked (made before the time in the revocation list)")]
    KeyRevokedByList,
    /// The session was issued before its user's time in the `gpt_auth_revoked` file.
    #[error("session revoked (issued before the time in the revocation list)")]
    SessionRevoked,
}

impl Verdict {
    /// The location configuration it was computed under.
    pub fn location(&self) -> &'static LocConf {
        self.lcf
    }

    /// The session's user (valid UTF-8: only verified addresses are stored).
    pub fn email(&self) -> Option<&str> {
        self.email.as_ref().and_then(|e| core::str::from_utf8(e.as_bytes()).ok())
    }

    pub fn email_bytes(&self) -> Option<&[u8]> {
        self.email.as_ref().map(PoolStr::as_bytes)
    }

    /// The user, in the request pool, when they may pass (a copy of the handle: the access
    /// handler's hot path keeps no borrow of the verdict).
    pub fn allowed_user(&self) -> Option<PoolStr> {
        self.email.filter(|_| self.outcome == Outcome::Allowed)
    }

    /// The user when they may pass; `$gpt_auth_email`.
    pub fn allowed_email(&self) -> Option<&[u8]> {
        self.email_bytes().filter(|_| self.outcome == Outcome::Allowed)
    }
}

/// The verdict of this (main) request, if one was computed.
pub fn stored(r: &Request) -> Option<&Verdict> {
    // SAFETY: this module's context slot only ever holds a Verdict (set below).
    unsafe { pool::module_ctx::<Verdict>(r, GptAuthModule::module()) }
}

/// The verdict for `r` under `lcf`, computed at most once per request and location, and kept
/// in the main request's context.
pub fn verdict<'r>(r: &'r Request, lcf: &'static LocConf) -> Option<&'r Verdict> {
    let main = r.main_request();
    match stored(main) {
        Some(v) if ptr::eq(v.lcf, lcf) => Some(v),
        _ => {
            let v = compute(main, lcf)?;
            // SAFETY: as in `stored`: the slot's one type.
            unsafe { pool::set_module_ctx(main, GptAuthModule::module(), v) }
        }
    }
}

/// The verdict already computed for this request, or one computed now if the current location
/// can verify sessions; `None` when neither.
pub fn current(r: &Request) -> Option<&Verdict> {
    if let Some(v) = stored(r.main_request()) {
        return Some(v);
    }
    let lcf = GptAuthModule::location_conf(r)?;
    lcf.keys.as_ref()?;
    verdict(r, lcf)
}

/// `None` only when out of memory.
fn compute(r: &Request, lcf: &'static LocConf) -> Option<Verdict> {
    let mut v =
        Verdict { lcf, outcome: Outcome::Missing, email: None, error: None, via_key: false };
    let (Some(keys), Some(cookie)) = (&lcf.keys, &lcf.session_cookie) else { return Some(v) };
    let now = now();
    // Verified values are cached per worker and key file: a session's later requests skip the
    // HMAC (see gpt_auth_core::session_cache).
    let Ok(mut cache) = keys.cache.try_borrow_mut() else { return Some(v) };
    let mut tried = 0;
    for header in r.cookies() {
        let mut from = 0;
        while let Some((candidate, next)) = cookie.finder.next_value(header, from) {
            from = next;
            tried += 1;
            match cache.decode(&keys.ring, &cookie.name, candidate, now, lcf.max_age()) {
                Ok(verified)
                    if lcf.revoked().is_some_and(|list| {
                        list.revokes(verified.email.as_bytes(), verified.iat, now, r.log_ptr())
                    }) =>
                {
                    debug!(r, "session cookie candidate {} revoked", tried);
                    v.outcome = Outcome::Invalid;
                    v.error = Some(Refused::SessionRevoked);
                }
                Ok(verified) => {
                    let email = verified.email.as_bytes();
                    debug!(
                        r,
                        "session of \"{}\" valid until {}",
                        verified.email.as_str(),
                        verified.exp
                    );
                    v.outcome = match lcf.allowlist() {
                        Some(list) if !allowed(r, list, email, verified.memo, now) => {
                            Outcome::NotAllowed
                        }
                        _ => Outcome::Allowed,
                    };
                    v.email = Some(PoolStr::copy(r, email)?);
                    v.error = None;
                    return Some(v);
                }
                Err(e) => {
                    debug!(r, "session cookie candidate {} refused: {}", tried, e);
                    // Report an expired (genuine) cookie over a broken one.
                    let prev = match v.error {
                        Some(Refused::Cookie(p)) => Some(p),
                        _ => None,
                    };
                    // A revoked (genuine) session is said over any broken candidate.
                    let revoked = v.error == Some(Refused::SessionRevoked);
                    if !revoked && prev.is_none_or(|prev| e.is_expired() && !prev.is_expired()) {
                        v.error = Some(Refused::Cookie(e));
                        v.outcome =
                            if e.is_expired() { Outcome::Expired } else { Outcome::Invalid };
                    }
                }
            }
            if tried >= MAX_CANDIDATES {
                break;
            }
        }
        if tried >= MAX_CANDIDATES {
            break;
        }
    }
    match lcf.bearer_zone() {
        Some(zone) => bearer(r, lcf, zone, &keys.ring, v, now),
        None => Some(v),
    }
}

/// The owner of the API key this request was admitted with, and its zone: kept in the
/// request's pool, because the access check runs again after an internal redirect (`index`,
/// `try_files`, `error_page`) and by then the key's headers are hidden from the upstream.
#[derive(Clone, Copy)]
pub struct KeyOwner {
    pub owner: PoolStr,
    pub zone: &'static str,
}

/// `Authorization: Bearer <key>` (or Anthropic's `x-api-key: <key>`) with one of the module's
/// personal API keys, for a request without a valid session: its signature, then its record in
/// the zone (revoked keys have none).
fn bearer(
    r: &Request,
    lcf: &'static LocConf,
    zone: &str,
    ring: &gpt_auth_core::keys::KeyRing,
    mut v: Verdict,
    now: u64,
) -> Option<Verdict> {
    let token = r.headers().find_map(|(name, value)| match name {
        b"authorization" => value
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case(b"bearer "))
            .map(|_| value[7..].trim_ascii()),
        b"x-api-key" => Some(value.trim_ascii()),
        _ => None,
    });
    let Some(token) = token.filter(|t| api_key::is_ours(t)) else {
        // Admitted with a key of this zone before an internal redirect (the headers are gone).
        if let Some(k) = pool::stashed::<KeyOwner>(r).filter(|k| k.zone == zone) {
            let email = k.owner.as_bytes();
            v.outcome = match lcf.allowlist() {
                Some(list) if !list.allows(email, now, r.log_ptr()) => Outcome::NotAllowed,
                _ => Outcome::Allowed,
            };
            v.email = Some(k.owner);
            v.via_key = true;
        }
        return Some(v);
    };
    let key = match api_key::decode(ring, token) {
        Ok(k) => k,
        Err(e) => {
            v.outcome = Outcome::Invalid;
            v.error = Some(Refused::Key(e));
            return Some(v);
        }
    };
    let created = GptAuthModule::main_conf(r)
        .and_then(|m| m.quota_zone(zone))
        .and_then(|z| crate::quota::keys::check(z, &key.id, &key.email, now));
    let Some(created) = created else {
        v.outcome = Outcome::Invalid;
        v.error = Some(Refused::KeyRevoked);
        return Some(v);
    };
    // An offboarding revokes the user's keys made up to its time, like their sessions.
    if lcf.revoked().is_some_and(|l| l.revokes(key.email.as_bytes(), created, now, r.log_ptr())) {
        v.outcome = Outcome::Invalid;
        v.error = Some(Refused::KeyRevokedByList);
        return Some(v);
    }
    let email = key.email.as_bytes();
    v.outcome = match lcf.allowlist() {
        Some(list) if !list.allows(email, now, r.log_ptr()) => Outcome::NotAllowed,
        _ => Outcome::Allowed,
    };
    v.email = Some(PoolStr::copy(r, email)?);
    v.error = None;
    v.via_key = true;
    debug!(r, "API key {} of \"{}\"", api_key::id_hint(key.id_str()), key.email.as_str());
    Some(v)
}

/// The allowlist's answer for a verified session, remembered with the session in the cache for
/// as long as the list (this file, this version) stays the same.
fn allowed(
    r: &Request,
    list: &WatchedAllowlist,
    email: &[u8],
    memo: Option<&mut Option<Memo>>,
    now: u64,
) -> bool {
    let log = r.log_ptr();
    let (id, version) = list.version(now, log);
    match memo {
        Some(Some(m)) if m.list == id && m.version == version => m.allowed,
        Some(slot) => {
            let allowed = list.allows(email, now, log);
            *slot = Some(Memo { list: id, version, allowed });
            allowed
        }
        None => list.allows(email, now, log),
    }
}
