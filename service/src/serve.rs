//! `oodgate serve`: listen at once, load the model and index in the background,
//! report SERVING through gRPC health only when they are loaded, and shut down
//! gracefully on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::Config;
use crate::detector::Detector;
use crate::grpc::{DetectorServer, DetectorService};
use crate::http::{self, HttpState};
use crate::metrics;
use crate::pipeline::Pipeline;

/// The health service name clients check (`grpc.health.v1`), besides "" (the server).
pub const HEALTH_SERVICE: &str =
    <DetectorServer<DetectorService> as tonic::server::NamedService>::NAME;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let metrics_handle = metrics::install()?;
    metrics::spawn_upkeep(metrics_handle.clone());
    let pipeline = Arc::new(Pipeline::new(&config));
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(oodgate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("gRPC reflection")?;

    let addr: SocketAddr = config.server.grpc_addr.parse()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // Tests and scripts read this line to find the port when grpc_addr asks for port 0.
    tracing::info!(addr = %local, "gRPC listening");

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(DetectorService::new(pipeline.clone(), &config).into_server(&config))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        });
    let http_addr: SocketAddr = config.server.http_addr.parse()?;
    let http_listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen on {http_addr}"))?;
    tracing::info!(addr = %http_listener.local_addr()?, "HTTP listening");
    let app = http::router(HttpState::new(pipeline.clone(), metrics_handle, &config));
    let mut http_stop = stop_tx.subscribe();
    let http = axum::serve(http_listener, app).with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    });
    // Both servers as one task: either failing ends the service.
    let mut server = tokio::spawn(async move {
        let (grpc, http) = tokio::join!(server, http.into_future());
        grpc.context("gRPC server")?;
        http.context("HTTP server")?;
        anyhow::Ok(())
    });

    let loading = tokio::task::spawn_blocking({
        let config = config.clone();
        move || Detector::from_config(&config)
    });
    tokio::select! {
        loaded = loading => {
            let detector = loaded.context("loading the model panicked")??;
            log_loaded(&detector);
            metrics::set_loaded(&detector, &config);
            pipeline.set_detector(Arc::new(detector));
            set_health(&health, ServingStatus::Serving).await;
            tracing::info!("ready");
        }
        signal = signals.recv() => {
            tracing::info!(signal, "stopped while loading");
            return Ok(());
        }
        ended = &mut server => {
            ended??;
            anyhow::bail!("the gRPC server stopped while the model was loading");
        }
    }

    tokio::select! {
        signal = signals.recv() => {
            tracing::info!(signal, "shutting down: no new connections; finishing in-flight requests");
        }
        ended = &mut server => {
            ended??;
            anyhow::bail!("the gRPC server stopped unexpectedly");
        }
    }
    set_health(&health, ServingStatus::NotServing).await;
    metrics::set_not_ready();
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    match tokio::time::timeout(grace, server).await {
        Ok(ended) => {
            ended??;
            tracing::info!("stopped");
        }
        Err(_) => tracing::warn!(
            seconds = grace.as_secs(),
            "grace period over with streams still open; exiting"
        ),
    }
    Ok(())
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(HEALTH_SERVICE, status).await;
}

/// SIGINT and SIGTERM, listened for from the start so none is missed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn log_loaded(detector: &Detector) {
    let embedder = &detector.embedder;
    tracing::info!(
        model = %detector.model.name,
        sha256 = %detector.model.sha256,
        layout = embedder.input.layout.as_str(),
        height = embedder.input.height,
        width = embedder.input.width,
        channels = embedder.input.channels,
        embedding_dim = embedder.embedding_dim,
        index_size = detector.index.len(),
        k = detector.index.k(),
        threshold = detector.default_threshold,
        "model and index loaded"
    );
}
