//! Starting the control plane: open the store and object storage (bounded retries, clear errors), build the
//! router, serve until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::blobs::{BlobError, Blobs};
use crate::config::{AuthConfig, DatabaseConfig, HttpConfig, StorageConfig};
use crate::http::{self, AppState};
use crate::signaling::Signaling;
use crate::store::{self, Store, StoreError};
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
        })
    }
}

/// A bound HTTP listener and the state behind it; `run` serves until `shutdown` resolves.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    state: Arc<AppState>,
    config: HttpConfig,
}

impl HttpServer {
    pub async fn bind(config: &HttpConfig, services: Services) -> Result<HttpServer, StartError> {
        let addr = config.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
        let bound = listener.local_addr().map_err(|source| StartError::Listen { addr, source })?;
        let signaling = Arc::new(
            Signaling::new(Arc::clone(&services.store), services.dataplane.clone(), &services.announce)
                .with_ice_servers(services.ice.clone()),
        );
        let state = Arc::new(AppState {
            signaling,
            store: services.store,
            blobs: services.blobs,
            tokens: services.tokens,
            metrics: http::prometheus(),
            dataplane: services.dataplane,
            turn: services.turn,
            public_url: config.public_url(bound),
            local_url: HttpConfig::default().public_url(bound),
            recorder: services.recorder,
        });
        Ok(HttpServer { listener, state, config: config.clone() })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Signaling, for the dataplane's event pump.
    pub fn signaling(&self) -> Arc<Signaling> {
        Arc::clone(&self.state.signaling)
    }

    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let app = http::router(self.state, &self.config);
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await
    }
}
