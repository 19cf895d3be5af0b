//! Per-user budgets that differ from a location's defaults: `user@domain` or `@domain`
//! followed by one or more of `day=`, `month=` (requests), `day_tokens=`, `month_tokens=`,
//! `day_cost=`, `month_cost=` (US dollars), each a number or `unlimited`; `#` comments.

use std::collections::HashMap;

use super::budget::{parse_cap, Limits, Period, Unit};
use crate::session::valid_email;

/// One override: for each period and unit, `Some(cap)` replaces the default (`Some(None)`:
/// unlimited), `None` keeps it.
type Entry = [[Option<Option<u64>>; 3]; 2];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Lower-cased entries as bytes, hashed like the allowlist's (per request: no SipHash).
    entries: HashMap<Box<[u8]>, Entry, crate::allowlist::Hasher>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct OverridesError {
    pub line: usize,
    pub reason: String,
}

/// `day`, `month_tokens`, ... as (period, unit).
pub fn budget_key(k: &str) -> Option<(Period, Unit)> {
    let (p, u) = k.split_once('_').unwrap_or((k, "requests"));
    let period = match p {
        "day" => Period::Day,
        "month" => Period::Month,
        _ => return None,
    };
    let unit = match u {
        "requests" => Unit::Requests,
        "tokens" => Unit::Tokens,
        "cost" => Unit::Cost,
        _ => return None,
    };
    Some((period, unit))
}

fn index(p: Period) -> usize {
    match p {
        Period::Day => 0,
        Period::Month => 1,
    }
}

fn unit_index(u: Unit) -> usize {
    match u {
        Unit::Requests => 0,
        Unit::Tokens => 1,
        Unit::Cost => 2,
    }
}

impl Overrides {
    pub fn parse(text: &str) -> Result<Overrides, OverridesError> {
        let mut entries = HashMap::default();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let content = crate::allowlist::strip_comment(raw);
            let mut words = content.split_whitespace();
            let Some(who) = words.next() else { continue };
            let err = |reason: String| OverridesError { line, reason };
            let who = who.to_ascii_lowercase();
            let ok_who = match who.strip_prefix('@') {
                Some(d) => !d.is_empty() && !d.contains('@'),
                None => valid_email(&who),
            };
            if !ok_who {
                return Err(err(format!("\"{who}\" is not an address or @domain")));
            }
            let mut entry: Entry = Default::default();
            let mut any = false;
            for w in words {
                let (k, v) = w.split_once('=').ok_or_else(|| {
                    err(format!(
                        "\"{w}\": expected day=N, month=N, day_tokens=N, month_cost=USD ..."
                    ))
                })?;
                let (period, unit) = budget_key(k).ok_or_else(|| {
                    err(format!(
                        "\"{k}\": expected day, month, day_tokens, month_tokens, day_cost or \
                         month_cost"
                    ))
                })?;
                let cap = parse_cap(unit, v).map_err(|e| err(format!("\"{w}\": {e}")))?;
                entry[index(period)][unit_index(unit)] = Some(cap);
                any = true;
            }
            if !any {
                return Err(err("no budget (day=, month=, ...)".into()));
            }
            if entries.insert(who.as_bytes().into(), entry).is_some() {
                return Err(err(format!("\"{who}\" is listed twice")));
            }
        }
        Ok(Overrides { entries })
    }

    /// The budgets of `email` (any case): its own entry, else its domain's, else `defaults`.
    pub fn limits_for(&self, email: &str, defaults: Limits) -> Limits {
        self.limits_for_lowercase(email.to_ascii_lowercase().as_bytes(), defaults)
    }

    /// [`Overrides::limits_for`] for an address already lower-cased (ASCII), as the module's
    /// quota key is: no allocation, no UTF-8 check. A domain entry `@example.com` is the
    /// address's own tail from its last `@`.
    pub fn limits_for_lowercase(&self, email: &[u8], defaults: Limits) -> Limits {
        let entry = self.entries.get(email).or_else(|| {
            let at = email.iter().rposition(|&b| b == b'@')?;
            self.entries.get(&email[at..])
        });
        let Some(entry) = entry else { return defaults };
        let mut out = defaults;
        for period in Period::ALL {
            for unit in Unit::ALL {
                if let Some(cap) = entry[index(period)][unit_index(unit)] {
                    out.period_mut(period).set(unit, cap);
                }
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Caps;

    fn caps(requests: Option<u64>, tokens: Option<u64>, cost: Option<u64>) -> Caps {
        Caps { requests, tokens, cost }
    }

    #[test]
    fn overrides() {
        let o = Overrides::parse(
            "# power users\nAlice@Example.com day=1000 month=unlimited month_cost=250\n\
             @partner.example day=10 day_tokens=5000 # partners\n\n\
             bob@example.com\tmonth=50\t# tab before the comment\n",
        )
        .unwrap();
        let d = Limits {
            day: caps(Some(200), None, None),
            month: caps(Some(3000), None, Some(100_000_000_000)),
        };
        assert_eq!(
            o.limits_for("alice@example.com", d),
            Limits {
                day: caps(Some(1000), None, None),
                month: caps(None, None, Some(250_000_000_000))
            }
        );
        assert_eq!(
            o.limits_for("x@partner.example", d),
            Limits { day: caps(Some(10), Some(5000), None), ..d }
        );
        assert_eq!(o.limits_for("bob@example.com", d).month.requests, Some(50));
        assert_eq!(o.limits_for("carol@example.com", d), d);
        assert_eq!(o.limits_for("ALICE@example.COM", d).day.requests, Some(1000));
        assert_eq!(o.limits_for("X@Partner.Example", d).day.requests, Some(10));
        assert_eq!(o.limits_for("\"a@b\"@partner.example", d).day.requests, Some(10));
        assert_eq!(o.limits_for("partner.example", d), d);
        assert_eq!(o.limits_for("x@sub.partner.example", d), d);
        assert_eq!(o.limits_for_lowercase(b"\xff@example.com", d), d);
        for (bad, line) in [
            ("alice", 1),
            ("a@b.c day=1\nb@c.d day=x", 2),
            ("a@b.c hour=5", 1),
            ("a@b.c day_cost=1.2.3", 1),
            ("a@b.c week_tokens=3", 1),
            ("a@b.c", 1),
            ("a@b.c day=1\nA@B.C day=2", 2),
        ] {
            assert_eq!(Overrides::parse(bad).unwrap_err().line, line, "{bad:?}");
        }
    }
}
