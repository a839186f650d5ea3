//! The default gate's int8 model (`model.int8.onnx`, `model.variant = "int8"`) next to
//! its fp32 model, in one run: ONNX Runtime alone, the service streaming, test accuracy,
//! verdict agreement (each model with its own index, default threshold) and the
//! separation of each out-of-distribution set (AUROC, rejection at 99 % of MNIST test
//! accepted).

use oodgate_datasets::{Dataset, SynthSet};
use oodgate_lof::{auroc, rejected_fraction, threshold_accepting};
use oodgate_replay::ReplaySet;
use oodgate_server::config::Config;
use oodgate_server::preprocess::prepare_dataset;
use oodgate_server::{Detector, ModelVariant, argmax};

use super::in_process::{SET_NAMES, TestImages, ort_sweep};
use super::markdown::met;
use super::results::{Int8Comparison, Int8Separation, Int8Set, OrtSweep};
use super::service::{Replayer, start_server, stop_server};
use super::{Context, Log};

/// Images of each set with `--quick`.
const QUICK_IMAGES: usize = 1000;

/// Goals of the summary table.
pub(super) const GOAL_ORT_RATIO: f64 = 1.8;
pub(super) const GOAL_STREAM_RATIO: f64 = 1.4;
/// Percentage points of MNIST test accuracy.
pub(super) const GOAL_ACCURACY_DROP_POINTS: f64 = 0.05;
pub(super) const GOAL_VERDICTS_EQUAL: f64 = 0.995;
/// Largest difference in AUROC, and in the fraction rejected at 99 % accepted.
pub(super) const GOAL_SEPARATION_DELTA: f64 = 0.002;

/// The comparison, or None (with a note) when the default gate has no int8 file.
pub(super) fn run(
    config: &Config,
    ctx: &Context,
    replayer: &Replayer,
    ort_images: usize,
    quick: bool,
    log: &mut Log,
) -> anyhow::Result<Option<Int8Comparison>> {
    let spec = config.default_gate();
    if !spec.dir.join(ModelVariant::Int8.file_name()).is_file() {
        eprintln!(
            "bench: int8 stage skipped: {} has no {} (`train/quantize.py {}` writes it)",
            spec.dir.display(),
            ModelVariant::Int8.file_name(),
            spec.dir.display()
        );
        return Ok(None);
    }
    log.stage("int8: load the int8 model and its index (built on first use)");
    let load = |variant| {
        let mut spec = spec.clone();
        spec.variant = variant;
        oodgate_server::load::detector(config, &spec)
    };
    let loaded_fp32;
    let fp32 = if ctx.detector.model.variant == ModelVariant::Fp32 {
        &ctx.detector
    } else {
        loaded_fp32 = load(ModelVariant::Fp32)?;
        &loaded_fp32
    };
    let int8 = &load(ModelVariant::Int8)?;

    log.stage("int8: ONNX Runtime sweep, fp32 and int8 taking turns");
    let images = &ctx.images;
    let mut fp32_ort = ort_sweep(fp32, images, ort_images)?;
    let mut int8_ort = ort_sweep(int8, images, ort_images)?;
    // A second turn each, so a burst of load elsewhere does not land on one model only.
    keep_best(&mut fp32_ort, ort_sweep(fp32, images, ort_images)?);
    keep_best(&mut int8_ort, ort_sweep(int8, images, ort_images)?);

    log.stage("int8: service streaming, fp32 then int8");
    let limit = quick.then_some(QUICK_IMAGES);
    let fp32_stream = stream(ctx, replayer, ModelVariant::Fp32, limit)?;
    let int8_stream = stream(ctx, replayer, ModelVariant::Int8, limit)?;

    log.stage("int8: accuracy, verdicts and separation on the test and near-OOD sets");
    let sets = judged_sets(fp32, int8, images, limit)?;
    let (fp32_accuracy, int8_accuracy, test_images) = {
        let mnist = &images.sets[0];
        let n = limit.map_or(mnist.len(), |l| l.min(mnist.len()));
        let labels = &mnist.labels[..n];
        (
            accuracy(&sets[0].fp32_classes, labels),
            accuracy(&sets[0].int8_classes, labels),
            n,
        )
    };
    let mnist = &sets[0];
    let out_sets = sets
        .iter()
        .enumerate()
        .map(|(i, set)| Int8Set {
            set: set.name.clone(),
            images: set.fp32.len(),
            verdicts_equal: set
                .fp32_rejected
                .iter()
                .zip(&set.int8_rejected)
                .filter(|(a, b)| a == b)
                .count(),
            fp32_rejected: share(&set.fp32_rejected),
            int8_rejected: share(&set.int8_rejected),
            // The in-distribution set is what the others are separated from.
            separation: (i > 0).then(|| Int8Separation {
                fp32_auroc: auroc(&mnist.fp32, &set.fp32),
                int8_auroc: auroc(&mnist.int8, &set.int8),
                fp32_rejected_at_99_accepted: rejected_fraction(
                    &set.fp32,
                    threshold_accepting(&mnist.fp32, 0.99),
                ),
                int8_rejected_at_99_accepted: rejected_fraction(
                    &set.int8,
                    threshold_accepting(&mnist.int8, 0.99),
                ),
            }),
        })
        .collect();
    Ok(Some(Int8Comparison {
        gate: spec.name.clone(),
        fp32_sha256: fp32.model.sha256.clone(),
        int8_sha256: int8.model.sha256.clone(),
        quantization: int8.model.card.get("int8").cloned(),
        fp32_ort,
        int8_ort,
        stream_images: fp32_stream.0,
        fp32_stream_images_per_second: fp32_stream.1,
        int8_stream_images_per_second: int8_stream.1,
        test_images,
        fp32_accuracy,
        int8_accuracy,
        sets: out_sets,
    }))
}

/// Per batch size, the better of two sweeps; the best batch again.
fn keep_best(sweep: &mut OrtSweep, other: OrtSweep) {
    for (row, again) in sweep.sweep.iter_mut().zip(other.sweep) {
        row.rounds.extend(again.rounds);
        row.images_per_second = row.images_per_second.max(again.images_per_second);
    }
    sweep.best_batch = sweep
        .sweep
        .iter()
        .max_by(|a, b| a.images_per_second.total_cmp(&b.images_per_second))
        .map_or(sweep.best_batch, |row| row.batch);
}

/// A server serving the default gate's `variant` alone, streamed the three test sets
/// (the first `limit` images of each) after a warm-up: (images, images/s).
fn stream(
    ctx: &Context,
    replayer: &Replayer,
    variant: ModelVariant,
    limit: Option<usize>,
) -> anyhow::Result<(usize, f64)> {
    let mut env = ctx.gates_env(&[]);
    env.push(("OODGATE_MODEL__VARIANT".into(), variant.as_str().into()));
    let log = ctx.work.join(format!("serve-{}.log", variant.as_str()));
    let server = start_server(ctx.config_file, &log, &env)?;
    let measured = (|| {
        let all = Replayer::sets(ctx, limit)?;
        let images: usize = all.iter().map(ReplaySet::len).sum();
        eprint!("  {}:", variant.as_str());
        let replay = replayer.stream_all(ctx, &server.endpoint, all)?;
        let answered: usize = replay.answers.iter().map(Vec::len).sum();
        anyhow::ensure!(
            answered == images,
            "{variant:?} server answered {answered} of {images} images"
        );
        Ok((images, images as f64 / replay.elapsed.as_secs_f64()))
    })();
    stop_server(server)?;
    measured
}

/// One set as both models judge it: each image's rank (the training tail, higher is
/// more normal, as the verdicts carry it), verdict and class.
struct Judged {
    name: String,
    fp32: Vec<f64>,
    int8: Vec<f64>,
    fp32_rejected: Vec<bool>,
    int8_rejected: Vec<bool>,
    fp32_classes: Vec<usize>,
    int8_classes: Vec<usize>,
}

/// MNIST, Fashion-MNIST and CIFAR-10 test (already preprocessed), then the synthetic
/// letters and doodles at their default seeds (report-only sets), each judged by both
/// models with their own index at their default thresholds.
fn judged_sets(
    fp32: &Detector,
    int8: &Detector,
    images: &TestImages,
    limit: Option<usize>,
) -> anyhow::Result<Vec<Judged>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (set, name) in images.sets.iter().zip(SET_NAMES) {
        let n = limit.map_or(set.len(), |l| l.min(set.len()));
        let pixels = &images.pixels[start * images.per..(start + n) * images.per];
        start += set.len();
        out.push(judge_both(name, fp32, int8, pixels, pixels, n)?);
    }
    for synth in [SynthSet::Letters, SynthSet::Doodles] {
        let set: Dataset = synth
            .generate(synth.default_seed())
            .map_err(|e| anyhow::anyhow!("generating the synthetic set {}: {e}", synth.name()))?
            .truncated(limit);
        let a = prepare_dataset(&set, &fp32.embedder.input)?;
        let b = prepare_dataset(&set, &int8.embedder.input)?;
        out.push(judge_both(synth.name(), fp32, int8, &a, &b, set.len())?);
    }
    Ok(out)
}

fn judge_both(
    name: &str,
    fp32: &Detector,
    int8: &Detector,
    fp32_pixels: &[f32],
    int8_pixels: &[f32],
    n: usize,
) -> anyhow::Result<Judged> {
    let (fp32_ranks, fp32_rejected, fp32_classes) = judge(fp32, fp32_pixels, n)?;
    let (int8_ranks, int8_rejected, int8_classes) = judge(int8, int8_pixels, n)?;
    Ok(Judged {
        name: name.to_owned(),
        fp32: fp32_ranks,
        int8: int8_ranks,
        fp32_rejected,
        int8_rejected,
        fp32_classes,
        int8_classes,
    })
}

type Judgements = (Vec<f64>, Vec<bool>, Vec<usize>);

fn judge(detector: &Detector, pixels: &[f32], n: usize) -> anyhow::Result<Judgements> {
    let per = detector.embedder.input.len();
    let mut out: Judgements = Default::default();
    for chunk in pixels[..n * per].chunks(256 * per) {
        let embedded = detector.embed(chunk, chunk.len() / per)?;
        for (p, scored) in embedded
            .probabilities
            .chunks(detector.embedder.classes)
            .zip(detector.score(&embedded)?)
        {
            out.0.push(scored.training_tail);
            out.2.push(argmax(p).0);
            out.1
                .push(scored.judge(detector.default_thresholds).rejected);
        }
    }
    Ok(out)
}

fn accuracy(classes: &[usize], labels: &[u8]) -> f64 {
    let right = classes
        .iter()
        .zip(labels)
        .filter(|(c, l)| **c == **l as usize)
        .count();
    right as f64 / labels.len().max(1) as f64
}

fn share(flags: &[bool]) -> f64 {
    flags.iter().filter(|f| **f).count() as f64 / flags.len().max(1) as f64
}

/// The summary table's rows, one per goal.
pub(super) fn summary_rows(c: &Int8Comparison) -> String {
    let (f, i) = (c.fp32_ort_best(), c.int8_ort_best());
    let ort = i.1 / f.1;
    let mut s = format!(
        "| *int8:* ONNX Runtime alone, int8 / fp32 images/s at each one's best batch | >= {GOAL_ORT_RATIO}x | {ort:.2}x ({:.0} at {} / {:.0} at {}) | {} |\n",
        i.1,
        i.0,
        f.1,
        f.0,
        met(ort >= GOAL_ORT_RATIO)
    );
    let (a, b) = (
        c.int8_stream_images_per_second,
        c.fp32_stream_images_per_second,
    );
    s += &format!(
        "| *int8:* service streaming, `model.variant = \"int8\"` / fp32, images/s | >= {GOAL_STREAM_RATIO}x | {:.2}x ({a:.0} / {b:.0}) | {} |\n",
        a / b,
        met(a / b >= GOAL_STREAM_RATIO)
    );
    let drop = c.accuracy_drop_points();
    s += &format!(
        "| *int8:* MNIST test accuracy, fp32 minus int8 | <= {GOAL_ACCURACY_DROP_POINTS} points | {drop:.2} points ({:.2} % / {:.2} %) | {} |\n",
        100.0 * c.fp32_accuracy,
        100.0 * c.int8_accuracy,
        met(drop <= GOAL_ACCURACY_DROP_POINTS)
    );
    let equal = c.verdicts_equal();
    s += &format!(
        "| *int8:* verdicts equal to fp32's (each with its own index, default threshold), all {} sets | >= {:.1} % | {:.2} % | {} |\n",
        c.sets.len(),
        100.0 * GOAL_VERDICTS_EQUAL,
        100.0 * equal,
        met(equal >= GOAL_VERDICTS_EQUAL)
    );
    let delta = c.largest_separation_delta();
    s += &format!(
        "| *int8:* AUROC and rejection at 99 % MNIST accepted, largest int8 - fp32 difference over the OOD sets | <= {GOAL_SEPARATION_DELTA} | {delta:.4} | {} |\n",
        met(delta <= GOAL_SEPARATION_DELTA)
    );
    s
}

/// The section's text: the comparison in full.
pub(super) fn section(c: &Int8Comparison) -> String {
    let mut s = format!(
        "\n### The int8 model next to fp32 (gate `{}`)\n\n`model.int8.onnx` (SHA-256 {}…, from `train/quantize.py`; the card's `int8` entry: {}) \
         next to `model.onnx` (SHA-256 {}…), each with its own LOF index. ONNX Runtime alone, the same images, the two models taking turns \
         (two sweeps each, the better per batch):\n\n| batch | fp32 images/s | int8 images/s | int8 / fp32 |\n| --- | --- | --- | --- |\n",
        c.gate,
        &c.int8_sha256[..12.min(c.int8_sha256.len())],
        c.quantization_summary(),
        &c.fp32_sha256[..12.min(c.fp32_sha256.len())],
    );
    for (f, i) in c.fp32_ort.sweep.iter().zip(&c.int8_ort.sweep) {
        s += &format!(
            "| {} | {:.0} | {:.0} | {:.2} |\n",
            f.batch,
            f.images_per_second,
            i.images_per_second,
            i.images_per_second / f.images_per_second
        );
    }
    s += &format!(
        "\nService (a server per model, `OODGATE_MODEL__VARIANT`, the one-gate run's client settings, the same {} images of the three test sets \
         streamed to each after a warm-up): fp32 {:.0}, int8 {:.0} images/s. \
         MNIST test accuracy ({} images): fp32 {:.2} %, int8 {:.2} %.\n\n\
         | set | images | verdicts equal | fp32 rejected | int8 rejected | AUROC fp32 | AUROC int8 | rejected at 99 % MNIST accepted, fp32 | same, int8 |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        c.stream_images,
        c.fp32_stream_images_per_second,
        c.int8_stream_images_per_second,
        c.test_images,
        100.0 * c.fp32_accuracy,
        100.0 * c.int8_accuracy,
    );
    for set in &c.sets {
        let (fa, ia, fr, ir) =
            set.separation
                .as_ref()
                .map_or(("".into(), "".into(), "".into(), "".into()), |x| {
                    (
                        format!("{:.4}", x.fp32_auroc),
                        format!("{:.4}", x.int8_auroc),
                        format!("{:.2} %", 100.0 * x.fp32_rejected_at_99_accepted),
                        format!("{:.2} %", 100.0 * x.int8_rejected_at_99_accepted),
                    )
                });
        s += &format!(
            "| {} | {} | {:.2} % | {:.2} % | {:.2} % | {fa} | {ia} | {fr} | {ir} |\n",
            set.set,
            set.images,
            100.0 * set.verdicts_equal as f64 / set.images.max(1) as f64,
            100.0 * set.fp32_rejected,
            100.0 * set.int8_rejected,
        );
    }
    s += "\nRanks for AUROC are the verdicts' training tail (the service's rule, LOF and distance); letters and doodles are the \
          synthetic near-OOD sets at their default seeds. Calibration used training images only.\n\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::OrtBatch;

    fn sweep(rates: &[(usize, f64)]) -> OrtSweep {
        OrtSweep {
            images: 600,
            sweep: rates
                .iter()
                .map(|&(batch, r)| OrtBatch {
                    batch,
                    images: 600,
                    images_per_second: r,
                    rounds: vec![r],
                })
                .collect(),
            best_batch: rates[0].0,
        }
    }

    fn comparison() -> Int8Comparison {
        let set = |name: &str, equal: usize, sep: Option<(f64, f64, f64, f64)>| Int8Set {
            set: name.into(),
            images: 1000,
            verdicts_equal: equal,
            fp32_rejected: 0.5,
            int8_rejected: 0.5,
            separation: sep.map(|(a, b, c, d)| Int8Separation {
                fp32_auroc: a,
                int8_auroc: b,
                fp32_rejected_at_99_accepted: c,
                int8_rejected_at_99_accepted: d,
            }),
        };
        Int8Comparison {
            gate: "digits".into(),
            fp32_sha256: "a".repeat(64),
            int8_sha256: "b".repeat(64),
            quantization: None,
            fp32_ort: sweep(&[(64, 10_000.0), (256, 12_000.0)]),
            int8_ort: sweep(&[(64, 25_000.0), (256, 20_000.0)]),
            stream_images: 3000,
            fp32_stream_images_per_second: 5000.0,
            int8_stream_images_per_second: 6500.0,
            test_images: 1000,
            fp32_accuracy: 0.9965,
            int8_accuracy: 0.9963,
            sets: vec![
                set("mnist", 1000, None),
                set("letters", 990, Some((0.95, 0.949, 0.50, 0.503))),
            ],
        }
    }

    #[test]
    fn goal_rows_use_each_models_best_batch_and_the_worst_set() {
        let c = comparison();
        assert_eq!(c.fp32_ort_best(), (256, 12_000.0));
        assert_eq!(c.int8_ort_best(), (64, 25_000.0));
        assert!((c.verdicts_equal() - 0.995).abs() < 1e-12);
        assert!((c.largest_separation_delta() - 0.003).abs() < 1e-9);
        let rows: Vec<String> = summary_rows(&c).lines().map(str::to_owned).collect();
        assert_eq!(rows.len(), 5);
        // 25,000 / 12,000 = 2.08x; 1.3x < 1.4x; 0.02 points; 99.50 %; 0.003 > 0.002.
        let expected = [true, false, true, true, false];
        for (row, met) in rows.iter().zip(expected) {
            let mark = if met { "| yes |" } else { "| **no** |" };
            assert!(row.ends_with(mark), "{row}: expected {mark}");
        }
        assert!(
            rows[0].contains("2.08x (25000 at 64 / 12000 at 256)"),
            "{}",
            rows[0]
        );
        assert!(section(&c).contains("| letters | 1000 | 99.00 % |"));
    }

    #[test]
    fn a_second_sweep_keeps_the_better_rate_per_batch() {
        let mut first = sweep(&[(64, 10_000.0), (256, 12_000.0)]);
        keep_best(&mut first, sweep(&[(64, 14_000.0), (256, 11_000.0)]));
        assert_eq!(first.sweep[0].images_per_second, 14_000.0);
        assert_eq!(first.sweep[1].images_per_second, 12_000.0);
        assert_eq!(first.sweep[0].rounds, [10_000.0, 14_000.0]);
        assert_eq!(first.best_batch, 64);
    }
}
