//! ID token claims checks (`idtoken::verify` after a good signature): tokens genuinely signed
//! with the fixture keys (`rsa.pem` = `rsa-1`, `ec.pem` = `ec-1`, and `rsa-other.pem`, in no key
//! set) over fuzzer-built headers and payloads, verified against the fixture key set.
//!
//! Besides never panicking: a token is accepted only if its header names the signer's algorithm
//! (and its key, or no key), has no `crit`, and its claims meet every rule of the expectations
//! (checked here again on the payload JSON itself).
#![no_main]

use arbitrary::Arbitrary;
use gpt_auth_core::idtoken::{self, Expectations};
use gpt_auth_core::session::valid_email;
use gpt_auth_fuzz::{jwks, sign_raw, Signer, CLIENT, ISS, ISSUERS, NONCE, NOW};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

#[derive(Debug, Arbitrary)]
enum Text {
    Iss,
    BareIss,
    Client,
    Nonce,
    Email,
    True,
    Domain,
    Other(String),
}

impl Text {
    fn value(&self) -> String {
        match self {
            Text::Iss => ISS.into(),
            Text::BareIss => "accounts.google.com".into(),
            Text::Client => CLIENT.into(),
            Text::Nonce => NONCE.into(),
            Text::Email => "alice@example.com".into(),
            Text::True => "true".into(),
            Text::Domain => "example.com".into(),
            Text::Other(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Claim {
    Absent,
    Null,
    Bool(bool),
    Text(Text),
    /// Seconds relative to now.
    Time(i32),
    Int(i64),
    Big(u64),
    Float(f64),
    List(Vec<Text>),
    Object,
}

impl Claim {
    fn value(&self) -> Option<Value> {
        Some(match self {
            Claim::Absent => return None,
            Claim::Null => Value::Null,
            Claim::Bool(b) => json!(b),
            Claim::Text(t) => json!(t.value()),
            Claim::Time(rel) => {
                let t = i64::try_from(NOW).unwrap() + i64::from(*rel);
                json!(t)
            }
            Claim::Int(i) => json!(i),
            Claim::Big(u) => json!(u),
            Claim::Float(f) => json!(f),
            Claim::List(items) => Value::Array(items.iter().map(|t| json!(t.value())).collect()),
            Claim::Object => json!({}),
        })
    }
}

#[derive(Debug, Arbitrary)]
struct Claims {
    iss: Claim,
    sub: Claim,
    aud: Claim,
    azp: Claim,
    exp: Claim,
    iat: Claim,
    nbf: Claim,
    nonce: Claim,
    email: Claim,
    email_verified: Claim,
    hd: Claim,
    name: Claim,
    extra: Vec<(String, Claim)>,
}

impl Claims {
    fn json(&self) -> Vec<u8> {
        let mut m = Map::new();
        for (k, v) in [
            ("iss", &self.iss),
            ("sub", &self.sub),
            ("aud", &self.aud),
            ("azp", &self.azp),
            ("exp", &self.exp),
            ("iat", &self.iat),
            ("nbf", &self.nbf),
            ("nonce", &self.nonce),
            ("email", &self.email),
            ("email_verified", &self.email_verified),
            ("hd", &self.hd),
            ("name", &self.name),
        ] {
            if let Some(v) = v.value() {
                m.insert(k.into(), v);
            }
        }
        for (k, v) in &self.extra {
            if let Some(v) = v.value() {
                m.insert(k.clone(), v);
            }
        }
        Value::Object(m).to_string().into_bytes()
    }
}

#[derive(Debug, Arbitrary)]
enum Payload {
    Claims(Claims),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Alg {
    /// The signer's own algorithm.
    Signer,
    Rs256,
    Es256,
    Hs256,
    None,
    Other(String),
    Missing,
}

#[derive(Debug, Arbitrary)]
enum Kid {
    Signer,
    Missing,
    Rsa,
    Ec,
    Other(String),
    Number(i32),
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// 0xff: `rsa.pem`, 0xfe: `rsa-other.pem`, anything else `ec.pem` (RSA signing is slow, so
    /// most inputs use the EC key; the claims checks do not depend on the algorithm). Short
    /// inputs read as zeros: EC.
    signer: u8,
    alg: Alg,
    kid: Kid,
    crit: bool,
    payload: Payload,
    expect_nonce: bool,
    hosted_domains: u8,
    leeway: u16,
}

fuzz_target!(|input: Input| {
    let signer = match input.signer {
        0xff => Signer::Rsa,
        0xfe => Signer::RsaOther,
        _ => Signer::Ec,
    };
    let mut header = Map::new();
    let alg = match &input.alg {
        Alg::Signer => Some(signer.alg_name().to_owned()),
        Alg::Rs256 => Some("RS256".into()),
        Alg::Es256 => Some("ES256".into()),
        Alg::Hs256 => Some("HS256".into()),
        Alg::None => Some("none".into()),
        Alg::Other(s) => Some(s.clone()),
        Alg::Missing => None,
    };
    if let Some(alg) = &alg {
        header.insert("alg".into(), json!(alg));
    }
    let kid = match &input.kid {
        Kid::Signer => signer.kid().map(|k| json!(k)),
        Kid::Missing => None,
        Kid::Rsa => Some(json!("rsa-1")),
        Kid::Ec => Some(json!("ec-1")),
        Kid::Other(s) => Some(json!(s)),
        Kid::Number(n) => Some(json!(n)),
    };
    if let Some(kid) = &kid {
        header.insert("kid".into(), kid.clone());
    }
    if input.crit {
        header.insert("crit".into(), json!(["exp"]));
    }
    let header = Value::Object(header).to_string();
    let payload = match &input.payload {
        Payload::Claims(c) => c.json(),
        Payload::Raw(bytes) => bytes.clone(),
    };
    let token = sign_raw(header.as_bytes(), &payload, signer);

    let domains: Vec<String> = match input.hosted_domains % 3 {
        0 => vec![],
        1 => vec!["example.com".into()],
        _ => vec!["Example.COM".into(), "corp.test".into()],
    };
    let expect = Expectations {
        issuers: ISSUERS,
        client_id: CLIENT,
        nonce: input.expect_nonce.then_some(NONCE),
        now: NOW,
        leeway: u64::from(input.leeway),
        hosted_domains: &domains,
    };
    let result = idtoken::verify(&token, jwks(), &expect);
    let peeked = idtoken::peek(&token);

    let Ok(c) = result else { return };

    // The header: the signer's algorithm, its key (or no kid: one key per algorithm here).
    assert_ne!(signer, Signer::RsaOther, "a token signed with a key outside the set verifies");
    assert_eq!(alg.as_deref(), Some(signer.alg_name()));
    assert!(kid.is_none() || kid == signer.kid().map(|k| json!(k)), "{kid:?}");
    assert!(!input.crit);
    assert!(peeked.is_ok());

    // The claims, as returned.
    let leeway = expect.leeway;
    assert!(ISSUERS.contains(&c.iss.as_str()));
    assert!(c.aud.iter().any(|a| a == CLIENT));
    assert!(c.azp.as_deref().is_none_or(|a| a == CLIENT));
    assert!(c.aud.len() == 1 || c.azp.is_some(), "several audiences without azp");
    assert!(c.exp.saturating_add(leeway) > NOW, "expired");
    assert!(c.iat <= NOW + leeway, "issued in the future");
    assert!(valid_email(&c.email) && c.email_verified && !c.sub.is_empty());
    if expect.nonce.is_some() {
        assert_eq!(c.nonce.as_deref(), Some(NONCE));
    }
    if !domains.is_empty() {
        let hd = c.hd.as_deref().expect("hd required");
        assert!(domains.iter().any(|d| d.eq_ignore_ascii_case(hd)));
    }

    // The claims, as signed (serde_json keeps the last of duplicate members; the verifier refuses
    // duplicates of the members it reads, so both agree on those).
    let v: Value = serde_json::from_slice(&payload).expect("accepted payload is JSON");
    assert_eq!(v["iss"].as_str(), Some(c.iss.as_str()));
    assert_eq!(v["email"].as_str(), Some(c.email.as_str()));
    assert_eq!(v["sub"].as_str(), Some(c.sub.as_str()));
    assert!(v["email_verified"] == json!(true) || v["email_verified"] == json!("true"));
    let time = |t: &Value| t.as_u64().or_else(|| t.as_f64().map(|f| f as u64));
    assert_eq!(time(&v["exp"]), Some(c.exp));
    assert_eq!(time(&v["iat"]), Some(c.iat));
    if let Some(nbf) = v.get("nbf").filter(|n| !n.is_null()) {
        let nbf = time(nbf).expect("nbf accepted as a number");
        assert!(nbf <= NOW + leeway, "not valid yet");
    }
});
