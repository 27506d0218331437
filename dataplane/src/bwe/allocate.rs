//! Layer allocation: which layer of each video track one subscriber gets within a budget (its estimate less its
//! audio, which is never touched). Screen shares first, each up to what it asked for; then every camera its
//! lowest layer before any gets a second, then one step at a time in turn. A track whose lowest layer does not
//! fit is paused, the last resort, and while one is paused nobody after it gets more than its lowest. What the subscriber asked for (`set_layer`) is a ceiling, not a
//! promise. Pure and allocation-free: the caller keeps the hysteresis (down at once, up only with room to spare,
//! no upgrade soon after a downgrade).

use crate::core::LAYERS_MAX;

/// One video subscription as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Demand {
    pub screen: bool,
    /// The highest layer it may get.
    pub ceiling: u8,
    /// Bit/s of each layer the publisher is sending now (None: not being sent).
    pub rates: [Option<u64>; LAYERS_MAX],
}

impl Demand {
    /// The layers it can be given, lowest first: those being sent up to the ceiling, else (the ceiling's are all
    /// paused by the publisher) the lowest one being sent above it.
    fn candidates(&self) -> impl Iterator<Item = u8> + '_ {
        let under = (0..=self.ceiling.min(LAYERS_MAX as u8 - 1)).filter(|l| self.rates[usize::from(*l)].is_some());
        let above = (self.ceiling + 1..LAYERS_MAX as u8).find(|l| self.rates[usize::from(*l)].is_some());
        let fallback = if under.clone().next().is_none() { above } else { None };
        under.chain(fallback)
    }

    fn cost(&self, layer: Option<u8>) -> u64 {
        layer.and_then(|l| self.rates[usize::from(l)]).unwrap_or(0)
    }

    /// The next layer above `current` it can be given.
    fn step_up(&self, current: Option<u8>) -> Option<u8> {
        self.candidates().find(|l| current.is_none_or(|c| *l > c))
    }

    /// Whether nothing of the track is being sent (nothing to allocate: it costs nothing).
    fn silent(&self) -> bool {
        self.rates.iter().all(Option::is_none)
    }
}

/// Allocates `budget_bps` over `demands`, writing each one's layer into `out` (None: paused). Returns the total
/// bit/s allocated. `out` must be as long as `demands`.
pub fn allocate(budget_bps: u64, demands: &[Demand], out: &mut [Option<u8>]) -> u64 {
    let out = &mut out[..demands.len()];
    let mut used = 0u64;
    // Silent tracks keep their ceiling (when they start, the next allocation sees their rates).
    for (d, o) in demands.iter().zip(out.iter_mut()) {
        *o = d.silent().then_some(d.ceiling);
    }
    for screens in [true, false] {
        let group = || (0..demands.len()).filter(move |i| demands[*i].screen == screens && !demands[*i].silent());
        // Everyone's lowest layer, in turn.
        let mut all_fit = true;
        for i in group() {
            let d = &demands[i];
            let lowest = d.step_up(None);
            let cost = d.cost(lowest);
            if lowest.is_some() && used + cost <= budget_bps {
                out[i] = lowest;
                used += cost;
            } else {
                all_fit = false;
            }
        }
        if !all_fit {
            // A paused track first: nobody of this group gets a second layer (nor anyone after).
            return used;
        }
        // Then a step at a time in turn (screens each all the way up before the next).
        loop {
            let mut raised = false;
            for i in group() {
                let d = &demands[i];
                let Some(next) = d.step_up(out[i]) else { continue };
                let extra = d.cost(Some(next)).saturating_sub(d.cost(out[i]));
                if used + extra <= budget_bps {
                    out[i] = Some(next);
                    used += extra;
                    raised = true;
                    if screens {
                        break;
                    }
                }
            }
            if !raised {
                break;
            }
        }
    }
    used
}

/// What `layers` cost in all.
pub fn total(demands: &[Demand], layers: &[Option<u8>]) -> u64 {
    demands.iter().zip(layers).map(|(d, l)| d.cost(*l)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1_000;

    fn camera(rates: [u64; 3]) -> Demand {
        Demand { screen: false, ceiling: 2, rates: rates.map(Some) }
    }

    fn run(budget: u64, demands: &[Demand]) -> Vec<Option<u8>> {
        let mut out = vec![None; demands.len()];
        let used = allocate(budget, demands, &mut out);
        assert!(used <= budget || demands.iter().any(Demand::silent), "{used} over {budget}");
        assert_eq!(used, total(demands, &out));
        out
    }

    #[test]
    fn every_camera_gets_its_lowest_layer_before_any_gets_a_second() {
        let cams = [camera([150 * K, 500 * K, 1_500 * K]); 3];
        assert_eq!(run(10_000 * K, &cams), [Some(2); 3]);
        assert_eq!(run(450 * K, &cams), [Some(0); 3]);
        assert_eq!(run(800 * K, &cams), [Some(1), Some(0), Some(0)], "150+150+500 fits, a second 500 does not");
        assert_eq!(run(300 * K, &cams), [Some(0), Some(0), None], "the last one is paused");
        assert_eq!(run(0, &cams), [None; 3]);
    }

    #[test]
    fn screen_shares_come_before_cameras() {
        let screen = Demand { screen: true, ceiling: 0, rates: [Some(1_200 * K), None, None] };
        let demands = [camera([150 * K, 500 * K, 1_500 * K]), screen];
        assert_eq!(run(1_300 * K, &demands), [None, Some(0)], "the screen first, even before a camera's lowest");
        assert_eq!(run(1_400 * K, &demands), [Some(0), Some(0)]);
        assert_eq!(run(3_000 * K, &demands), [Some(2), Some(0)]);
    }

    #[test]
    fn the_ceiling_is_what_was_asked_for_and_paused_layers_are_skipped() {
        let mut d = camera([150 * K, 500 * K, 1_500 * K]);
        d.ceiling = 1;
        assert_eq!(run(10_000 * K, &[d]), [Some(1)]);
        d.rates[1] = None; // the publisher paused the middle layer
        assert_eq!(run(10_000 * K, &[d]), [Some(0)], "nothing above the ceiling while something under it is sent");
        d.rates[0] = None;
        assert_eq!(run(10_000 * K, &[d]), [Some(2)], "only the top is sent: the lowest above the ceiling");
        let silent = Demand { screen: false, ceiling: 2, rates: [None; 3] };
        assert_eq!(run(0, &[silent]), [Some(2)], "a silent track costs nothing");
    }

    #[test]
    fn any_budget_gives_a_fitting_fair_allocation() {
        let demands = [
            camera([100 * K, 400 * K, 1_700 * K]),
            Demand { screen: true, ceiling: 0, rates: [Some(900 * K), None, None] },
            camera([120 * K, 350 * K, 1_100 * K]),
            Demand { screen: false, ceiling: 1, rates: [Some(90 * K), Some(300 * K), Some(900 * K)] },
        ];
        let cameras = [0, 2, 3];
        for budget in (0..6_000).map(|b| b * 1_000) {
            let got = run(budget, &demands);
            assert!(got[3].is_none_or(|l| l <= 1), "the ceiling holds");
            let paused = cameras.iter().any(|i| got[*i].is_none());
            let raised = cameras.iter().any(|i| got[*i].is_some_and(|l| l > 0));
            assert!(!(paused && raised), "at {budget}: a camera paused while another has a second layer: {got:?}");
            let any_camera = cameras.iter().any(|i| got[*i].is_some());
            assert!(!any_camera || got[1].is_some(), "at {budget}: a camera before the screen: {got:?}");
        }
    }
}
