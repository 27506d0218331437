//! The `bare-udp` target of `sluice bench meeting`: the same meetings, participants and media schedule, through
//! the dataplane's `BareForwarder` (one per meeting, on the workers' own I/O path) instead of Sluice: no
//! signaling, no ICE, no DTLS, no SRTP, no logic, every datagram copied to every member. It is the floor that
//! shows how much of the machine Sluice's work costs. CPU is the forwarder threads' own (rusage).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_dataplane::runtime::{BareForwarder, IoMode};
use tokio::net::UdpSocket;

use crate::clock::{RxClock, recv_stamped};
use crate::meeting::{Outcome, PAYLOAD_LEN, Report, Scenario, summarize};

/// Bytes of the tag at the start of each payload: publisher, sequence, send time (us since the bench's start).
const TAG_LEN: usize = 4 + 8 + 8;

pub async fn run(scenario: &Scenario) -> anyhow::Result<Report> {
    let meetings = scenario.meetings.max(1);
    let total = scenario.participants * meetings;
    let mut sockets = Vec::with_capacity(total);
    for _ in 0..total {
        let socket = crate::meeting::udp_socket()?;
        sockets.push(socket);
    }
    let mut forwarders = Vec::with_capacity(meetings);
    for m in 0..meetings {
        let members: Vec<SocketAddr> = sockets[m * scenario.participants..(m + 1) * scenario.participants]
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<_, _>>()?;
        let forwarder = BareForwarder::start(IoMode::Auto, true, "127.0.0.1:0".parse()?, None, members)
            .context("start a bare forwarder")?;
        forwarders.push(forwarder);
    }
    let epoch = Instant::now();
    let media_start = epoch + Duration::from_millis(500) + scenario.ramp;
    let media_end = media_start + scenario.duration;
    let cpu_before: Duration = forwarders.iter().map(|f| f.snapshot().cpu_time).sum();
    let generator = crate::meeting::CpuWindow::generator(media_start);
    let mut tasks = Vec::with_capacity(total);
    for (k, socket) in sockets.into_iter().enumerate() {
        let (m, i) = (k / scenario.participants, k % scenario.participants);
        let forwarder = forwarders[m].local_addr();
        let publish = i < scenario.publishers;
        let pps = scenario.pps.max(1);
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome { meeting: m, joined: true, ..Outcome::default() };
            if let Err(e) =
                participant(k as u32, socket, forwarder, publish, pps, epoch, media_start, media_end, &mut outcome)
                    .await
            {
                outcome.error = Some(format!("participant {k}: {e:#}"));
            }
            outcome
        }));
    }
    tokio::time::sleep_until(media_end.into()).await;
    let generator_cpu = generator.end();
    let mut outcomes = Vec::with_capacity(total);
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| Outcome { error: Some(e.to_string()), ..Outcome::default() }));
    }
    // The forwarders publish their counters every 50 ms.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let cpu_after: Duration = forwarders.iter().map(|f| f.snapshot().cpu_time).sum();
    for f in forwarders {
        let _ = f.stop();
    }
    let cpu = (cpu_after.saturating_sub(cpu_before)).as_nanos() as u64;
    Ok(summarize(scenario, &outcomes, Some(cpu)).with_generator_cpu(generator_cpu))
}

#[allow(clippy::too_many_arguments)]
async fn participant(
    index: u32,
    socket: UdpSocket,
    forwarder: SocketAddr,
    publish: bool,
    pps: u32,
    epoch: Instant,
    media_start: Instant,
    media_end: Instant,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(pps));
    let mut next_send = media_start;
    let mut packet = vec![0u8; PAYLOAD_LEN];
    let mut buf = vec![0u8; 2048];
    let mut seq = 0u64;
    let started = Instant::now();
    let clock = RxClock::new(epoch);
    loop {
        let now = Instant::now();
        if now >= media_end + Duration::from_millis(300) {
            return Ok(());
        }
        if publish && now >= next_send && now < media_end {
            seq += 1;
            packet[..4].copy_from_slice(&index.to_be_bytes());
            packet[4..12].copy_from_slice(&seq.to_be_bytes());
            packet[12..20].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_be_bytes());
            socket.send_to(&packet, forwarder).await?;
            outcome.sent += 1;
            next_send = (next_send + interval).max(now);
        }
        let wake = if publish && next_send < media_end { next_send } else { media_end + Duration::from_millis(300) };
        tokio::select! {
            received = recv_stamped(&socket, &mut buf) => {
                let (n, _, stamp) = received?;
                if n < TAG_LEN {
                    continue;
                }
                let publisher = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
                if publisher == index {
                    // The bare forwarder copies to every member, the sender too.
                    continue;
                }
                let sent_us = u64::from_be_bytes(buf[12..20].try_into().expect("8 bytes"));
                outcome.delays_us.push(clock.received_us(stamp).saturating_sub(sent_us));
                outcome.first_media_ms.get_or_insert(started.elapsed().as_secs_f64() * 1000.0);
                match outcome.received.iter_mut().find(|(p, _)| *p == publisher) {
                    Some((_, count)) => *count += 1,
                    None => outcome.received.push((publisher, 1)),
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}
