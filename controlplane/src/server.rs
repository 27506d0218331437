//! Starting the control plane: open the store and object storage (bounded retries, clear errors), build the
//! router, serve until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;

use crate::blobs::{BlobError, Blobs};
use crate::config::{
    AccessConfig, AnalyticsConfig, AuthConfig, ChatConfig, DatabaseConfig, HttpConfig, LimitsConfig, StorageConfig,
};
use crate::http::limits::Limits;
use crate::http::{self, AppState, Policy};
use crate::signaling::Signaling;
use crate::store::{self, Store, StoreError};
use crate::tls::TlsFiles;
use crate::tokens::{TokenError, Tokens};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Storage(#[from] BlobError),
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Config(String),
}

/// The control plane's durable services, opened and checked.
#[derive(Debug, Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub tokens: Tokens,
    /// The media workers, when this process runs them (`sluice serve`).
    pub dataplane: Option<Arc<sluice_dataplane::runtime::Runtime>>,
    /// Addresses browsers reach the workers at (`dataplane.announce`); empty: the machine's own.
    pub announce: Vec<std::net::IpAddr>,
    /// TURN credentials for joining participants, when a relay serves this deployment.
    pub ice: Option<Arc<sluice_turn::auth::IceServerIssuer>>,
    /// The relay, when this process runs it (`sluice serve`): its metrics join `/metrics`.
    pub turn: Option<Arc<sluice_turn::runtime::TurnRuntime>>,
    /// The recorder, when this deployment records.
    pub recorder: Option<Arc<dyn crate::recording::RecorderHandle>>,
    /// Who may create and join meetings, and read metrics.
    pub access: AccessConfig,
    pub limits: LimitsConfig,
    pub chat: ChatConfig,
    pub analytics: AnalyticsConfig,
    /// The certificate `http.listen` serves, when it speaks TLS (`http.tls_cert_file`, or `--self-signed`).
    pub tls_files: Option<TlsFiles>,
}

impl Services {
    pub async fn open(
        database: &DatabaseConfig,
        storage: &StorageConfig,
        auth: &AuthConfig,
        data_dir: &Path,
    ) -> Result<Services, StartError> {
        let tokens = Tokens::from_config(auth, data_dir)?;
        let blobs = Blobs::open(storage, data_dir)?;
        let store = store::open(&database.store_options(), data_dir).await?;
        blobs.wait_reachable(storage.connect_attempts, Duration::from_millis(500)).await?;
        tracing::info!(storage = blobs.target(), "object storage ready");
        Ok(Services {
            store,
            blobs,
            tokens,
            dataplane: None,
            announce: Vec::new(),
            ice: None,
            turn: None,
            recorder: None,
            access: AccessConfig::default(),
            limits: LimitsConfig::default(),
            chat: ChatConfig::default(),
            analytics: AnalyticsConfig::default(),
            tls_files: None,
        })
    }
}

/// The bound HTTP listeners and the state behind them; `run` serves until `shutdown` resolves.
#[derive(Debug)]
pub struct HttpServer {
    listener: std::net::TcpListener,
    /// With TLS: the certificate in use (reloadable) and where it comes from.
    tls: Option<(axum_server::tls_rustls::RustlsConfig, TlsFiles)>,
    /// With TLS: a plain listener on loopback that this process's own clients (the recorder) use.
    internal: Option<std::net::TcpListener>,
    redirect: Option<std::net::TcpListener>,
    ops: Option<std::net::TcpListener>,
    state: Arc<AppState>,
    config: HttpConfig,
    /// `analytics.retention_days`.
    retention_days: u32,
}

/// How long a stop waits for requests in flight.
const GRACEFUL_STOP: Duration = Duration::from_secs(5);

fn bind_std(key: &str, addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| StartError::Listen {
        addr,
        source: std::io::Error::new(source.kind(), format!("{key}: {source}")),
    })?;
    listener.set_nonblocking(true).map_err(|source| StartError::Listen { addr, source })?;
    Ok(listener)
}

impl HttpServer {
    pub async fn bind(config: &HttpConfig, services: Services) -> Result<HttpServer, StartError> {
        let addr = config.listen;
        let listener = bind_std("http.listen", addr)?;
        let bound = listener.local_addr().map_err(|source| StartError::Listen { addr, source })?;
        let tls = match &services.tls_files {
            Some(files) => {
                let server_config = files.server_config()?;
                Some((axum_server::tls_rustls::RustlsConfig::from_config(server_config), files.clone()))
            }
            None if config.tls() => {
                return Err(StartError::Tls(crate::tls::TlsError {
                    key: "http.tls_cert_file",
                    path: config.tls_cert_file.display().to_string(),
                    reason: "TLS is configured but no certificate was loaded".into(),
                }));
            }
            None => None,
        };
        let optional = |key: &str, value: &str| -> Result<Option<std::net::TcpListener>, StartError> {
            let addr = HttpConfig::optional_addr(key, value).map_err(StartError::Config)?;
            addr.map(|a| bind_std(&format!("http.{key}"), a)).transpose()
        };
        let ops = optional("ops_listen", &config.ops_listen)?;
        let redirect = if tls.is_some() { optional("redirect_listen", &config.redirect_listen)? } else { None };
        let internal = match &tls {
            Some(_) => Some(bind_std("the internal loopback listener", SocketAddr::from(([127, 0, 0, 1], 0)))?),
            None => None,
        };
        let local_url = match &internal {
            Some(l) => {
                HttpConfig::default().public_url(l.local_addr().map_err(|source| StartError::Listen { addr, source })?)
            }
            None => HttpConfig::default().public_url(bound),
        };
        let signaling = Arc::new(
            Signaling::new(Arc::clone(&services.store), services.dataplane.clone(), &services.announce)
                .with_ice_servers(services.ice.clone())
                .with_blobs(services.blobs.clone())
                .with_analytics(services.analytics.clone()),
        );
        let limits = Arc::new(Limits::new(&services.limits));
        Limits::spawn_sweeper(&limits);
        let hsts = (tls.is_some() && config.hsts_max_age_secs > 0).then(|| {
            HeaderValue::from_str(&format!("max-age={}", config.hsts_max_age_secs)).expect("digits are a header value")
        });
        let state = Arc::new(AppState {
            signaling,
            store: services.store,
            blobs: services.blobs,
            tokens: services.tokens,
            metrics: http::prometheus(),
            dataplane: services.dataplane,
            turn: services.turn,
            public_url: config.public_url(bound),
            local_url,
            recorder: services.recorder,
            chat: services.chat,
            policy: Policy {
                access: services.access,
                limits,
                trusted_proxies: config.trusted_proxies.clone(),
                hsts,
                metrics_elsewhere: ops.is_some(),
            },
        });
        let retention_days = state.signaling.analytics_config().retention_days;
        Ok(HttpServer { listener, tls, internal, redirect, ops, state, config: config.clone(), retention_days })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where `http.ops_listen` listens, when set.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Signaling, for the dataplane's event pump.
    pub fn signaling(&self) -> Arc<Signaling> {
        Arc::clone(&self.state.signaling)
    }

    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let handle = axum_server::Handle::new();
        let app =
            http::router(Arc::clone(&self.state), &self.config).into_make_service_with_connect_info::<SocketAddr>();
        let mut extra = tokio::task::JoinSet::new();
        if let Some(ops) = self.ops {
            let ops_app = http::ops_router(Arc::clone(&self.state)).into_make_service();
            let server = axum_server::from_tcp(ops)?.handle(handle.clone());
            extra.spawn(async move { server.serve(ops_app).await });
        }
        if let Some(redirect) = self.redirect {
            let target = self.state.public_url.clone();
            let redirect_app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let target = target.clone();
                async move {
                    let path = uri.path_and_query().map_or("/", |p| p.as_str());
                    axum::response::Redirect::permanent(&format!("{target}{path}"))
                }
            });
            let server = axum_server::from_tcp(redirect)?.handle(handle.clone());
            extra.spawn(async move { server.serve(redirect_app.into_make_service()).await });
        }
        if let Some(internal) = self.internal {
            let server = axum_server::from_tcp(internal)?.handle(handle.clone());
            let app = app.clone();
            extra.spawn(async move { server.serve(app).await });
        }
        let analytics_retention = self.state.signaling.analytics().spawn_retention(self.retention_days);
        let retention = (self.state.chat.file_retention_days > 0).then(|| {
            let interval = Duration::from_secs(self.state.chat.sweep_interval_secs);
            http::files::spawn_retention(Arc::clone(&self.state.store), self.state.blobs.clone(), interval)
        });
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopper.graceful_shutdown(Some(GRACEFUL_STOP));
        });
        let main = match self.tls {
            Some((live, files)) => {
                let reloader = crate::tls::spawn_reloader(files, live.clone());
                let served = axum_server::from_tcp_rustls(self.listener, live)?.handle(handle).serve(app).await;
                reloader.abort();
                served
            }
            None => axum_server::from_tcp(self.listener)?.handle(handle).serve(app).await,
        };
        for task in [retention, analytics_retention].into_iter().flatten() {
            task.abort();
        }
        while let Some(done) = extra.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "an extra HTTP listener failed");
            }
        }
        main
    }
}
