//! Writes the seed inputs of every fuzz target into `<corpus dir>/<target>/seed-*`: genuine
//! cookies, tokens, key sets and provider documents made with the fixtures of this crate, and
//! the attack strings of the unit tests and of t/. `tools/fuzz.sh seed` runs it; `make fuzz`
//! then grows and minimizes the corpus from these.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus [repo root]

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gpt_auth_core::keys::Key;
use gpt_auth_core::{session, state};
use gpt_auth_fuzz::*;
use serde_json::json;

struct Corpus {
    dir: PathBuf,
    count: usize,
}

impl Corpus {
    fn add(&mut self, target: &str, data: impl AsRef<[u8]>) {
        let data = data.as_ref();
        let dir = self.dir.join(target);
        fs::create_dir_all(&dir).unwrap();
        // Named by content, so that running this again adds nothing new.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        fs::write(dir.join(format!("seed-{h:016x}")), data).unwrap();
        self.count += 1;
    }

    fn with_selector(&mut self, target: &str, selector: u8, data: impl AsRef<[u8]>) {
        let mut v = vec![selector];
        v.extend_from_slice(data.as_ref());
        self.add(target, v);
    }
}

fn b64(s: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "fuzz/corpus".into()));
    let root = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let mut c = Corpus { dir, count: 0 };

    cookies(&mut c);
    tokens(&mut c);
    key_sets(&mut c);
    return_urls(&mut c);
    allowlists(&mut c);
    for text in [
        "# offboarding\nAlice@Example.com 2026-12-04T09:30:00Z  # left\nbob@example.com 1796376600\nbob@example.com 5\n",
        "alice@example.com 2024-02-29T23:59:59Z\n",
        "alice@example.com 2023-02-29T00:00:00Z\n",
        "alice@example.com\n",
    ] {
        c.add("revocations", text);
    }
    documents(&mut c);
    forms_and_headers(&mut c);
    pages(&mut c, &root);
    usage(&mut c);
    cluster(&mut c);

    println!("wrote {} seed inputs under {}", c.count, c.dir.display());
}

fn cookies(c: &mut Corpus) {
    let r = ring();
    let (new, old) = (&r.keys()[0], &r.keys()[1]);
    let known = Key::from_bytes(&(0..32u8).collect::<Vec<_>>()).unwrap();
    let valid = session::encode(new, COOKIE, "alice@example.com", NOW - 60, NOW + MAX_AGE);
    let sessions = [
        valid.clone(),
        session::encode(old, COOKIE, "Bob.Smith+tag@sub.example.org", NOW - 3600, NOW + 3600),
        session::encode(new, COOKIE, "alice@example.com", NOW - 10 * MAX_AGE, NOW - 1),
        session::encode(new, COOKIE, "alice@example.com", NOW + 3600, NOW + 7200),
        session::encode(new, "other", "alice@example.com", NOW, NOW + 60),
        session::encode(&known, COOKIE, "alice@example.com", 1_700_000_000, 1_700_604_800),
        session::encode(new, COOKIE, &format!("{}@example.com", "a".repeat(242)), NOW, NOW + 9),
        format!("1.{}.01.5.YUBiLmM.{}", new.id(), "A".repeat(43)),
        format!("2.{}.1.2.YUBiLmM.x", new.id()),
        format!("1.{}.1.2.YUBiLmM.{}.extra", new.id(), "A".repeat(43)),
        "1.AAAAAAAA.1.2.YUBiLmM.".to_string() + &"A".repeat(43),
    ];
    for s in &sessions {
        c.add("session_decode", s);
    }
    c.add("session_decode", format!("_ga=GA1.2.3.4; {COOKIE}={valid}; theme=dark"));
    c.add("session_decode", format!("{COOKIE}=junk; {COOKIE}=\"{valid}\""));

    for h in [
        format!("a=1; {COOKIE}=xyz; b=2"),
        format!("{COOKIE}=one;{COOKIE}=two"),
        format!("  {COOKIE} = \"q.v\" ;"),
        ";;; =novalue; noequals; \"=x; a=\"".to_string(),
        format!("GPT_AUTH=x; gpt_auth_state=y; xgpt_auth=z; {COOKIE}=\t{valid}\t"),
        format!("{STATE_COOKIE}\0{COOKIE}={valid}; {STATE_COOKIE}=s1.a.b.c"),
    ] {
        c.add("cookie_header", h);
    }

    let st = state::State {
        sid: SID.into(),
        nonce: "n-0S6_WzA2Mj".into(),
        verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        return_url: "https://app.example.com/path?q=1".into(),
        provider: "google".into(),
        exp: NOW + 600,
    };
    let good = state::encode(new, STATE_COOKIE, &st).unwrap();
    c.add("state_decode", &good);
    c.add("state_decode", format!("{STATE_COOKIE}={good}"));
    c.add(
        "state_decode",
        format!("{STATE_COOKIE}={}", state::encode(old, STATE_COOKIE, &st).unwrap()),
    );
    let odd = state::State {
        verifier: String::new(),
        return_url: "/a.b?c=\"d\"&e=\\\u{0}\u{7f}\u{e9}\u{1F600}".into(),
        provider: "\u{3a9}.provider.".into(),
        exp: NOW + 1,
        ..st.clone()
    };
    c.add("state_decode", state::encode(new, STATE_COOKIE, &odd).unwrap());
    let expired = state::State { exp: NOW - 1, ..st.clone() };
    c.add("state_decode", state::encode(new, STATE_COOKIE, &expired).unwrap());
    // Signed nonsense: a key holder's mistakes must still be refused cleanly.
    for payload in
        ["{}", "[]", "{\"sid\":1}", "null", "{\"sid\":\"AAECAwQFBgcICQoLDA0ODw\",\"sid\":\"x\"}"]
    {
        let body = format!("s1.{}.{}", new.id(), b64(payload));
        let mut m = new.mac();
        hmac::Mac::update(&mut m, format!("{STATE_COOKIE}={body}").as_bytes());
        let tag = hmac::Mac::finalize(m).into_bytes();
        c.add("state_decode", format!("{body}.{}", b64(tag)));
    }
    let session_as_state = session::encode(new, STATE_COOKIE, "a@b.c", NOW, NOW + 60);
    c.add("state_decode", format!("{STATE_COOKIE}={session_as_state}"));
    c.add("state_decode", format!("gpt_auth_state_BBECAwQFBgcICQoLDA0ODw={good}"));
}

fn tokens(c: &mut Corpus) {
    let good = good_claims();
    let mut tokens = vec![
        sign_claims(&good, Signer::Rsa),
        sign_claims(&good, Signer::Ec),
        sign_claims(&good, Signer::RsaOther),
        sign_raw(br#"{"alg":"RS256"}"#, good.to_string().as_bytes(), Signer::Rsa),
        sign_raw(br#"{"alg":"ES256","kid":"rsa-1"}"#, good.to_string().as_bytes(), Signer::Ec),
        sign_raw(
            br#"{"alg":"RS256","kid":"rsa-1","crit":["exp"]}"#,
            good.to_string().as_bytes(),
            Signer::Rsa,
        ),
    ];
    let mut expired = good.clone();
    expired["exp"] = json!(NOW - 3600);
    tokens.push(sign_claims(&expired, Signer::Rsa));
    let mut multi = good.clone();
    multi["aud"] = json!([CLIENT, "other"]);
    multi.as_object_mut().unwrap().remove("azp");
    multi["email_verified"] = json!("true");
    multi["hd"] = json!("example.com");
    tokens.push(sign_claims(&multi, Signer::Ec));
    let payload = b64(good.to_string());
    tokens.push(format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#)));
    tokens.push(format!("{}.{payload}.c2ln", b64(r#"{"alg":"HS256","kid":"rsa-1"}"#)));
    tokens.push(format!("{}.{payload}.c2ln", b64("{\"alg\":\"\\u001b[31mX\"}")));
    tokens.push("a.b".into());
    tokens.push("..".into());
    for t in &tokens {
        c.add("idtoken", t);
    }
    // Token responses carrying them.
    c.add(
        "token_response",
        json!({
            "access_token": "ya29.a0AfH6SMB",
            "expires_in": 3599,
            "scope": "openid https://www.googleapis.com/auth/userinfo.email",
            "token_type": "Bearer",
            "id_token": tokens[1],
        })
        .to_string(),
    );
    for body in [
        r#"{"error":"invalid_grant","error_description":"Bad Request"}"#,
        "{\"error\":\"invalid_client\",\"error_description\":\"\\u001b[31m\\r\\nX-Injected: 1\"}",
        r#"{"error":1}"#,
        r#"{"id_token":null,"access_token":"x"}"#,
        r#"{"id_token":"","token_type":"Bearer"}"#,
        r#"{"id_token":"x","id_token":"y"}"#,
        "<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
        r#"{"id_token":"eyJ.eyJ.sig","access_token":7}"#,
        r#"  {"id_token":"#,
    ] {
        c.add("token_response", body);
    }
}

fn key_sets(c: &mut Corpus) {
    c.add("jwks", JWKS_JSON);
    let fixture: serde_json::Value = serde_json::from_slice(JWKS_JSON).unwrap();
    let rsa = fixture["keys"][0].clone();
    let ec = fixture["keys"][1].clone();
    let with = |key: &serde_json::Value,
                f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut k = key.clone();
        f(k.as_object_mut().unwrap());
        k
    };
    // A fake 4096-bit odd modulus (not a real key: enough to pass the size checks).
    let n4096 = b64([0xc5u8; 512]);
    let docs = vec![
        json!({ "keys": [rsa, ec] }),
        json!({ "keys": [with(&rsa, &|k| { k.remove("kid"); k.remove("alg"); k.remove("use"); })] }),
        json!({ "keys": [ec, with(&ec, &|k| { k.insert("crv".into(), json!("P-384")); })] }),
        json!({ "keys": [rsa, with(&rsa, &|k| { k.insert("use".into(), json!("enc")); })] }),
        json!({ "keys": [rsa, with(&rsa, &|k| { k.insert("key_ops".into(), json!(["sign"])); })] }),
        json!({ "keys": [rsa, rsa] }),
        json!({ "keys": [with(&rsa, &|k| { k.insert("e".into(), json!("Aw")); k.insert("kid".into(), json!("ec-1")); }), ec] }),
        json!({ "keys": [with(&rsa, &|k| { k.insert("n".into(), json!(n4096)); })] }),
        json!({ "keys": [with(&rsa, &|k| { k.insert("n".into(), json!("AQAB")); })] }),
        json!({ "keys": [with(&ec, &|k| { k.insert("y".into(), json!(b64([7u8; 32]))); })] }),
        json!({ "keys": [{"kty":"oct","k":"c2VjcmV0"}, {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}, 1, null] }),
        json!({ "keys": [with(&rsa, &|k| { k.insert("alg".into(), json!("PS256")); k.insert("kid".into(), json!("\u{1b}[31m")); })] }),
        json!({ "keys": {} }),
        json!({}),
    ];
    for d in docs {
        c.add("jwks", d.to_string());
    }
    c.add("jwks", "[]");
    c.add("jwks", "<html>");
}

fn return_urls(c: &mut Corpus) {
    const URLS: &[&str] = &[
        "/",
        "/redirect",
        "/path?x=1&y=2#frag",
        "/?rd=//evil.com",
        "/a%20b",
        "/a%2Fb",
        "/a/.../b",
        "/a/..",
        "/~user/x?q=%2F%2Fevil.com",
        "/50%",
        "https://example.com",
        "HTTPS://EXAMPLE.COM/x",
        "https://a.b.example.com:8443/redirect",
        "https://example.com./x",
        "https://example.com?x=https://evil.com",
        "https://y.x.corp.test:8080/",
        "https://mixed.case.org/",
        "https://login.example.net:8443/oauth2/callback",
        "http://127.0.0.1:8080/",
        "http://[::1]:3000/x",
        "//evil.com",
        "/\\evil.com",
        "/\t/evil.com",
        "/./\\evil.com",
        "/a/../..//evil.com",
        "/%2F/evil.com",
        "/%5cevil.com",
        "/%2e/%2fevil.com",
        "/foo%0d%0aSet-Cookie:%20x=y",
        "/%00",
        "/caf\u{e9}",
        "/\"><script>alert(1)</script>",
        "https://evil.com",
        "https://example.com.evil.com/",
        "https://example.com@evil.com/",
        "https://example.com:443@evil.com/",
        "https://evil.com#@example.com",
        "https://evil.com\\@example.com",
        "https:evil.com",
        "https:///evil.com",
        "javascript:alert(1)",
        "JavaScript://example.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://ex\u{e4}mple.com/",
        "https://example.com%2eevil.com/",
        "https://%65vil.com/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::2]/",
        "http://[::1/",
        "https://example.com:99999/",
        "https://gpt4.example.test/chat?q=1&x=%2F",
        "http://a.b.example.test:8443/p#frag",
        "https://deep.sub.partner.test/",
        "http://10.1.2.3/",
        "http://auth.example.test/own",
        "/search?q=a//b&r=https://evil.com",
        "https://www.example.test/\r\nSet-Cookie: x=1",
        "https://www.example.test\0.evil.com/",
        "https%3A%2F%2Fevil.com",
        "https://.example.test/",
        "https://evil.com%2F@www.example.test/",
        "http://[::1]:8443/",
        "http://0x7f.1:80/",
    ];
    for (i, url) in URLS.iter().enumerate() {
        c.with_selector("return_url", (i % 4) as u8, url);
    }
    for (policy, rd) in [
        (".example.com\nlogin.example.net\napp.other.org\n.corp.test", "https://x.corp.test/"),
        ("\n[::1]:8443\n127.0.0.1\n::1", "http://[::1]/"),
        ("example.com.\n\n.", "https://a.example.com./"),
        ("\nLOGIN.example.net.\n0x7f.1", "http://127.0.0.1/"),
    ] {
        c.with_selector("return_url", 0xF0, format!("{policy}\0{rd}"));
    }
}

fn allowlists(c: &mut Corpus) {
    for text in [
        "# team\nalice@example.com\n\n  Bob@Example.COM  # the boss\n@corp.example\n\0alice@example.com\0ALICE@EXAMPLE.COM\0x@sub.corp.example\0x@corp.example.evil.com",
        "a#b@example.com\n\0a#b@example.com",
        "# nobody yet\n\n",
        "@example.com\n!Bob@Example.com # left\n!@contractors.example\nx@contractors.example\n\0bob@example.com\0alice@example.com\0x@contractors.example",
        "!\n",
        "!bob@example.com\n\0bob@example.com",
        "ok@example.com\nalice example.com",
        "@-bad.com",
        "@bad..com\n",
        "a\"b@example.com",
        "\u{e9}@example.com\n@xn--bcher-kva.example\r\n\tcarol@example.org\t#x\0carol@EXAMPLE.org",
    ] {
        c.add("allowlist", text);
    }
}

fn documents(c: &mut Corpus) {
    let google = json!({
        "issuer": "https://accounts.google.com",
        "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_endpoint": "https://oauth2.googleapis.com/token",
        "userinfo_endpoint": "https://openidconnect.googleapis.com/v1/userinfo",
        "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
        "response_types_supported": ["code", "token", "id_token", "none"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "code_challenge_methods_supported": ["plain", "S256"],
    });
    c.with_selector("discovery", 0, google.to_string());
    c.with_selector(
        "discovery",
        1,
        json!({
            "issuer": "http://127.0.0.1:3000/oidc",
            "authorization_endpoint": "http://127.0.0.1:3000/oidc/auth",
            "token_endpoint": "http://127.0.0.1:3000/oidc/token",
            "jwks_uri": "http://127.0.0.1:3000/oidc/jwks",
            "end_session_endpoint": "http://127.0.0.1:3000/oidc/session/end",
            "authorization_response_iss_parameter_supported": true,
        })
        .to_string(),
    );
    c.with_selector(
        "discovery",
        2,
        json!({
            "issuer": "https://idp.example.net",
            "authorization_endpoint": "https://idp.example.net/authorize?x=1",
            "token_endpoint": "http://idp.example.net/token",
            "jwks_uri": "https://idp.example.net/jwks#frag",
            "end_session_endpoint": 5,
            "code_challenge_methods_supported": "S256",
        })
        .to_string(),
    );
    c.with_selector(
        "discovery",
        0xF0,
        "https://sso.example.org/realms/x\n{\"issuer\":\"https://sso.example.org/realms/x\",\"authorization_endpoint\":\"https://sso.example.org/auth\",\"token_endpoint\":\"https://[::1]:8443/t\",\"jwks_uri\":\"https://sso.example.org/certs\"}",
    );
    c.with_selector("discovery", 0, "<!DOCTYPE html><title>Sign in</title>");
    c.with_selector(
        "discovery",
        0,
        "{\"issuer\":\"https://accounts.google.com\",\"issuer\":\"x\"}",
    );
    c.with_selector(
        "discovery",
        0,
        "{\"issuer\":\"https://accounts.google.com\",\"authorization_endpoint\":",
    );
}

fn forms_and_headers(c: &mut Corpus) {
    c.with_selector(
        "form",
        0,
        "code=4%2F0AX&state=AAEC&rd=%2Fpath%3Fa%3D1%26b%3D2&x=a+b&empty=&flag",
    );
    c.with_selector(
        "form",
        7,
        "credential=eyJ.eyJ.sig&g_csrf_token=abc%2B123&select_by=btn+confirm",
    );
    c.with_selector("form", 0, "r%64=x&rd=%0d%0a&rd=%ff&rd=%zz%");
    c.with_selector(
        "form",
        1,
        "code=a&code=b&state=AAECAwQFBgcICQoLDA0ODw&iss=https%3A%2F%2Faccounts.google.com",
    );

    for h in [
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\0navigate\0\0max-age=3600, must-revalidate\0https://auth.example.com/login\0https://app.example.com/x?y=1",
        "application/json\0cors\0XMLHttpRequest\0public, max-age=\"21533\", no-transform\0/login?from=x#top\0/\r\n",
        "TEXT/HTML\0NAVIGATE\0\0no-cache, max-age=99999999999999999999999\0https://[::1]:8443/login?\0\u{e9}",
        "*/*\0no-cors\0\0Max-Age = 10 ,no-store\0http://auth.example.test/login?a=1&\0rd",
    ] {
        c.add("headers", h);
    }
}

fn pages(c: &mut Corpus, root: &Path) {
    let mut found = false;
    if let Ok(entries) = fs::read_dir(root.join("src/pages")) {
        for e in entries.flatten() {
            if let Ok(template) = fs::read_to_string(e.path()) {
                let vars = "\0email\0<b>alice</b>@example.com\0message\0a & b \"q\" 'x'\0title\0{{email}}\0status\0403";
                c.add("html", format!("{template}{vars}"));
                found = true;
            }
        }
    }
    if !found {
        eprintln!("note: no templates under {}/src/pages", root.display());
    }
    c.add(
        "html",
        "hi {{email}}, {{ email }}! {{unknown}} {{}} {{email\0email\0a@b.c\0x\0{{email}}",
    );
}

fn usage(c: &mut Corpus) {
    // Request bodies: the references' requests, members deep down and in strings, escapes,
    // every stream_options case, and the refusals of the unit tests.
    for body in [
        r#"{"model": "VAR_chat_model_id", "messages": [{"role": "developer", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello!"}], "stream": true}"#,
        r#"{"model": "claude-opus-4-6", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 256, "stream": true}"#,
        r#"{"model":"gpt-5.4","input":"Hi","max_output_tokens":0,"stream":true}"#,
        r#"{"model":"o3","max_completion_tokens":4096,"max_tokens":100,"stream":true,"stream_options":{"include_usage":true}}"#,
        r#"{"stream":true,"stream_options":{"include_obfuscation":false},"model":"m"}"#,
        r#"{"stream":true,"stream_options":null,"n":1}"#,
        r#"{"stream":true,"stream_options":{"include_usage":null}}"#,
        r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
        r#"{"stream":true,"stream_options": { } }"#,
        "{\n  \"stream\": true,\n  \"messages\": [{\"a\": {}}] \n}\n",
        r#"{"messages":[{"role":"user","content":"{\"model\":\"gpt-4\",\"stream\":true}"},{"model":"nested","content":[{"stream_options":{"include_usage":true}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"model":{"type":"string"}}}}}],"model":"gpt-4o-mini"}"#,
        "{\"mod\\u0065l\":\"gpt-\\u00e9\\ud83d\\ude00\\\"\\\\\",\"str\\u0065am\":true,\"max_\\u0074okens\":12}",
        "{\"model\":\"caf\u{e9} \u{1F600}\",\"x\":[1.5e300,-0,0.25,-1E-7,true,false,null]}",
        r#"{"model":"a","model":"b"}"#,
        r#"{"model":"a","mod\u0065l":"a"}"#,
        r#"{"stream_options":{"include_usage":true,"include_usage":true}}"#,
        r#"{"model":1,"stream":"true","max_tokens":-1}"#,
        r#"{"max_tokens":18446744073709551616,"max_completion_tokens":1.0,"max_output_tokens":1e3}"#,
        r#"{"a":"\ud800\u0041","b":"\udc00"}"#,
        "{\"a\":\"\t\"}",
        "{\"model\":\"x\",}",
        "{\"model\":\"gpt",
        "[{\"model\":\"x\"}]",
        "\u{feff}{}",
        "",
    ] {
        c.add("usage_request", body);
    }
    c.add("usage_request", format!("{{\"a\":{}{}}}", "[".repeat(511), "]".repeat(511)));
    c.add("usage_request", format!("{{\"a\":{}{}}}", "[".repeat(512), "]".repeat(512)));
    c.add("usage_request", b"{\"a\":\"\xff\"}");

    // Event streams: the fixtures whole, cut, with CRLF and CR line ends; the standard's
    // examples; an oversized event (cap 64).
    let fixtures = [CHAT_STREAM, RESPONSES_STREAM, ANTHROPIC_STREAM];
    for (i, f) in fixtures.iter().enumerate() {
        let text = std::str::from_utf8(f).unwrap();
        c.with_selector("usage_sse", 255, [&[0u8][..], f].concat());
        c.with_selector("usage_sse", 255, [&[0x93u8][..], f].concat());
        c.with_selector(
            "usage_sse",
            40,
            [&[7u8][..], text.replace('\n', "\r\n").as_bytes()].concat(),
        );
        c.with_selector(
            "usage_sse",
            255,
            [&[0x85u8][..], text.replace('\n', "\r").as_bytes()].concat(),
        );
        let apis = [0u8, 2, 4]; // chat completions, responses, anthropic messages
        c.with_selector("usage_response", apis[i] | 8, f);
        c.with_selector("usage_response", apis[i] | 0x58, &f[..f.len() / 2]);
    }
    c.with_selector("usage_response", 1 | 8, CHAT_STREAM);
    for s in [
        "data: This is the first message.\n\ndata: This is the second message, it\ndata: has two lines.\n\ndata: This is the third message.\n\n",
        "event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
        "data\n\ndata\ndata\n\ndata:",
        ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
        "\u{feff}data: a\r\n\r\n\u{feff}data: b\r\r",
    ] {
        c.with_selector("usage_sse", 255, [&[0x21u8][..], s.as_bytes()].concat());
    }
    c.with_selector(
        "usage_sse",
        0,
        [
            &[3u8][..],
            format!("data: small\n\ndata: {}\n\ndata: after\n\n", "x".repeat(100)).as_bytes(),
        ]
        .concat(),
    );

    // Whole answers: the references' examples, cached and reasoning counts, errors.
    for (api, body) in [
        (
            0u8,
            r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-5.4","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"}"#,
        ),
        (
            1,
            r#"{"id":"cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7","object":"text_completion","created":1589478378,"model":"VAR_completion_model_id","choices":[{"text":"\n\nThis is indeed a test","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
        ),
        (
            3,
            r#"{"object":"list","data":[{"object":"embedding","embedding":[0.0023064255,-0.009327292],"index":0}],"model":"text-embedding-ada-002","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
        ),
        (
            2,
            r#"{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response","status":"completed","error":null,"model":"gpt-5.4","output":[],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#,
        ),
        (
            4,
            r#"{"content":[{"text":"Hi! My name is Claude.","type":"text"}],"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","model":"claude-sonnet-4-5-20250929","role":"assistant","stop_reason":"end_turn","stop_sequence":null,"type":"message","usage":{"input_tokens":21,"cache_creation_input_tokens":188086,"cache_read_input_tokens":1000,"output_tokens":393}}"#,
        ),
        (
            0,
            r#"{"model":"o3","usage":{"prompt_tokens":2048,"completion_tokens":900,"prompt_tokens_details":{"cached_tokens":1024,"cache_write_tokens":512},"completion_tokens_details":{"reasoning_tokens":640}}}"#,
        ),
        (
            0,
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        ),
        (4, r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
        (
            2,
            r#"{"status":"failed","error":{"code":"server_error"},"usage":{"input_tokens":10,"output_tokens":2}}"#,
        ),
        (0, "<html><body>502 Bad Gateway</body></html>"),
        (0, "{\"usage\":{\"prompt_tokens\":\"1\"}}"),
    ] {
        c.with_selector("usage_response", api, body);
    }
    c.with_selector("usage_response", 8, concat!(
        "data: {\"choices\":[],\"model\":\"\",\"prompt_filter_results\":[]}\n\n",
        "data: {\"choices\":null,\"model\":\"gpt-4o\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
        "data: {\"error\":{\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n",
    ));
    c.with_selector("usage_response", 4, concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"input_tokens\":40,\"output_tokens\":47}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ));

    // Price tables, each with a model and a usage (five u64, then five u16 of extra tokens).
    let table = "# US dollars per million tokens\n\
        gpt-4o        input=2.50 cached_input=1.25 output=10.00\n\
        gpt-4o-mini*  input=0.15 cached_input=0.075 output=0.60   # dated versions\n\
        claude-*      input=3 cached_input=0.30 cache_creation_input=3.75 output=15\n\
        \n*             input=1 output=1\n";
    let usage: Vec<u8> = [1000u64, 200, 50, 500, 100]
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .chain([7u8, 0, 1, 0, 0, 1, 9, 0, 255, 255])
        .collect();
    for model in
        ["gpt-4o", "GPT-4o-mini-2024-07-18", "claude-opus-4-6", "o3", "gpt-4o-2024-08-06", ""]
    {
        c.add("price_table", [table.as_bytes(), b"\0", model.as_bytes(), b"\0", &usage].concat());
    }
    let huge: Vec<u8> = [u64::MAX; 5].iter().flat_map(|n| n.to_le_bytes()).collect();
    c.add("price_table", [table.as_bytes(), b"\0gpt-4o\0", &huge].concat());
    for t in [
        "*-mini input=1 output=1\ngpt-* input=2 output=2\na* input=5 output=5\n*a input=6 output=6\n*b* input=7 output=7\nGPT-4O-MINI input=8 output=8\0gpt-4o-mini\0",
        "a input=1 output=1\nA input=2 output=2\0a\0",
        "gpt-4o input=1\0gpt-4o\0",
        "a input=1.0000001 output=1\0a\0",
        "* input=18446744073709.551615 output=0.000001 cached_input=0 cache_creation_input=99\0x\0",
        "**a**b input=1 output=1\0aab\0",
    ] {
        c.add("price_table", [t.as_bytes(), &usage].concat());
    }
}

/// Answers of a Redis round (shape byte, then the answer): whole, refused, cut, with keys.
fn cluster(c: &mut Corpus) {
    let totals = |n: usize| {
        let mut t = format!("*{}\r\n", n * 8);
        for i in 0..n * 8 {
            t.push_str(&format!(":{i}\r\n"));
        }
        t
    };
    let index = "*2\r\n$14\r\nu0@example.com\r\n$17\r\ngroup:r%26d%20team\r\n";
    let record = "apikey AAAAAAAAAAAAAAAA alice@example.com 1700000000 0 laptop";
    let keys = format!(
        "*3\r\n$1\r\n8\r\n*2\r\n$16\r\nAAAAAAAAAAAAAAAA\r\n${}\r\n{record}\r\n*1\r\n$16\r\nBBBBBBBBBBBBBBBB\r\n",
        record.len()
    );
    let whole = format!("+OK\r\n{}{index}", totals(1));
    for (shape, answer) in [
        (0b0101, whole.clone()),
        (0b0101, whole[..whole.len() / 2].to_owned()),
        (0b1011, format!("+OK\r\n{}{index}{keys}", totals(2))),
        (0b0010, format!("*0\r\n*1\r\n$1\r\n7\r\n")),
        (0b0001, "-WRONGPASS invalid username-password pair\r\n*0\r\n".to_owned()),
        (0b0100, format!("-NOAUTH Authentication required.\r\n{index}")),
        (0b0100, format!("{}*0\r\n", totals(2))),
        (0b1100, format!("-OOM command not allowed\r\n{index}")),
    ] {
        c.add("cluster_reply", [&[shape][..], answer.as_bytes()].concat());
    }
}
