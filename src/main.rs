//! `sluice`: one binary for every part of the media server. `sluice serve` runs them all in one process with
//! embedded defaults; the other subcommands run one part each, or help operate it.

mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sluice_controlplane::ids;
use sluice_controlplane::server::{HttpServer, Services};
use sluice_controlplane::store::{self, Role};
use sluice_controlplane::tokens::{TokenRequest, Tokens};

use crate::config::{Config, LogFormat, Override};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a WebRTC SFU appliance with signaling, rooms, TURN and recording."
)]
struct Cli {
    /// TOML configuration file. Every key can also be set with a SLUICE_<SECTION>__<KEY> environment variable
    /// (e.g. SLUICE_HTTP__LISTEN=0.0.0.0:8080); flags win over both.
    #[arg(short, long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the embedded database, local recordings and generated secrets [config: data_dir].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log filter such as `info` or `sluice_controlplane=debug,info` [config: log.level].
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process: HTTP API, signaling, web client, dataplane, TURN and recorder.
    Serve(ServeArgs),
    /// Run the media dataplane (SFU workers) alone.
    Sfu,
    /// Run the TURN/STUN relay alone.
    Turn,
    /// Run the recorder alone.
    Recorder,
    /// Apply the database migrations this binary knows, then exit. `serve` also does this at start-up.
    Migrate(DatabaseArgs),
    /// Mint a meeting token for scripts and tests, signed with the server's secret.
    Token(TokenArgs),
    /// Run the load generator against Sluice or another SFU.
    Bench,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address for HTTP, signaling and the web client [config: http.listen].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// URL browsers reach this server at, used in join links [config: http.public_url].
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Print the effective configuration (secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// sqlite://PATH (under the data directory) or postgres://USER:PASSWORD@HOST/DB [config: database.url;
    /// env: DATABASE_URL].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The meeting the token admits to.
    #[arg(long, value_name = "ID")]
    meeting: String,
    /// host, participant, viewer or recorder.
    #[arg(long, default_value = "participant", value_parser = parse_role)]
    role: Role,
    /// Display name shown to others.
    #[arg(long, default_value = "Guest")]
    name: String,
    /// User id (`sub`); a random one by default.
    #[arg(long, value_name = "ID")]
    user: Option<String>,
    /// Lifetime in seconds [config: auth.token_ttl_secs].
    #[arg(long, value_name = "SECS")]
    ttl: Option<u64>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}: use host, participant, viewer or recorder"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("sluice: {message}");
            return ExitCode::from(2);
        }
    };
    if let Command::Serve(args) = &cli.command
        && args.print_config
    {
        print!("{}", config.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("sluice-control").build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let mut overrides: Vec<Override> = Vec::new();
    if let Some(dir) = &cli.data_dir {
        overrides.push(("data_dir", dir.display().to_string().into()));
    }
    if let Some(level) = &cli.log {
        overrides.push(("log.level", level.clone().into()));
    }
    let database_url = match &cli.command {
        Command::Serve(args) => {
            if let Some(listen) = &args.listen {
                overrides.push(("http.listen", listen.clone().into()));
            }
            if let Some(url) = &args.public_url {
                overrides.push(("http.public_url", url.clone().into()));
            }
            args.database.database_url.as_ref()
        }
        Command::Migrate(args) => args.database_url.as_ref(),
        _ => None,
    };
    if let Some(url) = database_url {
        overrides.push(("database.url", url.clone().into()));
    }
    config::load(cli.config.as_deref(), &overrides)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&config.log.level)).unwrap_or_else(|e| {
            eprintln!("sluice: log.level {:?} is not a valid filter ({e}); using info", config.log.level);
            EnvFilter::new("info")
        });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let data_dir = config.absolute_data_dir();
    match command {
        Command::Serve(_) => serve(config, data_dir).await,
        Command::Migrate(_) => {
            let store = store::open(&config.database.store_options(), &data_dir).await?;
            let report = store.migrate().await?;
            println!("database schema is at version {} ({:?})", report.version, store.backend());
            Ok(())
        }
        Command::Token(args) => {
            let tokens = Tokens::from_config(&config.auth, &data_dir)?;
            let token = tokens.mint(&TokenRequest {
                meeting_id: args.meeting,
                user_id: args.user.unwrap_or_else(|| ids::prefixed("u")),
                name: args.name,
                role: args.role,
                ttl_secs: args.ttl,
            });
            println!("{token}");
            Ok(())
        }
        Command::Sfu => not_in_this_build("sfu", "the media dataplane"),
        Command::Turn => not_in_this_build("turn", "the TURN/STUN relay"),
        Command::Recorder => not_in_this_build("recorder", "the recorder"),
        Command::Bench => not_in_this_build("bench", "the load generator"),
    }
}

/// Components land one at a time; until one has, its subcommand says so plainly instead of pretending.
fn not_in_this_build(command: &str, what: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "`sluice {command}`: {what} is not part of this build of Sluice yet (version {})",
        env!("CARGO_PKG_VERSION")
    )
}

async fn serve(config: Config, data_dir: PathBuf) -> anyhow::Result<()> {
    tracing::info!(data_dir = %data_dir.display(), "starting sluice serve");
    let services = Services::open(&config.database, &config.storage, &config.auth, &data_dir).await?;
    let server = HttpServer::bind(&config.http, services).await?;
    tracing::info!(addr = %server.local_addr(), "HTTP listening");
    println!("Sluice is ready: open {}/ in a browser (HTTP API on {})", server.public_url(), server.local_addr());
    server.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
