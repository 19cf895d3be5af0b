//! Budgets in requests, tokens and money, and the counters that spend them.
//!
//! A key's [`Counters`] hold what was used in the current day and month (each tagged with its
//! period number, so a new period starts from zero exactly once), what admitted requests still
//! in flight have reserved, and top-ups granted for the current periods.
//!
//! **Admission and settlement.** A request is admitted while budget is left: for every capped
//! unit, `used + reserved < cap + top-up`. It then reserves an estimate (1 request; for AI
//! calls the tokens and cost it may use: its input estimated from the request, its output from
//! `max_tokens` or a configured default). When the answer is done, the reservation is released
//! and the true amount charged. So the amount charged beyond a cap is less than one request's
//! estimate, as long as estimates are upper bounds of what requests use; where a request uses
//! more than it reserved, the excess adds to that bound. Requests (the unit) never overshoot:
//! their estimate is exact.

/// What is counted: requests, tokens (input and output) and cost in nano-dollars (10⁻⁹ USD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    pub cost: u64,
}

impl Amounts {
    pub const ONE_REQUEST: Amounts = Amounts { requests: 1, input: 0, output: 0, cost: 0 };

    pub fn tokens(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    pub fn add(&mut self, o: &Amounts) {
        self.requests = self.requests.saturating_add(o.requests);
        self.input = self.input.saturating_add(o.input);
        self.output = self.output.saturating_add(o.output);
        self.cost = self.cost.saturating_add(o.cost);
    }

    pub fn sub(&mut self, o: &Amounts) {
        self.requests = self.requests.saturating_sub(o.requests);
        self.input = self.input.saturating_sub(o.input);
        self.output = self.output.saturating_sub(o.output);
        self.cost = self.cost.saturating_sub(o.cost);
    }

    /// `add` without the saturation, for counts that can never reach 2⁶⁴ in a period (what a
    /// node has charged): four plain additions the compiler can do at once.
    #[inline]
    pub(crate) fn add_counted(&mut self, o: &Amounts) {
        self.requests = self.requests.wrapping_add(o.requests);
        self.input = self.input.wrapping_add(o.input);
        self.output = self.output.wrapping_add(o.output);
        self.cost = self.cost.wrapping_add(o.cost);
    }

    pub fn plus(mut self, o: &Amounts) -> Amounts {
        self.add(o);
        self
    }

    /// The amount in `unit`.
    pub fn of(&self, unit: Unit) -> u64 {
        match unit {
            Unit::Requests => self.requests,
            Unit::Tokens => self.tokens(),
            Unit::Cost => self.cost,
        }
    }
}

/// The unit of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Requests,
    Tokens,
    Cost,
}

impl Unit {
    pub const ALL: [Unit; 3] = [Unit::Requests, Unit::Tokens, Unit::Cost];

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
            Unit::Cost => "cost",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Day, Period::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// Caps per unit for one period; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
    pub cost: Option<u64>,
}

impl Caps {
    pub fn get(&self, unit: Unit) -> Option<u64> {
        match unit {
            Unit::Requests => self.requests,
            Unit::Tokens => self.tokens,
            Unit::Cost => self.cost,
        }
    }

    pub fn set(&mut self, unit: Unit, cap: Option<u64>) {
        match unit {
            Unit::Requests => self.requests = cap,
            Unit::Tokens => self.tokens = cap,
            Unit::Cost => self.cost = cap,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none() && self.cost.is_none()
    }
}

/// Budgets per period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub day: Caps,
    pub month: Caps,
}

impl Limits {
    pub const UNLIMITED: Limits = Limits {
        day: Caps { requests: None, tokens: None, cost: None },
        month: Caps { requests: None, tokens: None, cost: None },
    };

    pub fn period(&self, p: Period) -> &Caps {
        match p {
            Period::Day => &self.day,
            Period::Month => &self.month,
        }
    }

    pub fn period_mut(&mut self, p: Period) -> &mut Caps {
        match p {
            Period::Day => &mut self.day,
            Period::Month => &mut self.month,
        }
    }
}

/// One key's counters, as kept in shared memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub day: u32,
    pub month: u32,
    pub day_used: Amounts,
    pub month_used: Amounts,
    /// Reserved by admitted requests still in flight (not tied to a period).
    pub reserved: Amounts,
    /// Top-ups granted for the current day and month (added to the caps).
    pub day_bonus: Amounts,
    pub month_bonus: Amounts,
}

/// What this node charged a key, for a zone shared through Redis ([`super::cluster`]), kept
/// beside the key's [`Counters`] (the request path copies those; these only grow). Kept for
/// every zone (four additions per charge), so that a zone that starts being shared sends what
/// it counted before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shares {
    pub day: u32,
    pub month: u32,
    /// Not yet sent: what this node adds to the day's and the month's totals at its next
    /// round.
    pub day_unsent: Amounts,
    pub month_unsent: Amounts,
    /// Everything this node charged in the day and the month (sent or not): its own share of
    /// the cluster's totals, which a Redis that lost its data gets back from it.
    pub day_own: Amounts,
    pub month_own: Amounts,
}

impl Shares {
    /// Starts new periods where the clock moved on: a day that ended no longer decides any
    /// budget, so what it did not send is dropped (the month keeps it).
    #[inline]
    pub fn roll(&mut self, p: &Periods) {
        if self.day != p.day {
            self.day = p.day;
            self.day_unsent = Amounts::default();
            self.day_own = Amounts::default();
        }
        if self.month != p.month {
            self.month = p.month;
            self.month_unsent = Amounts::default();
            self.month_own = Amounts::default();
        }
    }

    /// Counts what a request was charged.
    #[inline]
    pub fn count(&mut self, p: &Periods, actual: &Amounts) {
        self.roll(p);
        self.day_unsent.add_counted(actual);
        self.month_unsent.add_counted(actual);
        self.day_own.add_counted(actual);
        self.month_own.add_counted(actual);
    }
}

/// A refusal: which budget is used up, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub period: Period,
    pub unit: Unit,
    /// Used plus reserved, in the unit.
    pub used: u64,
    /// The cap including top-ups.
    pub limit: u64,
    /// When the period ends (Unix seconds).
    pub resets: u64,
}

use super::Periods;

impl Counters {
    /// Starts new periods where the clock moved on (each counter resets exactly once).
    pub fn roll(&mut self, p: &Periods) {
        if self.day != p.day {
            self.day = p.day;
            self.day_used = Amounts::default();
            self.day_bonus = Amounts::default();
        }
        if self.month != p.month {
            self.month = p.month;
            self.month_used = Amounts::default();
            self.month_bonus = Amounts::default();
        }
    }

    pub fn used(&self, p: Period) -> &Amounts {
        match p {
            Period::Day => &self.day_used,
            Period::Month => &self.month_used,
        }
    }

    fn bonus(&self, p: Period) -> &Amounts {
        match p {
            Period::Day => &self.day_bonus,
            Period::Month => &self.month_bonus,
        }
    }

    /// The first budget that is used up (`used + reserved >= cap + top-up`), if any.
    pub fn exceeded(&self, p: &Periods, limits: &Limits) -> Option<Exceeded> {
        for period in Period::ALL {
            let caps = limits.period(period);
            for unit in Unit::ALL {
                let Some(cap) = caps.get(unit) else { continue };
                let limit = cap.saturating_add(self.bonus(period).of(unit));
                let used = self.used(period).of(unit).saturating_add(self.reserved.of(unit));
                if used >= limit {
                    let resets = match period {
                        Period::Day => p.day_ends,
                        Period::Month => p.month_ends,
                    };
                    return Some(Exceeded { period, unit, used, limit, resets });
                }
            }
        }
        None
    }

    /// Admits a request if budget is left, reserving `estimate`.
    pub fn admit(
        &mut self,
        p: &Periods,
        limits: &Limits,
        estimate: &Amounts,
    ) -> Result<(), Exceeded> {
        self.roll(p);
        if let Some(e) = self.exceeded(p, limits) {
            return Err(e);
        }
        self.reserved.add(estimate);
        Ok(())
    }

    /// Releases a reservation and charges what the request really used (in the periods current
    /// now).
    #[inline]
    pub fn settle(&mut self, p: &Periods, reserved: &Amounts, actual: &Amounts) {
        self.reserved.sub(reserved);
        self.roll(p);
        self.day_used.add(actual);
        self.month_used.add(actual);
    }

    /// Charges without a reservation (amounts learnt afterwards, or synchronised).
    pub fn charge(&mut self, p: &Periods, actual: &Amounts) {
        self.settle(p, &Amounts::default(), actual);
    }

    /// An administrator's reset: the period starts again from zero.
    pub fn reset(&mut self, p: &Periods, period: Period) {
        self.roll(p);
        match period {
            Period::Day => self.day_used = Amounts::default(),
            Period::Month => self.month_used = Amounts::default(),
        }
    }

    /// An administrator's top-up: more budget for the current period only.
    pub fn top_up(&mut self, p: &Periods, period: Period, extra: &Amounts) {
        self.roll(p);
        match period {
            Period::Day => self.day_bonus.add(extra),
            Period::Month => self.month_bonus.add(extra),
        }
    }

    /// The highest share (per mille) of any capped budget in use (used plus reserved), with its
    /// period and unit: for warnings before people are stopped.
    pub fn highest_share(&self, limits: &Limits) -> Option<(u64, Period, Unit)> {
        let mut best: Option<(u64, Period, Unit)> = None;
        for period in Period::ALL {
            for unit in Unit::ALL {
                let Some(cap) = limits.period(period).get(unit) else { continue };
                let limit = cap.saturating_add(self.bonus(period).of(unit));
                let used = self.used(period).of(unit).saturating_add(self.reserved.of(unit));
                let share = used.saturating_mul(1000).checked_div(limit).unwrap_or(1000);
                if best.is_none_or(|(b, _, _)| share > b) {
                    best = Some((share, period, unit));
                }
            }
        }
        best
    }

    /// What is left of a period's cap in `unit` (`None`: unlimited).
    pub fn remaining(&self, limits: &Limits, period: Period, unit: Unit) -> Option<u64> {
        let cap = limits.period(period).get(unit)?;
        let limit = cap.saturating_add(self.bonus(period).of(unit));
        let used = self.used(period).of(unit).saturating_add(self.reserved.of(unit));
        Some(limit.saturating_sub(used))
    }
}

/// Parses a budget value: a count (`200`, `unlimited`) or, for cost, US dollars (`50`,
/// `12.50`), as nano-dollars.
pub fn parse_cap(unit: Unit, s: &str) -> Result<Option<u64>, &'static str> {
    if s == "unlimited" {
        return Ok(None);
    }
    match unit {
        Unit::Cost => parse_usd(s).map(Some),
        _ => s.parse::<u64>().map(Some).map_err(|_| "expected a number or \"unlimited\""),
    }
}

pub use crate::usage::price::{format_usd, parse_usd};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Clock;
    use proptest::prelude::*;

    fn caps(requests: Option<u64>, tokens: Option<u64>, cost: Option<u64>) -> Caps {
        Caps { requests, tokens, cost }
    }

    #[test]
    fn requests_are_exact() {
        let p = Clock::default().periods(1_000_000);
        let limits = Limits { day: caps(Some(2), None, None), month: caps(Some(3), None, None) };
        let mut c = Counters::default();
        let one = Amounts::ONE_REQUEST;
        assert!(c.admit(&p, &limits, &one).is_ok());
        assert!(c.admit(&p, &limits, &one).is_ok());
        let e = c.admit(&p, &limits, &one).unwrap_err();
        assert_eq!(
            (e.period, e.unit, e.used, e.limit, e.resets),
            (Period::Day, Unit::Requests, 2, 2, p.day_ends)
        );
        // Settling moves the reservation into the periods.
        c.settle(&p, &one, &one);
        c.settle(&p, &one, &one);
        assert_eq!(
            (c.reserved, c.day_used.requests, c.month_used.requests),
            (Amounts::default(), 2, 2)
        );
        // The next day: the day starts again, the month goes on.
        let p2 = Clock::default().periods(p.day_ends);
        assert!(c.admit(&p2, &limits, &one).is_ok());
        c.settle(&p2, &one, &one);
        assert_eq!(c.admit(&p2, &limits, &one).unwrap_err().period, Period::Month);
    }

    #[test]
    fn tokens_admitted_while_left_and_settled_exactly() {
        let p = Clock::default().periods(5);
        let limits = Limits { day: caps(None, Some(1000), None), month: Caps::default() };
        let mut c = Counters::default();
        let est = Amounts { requests: 1, input: 300, output: 500, cost: 0 };
        assert!(c.admit(&p, &limits, &est).is_ok()); // 800 reserved
        assert!(c.admit(&p, &limits, &est).is_ok()); // 800 < 1000: admitted, 1600 reserved
        assert!(c.admit(&p, &limits, &est).is_err()); // used up
        c.settle(&p, &est, &Amounts { requests: 1, input: 300, output: 20, cost: 0 });
        c.settle(&p, &est, &Amounts { requests: 1, input: 300, output: 80, cost: 0 });
        assert_eq!(c.day_used.tokens(), 700);
        assert!(c.admit(&p, &limits, &est).is_ok());
    }

    #[test]
    fn failed_answers_are_not_charged() {
        let p = Clock::default().periods(5);
        let limits = Limits { day: caps(Some(1), None, None), month: Caps::default() };
        let mut c = Counters::default();
        let one = Amounts::ONE_REQUEST;
        c.admit(&p, &limits, &one).unwrap();
        c.settle(&p, &one, &Amounts::default()); // a 502: nothing charged
        assert!(c.admit(&p, &limits, &one).is_ok());
    }

    #[test]
    fn reset_and_top_up() {
        let p = Clock::default().periods(5);
        let limits = Limits { day: Caps::default(), month: caps(None, None, Some(1_000_000_000)) };
        let mut c = Counters::default();
        c.charge(&p, &Amounts { cost: 1_000_000_000, ..Default::default() });
        assert_eq!(c.admit(&p, &limits, &Amounts::ONE_REQUEST).unwrap_err().unit, Unit::Cost);
        c.top_up(&p, Period::Month, &Amounts { cost: 500_000_000, ..Default::default() });
        assert_eq!(c.remaining(&limits, Period::Month, Unit::Cost), Some(500_000_000));
        assert!(c.admit(&p, &limits, &Amounts::ONE_REQUEST).is_ok());
        c.reset(&p, Period::Month);
        assert_eq!(c.month_used, Amounts::default());
        // A top-up ends with its period.
        let next = Clock::default().periods(p.month_ends);
        c.roll(&next);
        assert_eq!(c.month_bonus, Amounts::default());
    }

    #[test]
    fn shares() {
        let p = Clock::default().periods(5);
        let limits =
            Limits { day: caps(Some(10), None, None), month: caps(None, Some(1000), None) };
        let mut c = Counters::default();
        c.charge(&p, &Amounts { requests: 5, input: 850, output: 0, cost: 0 });
        assert_eq!(c.highest_share(&limits), Some((850, Period::Month, Unit::Tokens)));
        assert_eq!(Counters::default().highest_share(&Limits::UNLIMITED), None);
    }

    #[test]
    fn budget_values() {
        assert_eq!(parse_cap(Unit::Cost, "12.50"), Ok(Some(12_500_000_000)));
        assert_eq!(parse_cap(Unit::Cost, "unlimited"), Ok(None));
        assert_eq!(parse_cap(Unit::Tokens, "1000"), Ok(Some(1000)));
        assert!(parse_cap(Unit::Requests, "1.5").is_err());
    }

    proptest! {
        /// With estimates that are upper bounds, the charge beyond a cap is less than one
        /// request's estimate, however requests interleave.
        #[test]
        fn prop_overshoot_below_one_estimate(
            cap in 0u64..5000,
            reqs in proptest::collection::vec((1u64..800, 0u64..800, any::<bool>()), 0..60),
        ) {
            let p = Clock::default().periods(5);
            let limits = Limits { day: caps(None, Some(cap), None), month: Caps::default() };
            let mut c = Counters::default();
            let mut in_flight: Vec<(Amounts, Amounts)> = Vec::new();
            let mut max_est = 0;
            for (est, actual, settle_first) in reqs {
                let actual = actual.min(est);
                if settle_first {
                    if let Some((e, a)) = in_flight.pop() { c.settle(&p, &e, &a); }
                }
                let e = Amounts { output: est, ..Default::default() };
                if c.admit(&p, &limits, &e).is_ok() {
                    max_est = max_est.max(est);
                    in_flight.push((e, Amounts { output: actual, ..Default::default() }));
                }
            }
            for (e, a) in in_flight.drain(..) { c.settle(&p, &e, &a); }
            prop_assert!(c.day_used.tokens() < cap + max_est.max(1));
            prop_assert_eq!(c.reserved, Amounts::default());
        }

    }
}
