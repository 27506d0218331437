//! The relay's shell: worker threads (optionally pinned), their listeners (`SO_REUSEPORT`, so the kernel
//! spreads clients over workers by their 5-tuple and a client always lands on the same worker), TLS set-up,
//! start, statistics and stop.

mod batch;
mod conn;
mod hairpin;
mod ring;
mod worker;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use sluice_dataplane::runtime::{IoMode, uring_probe};

use crate::config::TurnConfig;
use crate::limits::Quotas;
use crate::server::Server;
use crate::stats::Stats;

/// The addresses a started relay listens on.
#[derive(Debug, Clone, Default)]
pub struct Listening {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    /// The address relayed transport addresses are on.
    pub relay_ip: Option<IpAddr>,
}

#[derive(Debug)]
struct WorkerHandle {
    thread: Option<JoinHandle<()>>,
    waker: mio::Waker,
    published: Arc<Mutex<Stats>>,
}

/// A running relay. Dropping it does not stop it; call `stop`.
#[derive(Debug)]
pub struct TurnRuntime {
    workers: Mutex<Vec<WorkerHandle>>,
    stop: Arc<AtomicBool>,
    listening: Listening,
    quotas: Arc<Quotas>,
}

impl TurnRuntime {
    /// Binds the listeners and starts the workers. `secrets` are the REST secrets already resolved (see
    /// `resolve_secrets`); `endpoints` are exact peer addresses allowed besides the configured filter (the
    /// SFU's media ports when embedded).
    pub fn start(config: &TurnConfig, secrets: Vec<String>, endpoints: &[SocketAddr]) -> Result<TurnRuntime, String> {
        let mut server_config = config.server_config(secrets)?;
        server_config.filter = server_config.filter.with_endpoints(endpoints.iter().copied());
        let udp = TurnConfig::listen_addr("udp_listen", &config.udp_listen)?;
        let tcp = TurnConfig::listen_addr("tcp_listen", &config.tcp_listen)?;
        let tls = TurnConfig::listen_addr("tls_listen", &config.tls_listen)?;
        if udp.is_none() && tcp.is_none() && tls.is_none() {
            return Err("turn: udp_listen, tcp_listen and tls_listen are all empty".into());
        }
        let relay_v6 = config.relay_ipv6_addr()?;
        let relay_v4 = resolve_relay_ip(config.relay_ip);
        let tls_config = match tls {
            Some(_) => Some(tls_server_config(config)?),
            None => None,
        };
        let workers = config.workers.max(1);
        // The dataplane's own choice of I/O path, under the same names.
        let io: IoMode = config.io.parse().map_err(|e| format!("turn.io: {e}"))?;
        let uring = match io {
            IoMode::Auto => uring_probe().is_ok(),
            IoMode::Uring => match uring_probe() {
                Ok(()) => true,
                Err(e) => return Err(format!("turn.io = \"uring\", but io_uring is unavailable here: {e}")),
            },
            IoMode::Mmsg => false,
        };
        let quotas = Arc::new(Quotas::new(config.user_quota, config.total_quota));
        let stop = Arc::new(AtomicBool::new(false));
        let nonce_key = random_bytes::<32>();
        let reservations = Arc::new(worker::Reservations::default());
        let mut listening = Listening { relay_ip: Some(relay_v4), ..Listening::default() };
        let mut handles = Vec::with_capacity(workers);
        for index in 0..workers {
            let bind =
                |addr: Option<SocketAddr>, bound: Option<SocketAddr>, kind: Type| -> Result<Option<Socket>, String> {
                    let Some(addr) = addr else { return Ok(None) };
                    // Every worker after the first joins the first one's port (the configured one may be 0).
                    let addr = bound.map_or(addr, |b| SocketAddr::new(addr.ip(), b.port()));
                    reuseport_socket(addr, kind).map(Some).map_err(|e| format!("turn: cannot listen on {addr}: {e}"))
                };
            let udp_socket = bind(udp, listening.udp, Type::DGRAM)?;
            let tcp_socket = bind(tcp, listening.tcp, Type::STREAM)?;
            let tls_socket = bind(tls, listening.tls, Type::STREAM)?;
            let local = |s: &Option<Socket>| s.as_ref().and_then(|s| s.local_addr().ok()).and_then(|a| a.as_socket());
            listening.udp = listening.udp.or(local(&udp_socket));
            listening.tcp = listening.tcp.or(local(&tcp_socket));
            listening.tls = listening.tls.or(local(&tls_socket));
            let poll = mio::Poll::new().map_err(|e| format!("turn: epoll: {e}"))?;
            let waker = mio::Waker::new(poll.registry(), worker::WAKER).map_err(|e| format!("turn: eventfd: {e}"))?;
            let published = Arc::new(Mutex::new(Stats::default()));
            let setup = worker::Setup {
                poll,
                server: Server::new(server_config.clone(), nonce_key, Arc::clone(&quotas), Instant::now()),
                udp: udp_socket.map(|s| mio::net::UdpSocket::from_std(s.into())),
                tcp: tcp_socket.map(|s| mio::net::TcpListener::from_std(s.into())),
                tls: tls_socket.map(|s| {
                    (mio::net::TcpListener::from_std(s.into()), Arc::clone(tls_config.as_ref().expect("made above")))
                }),
                relay_v4,
                relay_v6,
                ports: (config.min_port, config.max_port),
                max_connections: config.max_connections.max(1),
                stop: Arc::clone(&stop),
                published: Arc::clone(&published),
                reservations: Arc::clone(&reservations),
                seed: u64::from_le_bytes(random_bytes::<8>()),
                uring,
                hairpin: config.hairpin,
            };
            let worker = worker::Worker::new(setup).map_err(|e| format!("turn: worker {index}: {e}"))?;
            let core = config.cores.get(index).copied();
            let thread = std::thread::Builder::new()
                .name(format!("sluice-turn-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: core });
                    }
                    worker.run();
                })
                .map_err(|e| format!("turn: cannot start worker {index}: {e}"))?;
            handles.push(WorkerHandle { thread: Some(thread), waker, published });
        }
        tracing::info!(workers, io = if uring { "uring" } else { "mmsg" }, "TURN relay started");
        Ok(TurnRuntime { workers: Mutex::new(handles), stop, listening, quotas })
    }

    pub fn listening(&self) -> &Listening {
        &self.listening
    }

    /// TURN URLs for browsers when none are configured: the relay address with each listener's port.
    pub fn default_urls(&self) -> Vec<String> {
        let l = &self.listening;
        let host = match l.relay_ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]"),
            Some(ip) => ip.to_string(),
            None => "127.0.0.1".into(),
        };
        let mut urls = Vec::new();
        if let Some(a) = l.udp {
            urls.push(format!("turn:{host}:{}?transport=udp", a.port()));
        }
        if let Some(a) = l.tcp {
            urls.push(format!("turn:{host}:{}?transport=tcp", a.port()));
        }
        if let Some(a) = l.tls {
            urls.push(format!("turns:{host}:{}?transport=tcp", a.port()));
        }
        urls
    }

    /// Allocations across all workers.
    pub fn allocations(&self) -> usize {
        self.quotas.total()
    }

    /// The workers' counters, summed (each published at most 100 ms ago).
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for w in self.workers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            total.add(&w.published.lock().unwrap_or_else(|p| p.into_inner()));
        }
        total
    }

    pub fn render_metrics(&self, out: &mut String) {
        self.stats().render(out);
    }

    /// Whether every worker thread is still running.
    pub fn is_running(&self) -> bool {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .all(|w| w.thread.as_ref().is_some_and(|t| !t.is_finished()))
    }

    /// Stops the workers (their allocations end, their sockets close) and waits up to `timeout`.
    pub fn stop(&self, timeout: Duration) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        for w in workers.iter() {
            let _ = w.waker.wake();
        }
        let deadline = Instant::now() + timeout;
        let mut all = true;
        for w in workers.iter_mut() {
            while w.thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            match w.thread.take() {
                Some(t) if t.is_finished() => {
                    let _ = t.join();
                }
                Some(t) => {
                    w.thread = Some(t);
                    all = false;
                }
                None => {}
            }
        }
        all
    }
}

/// A non-blocking socket with `SO_REUSEPORT` bound to `addr` (listening, for TCP).
fn reuseport_socket(addr: SocketAddr, kind: Type) -> io::Result<Socket> {
    let protocol = if kind == Type::DGRAM { Protocol::UDP } else { Protocol::TCP };
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    socket.set_reuse_port(true)?;
    if kind == Type::STREAM {
        socket.set_reuse_address(true)?;
    } else {
        // Room for bursts while the worker is busy elsewhere in its loop.
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
    }
    if addr.is_ipv6() {
        // `[::]` takes IPv4 clients too where the system allows it; where not, IPv6 alone still works.
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if kind == Type::STREAM {
        socket.listen(1024)?;
    }
    Ok(socket)
}

/// Every address of this machine, loopback included.
pub fn machine_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs().unwrap_or_default().into_iter().map(|i| i.ip()).collect()
}

/// The configured relay address, or this machine's first non-loopback IPv4 address when unspecified.
pub fn resolve_relay_ip(configured: IpAddr) -> IpAddr {
    if !configured.is_unspecified() {
        return configured;
    }
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

fn tls_server_config(config: &TurnConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (certs, key) = if config.tls_cert_file.as_os_str().is_empty() {
        tracing::warn!("turn.tls_cert_file is not set: TURN over TLS uses a self-signed certificate");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .map_err(|e| format!("turn: self-signed certificate: {e}"))?;
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).map_err(|e| format!("turn: key: {e}"))?;
        (vec![cert.cert.der().clone()], key)
    } else {
        let certs = CertificateDer::pem_file_iter(&config.tls_cert_file)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("turn.tls_cert_file {}: {e}", config.tls_cert_file.display()))?;
        let key = PrivateKeyDer::from_pem_file(&config.tls_key_file)
            .map_err(|e| format!("turn.tls_key_file {}: {e}", config.tls_key_file.display()))?;
        (certs, key)
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("turn: TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("turn: TLS certificate: {e}"))?;
    Ok(Arc::new(server))
}

/// Bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: writes at most N - filled bytes into `out` from `filled`.
        let n = unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
    out
}

/// The REST secrets: the configured ones, or one generated once and kept `0600` in `<data_dir>/turn_secret`.
pub fn resolve_secrets(config: &TurnConfig, data_dir: &std::path::Path) -> io::Result<Vec<String>> {
    if !config.secrets.is_empty() {
        return Ok(config.secrets.clone());
    }
    let path = data_dir.join("turn_secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_string();
        if secret.len() >= 16 {
            return Ok(vec![secret]);
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let secret: String = random_bytes::<24>().iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, secret.as_bytes())?;
    Ok(vec![secret])
}
