//! Sluice's TURN/STUN relay. `server` is the sans-IO allocation core of one worker; `runtime` is the shell that
//! runs it on pinned worker threads with batched UDP I/O and TCP/TLS listeners. `sluice serve` embeds it;
//! `sluice turn` runs it alone. See `docs/turn.md`.

pub mod auth;
pub mod config;
pub mod filter;
pub mod fuzz;
pub mod limits;
pub mod proto;
pub mod runtime;
pub mod server;
pub mod stats;

pub use auth::RestCredential;
pub use config::TurnConfig;
pub use server::{Action, Client, Family, Now, RelayId, Relays, Server, ServerConfig, Transport};
pub use stats::{DropReason, Stats};
