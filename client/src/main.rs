//! `oodgate-replay`: replays MNIST, Fashion-MNIST and CIFAR-10 test, the synthetic
//! near-digit sets (letters, doodles, typed digits), or any IDX file or image folder
//! through a running oodgate and prints the seed's table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use oodgate_datasets::DataDir;
use oodgate_replay::replay::{ClientTls, Target};
use oodgate_replay::{ReplayOptions, ReplaySet, Summary, Threshold};

#[derive(Parser)]
#[command(
    name = "oodgate-replay",
    version,
    about = "Replay image sets through an oodgate server."
)]
struct Cli {
    /// Sets to send: mnist, fashion-mnist, cifar10 (test splits); letters, doodles,
    /// typed-digits (synthetic near-digit sets, generated at their default seeds from the
    /// Debian fonts that `scripts/setup.sh test` installs); idx:IMAGES[,LABELS]; folder:DIR.
    /// The table adds, for each set, the rejection at the threshold that accepts 99 % of
    /// the reference set and, for digit sets, the fraction accepted and classified right.
    #[arg(default_values_t = ["mnist".to_string(), "fashion-mnist".into(), "cifar10".into()])]
    sets: Vec<String>,
    /// Server address.
    #[arg(long, env = "OODGATE_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// The server's gRPC Unix socket (its `server.grpc_uds`); when given, --addr is not used.
    #[arg(long, conflicts_with = "ca")]
    uds: Option<PathBuf>,
    /// PEM CA certificate of the server (TLS; use an https:// address).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// PEM client certificate and key, for servers that require one (mTLS).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Server name to check its certificate against (default: the address's host).
    #[arg(long)]
    tls_domain: Option<String>,
    /// Bearer token, if the server requires one.
    #[arg(long, env = "OODGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Concurrent streams.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Images per request.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Requests per stream awaiting verdicts at once.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Images per second over all streams (default: as fast as the server answers).
    #[arg(long)]
    rate: Option<f64>,
    /// Source label for metrics (default: each set's name).
    #[arg(long)]
    source: Option<String>,
    /// The gate to send every request to (default: the server's default gate).
    #[arg(long, env = "OODGATE_GATE", default_value = "")]
    gate: String,
    /// Threshold as a contamination in (0, 0.5] (default: the server's).
    #[arg(long, conflicts_with = "false_rejection_rate")]
    contamination: Option<f64>,
    /// Threshold as a false-rejection rate on the training set, in (0, 0.5].
    #[arg(long)]
    false_rejection_rate: Option<f64>,
    /// The in-distribution set for AUROC (default: the first digit set).
    #[arg(long)]
    reference: Option<String>,
    /// Send only the first N images of each set.
    #[arg(long)]
    limit: Option<usize>,
    /// Wait up to this many seconds for the server to report SERVING.
    #[arg(long, default_value_t = 0)]
    wait_seconds: u64,
    /// Also write the summary as JSON to this file ("-" for stdout, instead of the table).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let data = DataDir::from_env()?;
    let mut sets = Vec::new();
    for spec in &cli.sets {
        let mut set = ReplaySet::load(spec, &data)?;
        if let Some(n) = cli.limit {
            set.truncate(n);
        }
        sets.push(set);
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let tls = match &cli.ca {
        Some(ca) => Some(ClientTls {
            ca: read(ca)?,
            identity: match (&cli.cert, &cli.key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            },
            domain: cli.tls_domain.clone(),
        }),
        None => None,
    };
    let endpoint = match &cli.uds {
        Some(path) => format!("{}{}", oodgate_replay::replay::UNIX_SCHEME, path.display()),
        None => cli.addr.clone(),
    };
    let target = Target {
        endpoint,
        tls,
        token: cli.token.clone(),
    };
    if cli.wait_seconds > 0 {
        oodgate_replay::wait_until_serving(target.clone(), Duration::from_secs(cli.wait_seconds))
            .await?;
    }
    let options = ReplayOptions {
        streams: cli.streams,
        batch_size: cli.batch_size,
        window: cli.window,
        rate: cli.rate,
        source: cli.source,
        gate: cli.gate,
        threshold: cli
            .contamination
            .map(Threshold::Contamination)
            .or(cli.false_rejection_rate.map(Threshold::FalseRejectionRate)),
        progress: !cli.quiet,
    };
    let sets = Arc::new(sets);
    let replay = oodgate_replay::replay(target, sets.clone(), options).await?;
    let summary = Summary::new(&replay, &sets, cli.reference.as_deref());
    match &cli.json {
        Some(path) if path.as_os_str() == "-" => {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Some(path) => {
            std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")?;
            print!("{}", summary.markdown());
        }
        None => print!("{}", summary.markdown()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("oodgate-replay: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oodgate-replay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
