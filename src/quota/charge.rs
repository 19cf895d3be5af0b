//! Charging a request to its budgets: the user's (the location's defaults or an override), and
//! every group's of the zone the user belongs to (`members=*`: the account's own limit).
//!
//! Request budgets without metering are charged in one step when the request is admitted and
//! refunded if the upstream fails to answer (5xx, or no answer at all). Metered AI requests
//! reserve an estimate when admitted; `crate::usage` settles the true amount when the answer is
//! done ([`settle`]).

use gpt_auth_core::quota::{Amounts, Counters, Exceeded, Key, Limits};
use gpt_auth_core::session::MAX_EMAIL_LEN;
use ngx::http::Request;

use super::warn::Who;
use super::zone::{self, Admission, Charged as ChargedKey, QuotaError};
use crate::conf::quota::{GroupConf, Members, MAX_GROUPS};
use crate::conf::{QuotaConf, Zone};
use crate::ngx::pool::{self, PoolStr};
use crate::ngx::time::now;
use crate::ngx::RequestExt;

/// This request's charge. Stashed in the request pool, which survives internal redirects:
/// they run the access phase again, and a request is charged once.
pub struct Charged {
    pub q: &'static QuotaConf,
    pub zone: &'static Zone,
    /// The user's key (lower-cased address).
    pub user: PoolStr,
    /// The groups charged too (bit i: the zone's group i).
    pub groups: u64,
    /// Reserved (metered) or charged (one step) at admission.
    pub amount: Amounts,
    /// Charged in one step (else reserved, to be settled).
    pub charged_now: bool,
    /// The user's counters after admission (after settlement, once settled) and budgets, for
    /// the variables.
    pub counters: core::cell::Cell<Counters>,
    pub limits: Limits,
    /// Settled already (the log phase comes once, but be sure).
    pub settled: core::cell::Cell<bool>,
}

/// The charge of this request, if it was charged.
pub fn charged(r: &Request) -> Option<&Charged> {
    pool::stashed::<Charged>(r)
}

/// Whether the request may go on.
pub enum Admit {
    Yes,
    No(Refusal),
}

/// Why it may not.
pub enum Refusal {
    /// A budget is used up: whose (the user, or a group's name) and which.
    Exceeded { email: String, group: Option<String>, exceeded: Exceeded },
    /// No room in the zone for another user: 503 (logged once by the zone).
    Full,
    /// The zone is not usable: 500.
    Unavailable,
}

fn lower<'b>(email: &[u8], buf: &'b mut [u8; MAX_EMAIL_LEN]) -> Option<&'b [u8]> {
    let key = buf.get_mut(..email.len())?;
    key.copy_from_slice(email);
    key.make_ascii_lowercase();
    Some(key)
}

/// Whether `user` (lower case) is a member of `g`.
fn member(g: &GroupConf, user: &[u8], now: u64, log: *mut nginx_sys::ngx_log_t) -> bool {
    match &g.members {
        Members::All => true,
        Members::Domain(d) => user.ends_with(d.as_bytes()),
        Members::List(list) => list.allows(user, now, log),
    }
}

/// Charges (or, with `estimate`, reserves for) the request: once per request, and only for the
/// methods that count. `estimate`: `None` for a request budget without metering.
pub fn enforce(
    r: &Request,
    q: &'static QuotaConf,
    email: &[u8],
    estimate: Option<Amounts>,
) -> Admit {
    if !q.counts(r.method_bit()) || charged(r).is_some() {
        return Admit::Yes;
    }
    let now = now();
    let log = r.log_ptr();
    let mut buf = [0u8; MAX_EMAIL_LEN];
    let (Some(user), Some(z)) = (lower(email, &mut buf), q.zone.get()) else {
        return Admit::No(Refusal::Unavailable);
    };
    let z: &'static Zone = z;
    let limits = match &q.overrides {
        Some(o) => o.get(now, log).limits_for_lowercase(user, q.defaults),
        None => q.defaults,
    };
    let groups = z.groups.borrow();
    let (mask, group_keys) = member_groups(&groups, user, now, log);
    let members: Vec<&GroupConf> =
        groups.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, g)| g).collect();
    // Without groups (the common case) the keys are on the stack: no allocation per request.
    let user_only = [ChargedKey { key: user, limits: &limits }];
    let with_groups: Vec<ChargedKey> = if group_keys.is_empty() {
        Vec::new()
    } else {
        let groups = group_keys.iter().zip(&members);
        let groups = groups.map(|(k, g)| ChargedKey { key: k, limits: &g.limits });
        core::iter::once(ChargedKey { key: user, limits: &limits }).chain(groups).collect()
    };
    let keys: &[ChargedKey] = if with_groups.is_empty() { &user_only } else { &with_groups };
    let charged_now = estimate.is_none();
    let amount = estimate.unwrap_or(Amounts::ONE_REQUEST);
    let periods = z.periods(now);
    let admitted = zone::admit(z, keys, &amount, charged_now, &periods, log);
    let counters = match outcome(r, q, user, email, &limits, &members, admitted) {
        Ok(c) => c,
        Err(refusal) => return Admit::No(refusal),
    };
    if charged_now && q.warn.is_some() {
        let before = before_charge(&counters, &amount);
        super::warn::crossed(r, Who::User(email), q.warn, &before, &counters, &limits);
    }
    if let Some(user) = PoolStr::copy(r, user) {
        let (counters, settled) = (core::cell::Cell::new(counters), core::cell::Cell::new(false));
        let c = Charged {
            q,
            zone: z,
            user,
            groups: mask,
            amount,
            charged_now,
            counters,
            limits,
            settled,
        };
        let _ = pool::stash(r, c);
    }
    Admit::Yes
}

/// The counters after an admission, or why the request is refused.
fn outcome(
    r: &Request,
    q: &QuotaConf,
    user: &[u8],
    email: &[u8],
    limits: &Limits,
    members: &[&GroupConf],
    admitted: Result<Admission, QuotaError>,
) -> Result<Counters, Refusal> {
    let email = || String::from_utf8_lossy(email).into_owned();
    match admitted {
        Ok(Admission::Admitted(c)) => Ok(c),
        Ok(Admission::Refused(0, exceeded)) => {
            // The user's own budget: the variables show the counters that refused it.
            let counters = q.zone.get().and_then(|z| zone::get(z, user)).unwrap_or_default();
            let _ = pool::stash(r, super::variables::Refused(counters, *limits));
            Err(Refusal::Exceeded { email: email(), group: None, exceeded })
        }
        Ok(Admission::Refused(i, exceeded)) => {
            let group = members.get(i - 1).map(|g| g.name.clone());
            Err(Refusal::Exceeded { email: email(), group, exceeded })
        }
        Err(QuotaError::Full) => Err(Refusal::Full),
        Err(QuotaError::Unavailable) => {
            error!(r, "gpt_auth_quota zone \"{}\" is not available", q.zone_name);
            Err(Refusal::Unavailable)
        }
    }
}

/// The zone's groups `user` belongs to: their bit mask and keys (no allocation without
/// groups).
fn member_groups(
    groups: &[GroupConf],
    user: &[u8],
    now: u64,
    log: *mut nginx_sys::ngx_log_t,
) -> (u64, Vec<Vec<u8>>) {
    let mut mask = 0u64;
    let keys = groups
        .iter()
        .enumerate()
        .take(MAX_GROUPS)
        .filter(|(_, g)| member(g, user, now, log))
        .map(|(i, g)| {
            mask |= 1 << i;
            Key::group_key(&g.name)
        })
        .collect();
    (mask, keys)
}

/// The counters as they were before a one-step charge of `amount`.
fn before_charge(after: &Counters, amount: &Amounts) -> Counters {
    let mut before = *after;
    before.day_used.sub(amount);
    before.month_used.sub(amount);
    before
}

/// The keys of a charge: the user's first, then its groups'.
fn keys_of(c: &Charged) -> Vec<Vec<u8>> {
    let mut keys = vec![c.user.as_bytes().to_vec()];
    let groups = c.zone.groups.borrow();
    for (i, g) in groups.iter().enumerate().take(MAX_GROUPS) {
        if c.groups & (1 << i) != 0 {
            keys.push(Key::group_key(&g.name));
        }
    }
    keys
}

/// Settles a metered request: releases its reservation and charges `actual` to its keys and to
/// the user's use of `model`.
pub fn settle(r: &Request, c: &Charged, actual: &Amounts, model: Option<&str>) {
    if c.settled.replace(true) || c.charged_now {
        return;
    }
    let keys = keys_of(c);
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let mut mkey = Vec::new();
    let extra: Vec<&[u8]> = match model {
        Some(m) => vec![Key::model_key_into(&mut mkey, c.user.as_bytes(), m)],
        None => Vec::new(),
    };
    let p = c.zone.periods(now());
    let log = r.log_ptr();
    let changed = zone::settle(c.zone, &key_refs, &extra, &c.amount, actual, &p, log);
    let groups = c.zone.groups.borrow();
    let charged_groups = groups.iter().enumerate().filter(|(i, _)| c.groups & (1 << i) != 0);
    let mut thresholds = core::iter::once((Who::User(c.user.as_bytes()), c.q.warn, &c.limits))
        .chain(charged_groups.map(|(_, g)| (Who::Group(&g.name), g.warn, &g.limits)));
    if let Some((_, after)) = changed.first() {
        c.counters.set(*after);
    }
    for (before, after) in &changed {
        let Some((who, warn, limits)) = thresholds.next() else { break };
        super::warn::crossed(r, who, warn, before, after, limits);
    }
}

/// Refunds a one-step charge (the upstream did not answer).
fn refund(c: &Charged) {
    let p = c.zone.periods(now());
    for k in keys_of(c) {
        zone::update(c.zone, &k, &p, |counters| {
            if counters.day == c.counters.get().day {
                counters.day_used.sub(&c.amount);
            }
            if counters.month == c.counters.get().month {
                counters.month_used.sub(&c.amount);
            }
        });
    }
}

/// Whether the upstream failed to give an answer: nginx's own 502/504, another 5xx, or no
/// response at all.
pub fn upstream_failed(r: &Request) -> bool {
    let status = r.as_ref().headers_out.status;
    status >= 500 || status == 0
}

/// Log phase: a request charged in one step whose upstream failed gets its charge back.
pub fn on_log(r: &Request) {
    if let Some(c) = charged(r) {
        if c.charged_now && upstream_failed(r) && !c.settled.replace(true) {
            refund(c);
            let status = r.as_ref().headers_out.status;
            info!(r, "quota: not charged (the upstream failed: status {})", status);
        }
    }
}
