//! The price table: what a model's tokens cost, and money amounts for budgets.
//!
//! The file has one rule per line, `#` comments (at the start of a line or after white space)
//! and blank lines:
//!
//! ```text
//! # US dollars per million tokens
//! gpt-4o        input=2.50 cached_input=1.25 output=10.00
//! gpt-4o-mini*  input=0.15 cached_input=0.075 output=0.60
//! claude-*      input=3 cached_input=0.30 cache_creation_input=3.75 output=15
//! *             input=1 output=1
//! ```
//!
//! A rule is a model pattern (an exact name, or a glob with any number of `*`, matched without
//! regard to ASCII case), then `input=` and `output=` prices and optionally `cached_input=` and
//! `cache_creation_input=`: US dollars per million tokens, with at most 6 decimals. A model is
//! priced by the most specific rule that matches it: an exact name before any glob, then the
//! glob with the most characters other than `*`, then the rule that comes first in the file.
//!
//! Money is counted in whole nano-dollars (10⁻⁹ USD) in a `u64` (up to about 18 billion
//! dollars), with integer arithmetic only: no rounding drift however many requests are added
//! up. A price of 6 decimals per million tokens is a whole number of pico-dollars per token.

use std::fmt;

use super::glob::glob_match;
use super::response::Usage;
use crate::allowlist::strip_comment;
use crate::log_safe::log_safe;

/// Nano-dollars in one US dollar.
pub const NANOS_PER_USD: u64 = 1_000_000_000;

/// Decimals a price may have (so that it is a whole number of micro-dollars per million
/// tokens).
pub const PRICE_DECIMALS: u32 = 6;

/// Decimals a money amount may have (nano-dollars).
pub const USD_DECIMALS: u32 = 9;

/// One model's prices, in micro-dollars per million tokens (which is pico-dollars per token):
/// `2_500_000` is $2.50 per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    pub input: u64,
    pub output: u64,
    /// Input tokens read from a prompt cache; `input` when not given.
    pub cached_input: Option<u64>,
    /// Input tokens written to a prompt cache; `input` when not given.
    pub cache_creation_input: Option<u64>,
}

impl Prices {
    /// The cost of `usage` in nano-dollars, rounded up (never more than one nano-dollar over),
    /// saturating at `u64::MAX`.
    ///
    /// Input tokens are billed once each: those read from a cache at `cached_input`, those
    /// written to one at `cache_creation_input`, the rest at `input` (counts that claim more
    /// cached tokens than there are input tokens are capped at the input count). Output tokens
    /// are billed at `output`; reasoning tokens are part of them, not billed again (a count
    /// that claims more reasoning than output tokens bills the reasoning count).
    pub fn cost(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_input.min(usage.input);
        let creation = usage.cache_creation_input.min(usage.input - cached);
        let plain = usage.input - cached - creation;
        let output = usage.output.max(usage.reasoning);
        let part = |tokens: u64, price: u64| u128::from(tokens) * u128::from(price);
        let pico = part(plain, self.input)
            .saturating_add(part(cached, self.cached_input.unwrap_or(self.input)))
            .saturating_add(part(creation, self.cache_creation_input.unwrap_or(self.input)))
            .saturating_add(part(output, self.output));
        u64::try_from(pico.div_ceil(1000)).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for Prices {
    /// The rule's words after the pattern: `input=2.5 output=10 cached_input=1.25`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let price = |v| format_decimal(v, PRICE_DECIMALS);
        write!(f, "input={} output={}", price(self.input), price(self.output))?;
        if let Some(v) = self.cached_input {
            write!(f, " cached_input={}", price(v))?;
        }
        if let Some(v) = self.cache_creation_input {
            write!(f, " cache_creation_input={}", price(v))?;
        }
        Ok(())
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The model pattern, lower-cased.
    pub pattern: String,
    pub prices: Prices,
    /// Its line in the file (for logs: which rule priced a request).
    pub line: usize,
}

impl Rule {
    fn is_glob(&self) -> bool {
        self.pattern.contains('*')
    }

    /// Characters other than `*`: the more, the more specific the glob.
    fn literal_len(&self) -> usize {
        self.pattern.bytes().filter(|&b| b != b'*').count()
    }
}

/// A parsed price table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    /// In file order.
    rules: Vec<Rule>,
    /// Indexes into `rules`: exact names (file order), then globs from the most specific.
    exact: Vec<usize>,
    globs: Vec<usize>,
}

/// Why a price table was refused; `Display` names the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PriceError {
    pub line: usize,
    pub reason: String,
}

impl PriceTable {
    /// Parses a price table file. Any invalid line refuses the whole file: a typo must not
    /// leave a model unpriced or priced by the catch-all.
    pub fn parse(text: &str) -> Result<PriceTable, PriceError> {
        let mut table = PriceTable::default();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let mut words = strip_comment(raw).split_whitespace();
            let Some(pattern) = words.next() else { continue };
            let err = |reason: String| PriceError { line, reason };
            let quoted = |w: &str| format!("\"{}\"", log_safe(w, 64));
            if pattern.contains('=') {
                return Err(err(format!(
                    "{}: expected a model name or pattern first",
                    quoted(pattern)
                )));
            }
            // A `#` after other white space than a space or a tab is no comment, but a pattern
            // starting with it would be one when the table is written back.
            if pattern.starts_with('#') || pattern.contains(char::is_control) {
                return Err(err(format!(
                    "{}: a model pattern must be printable and not start with #",
                    quoted(pattern)
                )));
            }
            let pattern = pattern.to_ascii_lowercase();
            if let Some(other) = table.rules.iter().find(|r| r.pattern == pattern) {
                return Err(err(format!(
                    "{} is already priced on line {}",
                    quoted(&pattern),
                    other.line
                )));
            }
            let (mut input, mut output, mut cached_input, mut cache_creation_input) =
                (None, None, None, None);
            for w in words {
                let (key, value) = w
                    .split_once('=')
                    .ok_or_else(|| err(format!("{}: expected NAME=PRICE", quoted(w))))?;
                let slot = match key {
                    "input" => &mut input,
                    "output" => &mut output,
                    "cached_input" => &mut cached_input,
                    "cache_creation_input" => &mut cache_creation_input,
                    _ => {
                        return Err(err(format!(
                            "{}: expected input, output, cached_input or cache_creation_input",
                            quoted(key)
                        )))
                    }
                };
                if slot.is_some() {
                    return Err(err(format!("{key} is given twice")));
                }
                let price = parse_decimal(value, PRICE_DECIMALS).ok_or_else(|| {
                    err(format!(
                        "{}: expected US dollars per million tokens, at most {PRICE_DECIMALS} \
                         decimals (e.g. {key}=2.50)",
                        quoted(w)
                    ))
                })?;
                *slot = Some(price);
            }
            let (Some(input), Some(output)) = (input, output) else {
                return Err(err("a rule needs both input= and output=".into()));
            };
            let prices = Prices { input, output, cached_input, cache_creation_input };
            table.rules.push(Rule { pattern, prices, line });
        }
        let (globs, exact): (Vec<usize>, Vec<usize>) =
            (0..table.rules.len()).partition(|&i| table.rules[i].is_glob());
        table.exact = exact;
        table.globs = globs;
        // Stable: among globs as specific as each other, the first in the file stays first.
        table.globs.sort_by_key(|&i| core::cmp::Reverse(table.rules[i].literal_len()));
        Ok(table)
    }

    /// The rule that prices `model` (see the module documentation for which one wins).
    pub fn rule_for(&self, model: &str) -> Option<&Rule> {
        let exact = self
            .exact
            .iter()
            .map(|&i| &self.rules[i])
            .find(|r| r.pattern.len() == model.len() && r.pattern.eq_ignore_ascii_case(model));
        exact.or_else(|| {
            self.globs.iter().map(|&i| &self.rules[i]).find(|r| glob_match(&r.pattern, model))
        })
    }

    /// What `usage` of `model` costs, in nano-dollars; `None` when no rule prices the model.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<u64> {
        self.rule_for(model).map(|r| r.prices.cost(usage))
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl fmt::Display for PriceTable {
    /// The table as a file (rules in file order, one a line, without the comments).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rules {
            writeln!(f, "{} {}", r.pattern, r.prices)?;
        }
        Ok(())
    }
}

/// Nano-dollars as US dollars with 6 decimals (micro-dollars, rounded half up):
/// `12_345_678_500` is `"12.345679"`, `0` is `"0.000000"`. Six decimals show what a single
/// cheap request costs while staying readable in a report.
pub fn format_usd(nanos: u64) -> String {
    let micros = (u128::from(nanos) + 500) / 1000;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// A money amount of a configuration (a budget) in US dollars: `50`, `50.00`, `0.5`, at most 9
/// decimals, no sign or currency symbol; in nano-dollars.
pub fn parse_usd(s: &str) -> Result<u64, &'static str> {
    parse_decimal(s, USD_DECIMALS)
        .ok_or("expected an amount in US dollars, e.g. 50 or 12.50 (at most 9 decimals)")
}

/// `digits[.digits]` with at most `decimals` decimals, times 10^`decimals`; `None` for anything
/// else or an amount that does not fit 64 bits.
fn parse_decimal(s: &str, decimals: u32) -> Option<u64> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > decimals as usize {
        return None;
    }
    if s.ends_with('.') {
        return None;
    }
    let scale = 10u64.pow(decimals);
    let mut n: u64 = 0;
    for b in whole.bytes() {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    let mut f: u64 = 0;
    for b in frac.bytes() {
        f = f * 10 + u64::from(b - b'0');
    }
    f *= 10u64.pow(decimals - frac.len() as u32);
    n.checked_mul(scale)?.checked_add(f)
}

/// `v / 10^decimals` in decimal, without trailing zeros (`2_500_000`, 6: `"2.5"`).
fn format_decimal(v: u64, decimals: u32) -> String {
    let scale = 10u64.pow(decimals);
    let (whole, frac) = (v / scale, v % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = decimals as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TABLE: &str = "\
# US dollars per million tokens
gpt-4o        input=2.50 cached_input=1.25 output=10.00
gpt-4o-mini*  input=0.15 cached_input=0.075 output=0.60   # and its dated versions
claude-*      input=3 cached_input=0.30 cache_creation_input=3.75 output=15

*             input=1 output=1
";

    fn usage(input: u64, cached: u64, creation: u64, output: u64, reasoning: u64) -> Usage {
        Usage { input, cached_input: cached, cache_creation_input: creation, output, reasoning }
    }

    fn pattern_for<'t>(t: &'t PriceTable, model: &str) -> Option<&'t str> {
        t.rule_for(model).map(|r| r.pattern.as_str())
    }

    #[test]
    fn parses_the_example() {
        let t = PriceTable::parse(TABLE).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            t.rules()[0],
            Rule {
                pattern: "gpt-4o".into(),
                prices: Prices {
                    input: 2_500_000,
                    output: 10_000_000,
                    cached_input: Some(1_250_000),
                    cache_creation_input: None
                },
                line: 2,
            }
        );
        assert_eq!(t.rules()[1].prices.cached_input, Some(75_000));
        assert_eq!(t.rules()[3].line, 6);
        assert_eq!(pattern_for(&t, "gpt-4o"), Some("gpt-4o"));
        assert_eq!(pattern_for(&t, "GPT-4o"), Some("gpt-4o"));
        assert_eq!(pattern_for(&t, "gpt-4o-mini"), Some("gpt-4o-mini*"));
        assert_eq!(pattern_for(&t, "gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini*"));
        assert_eq!(pattern_for(&t, "gpt-4o-2024-08-06"), Some("*"), "gpt-4o is an exact name");
        assert_eq!(pattern_for(&t, "claude-opus-4-6"), Some("claude-*"));
        assert_eq!(pattern_for(&t, "o3"), Some("*"));
        assert_eq!(pattern_for(&t, ""), Some("*"));
        let t = PriceTable::parse("gpt-4o input=1 output=1").unwrap();
        assert_eq!(t.cost("o3", &Usage::default()), None, "no catch-all: unpriced");
        assert!(PriceTable::parse("# nothing\n\n").unwrap().is_empty());
    }

    #[test]
    fn specificity() {
        let t = PriceTable::parse(
            "*-mini input=1 output=1\n\
             gpt-* input=2 output=2\n\
             gpt-4o* input=3 output=3\n\
             gpt-4o-mini* input=4 output=4\n\
             a* input=5 output=5\n\
             *a input=6 output=6\n\
             *b* input=7 output=7\n\
             GPT-4O-MINI input=8 output=8\n\
             * input=9 output=9\n",
        )
        .unwrap();
        for (model, want) in [
            ("gpt-4o-mini", "gpt-4o-mini"),
            ("gpt-4o-mini-2024", "gpt-4o-mini*"),
            ("gpt-4o", "gpt-4o*"),
            ("gpt-3", "gpt-*"),
            ("o4-mini", "*-mini"),
            ("gpt-mini", "*-mini"),
            ("aa", "a*"),
            ("ba", "*a"),
            ("ab", "a*"),
            ("bb", "*b*"),
            ("zz", "*"),
        ] {
            assert_eq!(pattern_for(&t, model), Some(want), "{model}");
        }
    }

    #[test]
    fn refusals_name_the_line() {
        for (text, line, says) in [
            ("gpt-4o input=1", 1, "needs both"),
            ("gpt-4o output=1", 1, "needs both"),
            ("\n\ngpt-4o input=1 output=x", 3, "\"output=x\""),
            ("a input=1 output=1\nA input=2 output=2", 2, "already priced on line 1"),
            ("a* input=1 output=1\n# c\na* input=2 output=2", 3, "already priced"),
            ("a input=1 output=1 input=2", 1, "input is given twice"),
            ("a input=1 output=1 reasoning=1", 1, "\"reasoning\""),
            ("a input=1 output 1", 1, "expected NAME=PRICE"),
            ("input=1 output=1", 1, "model name or pattern first"),
            ("a input=1.0000001 output=1", 1, "at most 6 decimals"),
            ("a input=-1 output=1", 1, "\"input=-1\""),
            ("a input=1e3 output=1", 1, "\"input=1e3\""),
            ("a input=.5 output=1", 1, "\"input=.5\""),
            ("a input=5. output=1", 1, "\"input=5.\""),
            ("a input=$1 output=1", 1, "\"input=$1\""),
            ("a input= output=1", 1, "\"input=\""),
            ("a input=99999999999999999999 output=1", 1, "\"input=9999"),
            ("\u{b}#a input=1 output=1", 1, "not start with #"),
            ("a\u{8}b input=1 output=1", 1, "must be printable"),
        ] {
            let e = PriceTable::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
            assert!(e.reason.contains(says), "{text:?}: {e}");
        }
        let e = PriceTable::parse(&format!("a input={} output=1", "9".repeat(500))).unwrap_err();
        assert!(e.to_string().len() < 200, "quoted words are cut short");
    }

    #[test]
    fn costs() {
        let t = PriceTable::parse(TABLE).unwrap();
        // 800 plain input at $2.50, 200 cached at $1.25, 500 output (100 of them reasoning,
        // not billed again) at $10 per million: $0.002 + $0.00025 + $0.005.
        assert_eq!(t.cost("gpt-4o", &usage(1000, 200, 0, 500, 100)), Some(7_250_000));
        assert_eq!(format_usd(7_250_000), "0.007250");
        // No cached price: cached tokens at the input price; cache writes likewise.
        assert_eq!(t.cost("o3", &usage(1000, 300, 200, 0, 0)), Some(1_000_000));
        // Anthropic: 12 plain at $3, 2000 read at $0.30, 100 written at $3.75, 47 out at $15.
        let pico = 12 * 3_000_000 + 2000 * 300_000 + 100 * 3_750_000 + 47 * 15_000_000u64;
        assert_eq!(t.cost("claude-sonnet-4-5", &usage(2112, 2000, 100, 47, 0)), Some(pico / 1000));
        // A million input tokens of gpt-4o cost exactly the price.
        assert_eq!(t.cost("gpt-4o", &usage(1_000_000, 0, 0, 0, 0)), Some(2_500_000_000));
        // One token at $0.15 per million is 150 nano-dollars.
        assert_eq!(t.cost("gpt-4o-mini", &usage(1, 0, 0, 0, 0)), Some(150));
        assert_eq!(t.cost("gpt-4o-mini", &Usage::default()), Some(0));
        // Rounded up to a whole nano-dollar: at $0.000001 per million, a token is a pico-dollar.
        let t1 = PriceTable::parse("* input=0.000001 output=0.000001").unwrap();
        assert_eq!(t1.cost("x", &usage(1, 0, 0, 0, 0)), Some(1));
        assert_eq!(t1.cost("x", &usage(1000, 0, 0, 0, 0)), Some(1));
        assert_eq!(t1.cost("x", &usage(1001, 0, 0, 0, 0)), Some(2));
        // Inconsistent counts are capped, never billed twice, never underflow.
        assert_eq!(t.cost("o3", &usage(10, 50, 50, 5, 20)), Some(30_000));
        // Saturating.
        let huge = usage(u64::MAX, 0, 0, u64::MAX, u64::MAX);
        assert_eq!(t.cost("gpt-4o", &huge), Some(u64::MAX));
        let p = Prices {
            input: u64::MAX,
            output: u64::MAX,
            cached_input: None,
            cache_creation_input: None,
        };
        assert_eq!(p.cost(&usage(u64::MAX, u64::MAX / 2, u64::MAX / 4, u64::MAX, 0)), u64::MAX);
    }

    #[test]
    fn money() {
        assert_eq!(parse_usd("50"), Ok(50 * NANOS_PER_USD));
        assert_eq!(parse_usd("50.00"), Ok(50 * NANOS_PER_USD));
        assert_eq!(parse_usd("0.5"), Ok(NANOS_PER_USD / 2));
        assert_eq!(parse_usd("0.000000001"), Ok(1));
        assert_eq!(parse_usd("0"), Ok(0));
        assert_eq!(parse_usd("18446744073.709551615"), Ok(u64::MAX));
        for bad in [
            "",
            ".",
            "5.",
            ".5",
            "-1",
            "+1",
            "1e3",
            "$5",
            "5 ",
            " 5",
            "1,5",
            "0.0000000001",
            "18446744073.709551616",
            "1.2.3",
        ] {
            assert!(parse_usd(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_usd(0), "0.000000");
        assert_eq!(format_usd(499), "0.000000");
        assert_eq!(format_usd(500), "0.000001");
        assert_eq!(format_usd(12_345_678_500), "12.345679");
        assert_eq!(format_usd(50 * NANOS_PER_USD), "50.000000");
        assert_eq!(format_usd(u64::MAX), "18446744073.709552");
        assert_eq!(format_decimal(2_500_000, 6), "2.5");
        assert_eq!(format_decimal(10_000_000, 6), "10");
        assert_eq!(format_decimal(1, 6), "0.000001");
        assert_eq!(format_decimal(0, 6), "0");
    }

    #[test]
    fn prints_back() {
        let t = PriceTable::parse(TABLE).unwrap();
        assert_eq!(
            t.to_string(),
            "gpt-4o input=2.5 output=10 cached_input=1.25\n\
             gpt-4o-mini* input=0.15 output=0.6 cached_input=0.075\n\
             claude-* input=3 output=15 cached_input=0.3 cache_creation_input=3.75\n\
             * input=1 output=1\n"
        );
        let again = PriceTable::parse(&t.to_string()).unwrap();
        let strip = |t: &PriceTable| -> Vec<(String, Prices)> {
            t.rules().iter().map(|r| (r.pattern.clone(), r.prices)).collect()
        };
        assert_eq!(strip(&again), strip(&t));
    }

    fn prices() -> impl Strategy<Value = Prices> {
        let p = prop_oneof![0u64..100_000_000, any::<u64>()];
        (p.clone(), p.clone(), proptest::option::of(p.clone()), proptest::option::of(p)).prop_map(
            |(input, output, cached_input, cache_creation_input)| Prices {
                input,
                output,
                cached_input,
                cache_creation_input,
            },
        )
    }

    fn any_usage() -> impl Strategy<Value = Usage> {
        let n = prop_oneof![0u64..10_000_000, any::<u64>()];
        (n.clone(), n.clone(), n.clone(), n.clone(), n)
            .prop_map(|(a, b, c, d, e)| usage(a, b, c, d, e))
    }

    proptest! {
        #[test]
        fn prop_round_trip(rules in proptest::collection::vec(("[a-z0-9.*-]{1,12}", prices()), 0..12)) {
            let mut text = String::new();
            let mut seen = std::collections::HashSet::new();
            for (pattern, p) in &rules {
                if seen.insert(pattern.clone()) {
                    text.push_str(&format!("{pattern} {p}\n"));
                }
            }
            let t = PriceTable::parse(&text).unwrap();
            prop_assert_eq!(t.to_string(), text.clone());
            prop_assert_eq!(PriceTable::parse(&t.to_string()).unwrap(), t);
        }

        #[test]
        fn prop_prices_read_back(v in any::<u64>()) {
            prop_assert_eq!(parse_decimal(&format_decimal(v, PRICE_DECIMALS), PRICE_DECIMALS), Some(v));
            prop_assert_eq!(parse_usd(&format_decimal(v, USD_DECIMALS)), Ok(v));
            // format_usd is within half a micro-dollar.
            let shown = parse_usd(&format_usd(v)).unwrap_or(u64::MAX);
            prop_assert!(shown.abs_diff(v) <= 500 || v > u64::MAX - 500);
        }

        #[test]
        fn prop_more_tokens_never_cost_less(
            p in prices(),
            u in any_usage(),
            extra in (0u64..1_000_000, 0u64..1_000_000, 0u64..1_000_000, 0u64..1_000_000, 0u64..1_000_000),
        ) {
            // More plain, cached and cache-written input, more output and reasoning.
            let (plain, cached, creation, out, reasoning) = extra;
            let more = Usage {
                input: u.input.saturating_add(plain + cached + creation),
                cached_input: u.cached_input.saturating_add(cached),
                cache_creation_input: u.cache_creation_input.saturating_add(creation),
                output: u.output.saturating_add(out + reasoning),
                reasoning: u.reasoning.saturating_add(reasoning),
            };
            prop_assert!(p.cost(&more) >= p.cost(&u), "{:?} {:?}", u, more);
        }

        #[test]
        fn prop_cost_is_the_sum_of_its_parts(p in prices(), u in any_usage()) {
            // Exact against a u128 computation where nothing saturates.
            let small = Usage {
                input: u.input % 1_000_000_000,
                cached_input: u.cached_input % 1_000_000_000,
                cache_creation_input: u.cache_creation_input % 1_000_000_000,
                output: u.output % 1_000_000_000,
                reasoning: u.reasoning % 1_000_000_000,
            };
            let p = Prices {
                input: p.input % 1_000_000_000,
                output: p.output % 1_000_000_000,
                cached_input: p.cached_input.map(|v| v % 1_000_000_000),
                cache_creation_input: p.cache_creation_input.map(|v| v % 1_000_000_000),
            };
            let cached = small.cached_input.min(small.input);
            let creation = small.cache_creation_input.min(small.input - cached);
            let plain = small.input - cached - creation;
            let pico = u128::from(plain) * u128::from(p.input)
                + u128::from(cached) * u128::from(p.cached_input.unwrap_or(p.input))
                + u128::from(creation) * u128::from(p.cache_creation_input.unwrap_or(p.input))
                + u128::from(small.output.max(small.reasoning)) * u128::from(p.output);
            prop_assert_eq!(u128::from(p.cost(&small)), pico.div_ceil(1000));
        }

        #[test]
        fn prop_parse_never_panics(s in "\\PC{0,200}") {
            if let Err(e) = PriceTable::parse(&s) {
                prop_assert!(e.line >= 1);
            }
            let _ = parse_usd(&s);
        }
    }
}
