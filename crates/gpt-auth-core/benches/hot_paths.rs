//! Cost of gpt_auth's hot paths, measured with criterion (`cargo bench -p gpt-auth-core`;
//! `make bench` runs it and copies the key numbers into `bench/results/`):
//!
//! - `idtoken_verify/rs256`, `idtoken_verify/es256`: the login callback's expensive step, an ID
//!   token verified against an already parsed key set (a warm JWKS cache), claims included;
//! - `session_decode`: the per-request session cookie check;
//! - `allowlist_allows/*`: the per-request allowlist lookup, on 100,000 addresses and on 3;
//! - `usage_request/scan_100k`: an AI API request body of 100 KB (a chat with its history and
//!   tools) scanned for its model, stream flag and output limit (`usage::request::parse`);
//! - `usage_stream/chat_50_events`: a streamed chat completion of 50 events, fed in 1400-byte
//!   chunks through a new `usage::sse::Parser` and `usage::response::StreamMeter`, as the
//!   module's body filter meters an answer.
//!
//! Tokens are signed with the test keys in `tests/fixtures/` (see its README), the same way the
//! unit tests in `src/idtoken.rs` sign them.

use std::hint::black_box;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gpt_auth_core::allowlist::Allowlist;
use gpt_auth_core::cookie_header;
use gpt_auth_core::idtoken::{self, Expectations, Jwks};
use gpt_auth_core::keys::{encode_key, KeyRing};
use gpt_auth_core::session;
use gpt_auth_core::usage::response::{Disposition, StreamMeter};
use gpt_auth_core::usage::sse::{Item, Parser};
use gpt_auth_core::usage::{request, Api};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

const JWKS: &[u8] = include_bytes!("../tests/fixtures/jwks.json");
const RSA_PEM: &[u8] = include_bytes!("../tests/fixtures/rsa.pem");
const EC_PEM: &[u8] = include_bytes!("../tests/fixtures/ec.pem");

const NOW: u64 = 1_800_000_000;
const WEEK: u64 = 7 * 86400;
const ISS: &str = "https://accounts.google.com";
const CLIENT: &str = "1234-abc.apps.googleusercontent.com";
const NONCE: &str = "n-0S6_WzA2Mj";
const ISSUERS: &[&str] = &[ISS];

/// Size of the large allowlist (the issue's "100,000 addresses").
const BIG_LIST: usize = 100_000;

/// The DER inside PEM armour.
fn der(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).expect("PEM is text");
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

/// A token as a provider would send it: header with `kid`, typical Google claims.
fn token(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let header = json!({ "alg": format!("{alg:?}"), "typ": "JWT", "kid": kid });
    let claims = json!({
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
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("signing works");
    format!("{input}.{sig}")
}

fn idtoken_verify(c: &mut Criterion) {
    // The warm cache: the key set is parsed once, as the module keeps it between logins.
    let jwks = Jwks::parse(JWKS).expect("fixture key set parses");
    let expect = Expectations {
        issuers: ISSUERS,
        client_id: CLIENT,
        nonce: Some(NONCE),
        now: NOW,
        leeway: 60,
        hosted_domains: &[],
    };
    let rs256 = token(Algorithm::RS256, "rsa-1", &EncodingKey::from_rsa_der(&der(RSA_PEM)));
    let es256 = token(Algorithm::ES256, "ec-1", &EncodingKey::from_ec_der(&der(EC_PEM)));

    let mut g = c.benchmark_group("idtoken_verify");
    g.throughput(Throughput::Elements(1));
    for (name, t) in [("rs256", &rs256), ("es256", &es256)] {
        let claims = idtoken::verify(t, &jwks, &expect).expect("token verifies");
        assert_eq!(claims.email, "alice@example.com");
        g.bench_function(name, |b| {
            b.iter(|| idtoken::verify(black_box(t), black_box(&jwks), &expect))
        });
    }
    g.finish();
}

fn test_ring() -> KeyRing {
    let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    KeyRing::parse(&encode_key(&secret)).expect("key parses")
}

fn session_decode(c: &mut Criterion) {
    let ring = test_ring();
    let value =
        session::encode(ring.signing_key(), "gpt_auth", "user050000@example.com", NOW, NOW + WEEK);
    let header = format!("theme=dark; gpt_auth={value}; _ga=GA1.2.3");
    assert!(session::decode(&ring, "gpt_auth", value.as_bytes(), NOW, WEEK).is_ok());

    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| {
        b.iter(|| {
            session::decode(black_box(&ring), "gpt_auth", black_box(value.as_bytes()), NOW, WEEK)
        })
    });
    // What the access handler does per request: find the cookie in the header, then decode.
    g.bench_function("scan_and_decode", |b| {
        b.iter(|| {
            cookie_header::values(black_box(header.as_bytes()), b"gpt_auth")
                .map(|v| session::decode(&ring, "gpt_auth", v, NOW, WEEK))
                .find(Result::is_ok)
        })
    });
    g.finish();
}

fn allowlist_allows(c: &mut Criterion) {
    let mut text = String::with_capacity(BIG_LIST * 24);
    for i in 0..BIG_LIST {
        text.push_str(&format!("user{i:06}@example.com\n"));
    }
    let big = Allowlist::parse(&text).expect("big list parses");
    assert_eq!(big.len(), BIG_LIST);
    let small = Allowlist::parse("alice@example.com\nuser050000@example.com\n@corp.example\n")
        .expect("small list parses");

    let mut g = c.benchmark_group("allowlist_allows");
    g.throughput(Throughput::Elements(1));
    for (name, list, email) in [
        ("100k_hit", &big, "User050000@Example.com"),
        ("100k_miss", &big, "mallory@example.net"),
        ("3_hit", &small, "User050000@Example.com"),
        ("3_domain_hit", &small, "bob@corp.example"),
    ] {
        g.bench_function(name, |b| b.iter(|| black_box(list).allows(black_box(email))));
    }
    g.finish();
}

/// A chat completions request of about `size` bytes: a system prompt, alternating turns and a
/// tool with a JSON schema, model and stream flag first as the SDKs write them.
fn chat_request(size: usize) -> Vec<u8> {
    let turn = "Explain how the \"usage\" object is reported when streaming, with an example. \
                Los tokens en caché cuestan menos; 缓存的令牌更便宜. ";
    let mut messages = vec![json!({"role": "system", "content": "You are a helpful assistant."})];
    let mut body = Vec::new();
    while body.len() < size {
        let role = if messages.len() % 2 == 1 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": turn.repeat(4)}));
        body = serde_json::to_vec(&json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "messages": messages,
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {
                    "location": {"type": "string"}, "model": {"type": "string"}},
                    "required": ["location"]}}}],
            "max_completion_tokens": 1024,
        }))
        .expect("serializes");
    }
    body
}

/// A chat completions stream of 50 events: the role chunk, 46 content deltas, the finish
/// chunk, the usage chunk and `[DONE]` (the chunk shape of OpenAI's reference).
fn chat_stream() -> Vec<u8> {
    let chunk = |choices: serde_json::Value, usage: serde_json::Value| {
        let c = json!({"id": "chatcmpl-123", "object": "chat.completion.chunk",
            "created": 1694268190, "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb",
            "choices": choices, "usage": usage, "obfuscation": "r4N7vQ2m"});
        format!("data: {c}\n\n")
    };
    let delta = |d: serde_json::Value, finish: serde_json::Value| json!([{"index": 0, "delta": d, "logprobs": null, "finish_reason": finish}]);
    let mut s = chunk(delta(json!({"role": "assistant", "content": ""}), json!(null)), json!(null));
    for i in 0..46 {
        s += &chunk(delta(json!({"content": format!(" word{i}")}), json!(null)), json!(null));
    }
    s += &chunk(delta(json!({}), json!("stop")), json!(null));
    s += &chunk(
        json!([]),
        json!({"prompt_tokens": 19, "completion_tokens": 47, "total_tokens": 66,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}),
    );
    s += "data: [DONE]\n\n";
    s.into_bytes()
}

/// What the body filter does for one answer: parse, meter, count what it would forward.
fn meter_stream(stream: &[u8], chunk: usize) -> (Option<u64>, u64) {
    let mut parser = Parser::new();
    let mut meter = StreamMeter::new(Api::ChatCompletions, true);
    let mut removed = 0;
    for c in stream.chunks(chunk) {
        parser.feed(c, |item| {
            if let Item::Event(e) = item {
                if meter.on_event(&e) == Disposition::Remove {
                    removed += e.span.len();
                }
            }
        });
    }
    parser.finish(|_| {});
    (meter.usage().map(|u| u.output), removed)
}

fn usage_metering(c: &mut Criterion) {
    let body = chat_request(100_000);
    let info = request::parse(&body).expect("request parses");
    assert_eq!(info.model.as_deref(), Some("gpt-4o-mini"));
    let mut g = c.benchmark_group("usage_request");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("scan_100k", |b| b.iter(|| request::parse(black_box(&body))));
    g.finish();

    let stream = chat_stream();
    let (output, removed) = meter_stream(&stream, 1400);
    assert_eq!(output, Some(47));
    assert!(removed > 0);
    let mut g = c.benchmark_group("usage_stream");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("chat_50_events", |b| b.iter(|| meter_stream(black_box(&stream), 1400)));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = idtoken_verify, session_decode, allowlist_allows, usage_metering
}
criterion_main!(benches);
