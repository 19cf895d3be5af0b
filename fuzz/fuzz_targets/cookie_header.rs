//! The `Cookie` request header scan (`cookie_header::pairs`, `values`): every request to a
//! protected location runs it on client bytes.
//!
//! Input: `name NUL header`, or just `header` (then the name is `gpt_auth`).
#![no_main]

use gpt_auth_core::cookie_header::{pairs, values};
use gpt_auth_fuzz::{split_once, COOKIE};
use libfuzzer_sys::fuzz_target;

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether `part` lies inside `whole` (the scan never copies).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fuzz_target!(|data: &[u8]| {
    let (name, header) = match split_once(data, 0) {
        (name, Some(header)) => (name, header),
        (header, None) => (COOKIE.as_bytes(), header),
    };

    let all: Vec<(&[u8], &[u8])> = pairs(header).collect();
    assert!(all.len() <= header.iter().filter(|&&b| b == b';').count() + 1);
    for (n, v) in &all {
        assert!(!n.is_empty(), "empty cookie name");
        assert!(within(header, n) && within(header, v));
        assert!(!n.contains(&b';') && !n.contains(&b'=') && !v.contains(&b';'));
        assert!(!is_ws(n[0]) && !is_ws(n[n.len() - 1]), "name not trimmed: {n:?}");
        // A value is trimmed, then unquoted once: any whitespace left is inside the quotes.
        if let (Some(&first), Some(&last)) = (v.first(), v.last()) {
            if is_ws(first) || is_ws(last) {
                let (pf, pl) = (v.as_ptr() as usize - 1, v.as_ptr() as usize + v.len());
                let at = |p: usize| header[p - header.as_ptr() as usize];
                assert!(at(pf) == b'"' && at(pl) == b'"', "value not trimmed: {v:?}");
            }
        }
    }

    let found: Vec<&[u8]> = values(header, name).collect();
    let expected: Vec<&[u8]> = all.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v).collect();
    assert_eq!(found, expected);
});
