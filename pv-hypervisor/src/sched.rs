//! Which domain runs next: weighted proportional share in the spirit of Xen's credit
//! scheduler, as plain logic (host-tested; `arch` calls it at every scheduling point).
//!
//! Each domain has a weight (Xen's default 256) and an optional cap (percent of one
//! CPU). Running costs a domain virtual time at the rate 256 / weight, so over any busy
//! stretch domains get CPU in proportion to their weights; the one with the least
//! virtual time runs next, for at most a time slice. A domain that wakes up (an event
//! for a blocked domain) is placed a little ahead of the least virtual time among the
//! others, so it runs soon (Xen's BOOST) without banking the time it slept. A capped
//! domain that used its share of the current accounting period waits for the next one,
//! even with the CPU idle, as a Xen cap does.

/// Xen's default weight (`xl sched-credit`).
pub const DEFAULT_WEIGHT: u32 = 256;
/// The longest a domain runs before the scheduler looks again when others wait.
pub const TIME_SLICE_NS: u64 = 10_000_000;
/// Caps are enforced per period of this length.
pub const CAP_PERIOD_NS: u64 = 100_000_000;
/// How far ahead of the least virtual time a waking domain is placed.
const WAKE_LEAD: u64 = TIME_SLICE_NS / 2;

/// What the administrator chose (the bundle's `config`, later the toolstack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    /// 1-65535; CPU shares are proportional to it.
    pub weight: u32,
    /// Percent of one CPU it may use at most; 0 = no cap.
    pub cap: u32,
}

impl Default for SchedParams {
    fn default() -> Self {
        SchedParams { weight: DEFAULT_WEIGHT, cap: 0 }
    }
}

/// What the scheduler keeps per domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedState {
    /// Weighted time used: the smallest runs next.
    pub vtime: u64,
    /// CPU time used in all (for `xl list`'s Time column and CPU%).
    pub cpu_ns: u64,
    /// Which cap period `period_used_ns` counts in.
    period: u64,
    period_used_ns: u64,
}

impl SchedState {
    /// Charges `ran_ns` of CPU, ending at `now_ns`.
    pub fn charge(&mut self, params: SchedParams, ran_ns: u64, now_ns: u64) {
        let weight = u64::from(params.weight.max(1));
        self.vtime = self.vtime.saturating_add(ran_ns.saturating_mul(u64::from(DEFAULT_WEIGHT)) / weight);
        self.cpu_ns = self.cpu_ns.saturating_add(ran_ns);
        let period = now_ns / CAP_PERIOD_NS;
        if period != self.period {
            // The part of the run that fell in the new period counts there.
            self.period = period;
            self.period_used_ns = ran_ns.min(now_ns % CAP_PERIOD_NS);
        } else {
            self.period_used_ns = self.period_used_ns.saturating_add(ran_ns);
        }
    }

    /// How long it may still run in the current cap period (u64::MAX without a cap).
    pub fn cap_budget(&self, params: SchedParams, now_ns: u64) -> u64 {
        if params.cap == 0 {
            return u64::MAX;
        }
        let allowed = CAP_PERIOD_NS / 100 * u64::from(params.cap);
        let used = if self.period == now_ns / CAP_PERIOD_NS { self.period_used_ns } else { 0 };
        allowed.saturating_sub(used)
    }

    /// SCHEDOP_yield: placed just behind the least virtual time among the others
    /// (`others_least`), so each runnable one goes first; alone, it runs on.
    pub fn yield_to(&mut self, others_least: Option<u64>) {
        if let Some(least) = others_least {
            self.vtime = self.vtime.max(least.saturating_add(1));
        }
    }

    /// A blocked domain became runnable: no credit for the time it slept, a small lead.
    pub fn wake(&mut self, least_vtime: u64) {
        self.vtime = self.vtime.max(least_vtime.saturating_sub(WAKE_LEAD));
    }
}

/// One domain as the scheduler sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub params: SchedParams,
    pub state: SchedState,
    /// Running (not blocked, paused or stopped).
    pub runnable: bool,
}

/// The decision: which candidate runs (index), and until when at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Run {
        index: usize,
        until_ns: u64,
    },
    /// Nothing may run: idle until `until_ns` (a capped domain's next period), or until
    /// an interrupt when `None`.
    Idle {
        until_ns: Option<u64>,
    },
}

/// Picks the runnable, uncapped candidate with the least virtual time (ties go to the
/// lowest index: dom0 first).
pub fn decide(candidates: &[Candidate], now_ns: u64) -> Decision {
    let mut best: Option<usize> = None;
    let mut capped = false;
    for (i, c) in candidates.iter().enumerate().filter(|(_, c)| c.runnable) {
        if c.state.cap_budget(c.params, now_ns) == 0 {
            capped = true;
            continue;
        }
        if best.is_none_or(|b| c.state.vtime < candidates[b].state.vtime) {
            best = Some(i);
        }
    }
    let next_period = (now_ns / CAP_PERIOD_NS + 1) * CAP_PERIOD_NS;
    let Some(index) = best else {
        return Decision::Idle { until_ns: capped.then_some(next_period) };
    };
    let c = &candidates[index];
    let others_waiting = candidates.iter().enumerate().any(|(i, o)| i != index && o.runnable);
    let slice = if others_waiting { TIME_SLICE_NS } else { u64::MAX };
    let budget = c.state.cap_budget(c.params, now_ns);
    let mut until = now_ns.saturating_add(slice.min(budget));
    if others_waiting && capped {
        // A capped domain gets its new budget at the period's start.
        until = until.min(next_period);
    }
    Decision::Run { index, until_ns: until }
}

/// The least virtual time among runnable candidates (a waking domain's reference).
pub fn least_vtime(candidates: impl Iterator<Item = (SchedState, bool)>) -> Option<u64> {
    candidates.filter(|(_, runnable)| *runnable).map(|(s, _)| s.vtime).min()
}

/// Whether the exit path must write the (one-shot) LAPIC timer for `deadline`, when it
/// was last armed for `armed_for`: the deadline moved, the last one passed, or the timer
/// may have fired since it was armed. The last matters when a tick arrives a little
/// before `armed_for` by the TSC (QEMU drives the LAPIC timer and the TSC from different
/// clocks): the deadline is then unchanged and not yet passed, and without re-arming no
/// timer is left at all, so a guest that makes no hypercalls is never preempted.
pub fn timer_needs_arming(deadline: u64, armed_for: u64, now: u64, may_have_fired: bool) -> bool {
    deadline != armed_for || now >= armed_for || may_have_fired
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Runs `params` as CPU-bound domains for `total_ns` and returns each one's CPU time.
    fn simulate(params: &[SchedParams], total_ns: u64) -> Vec<u64> {
        let mut states = vec![SchedState::default(); params.len()];
        let mut now = 0;
        while now < total_ns {
            let candidates: Vec<Candidate> = params.iter().zip(&states).map(|(&p, &s)| Candidate { params: p, state: s, runnable: true }).collect();
            match decide(&candidates, now) {
                Decision::Run { index, until_ns } => {
                    assert!(until_ns > now, "a decision must make progress");
                    let end = until_ns.min(total_ns);
                    states[index].charge(params[index], end - now, end);
                    now = end;
                }
                Decision::Idle { until_ns } => now = until_ns.expect("CPU-bound domains idle only for a cap"),
            }
        }
        states.iter().map(|s| s.cpu_ns).collect()
    }

    fn w(weight: u32) -> SchedParams {
        SchedParams { weight, cap: 0 }
    }

    #[test]
    fn shares_follow_the_weights() {
        let used = simulate(&[w(1), w(2), w(4)], 7_000_000_000);
        let total: u64 = used.iter().sum();
        for (u, share) in used.iter().zip([1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0]) {
            let got = *u as f64 / total as f64;
            assert!((got - share).abs() < 0.01 * share + 0.002, "share {got} for {share}");
        }
        let equal = simulate(&[w(256), w(256)], 1_000_000_000);
        assert!(equal[0].abs_diff(equal[1]) <= TIME_SLICE_NS);
    }

    #[test]
    fn a_cap_holds_even_with_the_cpu_idle() {
        let capped = SchedParams { weight: 256, cap: 20 };
        let used = simulate(&[capped], 1_000_000_000);
        assert_eq!(used[0], 200_000_000, "20% of one second");
        // With a competitor the cap still holds, and the rest goes to the other.
        let used = simulate(&[capped, w(256)], 1_000_000_000);
        assert!(used[0] <= 200_000_000 && used[0] >= 190_000_000, "{used:?}");
        assert_eq!(used[0] + used[1], 1_000_000_000);
    }

    #[test]
    fn a_lone_domain_runs_without_a_slice_and_idles_with_nothing_runnable() {
        let c = Candidate { params: w(256), state: SchedState::default(), runnable: true };
        assert_eq!(decide(&[c], 5), Decision::Run { index: 0, until_ns: u64::MAX });
        let blocked = Candidate { runnable: false, ..c };
        assert_eq!(decide(&[blocked, blocked], 5), Decision::Idle { until_ns: None });
        // Ties go to the lowest index (dom0).
        assert_eq!(decide(&[c, c], 0), Decision::Run { index: 0, until_ns: TIME_SLICE_NS });
    }

    #[test]
    fn a_waking_domain_runs_soon_but_banks_no_sleep() {
        let mut sleeper = SchedState::default();
        let mut spinner = SchedState::default();
        spinner.charge(w(256), 3_000_000_000, 3_000_000_000);
        sleeper.wake(least_vtime([(spinner, true)].into_iter()).unwrap());
        assert!(sleeper.vtime < spinner.vtime && spinner.vtime - sleeper.vtime <= WAKE_LEAD);
        let c = |s| Candidate { params: w(256), state: s, runnable: true };
        assert!(matches!(decide(&[c(spinner), c(sleeper)], 3_000_000_000), Decision::Run { index: 1, .. }));
    }

    #[test]
    fn a_yielding_domain_goes_behind_the_others() {
        let mut yielder = SchedState::default();
        let mut other = SchedState::default();
        other.charge(w(256), 5_000_000, 5_000_000);
        yielder.yield_to(Some(other.vtime));
        let c = |s| Candidate { params: w(256), state: s, runnable: true };
        assert!(matches!(decide(&[c(yielder), c(other)], 5_000_000), Decision::Run { index: 1, .. }));
        let before = yielder.vtime;
        yielder.yield_to(None);
        assert_eq!(yielder.vtime, before, "alone: nothing changes");
    }

    #[test]
    fn charging_across_a_period_boundary_counts_in_the_new_period() {
        let capped = SchedParams { weight: 256, cap: 50 };
        let mut s = SchedState::default();
        s.charge(capped, 40_000_000, 90_000_000);
        assert_eq!(s.cap_budget(capped, 95_000_000), 10_000_000);
        s.charge(capped, 20_000_000, 110_000_000);
        assert_eq!(s.cap_budget(capped, 110_000_000), 40_000_000, "10 ms of the run fell in the new period");
        assert_eq!(s.cap_budget(SchedParams::default(), 0), u64::MAX);
    }

    #[test]
    fn a_tick_that_came_early_still_rearms_the_timer() {
        // Armed for 1000; the tick arrives when the TSC says 999, and the next deadline
        // is still 1000 (nothing else due): only the flag says the timer is idle.
        assert!(timer_needs_arming(1000, 1000, 999, true));
        assert!(!timer_needs_arming(1000, 1000, 999, false), "no tick since: the armed timer stands");
        assert!(timer_needs_arming(2000, 1000, 999, false), "the deadline moved");
        assert!(timer_needs_arming(1000, 1000, 1000, false), "the deadline passed");
    }
}
