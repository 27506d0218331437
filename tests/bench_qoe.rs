//! `sluice bench qoe` end to end, shortened for CI (issue 24): a publisher and two Chromium subscribers in their
//! own network namespaces; the first subscriber's downlink is capped at 1 Mbit/s for 20 s, then lifted. From the
//! harness's JSON: the capped subscriber's frame height drops under the cap and comes back after it, the server
//! said why, and the other subscriber's does not change. The harness's own figures go to `docs/benchmarks.md`.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_capped_subscriber_drops_a_layer_and_recovers_and_the_other_sees_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (json, svg) = (dir.path().join("qoe.json"), dir.path().join("qoe.svg"));
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "qoe", "--schedule", "short", "--subscribers", "2", "--json"])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .env_remove("SLUICE_CONFIG")
        .output()
        .expect("run sluice bench qoe");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    println!("{stdout}");
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("targets:"), "the table and targets are printed");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let samples = report["samples"].as_array().unwrap();
    // Layers are told apart by rank among the heights the publisher sends that second (its encoder may lower
    // them all for CPU on this small machine): 0 is the lowest.
    let layers = |subscriber: u64, step: u64| -> Vec<(Option<u64>, bool)> {
        samples
            .iter()
            .filter(|s| s["subscriber"] == subscriber && s["step"] == step)
            .map(|s| (s["layer_index"].as_u64(), s["at_top"].as_bool().unwrap()))
            .collect()
    };
    assert!(layers(0, 0).iter().any(|(_, top)| *top), "the top layer before the cap: {:?}", layers(0, 0));
    // Capped (step 1): a lower layer, told for bandwidth, never paused.
    let capped = layers(0, 1);
    assert!(capped.iter().any(|(l, top)| l.is_some() && !top), "the capped subscriber kept the top layer: {capped:?}");
    let told = samples.iter().any(|s| s["subscriber"] == 0 && s["step"] == 1 && s["layer_reason"] == "bandwidth");
    assert!(told, "the server said the layer changed for bandwidth");
    let limited = samples.iter().any(|s| s["subscriber"] == 0 && s["step"] == 1 && s["limited"] == true);
    assert!(limited, "the server's estimate found the limit");
    assert!(samples.iter().all(|s| s["paused"] == false), "nothing was paused");
    // Lifted (step 2): back at the top by the end.
    let after = layers(0, 2);
    assert!(after.iter().rev().take(3).all(|(_, top)| *top), "not back at the top: {after:?}");
    // The other subscriber: the top layer throughout the cap and after.
    for step in [1, 2] {
        let other = layers(1, step);
        assert!(!other.is_empty() && other.iter().all(|(_, top)| *top), "step {step}: the other got {other:?}");
    }
    assert_eq!(report["publisher_errors"], serde_json::json!([]));
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("polyline"), "a plot was written");
}
