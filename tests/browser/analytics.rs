//! Analytics from a real meeting (`docs/analytics.md`): two Chromium pages leave join, ICE connected, first
//! frame, quality and left events with plausible figures; the meeting's analytics API returns them; the dashboard
//! renders its plots in Chromium (screenshot saved beside the test's output). The browsers run in a namespace
//! that reaches no database server, so this runs on SQLite; `controlplane/tests/analytics.rs` writes the same
//! events through PostgreSQL.

use super::*;

/// Two people for long enough to send stats twice; returns the meeting id and the host token.
async fn a_meeting(base: &str, driver: &str) -> (String, String) {
    let (id, host_token) = create_meeting(base, "Hana").await;
    let hana = Browser::launch(driver).await;
    hana.goto(&format!("{base}/m/{id}?name=Hana#token={host_token}")).await;
    let ann = Browser::launch(driver).await;
    ann.goto(&format!("{base}/m/{id}?name=Ann")).await;
    wait_decoding(&hana, "Hana", 1, 1).await;
    wait_decoding(&ann, "Ann", 1, 1).await;
    // The client summarises every 10 s: two summaries each, the first with its time to first frame.
    tokio::time::sleep(Duration::from_secs(22)).await;
    for b in [hana, ann] {
        b.eval("window.sluiceApp.client.leave(); return true").await;
        b.close().await;
    }
    (id, host_token)
}

async fn get(base: &str, path: &str, token: &str) -> Value {
    let r = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// What the meeting's report must show after `a_meeting`.
async fn check_report(base: &str, id: &str, token: &str) {
    let deadline = Instant::now() + WAIT;
    let report = loop {
        let r = get(base, &format!("/meetings/{id}/analytics"), token).await;
        let left = r["participants"].as_array().unwrap().iter().filter(|p| p["left_at"].is_string()).count();
        if left == 2 {
            break r;
        }
        assert!(Instant::now() < deadline, "both should have left: {r}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("analytics summary: {}", report["summary"]);
    let s = &report["summary"];
    assert_eq!((s["joins_succeeded"].clone(), s["peak_participants"].clone()), (json!(2), json!(2)));
    let ttff = s["ttff_ms_p50"].as_f64().expect("a time to first frame");
    assert!(ttff > 0.0 && ttff < 10_000.0, "TTFF {ttff} ms");
    assert_eq!(s["loss_in"].as_f64(), Some(0.0), "no loss on loopback");
    assert_eq!(s["relay_share"].as_f64(), Some(0.0), "host candidates on loopback");
    assert!(s["bytes_in"].as_u64().unwrap() > 0 && s["cpu_s"].as_f64().unwrap() >= 0.0);
    for p in report["participants"].as_array().unwrap() {
        let kinds: Vec<&str> = p["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        for kind in ["join_succeeded", "ice_connected", "first_frame", "candidate", "left"] {
            assert!(kinds.contains(&kind), "{} lacks {kind}: {kinds:?}", p["name"]);
        }
        let samples = p["samples"].as_array().unwrap();
        assert!(!samples.is_empty() && samples.len() <= 4, "{} samples for 22 s", samples.len());
        assert!(samples.iter().any(|q| q["bitrate_in_kbps"].as_f64().unwrap_or(0.0) > 0.0), "bitrate > 0: {samples:?}");
    }
}

/// The dashboard in Chromium: the deployment's plots and the meeting's, drawn; a screenshot of each saved.
async fn check_dashboard(base: &str, driver: &str, id: &str, operator: &str) {
    let page = Browser::launch(driver).await;
    page.goto(&format!("{base}/dashboard#token={operator}")).await;
    wait_true(
        &page,
        "the deployment's plots are drawn",
        "return document.querySelectorAll('svg.chart path.series, svg.chart rect.bar').length > 0",
    )
    .await;
    wait_true(&page, "the meeting is listed", &format!("return !!document.querySelector('a[href*=\"{id}\"]')")).await;
    save_screenshot(&page, "dashboard").await;
    page.goto(&format!("{base}/dashboard/m/{id}")).await;
    wait_true(
        &page,
        "the meeting's plots are drawn",
        "return document.querySelectorAll('svg.chart path.series').length >= 2",
    )
    .await;
    save_screenshot(&page, "dashboard-meeting").await;
    assert_eq!(page.eval("return document.getElementById('dashboard-error').textContent.trim()").await, "");
    page.close().await;
}

pub(super) async fn save_screenshot(page: &Browser, name: &str) {
    let reply: Value =
        page.http.get(format!("{}/screenshot", page.session)).send().await.unwrap().json().await.unwrap();
    let png = decode_base64(reply["value"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).map(value).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, v)| n | u32::from(*v) << (18 - 6 * i));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn a_meeting_leaves_its_analytics_on_sqlite_and_the_dashboard_draws_them() {
    in_fresh_netns("analytics::a_meeting_leaves_its_analytics_on_sqlite_and_the_dashboard_draws_them", async || {
        let dir = tempfile::tempdir().unwrap();
        let (_server, base) = start_server_with(dir.path(), &[]);
        let (_chromedriver, driver) = start_chromedriver().await;
        let (id, host_token) = a_meeting(&base, &driver).await;
        check_report(&base, &id, &host_token).await;
        let operator = mint_operator(dir.path());
        check_dashboard(&base, &driver, &id, &operator).await;
    });
}

/// `sluice token --operator` against the server's data directory (its token secret).
fn mint_operator(data_dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["--data-dir", data_dir.to_str().unwrap(), "token", "--operator"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(out.status.success(), "sluice token --operator: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
