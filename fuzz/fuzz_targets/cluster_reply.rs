//! The answers of a Redis round (`quota::cluster`): whatever bytes a server (or something else
//! on its port) sends. `complete` and `outcome` agree: an answer `complete` calls whole reads
//! without a protocol error about its length, a cut one is never whole, and a whole answer
//! that reads gives one set of totals per entry; `early_error` finds the first error reply;
//! nothing panics.
//!
//! Input: one byte of shape (bit 0: AUTH first, bit 1: API keys, bits 2-3: 0-3 entries, bit 4:
//! the scripts loaded first), then the answer.
#![no_main]

use gpt_auth_core::quota::cluster::{
    complete, early_error, outcome, round, Entry, KeyChanges, Lifetimes, Names, RoundId,
};
use gpt_auth_core::quota::{Amounts, Key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, answer)) = data.split_first() else { return };
    let names = Names { prefix: "p:".into(), zone: "z".into() };
    let entries: Vec<Entry> = (0..usize::from(shape >> 2 & 3))
        .map(|i| Entry {
            key: Key::User(format!("u{i}@example.com")).encode(),
            day_sent: Amounts::ONE_REQUEST,
            ..Entry::default()
        })
        .collect();
    let keys = KeyChanges::default();
    let at = RoundId { node: "n".into(), id: "1".into(), day: 1, month: 1 };
    let auth = (shape & 1 == 1).then_some((None, &b"pw"[..]));
    let r = round(
        &names,
        auth,
        shape & 16 == 16,
        &entries,
        &at,
        Lifetimes { day: 1, month: 1 },
        (shape & 2 == 2).then_some(&keys),
    );
    let _ = early_error(answer);
    match complete(&r, answer) {
        Ok(Some(n)) => {
            assert!(n <= answer.len());
            for cut in [0, n / 2, n.saturating_sub(1)] {
                if cut < n {
                    assert_eq!(complete(&r, &answer[..cut]), Ok(None));
                }
            }
            if let Ok(o) = outcome(&r, &answer[..n]) {
                assert_eq!(o.totals.len(), entries.len());
                assert_eq!(o.api_keys.is_some() && shape & 2 == 0, false);
            }
        }
        Ok(None) => assert!(outcome(&r, answer).is_err()),
        Err(_) => assert!(outcome(&r, answer).is_err()),
    }
});
