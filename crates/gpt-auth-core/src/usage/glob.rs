//! Model-name patterns with `*` wildcards, shared by the price table ([`super::price`]) and
//! the module's model access rules (`gpt-4*`).

/// Whether `name` matches `pattern`, where `*` stands for any run of bytes (empty included) and
/// every other byte for itself, ASCII letters in either case (`GPT-4o` matches `gpt-4*`). Any
/// number of `*` anywhere.
///
/// The standard two-pointer algorithm: on a mismatch it retries only from the last `*` seen, so
/// it never backtracks further, and a hostile pattern such as `*a*a*a*a*b` costs at most
/// `pattern.len() * name.len()` steps, not exponentially many.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // The pattern position after the last `*` seen, and the name position it now stands at.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ni));
            }
            Some(c) if c.eq_ignore_ascii_case(&n[ni]) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                // Let the last `*` take one more byte, and try the rest again from there.
                Some((after_star, from)) => {
                    pi = after_star;
                    ni = from + 1;
                    star = Some((after_star, from + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, by recursion (exponential, for short inputs only).
    fn naive(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| naive(rest, &n[i..])),
            Some((c, rest)) => {
                n.first().is_some_and(|d| c.eq_ignore_ascii_case(d)) && naive(rest, &n[1..])
            }
        }
    }

    #[test]
    fn matches() {
        for (p, n, want) in [
            ("gpt-4*", "gpt-4o", true),
            ("gpt-4*", "GPT-4o-mini-2024-07-18", true),
            ("gpt-4*", "gpt-4", true),
            ("gpt-4*", "gpt-3.5-turbo", false),
            ("gpt-4*", "xgpt-4", false),
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("claude-*-4-*", "claude-opus-4-6", true),
            ("claude-*-4-*", "claude-opus-4", false),
            ("*-mini", "o4-mini", true),
            ("*-mini", "o4-mini-high", false),
            ("**a**", "bab", true),
            ("a*b*c", "abbbc", true),
            ("a*b*c", "acb", false),
            ("gpt-4o", "GPT-4O", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("caf\u{e9}*", "caf\u{e9}-1", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p:?} {n:?}");
            assert_eq!(naive(p.as_bytes(), n.as_bytes()), want, "{p:?} {n:?}");
        }
    }

    #[test]
    fn no_blowup() {
        let p = format!("{}b", "*a".repeat(200));
        let n = "a".repeat(5000);
        assert!(!glob_match(&p, &n));
        assert!(glob_match(&format!("{}*", "*a".repeat(200)), &n));
    }

    proptest! {
        #[test]
        fn prop_same_as_the_definition(p in "[abA*-]{0,10}", n in "[abAB-]{0,12}") {
            prop_assert_eq!(glob_match(&p, &n), naive(p.as_bytes(), n.as_bytes()));
        }

        #[test]
        fn prop_a_name_matches_itself_and_star(n in "\\PC{0,20}") {
            let n = n.replace('*', "");
            prop_assert!(glob_match(&n, &n));
            prop_assert!(glob_match("*", &n));
            let (starred, longer) = (format!("*{n}"), format!("x{n}"));
            prop_assert!(glob_match(&starred, &longer));
        }
    }
}
