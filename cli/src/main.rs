//! The `oodgate` command: serve, fetch data, build indexes, evaluate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oodgate_lab::bench;
use oodgate_server::config::{Config, LogFormat};

mod commands;

#[derive(Parser)]
#[command(
    name = "oodgate",
    version,
    about = "Classify digits, reject what the model does not know."
)]
struct Cli {
    /// TOML config file (defaults, then this file, then OODGATE_... variables).
    #[arg(long, global = true, env = "OODGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service on the configured model.
    Serve,
    /// Datasets: download (with checksums) into the cache, or check the mirror named by
    /// OODGATE_DATA_DIR; write a synthetic evaluation set.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// The LOF index of the configured model.
    Index {
        #[command(subcommand)]
        action: IndexAction,
    },
    /// The seed article's tables for the committed models (Markdown, and JSON with --json).
    Eval {
        /// Model folders; default: every model under models/ whose card names the dataset.
        #[arg(long = "model")]
        models: Vec<PathBuf>,
        /// The in-distribution dataset (mnist or fashion-mnist): LOF reference its training
        /// set, its test set the images to accept; default: the models' cards', else mnist.
        #[arg(long)]
        dataset: Option<String>,
        /// LOF neighbours.
        #[arg(long, default_value_t = 20)]
        k: usize,
        /// Only the first N images of every set (a quick check, not the real table).
        #[arg(long)]
        limit: Option<usize>,
        /// Skip LOF on raw pixels (the slowest part).
        #[arg(long)]
        no_input_space: bool,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The seed article's figures as PNG: t-SNE maps, misclassified digits, LOF score
    /// histograms and ROC curves.
    Report {
        /// Output folder.
        #[arg(long, default_value = "docs/figures")]
        out: PathBuf,
        /// The model of the LOF figures, the misclassified grid and the third t-SNE map;
        /// default: the configured model.dir.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The plain CNN of the second t-SNE map.
        #[arg(long, default_value = "models/mnist-plain")]
        plain_model: PathBuf,
        /// MNIST test images in the t-SNE maps (a seeded random sample).
        #[arg(long, default_value_t = 5000)]
        sample: usize,
        /// Seed of the sample.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// LOF neighbours.
        #[arg(long, default_value_t = 20)]
        k: usize,
        /// Only the first N images of every set (a quick check, not the real figures).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Exit 0 if the URL answers 2xx (a container health check without curl).
    Probe {
        #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
    /// Write the index's training embeddings and the test sets' embeddings as .npy files
    /// (for checking against scikit-learn).
    ExportEmbeddings {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// The performance harness (`make bench`): limits, LOF against scikit-learn, the seed's
    /// Keras stack, the service over loopback gRPC, latency, start-up; writes BENCHMARKS.md.
    Bench {
        #[command(flatten)]
        options: bench::BenchOptions,
        /// Measure nothing: write the report again from this results.json.
        #[arg(long)]
        from_json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum IndexAction {
    /// Embed a gate's reference set, fit LOF (and build the HNSW graph when index.search
    /// is hnsw, or with --graph), save the artifact
    /// (with the model's and gate config's hashes, the set's fingerprint and each item's
    /// origin). Default set: the gate's [reference], or MNIST train for a model folder
    /// without gate.toml.
    Build {
        /// The gate (model folder); default: the configured model.dir.
        #[arg(long)]
        gate: Option<PathBuf>,
        /// The reference set: folder:DIR (one subfolder per class), idx:IMAGES,LABELS,
        /// cifar10:FILE[,FILE...], npy:EMBEDDINGS[,LABELS] or dataset:NAME[/SPLIT].
        #[arg(long)]
        reference: Option<oodgate_server::gate::Source>,
        /// A held-out in-distribution set (same forms) that fixes the default threshold
        /// at --false-rejection-rate.
        #[arg(long)]
        calibration: Option<oodgate_server::gate::Source>,
        /// With --calibration: the share of it the default threshold rejects.
        #[arg(long, default_value_t = 0.01, requires = "calibration")]
        false_rejection_rate: f64,
        /// Leave unreadable reference images out (counted and recorded) instead of refusing.
        #[arg(long)]
        skip_unreadable: bool,
        /// Also build the HNSW graph when the configuration searches exactly (for a file
        /// served elsewhere with index.search = "hnsw").
        #[arg(long)]
        graph: bool,
        /// Where to write it; default: the gate folder's index.lof (a folder with
        /// gate.toml), else the configured index path.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DataAction {
    /// Make MNIST, Fashion-MNIST and CIFAR-10 available.
    Fetch,
    /// Write a synthetic near-digit set (drawn from installed Debian fonts) as IDX files:
    /// OUT/SET-images-idx3-ubyte, OUT/SET-labels-idx1-ubyte and OUT/SET-classes.txt (the
    /// class name of each label, one a line).
    Synth {
        /// Which set.
        #[arg(long, value_parser = ["letters", "doodles", "typed-digits"])]
        set: String,
        /// Output folder (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Seed; default: the set's own, which `oodgate eval` and `oodgate-replay` use.
        #[arg(long)]
        seed: Option<u64>,
        /// Also write a contact sheet of the first 400 images to this PNG file.
        #[arg(long)]
        preview: Option<PathBuf>,
    },
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},hnsw_rs=warn", config.log.level))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `oodgate serve`: binds the configured addresses, turns SIGHUP into a reload and
/// SIGINT or SIGTERM into a shutdown, and runs the service until it ends.
fn serve(config: &Config, file: Option<PathBuf>) -> anyhow::Result<()> {
    use oodgate_server::serve::{self, Listeners, Signal};
    use tokio::signal::unix::{SignalKind, signal};

    tokio::runtime::Runtime::new()?.block_on(async {
        // Listened for before anything else, so no signal is missed.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let listeners = Listeners::bind(config).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let (name, sent) = tokio::select! {
                    _ = term.recv() => ("SIGTERM", Signal::Shutdown),
                    _ = int.recv() => ("SIGINT", Signal::Shutdown),
                    _ = hup.recv() => ("SIGHUP", Signal::Reload),
                };
                tracing::info!(signal = name, "signal received");
                if tx.send(sent).await.is_err() {
                    return;
                }
            }
        });
        serve::run(config.clone(), file, listeners, rx).await
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    init_logging(&config);
    match cli.command {
        Command::Serve => {
            tracing::info!(config = %serde_json::to_string(&config.redacted())?, "effective configuration");
            serve(&config, cli.config)
        }
        Command::Index {
            action:
                IndexAction::Build {
                    gate,
                    reference,
                    calibration,
                    false_rejection_rate,
                    skip_unreadable,
                    graph,
                    out,
                },
        } => {
            let mut config = config;
            if let Some(dir) = gate {
                config.model.dir = dir;
            }
            if !(false_rejection_rate > 0.0 && false_rejection_rate <= 0.5) {
                anyhow::bail!(
                    "--false-rejection-rate must be in (0, 0.5], got {false_rejection_rate}"
                );
            }
            let options = oodgate_server::load::IndexOptions {
                reference,
                calibration: calibration.map(|c| (c, false_rejection_rate)),
                skip_unreadable,
                progress: true,
                graph,
            };
            commands::build_index(&config, out, options)
        }
        Command::Eval {
            models,
            dataset,
            k,
            limit,
            no_input_space,
            json,
        } => commands::eval(
            &config,
            models,
            dataset.as_deref(),
            k,
            limit,
            !no_input_space,
            json,
        ),
        Command::Report {
            out,
            model,
            plain_model,
            sample,
            seed,
            k,
            limit,
        } => commands::report(
            &config,
            oodgate_lab::report::ReportOptions {
                out,
                model: model.unwrap_or_else(|| config.model.dir.clone()),
                plain_model,
                sample,
                seed,
                k,
                limit,
                progress: true,
            },
        ),
        Command::Probe { url } => {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(std::time::Duration::from_secs(5)))
                .build()
                .new_agent();
            let response = agent.get(&url).call()?;
            println!("{url}: {}", response.status());
            Ok(())
        }
        Command::ExportEmbeddings { out } => oodgate_lab::export::run(&config, &out),
        Command::Bench {
            options,
            from_json: Some(results),
        } => bench::rewrite(&results, &options.out),
        Command::Bench {
            options,
            from_json: None,
        } => bench::run(&config, cli.config.as_deref(), &options),
        Command::Data {
            action:
                DataAction::Synth {
                    set,
                    out,
                    seed,
                    preview,
                },
        } => commands::synth(&set, &out, seed, preview.as_deref()),
        Command::Data {
            action: DataAction::Fetch,
        } => {
            use oodgate_datasets::{DataDir, DatasetId};
            let dir = DataDir::from_env()?;
            dir.ensure(
                &[
                    DatasetId::Mnist,
                    DatasetId::FashionMnist,
                    DatasetId::Cifar10,
                ],
                true,
            )?;
            println!("datasets ready in {}", dir.root().display());
            Ok(())
        }
    }
}

/// The error and its causes on one line, each said once: some error types already
/// include their source in their message, and some (TOML parse errors) span lines.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole cause chain: start-up errors must be readable.
            eprintln!("oodgate: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
