//! `sluice`: one binary for every part of the media server. `sluice serve` runs them all in one process with
//! embedded defaults; the other subcommands run one part each, or help operate it.

mod config;
mod security;

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sluice_controlplane::ids;
use sluice_controlplane::server::{HttpServer, Services};
use sluice_controlplane::signaling::Signaling;
use sluice_controlplane::store::{self, Role};
use sluice_controlplane::tokens::{TokenRequest, Tokens};
use sluice_dataplane::core::DtlsIdentity;
use sluice_dataplane::runtime::{Runtime, RuntimeEvent};
use sluice_turn::runtime::TurnRuntime;

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
    /// Run the TURN/STUN relay alone (configured by the `[turn]` section; it shares `turn.secrets` with the
    /// control plane that hands out credentials).
    Turn,
    /// Run the recorder alone.
    Recorder,
    /// Apply the database migrations this binary knows, then exit. `serve` also does this at start-up.
    Migrate(DatabaseArgs),
    /// Mint a meeting token for scripts and tests, signed with the server's secret.
    Token(TokenArgs),
    /// Create, list and revoke API keys for applications (kept hashed in the database).
    Apikey(ApikeyArgs),
    /// Benchmarks and the load generator (figures as ratios measured side by side in one run).
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct BenchArgs {
    #[command(subcommand)]
    scenario: BenchScenario,
}

#[derive(Debug, Subcommand)]
enum BenchScenario {
    /// 1 -> N fan-out on loopback through one Sluice worker and a bare UDP forwarder on the same I/O path:
    /// CPU time per sent packet, the rate one core reaches, and time-in-SFU p50/p99 at half that rate.
    Fanout(FanoutArgs),
    /// Synthetic participants join one meeting through signaling, ICE, DTLS and SRTP as browsers do, publish and
    /// receive: joins, time to first media, loss, one-way delay, and the server's CPU per forwarded packet.
    Meeting(MeetingArgs),
    /// `sluice turn` and coturn side by side under the same `turnutils_uclient` load on loopback: relayed packets
    /// per server CPU-second and round-trip time through the relay.
    Turn(TurnBenchArgs),
    /// Quality of experience on impaired links with real browsers: a publisher and headless Chromium subscribers
    /// in network namespaces, one subscriber's downlink following a schedule of rate caps and loss; per second
    /// frame height, freezes, concealed audio, loss, RTT and the server's estimate and layers; a table, JSON and
    /// an SVG plot. Needs root, chromium, chromedriver and ffmpeg.
    Qoe(QoeArgs),
}

#[derive(Debug, Args)]
struct QoeArgs {
    /// `rfc8867` (unlimited, 1 Mbit/s, 350 kbit/s, unlimited), `loss` (5% random loss) or `short` (one 1 Mbit/s
    /// step).
    #[arg(long, default_value = "rfc8867")]
    schedule: sluice_bench::qoe::Schedule,
    /// Subscriber browsers; the first one's downlink is impaired.
    #[arg(long, default_value_t = 3)]
    subscribers: usize,
    /// The publisher's capture height (720 or 360).
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Write the report (every sample, summaries, targets) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the plot here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TurnBenchArgs {
    /// `turnutils_uclient` processes at once.
    #[arg(long, default_value_t = 4)]
    processes: usize,
    /// Client pairs per process.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Messages per client.
    #[arg(long, default_value_t = 400)]
    messages: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 200)]
    bytes: usize,
    /// Milliseconds between one client's messages.
    #[arg(long, default_value_t = 5)]
    interval_ms: u32,
    /// Alternating rounds per server.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Relay workers for `sluice turn`.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Also run these variants of `sluice turn` in every round: `mmsg` (its epoll path, `turn.io = "mmsg"`) and
    /// `no-hairpin` (relay-to-relay datagrams through the kernel, `turn.hairpin = false`); targets
    /// `sluice-mmsg`, `sluice-no-hairpin`.
    #[arg(long, value_delimiter = ',')]
    variants: Vec<sluice_bench::turn::Variant>,
    /// Also write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct MeetingArgs {
    /// A built-in scenario; the flags below override its figures.
    #[arg(long, value_enum)]
    scenario: Option<MeetingScenario>,
    /// Participants per meeting [default: 10, or the scenario's].
    #[arg(long)]
    participants: Option<usize>,
    /// How many of them publish; the rest only subscribe [default: 2, or the scenario's].
    #[arg(long)]
    publishers: Option<usize>,
    /// Meetings run at once [default: 1, or the scenario's].
    #[arg(long)]
    meetings: Option<usize>,
    /// Seconds over which the joins are spread [default: 0, all at once, or the scenario's].
    #[arg(long)]
    ramp_secs: Option<f64>,
    /// Seconds of media.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Packets per second per publisher [default: 200, or the scenario's].
    #[arg(long)]
    pps: Option<u32>,
    /// A running server's base URL; without it the bench starts `sluice serve` (embedded defaults, a temp
    /// directory, loopback) and measures its CPU time too.
    #[arg(long)]
    url: Option<String>,
    /// What the participants go through: `sluice`, `janus` (Janus's VideoRoom, which the bench starts; Debian
    /// package `janus`), or `bare-udp` (bare UDP forwarders, one per meeting, on the dataplane's I/O path: no
    /// signaling, crypto or logic; the floor).
    #[arg(long, value_enum, default_value = "sluice")]
    target: MeetingTarget,
    /// Run the scenario through Sluice, `bare-udp` and Janus (when installed), alternately, `--rounds` times
    /// each, and print the ratios.
    #[arg(long)]
    compare: bool,
    /// Rounds per target with `--compare`.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Publishers send VP8-shaped frames in three simulcast layers, as Chrome sends a 720p camera (150, 500
    /// and 1500 kbit/s at 30 fps, keyframes at the start and when asked), instead of `--pps` packets; subscribers
    /// receive the top layer. Sluice only.
    #[arg(long)]
    simulcast: bool,
    /// Run once per participant count in this list (e.g. `5,10,20`), overriding `--participants`.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// Write an SVG chart of CPU per packet and delay against subscribers, one line per target.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MeetingTarget {
    Sluice,
    #[value(name = "bare-udp")]
    BareUdp,
    Janus,
}

/// Built-in meeting scenarios.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MeetingScenario {
    /// A webinar: 1 publisher, 50 subscribers.
    #[value(name = "1toN")]
    OneToN,
    /// A meeting where everyone publishes: 8 of 8.
    #[value(name = "NxN")]
    NxN,
    /// 10 meetings of 4, everyone publishing.
    #[value(name = "many-small")]
    ManySmall,
    /// 200 participants joining one meeting over 10 s, 1 publisher at 50 pps.
    #[value(name = "join-storm")]
    JoinStorm,
}

impl MeetingScenario {
    /// Participants, publishers, meetings, ramp seconds, packets per second.
    fn figures(scenario: Option<MeetingScenario>) -> (usize, usize, usize, f64, u32) {
        match scenario {
            None => (10, 2, 1, 0.0, 200),
            Some(MeetingScenario::OneToN) => (51, 1, 1, 0.0, 200),
            Some(MeetingScenario::NxN) => (8, 8, 1, 0.0, 100),
            Some(MeetingScenario::ManySmall) => (4, 4, 10, 0.0, 100),
            Some(MeetingScenario::JoinStorm) => (200, 1, 1, 10.0, 50),
        }
    }
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// Subscriber counts to run.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    subscribers: Vec<usize>,
    /// I/O paths to run (uring, mmsg).
    #[arg(long, value_delimiter = ',', default_value = "uring,mmsg")]
    io: Vec<sluice_dataplane::runtime::IoMode>,
    /// GSO settings to run (on, off).
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    gso: Vec<OnOff>,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Sent packets per second offered at saturation (more than one core forwards).
    #[arg(long, default_value_t = 1_200_000)]
    offered_pps: u64,
    /// CPU the forwarding thread is pinned to; the load generator is pinned to the other ones.
    #[arg(long, default_value_t = 1)]
    worker_cpu: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address for HTTP, signaling and the web client [config: http.listen].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// URL browsers reach this server at, used in join links [config: http.public_url].
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// The dataplane's I/O path: auto, uring or mmsg [config: dataplane.io].
    #[arg(long, value_name = "PATH")]
    io: Option<String>,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Serve HTTPS with a certificate generated for this machine (kept in the data directory; browsers warn),
    /// for a quick trial on a LAN; prints its fingerprint [config: http.self_signed].
    #[arg(long)]
    self_signed: bool,
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
struct ApikeyArgs {
    #[command(subcommand)]
    action: ApikeyAction,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Debug, Subcommand)]
enum ApikeyAction {
    /// Make a key and print it once (only its hash is kept).
    Create {
        /// What the key is for, shown in logs and listings.
        #[arg(long)]
        name: String,
        /// create_meetings, mint_tokens, read_analytics, operate (repeat or separate with commas).
        #[arg(long = "scope", value_delimiter = ',', required = true, value_parser = parse_scope)]
        scopes: Vec<sluice_controlplane::apikeys::Scope>,
    },
    /// Every key with its scopes, creation and revocation times (never a secret).
    List,
    /// Stop a key at once, on every node sharing the database.
    Revoke {
        /// The key's id (`sk_<id>_...`), or the whole key.
        id: String,
    },
}

fn parse_scope(s: &str) -> Result<sluice_controlplane::apikeys::Scope, String> {
    sluice_controlplane::apikeys::Scope::parse(s)
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The meeting the token admits to.
    #[arg(long, value_name = "ID", required_unless_present_any = ["creator", "operator"])]
    meeting: Option<String>,
    /// A creator token instead: it admits to no meeting and lets its holder create meetings under
    /// `access.create_meetings = "creator_token"`.
    #[arg(long, conflicts_with_all = ["meeting", "role"])]
    creator: bool,
    /// An operator token instead: it reads every meeting's analytics (`/analytics`, `/dashboard`) and admits to
    /// no meeting.
    #[arg(long, conflicts_with_all = ["meeting", "role", "creator"])]
    operator: bool,
    /// host, participant, viewer or recorder.
    #[arg(long, value_parser = parse_role)]
    role: Option<Role>,
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
            if let Some(io) = &args.io {
                overrides.push(("dataplane.io", io.clone().into()));
            }
            if args.self_signed {
                overrides.push(("http.self_signed", true.into()));
            }
            args.database.database_url.as_ref()
        }
        Command::Migrate(args) => args.database_url.as_ref(),
        Command::Apikey(args) => args.database.database_url.as_ref(),
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
            let user_id = args.user.unwrap_or_else(|| ids::prefixed("u"));
            let token = match args.meeting {
                _ if args.operator => tokens.mint_operator(&user_id, args.ttl),
                Some(meeting_id) if !args.creator => tokens.mint(&TokenRequest {
                    meeting_id,
                    user_id,
                    name: args.name,
                    role: args.role.unwrap_or(Role::Participant),
                    ttl_secs: args.ttl,
                }),
                _ => tokens.mint_creator(&user_id, args.ttl),
            };
            println!("{token}");
            Ok(())
        }
        Command::Apikey(args) => security::apikey(args.action, &config, &data_dir).await,
        Command::Sfu => not_in_this_build("sfu", "the media dataplane"),
        Command::Turn => run_turn(&config, &data_dir).await,
        Command::Recorder => run_recorder(&config, &data_dir).await,
        Command::Bench(BenchArgs { scenario: BenchScenario::Fanout(args) }) => bench_fanout(&args),
        Command::Bench(BenchArgs { scenario: BenchScenario::Meeting(args) }) => bench_meeting(&args).await,
        Command::Bench(BenchArgs { scenario: BenchScenario::Qoe(args) }) => bench_qoe(&args).await,
        Command::Bench(BenchArgs { scenario: BenchScenario::Turn(args) }) => {
            tokio::task::spawn_blocking(move || bench_turn(&args)).await?
        }
    }
}

fn bench_fanout(args: &FanoutArgs) -> anyhow::Result<()> {
    use sluice_bench::fanout::{self, Scenario};
    fanout::pin_generator(Some(args.worker_cpu));
    println!("{}", fanout::TABLE_HEADER);
    for &subscribers in &args.subscribers {
        for &io in &args.io {
            for &gso in &args.gso {
                let scenario = Scenario {
                    subscribers,
                    io,
                    gso: matches!(gso, OnOff::On),
                    phase: std::time::Duration::from_secs_f64(args.seconds),
                    offered_pps: args.offered_pps,
                    worker_cpu: Some(args.worker_cpu),
                };
                let (sluice, bare) = fanout::run(&scenario)?;
                println!("{}", fanout::row(&scenario, &sluice, &bare));
            }
        }
    }
    Ok(())
}

async fn bench_qoe(args: &QoeArgs) -> anyhow::Result<()> {
    use sluice_bench::qoe;
    if args.subscribers < 2 || args.subscribers > 6 {
        anyhow::bail!("--subscribers must be 2 to 6: one impaired and at least one to compare with");
    }
    if ![360, 720].contains(&args.height) {
        anyhow::bail!("--height must be 360 or 720");
    }
    let options = qoe::Options {
        schedule: args.schedule,
        subscribers: args.subscribers,
        height: args.height,
        sluice: std::env::current_exe()?,
    };
    // Outside the harness's namespace this returns nothing: the copy inside reported.
    let Some(report) = qoe::run(&options).await? else { return Ok(()) };
    println!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report.svg()).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

async fn bench_meeting(args: &MeetingArgs) -> anyhow::Result<()> {
    use sluice_bench::meeting;
    if args.simulcast && (args.compare || args.target != MeetingTarget::Sluice) {
        anyhow::bail!("--simulcast drives Sluice only: the bare forwarder and Janus runs send single streams");
    }
    let targets: Vec<MeetingTarget> = if args.compare {
        let janus = std::process::Command::new("janus").arg("--version").output().is_ok();
        if !janus {
            eprintln!("janus is not installed (Debian: apt install janus): comparing with bare-udp only");
        }
        let each = [MeetingTarget::Sluice, MeetingTarget::BareUdp, MeetingTarget::Janus];
        (0..args.rounds.max(1)).flat_map(|_| each).filter(|t| janus || *t != MeetingTarget::Janus).collect()
    } else {
        vec![args.target]
    };
    let sizes: Vec<Option<usize>> =
        if args.sweep.is_empty() { vec![args.participants] } else { args.sweep.iter().map(|n| Some(*n)).collect() };
    let mut reports = Vec::new();
    for (size, target) in sizes.iter().flat_map(|s| targets.iter().map(move |t| (*s, *t))) {
        let report = bench_meeting_once(args, size, target).await?;
        print!("{}", meeting::render(&report));
        println!();
        reports.push(report);
    }
    if args.compare {
        print!("{}", meeting::compare(&reports));
    }
    if let Some(path) = &args.svg {
        let title = format!("sluice bench meeting, {}", machine_description());
        std::fs::write(path, sluice_bench::chart::svg(&reports, &title))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "machine": machine_description(), "runs": reports });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    let errors: Vec<&String> = reports.iter().flat_map(|r| &r.errors).collect();
    if !errors.is_empty() {
        anyhow::bail!(
            "{} participant(s) failed: {}",
            errors.len(),
            errors.iter().map(|e| e.as_str()).collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

/// One run of the scenario through `target` (starting and stopping a local server for Sluice unless `--url`).
async fn bench_meeting_once(
    args: &MeetingArgs,
    participants_override: Option<usize>,
    target: MeetingTarget,
) -> anyhow::Result<sluice_bench::meeting::Report> {
    use sluice_bench::meeting::{self, Scenario};
    let dir = tempfile_dir()?;
    let mut child = None;
    let base_url = match (&args.url, target) {
        (_, MeetingTarget::BareUdp | MeetingTarget::Janus) => String::new(),
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, _) => {
            let (process, url) = start_local_server(&dir)?;
            child = Some(process);
            url
        }
    };
    let (participants, publishers, meetings, ramp, pps) = MeetingScenario::figures(args.scenario);
    let participants = participants_override.unwrap_or(participants).max(1);
    let scenario = Scenario {
        base_url,
        participants,
        publishers: args.publishers.unwrap_or(publishers).min(participants),
        duration: std::time::Duration::from_secs_f64(args.seconds),
        pps: args.pps.unwrap_or(pps),
        meetings: args.meetings.unwrap_or(meetings).max(1),
        ramp: std::time::Duration::from_secs_f64(args.ramp_secs.unwrap_or(ramp).max(0.0)),
        bare_udp: target == MeetingTarget::BareUdp,
        simulcast: args.simulcast,
    };
    let pid = child.as_ref().map(std::process::Child::id);
    let report = if target == MeetingTarget::Janus {
        let janus = sluice_bench::janus::JanusServer::start(&dir.join("janus"))?;
        sluice_bench::janus::run(&scenario, &janus).await
    } else {
        meeting::run(&scenario, pid).await
    };
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    report
}

fn bench_turn(args: &TurnBenchArgs) -> anyhow::Result<()> {
    use sluice_bench::turn::{self, Scenario};
    let scenario = Scenario {
        processes: args.processes.max(1),
        clients: args.clients.max(1),
        messages: args.messages.max(1),
        bytes: args.bytes.clamp(16, 1400),
        interval_ms: args.interval_ms.max(1),
        rounds: args.rounds.max(1),
        sluice: std::env::current_exe()?,
        sluice_workers: args.workers,
        variants: args.variants.clone(),
    };
    eprintln!("{}", turn::TABLE_HEADER);
    let reports = turn::run(&scenario)?;
    print!("{}", turn::render(&reports));
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "machine": machine_description(), "scenario": format!("{scenario:?}"), "runs": reports });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// CPU model, core count and kernel, for reports.
fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {} CPUs, Linux {}", std::thread::available_parallelism().map_or(0, |n| n.get()), kernel.trim())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sluice-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `sluice serve` from this very binary on a loopback port, with its data in `dir`.
fn start_local_server(dir: &std::path::Path) -> anyhow::Result<(std::process::Child, String)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SLUICE_DATAPLANE__BASE_PORT", "0")
        .env("SLUICE_TURN__UDP_LISTEN", "127.0.0.1:0")
        .env("SLUICE_TURN__TCP_LISTEN", "127.0.0.1:0")
        .env("SLUICE_DATAPLANE__BIND", "127.0.0.1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start sluice serve")?;
    let stdout = child.stdout.take().context("its output")?;
    let line = std::io::BufReader::new(stdout).lines().next().context("its ready line")??;
    let addr = line.rsplit("HTTP API on ").next().unwrap_or_default().trim_end_matches(')').to_string();
    Ok((child, format!("http://{addr}")))
}

/// Components land one at a time; until one has, its subcommand says so plainly instead of pretending.
fn not_in_this_build(command: &str, what: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "`sluice {command}`: {what} is not part of this build of Sluice yet (version {})",
        env!("CARGO_PKG_VERSION")
    )
}

async fn serve(mut config: Config, data_dir: PathBuf) -> anyhow::Result<()> {
    tracing::info!(data_dir = %data_dir.display(), "starting sluice serve");
    let tls_files = security::https_files(&config, &data_dir)?;
    // TURN over TLS shares the web certificate unless it has its own.
    if let Some(files) = &tls_files
        && config.turn.tls_cert_file.as_os_str().is_empty()
    {
        config.turn.tls_cert_file = files.cert.clone();
        config.turn.tls_key_file = files.key.clone();
    }
    let mut services = Services::open(&config.database, &config.storage, &config.auth, &data_dir).await?;
    services.access = config.access.clone();
    services.limits = config.limits.clone();
    services.chat = config.chat.clone();
    services.analytics = config.analytics.clone();
    services.tls_files = tls_files;
    let dataplane = Arc::new(start_dataplane(&config)?);
    services.dataplane = Some(Arc::clone(&dataplane));
    services.announce = config.dataplane.announce.clone();
    let turn =
        if config.turn.enabled { Some(Arc::new(start_turn(&config, &data_dir, Some(&dataplane))?)) } else { None };
    if let Some(turn) = &turn {
        services.ice = Some(Arc::new(ice_server_issuer(&config.turn, &data_dir, turn)?));
        services.turn = Some(Arc::clone(turn));
    }
    services.recorder = recorder_for_serve(&config, &data_dir, &services).await?;
    let server = HttpServer::bind(&config.http, services).await?;
    let pump = spawn_event_pump(Arc::clone(&dataplane), server.signaling());
    tracing::info!(addr = %server.local_addr(), "HTTP listening");
    println!("Sluice is ready: open {}/ in a browser (HTTP API on {})", server.public_url(), server.local_addr());
    if let Some(ops) = server.ops_addr() {
        println!("Metrics and health on http://{ops}/metrics (http.ops_listen)");
    }
    server.run(shutdown_signal()).await?;
    tracing::info!("HTTP stopped; stopping the dataplane");
    let late = tokio::task::spawn_blocking(move || dataplane.stop(DATAPLANE_STOP_TIMEOUT)).await?;
    if !late.is_empty() {
        tracing::warn!(?late, "dataplane workers did not stop in time");
    }
    let _ = pump.join();
    if let Some(turn) = turn
        && !tokio::task::spawn_blocking(move || turn.stop(DATAPLANE_STOP_TIMEOUT)).await?
    {
        tracing::warn!("TURN workers did not stop in time");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the relay. Embedded in `serve`, the SFU's own media ports are allowed peers (those ports only, not
/// their whole addresses), so a browser behind a relay reaches the SFU even where its address is in a denied
/// range (loopback, private).
fn start_turn(config: &Config, data_dir: &std::path::Path, sfu: Option<&Runtime>) -> anyhow::Result<TurnRuntime> {
    let endpoints = sfu.map(|sfu| sfu_endpoints(config, sfu)).unwrap_or_default();
    let secrets = sluice_turn::runtime::resolve_secrets(&config.turn, data_dir).context("the TURN secret")?;
    let turn = TurnRuntime::start(&config.turn, secrets, &endpoints).map_err(anyhow::Error::msg)?;
    let l = turn.listening();
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    tracing::info!(
        udp = %show(l.udp), tcp = %show(l.tcp), tls = %show(l.tls),
        relay_ip = %l.relay_ip.map_or(String::new(), |ip| ip.to_string()), "TURN relay running"
    );
    Ok(turn)
}

/// The SFU workers' media addresses: each worker's port on the announced addresses, its bound address, or
/// (bound to all) every address of this machine.
fn sfu_endpoints(config: &Config, sfu: &Runtime) -> Vec<std::net::SocketAddr> {
    let mut endpoints = Vec::new();
    for worker in 0..sfu.workers() {
        let Ok(local) = sfu.local_addr(worker) else { continue };
        let ips = if !config.dataplane.announce.is_empty() {
            let mut ips = config.dataplane.announce.clone();
            ips.push(local.ip());
            ips
        } else if local.ip().is_unspecified() {
            sluice_turn::runtime::machine_addresses()
        } else {
            vec![local.ip()]
        };
        endpoints.extend(
            ips.into_iter().filter(|ip| !ip.is_unspecified()).map(|ip| std::net::SocketAddr::new(ip, local.port())),
        );
    }
    endpoints
}

/// Credentials for joining participants: the relay's first secret, and its URLs (`turn.urls`, or derived from
/// where it listens).
fn ice_server_issuer(
    config: &sluice_turn::TurnConfig,
    data_dir: &std::path::Path,
    turn: &TurnRuntime,
) -> anyhow::Result<sluice_turn::auth::IceServerIssuer> {
    let secret = sluice_turn::runtime::resolve_secrets(config, data_dir)?.remove(0);
    let urls = if config.urls.is_empty() { turn.default_urls() } else { config.urls.clone() };
    let ttl = std::time::Duration::from_secs(config.credential_ttl_secs.max(60));
    Ok(sluice_turn::auth::IceServerIssuer::new(secret, urls, ttl))
}

/// `/metrics` (Prometheus text) and `/healthz` for `sluice turn` alone; returns the bound address.
async fn serve_turn_metrics(
    addr: std::net::SocketAddr,
    turn: Arc<TurnRuntime>,
) -> anyhow::Result<std::net::SocketAddr> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("turn.metrics_listen {addr}"))?;
    let bound = listener.local_addr()?;
    let health = Arc::clone(&turn);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let turn = Arc::clone(&turn);
                async move {
                    let mut text = String::new();
                    turn.render_metrics(&mut text);
                    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let running = health.is_running();
                async move {
                    let status =
                        if running { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
                    (status, if running { "ok" } else { "a TURN worker stopped" })
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "TURN metrics listener failed");
        }
    });
    Ok(bound)
}

/// `sluice turn`: the relay alone, until SIGTERM.
async fn run_turn(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let turn = Arc::new(start_turn(config, data_dir, None)?);
    let metrics = match sluice_turn::TurnConfig::listen_addr("metrics_listen", &config.turn.metrics_listen) {
        Ok(Some(addr)) => Some(serve_turn_metrics(addr, Arc::clone(&turn)).await?),
        Ok(None) => None,
        Err(e) => anyhow::bail!(e),
    };
    let l = turn.listening();
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    println!(
        "Sluice TURN is ready: udp {} tcp {} tls {} metrics {}",
        show(l.udp),
        show(l.tcp),
        show(l.tls),
        show(metrics)
    );
    shutdown_signal().await;
    let stats = turn.stats();
    if !tokio::task::spawn_blocking(move || turn.stop(DATAPLANE_STOP_TIMEOUT)).await? {
        anyhow::bail!("TURN workers did not stop within {DATAPLANE_STOP_TIMEOUT:?}");
    }
    let drops: Vec<String> = sluice_turn::DropReason::ALL
        .iter()
        .filter(|r| stats.dropped(**r) > 0)
        .map(|r| format!("{}={}", r.label(), stats.dropped(*r)))
        .collect();
    tracing::info!(
        allocations = stats.allocations_created,
        relayed = stats.to_peer_packets + stats.to_client_packets,
        drops = %drops.join(" "),
        "TURN stopped"
    );
    Ok(())
}

/// The recorder `serve` uses: none, a `sluice recorder` elsewhere (`recorder.remote_url`), or its own, which first
/// finishes what a restart interrupted.
async fn recorder_for_serve(
    config: &Config,
    data_dir: &std::path::Path,
    services: &Services,
) -> anyhow::Result<Option<Arc<dyn sluice_controlplane::recording::RecorderHandle>>> {
    if !config.recorder.enabled {
        return Ok(None);
    }
    if !config.recorder.remote_url.is_empty() {
        let remote =
            sluice_recorder::remote::RemoteRecorder::new(&config.recorder.remote_url).map_err(anyhow::Error::msg)?;
        tracing::info!(url = %config.recorder.remote_url, "recordings go to a separate recorder");
        return Ok(Some(Arc::new(remote)));
    }
    let recorder = local_recorder(config, data_dir, services, true).await?;
    Ok(Some(Arc::new(recorder)))
}

async fn local_recorder(
    config: &Config,
    data_dir: &std::path::Path,
    services: &Services,
    sole: bool,
) -> anyhow::Result<sluice_recorder::Recorder> {
    let recorder = sluice_recorder::Recorder::new(
        config.recorder.clone(),
        data_dir,
        Arc::clone(&services.store),
        services.blobs.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let resumed = recorder.recover(sole).await.map_err(anyhow::Error::msg).context("recovering recordings")?;
    if resumed > 0 {
        tracing::info!(resumed, "finishing recordings a restart interrupted");
    }
    Ok(recorder)
}

/// `sluice recorder`: the recorder alone, taking jobs from `sluice serve` (`recorder.remote_url` there) on
/// `recorder.listen`; the same database, object storage and token secret as the control plane.
async fn run_recorder(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let services = Services::open(&config.database, &config.storage, &config.auth, data_dir).await?;
    let recorder = local_recorder(config, data_dir, &services, false).await?;
    let addr = config.recorder.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("recorder.listen {addr}"))?;
    let bound = listener.local_addr()?;
    let app = sluice_recorder::remote::job_api(recorder.clone(), services.tokens.clone());
    println!("Sluice recorder is ready: jobs on http://{bound}");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    // Running recordings stop and flush their spools; the next start finishes them.
    recorder.stop_all();
    let deadline = std::time::Instant::now() + DATAPLANE_STOP_TIMEOUT;
    while recorder.active() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tracing::info!(still_recording = recorder.active(), "recorder stopped");
    Ok(())
}

/// How long SIGTERM waits for the workers to finish their loop turn.
const DATAPLANE_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn start_dataplane(config: &Config) -> anyhow::Result<Runtime> {
    let runtime_config = config.dataplane.runtime_config().map_err(anyhow::Error::msg)?;
    let identity = DtlsIdentity::generate().context("generate the DTLS certificate")?;
    let runtime = Runtime::start(runtime_config, identity).context("start the dataplane")?;
    let ports: Vec<String> =
        (0..runtime.workers()).filter_map(|w| runtime.local_addr(w).ok()).map(|a| a.to_string()).collect();
    tracing::info!(workers = runtime.workers(), io = runtime.io().label(), udp = %ports.join(" "), "dataplane running");
    Ok(runtime)
}

/// Drains the workers' events (which also routes keyframe requests between workers) and logs what matters to an
/// operator, until every worker has stopped.
fn spawn_event_pump(runtime: Arc<Runtime>, signaling: Arc<Signaling>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        loop {
            while let Some(event) = runtime.poll_event() {
                match event {
                    RuntimeEvent::WorkerFailed { worker, reason } => {
                        tracing::error!(worker, %reason, "dataplane worker failed; its participants are disconnected")
                    }
                    RuntimeEvent::Core { worker, event } => {
                        tracing::debug!(worker, ?event, "dataplane event");
                        signaling.dataplane_event(worker, event);
                    }
                }
            }
            if !runtime.is_running() {
                return;
            }
            runtime.wait_events(std::time::Duration::from_millis(200));
        }
    })
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
