//! Sluice's control plane: the HTTP API, meetings, tokens, the durable [`store::Store`] and object storage
//! ([`blobs::Blobs`]). It runs on tokio and never touches a media packet; the dataplane workers do that.

pub mod analytics;
pub mod apikeys;
pub mod blobs;
pub mod config;
pub mod fuzz;
pub mod http;
pub mod ids;
pub mod recording;
pub mod sdp;
pub mod server;
pub mod signaling;
pub mod store;
pub mod tls;
pub mod tokens;

/// The innermost cause of an error chain: drivers wrap the useful words ("connection refused") deep inside.
pub(crate) fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}
