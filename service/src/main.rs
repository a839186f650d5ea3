//! The `oodgate` command: serve, fetch data, build indexes, evaluate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oodgate::config::{Config, LogFormat};
use oodgate::embed::{Embedder, SessionOptions};
use oodgate::model::ModelFiles;
use oodgate::runtime;

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
    /// Datasets: download (with checksums) into the cache, or check the mirror named by OODGATE_DATA_DIR.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
}

#[derive(Subcommand)]
enum DataAction {
    /// Make MNIST, Fashion-MNIST and CIFAR-10 available.
    Fetch,
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(config: &Config) -> anyhow::Result<()> {
    let env = runtime::environment(Some(&config.model.ort_dylib_path))?;
    let files = ModelFiles::load(&config.model.dir)?;
    let options = SessionOptions {
        intra_threads: config.model.intra_threads,
        optimization_level: config.model.optimization_level,
    };
    let embedder = Embedder::load(env, &files.onnx_path, options)?;
    tracing::info!(
        model = %files.name,
        sha256 = %files.sha256,
        layout = embedder.input.layout.as_str(),
        height = embedder.input.height,
        width = embedder.input.width,
        channels = embedder.input.channels,
        embedding_dim = embedder.embedding_dim,
        classes = embedder.classes,
        "model loaded"
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        tokio::signal::ctrl_c().await?;
        tracing::info!("shutting down");
        anyhow::Ok(())
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    init_logging(&config);
    match cli.command {
        Command::Serve => {
            tracing::info!(config = %serde_json::to_string(&config)?, "effective configuration");
            serve(&config)
        }
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole cause chain: start-up errors must be readable.
            eprintln!("oodgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
