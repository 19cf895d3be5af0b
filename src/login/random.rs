//! Secrets for a login: the state id, the nonce and the PKCE verifier, from the kernel's CSPRNG
//! (getrandom(2); never blocks once the system has booted).

use gpt_auth_core::{pkce, state};

fn bytes<const N: usize>() -> Option<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).ok()?;
    Some(b)
}

/// A fresh 128-bit id (state id or nonce), base64url.
pub fn id() -> Option<String> {
    Some(state::new_sid(&bytes::<16>()?))
}

/// (state id, nonce, PKCE verifier) for one login.
pub fn login_secrets() -> Option<(String, String, String)> {
    Some((id()?, id()?, pkce::verifier_from_bytes(&bytes::<32>()?)))
}
