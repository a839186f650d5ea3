//! Dynamic batching: one task owns the queue of jobs from every request and stream,
//! and runs the model on batches of up to `max_batch_size` images. Each model batch
//! is then scored by LOF as a whole on the rayon pool, while the model runs the next
//! one: exact search is a matrix product, about 2.4 times cheaper per query at 256
//! queries than at a streaming request's 16.
//!
//! A batch forms from whatever queued while the model was busy. When the model is
//! free, the batcher waits (at most `max_wait`) for more images only while other
//! admitted requests are still being decoded; a lone request runs at once, so
//! batching costs single-image latency nothing.
//!
//! The batcher sees the model and LOF only through [`Scorer`] (the service's is the
//! detector), so its queueing can be tested without either.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

// Tokio's clock, not std's: tests pause and advance it.
use tokio::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::core::worker::{WorkerError, off_runtime};

/// What the batcher needs of a model and its LOF index.
pub(crate) trait Scorer: Send + Sync + 'static {
    /// A model run's output for a batch of images.
    type Embedded: Send + 'static;
    /// One image's scores.
    type Scored: Send + 'static;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs the model on `count` preprocessed images, packed back to back.
    fn embed(&self, pixels: &[f32], count: usize) -> Result<Self::Embedded, Self::Error>;

    /// Scores a model batch as a whole: one result per image, in order.
    fn score(&self, embedded: &Self::Embedded) -> Result<Vec<Self::Scored>, Self::Error>;

    /// The images of `embedded` in `rows` (ascending, disjoint), in order: the batch
    /// without those whose requesters went away during the model run.
    fn select(&self, embedded: &Self::Embedded, rows: &[Range<usize>]) -> Self::Embedded;
}

/// What one request gets back from the batcher.
pub(crate) struct BatchOutput<S: Scorer> {
    /// One per image, in submission order.
    pub scored: Vec<S::Scored>,
    /// Time between submission and the start of its model run.
    pub queue_wait: Duration,
    /// The model run's duration (shared with the other requests in the batch).
    pub embed_time: Duration,
    /// The batch's LOF scoring, from the end of the model run (shared too).
    pub lof_time: Duration,
    /// Images in the model run this request was part of.
    pub batch_images: usize,
}

/// The two stages of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// [`Scorer::embed`].
    Model,
    /// [`Scorer::score`].
    Lof,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Model => "model run",
            Stage::Lof => "LOF",
        })
    }
}

/// Why a job got no scores. Every job of a failed batch gets the same error, hence
/// the `Arc`.
#[derive(Debug, thiserror::Error)]
pub enum BatchError<E> {
    #[error("the batcher has stopped")]
    Stopped,
    /// The job was lost unanswered (the batcher or a worker went away).
    #[error("the batcher dropped the job")]
    Dropped,
    #[error("{stage} failed: {source}")]
    Failed { stage: Stage, source: Arc<E> },
    #[error("{0} panicked")]
    Panicked(Stage),
}

// By hand: a derive would ask `E: Clone`, which the `Arc` makes needless.
impl<E> Clone for BatchError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Stopped => Self::Stopped,
            Self::Dropped => Self::Dropped,
            Self::Failed { stage, source } => Self::Failed {
                stage: *stage,
                source: source.clone(),
            },
            Self::Panicked(stage) => Self::Panicked(*stage),
        }
    }
}

type Reply<S> = Result<BatchOutput<S>, BatchError<<S as Scorer>::Error>>;

struct Job<S: Scorer> {
    scorer: Arc<S>,
    pixels: Vec<f32>,
    count: usize,
    submitted: Instant,
    reply: oneshot::Sender<Reply<S>>,
}

#[derive(Debug, Clone)]
pub(crate) struct BatchSettings {
    pub max_batch_size: usize,
    pub max_wait: Duration,
    /// The gate whose batches these are, for the metrics (each gate has its batcher).
    pub gate: Arc<str>,
}

/// The requests' side of the batcher. Cheap to clone.
pub(crate) struct Batcher<S: Scorer> {
    jobs: mpsc::UnboundedSender<Job<S>>,
    /// Images admitted but not yet submitted (still decoding): worth waiting for.
    incoming: Arc<AtomicUsize>,
}

// By hand: a derive would ask `S: Clone`.
impl<S: Scorer> Clone for Batcher<S> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            incoming: self.incoming.clone(),
        }
    }
}

/// Announces images that will be submitted soon; dropping it unsubmitted withdraws them.
pub(crate) struct Ticket<S: Scorer> {
    batcher: Batcher<S>,
    count: usize,
}

impl<S: Scorer> Batcher<S> {
    /// Starts the batching task on the current tokio runtime. Admission (the bound on
    /// queued images) is the caller's; this queue only orders and merges.
    pub(crate) fn spawn(settings: BatchSettings) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let batcher = Self {
            jobs: tx,
            incoming: Arc::new(AtomicUsize::new(0)),
        };
        tokio::spawn(run(rx, settings, batcher.incoming.clone()));
        batcher
    }

    pub(crate) fn announce(&self, count: usize) -> Ticket<S> {
        self.incoming.fetch_add(count, Ordering::SeqCst);
        Ticket {
            batcher: self.clone(),
            count,
        }
    }
}

impl<S: Scorer> Ticket<S> {
    /// Queues `count` preprocessed images for the model and LOF, and waits for them.
    pub(crate) async fn score(
        self,
        scorer: Arc<S>,
        pixels: Vec<f32>,
        count: usize,
    ) -> Result<BatchOutput<S>, BatchError<S::Error>> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            scorer,
            pixels,
            count,
            submitted: Instant::now(),
            reply,
        };
        // Sent before the ticket is withdrawn, so the batcher never sees neither.
        let sent = self.batcher.jobs.send(job);
        drop(self);
        sent.map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Dropped)?
    }
}

impl<S: Scorer> Drop for Ticket<S> {
    fn drop(&mut self) {
        self.batcher
            .incoming
            .fetch_sub(self.count, Ordering::SeqCst);
    }
}

async fn run<S: Scorer>(
    mut rx: mpsc::UnboundedReceiver<Job<S>>,
    settings: BatchSettings,
    incoming: Arc<AtomicUsize>,
) {
    let mut carried: Option<Job<S>> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let deadline = Instant::now() + settings.max_wait;
        let mut images = first.count;
        let mut jobs = vec![first];
        while images < settings.max_batch_size {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(_) if incoming.load(Ordering::SeqCst) == 0 => None,
                Err(_) => tokio::select! {
                    job = rx.recv() => job,
                    _ = tokio::time::sleep_until(deadline) => None,
                },
            };
            let Some(job) = next else { break };
            // A batch runs on one model: after a reload, old and new never mix.
            if images + job.count > settings.max_batch_size
                || !Arc::ptr_eq(&job.scorer, &jobs[0].scorer)
            {
                carried = Some(job);
                break;
            }
            images += job.count;
            jobs.push(job);
        }
        // Requesters that went away while queued: their images are not run.
        jobs.retain(|job| !job.reply.is_closed());
        if !jobs.is_empty() {
            run_batch(jobs, &settings.gate).await;
        }
    }
}

/// Batches up to this many images are scored in the model run's own blocking call: at
/// low load (a lone request) two more thread hand-offs would cost more than their LOF.
const INLINE_LOF_MAX: usize = 16;

/// What a model run's blocking call hands back.
enum ModelRun<S: Scorer> {
    /// A small batch, scored in the same call (or failed there).
    Scored(Result<Vec<S::Scored>, BatchError<S::Error>>, Duration),
    /// A larger batch, for LOF on the rayon pool.
    Embedded(S::Embedded),
}

async fn run_batch<S: Scorer>(mut jobs: Vec<Job<S>>, gate: &str) {
    let scorer = jobs[0].scorer.clone();
    let images: usize = jobs.iter().map(|job| job.count).sum();
    let pixels = if jobs.len() == 1 {
        std::mem::take(&mut jobs[0].pixels)
    } else {
        jobs.iter()
            .flat_map(|job| job.pixels.iter().copied())
            .collect()
    };
    crate::metrics::record_batch(gate, images);
    let started = Instant::now();
    let run = tokio::task::spawn_blocking({
        let scorer = scorer.clone();
        move || -> Result<_, S::Error> {
            let embedded = scorer.embed(&pixels, images)?;
            let embed_time = started.elapsed();
            if images > INLINE_LOF_MAX {
                return Ok((ModelRun::<S>::Embedded(embedded), embed_time));
            }
            // Caught here so that a panic is put down to LOF, not to the model run.
            let scored =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scorer.score(&embedded)));
            let scored = match scored {
                Ok(Ok(scored)) => Ok(scored),
                Ok(Err(e)) => Err(failed(Stage::Lof, e)),
                Err(_) => Err(BatchError::Panicked(Stage::Lof)),
            };
            let lof_time = started.elapsed() - embed_time;
            Ok((ModelRun::Scored(scored, lof_time), embed_time))
        }
    })
    .await;
    let (output, embed_time) = match run {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return fail(jobs, failed(Stage::Model, e)),
        Err(_) => return fail(jobs, BatchError::Panicked(Stage::Model)),
    };
    let embedded = match output {
        ModelRun::Scored(Ok(scored), lof_time) => {
            return reply(jobs, scored, started, embed_time, lof_time, images);
        }
        ModelRun::Scored(Err(e), _) => return fail(jobs, e),
        ModelRun::Embedded(embedded) => embedded,
    };
    // Not awaited: the batcher goes on to the next model run meanwhile.
    tokio::spawn(async move {
        let lof_started = Instant::now();
        let (jobs, embedded) = without_gone(jobs, embedded, &*scorer);
        if jobs.is_empty() {
            return;
        }
        let scored = match off_runtime(move || scorer.score(&embedded)).await {
            Ok(Ok(scored)) => scored,
            Ok(Err(e)) => return fail(jobs, failed(Stage::Lof, e)),
            Err(WorkerError::Panicked) => return fail(jobs, BatchError::Panicked(Stage::Lof)),
            Err(WorkerError::Gone) => return fail(jobs, BatchError::Dropped),
        };
        reply(
            jobs,
            scored,
            started,
            embed_time,
            lof_started.elapsed(),
            images,
        );
    });
}

fn failed<E>(stage: Stage, source: E) -> BatchError<E> {
    BatchError::Failed {
        stage,
        source: Arc::new(source),
    }
}

/// Hands each job its share of the batch's scores, in submission order.
fn reply<S: Scorer>(
    jobs: Vec<Job<S>>,
    scored: Vec<S::Scored>,
    started: Instant,
    embed_time: Duration,
    lof_time: Duration,
    batch_images: usize,
) {
    let mut scored = scored.into_iter();
    for job in jobs {
        let output = BatchOutput {
            scored: scored.by_ref().take(job.count).collect(),
            queue_wait: started.saturating_duration_since(job.submitted),
            embed_time,
            lof_time,
            batch_images,
        };
        // The requester may have gone meanwhile; nothing to do then.
        let _ = job.reply.send(Ok(output));
    }
}

/// Drops the jobs whose requesters went away during the model run, and their rows:
/// no LOF work is done for them.
fn without_gone<S: Scorer>(
    jobs: Vec<Job<S>>,
    embedded: S::Embedded,
    scorer: &S,
) -> (Vec<Job<S>>, S::Embedded) {
    if jobs.iter().all(|job| !job.reply.is_closed()) {
        return (jobs, embedded);
    }
    let mut rows = Vec::new();
    let mut open = Vec::new();
    let mut at = 0;
    for job in jobs {
        let range = at..at + job.count;
        at += job.count;
        if !job.reply.is_closed() {
            rows.push(range);
            open.push(job);
        }
    }
    (open, scorer.select(&embedded, &rows))
}

fn fail<S: Scorer>(jobs: Vec<Job<S>>, error: BatchError<S::Error>) {
    tracing::error!(%error, "model run or LOF failed");
    for job in jobs {
        let _ = job.reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const MAX_WAIT: Duration = Duration::from_secs(1);

    #[derive(Debug, Clone, Copy)]
    enum Fault {
        Fail(Stage),
        Panic(Stage),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("fake {0} error")]
    struct FakeError(Stage);

    /// Blocks a model run until the test lets it go.
    struct Gate {
        started: oneshot::Sender<()>,
        go: std::sync::mpsc::Receiver<()>,
    }

    /// No model: each image is one float, embedded and scored as itself, tagged with
    /// the fake's name; the batches each stage saw are logged.
    struct Fake {
        name: &'static str,
        fault: Option<Fault>,
        embedded: Mutex<Vec<Vec<f32>>>,
        scored: Mutex<Vec<Vec<f32>>>,
        gate: Mutex<Option<Gate>>,
    }

    impl Fake {
        fn new(name: &'static str) -> Arc<Self> {
            Self::with(name, None, None)
        }

        fn faulty(fault: Fault) -> Arc<Self> {
            Self::with("faulty", Some(fault), None)
        }

        fn with(name: &'static str, fault: Option<Fault>, gate: Option<Gate>) -> Arc<Self> {
            Arc::new(Self {
                name,
                fault,
                embedded: Mutex::default(),
                scored: Mutex::default(),
                gate: Mutex::new(gate),
            })
        }

        fn check(&self, stage: Stage) -> Result<(), FakeError> {
            match self.fault {
                Some(Fault::Fail(at)) if at == stage => Err(FakeError(stage)),
                Some(Fault::Panic(at)) if at == stage => panic!("fake {stage} panic"),
                _ => Ok(()),
            }
        }

        fn embedded(&self) -> Vec<Vec<f32>> {
            self.embedded.lock().unwrap().clone()
        }

        fn scored(&self) -> Vec<Vec<f32>> {
            self.scored.lock().unwrap().clone()
        }
    }

    impl Scorer for Fake {
        type Embedded = Vec<f32>;
        type Scored = (&'static str, f32);
        type Error = FakeError;

        fn embed(&self, pixels: &[f32], count: usize) -> Result<Vec<f32>, FakeError> {
            assert_eq!(pixels.len(), count);
            self.embedded.lock().unwrap().push(pixels.to_vec());
            if let Some(gate) = self.gate.lock().unwrap().take() {
                gate.started.send(()).unwrap();
                gate.go.recv().unwrap();
            }
            self.check(Stage::Model)?;
            Ok(pixels.to_vec())
        }

        fn score(&self, embedded: &Vec<f32>) -> Result<Vec<(&'static str, f32)>, FakeError> {
            self.scored.lock().unwrap().push(embedded.clone());
            self.check(Stage::Lof)?;
            Ok(embedded.iter().map(|&value| (self.name, value)).collect())
        }

        fn select(&self, embedded: &Vec<f32>, rows: &[Range<usize>]) -> Vec<f32> {
            rows.iter()
                .flat_map(|rows| embedded[rows.clone()].iter().copied())
                .collect()
        }
    }

    fn batcher(max_batch_size: usize) -> Batcher<Fake> {
        Batcher::spawn(BatchSettings {
            max_batch_size,
            max_wait: MAX_WAIT,
            gate: "test".into(),
        })
    }

    /// Announces and submits at once (all in the future's first poll).
    async fn submit(
        batcher: &Batcher<Fake>,
        scorer: &Arc<Fake>,
        pixels: &[f32],
    ) -> Result<BatchOutput<Fake>, BatchError<FakeError>> {
        batcher
            .announce(pixels.len())
            .score(scorer.clone(), pixels.to_vec(), pixels.len())
            .await
    }

    fn values(output: &BatchOutput<Fake>) -> Vec<f32> {
        output.scored.iter().map(|&(_, value)| value).collect()
    }

    fn names(output: &BatchOutput<Fake>) -> Vec<&'static str> {
        output.scored.iter().map(|&(name, _)| name).collect()
    }

    fn range(from: usize, count: usize) -> Vec<f32> {
        (from..from + count).map(|v| v as f32).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn images_past_the_batch_size_run_in_the_next_batch() {
        let batcher = batcher(4);
        let fake = Fake::new("a");
        let start = Instant::now();
        // Joined: all three are queued before the batcher first runs.
        let (a, b, c) = tokio::join!(
            submit(&batcher, &fake, &[1.0, 2.0]),
            submit(&batcher, &fake, &[3.0]),
            submit(&batcher, &fake, &[4.0, 5.0]),
        );
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        // 2 + 1 fit in 4; the next 2 do not, and are carried over whole.
        assert_eq!(fake.embedded(), [vec![1.0, 2.0, 3.0], vec![4.0, 5.0]]);
        assert_eq!(values(&a), [1.0, 2.0]);
        assert_eq!(values(&b), [3.0]);
        assert_eq!(values(&c), [4.0, 5.0]);
        assert_eq!([a.batch_images, b.batch_images, c.batch_images], [3, 3, 2]);
        // Nothing else was announced: no batch waited for more.
        assert!(start.elapsed() < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_never_mixes_models() {
        let batcher = batcher(8);
        let (old, new) = (Fake::new("old"), Fake::new("new"));
        let (a, b, c, d) = tokio::join!(
            submit(&batcher, &old, &[1.0]),
            submit(&batcher, &new, &[2.0]),
            submit(&batcher, &old, &[3.0]),
            submit(&batcher, &new, &[4.0]),
        );
        let outputs = [a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()];
        assert_eq!(old.embedded(), [[1.0], [3.0]]);
        assert_eq!(new.embedded(), [[2.0], [4.0]]);
        assert_eq!(old.scored(), [[1.0], [3.0]]);
        assert_eq!(new.scored(), [[2.0], [4.0]]);
        let expected = ["old", "new", "old", "new"];
        for (i, (output, name)) in outputs.iter().zip(expected).enumerate() {
            assert_eq!(names(output), [name]);
            assert_eq!(values(output), [i as f32 + 1.0]);
            assert_eq!(output.batch_images, 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_whose_requester_went_away_are_not_run() {
        let batcher = batcher(8);
        let fake = Fake::new("a");
        let mut gone = Box::pin(submit(&batcher, &fake, &[1.0]));
        // One poll queues the job; dropping the future then drops its receiver.
        assert!(futures::poll!(gone.as_mut()).is_pending());
        drop(gone);
        let kept = submit(&batcher, &fake, &[2.0]).await.unwrap();
        assert_eq!(values(&kept), [2.0]);
        assert_eq!(kept.batch_images, 1);
        assert_eq!(fake.embedded(), [[2.0]]);
    }

    #[tokio::test(start_paused = true)]
    async fn rows_of_requesters_gone_during_the_model_run_get_no_lof() {
        let batcher = batcher(64);
        let (started, model_started) = oneshot::channel();
        let (go, gate) = std::sync::mpsc::channel();
        let fake = Fake::with("a", None, Some(Gate { started, go: gate }));
        // More than INLINE_LOF_MAX in all, so LOF runs apart from the model run.
        let (first, second, third) = (range(0, 10), range(100, 5), range(200, 10));
        let tickets = (batcher.announce(5), batcher.announce(10));
        let mut gone = Box::pin(submit(&batcher, &fake, &first));
        assert!(futures::poll!(gone.as_mut()).is_pending());
        let kept =
            [(tickets.0, second.clone()), (tickets.1, third.clone())].map(|(ticket, pixels)| {
                let fake = fake.clone();
                tokio::spawn(async move {
                    let count = pixels.len();
                    ticket.score(fake, pixels, count).await
                })
            });
        model_started.await.unwrap();
        drop(gone);
        go.send(()).unwrap();
        let [second_out, third_out] = kept;
        let (second_out, third_out) = (
            second_out.await.unwrap().unwrap(),
            third_out.await.unwrap().unwrap(),
        );
        assert_eq!(
            fake.embedded(),
            [[first, second.clone(), third.clone()].concat()]
        );
        assert_eq!(fake.scored(), [[second.clone(), third.clone()].concat()]);
        assert_eq!(values(&second_out), second);
        assert_eq!(values(&third_out), third);
        assert_eq!(second_out.batch_images, 25);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_runs_at_once_and_announced_images_are_waited_for() {
        let batcher = batcher(8);
        let fake = Fake::new("a");

        let start = Instant::now();
        let alone = submit(&batcher, &fake, &[1.0]).await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(1));
        assert_eq!(alone.batch_images, 1);

        // Announced images that never come: the batch waits for them, max_wait at most.
        let never = batcher.announce(1);
        let start = Instant::now();
        let waited = submit(&batcher, &fake, &[2.0]).await.unwrap();
        let elapsed = start.elapsed();
        assert!(elapsed >= MAX_WAIT && elapsed < MAX_WAIT + Duration::from_millis(1));
        assert_eq!(waited.batch_images, 1);
        drop(never);

        // Announced images that come within max_wait join the batch.
        let later = batcher.announce(1);
        let start = Instant::now();
        let first = tokio::spawn({
            let (batcher, fake) = (batcher.clone(), fake.clone());
            async move { submit(&batcher, &fake, &[3.0]).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = later.score(fake.clone(), vec![4.0], 1).await.unwrap();
        let first = first.await.unwrap().unwrap();
        assert!(start.elapsed() < Duration::from_millis(101));
        assert_eq!([first.batch_images, second.batch_images], [2, 2]);
        assert_eq!(first.queue_wait, Duration::from_millis(100));
        assert_eq!(values(&first), [3.0]);
        assert_eq!(values(&second), [4.0]);
        assert_eq!(fake.embedded(), [vec![1.0], vec![2.0], vec![3.0, 4.0]]);
    }

    /// Every job of one batch, at the given sizes, with `fake`.
    async fn batch_of(
        batcher: &Batcher<Fake>,
        fake: &Arc<Fake>,
        sizes: [usize; 2],
    ) -> [Result<BatchOutput<Fake>, BatchError<FakeError>>; 2] {
        let (first, second) = (range(0, sizes[0]), range(100, sizes[1]));
        let (a, b) = tokio::join!(
            submit(batcher, fake, &first),
            submit(batcher, fake, &second),
        );
        [a, b]
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_scorer_fails_every_job_of_its_batch() {
        let batcher = batcher(64);
        // Small batches score LOF inline, large ones on the rayon pool.
        for (stage, sizes) in [
            (Stage::Model, [1, 2]),
            (Stage::Lof, [1, 2]),
            (Stage::Lof, [10, 10]),
        ] {
            let fake = Fake::faulty(Fault::Fail(stage));
            let results = batch_of(&batcher, &fake, sizes).await;
            assert_eq!(fake.embedded().len(), 1, "one batch");
            for result in results {
                match result {
                    Err(BatchError::Failed {
                        stage: failed,
                        source,
                    }) => {
                        assert_eq!(failed, stage);
                        assert_eq!(source.0, stage);
                    }
                    Err(other) => panic!("{stage}: {other}"),
                    Ok(_) => panic!("{stage}: scored"),
                }
            }
        }
        let error = BatchError::Failed {
            stage: Stage::Lof,
            source: Arc::new(FakeError(Stage::Lof)),
        };
        assert_eq!(error.to_string(), "LOF failed: fake LOF error");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_scorer_fails_its_batch_and_the_batcher_goes_on() {
        let batcher = batcher(64);
        for (stage, sizes) in [
            (Stage::Model, [1, 2]),
            (Stage::Lof, [1, 2]),
            (Stage::Lof, [10, 10]),
        ] {
            let fake = Fake::faulty(Fault::Panic(stage));
            for result in batch_of(&batcher, &fake, sizes).await {
                match result {
                    Err(BatchError::Panicked(panicked)) => assert_eq!(panicked, stage),
                    Err(other) => panic!("{stage}: {other}"),
                    Ok(_) => panic!("{stage}: scored"),
                }
            }
            let healthy = Fake::new("healthy");
            let [a, b] = batch_of(&batcher, &healthy, [1, 2]).await;
            assert_eq!(values(&a.unwrap()), range(0, 1));
            assert_eq!(values(&b.unwrap()), range(100, 2));
        }
        assert_eq!(
            BatchError::<FakeError>::Panicked(Stage::Model).to_string(),
            "model run panicked"
        );
    }
}
