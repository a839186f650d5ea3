//! Soak (bounded, loopback): concurrent streams replay MNIST test digits for
//! `OODGATE_SOAK_SECONDS` (default 45); zero lost or duplicated verdicts, no errors,
//! and the server's memory flat: the mean RSS of the last third of the run within
//! 10 % (at least 8 MB) of the first third's. Prints throughput, RSS and verdict counts
//! (`-- --nocapture`).
//!
//! `OODGATE_SOAK_SECONDS=300 cargo test --release -p oodgate-e2e --test soak -- --nocapture`

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oodgate_e2e::{Server, metric_value, mnist_test, raw_image, runtime, tail};
use oodgate_proto::v1;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

const STREAMS: usize = 8;
const BATCH: usize = 32;
const WINDOW: usize = 4;
const WARM_UP: Duration = Duration::from_secs(3);

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: u64,
    verdicts: u64,
    classified: u64,
    rejected: u64,
    errors: u64,
    /// Classified or rejected with the digit's true class (the classifier's answer).
    right_class: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.requests += o.requests;
        self.verdicts += o.verdicts;
        self.classified += o.classified;
        self.rejected += o.rejected;
        self.errors += o.errors;
        self.right_class += o.right_class;
    }
}

/// One stream: sends batches of consecutive digits (at most WINDOW unanswered) until
/// `stop`, then closes its side and takes the remaining answers. Every response is
/// checked against the request it answers (ids in order: none lost, none duplicated).
async fn stream(
    endpoint: String,
    s: usize,
    mnist: Arc<oodgate_datasets::Dataset>,
    stop: Arc<AtomicBool>,
) -> Result<Counts, String> {
    let mut client = oodgate_replay::replay::connect(&endpoint)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(WINDOW);
    let window = Arc::new(Semaphore::new(WINDOW));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(u64, usize)>();
    let sender = {
        let window = window.clone();
        let mnist = mnist.clone();
        tokio::spawn(async move {
            let mut next = s * 1250;
            for r in 0u64.. {
                let Ok(permit) = window.clone().acquire_owned().await else {
                    break;
                };
                permit.forget();
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let images = (0..BATCH)
                    .map(|n| {
                        let i = (next + n) % mnist.len();
                        raw_image(
                            &format!("s{s}-r{r}-{i}"),
                            28,
                            28,
                            1,
                            mnist.image(i).to_vec(),
                        )
                    })
                    .collect();
                let _ = sent_tx.send((r, next));
                next = (next + BATCH) % mnist.len();
                let request = v1::DetectRequest {
                    images,
                    source: "soak".into(),
                    gate: String::new(),
                    ..Default::default()
                };
                if tx.send(request).await.is_err() {
                    break;
                }
            }
            // Dropping `tx` half-closes the stream.
        })
    };
    let mut answers = client
        .detect_stream(ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("stream {s}: {e:?}"))?
        .into_inner();
    let mut counts = Counts::default();
    let mut pending = VecDeque::new();
    loop {
        let response = match answers.message().await {
            Ok(Some(response)) => response,
            Ok(None) => break,
            Err(status) => {
                return Err(format!(
                    "stream {s} ended after {} responses: {status:?}",
                    counts.requests
                ));
            }
        };
        while pending.is_empty() {
            match sent_rx.recv().await {
                Some(sent) => pending.push_back(sent),
                None => return Err(format!("stream {s}: a response to a request never sent")),
            }
        }
        let (r, first) = pending.pop_front().unwrap();
        if response.verdicts.len() != BATCH {
            return Err(format!(
                "stream {s} request {r}: {} verdicts for {BATCH} images",
                response.verdicts.len()
            ));
        }
        for (n, verdict) in response.verdicts.iter().enumerate() {
            let i = (first + n) % mnist.len();
            let id = format!("s{s}-r{r}-{i}");
            if verdict.id != id {
                return Err(format!(
                    "stream {s}: verdict {} where {id} was due",
                    verdict.id
                ));
            }
            counts.verdicts += 1;
            match oodgate_replay::replay::answer(verdict).map_err(|e| e.to_string())? {
                oodgate_replay::Answer::Accepted { class, .. } => {
                    counts.classified += 1;
                    counts.right_class += u64::from(class == u32::from(mnist.label(i)));
                }
                oodgate_replay::Answer::Rejected { class, .. } => {
                    counts.rejected += 1;
                    counts.right_class += u64::from(class == u32::from(mnist.label(i)));
                }
                oodgate_replay::Answer::Error(_) => counts.errors += 1,
            }
        }
        counts.requests += 1;
        window.add_permits(1);
    }
    sender.await.map_err(|e| e.to_string())?;
    while let Ok(sent) = sent_rx.try_recv() {
        pending.push_back(sent);
    }
    if !pending.is_empty() {
        return Err(format!(
            "stream {s}: {} requests sent and never answered",
            pending.len()
        ));
    }
    Ok(counts)
}

fn mean(samples: &[u64]) -> f64 {
    samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64
}

#[test]
fn soak_streams_lose_nothing_and_memory_stays_flat() {
    let seconds: u64 = std::env::var("OODGATE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    let server = Server::start(&[]);
    let mnist = Arc::new(mnist_test());
    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..STREAMS)
        .map(|s| {
            rt.spawn(stream(
                server.endpoint.clone(),
                s,
                mnist.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // RSS every second after the warm-up, until the end of the run.
    std::thread::sleep(WARM_UP);
    let rss_at_start = server.rss_kb();
    let mut rss = Vec::new();
    let end = started + WARM_UP + Duration::from_secs(seconds);
    while Instant::now() < end {
        rss.push(server.rss_kb().expect("server RSS"));
        std::thread::sleep(
            Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Counts::default();
    let mut failures = Vec::new();
    for task in tasks {
        match rt.block_on(task).unwrap() {
            Ok(counts) => total += counts,
            Err(e) => failures.push(e),
        }
    }
    let elapsed = started.elapsed();
    let rss_after = server.rss_kb();
    assert!(
        failures.is_empty(),
        "{failures:#?}\nserver log tail:\n{}",
        tail(&server.log_text(), 30)
    );

    let third = rss.len() / 3;
    assert!(
        third >= 3,
        "too short a run to compare: {} RSS samples",
        rss.len()
    );
    let first = mean(&rss[..third]);
    let last = mean(&rss[rss.len() - third..]);
    let metrics = server.metrics();
    println!(
        "soak {seconds} s (+{} s warm-up), {STREAMS} streams x batch {BATCH} x window {WINDOW}: \
         {} requests, {} verdicts in {:.1} s = {:.0} images/s",
        WARM_UP.as_secs(),
        total.requests,
        total.verdicts,
        elapsed.as_secs_f64(),
        total.verdicts as f64 / elapsed.as_secs_f64()
    );
    println!(
        "verdicts: {} classified, {} rejected ({:.3} %), {} errors; classifier right on {:.2} %",
        total.classified,
        total.rejected,
        100.0 * total.rejected as f64 / total.verdicts.max(1) as f64,
        total.errors,
        100.0 * total.right_class as f64 / total.verdicts.max(1) as f64
    );
    println!(
        "server RSS: {:?} kB after warm-up, mean first third {:.0} kB, last third {:.0} kB ({:+.1} %), \
         max {} kB, after the run {:?} kB ({} samples)",
        rss_at_start,
        first,
        last,
        100.0 * (last - first) / first,
        rss.iter().max().unwrap(),
        rss_after,
        rss.len()
    );

    assert_eq!(total.errors, 0, "no per-image errors on MNIST digits");
    assert_eq!(total.verdicts, total.requests * BATCH as u64);
    assert!(total.verdicts > 0);
    assert!(
        total.right_class as f64 >= 0.98 * total.verdicts as f64,
        "classifier accuracy under load"
    );
    let allowed = (0.10 * first).max(8.0 * 1024.0);
    assert!(
        last <= first + allowed,
        "RSS grew: first third {first:.0} kB, last third {last:.0} kB (allowed +{allowed:.0} kB)"
    );
    // The server counted the same.
    let counted = |outcome: &str| {
        metric_value(
            &metrics,
            &format!(r#"oodgate_images_total{{gate="digits",outcome="{outcome}",source="soak"}}"#),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(counted("classified"), total.classified as f64, "{metrics}");
    assert_eq!(counted("rejected"), total.rejected as f64, "{metrics}");
    assert_eq!(
        metric_value(&metrics, r#"oodgate_queue_images{gate="digits"}"#),
        Some(0.0),
        "{metrics}"
    );
}
