//! What the analytics API and the dashboard show, computed from the events (`docs/analytics.md`): a meeting's
//! summary and per-participant timelines, and the deployment's figures over time.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::store::{AnalyticsEvent, Meeting};

/// The value at quantile `q` (0..=1) of `values` (nearest rank), or `None` when empty.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_f64()
}

fn participant_of(e: &AnalyticsEvent) -> Option<&str> {
    e.metrics.get("participant_id").and_then(Value::as_str)
}

/// Totals over a set of events: the figures both reports share.
#[derive(Debug, Default)]
struct Totals {
    attempted: u64,
    succeeded: u64,
    failed: BTreeMap<String, u64>,
    ttff: Vec<f64>,
    loss: Vec<f64>,
    jitter: Vec<f64>,
    rtt: Vec<f64>,
    candidates: u64,
    relayed: u64,
    cpu_ms: f64,
    ready: u64,
    recording_failed: u64,
}

impl Totals {
    fn add(&mut self, e: &AnalyticsEvent) {
        let m = &e.metrics;
        match e.event_type.as_str() {
            "join_attempted" => self.attempted += 1,
            "join_succeeded" => self.succeeded += 1,
            "join_failed" => {
                let reason = m.get("reason").and_then(Value::as_str).unwrap_or("unknown").to_string();
                *self.failed.entry(reason).or_default() += 1;
            }
            "first_frame" => self.ttff.extend(f(m, &["ttff_ms"])),
            "candidate" => {
                self.candidates += 1;
                if m.get("type").and_then(Value::as_str) == Some("relay") {
                    self.relayed += 1;
                }
            }
            "quality" => {
                self.loss.extend(f(m, &["browser", "loss_in"]));
                self.jitter.extend(f(m, &["browser", "jitter_in_ms"]));
                self.rtt.extend(f(m, &["browser", "rtt_ms"]));
                self.cpu_ms += f(m, &["cpu_ms"]).unwrap_or(0.0);
            }
            "recording_ready" => self.ready += 1,
            "recording_failed" => self.recording_failed += 1,
            _ => {}
        }
    }

    fn json(&mut self) -> Map<String, Value> {
        // `join_attempted` is written once the token is valid: a refused bad token is an attempt too.
        let early: u64 = self.failed.get("bad_token").copied().unwrap_or(0);
        let attempted = self.attempted + early;
        let mut out = Map::new();
        out.insert("joins_attempted".into(), json!(attempted));
        out.insert("joins_succeeded".into(), json!(self.succeeded));
        out.insert("join_success".into(), json!((attempted > 0).then(|| self.succeeded as f64 / attempted as f64)));
        out.insert("joins_failed".into(), json!(self.failed));
        out.insert("ttff_ms_p50".into(), json!(quantile(&mut self.ttff, 0.5)));
        out.insert("ttff_ms_p95".into(), json!(quantile(&mut self.ttff, 0.95)));
        out.insert("loss_in".into(), json!(mean(&self.loss)));
        out.insert("jitter_ms".into(), json!(mean(&self.jitter)));
        out.insert("rtt_ms".into(), json!(mean(&self.rtt)));
        out.insert(
            "relay_share".into(),
            json!((self.candidates > 0).then(|| self.relayed as f64 / self.candidates as f64)),
        );
        out.insert("cpu_s".into(), json!(self.cpu_ms / 1000.0));
        out.insert("recordings".into(), json!({"ready": self.ready, "failed": self.recording_failed}));
        out
    }
}

/// `GET /meetings/{id}/analytics`: the summary and one timeline per participant (connection).
pub fn meeting(meeting: &Meeting, events: &[AnalyticsEvent]) -> Value {
    let mut totals = Totals::default();
    let (mut live, mut peak) = (0i64, 0i64);
    let mut participants: Vec<Map<String, Value>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // Cumulative byte counts per connection: the last sample holds its total.
    let mut bytes: HashMap<String, (f64, f64)> = HashMap::new();
    for e in events {
        totals.add(e);
        match e.event_type.as_str() {
            "join_succeeded" => {
                live += 1;
                peak = peak.max(live);
            }
            "left" => live -= 1,
            _ => {}
        }
        let Some(pid) = participant_of(e) else { continue };
        let at = *index.entry(pid.to_string()).or_insert_with(|| {
            let mut p = Map::new();
            p.insert("participant_id".into(), json!(pid));
            p.insert("user_id".into(), json!(e.user_id));
            p.insert("samples".into(), json!([]));
            p.insert("events".into(), json!([]));
            participants.push(p);
            participants.len() - 1
        });
        let p = &mut participants[at];
        let m = &e.metrics;
        match e.event_type.as_str() {
            "join_succeeded" => {
                p.insert("name".into(), m.get("name").cloned().unwrap_or(Value::Null));
                p.insert("joined_at".into(), json!(e.timestamp));
            }
            "left" => {
                p.insert("left_at".into(), json!(e.timestamp));
                p.insert("left_reason".into(), m.get("reason").cloned().unwrap_or(Value::Null));
            }
            "first_frame" => {
                p.insert("ttff_ms".into(), m.get("ttff_ms").cloned().unwrap_or(Value::Null));
            }
            "candidate" => {
                p.insert("candidate".into(), m.get("type").cloned().unwrap_or(Value::Null));
            }
            _ => {}
        }
        if e.event_type == "quality" {
            let layer = m
                .pointer("/server/layers")
                .and_then(Value::as_array)
                .and_then(|l| l.iter().filter_map(Value::as_u64).max());
            let sample = json!({
                "at": e.timestamp,
                "bitrate_in_kbps": f(m, &["browser", "bitrate_in_kbps"]),
                "bitrate_out_kbps": f(m, &["browser", "bitrate_out_kbps"]),
                "loss_in": f(m, &["browser", "loss_in"]),
                "jitter_ms": f(m, &["browser", "jitter_in_ms"]),
                "rtt_ms": f(m, &["browser", "rtt_ms"]),
                "layer": layer,
                "cpu_ms": f(m, &["cpu_ms"]),
            });
            p.get_mut("samples").and_then(Value::as_array_mut).expect("made above").push(sample);
            bytes.insert(
                pid.to_string(),
                (f(m, &["server", "bytes_in"]).unwrap_or(0.0), f(m, &["server", "bytes_out"]).unwrap_or(0.0)),
            );
        } else {
            let event = json!({"at": e.timestamp, "type": e.event_type, "metrics": e.metrics});
            p.get_mut("events").and_then(Value::as_array_mut).expect("made above").push(event);
        }
    }
    let started = events.first().map(|e| e.timestamp);
    let ended = meeting.ended_at.or_else(|| events.last().map(|e| e.timestamp));
    let mut summary = totals.json();
    summary.insert("started_at".into(), json!(started));
    summary.insert("ended_at".into(), json!(ended));
    let duration = started.zip(ended).map(|(s, e)| (e - s).num_seconds().max(0));
    summary.insert("duration_s".into(), json!(duration));
    summary.insert("peak_participants".into(), json!(peak));
    summary.insert("bytes_in".into(), json!(bytes.values().map(|b| b.0).sum::<f64>() as u64));
    summary.insert("bytes_out".into(), json!(bytes.values().map(|b| b.1).sum::<f64>() as u64));
    json!({
        "meeting_id": meeting.id,
        "title": meeting.settings.title,
        "summary": summary,
        "participants": participants,
    })
}

/// `GET /analytics`: the deployment over `[since, until)` in at most 96 buckets, totals, and the meetings.
pub fn deployment(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    events: &[AnalyticsEvent],
    titles: &HashMap<String, Option<String>>,
) -> Value {
    let span = (until - since).num_seconds().max(1);
    let bucket_s = ((span + 95) / 96).max(60);
    let count = ((span + bucket_s - 1) / bucket_s) as usize;
    let mut buckets: Vec<Totals> = (0..count).map(|_| Totals::default()).collect();
    let mut all = Totals::default();
    let mut meetings: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>, u64)> = BTreeMap::new();
    for e in events {
        let i = ((e.timestamp - since).num_seconds().max(0) / bucket_s) as usize;
        if let Some(b) = buckets.get_mut(i) {
            b.add(e);
        }
        all.add(e);
        let m = meetings.entry(e.meeting_id.clone()).or_insert((e.timestamp, e.timestamp, 0));
        m.0 = m.0.min(e.timestamp);
        m.1 = m.1.max(e.timestamp);
        if e.event_type == "join_succeeded" {
            m.2 += 1;
        }
    }
    let buckets: Vec<Value> = buckets
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            let mut v = b.json();
            v.insert("start".into(), json!(since + chrono::Duration::seconds(i as i64 * bucket_s)));
            Value::Object(v)
        })
        .collect();
    let meetings: Vec<Value> = meetings
        .into_iter()
        .map(|(id, (first, last, joins))| {
            json!({"meeting_id": id, "title": titles.get(&id).cloned().flatten(), "first_event": first,
                   "last_event": last, "participants": joins})
        })
        .collect();
    json!({
        "since": since,
        "until": until,
        "bucket_s": bucket_s,
        "totals": Value::Object(all.json()),
        "buckets": buckets,
        "meetings": meetings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, secs: i64, metrics: Value) -> AnalyticsEvent {
        AnalyticsEvent {
            meeting_id: "m".into(),
            user_id: "u".into(),
            event_type: kind.into(),
            metrics,
            timestamp: DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
        }
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.5), Some(3.0));
        assert_eq!(quantile(&mut v, 0.95), Some(5.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn a_meeting_summary_counts_joins_peaks_and_relay_share() {
        let m = Meeting {
            id: "m".into(),
            host_id: "h".into(),
            created_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            ended_at: None,
            settings: Default::default(),
            recording_enabled: false,
        };
        let events = vec![
            event("join_attempted", 0, json!({})),
            event("join_succeeded", 1, json!({"participant_id": "p1", "name": "Ann"})),
            // A bad token is refused before its attempt is written (it names no user).
            event("join_failed", 2, json!({"reason": "bad_token"})),
            event("join_attempted", 3, json!({})),
            event("join_succeeded", 3, json!({"participant_id": "p2", "name": "Bob"})),
            event("candidate", 4, json!({"participant_id": "p1", "type": "relay", "protocol": "udp"})),
            event("candidate", 4, json!({"participant_id": "p2", "type": "host", "protocol": "udp"})),
            event("first_frame", 5, json!({"participant_id": "p1", "ttff_ms": 700.0})),
            event(
                "quality",
                15,
                json!({"participant_id": "p1", "cpu_ms": 20.0,
                "browser": {"loss_in": 0.01, "bitrate_in_kbps": 900.0}, "server": {"bytes_in": 1000, "bytes_out": 3000, "layers": [0, 2]}}),
            ),
            event("left", 20, json!({"participant_id": "p2", "reason": "left"})),
            event("left", 30, json!({"participant_id": "p1", "reason": "left"})),
        ];
        let r = meeting(&m, &events);
        let s = &r["summary"];
        assert_eq!((s["joins_attempted"].clone(), s["joins_succeeded"].clone()), (json!(3), json!(2)));
        assert_eq!(s["joins_failed"]["bad_token"], 1);
        assert_eq!((s["peak_participants"].clone(), s["relay_share"].clone()), (json!(2), json!(0.5)));
        assert_eq!((s["ttff_ms_p50"].clone(), s["duration_s"].clone()), (json!(700.0), json!(30)));
        assert_eq!((s["bytes_in"].clone(), s["cpu_s"].clone()), (json!(1000), json!(0.02)));
        let p1 = &r["participants"][0];
        assert_eq!((p1["name"].clone(), p1["candidate"].clone()), (json!("Ann"), json!("relay")));
        assert_eq!(p1["samples"][0]["layer"], 2);
        assert_eq!(p1["events"].as_array().unwrap().len(), 4, "joined, candidate, first frame, left");
    }

    #[test]
    fn deployment_buckets_cover_the_range() {
        let since = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let until = since + chrono::Duration::hours(24);
        let events =
            vec![event("join_succeeded", 30, json!({})), event("join_failed", 7200, json!({"reason": "full"}))];
        let r = deployment(since, until, &events, &HashMap::new());
        assert_eq!(r["bucket_s"], 900);
        assert_eq!(r["buckets"].as_array().unwrap().len(), 96);
        assert_eq!(r["buckets"][0]["joins_succeeded"], 1);
        assert_eq!(r["buckets"][8]["joins_failed"]["full"], 1);
        assert_eq!(r["meetings"][0]["participants"], 1);
    }
}
