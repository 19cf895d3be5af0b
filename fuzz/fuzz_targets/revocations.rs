//! Revocation files (`Revocations::parse`, `revokes`) and their times (`parse_time`, `line`).
//! The file is the operator's, but the addresses and issue times it is matched against come
//! from session cookies.
//!
//! Input: the file. Every valid line revokes its address at and before its time (at the
//! latest time of the address), never after it; `line` and `parse_time` agree.
#![no_main]

use gpt_auth_core::revocations::{line, parse_time, Revocations};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for word in text.split_whitespace() {
        if let Some(t) = parse_time(word) {
            if t < 253_402_300_800 {
                // Before year 10000: `line` writes it back in RFC 3339, read as the same time.
                let l = line("a@example.com", t);
                assert_eq!(l.split(' ').nth(1).and_then(parse_time), Some(t), "{l}");
            }
        }
    }
    let Ok(list) = Revocations::parse(&text) else { return };
    let mut latest: Vec<(String, u64)> = Vec::new();
    for raw in text.lines() {
        let entry = raw.split(" #").next().unwrap_or_default().split("\t#").next().unwrap_or_default();
        let mut w = entry.split_whitespace();
        let (Some(a), Some(t)) = (w.next(), w.next()) else { continue };
        if a.starts_with('#') {
            continue;
        }
        let (Some(t), a) = (parse_time(t), a.to_ascii_lowercase()) else { continue };
        match latest.iter_mut().find(|(x, _)| *x == a) {
            Some((_, l)) => *l = (*l).max(t),
            None => latest.push((a, t)),
        }
    }
    for (a, t) in &latest {
        assert!(list.revokes(a.as_bytes(), *t), "{a} at {t}");
        assert!(list.revokes(a.to_ascii_uppercase().as_bytes(), 0));
        if *t < u64::MAX {
            assert!(!list.revokes(a.as_bytes(), t + 1), "{a} after {t}");
        }
    }
});
