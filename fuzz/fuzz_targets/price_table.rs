//! The price table (`usage::price::PriceTable`) and money amounts: the operator's file, and the
//! model names that upstream answers report. A parsed table prints back to a file that parses
//! to the same rules; the rule chosen for a model matches it and no matching rule is more
//! specific (exact name, then more literal characters, then earlier line); costs never fall
//! when tokens are added; the glob matcher agrees with its recursive definition; errors name
//! a line of the file.
//!
//! Input: `table NUL model NUL usage`: the usage is read as five little-endian u64 (missing
//! bytes are zero), then five u16 of extra tokens.
#![no_main]

use gpt_auth_core::usage::price::{format_usd, parse_usd, PriceTable, Rule};
use gpt_auth_core::usage::{glob_match, Usage};
use gpt_auth_fuzz::split_once;
use libfuzzer_sys::fuzz_target;

fn naive(p: &[u8], n: &[u8]) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some((b'*', rest)) => (0..=n.len()).any(|i| naive(rest, &n[i..])),
        Some((c, rest)) => {
            n.first().is_some_and(|d| c.eq_ignore_ascii_case(d)) && naive(rest, &n[1..])
        }
    }
}

/// Higher is more specific.
fn rank(r: &Rule) -> (bool, usize, std::cmp::Reverse<usize>) {
    let glob = r.pattern.contains('*');
    (!glob, r.pattern.bytes().filter(|&b| b != b'*').count(), std::cmp::Reverse(r.line))
}

fn matches(r: &Rule, model: &str) -> bool {
    if r.pattern.contains('*') {
        glob_match(&r.pattern, model)
    } else {
        r.pattern.eq_ignore_ascii_case(model)
    }
}

fn numbers(bytes: &[u8], n: usize, width: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let mut b = [0u8; 8];
            let from = (i * width).min(bytes.len());
            let to = (from + width).min(bytes.len());
            b[..to - from].copy_from_slice(&bytes[from..to]);
            u64::from_le_bytes(b)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (text, rest) = split_once(data, 0);
    let text = String::from_utf8_lossy(text);
    let (model, rest) = split_once(rest.unwrap_or_default(), 0);
    let model = String::from_utf8_lossy(model);
    let rest = rest.unwrap_or_default();
    let u = numbers(rest, 5, 8);
    let usage = Usage {
        input: u[0],
        cached_input: u[1],
        cache_creation_input: u[2],
        output: u[3],
        reasoning: u[4],
    };
    let extra = numbers(rest.get(40..).unwrap_or_default(), 5, 2);

    if model.len() <= 12 {
        for p in [text.as_ref(), "*", "*a*", "a*b"] {
            if p.len() <= 12 {
                assert_eq!(
                    glob_match(p, &model),
                    naive(p.as_bytes(), model.as_bytes()),
                    "{p:?} {model:?}"
                );
            }
        }
    }

    let n = (usage.input as u128).wrapping_mul(0x9E37_79B9) as u64;
    let shown = parse_usd(&format_usd(n)).unwrap_or(u64::MAX);
    assert!(shown.abs_diff(n) <= 500 || n > u64::MAX - 500);
    if let Ok(v) = parse_usd(&model) {
        assert!(model.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
        let _ = v;
    }

    let table = match PriceTable::parse(&text) {
        Ok(t) => t,
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.lines().count(), "{e}");
            assert!(e.to_string().starts_with(&format!("line {}: ", e.line)));
            return;
        }
    };
    let again = PriceTable::parse(&table.to_string()).expect("a printed table parses");
    let strip = |t: &PriceTable| -> Vec<_> {
        t.rules().iter().map(|r| (r.pattern.clone(), r.prices)).collect()
    };
    assert_eq!(strip(&again), strip(&table));

    let chosen = table.rule_for(&model);
    let best = table.rules().iter().filter(|r| matches(r, &model)).max_by_key(|r| rank(r));
    assert_eq!(chosen, best, "{model:?}");
    if let Some(rule) = chosen {
        let cost = table.cost(&model, &usage).expect("priced");
        assert_eq!(cost, rule.prices.cost(&usage));
        let more = Usage {
            input: usage.input.saturating_add(extra[0] + extra[1] + extra[2]),
            cached_input: usage.cached_input.saturating_add(extra[1]),
            cache_creation_input: usage.cache_creation_input.saturating_add(extra[2]),
            output: usage.output.saturating_add(extra[3] + extra[4]),
            reasoning: usage.reasoning.saturating_add(extra[4]),
        };
        assert!(rule.prices.cost(&more) >= cost, "{usage:?} -> {more:?}");
    } else {
        assert_eq!(table.cost(&model, &usage), None);
    }
});
