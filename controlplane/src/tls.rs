//! HTTPS for the control plane's listener: the certificate and key from PEM files (rustls with ring), reloaded on
//! SIGHUP and when either file changes, or a self-signed certificate for a trial on a LAN.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How often the certificate files are checked for a change.
const WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// The certificate and key files a listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A file that could not be used, named with the configuration key that points at it.
#[derive(Debug, thiserror::Error)]
#[error("{key} {path}: {reason}")]
pub struct TlsError {
    pub key: &'static str,
    pub path: String,
    pub reason: String,
}

impl TlsFiles {
    /// Reads and checks both files; the error names the file that is wrong and why.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let cert_error = |reason: String| TlsError { key: "http.tls_cert_file", path: show(&self.cert), reason };
        let key_error = |reason: String| TlsError { key: "http.tls_key_file", path: show(&self.key), reason };
        if self.cert.as_os_str().is_empty() {
            return Err(cert_error("is not set (http.tls_key_file is)".into()));
        }
        if self.key.as_os_str().is_empty() {
            return Err(key_error("is not set (http.tls_cert_file is)".into()));
        }
        let pem = std::fs::read(&self.cert).map_err(|e| cert_error(e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| cert_error(format!("not a PEM certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(cert_error("holds no PEM certificate".into()));
        }
        let pem = std::fs::read(&self.key).map_err(|e| key_error(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| key_error(format!("no PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| cert_error(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| key_error(format!("does not fit the certificate: {e}")))?;
        // HTTP/1.1 only: the signaling WebSocket upgrades over it in every browser.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn modified(&self) -> Option<(SystemTime, SystemTime)> {
        let time = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((time(&self.cert)?, time(&self.key)?))
    }
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

/// Reloads `files` into `live` on SIGHUP and when either file's modification time changes. A reload that fails
/// is logged and the certificate in use stays.
pub fn spawn_reloader(files: TlsFiles, live: axum_server::tls_rustls::RustlsConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = files.modified();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = tick.tick() => {
                    let now = files.modified();
                    if now == seen || now.is_none() { continue; }
                    seen = now;
                    "the files changed"
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
            };
            match files.server_config() {
                Ok(config) => {
                    live.reload_from_config(config);
                    metrics::counter!("sluice_http_tls_reloads_total", "outcome" => "ok").increment(1);
                    tracing::info!(cert = %files.cert.display(), why, "TLS certificate reloaded");
                }
                Err(e) => {
                    metrics::counter!("sluice_http_tls_reloads_total", "outcome" => "failed").increment(1);
                    tracing::error!(error = %e, why, "TLS certificate not reloaded; the previous one stays in use");
                }
            }
        }
    })
}

/// A self-signed certificate for `names` (DNS names or IP addresses), kept in `dir` so its fingerprint stays the
/// same across restarts; made anew when missing. Returns the files and the certificate's SHA-256 fingerprint.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<(TlsFiles, String), TlsError> {
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    let fail = |reason: String| TlsError { key: "http.self_signed", path: show(dir), reason };
    if !files.cert.exists() || !files.key.exists() {
        let cert = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| fail(e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        write_private(&files.key, cert.signing_key.serialize_pem().as_bytes()).map_err(|e| fail(e.to_string()))?;
        std::fs::write(&files.cert, cert.cert.pem()).map_err(|e| fail(e.to_string()))?;
        tracing::info!(dir = %dir.display(), ?names, "generated a self-signed certificate");
    }
    let pem = std::fs::read(&files.cert).map_err(|e| fail(e.to_string()))?;
    let der = CertificateDer::from_pem_slice(&pem).map_err(|e| fail(format!("cert.pem: {e}")))?;
    Ok((files, fingerprint(&der)))
}

/// SHA-256 of a DER certificate as browsers show it: upper-case hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named_and_a_self_signed_pair_loads_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (files, first) = self_signed(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(files.server_config().is_ok());
        assert_eq!(first.len(), 32 * 3 - 1);
        let (_, again) = self_signed(dir.path(), &["localhost".into()]).unwrap();
        assert_eq!(first, again, "kept across restarts");

        let missing = TlsFiles { cert: dir.path().join("nope.pem"), key: files.key.clone() };
        let e = missing.server_config().unwrap_err().to_string();
        assert!(e.starts_with("http.tls_cert_file") && e.contains("nope.pem"), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let e = TlsFiles { cert: garbage.clone(), key: files.key.clone() }.server_config().unwrap_err().to_string();
        assert!(e.contains("garbage.pem") && e.contains("http.tls_cert_file"), "{e}");
        let e = TlsFiles { cert: files.cert.clone(), key: garbage }.server_config().unwrap_err().to_string();
        assert!(e.starts_with("http.tls_key_file"), "{e}");
        let other = tempfile::tempdir().unwrap();
        let (other_files, _) = self_signed(other.path(), &["localhost".into()]).unwrap();
        let e = TlsFiles { cert: files.cert.clone(), key: other_files.key }.server_config().unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
    }
}
