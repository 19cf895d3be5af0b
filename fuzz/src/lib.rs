//! Fixtures shared by the fuzz targets (and by `examples/seeds.rs`, which writes the seed
//! corpus): a fixed key ring and clock for the cookie codecs, the ID token test keys of
//! `crates/gpt-auth-core/tests/fixtures`, and the small input formats the text targets use.

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use gpt_auth_core::idtoken::{Expectations, Jwks};
use gpt_auth_core::keys::{encode_key, KeyRing};
use gpt_auth_core::return_url::Policy;
use jsonwebtoken::EncodingKey;

/// "Now" for every target: 2027-01-15.
pub const NOW: u64 = 1_800_000_000;

/// The session cookie's name (the module's default).
pub const COOKIE: &str = "gpt_auth";

/// Session lifetime cap used by the session targets (a week).
pub const MAX_AGE: u64 = 7 * 86400;

/// A state id (base64url of the bytes 0..16) and its cookie's name.
pub const SID: &str = "AAECAwQFBgcICQoLDA0ODw";
pub const STATE_COOKIE: &str = "gpt_auth_state_AAECAwQFBgcICQoLDA0ODw";

/// ID token expectations.
pub const ISS: &str = "https://accounts.google.com";
pub const ISSUERS: &[&str] = &[ISS, "accounts.google.com"];
pub const CLIENT: &str = "1234-abc.apps.googleusercontent.com";
pub const NONCE: &str = "n-0S6_WzA2Mj";
pub const LEEWAY: u64 = 60;

pub const JWKS_JSON: &[u8] = include_bytes!("../../crates/gpt-auth-core/tests/fixtures/jwks.json");
const RSA_PEM: &[u8] = include_bytes!("../../crates/gpt-auth-core/tests/fixtures/rsa.pem");
const EC_PEM: &[u8] = include_bytes!("../../crates/gpt-auth-core/tests/fixtures/ec.pem");
const RSA_OTHER_PEM: &[u8] =
    include_bytes!("../../crates/gpt-auth-core/tests/fixtures/rsa-other.pem");

/// Deterministic 32-byte secret number `seed` (enough distinct bytes to pass the key checks).
pub fn secret(seed: u8) -> Vec<u8> {
    (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(seed)).collect()
}

/// The key ring of the cookie targets: a signing key and an older key that still verifies.
pub fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        KeyRing::parse(&format!("{}\n{}\n", encode_key(&secret(1)), encode_key(&secret(2))))
            .expect("fixture key ring")
    })
}

/// A ring that shares no key with [`ring`] (a forger's, or a rotated-out one).
pub fn other_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::parse(&encode_key(&secret(3))).expect("fixture key ring"))
}

/// The fixture key set (kid `rsa-1`: RS256, kid `ec-1`: ES256).
pub fn jwks() -> &'static Jwks {
    static JWKS: OnceLock<Jwks> = OnceLock::new();
    JWKS.get_or_init(|| Jwks::parse(JWKS_JSON).expect("fixture JWKS"))
}

/// The DER inside PEM armour.
fn der(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).expect("PEM is text");
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

/// Which test key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum Signer {
    /// `rsa.pem`, in the key set as `rsa-1`.
    Rsa,
    /// `ec.pem`, in the key set as `ec-1`.
    Ec,
    /// `rsa-other.pem`, in no key set.
    RsaOther,
}

impl Signer {
    pub fn alg(self) -> jsonwebtoken::Algorithm {
        match self {
            Signer::Rsa | Signer::RsaOther => jsonwebtoken::Algorithm::RS256,
            Signer::Ec => jsonwebtoken::Algorithm::ES256,
        }
    }

    pub fn alg_name(self) -> &'static str {
        match self {
            Signer::Rsa | Signer::RsaOther => "RS256",
            Signer::Ec => "ES256",
        }
    }

    /// The `kid` of this key in the fixture key set.
    pub fn kid(self) -> Option<&'static str> {
        match self {
            Signer::Rsa => Some("rsa-1"),
            Signer::Ec => Some("ec-1"),
            Signer::RsaOther => None,
        }
    }

    fn key(self) -> &'static EncodingKey {
        static RSA: OnceLock<EncodingKey> = OnceLock::new();
        static EC: OnceLock<EncodingKey> = OnceLock::new();
        static RSA_OTHER: OnceLock<EncodingKey> = OnceLock::new();
        match self {
            Signer::Rsa => RSA.get_or_init(|| EncodingKey::from_rsa_der(&der(RSA_PEM))),
            Signer::Ec => EC.get_or_init(|| EncodingKey::from_ec_der(&der(EC_PEM))),
            Signer::RsaOther => {
                RSA_OTHER.get_or_init(|| EncodingKey::from_rsa_der(&der(RSA_OTHER_PEM)))
            }
        }
    }
}

/// A compact JWS over exactly these header and payload bytes, signed by `signer`.
pub fn sign_raw(header: &[u8], payload: &[u8], signer: Signer) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), signer.key(), signer.alg())
        .expect("signing with a test key");
    format!("{input}.{sig}")
}

/// A token with a plain header (`alg` of the signer, its `kid`) over `claims`.
pub fn sign_claims(claims: &serde_json::Value, signer: Signer) -> String {
    let mut header = serde_json::json!({ "alg": signer.alg_name(), "typ": "JWT" });
    if let Some(kid) = signer.kid() {
        header["kid"] = serde_json::json!(kid);
    }
    sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes(), signer)
}

/// Claims the fixed expectations accept.
pub fn good_claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISS,
        "sub": "110169484474386276334",
        "aud": CLIENT,
        "azp": CLIENT,
        "email": "alice@example.com",
        "email_verified": true,
        "name": "Alice",
        "iat": NOW - 10,
        "exp": NOW + 3590,
        "nonce": NONCE,
    })
}

/// The fixed expectations (no hosted domain required).
pub fn expectations() -> Expectations<'static> {
    Expectations {
        issuers: ISSUERS,
        client_id: CLIENT,
        nonce: Some(NONCE),
        now: NOW,
        leeway: LEEWAY,
        hosted_domains: &[],
    }
}

/// Splits `data` at the first `sep`: (before, Some(after)), or (data, None).
pub fn split_once(data: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}

/// The return-URL policies the `return_url` target picks from with its first byte (a byte
/// of 0xF0 or more means a policy written out in the input instead, see [`custom_policy`]).
pub fn fixed_policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        vec![
            // crates/gpt-auth-core/src/return_url.rs tests
            Policy {
                cookie_domain: Some(".example.com".into()),
                allowed_hosts: vec![
                    "app.other.org".into(),
                    ".corp.test".into(),
                    "127.0.0.1".into(),
                    "[::1]".into(),
                    "Mixed.Case.Org.".into(),
                ],
                own_host: Some("login.example.net:8443".into()),
            },
            // t/gpt_auth_return_url.t
            Policy {
                cookie_domain: Some(".example.test".into()),
                allowed_hosts: vec![
                    "app.other.test".into(),
                    ".partner.test".into(),
                    "10.1.2.3".into(),
                    "[::1]".into(),
                ],
                own_host: Some("auth.example.test".into()),
            },
            // Paths only.
            Policy::default(),
            // An IPv6 login site, no cookie domain.
            Policy {
                cookie_domain: None,
                allowed_hosts: vec!["0x7f.1".into(), ".".into(), "".into()],
                own_host: Some("[::1]:8443".into()),
            },
        ]
    })
}

/// A policy written as lines: cookie domain, own host, then allowed hosts (an empty first or
/// second line means none).
pub fn custom_policy(text: &str) -> Policy {
    let mut lines = text.split('\n');
    let opt = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    let cookie_domain = opt(lines.next());
    let own_host = opt(lines.next());
    Policy { cookie_domain, own_host, allowed_hosts: lines.map(str::to_owned).collect() }
}

/// The AI API answers of `crates/gpt-auth-core/tests/fixtures/usage` (see its README): the
/// usage targets' seeds.
pub const CHAT_STREAM: &[u8] =
    include_bytes!("../../crates/gpt-auth-core/tests/fixtures/usage/openai-chat-stream.sse");
pub const RESPONSES_STREAM: &[u8] =
    include_bytes!("../../crates/gpt-auth-core/tests/fixtures/usage/openai-responses-stream.sse");
pub const ANTHROPIC_STREAM: &[u8] =
    include_bytes!("../../crates/gpt-auth-core/tests/fixtures/usage/anthropic-messages-stream.sse");

/// `data` cut into chunks at points chosen by `seed` (0: one chunk; otherwise up to 16 cuts,
/// from one byte apart to far apart), for the targets that check that chunking changes
/// nothing.
pub fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 || data.is_empty() {
        return vec![data];
    }
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut cuts: Vec<usize> = (0..(seed % 16) + 1)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize % (data.len() + 1)
        })
        .collect();
    if seed & 0x80 != 0 {
        // Byte by byte around the first cut (inside a CRLF pair, a UTF-8 sequence).
        let at = cuts[0];
        cuts.extend(at..(at + 8).min(data.len()));
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for c in cuts {
        out.push(&data[from..c]);
        from = c;
    }
    out.push(&data[from..]);
    out
}
