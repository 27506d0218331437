//! The effective configuration: built-in defaults, then the TOML file, then `DATABASE_URL`, then `SLUICE_*`
//! environment variables (`SLUICE_HTTP__LISTEN` sets `http.listen`: sections are separated by a double
//! underscore), then command-line flags. Unknown keys are refused, so a typo is an error, not a silent default.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use sluice_controlplane::config::{
    AccessConfig, AnalyticsConfig, AuthConfig, ChatConfig, DatabaseConfig, DataplaneConfig, HttpConfig, LimitsConfig,
    StorageConfig,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded database, local object storage and generated secrets live. Relative paths in other
    /// sections are under it.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub http: HttpConfig,
    /// Who may create meetings, join them by link and read metrics.
    pub access: AccessConfig,
    /// Request rates and open signaling sessions.
    pub limits: LimitsConfig,
    /// Files shared in chat: size limit, retention, download links.
    pub chat: ChatConfig,
    /// Analytics: how long events are kept.
    pub analytics: AnalyticsConfig,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub dataplane: DataplaneConfig,
    pub turn: sluice_turn::TurnConfig,
    pub recorder: sluice_recorder::RecorderConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("sluice-data"),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            access: AccessConfig::default(),
            limits: LimitsConfig::default(),
            chat: ChatConfig::default(),
            analytics: AnalyticsConfig::default(),
            database: DatabaseConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            dataplane: DataplaneConfig::default(),
            turn: sluice_turn::TurnConfig::default(),
            recorder: sluice_recorder::RecorderConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `sluice_controlplane=debug,info`, ... `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// One `key = value` from a command-line flag, applied last.
pub type Override = (&'static str, figment::value::Value);

/// Environment variables with this prefix are the test suite's, not configuration.
const TEST_ENV_PREFIX: &str = "test_";

pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<Config, String> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(format!("the configuration file {} does not exist", file.display()));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    figment = figment.merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into())).merge(
        Env::prefixed("SLUICE_")
            .ignore(&["config"])
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with(TEST_ENV_PREFIX))
            .split("__"),
    );
    for (key, value) in overrides {
        figment = figment.merge(Serialized::default(key, value.clone()));
    }
    figment.extract::<Config>().map_err(describe)
}

/// figment says which key and which source; say it in one line per problem, naming the file or variable.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(figment::Source::File(path)) => format!(" in {}", path.display()),
                _ if e.metadata.as_ref().is_some_and(|m| m.name.contains("SLUICE_")) => {
                    format!(" from the environment variable SLUICE_{}", e.path.join("__").to_uppercase())
                }
                _ if key == "database.url" => " from the environment variable DATABASE_URL".to_string(),
                _ => String::new(),
            };
            let at = if key.is_empty() { String::new() } else { format!(" `{key}`") };
            format!("invalid configuration{at}{source}: {}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// The data directory made absolute, so log lines and stored paths do not depend on the working directory.
    pub fn absolute_data_dir(&self) -> PathBuf {
        std::path::absolute(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone())
    }

    /// TOML of the effective configuration with secrets replaced.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.auth.token_secret.is_empty() {
            shown.auth.token_secret = "<redacted>".into();
        }
        if !shown.storage.secret_access_key.is_empty() {
            shown.storage.secret_access_key = "<redacted>".into();
        }
        shown.database.url = sluice_controlplane::store::redact_url(&shown.database.url);
        for secret in &mut shown.turn.secrets {
            *secret = "<redacted>".into();
        }
        toml::to_string_pretty(&shown).expect("the configuration serialises to TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_without_any_file() {
        let config = load(None, &[]).unwrap();
        assert_eq!(config.http.listen.port(), 8080);
        assert!(config.database.url.starts_with("sqlite://"));
    }

    #[test]
    fn file_then_flags_override_in_order_and_typos_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(&file, "[http]\nlisten = \"127.0.0.1:9000\"\n[database]\nmax_connections = 3\n").unwrap();
        let config = load(Some(&file), &[("http.listen", "127.0.0.1:9100".into())]).unwrap();
        assert_eq!(config.http.listen.port(), 9100);
        assert_eq!(config.database.max_connections, 3);

        std::fs::write(&file, "[http]\nlisten_addr = \"x\"\n").unwrap();
        let err = load(Some(&file), &[]).unwrap_err();
        assert!(err.contains("listen_addr") && err.contains("sluice.toml"), "{err}");

        std::fs::write(&file, "[database]\nmax_connections = \"many\"\n").unwrap();
        let err = load(Some(&file), &[]).unwrap_err();
        assert!(err.contains("database.max_connections"), "{err}");

        let err = load(Some(&dir.path().join("missing.toml")), &[]).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn printed_config_hides_secrets() {
        let mut config = Config::default();
        config.auth.token_secret = "x".repeat(40);
        config.database.url = "postgres://u:pw@h/db".into();
        config.turn.secrets = vec!["turn-secret-turn-secret".into()];
        let text = config.to_redacted_toml();
        assert!(!text.contains(&"x".repeat(40)) && !text.contains("pw@"), "{text}");
        assert!(!text.contains("turn-secret-turn-secret"), "{text}");
    }
}
