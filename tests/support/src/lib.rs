//! Real services for tests, never mocks: a fresh PostgreSQL schema per test and an `s3s-fs` S3 server per test.
//!
//! Environment:
//! - `SLUICE_TEST_DATABASE_URL`: the PostgreSQL server (default `postgres://postgres@127.0.0.1:5432/test`).
//! - `SLUICE_TEST_S3S_FS`: the `s3s-fs` binary (default: found on `PATH` or in `~/.cargo/bin`).
//!
//! `tests/run.sh` installs and starts both; run alone, a missing service fails the test with a message saying
//! how to get it. Nothing is skipped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn database_url() -> String {
    std::env::var("SLUICE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string())
}

fn random_suffix() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..12).map(|_| (b'a' + rng.random_range(0..26u8)) as char).collect()
}

/// A schema of its own in the test database, dropped (with everything in it) when this is dropped.
#[derive(Debug)]
pub struct PgSchema {
    pub name: String,
    /// The test database URL with `search_path` set to this schema.
    pub url: String,
    base_url: String,
}

impl PgSchema {
    pub async fn create() -> PgSchema {
        let base_url = database_url();
        let name = format!("sluice_test_{}", random_suffix());
        let client = connect(&base_url).await;
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("create a test schema");
        let sep = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{sep}options=-c%20search_path%3D{name}");
        PgSchema { name, url, base_url }
    }

    /// A direct connection whose `search_path` is this schema, for checking what the code under test wrote.
    pub async fn client(&self) -> tokio_postgres::Client {
        let client = connect(&self.base_url).await;
        client.batch_execute(&format!("SET search_path TO {}", self.name)).await.expect("set search_path");
        client
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.base_url.clone(), self.name.clone());
        // Drop runs inside or outside a runtime; a thread of its own works in both.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let client = connect(&url).await;
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test schema {}", self.name);
        }
    }
}

/// Connects, or panics with what to do about it.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url}: {e}. Start it (tests/run.sh does) or set SLUICE_TEST_DATABASE_URL"
        )
    });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A free TCP port on loopback (bound and released; good enough for a test that binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// An `s3s-fs` S3-compatible server on loopback with one bucket, checking request signatures. Killed on drop.
#[derive(Debug)]
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// The directory the server stores objects in: `<root>/<bucket>/<key>`.
    pub root: tempfile::TempDir,
    child: Child,
}

impl S3Server {
    pub fn start() -> S3Server {
        let binary = s3s_fs_binary();
        let root = tempfile::tempdir().expect("a temp dir");
        let bucket = "sluice-test".to_string();
        std::fs::create_dir(root.path().join(&bucket)).expect("create the bucket directory");
        let port = free_port();
        let (access_key, secret_key) = ("sluicetestaccess".to_string(), "sluicetestsecret0123456789".to_string());
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let server =
            S3Server { endpoint: format!("http://127.0.0.1:{port}"), bucket, access_key, secret_key, root, child };
        assert!(
            wait_for_tcp(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(10)),
            "s3s-fs did not start listening on port {port}"
        );
        server
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SLUICE_TEST_S3S_FS") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("s3s-fs")).find(|p| p.is_file()))
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin/s3s-fs"))
        .filter(|p| p.is_file());
    on_path.or(cargo_bin).unwrap_or_else(|| {
        panic!("s3s-fs is not installed: run `cargo install s3s-fs@0.14.1 --features binary` (tests/run.sh does)")
    })
}

/// Set in the copy of a test binary that runs inside the test's own network namespace.
const NETNS_INSIDE: &str = "SLUICE_TEST_NETNS_INSIDE";

/// Runs `test` (the test function's name) inside a fresh network namespace holding only loopback: outside,
/// re-executes this test binary there with `--exact test` and checks it passed; inside, runs `body` on a tokio
/// runtime. Servers that announce every interface's address (Janus, browsers) then reach only this namespace.
/// Needs root and `ip` (iproute2).
pub fn in_fresh_netns(test: &str, body: impl AsyncFnOnce()) {
    in_fresh_netns_with(test, None, body)
}

/// As [`in_fresh_netns`], with an interface holding `address` (`10.99.0.1/24`) beside loopback: for servers that
/// gather ICE candidates only on non-loopback interfaces (libnice, so Janus; Firefox, which also needs a default
/// route to gather at all). It is one end of a veth pair whose other end is in the namespace too, and the default
/// route points at it, so packets to it, or to anywhere else, stay in the namespace.
pub fn in_fresh_netns_with(test: &str, address: Option<&str>, body: impl AsyncFnOnce()) {
    if let Some(ran) = std::env::var_os(NETNS_INSIDE) {
        // Tells the outer run that the body ran: a name that matched no test would otherwise pass unseen.
        std::fs::write(&ran, b"ran").expect("mark the test as run");
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
        return rt.block_on(body());
    }
    let ns =
        format!("sluice-t-{}-{}", std::process::id(), test.bytes().map(usize::from).sum::<usize>() + test.len() * 131);
    let status = Command::new("ip").args(["netns", "add", &ns]).status().expect("run `ip` (package iproute2)");
    assert!(status.success(), "`ip netns add` failed: this test needs root and iproute2");
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
        }
    }
    let _cleanup = Cleanup(ns.clone());
    let up = Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]).status();
    assert!(up.is_ok_and(|s| s.success()), "bring loopback up in {ns}");
    if let Some(address) = address {
        for args in [
            vec!["link", "add", "lan0", "type", "veth", "peer", "name", "lan1"],
            vec!["addr", "add", address, "dev", "lan0"],
            vec!["link", "set", "lan0", "up"],
            vec!["link", "set", "lan1", "up"],
            vec!["route", "add", "default", "dev", "lan0"],
        ] {
            let ok = Command::new("ip").args(["netns", "exec", &ns, "ip"]).args(&args).status();
            assert!(ok.is_ok_and(|s| s.success()), "ip {} in {ns}", args.join(" "));
        }
    }
    let marker = tempfile::NamedTempFile::new().expect("a marker file");
    std::fs::remove_file(marker.path()).expect("an empty marker path");
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(std::env::current_exe().expect("the test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(NETNS_INSIDE, marker.path())
        .status()
        .expect("re-run the test in its namespace");
    assert!(status.success(), "{test} failed inside its network namespace (output above)");
    assert!(marker.path().exists(), "no test is named {test:?} (a test in a module needs its module path)");
}
