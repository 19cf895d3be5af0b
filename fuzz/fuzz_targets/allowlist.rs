//! Allowlist files (`Allowlist::parse`, deny entries included) and the per-request check
//! (`Allowlist::allows`). The
//! file is written by an administrator, but its entries are matched against addresses from the
//! provider and from session cookies, so both sides are fuzzed.
//!
//! Input: `file NUL address NUL address ...`; without NUL, the whole input is the file and the
//! addresses tried are variations of its own entries.
#![no_main]

use gpt_auth_core::allowlist::Allowlist;
use gpt_auth_core::session::MAX_EMAIL_LEN;
use libfuzzer_sys::fuzz_target;

/// An entry of a line, as the format describes it (comment at the start or after whitespace).
fn entry(line: &str) -> &str {
    let b = line.as_bytes();
    let cut = (0..b.len())
        .find(|&i| b[i] == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t'))
        .unwrap_or(b.len());
    line[..cut].trim()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let file = parts.next().unwrap_or_default();
    let mut probes: Vec<String> = parts.map(str::to_owned).collect();

    let Ok(list) = Allowlist::parse(file) else {
        for p in &probes {
            let _ = Allowlist::default().allows(p);
        }
        return;
    };
    let entries: Vec<&str> = file.lines().map(entry).filter(|e| !e.is_empty()).collect();
    assert!(list.len() <= entries.len());
    assert_eq!(list.is_empty(), entries.is_empty());
    // Deny entries (`!...`), lower-cased without their `!`, and the others.
    let lower: Vec<String> = entries.iter().map(|e| e.to_ascii_lowercase()).collect();
    let denied: Vec<&str> = lower.iter().filter_map(|e| e.strip_prefix('!')).collect();
    let allowing: Vec<&str> =
        lower.iter().filter(|e| !e.starts_with('!')).map(String::as_str).collect();
    assert_eq!(list.admits_nobody(), allowing.is_empty());
    // Whether `entries` names the lower-cased address `a` (itself, or its exact domain).
    let names = |entries: &[&str], a: &str| {
        let domain = a.rsplit_once('@').map(|(_, d)| d);
        entries.iter().any(|e| *e == a || domain.is_some_and(|d| e.strip_prefix('@') == Some(d)))
    };

    for (e, deny) in allowing.iter().map(|e| (*e, false)).chain(denied.iter().map(|e| (*e, true))) {
        let addr = match e.strip_prefix('@') {
            Some(domain) => format!("someone@{domain}"),
            None => e.to_owned(),
        };
        if addr.len() <= MAX_EMAIL_LEN {
            // A deny entry refuses what it names; any other entry admits it, unless denied.
            let expect = !deny && !names(&denied, &addr);
            assert_eq!(list.allows(&addr), expect, "{e:?} (deny: {deny}) and {addr:?}");
            assert_eq!(list.allows(&addr.to_ascii_uppercase()), expect, "case matters for {addr:?}");
        }
        probes.push(addr.clone());
        probes.push(format!("x{addr}"));
        probes.push(format!("{addr}.evil.com"));
        probes.push(format!("a@sub.{}", addr.rsplit_once('@').map_or("", |(_, d)| d)));
    }
    for p in &probes {
        let allowed = list.allows(p);
        assert_eq!(allowed, list.allows(&p.to_ascii_lowercase()));
        assert_eq!(allowed, list.allows(&p.to_ascii_uppercase()));
        if allowed {
            assert!(p.len() <= MAX_EMAIL_LEN);
            // Admitted by an entry that names it, and named by no deny entry.
            let lower = p.to_ascii_lowercase();
            assert!(names(&allowing, &lower), "{p:?} admitted by no entry of {entries:?}");
            assert!(!names(&denied, &lower), "{p:?} admitted despite a deny entry");
        }
    }
});
