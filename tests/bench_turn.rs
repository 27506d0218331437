//! `sluice bench turn` end to end, bounded: one small round against `sluice turn` (with its defaults, on its epoll path, and without hairpinning) and against coturn's
//! `turnserver`, both started by the bench on loopback and loaded by `turnutils_uclient`. The report must show both
//! servers relaying every message, with CPU and round-trip figures; the figures themselves are for
//! `docs/benchmarks.md`, not asserted here.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_turn_bench_runs_both_servers_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "bench",
            "turn",
            "--processes",
            "1",
            "--clients",
            "4",
            "--messages",
            "40",
            "--rounds",
            "1",
            "--variants",
            "mmsg,no-hairpin",
        ])
        .arg("--json")
        .arg(&json)
        .env_remove("SLUICE_CONFIG")
        .output()
        .expect("run sluice bench turn");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("sluice/coturn per round"), "{stdout}");
    assert!(stdout.contains("sluice-mmsg/coturn per round"), "{stdout}");
    assert!(stdout.contains("sluice-no-hairpin/coturn per round"), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    for target in ["sluice", "sluice-mmsg", "sluice-no-hairpin", "coturn"] {
        let run = runs.iter().find(|r| r["target"] == target).unwrap_or_else(|| panic!("no {target} run: {report}"));
        assert_eq!(run["messages_sent"], 4 * 40, "{run}");
        assert_eq!(run["messages_received"], run["messages_sent"], "{run}");
        assert!(run["server_cpu_seconds"].as_f64().unwrap() > 0.0, "{run}");
        assert!(run["rtt_us_p50"].as_u64().unwrap() > 0, "the probe measured round trips: {run}");
    }
    assert!(report["machine"].as_str().is_some_and(|m| m.contains("CPUs")), "{report}");
}
