//! OpenID Connect ID tokens: the provider's signing keys (a JWKS document) and the verification
//! of a token against them and against what this login expects (issuer, audience, nonce, time,
//! a verified address, the Workspace domain).
//!
//! Only RS256 and ES256 are accepted, whatever the token says: `none`, HMAC (where a public key
//! would be misused as a shared secret) and every other algorithm are refused before a key is
//! even looked up. `ring` checks the signature (with keys decoded once, when the key set is
//! parsed; `jsonwebtoken` checks there that an EC key is a point on P-256); the header, the
//! choice of key and every claim are checked here, so that each refusal has a precise reason
//! that is safe to log.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use serde_json::Value;

use crate::json::parse_object;
use crate::log_safe::log_safe;
use crate::session::valid_email;

/// Tokens longer than this are refused before any other work.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Key set documents longer than this are refused before parsing.
pub const MAX_JWKS_LEN: usize = 256 * 1024;

/// RSA keys with a modulus outside this range (in bits) are skipped: shorter ones are weak,
/// longer ones are more than the RSA backend accepts.
pub const RSA_MODULUS_BITS: core::ops::RangeInclusive<usize> = 2048..=4096;

/// Longest key id or algorithm name quoted in an error message.
const MAX_QUOTED: usize = 64;

/// The signature algorithms this module accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, an RSA key.
    Rs256,
    /// ECDSA on P-256 with SHA-256, an EC P-256 key.
    Es256,
}

impl Algorithm {
    /// The algorithm with this JOSE name (`RS256`, `ES256`; exact case), if accepted.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// Why a key set document was refused. `Display` is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("key set too large ({0} bytes)")]
    TooLarge(usize),
    #[error("malformed key set ({0})")]
    Malformed(&'static str),
    #[error("key set has no usable signing key ({skipped} skipped)")]
    NoUsableKey { skipped: usize },
}

/// A key of the document that cannot verify tokens here, and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's `kid`, made log-safe (printable ASCII, bounded).
    pub kid: Option<String>,
    pub reason: &'static str,
}

#[derive(Clone, Debug)]
struct PublicKey {
    kid: Option<String>,
    alg: Algorithm,
    key: KeyMaterial,
}

/// A key as ring verifies with it, decoded and checked once when the key set is parsed.
#[derive(Clone, Debug)]
enum KeyMaterial {
    /// Modulus and exponent, big-endian, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed P-256 point (`04 || x || y`).
    Ec(Vec<u8>),
}

impl KeyMaterial {
    /// Whether `signature` (as the JWS carries it: PKCS#1 v1.5 for RS256, `r || s` for ES256)
    /// signs `message` with this key and algorithm.
    fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature as sig;
        match (self, alg) {
            (KeyMaterial::Rsa { n, e }, Algorithm::Rs256) => sig::RsaPublicKeyComponents { n, e }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (KeyMaterial::Ec(point), Algorithm::Es256) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// A provider's signing keys: the RSA and EC P-256 signature keys of a JWKS document.
#[derive(Clone, Debug)]
pub struct Jwks {
    keys: Vec<PublicKey>,
    skipped: Vec<SkippedKey>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Option<Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl Jwks {
    /// Parses a JWKS document (RFC 7517). Keys this module cannot use are skipped (see
    /// [`Jwks::skipped`]): a `use` other than `sig`, `key_ops` without `verify`, a key type other
    /// than RSA or EC P-256, an `alg` other than RS256 (RSA) or ES256 (EC), a malformed or weak
    /// key, a second key with the same `kid` and type. A document left with no key is an error.
    pub fn parse(json: &[u8]) -> Result<Jwks, JwksError> {
        if json.len() > MAX_JWKS_LEN {
            return Err(JwksError::TooLarge(json.len()));
        }
        let raw: RawJwks = parse_object(json).ok_or(JwksError::Malformed("not a JSON object"))?;
        let Some(Value::Array(entries)) = raw.keys else {
            return Err(JwksError::Malformed("no \"keys\" array"));
        };
        let mut jwks = Jwks { keys: Vec::new(), skipped: Vec::new() };
        for entry in entries {
            if !entry.is_object() {
                jwks.skipped.push(SkippedKey { kid: None, reason: "not a JSON object" });
                continue;
            }
            let raw: RawJwk = match serde_json::from_value(entry) {
                Ok(raw) => raw,
                Err(_) => {
                    jwks.skipped.push(SkippedKey { kid: None, reason: "member of the wrong type" });
                    continue;
                }
            };
            let kid = raw.kid.clone();
            let skip = |reason| SkippedKey {
                kid: kid.as_deref().map(|k| log_safe(k, MAX_QUOTED)),
                reason,
            };
            match usable_key(raw) {
                Ok(key) => {
                    let duplicate = key.kid.is_some()
                        && jwks.keys.iter().any(|k| k.kid == key.kid && k.alg == key.alg);
                    if duplicate {
                        jwks.skipped.push(skip("duplicate kid"));
                    } else {
                        jwks.keys.push(key);
                    }
                }
                Err(reason) => jwks.skipped.push(skip(reason)),
            }
        }
        if jwks.keys.is_empty() {
            return Err(JwksError::NoUsableKey { skipped: jwks.skipped.len() });
        }
        Ok(jwks)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false for a parsed key set.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys that have one, in document order.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    /// Whether a usable key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys that were skipped, and why.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<&PublicKey, IdTokenError> {
        let Some(kid) = kid else {
            let mut candidates = self.keys.iter().filter(|k| k.alg == alg);
            return match (candidates.next(), candidates.next()) {
                (Some(key), None) => Ok(key),
                _ => Err(IdTokenError::NoKeyId(alg.name())),
            };
        };
        let mut same_kid = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).peekable();
        if same_kid.peek().is_none() {
            return Err(IdTokenError::UnknownKey(log_safe(kid, MAX_QUOTED)));
        }
        same_kid
            .find(|k| k.alg == alg)
            .ok_or_else(|| IdTokenError::KeyMismatch(log_safe(kid, MAX_QUOTED)))
    }
}

fn usable_key(raw: RawJwk) -> Result<PublicKey, &'static str> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signature key (use)");
    }
    if raw.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|op| op == "verify")) {
        return Err("not a verification key (key_ops)");
    }
    let alg = match (raw.kty.as_deref(), raw.crv.as_deref()) {
        (Some("RSA"), _) => Algorithm::Rs256,
        (Some("EC"), Some("P-256")) => Algorithm::Es256,
        (Some("EC"), _) => return Err("unsupported curve"),
        (None, _) => return Err("no kty"),
        (Some(_), _) => return Err("unsupported key type"),
    };
    match raw.alg.as_deref().map(Algorithm::from_name) {
        None => {}
        Some(Some(a)) if a == alg => {}
        Some(Some(_)) => return Err("alg does not match the key type"),
        Some(None) => return Err("unsupported alg"),
    }
    let key = match alg {
        Algorithm::Rs256 => rsa_key(raw.n.as_deref(), raw.e.as_deref())?,
        Algorithm::Es256 => ec_key(raw.x.as_deref(), raw.y.as_deref())?,
    };
    Ok(PublicKey { kid: raw.kid, alg, key })
}

/// Decodes a base64url key component (RFC 7518 says unpadded; padding is tolerated).
fn decode_component(b64: Option<&str>, missing: &'static str) -> Result<Vec<u8>, &'static str> {
    let b64 = b64.ok_or(missing)?;
    URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).map_err(|_| "key component not base64url")
}

fn rsa_key(n: Option<&str>, e: Option<&str>) -> Result<KeyMaterial, &'static str> {
    let n = decode_component(n, "RSA key without n")?;
    let e = decode_component(e, "RSA key without e")?;
    let n_start = n.iter().position(|&b| b != 0).unwrap_or(n.len());
    let n = n.get(n_start..).unwrap_or_default();
    let bits = match n.first() {
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if !RSA_MODULUS_BITS.contains(&bits) {
        return Err("RSA modulus not 2048 to 4096 bits");
    }
    if n.last().is_none_or(|b| b % 2 == 0) {
        return Err("RSA modulus is even");
    }
    let e_start = e.iter().position(|&b| b != 0).unwrap_or(e.len());
    let e = e.get(e_start..).unwrap_or_default();
    // Same bounds as the RSA backend: 3 <= e <= 2^33 - 1, and odd.
    let exponent =
        if e.len() <= 5 { e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)) } else { 0 };
    if !(3..(1 << 33)).contains(&exponent) || exponent % 2 == 0 {
        return Err("unusable RSA exponent");
    }
    Ok(KeyMaterial::Rsa { n: n.to_vec(), e: e.to_vec() })
}

fn ec_key(x: Option<&str>, y: Option<&str>) -> Result<KeyMaterial, &'static str> {
    let xb = decode_component(x, "EC key without x")?;
    let yb = decode_component(y, "EC key without y")?;
    if xb.len() != 32 || yb.len() != 32 {
        return Err("EC P-256 coordinates not 32 bytes");
    }
    let x = URL_SAFE_NO_PAD.encode(&xb);
    let y = URL_SAFE_NO_PAD.encode(&yb);
    let key = DecodingKey::from_ec_components(&x, &y).map_err(|_| "bad EC key")?;
    // The backend checks that the point is on the curve when it builds a verifier: `Err` means
    // the key is unusable, `Ok(false)` only that this empty signature does not verify.
    if jsonwebtoken::crypto::verify("", b"", &key, jsonwebtoken::Algorithm::ES256).is_err() {
        return Err("EC point not on P-256");
    }
    Ok(KeyMaterial::Ec([&[4u8][..], &xb, &yb].concat()))
}

/// Why an ID token was refused. `Display` is safe to log: it never contains the token, and the
/// few strings it quotes are made printable and bounded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("token too large ({0} bytes)")]
    TooLarge(usize),
    #[error("malformed token ({0})")]
    Malformed(&'static str),
    #[error("unsupported algorithm \"{0}\"")]
    UnsupportedAlgorithm(String),
    /// The token names a key the key set does not have: the provider may have rotated its keys,
    /// the caller should refetch the key set (see `jwks_cache::RefetchLimiter`) and try again.
    #[error("signed with unknown key \"{0}\"")]
    UnknownKey(String),
    #[error("key \"{0}\" is not a key for the token's algorithm")]
    KeyMismatch(String),
    #[error("no kid, and the key set has not exactly one {0} key")]
    NoKeyId(&'static str),
    #[error("bad signature")]
    BadSignature,
    #[error("no {0} claim")]
    MissingClaim(&'static str),
    #[error("{0} claim has the wrong type")]
    BadClaim(&'static str),
    #[error("issuer \"{0}\" not accepted")]
    WrongIssuer(String),
    #[error("audience does not include the client id")]
    WrongAudience,
    #[error("several audiences and no azp")]
    MissingAzp,
    #[error("azp is not the client id")]
    WrongAzp,
    #[error("expired {0}s ago")]
    Expired(u64),
    #[error("issued in the future")]
    IssuedInFuture,
    #[error("not valid yet (nbf)")]
    NotYetValid,
    #[error("nonce missing or wrong")]
    NonceMismatch,
    #[error("email claim is not a valid address")]
    InvalidEmail,
    #[error("email address not verified")]
    EmailNotVerified,
    #[error("no hd claim (a hosted domain is required)")]
    MissingHostedDomain,
    #[error("hosted domain not accepted")]
    WrongHostedDomain,
}

impl IdTokenError {
    /// True when refetching the provider's key set may help.
    pub fn is_unknown_key(&self) -> bool {
        matches!(self, IdTokenError::UnknownKey(_))
    }
}

/// What this login expects of the token.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// Accepted `iss` values, compared exactly (Google uses both `https://accounts.google.com`
    /// and `accounts.google.com`).
    pub issuers: &'a [&'a str],
    /// The OAuth client id: must be in `aud` (and be `azp` when that is present).
    pub client_id: &'a str,
    /// The nonce sent with the authorization request, when one was.
    pub nonce: Option<&'a str>,
    /// Current Unix time.
    pub now: u64,
    /// Allowed clock difference with the provider, in seconds.
    pub leeway: u64,
    /// Accepted `hd` (Google Workspace domain) values, ASCII case-insensitive; empty = any
    /// account, with or without `hd`.
    pub hosted_domains: &'a [String],
}

/// The claims of a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub email: String,
    /// Always true: tokens without a verified address are refused.
    pub email_verified: bool,
    pub aud: Vec<String>,
    pub azp: Option<String>,
    pub hd: Option<String>,
    pub name: Option<String>,
    pub iat: u64,
    pub exp: u64,
    pub nonce: Option<String>,
}

/// Header fields and nonce of a token, read WITHOUT checking its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The header's `alg`, as written (possibly unsupported).
    pub alg: String,
    /// The header's `kid`, as written (not log-safe).
    pub kid: Option<String>,
    /// The `nonce` claim, if it is a string (not log-safe).
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct RawNonce {
    nonce: Option<Value>,
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<Value>,
    sub: Option<Value>,
    aud: Option<Value>,
    azp: Option<Value>,
    exp: Option<Value>,
    iat: Option<Value>,
    nbf: Option<Value>,
    nonce: Option<Value>,
    email: Option<Value>,
    email_verified: Option<Value>,
    hd: Option<Value>,
    name: Option<Value>,
}

/// A compact JWS split into its parts, header and payload decoded.
struct Parts<'a> {
    signing_input: &'a str,
    header: RawHeader,
    payload: Vec<u8>,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, IdTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(IdTokenError::TooLarge(token.len()));
    }
    let malformed = IdTokenError::Malformed;
    let (signing_input, signature) =
        token.rsplit_once('.').ok_or(malformed("not three dot-separated parts"))?;
    let (header, payload) =
        signing_input.split_once('.').ok_or(malformed("not three dot-separated parts"))?;
    if payload.contains('.') {
        return Err(malformed("not three dot-separated parts"));
    }
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed("header not base64url"))?;
    let payload =
        URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed("payload not base64url"))?;
    let header: RawHeader = parse_object(&header).ok_or(malformed("header not a JSON object"))?;
    Ok(Parts { signing_input, header, payload, signature })
}

/// Reads a token's `alg`, `kid` and `nonce` without verifying anything.
///
/// For routing only: to find the login-state cookie the token answers (by nonce) and to decide
/// whether the key set needs refetching (by kid). Never base an access decision on it; call
/// [`verify`].
pub fn peek(token: &str) -> Result<Unverified, IdTokenError> {
    let parts = split(token)?;
    let alg = parts.header.alg.ok_or(IdTokenError::Malformed("header has no alg"))?;
    let payload: RawNonce =
        parse_object(&parts.payload).ok_or(IdTokenError::Malformed("payload not a JSON object"))?;
    let nonce = match payload.nonce {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    Ok(Unverified { alg, kid: parts.header.kid, nonce })
}

/// Verifies an ID token's signature with `jwks` and its claims against `expect` (OpenID Connect
/// Core 1.0 §3.1.3.7), and requires a verified email address.
pub fn verify(token: &str, jwks: &Jwks, expect: &Expectations<'_>) -> Result<Claims, IdTokenError> {
    let parts = split(token)?;
    let alg_name = parts.header.alg.ok_or(IdTokenError::Malformed("header has no alg"))?;
    let alg = Algorithm::from_name(&alg_name)
        .ok_or_else(|| IdTokenError::UnsupportedAlgorithm(log_safe(&alg_name, MAX_QUOTED)))?;
    if parts.header.crit.is_some() {
        // RFC 7515 §4.1.11: extensions we do not understand must be refused.
        return Err(IdTokenError::Malformed("crit header parameter not supported"));
    }
    if parts.signature.is_empty() {
        return Err(IdTokenError::Malformed("no signature"));
    }
    let Ok(signature) = URL_SAFE_NO_PAD.decode(parts.signature) else {
        return Err(IdTokenError::Malformed("signature not base64url"));
    };
    let key = jwks.select(alg, parts.header.kid.as_deref())?;
    if !key.key.verifies(alg, parts.signing_input.as_bytes(), &signature) {
        return Err(IdTokenError::BadSignature);
    }

    // Signed by the provider from here on.
    let raw: RawClaims =
        parse_object(&parts.payload).ok_or(IdTokenError::Malformed("payload not a JSON object"))?;
    check_claims(raw, expect)
}

fn check_claims(raw: RawClaims, expect: &Expectations<'_>) -> Result<Claims, IdTokenError> {
    use IdTokenError as E;

    let iss = required_string(raw.iss, "iss")?;
    if !expect.issuers.contains(&iss.as_str()) {
        return Err(E::WrongIssuer(log_safe(&iss, MAX_QUOTED * 2)));
    }

    let aud = match raw.aud {
        None => return Err(E::MissingClaim("aud")),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(E::BadClaim("aud")),
            })
            .collect::<Result<Vec<String>, E>>()?,
        Some(_) => return Err(E::BadClaim("aud")),
    };
    if !aud.iter().any(|a| a == expect.client_id) {
        return Err(E::WrongAudience);
    }
    let azp = optional_string(raw.azp, "azp")?;
    match &azp {
        None if aud.len() > 1 => return Err(E::MissingAzp),
        Some(azp) if azp != expect.client_id => return Err(E::WrongAzp),
        _ => {}
    }

    let now = expect.now;
    let exp = time(raw.exp, "exp")?.ok_or(E::MissingClaim("exp"))?;
    if exp.saturating_add(expect.leeway) <= now {
        return Err(E::Expired(now.saturating_sub(exp)));
    }
    let iat = time(raw.iat, "iat")?.ok_or(E::MissingClaim("iat"))?;
    if iat > now.saturating_add(expect.leeway) {
        return Err(E::IssuedInFuture);
    }
    if time(raw.nbf, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(expect.leeway)) {
        return Err(E::NotYetValid);
    }

    let nonce = optional_string(raw.nonce, "nonce")?;
    if let Some(expected) = expect.nonce {
        if nonce.as_deref() != Some(expected) {
            return Err(E::NonceMismatch);
        }
    }

    let sub = required_string(raw.sub, "sub")?;
    if sub.is_empty() {
        return Err(E::MissingClaim("sub"));
    }

    let email = required_string(raw.email, "email")?;
    if !valid_email(&email) {
        return Err(E::InvalidEmail);
    }
    let verified = match &raw.email_verified {
        Some(Value::Bool(b)) => *b,
        // Some Google endpoints have sent the string.
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if !verified {
        return Err(E::EmailNotVerified);
    }

    let hd = optional_string(raw.hd, "hd")?;
    if !expect.hosted_domains.is_empty() {
        let Some(hd) = &hd else { return Err(E::MissingHostedDomain) };
        if !expect.hosted_domains.iter().any(|d| d.eq_ignore_ascii_case(hd)) {
            return Err(E::WrongHostedDomain);
        }
    }

    // Display only: a name of the wrong type is dropped rather than refused.
    let name = match raw.name {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };

    Ok(Claims { iss, sub, email, email_verified: true, aud, azp, hd, name, iat, exp, nonce })
}

fn optional_string(v: Option<Value>, claim: &'static str) -> Result<Option<String>, IdTokenError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(IdTokenError::BadClaim(claim)),
    }
}

fn required_string(v: Option<Value>, claim: &'static str) -> Result<String, IdTokenError> {
    optional_string(v, claim)?.ok_or(IdTokenError::MissingClaim(claim))
}

/// A NumericDate (RFC 7519 §2): non-negative seconds, fractions dropped.
fn time(v: Option<Value>, claim: &'static str) -> Result<Option<u64>, IdTokenError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(IdTokenError::BadClaim(claim)),
        Some(_) => Err(IdTokenError::BadClaim(claim)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::json;

    const JWKS: &[u8] = include_bytes!("../tests/fixtures/jwks.json");
    const RSA_PEM: &[u8] = include_bytes!("../tests/fixtures/rsa.pem");
    const RSA_OTHER_PEM: &[u8] = include_bytes!("../tests/fixtures/rsa-other.pem");
    const RSA_PUBLIC_PEM: &[u8] = include_bytes!("../tests/fixtures/rsa-public.pem");
    const EC_PEM: &[u8] = include_bytes!("../tests/fixtures/ec.pem");

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "https://accounts.google.com";
    const CLIENT: &str = "1234-abc.apps.googleusercontent.com";
    const NONCE: &str = "n-0S6_WzA2Mj";
    const ISSUERS: &[&str] = &[ISS];

    fn jwks() -> Jwks {
        Jwks::parse(JWKS).unwrap()
    }

    /// The DER inside PEM armour.
    fn der(pem: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(pem).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }

    fn rsa() -> EncodingKey {
        EncodingKey::from_rsa_der(&der(RSA_PEM))
    }

    fn ec() -> EncodingKey {
        EncodingKey::from_ec_der(&der(EC_PEM))
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            issuers: ISSUERS,
            client_id: CLIENT,
            nonce: Some(NONCE),
            now: NOW,
            leeway: 60,
            hosted_domains: &[],
        }
    }

    fn claims() -> Value {
        json!({
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

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token over exactly these header and payload bytes.
    fn sign_raw(
        header: &[u8],
        payload: &[u8],
        alg: jsonwebtoken::Algorithm,
        key: &EncodingKey,
    ) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
        format!("{input}.{sig}")
    }

    fn sign_with(alg: &str, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = json!({ "alg": alg, "typ": "JWT" });
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let jwt_alg: jsonwebtoken::Algorithm = alg.parse().unwrap();
        sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes(), jwt_alg, key)
    }

    fn rs256(claims: &Value) -> String {
        sign_with("RS256", Some("rsa-1"), claims, &rsa())
    }

    fn with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut c = claims();
        f(c.as_object_mut().unwrap());
        rs256(&c)
    }

    fn check(token: &str) -> Result<Claims, IdTokenError> {
        verify(token, &jwks(), &expect())
    }

    #[test]
    fn fixture_jwks() {
        let k = jwks();
        assert_eq!(k.len(), 2);
        assert!(!k.is_empty());
        assert_eq!(k.kids(), ["rsa-1", "ec-1"]);
        assert!(k.contains_kid("ec-1"));
        assert!(!k.contains_kid("ec-2"));
        assert!(k.skipped().is_empty());
    }

    #[test]
    fn accepts_rs256() {
        let c = check(&rs256(&claims())).unwrap();
        assert_eq!(c.iss, ISS);
        assert_eq!(c.sub, "110169484474386276334");
        assert_eq!(c.email, "alice@example.com");
        assert!(c.email_verified);
        assert_eq!(c.aud, [CLIENT]);
        assert_eq!(c.azp.as_deref(), Some(CLIENT));
        assert_eq!(c.hd, None);
        assert_eq!(c.name.as_deref(), Some("Alice"));
        assert_eq!((c.iat, c.exp), (NOW - 10, NOW + 3590));
        assert_eq!(c.nonce.as_deref(), Some(NONCE));
    }

    #[test]
    fn accepts_es256() {
        let t = sign_with("ES256", Some("ec-1"), &claims(), &ec());
        assert_eq!(check(&t).unwrap().email, "alice@example.com");
    }

    #[test]
    fn accepts_token_made_by_jsonwebtoken_encode() {
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("rsa-1".into());
        let t = jsonwebtoken::encode(&h, &claims(), &rsa()).unwrap();
        assert!(check(&t).is_ok());
    }

    #[test]
    fn refuses_alg_none() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64(claims().to_string().as_bytes());
        for t in [format!("{header}.{payload}."), format!("{header}.{payload}.c2ln")] {
            assert_eq!(check(&t), Err(IdTokenError::UnsupportedAlgorithm("none".into())));
        }
        for alg in ["None", "NONE", "", "rs256", "PS256", "RS384", "RS512", "ES384", "EdDSA"] {
            let header = b64(json!({ "alg": alg, "kid": "rsa-1" }).to_string().as_bytes());
            let t = format!("{header}.{payload}.c2ln");
            assert_eq!(check(&t), Err(IdTokenError::UnsupportedAlgorithm(alg.into())), "{alg}");
        }
        let header = b64(br#"{"typ":"JWT"}"#);
        assert_eq!(
            check(&format!("{header}.{payload}.c2ln")),
            Err(IdTokenError::Malformed("header has no alg"))
        );
        let header = b64(br#"{"alg":"\u001b[31mX"}"#);
        assert_eq!(
            check(&format!("{header}.{payload}.c2ln")),
            Err(IdTokenError::UnsupportedAlgorithm("?[31mX".into()))
        );
    }

    #[test]
    fn refuses_hmac_key_confusion() {
        // The classic attack: HS256 "signed" with the RSA public key as the shared secret.
        let n = json!(serde_json::from_slice::<Value>(JWKS).unwrap()["keys"][0]["n"]);
        let secrets: [&[u8]; 3] = [RSA_PUBLIC_PEM, n.as_str().unwrap().as_bytes(), JWKS];
        for secret in secrets {
            for alg in ["HS256", "HS384", "HS512"] {
                let t = sign_with(alg, Some("rsa-1"), &claims(), &EncodingKey::from_secret(secret));
                assert_eq!(check(&t), Err(IdTokenError::UnsupportedAlgorithm(alg.into())));
                let t = sign_with(alg, None, &claims(), &EncodingKey::from_secret(secret));
                assert_eq!(check(&t), Err(IdTokenError::UnsupportedAlgorithm(alg.into())));
            }
        }
    }

    #[test]
    fn refuses_algorithm_of_the_other_key_type() {
        // An ES256 token naming the RSA key, and the reverse.
        let t = sign_with("ES256", Some("rsa-1"), &claims(), &ec());
        assert_eq!(check(&t), Err(IdTokenError::KeyMismatch("rsa-1".into())));
        let t = sign_with("RS256", Some("ec-1"), &claims(), &rsa());
        assert_eq!(check(&t), Err(IdTokenError::KeyMismatch("ec-1".into())));
    }

    #[test]
    fn refuses_key_not_in_jwks() {
        let other = EncodingKey::from_rsa_der(&der(RSA_OTHER_PEM));
        // Claiming the published kid: the signature does not verify.
        let t = sign_with("RS256", Some("rsa-1"), &claims(), &other);
        assert_eq!(check(&t), Err(IdTokenError::BadSignature));
        // Without kid: the only RSA key is tried, and fails.
        let t = sign_with("RS256", None, &claims(), &other);
        assert_eq!(check(&t), Err(IdTokenError::BadSignature));
        // Keys offered by the token itself (embedded jwk, jku, x5u) are never used.
        let doc: Value = serde_json::from_slice(JWKS).unwrap();
        let header = json!({
            "alg": "RS256",
            "kid": "rsa-1",
            "jwk": doc["keys"][0],
            "jku": "https://evil.example/jwks.json",
            "x5u": "https://evil.example/cert.pem",
        });
        let t = sign_raw(
            header.to_string().as_bytes(),
            claims().to_string().as_bytes(),
            jsonwebtoken::Algorithm::RS256,
            &other,
        );
        assert_eq!(check(&t), Err(IdTokenError::BadSignature));
        // The EC key signing as itself but with its signature applied to other claims.
        let good = sign_with("ES256", Some("ec-1"), &claims(), &ec());
        let evil = rs256(&json!({"email": "mallory@example.com"}));
        let (_, sig) = good.rsplit_once('.').unwrap();
        let (input, _) = evil.rsplit_once('.').unwrap();
        assert_eq!(check(&format!("{input}.{sig}")), Err(IdTokenError::BadSignature));
    }

    #[test]
    fn unknown_kid() {
        let t = sign_with("RS256", Some("rsa-2"), &claims(), &rsa());
        let err = check(&t).unwrap_err();
        assert_eq!(err, IdTokenError::UnknownKey("rsa-2".into()));
        assert!(err.is_unknown_key());
        assert!(!IdTokenError::BadSignature.is_unknown_key());
        let long = "k".repeat(500);
        let t = sign_with("RS256", Some(&long), &claims(), &rsa());
        let msg = check(&t).unwrap_err().to_string();
        assert!(msg.len() < 120, "{msg}");
    }

    #[test]
    fn key_without_kid() {
        // No kid in the token, exactly one key of the right type: used.
        assert!(check(&sign_with("RS256", None, &claims(), &rsa())).is_ok());
        assert!(check(&sign_with("ES256", None, &claims(), &ec())).is_ok());
        // Two RSA keys: ambiguous.
        let mut doc: Value = serde_json::from_slice(JWKS).unwrap();
        let mut second = doc["keys"][0].clone();
        second["kid"] = json!("rsa-2");
        doc["keys"].as_array_mut().unwrap().push(second);
        let two = Jwks::parse(doc.to_string().as_bytes()).unwrap();
        let t = sign_with("RS256", None, &claims(), &rsa());
        assert_eq!(verify(&t, &two, &expect()), Err(IdTokenError::NoKeyId("RS256")));
        // A kid still selects.
        let t = sign_with("RS256", Some("rsa-2"), &claims(), &rsa());
        assert!(verify(&t, &two, &expect()).is_ok());
        // No EC key at all.
        doc["keys"].as_array_mut().unwrap().remove(1);
        let rsa_only = Jwks::parse(doc.to_string().as_bytes()).unwrap();
        let t = sign_with("ES256", None, &claims(), &ec());
        assert_eq!(verify(&t, &rsa_only, &expect()), Err(IdTokenError::NoKeyId("ES256")));
    }

    #[test]
    fn issuer() {
        let t = with(|c| {
            c.insert("iss".into(), json!("https://evil.example"));
        });
        assert_eq!(check(&t), Err(IdTokenError::WrongIssuer("https://evil.example".into())));
        // Exact match only: no trailing slash, no case folding.
        for iss in
            ["https://accounts.google.com/", "HTTPS://accounts.google.com", "accounts.google.com"]
        {
            let t = with(|c| {
                c.insert("iss".into(), json!(iss));
            });
            assert!(matches!(check(&t), Err(IdTokenError::WrongIssuer(_))), "{iss}");
        }
        // Google's scheme-less issuer, accepted when listed.
        let t = with(|c| {
            c.insert("iss".into(), json!("accounts.google.com"));
        });
        let both = [ISS, "accounts.google.com"];
        let e = Expectations { issuers: &both, ..expect() };
        assert_eq!(verify(&t, &jwks(), &e).unwrap().iss, "accounts.google.com");
        assert!(verify(&rs256(&claims()), &jwks(), &e).is_ok());
        let t = with(|c| {
            c.remove("iss");
        });
        assert_eq!(check(&t), Err(IdTokenError::MissingClaim("iss")));
        let t = with(|c| {
            c.insert("iss".into(), json!([ISS]));
        });
        assert_eq!(check(&t), Err(IdTokenError::BadClaim("iss")));
    }

    #[test]
    fn audience() {
        // Scalar and array.
        let t = with(|c| {
            c.insert("aud".into(), json!([CLIENT]));
        });
        assert_eq!(check(&t).unwrap().aud, [CLIENT]);
        let t = with(|c| {
            c.insert("aud".into(), json!("other-client"));
        });
        assert_eq!(check(&t), Err(IdTokenError::WrongAudience));
        let t = with(|c| {
            c.insert("aud".into(), json!(["other-client"]));
        });
        assert_eq!(check(&t), Err(IdTokenError::WrongAudience));
        let t = with(|c| {
            c.insert("aud".into(), json!([]));
        });
        assert_eq!(check(&t), Err(IdTokenError::WrongAudience));
        let t = with(|c| {
            c.remove("aud");
        });
        assert_eq!(check(&t), Err(IdTokenError::MissingClaim("aud")));
        for bad in [json!(1), json!([CLIENT, 1]), json!({"a": CLIENT})] {
            let t = with(|c| {
                c.insert("aud".into(), bad);
            });
            assert_eq!(check(&t), Err(IdTokenError::BadClaim("aud")));
        }
        // Several audiences: azp required and equal to the client id.
        let t = with(|c| {
            c.insert("aud".into(), json!(["other-client", CLIENT]));
        });
        assert_eq!(check(&t).unwrap().aud, ["other-client", CLIENT]);
        let t = with(|c| {
            c.insert("aud".into(), json!(["other-client", CLIENT]));
            c.remove("azp");
        });
        assert_eq!(check(&t), Err(IdTokenError::MissingAzp));
        let t = with(|c| {
            c.insert("aud".into(), json!([CLIENT, "other-client"]));
            c.insert("azp".into(), json!("other-client"));
        });
        assert_eq!(check(&t), Err(IdTokenError::WrongAzp));
        // One audience: azp optional, but must match when present.
        let t = with(|c| {
            c.remove("azp");
        });
        assert_eq!(check(&t).unwrap().azp, None);
        let t = with(|c| {
            c.insert("azp".into(), json!("other-client"));
        });
        assert_eq!(check(&t), Err(IdTokenError::WrongAzp));
    }

    #[test]
    fn expiry_and_times() {
        let at = |exp: u64, iat: u64| {
            with(|c| {
                c.insert("exp".into(), json!(exp));
                c.insert("iat".into(), json!(iat));
            })
        };
        // Expired beyond the leeway.
        assert_eq!(check(&at(NOW - 61, NOW - 3600)), Err(IdTokenError::Expired(61)));
        assert_eq!(check(&at(NOW - 60, NOW - 3600)), Err(IdTokenError::Expired(60)));
        // Expired within the leeway: accepted.
        assert!(check(&at(NOW - 59, NOW - 3600)).is_ok());
        assert!(check(&at(NOW, NOW - 3600)).is_ok());
        // No leeway.
        let strict = Expectations { leeway: 0, ..expect() };
        assert_eq!(verify(&at(NOW, NOW - 3600), &jwks(), &strict), Err(IdTokenError::Expired(0)));
        assert!(verify(&at(NOW + 1, NOW), &jwks(), &strict).is_ok());
        // Issued in the future beyond the leeway; within it is fine.
        assert_eq!(check(&at(NOW + 3600, NOW + 61)), Err(IdTokenError::IssuedInFuture));
        assert!(check(&at(NOW + 3600, NOW + 60)).is_ok());
        // nbf.
        let nbf = |nbf: u64| {
            with(|c| {
                c.insert("nbf".into(), json!(nbf));
            })
        };
        assert_eq!(check(&nbf(NOW + 61)), Err(IdTokenError::NotYetValid));
        assert!(check(&nbf(NOW + 60)).is_ok());
        assert!(check(&nbf(NOW - 100)).is_ok());
        // Missing or malformed.
        for claim in ["exp", "iat"] {
            let t = with(|c| {
                c.remove(claim);
            });
            assert_eq!(check(&t), Err(IdTokenError::MissingClaim(claim)));
            for bad in [json!("1800000000"), json!(-5), json!(null)] {
                let missing = bad.is_null();
                let t = with(|c| {
                    c.insert(claim.into(), bad);
                });
                let want = if missing {
                    IdTokenError::MissingClaim(claim)
                } else {
                    IdTokenError::BadClaim(claim)
                };
                assert_eq!(check(&t), Err(want));
            }
        }
        // Fractional NumericDate.
        let t = with(|c| {
            c.insert("exp".into(), json!((NOW + 100) as f64 + 0.5));
        });
        assert_eq!(check(&t).unwrap().exp, NOW + 100);
        // Huge values do not overflow.
        let t = with(|c| {
            c.insert("exp".into(), json!(u64::MAX));
            c.insert("iat".into(), json!(0));
            c.insert("nbf".into(), json!(1e300));
        });
        assert_eq!(check(&t), Err(IdTokenError::NotYetValid));
        let far = Expectations { now: u64::MAX, leeway: u64::MAX, ..expect() };
        assert!(matches!(verify(&rs256(&claims()), &jwks(), &far), Err(IdTokenError::Expired(_))));
        let far = Expectations { now: 0, leeway: u64::MAX, ..expect() };
        assert!(verify(&rs256(&claims()), &jwks(), &far).is_ok());
    }

    #[test]
    fn nonce() {
        let t = with(|c| {
            c.insert("nonce".into(), json!("other"));
        });
        assert_eq!(check(&t), Err(IdTokenError::NonceMismatch));
        let t = with(|c| {
            c.remove("nonce");
        });
        assert_eq!(check(&t), Err(IdTokenError::NonceMismatch));
        // Not expected: any or none.
        let e = Expectations { nonce: None, ..expect() };
        assert!(verify(&t, &jwks(), &e).is_ok());
        let t = with(|c| {
            c.insert("nonce".into(), json!(5));
        });
        assert_eq!(check(&t), Err(IdTokenError::BadClaim("nonce")));
    }

    #[test]
    fn subject_and_email() {
        let t = with(|c| {
            c.remove("sub");
        });
        assert_eq!(check(&t), Err(IdTokenError::MissingClaim("sub")));
        let t = with(|c| {
            c.insert("sub".into(), json!(""));
        });
        assert_eq!(check(&t), Err(IdTokenError::MissingClaim("sub")));
        let t = with(|c| {
            c.remove("email");
        });
        assert_eq!(check(&t), Err(IdTokenError::MissingClaim("email")));
        for bad in ["", "alice", "alice@", "a b@example.com", "a\"b@example.com", "a;b@example.com"]
        {
            let t = with(|c| {
                c.insert("email".into(), json!(bad));
            });
            assert_eq!(check(&t), Err(IdTokenError::InvalidEmail), "{bad:?}");
        }
        // email_verified: true or "true" only.
        let verified = |v: Option<Value>| {
            with(|c| match v {
                Some(v) => {
                    c.insert("email_verified".into(), v);
                }
                None => {
                    c.remove("email_verified");
                }
            })
        };
        assert!(check(&verified(Some(json!("true")))).is_ok());
        for bad in
            [Some(json!(false)), Some(json!("false")), Some(json!("TRUE")), Some(json!(1)), None]
        {
            assert_eq!(
                check(&verified(bad.clone())),
                Err(IdTokenError::EmailNotVerified),
                "{bad:?}"
            );
        }
        // A name of the wrong type is dropped, not fatal.
        let t = with(|c| {
            c.insert("name".into(), json!({"given": "A"}));
        });
        assert_eq!(check(&t).unwrap().name, None);
    }

    #[test]
    fn hosted_domain() {
        let domains = ["example.com".to_string(), "corp.example".to_string()];
        let e = Expectations { hosted_domains: &domains, ..expect() };
        let hd = |v: &str| {
            with(|c| {
                c.insert("hd".into(), json!(v));
            })
        };
        assert_eq!(
            verify(&hd("example.com"), &jwks(), &e).unwrap().hd.as_deref(),
            Some("example.com")
        );
        assert!(verify(&hd("Corp.Example"), &jwks(), &e).is_ok());
        assert_eq!(verify(&hd("evil.com"), &jwks(), &e), Err(IdTokenError::WrongHostedDomain));
        assert_eq!(
            verify(&hd("sub.example.com"), &jwks(), &e),
            Err(IdTokenError::WrongHostedDomain)
        );
        assert_eq!(verify(&rs256(&claims()), &jwks(), &e), Err(IdTokenError::MissingHostedDomain));
        // Not required: any account, with or without hd.
        assert!(check(&hd("evil.com")).is_ok());
        assert!(check(&rs256(&claims())).is_ok());
        let t = with(|c| {
            c.insert("hd".into(), json!(["example.com"]));
        });
        assert_eq!(verify(&t, &jwks(), &e), Err(IdTokenError::BadClaim("hd")));
    }

    #[test]
    fn malformed_tokens() {
        let good = rs256(&claims());
        let (h, rest) = good.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        let m = IdTokenError::Malformed;
        for (token, want) in [
            (String::new(), m("not three dot-separated parts")),
            ("abc".to_string(), m("not three dot-separated parts")),
            (format!("{h}.{p}"), m("not three dot-separated parts")),
            (format!("{h}.{p}.{s}.x"), m("not three dot-separated parts")),
            (format!("{h}.{p}.{s}.x.y"), m("not three dot-separated parts")),
            (format!("{h}!.{p}.{s}"), m("header not base64url")),
            (format!("{h}=.{p}.{s}"), m("header not base64url")),
            (format!("{h}.{p}*.{s}"), m("payload not base64url")),
            (format!("{h}.{p}.{s}+"), m("signature not base64url")),
            (format!("{h}.{p}."), m("no signature")),
            (format!("{}.{p}.{s}", b64(b"not json")), m("header not a JSON object")),
            (format!("{}.{p}.{s}", b64(b"[\"RS256\"]")), m("header not a JSON object")),
            (
                format!("{}.{p}.{s}", b64(br#"{"alg":"RS256","alg":"none"}"#)),
                m("header not a JSON object"),
            ),
            (
                format!("{}.{p}.{s}", b64(br#"{"alg":"RS256","kid":7}"#)),
                m("header not a JSON object"),
            ),
        ] {
            assert_eq!(check(&token), Err(want), "{token}");
        }
        // crit is refused.
        let t = sign_raw(
            br#"{"alg":"RS256","kid":"rsa-1","crit":["exp"],"exp":1}"#,
            claims().to_string().as_bytes(),
            jsonwebtoken::Algorithm::RS256,
            &rsa(),
        );
        assert_eq!(check(&t), Err(m("crit header parameter not supported")));
        // Signed payloads that are not a claims object.
        let header = br#"{"alg":"RS256","kid":"rsa-1"}"#;
        for payload in [&b"not json"[..], b"[1,2]", b"", br#"{"iss":"a","iss":"b"}"#] {
            let t = sign_raw(header, payload, jsonwebtoken::Algorithm::RS256, &rsa());
            assert_eq!(check(&t), Err(m("payload not a JSON object")));
        }
    }

    #[test]
    fn size_limit() {
        let huge = "a".repeat(1 << 20);
        assert_eq!(check(&huge), Err(IdTokenError::TooLarge(1 << 20)));
        assert_eq!(peek(&huge), Err(IdTokenError::TooLarge(1 << 20)));
        let big = with(|c| {
            c.insert("pad".into(), json!("x".repeat(MAX_TOKEN_LEN)));
        });
        assert_eq!(check(&big), Err(IdTokenError::TooLarge(big.len())));
    }

    #[test]
    fn peek_reads_without_verifying() {
        let t = sign_with("ES256", Some("ec-1"), &claims(), &ec());
        assert_eq!(
            peek(&t).unwrap(),
            Unverified { alg: "ES256".into(), kid: Some("ec-1".into()), nonce: Some(NONCE.into()) }
        );
        // Even a forged one: peek is not verification.
        let header = b64(br#"{"alg":"none","kid":"zz"}"#);
        let payload = b64(br#"{"nonce":7}"#);
        assert_eq!(
            peek(&format!("{header}.{payload}.")).unwrap(),
            Unverified { alg: "none".into(), kid: Some("zz".into()), nonce: None }
        );
        assert_eq!(peek("a.b"), Err(IdTokenError::Malformed("not three dot-separated parts")));
        let payload = b64(b"[]");
        assert_eq!(
            peek(&format!("{header}.{payload}.")),
            Err(IdTokenError::Malformed("payload not a JSON object"))
        );
    }

    #[test]
    fn jwks_skips_unusable_keys() {
        let doc: Value = serde_json::from_slice(JWKS).unwrap();
        let rsa_key = doc["keys"][0].clone();
        let ec_key = doc["keys"][1].clone();
        let variant = |base: &Value, kid: &str, f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut k = base.clone();
            k["kid"] = json!(kid);
            f(k.as_object_mut().unwrap());
            k
        };
        let small_n = b64(&[0xC5; 128]); // 1024 bits
        let even_n = b64(&{
            let mut n = [0xC5u8; 256];
            n[255] = 0xC4;
            n
        });
        let off_curve = {
            let mut y = URL_SAFE_NO_PAD.decode(ec_key["y"].as_str().unwrap()).unwrap();
            y[31] ^= 1;
            b64(&y)
        };
        let cases: Vec<(Value, &str)> = vec![
            (
                variant(&rsa_key, "enc", &|k| {
                    k.insert("use".into(), json!("enc"));
                }),
                "not a signature key (use)",
            ),
            (
                variant(&rsa_key, "ops", &|k| {
                    k.insert("key_ops".into(), json!(["encrypt"]));
                }),
                "not a verification key (key_ops)",
            ),
            (
                variant(&rsa_key, "rs384", &|k| {
                    k.insert("alg".into(), json!("RS384"));
                }),
                "unsupported alg",
            ),
            (
                variant(&rsa_key, "oaep", &|k| {
                    k.insert("alg".into(), json!("RSA-OAEP"));
                }),
                "unsupported alg",
            ),
            (
                variant(&rsa_key, "rsa-es", &|k| {
                    k.insert("alg".into(), json!("ES256"));
                }),
                "alg does not match the key type",
            ),
            (
                variant(&rsa_key, "hs", &|k| {
                    k.insert("alg".into(), json!("HS256"));
                }),
                "unsupported alg",
            ),
            (
                variant(&rsa_key, "small", &|k| {
                    k.insert("n".into(), json!(small_n));
                }),
                "RSA modulus not 2048 to 4096 bits",
            ),
            (
                variant(&rsa_key, "even", &|k| {
                    k.insert("n".into(), json!(even_n));
                }),
                "RSA modulus is even",
            ),
            (
                variant(&rsa_key, "e1", &|k| {
                    k.insert("e".into(), json!("AQ"));
                }),
                "unusable RSA exponent",
            ),
            (
                variant(&rsa_key, "e-even", &|k| {
                    k.insert("e".into(), json!("AQAA"));
                }),
                "unusable RSA exponent",
            ),
            (
                variant(&rsa_key, "e-big", &|k| {
                    k.insert("e".into(), json!("AQAAAAAB"));
                }),
                "unusable RSA exponent",
            ),
            (
                variant(&rsa_key, "no-n", &|k| {
                    k.remove("n");
                }),
                "RSA key without n",
            ),
            (
                variant(&rsa_key, "bad-n", &|k| {
                    k.insert("n".into(), json!("!!"));
                }),
                "key component not base64url",
            ),
            (
                variant(&rsa_key, "no-kty", &|k| {
                    k.remove("kty");
                }),
                "no kty",
            ),
            (
                variant(&rsa_key, "oct", &|k| {
                    k.insert("kty".into(), json!("oct"));
                }),
                "unsupported key type",
            ),
            (
                variant(&rsa_key, "okp", &|k| {
                    k.insert("kty".into(), json!("OKP"));
                }),
                "unsupported key type",
            ),
            (
                variant(&rsa_key, "num", &|k| {
                    k.insert("n".into(), json!(5));
                }),
                "member of the wrong type",
            ),
            (
                variant(&ec_key, "p384", &|k| {
                    k.insert("crv".into(), json!("P-384"));
                }),
                "unsupported curve",
            ),
            (
                variant(&ec_key, "no-crv", &|k| {
                    k.remove("crv");
                }),
                "unsupported curve",
            ),
            (
                variant(&ec_key, "ec-rs", &|k| {
                    k.insert("alg".into(), json!("RS256"));
                }),
                "alg does not match the key type",
            ),
            (
                variant(&ec_key, "ec-384", &|k| {
                    k.insert("alg".into(), json!("ES384"));
                }),
                "unsupported alg",
            ),
            (
                variant(&ec_key, "short", &|k| {
                    k.insert("x".into(), json!("AAAA"));
                }),
                "EC P-256 coordinates not 32 bytes",
            ),
            (
                variant(&ec_key, "off", &|k| {
                    k.insert("y".into(), json!(off_curve));
                }),
                "EC point not on P-256",
            ),
            (
                variant(&ec_key, "no-y", &|k| {
                    k.remove("y");
                }),
                "EC key without y",
            ),
            (variant(&rsa_key, "rsa-1", &|_| {}), "duplicate kid"),
            (json!("a string"), "not a JSON object"),
        ];
        let mut keys = vec![rsa_key.clone(), ec_key.clone()];
        keys.extend(cases.iter().map(|(k, _)| k.clone()));
        let jwks = Jwks::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap();
        assert_eq!(jwks.kids(), ["rsa-1", "ec-1"]);
        let skipped: Vec<(Option<&str>, &str)> =
            jwks.skipped().iter().map(|s| (s.kid.as_deref(), s.reason)).collect();
        let expected: Vec<(Option<&str>, &str)> = cases
            .iter()
            .map(|(k, reason)| (k.get("kid").and_then(Value::as_str), *reason))
            .map(|(kid, reason)| {
                (if reason == "member of the wrong type" { None } else { kid }, reason)
            })
            .collect();
        assert_eq!(skipped, expected);

        // Without use/alg/kid (allowed by RFC 7517), and padded components.
        let mut bare = rsa_key.clone();
        let obj = bare.as_object_mut().unwrap();
        obj.remove("use");
        obj.remove("alg");
        obj.remove("kid");
        let n = obj["n"].as_str().unwrap().to_string() + "=";
        obj.insert("n".into(), json!(n));
        obj.insert("key_ops".into(), json!(["verify"]));
        let jwks = Jwks::parse(json!({ "keys": [bare] }).to_string().as_bytes()).unwrap();
        assert_eq!((jwks.len(), jwks.kids().len()), (1, 0));
        assert!(check_with(&jwks, &sign_with("RS256", None, &claims(), &rsa())).is_ok());
        // A token with a kid does not fall back to a kid-less key.
        assert_eq!(
            check_with(&jwks, &rs256(&claims())),
            Err(IdTokenError::UnknownKey("rsa-1".into()))
        );
    }

    fn check_with(jwks: &Jwks, token: &str) -> Result<Claims, IdTokenError> {
        verify(token, jwks, &expect())
    }

    #[test]
    fn jwks_errors() {
        assert!(matches!(Jwks::parse(b"nope"), Err(JwksError::Malformed("not a JSON object"))));
        assert!(matches!(Jwks::parse(b"[]"), Err(JwksError::Malformed("not a JSON object"))));
        assert!(matches!(Jwks::parse(b"{}"), Err(JwksError::Malformed("no \"keys\" array"))));
        assert!(matches!(
            Jwks::parse(br#"{"keys":{}}"#),
            Err(JwksError::Malformed("no \"keys\" array"))
        ));
        assert!(matches!(
            Jwks::parse(br#"{"keys":[]}"#),
            Err(JwksError::NoUsableKey { skipped: 0 })
        ));
        assert!(matches!(
            Jwks::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},1]}"#),
            Err(JwksError::NoUsableKey { skipped: 2 })
        ));
        let big = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(MAX_JWKS_LEN));
        assert!(matches!(Jwks::parse(big.as_bytes()), Err(JwksError::TooLarge(_))));
        assert_eq!(
            JwksError::NoUsableKey { skipped: 3 }.to_string(),
            "key set has no usable signing key (3 skipped)"
        );
    }

    #[test]
    fn error_messages_are_short_and_safe() {
        let t = sign_with("RS256", Some("a\r\nb"), &claims(), &rsa());
        assert_eq!(check(&t).unwrap_err().to_string(), "signed with unknown key \"a??b\"");
        assert_eq!(IdTokenError::Expired(5).to_string(), "expired 5s ago");
        assert_eq!(IdTokenError::MissingClaim("email").to_string(), "no email claim");
    }

    proptest! {
        #[test]
        fn prop_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = verify(&s, &jwks(), &expect());
            let _ = peek(&s);
            let _ = Jwks::parse(&bytes);
        }

        #[test]
        fn prop_dotted_garbage_never_panics(h in "[A-Za-z0-9_-]{0,60}", p in "[A-Za-z0-9_-]{0,200}", s in "[A-Za-z0-9_-]{0,400}") {
            let t = format!("{h}.{p}.{s}");
            let _ = verify(&t, &jwks(), &expect());
            let _ = peek(&t);
        }

        #[test]
        fn prop_json_headers_never_panic(alg in "[A-Za-z0-9]{0,8}", kid in ".{0,20}", payload in ".{0,200}", sig in "[A-Za-z0-9_-]{0,400}") {
            let header = json!({ "alg": alg, "kid": kid }).to_string();
            let t = format!("{}.{}.{sig}", b64(header.as_bytes()), b64(payload.as_bytes()));
            prop_assert!(verify(&t, &jwks(), &expect()).is_err());
            let _ = peek(&t);
        }

        #[test]
        fn prop_jwks_keys_never_panic(kty in "RSA|EC|oct|x", crv in "P-256|P-384|x", n in "[A-Za-z0-9_-]{0,400}", e in "[A-Za-z0-9_-]{0,12}", x in "[A-Za-z0-9_-]{0,50}", y in "[A-Za-z0-9_-]{0,50}") {
            let doc = json!({ "keys": [{ "kty": kty, "crv": crv, "n": n, "e": e, "x": x, "y": y }] });
            let _ = Jwks::parse(doc.to_string().as_bytes());
        }

        #[test]
        fn prop_tampered_token_refused(pos in 0usize..2000, bit in 0u8..6) {
            // Signing is slow in debug builds: sign once.
            static TOKEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| rs256(&claims()));
            let mut b = TOKEN.clone().into_bytes();
            let pos = pos % b.len();
            // Flip a bit but stay in the base64url alphabet or a dot, so that the change is
            // meaningful rather than a trivial decoding error.
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let replaced = alphabet[(alphabet.iter().position(|&c| c == b[pos]).unwrap_or(0) ^ (1 << bit)) % 64];
            prop_assume!(replaced != b[pos]);
            b[pos] = replaced;
            let t = String::from_utf8(b).unwrap();
            prop_assert!(check(&t).is_err());
        }
    }
}
