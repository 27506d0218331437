//! What a worker counts. Counted in plain integers by the worker itself and published as a whole snapshot every
//! few milliseconds (never per packet), which the control plane renders for `/metrics`.

use std::fmt::Write;
use std::time::Duration;

use crate::core::{Counters, DropReason};

/// Upper bounds (microseconds) of the time-in-SFU histogram's buckets; the last bucket is everything above.
pub const LATENCY_BOUNDS_US: [u64; 14] =
    [2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000];

/// Time from a packet's receipt to the send of the batch that carried it out, sampled once per batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `buckets[i]` counts samples of at most `LATENCY_BOUNDS_US[i]`; the last counts the rest.
    pub buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub count: u64,
    pub sum_us: u64,
}

impl LatencyHistogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros() as u64;
        let at = LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[at] += 1;
        self.count += 1;
        self.sum_us += us;
    }

    /// The bucket bound below which `q` (0..1) of the samples lie: an upper estimate of the quantile.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let want = (q * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(LATENCY_BOUNDS_US.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }

    /// Samples recorded since `earlier`.
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut d = LatencyHistogram {
            count: self.count - earlier.count,
            sum_us: self.sum_us - earlier.sum_us,
            ..LatencyHistogram::default()
        };
        for (i, b) in d.buckets.iter_mut().enumerate() {
            *b = self.buckets[i] - earlier.buckets[i];
        }
        d
    }
}

/// The I/O loop's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub loop_turns: u64,
    /// Receive calls (or completions) that returned datagrams, and the datagrams they returned.
    pub recv_batches: u64,
    pub datagrams_received: u64,
    /// Received datagrams that arrived coalesced by GRO (counted in `datagrams_received` too).
    pub gro_segments: u64,
    /// Send calls (`sendmmsg`) or io_uring submissions carrying sends, and the datagrams sent.
    pub send_batches: u64,
    pub datagrams_sent: u64,
    /// Sends of several datagrams to one destination in one GSO buffer, and the datagrams they carried.
    pub gso_sends: u64,
    pub gso_datagrams: u64,
    /// io_uring `enter` calls (0 on the mmsg path).
    pub uring_submits: u64,
    /// Datagrams the socket refused (buffer full, or an error for the destination); counted, not retried.
    pub send_failed: u64,
    /// Relayed packets this worker could not hand to a worker because its ring was full.
    pub relay_queue_full: u64,
    pub relays_sent: u64,
    pub relays_received: u64,
    /// Single-port mode: first ICE checks handed to the worker owning their ufrag, flows this worker took over
    /// (a connected socket each), and flows it could not open a socket for.
    pub flows_routed: u64,
    pub flows_adopted: u64,
    pub flows_failed: u64,
    /// Slots in use, per outbound ring (one per other worker), at the last publish.
    pub ring_occupancy: Vec<usize>,
}

/// Everything one worker publishes.
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    pub worker: usize,
    pub alive: bool,
    pub participants: usize,
    pub core: Counters,
    pub io: IoCounters,
    pub time_in_sfu: LatencyHistogram,
    /// CPU time the worker's thread has used (user + system), from its own rusage.
    pub cpu_time: Duration,
}

impl WorkerSnapshot {
    /// Drops by reason, the core's and the runtime's together.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        let runtime = if reason == DropReason::QueueFull { self.io.relay_queue_full } else { 0 };
        self.core.dropped(reason) + runtime
    }
}

/// CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the buffer we own.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A counter's name (after `sluice_dataplane_`), help, and value.
type Counter = (&'static str, &'static str, fn(&WorkerSnapshot) -> u64);

/// One metric with a value per worker: its HELP and TYPE lines, then a line per worker.
fn per_worker(
    out: &mut String,
    workers: &[WorkerSnapshot],
    (name, kind, help): (&str, &str, &str),
    value: impl Fn(&WorkerSnapshot) -> String,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for w in workers {
        let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", w.worker, value(w));
    }
}

/// Appends the Prometheus text of every worker.
pub(super) fn render(workers: &[WorkerSnapshot], out: &mut String) {
    let counters: [Counter; 30] = [
        ("datagrams_received_total", "UDP datagrams received.", |w| w.io.datagrams_received),
        ("bytes_received_total", "UDP payload bytes received.", |w| w.core.bytes_in),
        ("datagrams_sent_total", "UDP datagrams sent.", |w| w.io.datagrams_sent),
        ("bytes_sent_total", "UDP payload bytes sent.", |w| w.core.bytes_out),
        ("rtp_forwarded_total", "RTP packets sent to subscribers.", |w| w.core.rtp_out),
        ("loop_turns_total", "Turns of the worker's I/O loop.", |w| w.io.loop_turns),
        ("recv_batches_total", "Receive calls that returned datagrams.", |w| w.io.recv_batches),
        ("send_batches_total", "Send calls or submissions.", |w| w.io.send_batches),
        ("gso_sends_total", "GSO sends of several datagrams.", |w| w.io.gso_sends),
        ("gso_datagrams_total", "Datagrams sent in GSO sends.", |w| w.io.gso_datagrams),
        ("gro_segments_total", "Datagrams received coalesced by GRO.", |w| w.io.gro_segments),
        ("uring_submits_total", "io_uring enter calls.", |w| w.io.uring_submits),
        ("send_failed_total", "Datagrams the socket refused.", |w| w.io.send_failed),
        ("relays_sent_total", "Packets relayed to other workers.", |w| w.io.relays_sent),
        ("flows_routed_total", "Single-port mode: first ICE checks routed to the worker owning the ufrag.", |w| {
            w.io.flows_routed
        }),
        ("flows_adopted_total", "Single-port mode: flows taken over with a connected socket.", |w| w.io.flows_adopted),
        ("relays_received_total", "Packets relayed from other workers.", |w| w.io.relays_received),
        ("layer_switches_total", "Simulcast layer switches made, at keyframes.", |w| w.core.layer_switches),
        ("bandwidth_downgrades_total", "Layer allocations lowered for a subscriber's bandwidth.", |w| {
            w.core.bandwidth_downgrades
        }),
        ("bandwidth_upgrades_total", "Layer allocations raised as a subscriber's bandwidth allowed.", |w| {
            w.core.bandwidth_upgrades
        }),
        ("bandwidth_pauses_total", "Video subscriptions paused: not even the lowest layer fits.", |w| {
            w.core.bandwidth_pauses
        }),
        ("paused_packets_total", "Packets not forwarded to subscriptions paused for bandwidth.", |w| {
            w.core.fanout_paused
        }),
        (
            "temporal_shed_packets_total",
            "Upper temporal layer packets not forwarded while a downswitch waits for its keyframe.",
            |w| w.core.fanout_temporal_shed,
        ),
        ("probes_total", "Bandwidth probes started towards subscribers.", |w| w.core.probes),
        ("probes_succeeded_total", "Probes that found the room they looked for.", |w| w.core.probes_succeeded),
        ("probes_failed_total", "Probes that did not (the next one backs off).", |w| w.core.probes_failed),
        ("padding_sent_total", "Padding packets sent for probes.", |w| w.core.padding_sent),
        (
            "rembs_received_total",
            "REMBs from subscribers (their estimate when they send no transport-wide feedback).",
            |w| w.core.rembs_in,
        ),
        ("paced_packets_total", "Video packets that waited in a subscriber's pacer.", |w| w.core.paced),
        ("pacer_wait_microseconds_total", "Time paced packets waited, summed (divide by paced_packets_total).", |w| {
            w.core.pacer_wait_us
        }),
    ];
    for (name, help, value) in counters {
        let name = format!("sluice_dataplane_{name}");
        per_worker(out, workers, (&name, "counter", help), |w| value(w).to_string());
    }
    let _ = writeln!(
        out,
        "# HELP sluice_dataplane_drops_total Packets dropped, by reason.\n# TYPE sluice_dataplane_drops_total counter"
    );
    for w in workers {
        for reason in DropReason::ALL {
            let n = w.dropped(reason);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "sluice_dataplane_drops_total{{worker=\"{}\",reason=\"{}\"}} {n}",
                    w.worker,
                    reason.label()
                );
            }
        }
    }
    let up = ("sluice_dataplane_worker_up", "gauge", "1 while the worker runs.");
    per_worker(out, workers, up, |w| u8::from(w.alive).to_string());
    let participants = ("sluice_dataplane_participants", "gauge", "Participants on the worker.");
    per_worker(out, workers, participants, |w| w.participants.to_string());
    let cpu = ("sluice_dataplane_cpu_seconds_total", "counter", "CPU time of the worker's thread.");
    per_worker(out, workers, cpu, |w| format!("{:.6}", w.cpu_time.as_secs_f64()));
    let _ = writeln!(
        out,
        "# HELP sluice_dataplane_relay_ring_occupancy Slots in use in the worker's ring to another worker.\n# TYPE sluice_dataplane_relay_ring_occupancy gauge"
    );
    for w in workers {
        for (to, n) in w.io.ring_occupancy.iter().enumerate() {
            if to != w.worker {
                let _ =
                    writeln!(out, "sluice_dataplane_relay_ring_occupancy{{worker=\"{}\",to=\"{to}\"}} {n}", w.worker);
            }
        }
    }
    let name = "sluice_dataplane_time_in_sfu_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} From a packet's receipt to the send of its batch (sampled per batch).\n# TYPE {name} histogram"
    );
    for w in workers {
        let h = &w.time_in_sfu;
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += h.buckets[i];
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{worker=\"{}\",le=\"{le}\"}} {cumulative}", w.worker);
        }
        let _ = writeln!(out, "{name}_bucket{{worker=\"{}\",le=\"+Inf\"}} {}", w.worker, h.count);
        let _ = writeln!(out, "{name}_sum{{worker=\"{}\"}} {}", w.worker, h.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{worker=\"{}\"}} {}", w.worker, h.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let mut h = LatencyHistogram::default();
        for us in [5, 15, 15, 40, 300] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count, 5);
        assert_eq!(h.quantile_us(0.2), Some(5));
        assert_eq!(h.quantile_us(0.5), Some(20));
        assert_eq!(h.quantile_us(0.99), Some(500));
        assert_eq!(h.since(&h.clone()).count, 0);
    }
}
