//! Login-state cookies of logins in progress (`<cookie name>_state_<id>`, see
//! crates/gpt-auth-core/STATE-COOKIE.md): one per login, so tabs do not disturb each other, but
//! never more than a few at a time, so a user who opens the login page again and again does not
//! end up with a `Cookie` header too large for the callback.

use gpt_auth_core::cookie_header;
use gpt_auth_core::set_cookie;
use gpt_auth_core::state::{self, State};
use ngx::http::Request;

use crate::conf::LocConf;
use crate::ngx::response::add_header;
use crate::ngx::RequestExt;

/// At most this many logins in progress per browser (the oldest are dropped).
pub const MAX_PENDING: usize = 3;

/// The genuine, unexpired login states the request carries (newest first), and the names of
/// state cookies that are expired, broken or forged.
pub fn pending(r: &Request, lcf: &LocConf, now: u64) -> (Vec<(String, State)>, Vec<String>) {
    let (mut good, mut stale) = (Vec::new(), Vec::new());
    let Some(keys) = &lcf.keys else { return (good, stale) };
    let prefix = format!("{}{}", lcf.cookie_name(), state::NAME_INFIX);
    for header in r.cookies() {
        for (name, value) in cookie_header::pairs(header) {
            if !name.starts_with(prefix.as_bytes()) {
                continue;
            }
            let name = String::from_utf8_lossy(name).into_owned();
            match state::decode(&keys.ring, &name, value, now) {
                Ok(st) => good.push((name, st)),
                Err(_) => stale.push(name),
            }
        }
    }
    good.sort_by_key(|(_, st)| core::cmp::Reverse(st.exp));
    (good, stale)
}

/// Clears every stale state cookie and all but the newest `keep` pending ones.
pub fn prune(
    r: &mut Request,
    lcf: &LocConf,
    pending: &[(String, State)],
    stale: &[String],
    keep: usize,
) -> Option<()> {
    let attrs = lcf.state_cookie_attrs(false);
    for name in stale.iter().chain(pending.iter().skip(keep).map(|(n, _)| n)) {
        add_header(r, "Set-Cookie", set_cookie::clear(name, &attrs).as_bytes())?;
    }
    Some(())
}

/// Sets the state cookie of a new login, making room for it first.
pub fn start(
    r: &mut Request,
    lcf: &LocConf,
    st: &State,
    cross_site_post: bool,
    now: u64,
) -> Option<()> {
    let keys = lcf.keys.as_ref()?;
    let (pending, stale) = pending(r, lcf, now);
    prune(r, lcf, &pending, &stale, MAX_PENDING - 1)?;
    let name = state::cookie_name(lcf.cookie_name(), &st.sid);
    let value = state::encode(keys.ring.signing_key(), &name, st).ok()?;
    let max_age = st.exp.saturating_sub(now);
    let attrs = lcf.state_cookie_attrs(cross_site_post);
    add_header(r, "Set-Cookie", set_cookie::set(&name, &value, max_age, &attrs).as_bytes())
        .map(|_| ())
}

/// Clears the state cookie of a finished login.
pub fn finish(r: &mut Request, lcf: &LocConf, cookie_name: &str) -> Option<()> {
    let attrs = lcf.state_cookie_attrs(false);
    add_header(r, "Set-Cookie", set_cookie::clear(cookie_name, &attrs).as_bytes()).map(|_| ())
}
