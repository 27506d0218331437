//! `sluice bench meeting` end to end, bounded: a few synthetic participants join a server the bench starts, over
//! loopback, through signaling, ICE, DTLS-SRTP; the report must show every join and the media delivered. The
//! figures themselves are for `docs/benchmarks.md`, not asserted here.

use std::process::Command;

use serde_json::Value;

/// Runs `sluice bench meeting` with `args` and `--json`, in a temporary directory handed to `extra` for more
/// arguments; returns its standard output, the JSON it wrote, and the directory (kept alive for any files).
fn bench_meeting(
    args: &[&str],
    extra: impl FnOnce(&mut Command, &std::path::Path),
) -> (String, Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["bench", "meeting"]).args(args).arg("--json").arg(&json).env_remove("SLUICE_CONFIG");
    extra(&mut cmd, dir.path());
    let output = cmd.output().expect("run sluice bench meeting");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (stdout, written, dir)
}

/// Sent, expected and received copies of one run.
fn deliveries(report: &Value) -> (u64, u64, u64) {
    (report["sent"].as_u64().unwrap(), report["expected"].as_u64().unwrap(), report["received"].as_u64().unwrap())
}

#[test]
fn synthetic_participants_join_publish_and_receive_through_the_real_protocol() {
    let (stdout, written, _dir) =
        bench_meeting(&["--participants", "4", "--publishers", "2", "--seconds", "2", "--pps", "50"], |_, _| {});
    assert!(stdout.contains("one-way delay"), "{stdout}");
    assert!(written["machine"].as_str().is_some_and(|m| m.contains("CPUs")), "{written}");
    let report = &written["runs"][0];
    assert_eq!(report["joined"], 4, "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let (sent, expected, received) = deliveries(report);
    assert!(sent > 0 && expected == sent * 3, "each publisher's packets go to the three others: {report}");
    assert!(received * 100 >= expected * 95, "loopback delivers nearly everything: {report}");
    assert!(report["server_cpu_ns_per_forwarded"].as_f64().is_some_and(|ns| ns > 0.0), "{report}");
    let (total, workers) =
        (report["server_cpu_ns_per_forwarded"].as_f64(), report["server_worker_cpu_ns_per_forwarded"].as_f64());
    assert!(workers.is_some_and(|w| w > 0.0 && Some(w) <= total), "the workers' share of the server's CPU: {report}");
    assert!(report["generator_cpu_ns_per_packet"].as_f64().is_some_and(|ns| ns > 0.0), "{report}");
    assert!(stdout.contains("generator CPU per packet"), "{stdout}");
    assert!(report["delay_us_p50"].as_u64().unwrap() > 0);
}

#[test]
fn simulcast_publishers_send_three_layers_and_subscribers_get_the_top_one() {
    let (_, written, _dir) =
        bench_meeting(&["--participants", "3", "--publishers", "1", "--seconds", "2", "--simulcast"], |_, _| {});
    let report = &written["runs"][0];
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let (sent, expected, received) = deliveries(report);
    // Per second: 30 frames of 1, 2 and 6 packets (150, 500, 1500 kbit/s) plus the first keyframes: the two
    // subscribers each expect the top layer's 180 of the 270.
    let seconds = 2.0;
    assert!(sent as f64 > 250.0 * seconds && (sent as f64) < 300.0 * seconds, "all three layers sent: {report}");
    assert!(expected * 100 > sent * 2 * 60 && expected * 100 < sent * 2 * 72, "two copies of the top layer: {report}");
    assert!(received * 100 >= expected * 95, "the top layer arrives: {report}");
    let refused = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "meeting", "--simulcast", "--compare", "--seconds", "1"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Sluice only"), "{refused:?}");
}

#[test]
fn a_ramped_many_meetings_scenario_keeps_media_inside_each_meeting() {
    let (_, written, _dir) = bench_meeting(
        &[
            "--scenario",
            "many-small",
            "--meetings",
            "2",
            "--participants",
            "3",
            "--ramp-secs",
            "1",
            "--seconds",
            "2",
            "--pps",
            "50",
        ],
        // The generator's other receive path (the rest of these tests use its io_uring one).
        |cmd, _| {
            cmd.env("BENCH_GENERATOR_IO", "mmsg");
        },
    );
    let report = &written["runs"][0];
    assert_eq!((report["meetings"].as_u64(), report["joined"].as_u64()), (Some(2), Some(6)), "{report}");
    assert_eq!(report["join_success_percent"], 100.0, "{report}");
    assert!(report["joins_per_second"].as_f64().is_some_and(|r| r > 0.0), "{report}");
    let (sent, expected, received) = deliveries(report);
    // Everyone publishes; each packet goes to the two others of its own meeting only.
    assert!(sent > 0 && expected == sent * 2, "{report}");
    assert!(received * 100 >= expected * 95, "{report}");
}

#[test]
fn compare_runs_sluice_the_bare_udp_floor_and_janus_alternately() {
    // In a namespace of its own: Janus gathers candidates on every non-loopback interface, and there the only one
    // is a dummy interface of the namespace.
    let test = "compare_runs_sluice_the_bare_udp_floor_and_janus_alternately";
    sluice_testkit::in_fresh_netns_with(test, Some("10.99.0.1/24"), async || {
        let (stdout, report, dir) = bench_meeting(
            &[
                "--participants",
                "3",
                "--publishers",
                "2",
                "--seconds",
                "2",
                "--pps",
                "50",
                "--compare",
                "--rounds",
                "1",
            ],
            |cmd, dir| {
                cmd.arg("--svg").arg(dir.join("chart.svg"));
            },
        );
        assert!(stdout.contains("sluice / bare-udp, per round"), "{stdout}");
        assert!(stdout.contains("janus / sluice, per round"), "{stdout}");
        let runs = report["runs"].as_array().unwrap();
        let targets: Vec<&str> = runs.iter().map(|r| r["target"].as_str().unwrap()).collect();
        assert_eq!(targets, ["sluice", "bare-udp", "janus"], "{report}");
        for run in runs {
            assert_eq!(run["errors"], serde_json::json!([]), "{run}");
            let (sent, expected, received) = deliveries(run);
            assert!(sent > 0 && expected == sent * 2 && received * 100 >= expected * 95, "{run}");
            assert!(run["server_cpu_ns_per_forwarded"].as_f64().is_some_and(|ns| ns > 0.0), "{run}");
        }
        let chart = std::fs::read_to_string(dir.path().join("chart.svg")).unwrap();
        assert!(chart.starts_with("<svg") && chart.contains(">sluice p99<") && chart.contains(">janus<"), "{chart}");
    });
}

#[test]
fn synthetic_participants_stay_past_the_consent_and_silence_timeouts() {
    // 12 s of media: past the server's ICE consent timeout (10 s) and signaling silence limit (15 s from the
    // first join), which the participants must keep alive as browsers do.
    let (_, written, _dir) = bench_meeting(
        &["--participants", "2", "--publishers", "1", "--seconds", "12", "--pps", "20", "--ramp-secs", "2"],
        |_, _| {},
    );
    let report = &written["runs"][0];
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let (_, expected, received) = deliveries(report);
    assert!(expected >= 200 && received * 100 >= expected * 95, "{report}");
}
