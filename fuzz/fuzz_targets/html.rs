//! HTML pages (`html::escape`, `html::render`): the error and login pages fill templates with
//! values that come from outside (the signed-in address, a provider's name, a return URL,
//! messages). Escaped text has no markup left and unescapes to the original; rendering with no
//! values changes nothing; a template without placeholders renders as itself.
//!
//! Input: `template NUL name NUL value NUL name NUL value ...` (lossy UTF-8).
#![no_main]

use gpt_auth_core::html::{escape, render};
use libfuzzer_sys::fuzz_target;

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let template = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let vars: Vec<(&str, &str)> =
        rest.chunks(2).map(|c| (c[0], c.get(1).copied().unwrap_or(""))).collect();

    for s in std::iter::once(template).chain(rest.iter().copied()) {
        let e = escape(s);
        assert!(!e.contains(['<', '>', '"', '\'']), "{e:?}");
        for (i, _) in e.match_indices('&') {
            let tail = &e[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                    .iter()
                    .any(|ent| tail.starts_with(ent)),
                "bare & in {e:?}"
            );
        }
        assert_eq!(unescape(&e), s);
    }

    assert_eq!(render(template, &[]), template);
    if !template.contains("{{") {
        assert_eq!(render(template, &vars), template);
    }
    let out = render(template, &vars);
    // Escaped values stay escaped: rendering adds no markup that was not in the template.
    let escaped: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, escape(v))).collect();
    let escaped_refs: Vec<(&str, &str)> = escaped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let safe = render(template, &escaped_refs);
    let count = |s: &str, c: char| s.matches(c).count();
    // (Placeholders that were replaced may have held some in their names.)
    assert!(count(&safe, '<') <= count(template, '<'));
    assert!(count(&safe, '"') <= count(template, '"'));
    let _ = out;
});
