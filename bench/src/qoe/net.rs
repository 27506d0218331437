//! The harness's network: a hub namespace holding the server on a bridge (10.98.0.1/24), and one namespace per
//! browser joined to the bridge by a veth pair (browser `i` at 10.98.0.(10 + i)). A subscriber's downlink is
//! impaired on the hub's end of its veth: `tc tbf` caps its rate (the only queue on the path, 150 ms deep), and
//! `iptables -m statistic` in its namespace drops a share of what arrives. Nothing leaves these namespaces; each
//! is deleted when its guard drops.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

pub const SERVER_IP: &str = "10.98.0.1";

/// Browser `i`'s address on the bridge.
pub fn browser_ip(i: usize) -> String {
    format!("10.98.0.{}", 10 + i)
}

/// Runs a set-up command; it must succeed.
pub fn sh(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(args[0]).args(&args[1..]).status().with_context(|| format!("run {args:?}"))?;
    if !status.success() {
        bail!("{args:?} failed ({status})");
    }
    Ok(())
}

/// A network namespace, deleted when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn add(name: String) -> anyhow::Result<Netns> {
        sh(&["ip", "netns", "add", &name]).context("the QoE harness needs root and iproute2")?;
        let ns = Netns(name);
        sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Deletes namespaces named `<prefix><pid>` (and its browsers' `<prefix><pid>-b<i>`) whose harness process is
/// gone: a run killed outright leaves them behind.
pub fn remove_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(prefix).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Builds the bridge in the current namespace (the hub) and `browsers` namespaces on it, named `<prefix>-b<i>`.
pub fn build(prefix: &str, browsers: usize) -> anyhow::Result<Vec<Netns>> {
    sh(&["ip", "link", "add", "br0", "type", "bridge"])?;
    sh(&["ip", "addr", "add", &format!("{SERVER_IP}/24"), "dev", "br0"])?;
    sh(&["ip", "link", "set", "br0", "up"])?;
    sh(&["ip", "link", "set", "lo", "up"])?;
    let mut namespaces = Vec::new();
    for i in 0..browsers {
        let ns = Netns::add(format!("{prefix}-b{i}"))?;
        let hub_end = format!("h{i}");
        sh(&["ip", "link", "add", &hub_end, "type", "veth", "peer", "name", "eth0", "netns", &ns.0])?;
        sh(&["ip", "link", "set", &hub_end, "master", "br0"])?;
        sh(&["ip", "link", "set", &hub_end, "up"])?;
        sh(&["ip", "-n", &ns.0, "addr", "add", &format!("{}/24", browser_ip(i)), "dev", "eth0"])?;
        sh(&["ip", "-n", &ns.0, "link", "set", "eth0", "up"])?;
        namespaces.push(ns);
    }
    Ok(namespaces)
}

/// A browser's downlink, as impaired now.
pub struct Downlink {
    index: usize,
    netns: String,
    loss_percent: u32,
}

impl Downlink {
    pub fn new(index: usize, ns: &Netns) -> Downlink {
        Downlink { index, netns: ns.0.clone(), loss_percent: 0 }
    }

    /// Caps it at `cap_bps` (none: unlimited) and drops `loss_percent` of what arrives.
    pub fn set(&mut self, cap_bps: Option<u64>, loss_percent: u32) -> anyhow::Result<()> {
        let dev = format!("h{}", self.index);
        let _ = Command::new("tc").args(["qdisc", "del", "dev", &dev, "root"]).stderr(Stdio::null()).status();
        if let Some(bps) = cap_bps {
            // A bucket of 10 ms at the rate (at least two full packets): no burst at line rate to speak of.
            let burst = (bps / 8 / 100).max(3_000).to_string();
            let rate = format!("{bps}bit");
            sh(&[
                "tc", "qdisc", "add", "dev", &dev, "root", "tbf", "rate", &rate, "burst", &burst, "latency", "150ms",
            ])?;
        }
        if loss_percent != self.loss_percent {
            if self.loss_percent > 0 {
                self.iptables("-D", self.loss_percent)?;
            }
            if loss_percent > 0 {
                self.iptables("-A", loss_percent)?;
            }
            self.loss_percent = loss_percent;
        }
        Ok(())
    }

    fn iptables(&self, op: &str, percent: u32) -> anyhow::Result<()> {
        let p = format!("{:.4}", f64::from(percent) / 100.0);
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.netns,
            "iptables",
            op,
            "INPUT",
            "-p",
            "udp",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &p,
            "-j",
            "DROP",
        ])
        .context("iptables with the statistic match")
    }
}
