//! Headless Chromium driven over WebDriver (chromedriver's HTTP API), for benchmarks that need real browsers
//! (`qoe.rs`): start chromedriver (in a network namespace if asked), open a session with the given switches,
//! navigate, run scripts. Every request has a timeout; every child is killed when dropped.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Headless Chromium with nothing in the background and nothing fetched from the network (the browser tests use
/// the same).
pub const HEADLESS_SWITCHES: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
];

/// How long chromedriver may take to answer, and a script to return.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process and its process group, killed when dropped (chromedriver and the browsers it started).
#[derive(Debug)]
pub struct Group(Child);

impl Group {
    pub fn spawn(mut cmd: Command) -> anyhow::Result<Group> {
        let child = cmd.process_group(0).spawn().with_context(|| format!("run {:?}", cmd.get_program()))?;
        Ok(Group(child))
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver listening on `ip:port`, inside network namespace `netns` if given, accepting connections from
/// `allowed` (besides loopback).
#[derive(Debug)]
pub struct Chromedriver {
    pub url: String,
    _process: Group,
}

impl Chromedriver {
    pub async fn start(netns: Option<&str>, ip: &str, port: u16, allowed: &[&str]) -> anyhow::Result<Chromedriver> {
        let mut cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, "chromedriver"]);
                cmd
            }
            None => Command::new("chromedriver"),
        };
        cmd.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
        if !allowed.is_empty() {
            cmd.arg(format!("--allowed-ips={}", allowed.join(",")));
            cmd.arg("--allowed-origins=*");
        }
        let process = Group::spawn(cmd).context("chromedriver (package chromium-driver)")?;
        let url = format!("http://{ip}:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while http.get(format!("{url}/status")).send().await.is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver at {url} did not answer within {REQUEST_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Chromedriver { url, _process: process })
    }
}

/// One headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A session of `/usr/bin/chromium` with the usual headless switches and `extra`.
    pub async fn launch(driver: &Chromedriver, extra: &[String]) -> anyhow::Result<Browser> {
        let profile = tempfile::tempdir()?;
        let mut args: Vec<String> = HEADLESS_SWITCHES.iter().map(|a| a.to_string()).collect();
        if !extra.iter().any(|a| a.starts_with("--window-size=")) {
            args.push("--window-size=1280,800".into());
        }
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend_from_slice(extra);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        let reply: Value = http.post(format!("{}/session", driver.url)).json(&caps).send().await?.json().await?;
        let Some(id) = reply["value"]["sessionId"].as_str() else { bail!("no WebDriver session: {reply}") };
        let session = format!("{}/session/{id}", driver.url);
        Ok(Browser { http, session, _profile: profile })
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        let r = self.http.post(format!("{}/url", self.session)).json(&json!({"url": url})).send().await?;
        if !r.status().is_success() {
            bail!("navigate to {url}: {}", r.text().await?);
        }
        Ok(())
    }

    /// Runs `script` as a function body (it may `return` a promise, which WebDriver awaits); returns its value.
    pub async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        let body = json!({"script": script, "args": []});
        let reply: Value =
            self.http.post(format!("{}/execute/sync", self.session)).json(&body).send().await?.json().await?;
        if let Some(error) = reply["value"].get("error") {
            bail!("script failed: {error}: {}", reply["value"]["message"]);
        }
        Ok(reply["value"].clone())
    }

    /// Ends the session (the browser exits).
    pub async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
