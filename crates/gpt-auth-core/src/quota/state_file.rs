//! The state file: counters saved across restarts. Text, one key per line after a header.
//!
//! Version 3 (written): `gpt_auth_quota 3`, then
//! `<key> <day> <month> <day used> <month used> <day top-up> <month top-up> <day unsent>
//! <month unsent> <day own> <month own>`, each amount as four numbers (requests, input tokens,
//! output tokens, cost in nano-dollars); for a zone synchronised through Redis the unsent
//! amounts are what this node has not yet added to the cluster's totals (sent after a restart,
//! so nothing counted is lost) and its own amounts all it counted in the period. A key is an
//! address as it is (it has an `@`), `group:<name>` or `model:<address>/<model>` with the
//! names percent-encoded (so they hold no `@`, space or `/`). Reservations of requests in
//! flight are not saved.
//!
//! Lines `apikey ...` hold the zone's personal API keys (see `crate::api_key::record_line`).
//!
//! Version 2 (read): as version 3 without the unsent amounts.
//!
//! Version 1 (read): `gpt_auth_quota 1`, then `<email> <day> <day_used> <month> <month_used>`
//! (requests only).

use super::budget::{Amounts, Counters, Shares};
use super::key::Key;
use crate::session::valid_email;

pub const HEADER: &str = "gpt_auth_quota 3";
const HEADER_V2: &str = "gpt_auth_quota 2";
const HEADER_V1: &str = "gpt_auth_quota 1";

/// Percent-encoding of a name in the file (no space, `@` or `/` is left).
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn unpct(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = core::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) fn key_text(k: &Key) -> String {
    match k {
        Key::User(e) => e.clone(),
        Key::Group(g) => format!("group:{}", pct(g)),
        Key::Model { email, model } => format!("model:{}/{}", pct(email), pct(model)),
    }
}

pub(crate) fn parse_key(s: &str) -> Option<Key> {
    if let Some(g) = s.strip_prefix("group:") {
        return Some(Key::Group(unpct(g)?));
    }
    if let Some(m) = s.strip_prefix("model:") {
        let (e, model) = m.split_once('/')?;
        return Some(Key::Model { email: unpct(e)?, model: unpct(model)? });
    }
    valid_email(s).then(|| Key::User(s.to_owned()))
}

fn push_amounts(out: &mut String, a: &Amounts) {
    out.push_str(&format!(" {} {} {} {}", a.requests, a.input, a.output, a.cost));
}

/// The file's text for these (encoded key, counters, this node's shares) entries.
pub fn write<'a>(entries: impl Iterator<Item = (&'a [u8], Counters, Shares)>) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for (key, c, sh) in entries {
        // Shares of other periods than the counters' are of no use (written as none).
        let sh = if (sh.day, sh.month) == (c.day, c.month) { sh } else { Shares::default() };
        let Some(key) = Key::decode(key) else { continue };
        out.push_str(&key_text(&key));
        out.push_str(&format!(" {} {}", c.day, c.month));
        for a in [
            &c.day_used,
            &c.month_used,
            &c.day_bonus,
            &c.month_bonus,
            &sh.day_unsent,
            &sh.month_unsent,
            &sh.day_own,
            &sh.month_own,
        ] {
            push_amounts(&mut out, a);
        }
        out.push('\n');
    }
    out
}

/// An entry of the state file: the encoded key, its counters and this node's shares.
pub type Entry = (Vec<u8>, Counters, Shares);

/// The entries of a state file, version 3, 2 or 1.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut lines = text.lines().enumerate();
    let version = match lines.next() {
        Some((_, HEADER)) => 3,
        Some((_, HEADER_V2)) => 2,
        Some((_, HEADER_V1)) => 1,
        _ => return Err(format!("line 1: expected \"{HEADER}\"")),
    };
    let v1 = version == 1;
    let mut out = Vec::new();
    for (idx, line) in lines {
        // Personal API keys have lines of their own (crate::api_key::parse_record).
        if line.trim().is_empty() || line.starts_with("apikey ") {
            continue;
        }
        let bad = || format!("line {}: malformed entry", idx + 1);
        let f: Vec<&str> = line.split(' ').collect();
        let key = parse_key(f.first().ok_or_else(bad)?).ok_or_else(bad)?;
        let n = |s: &str| s.parse::<u64>().map_err(|_| bad());
        let p = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let mut shares = Shares::default();
        let c = if v1 {
            let [_, d, du, m, mu] = f.as_slice() else { return Err(bad()) };
            Counters {
                day: p(d)?,
                month: p(m)?,
                day_used: Amounts { requests: n(du)?, ..Default::default() },
                month_used: Amounts { requests: n(mu)?, ..Default::default() },
                ..Default::default()
            }
        } else {
            let amounts = if version == 3 { 8 } else { 4 };
            if f.len() != 3 + 4 * amounts {
                return Err(bad());
            }
            let a = |i: usize| -> Result<Amounts, String> {
                Ok(Amounts {
                    requests: n(f[i])?,
                    input: n(f[i + 1])?,
                    output: n(f[i + 2])?,
                    cost: n(f[i + 3])?,
                })
            };
            let c = Counters {
                day: p(f[1])?,
                month: p(f[2])?,
                day_used: a(3)?,
                month_used: a(7)?,
                day_bonus: a(11)?,
                month_bonus: a(15)?,
                reserved: Amounts::default(),
            };
            if version == 3 {
                shares = Shares {
                    day: c.day,
                    month: c.month,
                    day_unsent: a(19)?,
                    month_unsent: a(23)?,
                    day_own: a(27)?,
                    month_own: a(31)?,
                };
            }
            c
        };
        out.push((key.encode(), c, shares));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip() {
        let c = Counters {
            day: 20000,
            month: 671,
            day_used: Amounts { requests: 7, input: 100, output: 50, cost: 12 },
            month_used: Amounts { requests: 99, input: 1000, output: 500, cost: 120 },
            day_bonus: Amounts::default(),
            month_bonus: Amounts { cost: 5, ..Default::default() },
            reserved: Amounts { requests: 3, ..Default::default() },
        };
        let sh = Shares {
            day: 20000,
            month: 671,
            day_unsent: Amounts { requests: 2, input: 10, output: 5, cost: 1 },
            month_unsent: Amounts { requests: 4, input: 20, output: 10, cost: 2 },
            day_own: Amounts { requests: 6, input: 30, output: 15, cost: 3 },
            month_own: Amounts { requests: 8, input: 40, output: 20, cost: 4 },
        };
        let keys = [
            Key::User("alice@example.com".into()).encode(),
            Key::Group("research & dev".into()).encode(),
            Key::Model { email: "a:b@example.com".into(), model: "gpt-4o/2024 x".into() }.encode(),
        ];
        let text = write(keys.iter().map(|k| (k.as_slice(), c, sh)));
        assert!(text.starts_with("gpt_auth_quota 3\nalice@example.com 20000 671 7 100 50 12 99 "));
        assert!(text.contains(" 0 0 0 5 2 10 5 1 4 20 10 2 6 30 15 3 8 40 20 4\n"), "{text}");
        assert!(text.contains("\ngroup:research%20%26%20dev "));
        assert!(text.contains("\nmodel:a%3Ab%40example.com/gpt-4o%2F2024%20x "));
        let back = parse(&text).unwrap();
        let saved = Counters { reserved: Amounts::default(), ..c };
        assert_eq!(back, keys.iter().map(|k| (k.clone(), saved, sh)).collect::<Vec<_>>());
        // Shares of another day than the counters' are written as none.
        let old = Shares { day: 19999, ..sh };
        let text = write(keys[..1].iter().map(|k| (k.as_slice(), c, old)));
        assert!(text.contains(" 0 0 0 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"), "{text}");
    }

    #[test]
    fn version_1_is_read() {
        let v1 = "gpt_auth_quota 1\nalice@example.com 20000 7 671 99\n";
        let back = parse(v1).unwrap();
        assert_eq!(back[0].0, b"alice@example.com");
        assert_eq!((back[0].1.day_used.requests, back[0].1.month_used.requests), (7, 99));
        assert!(parse("").is_err());
        assert!(parse("gpt_auth_quota 1\nx 1 2 3\n").is_err());
        assert!(parse("gpt_auth_quota 1\nnot-an-address 1 2 3 4\n").is_err());
        assert!(parse("gpt_auth_quota 2\nalice@example.com 1 2 3\n").is_err());
    }

    #[test]
    fn version_2_is_read_without_unsent_amounts() {
        let v2 = "gpt_auth_quota 2\nalice@example.com 20000 671 7 100 50 12 99 1000 500 120 \
                  0 0 0 0 0 0 0 5\n";
        let back = parse(v2).unwrap();
        let (c, sh) = (back[0].1, back[0].2);
        assert_eq!((c.day_used.input, c.month_used.cost, c.month_bonus.cost), (100, 120, 5));
        assert_eq!(sh, Shares::default());
        // A version 2 line has 19 fields, a version 3 line 35: each is refused under the other.
        assert!(parse(&v2.replace("quota 2", "quota 3")).is_err());
    }

    proptest! {
        #[test]
        fn prop_never_panics(s in "\\PC{0,300}") {
            let _ = parse(&s);
            let _ = parse(&format!("{HEADER}\n{s}"));
        }
    }
}
