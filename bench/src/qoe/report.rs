//! What a QoE run found: per step and subscriber, the figures the targets are about (when the layer
//! dropped and settled, freezes and frozen time, switches, the estimate against the cap, concealed audio, loss),
//! the server's counters, the targets checked, a table, JSON and an SVG plot over time.

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use super::{Options, Sample, Schedule, Step};
use crate::chart::{self, Series};

#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    pub step: usize,
    pub label: String,
    pub subscriber: usize,
    pub impaired: bool,
    pub mean_height: f64,
    /// Share of the step's seconds on the publisher's top layer (the publisher's encoder may change its heights
    /// itself, for CPU or its own bandwidth: layers are told apart by their rank, not their height).
    pub top_share: f64,
    /// Seconds into the step of the first second below the top layer, and of the last layer change.
    pub lowered_after_secs: Option<f64>,
    pub settled_after_secs: Option<f64>,
    pub layer_changes: u64,
    pub freezes: u64,
    pub frozen_secs: f64,
    /// Seconds the server said its video was paused.
    pub paused_secs: u64,
    pub loss_percent: f64,
    pub concealed_percent: f64,
    pub kbps: f64,
    /// The server's estimate over the cap, median over the step's second half; and the first second from which
    /// it stayed within 10% of the cap.
    pub estimate_over_cap: Option<f64>,
    pub estimate_within_10_percent_after_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schedule: Schedule,
    pub steps: Vec<Step>,
    pub subscribers: usize,
    pub top_height: u64,
    pub ttff_ms: Vec<f64>,
    pub summaries: Vec<StepSummary>,
    pub targets: Vec<Target>,
    /// The server's dataplane counters at the end (downgrades, upgrades, pauses, probes, pacing).
    pub server: serde_json::Map<String, Value>,
    pub publisher_errors: Value,
    pub samples: Vec<Sample>,
}

/// Counters read from `/metrics` at the end, summed over workers.
const COUNTERS: [&str; 9] = [
    "bandwidth_downgrades_total",
    "bandwidth_upgrades_total",
    "bandwidth_pauses_total",
    "probes_total",
    "probes_succeeded_total",
    "probes_failed_total",
    "padding_sent_total",
    "paced_packets_total",
    "pacer_wait_microseconds_total",
];

impl Report {
    pub(super) fn new(
        options: &Options,
        steps: Vec<Step>,
        top: u64,
        ttff_ms: Vec<f64>,
        samples: Vec<Sample>,
        metrics: &str,
        publisher_errors: Value,
    ) -> Report {
        let mut summaries = Vec::new();
        let mut step_start = 0.0;
        for (index, step) in steps.iter().enumerate() {
            for subscriber in 0..options.subscribers {
                let list: Vec<&Sample> =
                    samples.iter().filter(|s| s.step == index && s.subscriber == subscriber).collect();
                // Counters are cumulative: a step's figures run from the previous step's last sample.
                let before = samples.iter().rfind(|s| s.step + 1 == index && s.subscriber == subscriber);
                if let Some(s) = summarize(index, step, subscriber, step_start, before, &list) {
                    summaries.push(s);
                }
            }
            step_start += step.secs as f64;
        }
        let mut server = serde_json::Map::new();
        for name in COUNTERS {
            let full = format!("sluice_dataplane_{name}");
            let total: u64 = metrics
                .lines()
                .filter(|l| l.split(['{', ' ']).next() == Some(full.as_str()))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            server.insert(name.trim_end_matches("_total").into(), total.into());
        }
        let mut report = Report {
            schedule: options.schedule,
            steps,
            subscribers: options.subscribers,
            top_height: top,
            ttff_ms,
            summaries,
            targets: Vec::new(),
            server,
            publisher_errors,
            samples,
        };
        report.targets = report.check_targets();
        report
    }

    fn summary(&self, step: usize, subscriber: usize) -> Option<&StepSummary> {
        self.summaries.iter().find(|s| s.step == step && s.subscriber == subscriber)
    }

    /// The targets that this schedule exercises. Samples come once a second, a little after each whole
    /// second of the step: times are compared in whole seconds.
    fn check_targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let mut add = |what: &str, measured: String, met: bool| t.push(Target { what: what.into(), measured, met });
        // A subscriber with no first frame (not finite) fails.
        let ttff_max = self.ttff_ms.iter().map(|t| if t.is_finite() { *t } else { f64::INFINITY }).fold(0.0, f64::max);
        add(
            "time to first frame under 500 ms (every subscriber)",
            format!("{:.0} ms at most", ttff_max),
            ttff_max < 500.0,
        );
        for (i, step) in self.steps.iter().enumerate() {
            let Some(s) = self.summary(i, 0) else { continue };
            let previous_capped = i > 0 && self.steps[i - 1].cap_bps.is_some();
            match (step.cap_bps, step.loss_percent) {
                (Some(cap), _) if cap >= 1_000_000 => {
                    let within = s.estimate_within_10_percent_after_secs;
                    add(
                        &format!("{}: estimate within 10% of the cap in 2 s", step.label),
                        within.map_or("never".into(), |w| format!("after {w:.0} s")),
                        within.is_some_and(|w| w.round() <= 2.0),
                    );
                    add(
                        &format!("{}: a layer that fits within 4 s", step.label),
                        s.settled_after_secs.map_or("no change".into(), |w| format!("settled after {w:.0} s")),
                        s.settled_after_secs.is_some_and(|w| w.round() <= 4.0) && s.top_share < 1.0,
                    );
                    add(
                        &format!("{}: at most one freeze, under 1 s frozen", step.label),
                        format!("{} freezes, {:.2} s", s.freezes, s.frozen_secs),
                        s.freezes <= 1 && s.frozen_secs < 1.0,
                    );
                }
                (Some(_), _) => add(
                    &format!("{}: the lowest layer, not paused", step.label),
                    format!("paused {} s, mean height {:.0}", s.paused_secs, s.mean_height),
                    s.paused_secs == 0 && s.mean_height > 0.0,
                ),
                (None, loss) if loss > 0 => {
                    let step_secs = step.secs as f64;
                    add(
                        &format!("{}: frozen under 1% of the time", step.label),
                        format!("{:.2} s of {step_secs:.0} s", s.frozen_secs),
                        s.frozen_secs < step_secs / 100.0,
                    );
                    add(
                        &format!("{}: top layer at least 90% of the time", step.label),
                        format!("{:.0}%", s.top_share * 100.0),
                        s.top_share >= 0.9,
                    );
                }
                (None, _) if previous_capped => {
                    let back = self.back_to_top_after(i);
                    add(
                        &format!("{}: back to the top layer within 10 s", step.label),
                        back.map_or("never".into(), |b| format!("after {b:.0} s")),
                        back.is_some_and(|b| b.round() <= 10.0),
                    );
                }
                (None, _) if i == 0 => {
                    let first = self.samples.iter().filter(|s| s.step == 0).find(|s| s.at_top).map(|s| s.t);
                    add(
                        "unconstrained: the top layer within 5 s (of the schedule's start, after joining)",
                        first.map_or("never".into(), |t| format!("at {t:.0} s")),
                        first.is_some_and(|t| t.round() <= 5.0),
                    );
                }
                _ => {}
            }
        }
        // The others saw no change while one was impaired.
        let others: Vec<&Sample> = self.samples.iter().filter(|s| s.subscriber > 0 && s.step > 0).collect();
        let below = others.iter().filter(|s| !s.at_top).count();
        add(
            "the other subscribers see no change (the top layer throughout)",
            format!("{below} of {} seconds below the top", others.len()),
            below == 0,
        );
        t
    }

    /// Seconds into step `i` from which the impaired subscriber stays at the top height to the step's end.
    fn back_to_top_after(&self, i: usize) -> Option<f64> {
        let list: Vec<&Sample> = self.samples.iter().filter(|s| s.step == i && s.subscriber == 0).collect();
        let start = self.step_start(i);
        let last_below = list.iter().rposition(|s| !s.at_top);
        match last_below {
            None => list.first().map(|s| s.t - start),
            Some(k) => list.get(k + 1).map(|s| s.t - start),
        }
    }

    fn step_start(&self, i: usize) -> f64 {
        self.steps[..i].iter().map(|s| s.secs as f64).sum()
    }

    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<18} {:>3} {:>7} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>7} {:>9}",
            "step",
            "sub",
            "height",
            "top%",
            "lowered",
            "settled",
            "switches",
            "freezes",
            "frozen",
            "paused",
            "loss%",
            "kbit/s",
            "est/cap"
        );
        let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} s"));
        for s in &self.summaries {
            let _ = writeln!(
                out,
                "{:<18} {:>3} {:>7.0} {:>6.0} {:>8} {:>8} {:>8} {:>7} {:>6.2}s {:>6}s {:>6.1} {:>7.0} {:>9}",
                s.label,
                if s.impaired { format!("{}*", s.subscriber) } else { s.subscriber.to_string() },
                s.mean_height,
                s.top_share * 100.0,
                opt(s.lowered_after_secs),
                opt(s.settled_after_secs),
                s.layer_changes,
                s.freezes,
                s.frozen_secs,
                s.paused_secs,
                s.loss_percent,
                s.kbps,
                s.estimate_over_cap.map_or("-".into(), |r| format!("{r:.2}")),
            );
        }
        let _ = writeln!(out, "\n(* impaired; times are seconds into the step)\n\ntargets:");
        for t in &self.targets {
            let _ = writeln!(out, "  [{}] {}: {}", if t.met { "met" } else { "NOT met" }, t.what, t.measured);
        }
        let _ = writeln!(out, "\nserver: {}", Value::Object(self.server.clone()));
        out
    }

    /// The plot: every subscriber's frame height over time, and the impaired one's estimate, received rate and
    /// cap.
    pub fn svg(&self) -> String {
        let names: Vec<String> = (0..self.subscribers)
            .map(|i| if i == 0 { "subscriber 0 (impaired)".to_string() } else { format!("subscriber {i}") })
            .collect();
        let heights: Vec<Series> = (0..self.subscribers)
            .map(|i| Series {
                name: names[i].clone(),
                points: self.samples.iter().filter(|s| s.subscriber == i).map(|s| (s.t, s.height as f64)).collect(),
                dashed: i > 0,
            })
            .collect();
        let impaired: Vec<&Sample> = self.samples.iter().filter(|s| s.subscriber == 0).collect();
        let mut rates = vec![
            Series {
                name: "server's estimate".into(),
                points: impaired.iter().filter_map(|s| Some((s.t, s.estimate_bps? as f64 / 1000.0))).collect(),
                dashed: false,
            },
            Series {
                name: "received".into(),
                points: impaired
                    .windows(2)
                    .map(|w| (w[1].t, w[1].bytes_received.saturating_sub(w[0].bytes_received) as f64 * 8.0 / 1000.0))
                    .collect(),
                dashed: false,
            },
        ];
        let mut cap = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            if let Some(bps) = step.cap_bps {
                let start = self.step_start(i);
                cap.push((start, bps as f64 / 1000.0));
                cap.push((start + step.secs as f64, bps as f64 / 1000.0));
            }
        }
        if !cap.is_empty() {
            rates.push(Series { name: "cap".into(), points: cap, dashed: true });
        }
        let title = format!("sluice bench qoe --schedule {:?}: one subscriber impaired", self.schedule).to_lowercase();
        chart::time_series(
            &title,
            "seconds",
            &[("frame height received (pixels)", heights), ("impaired subscriber: kbit/s", rates)],
        )
    }
}

/// One subscriber's figures over one step that started at `start` (seconds into the schedule); `before` is its
/// last sample of the previous step, the baseline of the cumulative counters.
fn summarize(
    index: usize,
    step: &Step,
    subscriber: usize,
    start: f64,
    before: Option<&Sample>,
    list: &[&Sample],
) -> Option<StepSummary> {
    let first: &Sample = before.or(list.first().copied())?;
    let last: &Sample = list.last()?;
    let n = list.len() as f64;
    let mut changes = 0;
    let mut settled = None;
    let known: Vec<&&Sample> = list.iter().filter(|s| s.layer_index.is_some()).collect();
    for w in known.windows(2) {
        if w[0].layer_index != w[1].layer_index {
            changes += 1;
            settled = Some(w[1].t - start);
        }
    }
    let within = step.cap_bps.and_then(|cap| {
        let ok = |s: &&&Sample| s.estimate_bps.is_some_and(|e| (e as f64 - cap as f64).abs() <= cap as f64 * 0.1);
        let last_bad = list.iter().rposition(|s| !ok(&s));
        match last_bad {
            None => list.first().map(|s| s.t - start),
            Some(k) => list.get(k + 1).map(|s| s.t - start),
        }
    });
    let estimate_over_cap = step.cap_bps.and_then(|cap| {
        let mut ratios: Vec<f64> =
            list[list.len() / 2..].iter().filter_map(|s| Some(s.estimate_bps? as f64 / cap as f64)).collect();
        ratios.sort_by(f64::total_cmp);
        ratios.get(ratios.len() / 2).copied()
    });
    let lost = (last.packets_lost - first.packets_lost).max(0) as f64;
    let received = last.packets_received.saturating_sub(first.packets_received) as f64;
    let concealed = last.concealed_samples.saturating_sub(first.concealed_samples) as f64;
    let audio = last.audio_samples.saturating_sub(first.audio_samples) as f64;
    Some(StepSummary {
        step: index,
        label: step.label.clone(),
        subscriber,
        impaired: subscriber == 0,
        mean_height: list.iter().map(|s| s.height as f64).sum::<f64>() / n,
        top_share: list.iter().filter(|s| s.at_top).count() as f64 / n,
        lowered_after_secs: list.iter().find(|s| !s.at_top).map(|s| s.t - start),
        settled_after_secs: settled,
        layer_changes: changes,
        freezes: last.freezes.saturating_sub(first.freezes),
        frozen_secs: (last.freeze_secs - first.freeze_secs).max(0.0),
        paused_secs: list.iter().filter(|s| s.paused).count() as u64,
        loss_percent: if lost + received > 0.0 { 100.0 * lost / (lost + received) } else { 0.0 },
        concealed_percent: if audio > 0.0 { 100.0 * concealed / audio } else { 0.0 },
        kbps: last.bytes_received.saturating_sub(first.bytes_received) as f64 * 8.0
            / 1000.0
            / (last.t - first.t).max(1.0),
        estimate_over_cap,
        estimate_within_10_percent_after_secs: within,
    })
}
