//! The binary's parts of access and HTTPS: `sluice apikey` on the configured database, and the certificate the
//! HTTP listener serves (configured files or a self-signed pair).

use sluice_controlplane::store;

use crate::ApikeyAction;
use crate::config::Config;

/// `sluice apikey create|list|revoke`, on the configured database.
pub async fn apikey(action: ApikeyAction, config: &Config, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use sluice_controlplane::apikeys;
    let store = store::open(&config.database.store_options(), data_dir).await?;
    match action {
        ApikeyAction::Create { name, scopes } => {
            let new = apikeys::generate(&name, &scopes).map_err(anyhow::Error::msg)?;
            store.create_api_key(&new.row).await?;
            eprintln!(
                "API key {} ({}) created with scopes {}; it is shown once, keep it:",
                new.row.id, new.row.name, new.row.scopes
            );
            println!("{}", new.key);
        }
        ApikeyAction::List => {
            for row in store.api_keys().await? {
                println!("{}", serde_json::to_string(&apikeys::KeyListing::from(row))?);
            }
        }
        ApikeyAction::Revoke { id } => {
            let id = id.strip_prefix("sk_").map_or(id.as_str(), |rest| rest.split('_').next().unwrap_or(rest));
            if !store.revoke_api_key(id, store::now()).await? {
                anyhow::bail!("no unrevoked API key has the id {id:?} (sluice apikey list shows them)");
            }
            println!("API key {id} revoked");
        }
    }
    Ok(())
}

/// The certificate `http.listen` serves: the configured files, a self-signed pair kept in the data directory
/// (`--self-signed`, its fingerprint printed), or none (plain HTTP).
pub fn https_files(
    config: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<sluice_controlplane::tls::TlsFiles>> {
    use sluice_controlplane::tls::{self, TlsFiles};
    let http = &config.http;
    if !http.tls_cert_file.as_os_str().is_empty() || !http.tls_key_file.as_os_str().is_empty() {
        let files = TlsFiles { cert: http.tls_cert_file.clone(), key: http.tls_key_file.clone() };
        files.server_config()?;
        return Ok(Some(files));
    }
    if !http.self_signed {
        return Ok(None);
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let listen = http.listen.ip();
    if listen.is_unspecified() {
        names.extend(sluice_turn::runtime::machine_addresses().iter().map(|ip| ip.to_string()));
    } else {
        names.push(listen.to_string());
    }
    if let Some(host) = http.public_url.split("://").nth(1).and_then(|rest| rest.split(['/', ':']).next())
        && !host.is_empty()
    {
        names.push(host.trim_matches(['[', ']']).to_string());
    }
    names.sort();
    names.dedup();
    let (files, fingerprint) = tls::self_signed(&data_dir.join("self-signed"), &names)?;
    tracing::warn!(%fingerprint, cert = %files.cert.display(), "serving HTTPS with a self-signed certificate");
    eprintln!(
        "sluice: HTTPS with a self-signed certificate ({}); browsers will warn: check that it shows SHA-256 {fingerprint}",
        files.cert.display()
    );
    Ok(Some(files))
}
