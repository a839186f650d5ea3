//! `oodgate eval`: the seed article's tables for the committed models.
//!
//! For each space (raw input pixels, and each model's embedding) LOF is fitted on the
//! MNIST training set, exactly as scikit-learn does (exact neighbours), and scores
//! MNIST, Fashion-MNIST and CIFAR-10 test, and the synthetic near-digit sets of
//! `oodgate_datasets::synth` at their default seeds: letters and doodles (to reject) and
//! typed digits (to accept and classify). Every image goes through the same
//! preprocessing as client images (CIFAR-10: grayscale, resized to 28x28).

use std::path::PathBuf;
use std::time::Instant;

use ndarray::ArrayView2;
use oodgate_datasets::{DataDir, Dataset, Split, SynthSet};
use oodgate_lof::{
    FittedLof, QueryScores, Thresholds, Verdict, auroc, decide, rejected_fraction,
    threshold_accepting,
};
use serde::Serialize;

use oodgate_server::ModelFiles;
use oodgate_server::preprocess::{InputSpec, Layout, Transform, prepare_dataset};
use oodgate_server::{Embedder, SessionOptions, embed_dataset};

/// Contaminations of the seed article's table.
pub(crate) const CONTAMINATIONS: [f64; 2] = [0.001, 0.01];

pub struct EvalOptions {
    pub models: Vec<PathBuf>,
    pub k: usize,
    /// Use only the first n images of every set (a quick check, not the real table).
    pub limit: Option<usize>,
    pub include_input_space: bool,
    pub progress: bool,
}

/// Rates at one contamination: fraction of MNIST test accepted, OOD sets rejected.
#[derive(Debug, Clone, Serialize)]
pub struct AtContamination {
    pub contamination: f64,
    /// The LOF threshold (scikit-learn's `offset_`).
    pub threshold: f64,
    /// The k-distance threshold, for the rule with the distance part.
    pub distance_threshold: Option<f64>,
    pub mnist_accepted: f64,
    pub fashion_rejected: f64,
    pub cifar_rejected: f64,
    pub letters_rejected: f64,
    pub doodles_rejected: f64,
    /// Fraction of the typed digits accepted (whatever class the model gave them).
    pub typed_digits_accepted: f64,
    /// Fraction of the typed digits accepted *and* classified as their digit (None for
    /// the input space, which has no classifier).
    pub typed_digits_accepted_and_right: Option<f64>,
}

/// One OOD set against MNIST test.
#[derive(Debug, Clone, Serialize)]
pub struct Separation {
    pub auroc: f64,
    /// Fraction of the OOD set accepted at the threshold that accepts 95 % of MNIST test.
    pub fpr_at_95_tpr: f64,
    /// Fraction of the OOD set rejected at the threshold that accepts exactly 99 % of MNIST test.
    pub rejected_at_99_accepted: f64,
}

/// The typed digits: digits the model never saw, that it should accept and classify.
#[derive(Debug, Clone, Serialize)]
pub struct TypedDigits {
    /// Classifier accuracy over all of them, accepted or not (None for the input space).
    pub accuracy: Option<f64>,
    /// Fraction accepted at the threshold that accepts 99 % of MNIST test.
    pub accepted_at_99_accepted: f64,
    /// Fraction accepted and classified right at that threshold (None for the input space).
    pub accepted_and_right_at_99_accepted: Option<f64>,
}

/// How a verdict is reached from the neighbours (README, "The detector").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// LOF alone, scikit-learn's rule; images ranked by LOF score.
    Lof,
    /// The service's default: LOF, or the k-th neighbour distance beyond the training
    /// images' own; images ranked by their training tail.
    LofOrDistance,
}

impl Rule {
    fn label(self) -> &'static str {
        match self {
            Rule::Lof => "LOF",
            Rule::LofOrDistance => "LOF or distance",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SpaceResult {
    /// "input pixels (784-d)" or the model's name.
    pub space: String,
    pub rule: Rule,
    pub recipe: Option<String>,
    pub l2: Option<bool>,
    pub dim: usize,
    /// Classifier accuracy on MNIST test (None for the input space).
    pub test_accuracy: Option<f64>,
    pub at: Vec<AtContamination>,
    pub fashion: Separation,
    pub cifar: Separation,
    pub letters: Separation,
    pub doodles: Separation,
    pub typed_digits: TypedDigits,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub k: usize,
    pub limit: Option<usize>,
    pub mnist_train: usize,
    pub mnist_test: usize,
    pub fashion_test: usize,
    pub cifar_test: usize,
    pub letters_images: usize,
    pub doodles_images: usize,
    pub typed_digits_images: usize,
    pub spaces: Vec<SpaceResult>,
    pub seconds: f64,
}

struct Sets {
    train: Dataset,
    /// The sets LOF scores, in the order of [`Scores`].
    tests: [Dataset; 6],
}

/// LOF fitted on a space's training images, and the test sets' scores and k-th
/// neighbour distances, in the order of `Sets::tests`.
struct Fitted {
    lof: FittedLof,
    sets: [QueryScores; 6],
}

/// What a space's figures under one rule are computed from.
struct Scored<'a> {
    fitted: &'a Fitted,
    rule: Rule,
    /// For each typed digit: did the classifier name its digit (None: no classifier).
    typed_right: Option<Vec<bool>>,
}

fn separation(mnist: &[f64], ood: &[f64]) -> Separation {
    let t95 = threshold_accepting(mnist, 0.95);
    let t99 = threshold_accepting(mnist, 0.99);
    Separation {
        auroc: auroc(mnist, ood),
        fpr_at_95_tpr: 1.0 - rejected_fraction(ood, t95),
        rejected_at_99_accepted: rejected_fraction(ood, t99),
    }
}

/// Fraction of `scores` accepted (at or above the threshold) whose `right` is true.
fn accepted_and_right(scores: &[f64], right: &[bool], threshold: f64) -> f64 {
    let n = scores
        .iter()
        .zip(right)
        .filter(|(s, r)| **s >= threshold && **r)
        .count();
    n as f64 / scores.len().max(1) as f64
}

/// Fits LOF on `train` and scores the test sets (in the order of `Sets::tests`).
fn score_space(
    train: Vec<f32>,
    dim: usize,
    tests: [&[f32]; 6],
    k: usize,
    progress: bool,
) -> anyhow::Result<Fitted> {
    let lof = FittedLof::fit(train, dim, k, progress)?;
    let mut sets: [QueryScores; 6] = Default::default();
    for (out, x) in sets.iter_mut().zip(tests) {
        let view = ArrayView2::from_shape((x.len() / dim, dim), x)?;
        *out = lof.score(view, progress)?;
    }
    Ok(Fitted { lof, sets })
}

impl Scored<'_> {
    fn distance_check(&self) -> bool {
        self.rule == Rule::LofOrDistance
    }

    /// Numbers to rank a set's images by (higher is more normal): the LOF score, or
    /// the training tail under the two-part rule (as the service's verdicts carry).
    fn ranks(&self, set: &QueryScores) -> Vec<f64> {
        match self.rule {
            Rule::Lof => set.scores.clone(),
            Rule::LofOrDistance => set
                .scores
                .iter()
                .zip(&set.kth_distances)
                .map(|(&s, &d)| self.fitted.lof.training().training_tail(s, d, true))
                .collect(),
        }
    }

    /// Each image's verdict at these thresholds, by the service's rule.
    fn rejected(set: &QueryScores, thresholds: Thresholds) -> Vec<bool> {
        set.scores
            .iter()
            .zip(&set.kth_distances)
            .map(|(&s, &d)| decide(s, d, thresholds).verdict == Verdict::Reject)
            .collect()
    }

    /// The space's figures: rates at each contamination, separation of each OOD set
    /// from MNIST test, and the typed digits' acceptance.
    fn figures(&self) -> anyhow::Result<(Vec<AtContamination>, [Separation; 4], TypedDigits)> {
        let right = self.typed_right.as_deref();
        let lof = &self.fitted.lof;
        let [mnist, fashion, cifar, letters, doodles, typed] = &self.fitted.sets;
        let share = |flags: &[bool]| {
            flags.iter().filter(|f| **f).count() as f64 / flags.len().max(1) as f64
        };
        let mut at = Vec::new();
        for contamination in CONTAMINATIONS {
            let thresholds = Thresholds {
                lof: lof.offset(contamination)?,
                distance: self
                    .distance_check()
                    .then(|| lof.training().distance_threshold(contamination))
                    .transpose()?,
            };
            let typed_rejected = Self::rejected(typed, thresholds);
            at.push(AtContamination {
                contamination,
                threshold: thresholds.lof,
                distance_threshold: thresholds.distance,
                mnist_accepted: 1.0 - share(&Self::rejected(mnist, thresholds)),
                fashion_rejected: share(&Self::rejected(fashion, thresholds)),
                cifar_rejected: share(&Self::rejected(cifar, thresholds)),
                letters_rejected: share(&Self::rejected(letters, thresholds)),
                doodles_rejected: share(&Self::rejected(doodles, thresholds)),
                typed_digits_accepted: 1.0 - share(&typed_rejected),
                typed_digits_accepted_and_right: right.map(|r| {
                    let kept: Vec<bool> = typed_rejected
                        .iter()
                        .zip(r)
                        .map(|(rejected, right)| !rejected && *right)
                        .collect();
                    share(&kept)
                }),
            });
        }
        let s = Ranks {
            mnist: self.ranks(mnist),
            fashion: self.ranks(fashion),
            cifar: self.ranks(cifar),
            letters: self.ranks(letters),
            doodles: self.ranks(doodles),
            typed_digits: self.ranks(typed),
        };
        let t99 = threshold_accepting(&s.mnist, 0.99);
        let typed = TypedDigits {
            accuracy: right
                .map(|r| r.iter().filter(|r| **r).count() as f64 / r.len().max(1) as f64),
            accepted_at_99_accepted: 1.0 - rejected_fraction(&s.typed_digits, t99),
            accepted_and_right_at_99_accepted: right
                .map(|r| accepted_and_right(&s.typed_digits, r, t99)),
        };
        let separations = [
            separation(&s.mnist, &s.fashion),
            separation(&s.mnist, &s.cifar),
            separation(&s.mnist, &s.letters),
            separation(&s.mnist, &s.doodles),
        ];
        Ok((at, separations, typed))
    }
}

/// Each test set's ranking numbers under one rule (higher is more normal).
struct Ranks {
    mnist: Vec<f64>,
    fashion: Vec<f64>,
    cifar: Vec<f64>,
    letters: Vec<f64>,
    doodles: Vec<f64>,
    typed_digits: Vec<f64>,
}

/// Pixels in [0, 1] at 28x28 gray, through the client preprocessing path.
fn input_space(d: &Dataset) -> anyhow::Result<Vec<f32>> {
    let spec = InputSpec {
        layout: Layout::Nhwc,
        height: 28,
        width: 28,
        channels: 1,
        transform: Transform::Legacy,
    };
    Ok(prepare_dataset(d, &spec)?)
}

/// For each image: is the classifier's top class its label.
fn right(probabilities: &[f32], classes: usize, labels: &[u8]) -> Vec<bool> {
    probabilities
        .chunks(classes)
        .zip(labels)
        .map(|(p, l)| oodgate_server::argmax(p).0 == usize::from(*l))
        .collect()
}

fn accuracy(probabilities: &[f32], classes: usize, labels: &[u8]) -> f64 {
    let right = right(probabilities, classes, labels);
    right.iter().filter(|r| **r).count() as f64 / right.len() as f64
}

/// A synthetic set at its default seed (the one the reports are made with).
fn synth(set: SynthSet) -> anyhow::Result<Dataset> {
    set.generate(set.default_seed())
        .map_err(|e| anyhow::anyhow!("generating the synthetic set {}: {e}", set.name()))
}

pub fn run(env: &ort::environment::Environment, options: &EvalOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let data = DataDir::from_env()?;
    let limit = |d: Dataset| d.truncated(options.limit);
    let sets = Sets {
        train: limit(data.mnist(Split::Train)?),
        tests: [
            limit(data.mnist(Split::Test)?),
            limit(data.fashion_mnist(Split::Test)?),
            limit(data.cifar10_test()?),
            limit(synth(SynthSet::Letters)?),
            limit(synth(SynthSet::Doodles)?),
            limit(synth(SynthSet::TypedDigits)?),
        ],
    };
    let typed_labels = &sets.tests[5].labels;
    let mut spaces = Vec::new();

    if options.include_input_space {
        let t = Instant::now();
        let tests = sets
            .tests
            .iter()
            .map(input_space)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let fitted = score_space(
            input_space(&sets.train)?,
            784,
            std::array::from_fn(|i| tests[i].as_slice()),
            options.k,
            options.progress,
        )?;
        let scored = Scored {
            fitted: &fitted,
            rule: Rule::Lof,
            typed_right: None,
        };
        let (at, [fashion, cifar, letters, doodles], typed_digits) = scored.figures()?;
        spaces.push(SpaceResult {
            space: "input pixels (784-d)".into(),
            rule: Rule::Lof,
            recipe: None,
            l2: None,
            dim: 784,
            test_accuracy: None,
            at,
            fashion,
            cifar,
            letters,
            doodles,
            typed_digits,
            seconds: t.elapsed().as_secs_f64(),
        });
    }

    for dir in &options.models {
        let t = Instant::now();
        let model = ModelFiles::load(dir)?;
        let embedder = Embedder::load(env, &model.onnx_path, SessionOptions::default())?;
        let embed = |d: &Dataset| embed_dataset(&embedder, d, options.progress);
        let train = embed(&sets.train)?;
        let tests = sets
            .tests
            .iter()
            .map(embed)
            .collect::<Result<Vec<_>, _>>()?;
        let test_accuracy = accuracy(
            &tests[0].probabilities,
            embedder.classes,
            &sets.tests[0].labels,
        );
        let typed_right = right(&tests[5].probabilities, embedder.classes, typed_labels);
        let dim = embedder.embedding_dim;
        let fitted = score_space(
            train.embeddings,
            dim,
            std::array::from_fn(|i| tests[i].embeddings.as_slice()),
            options.k,
            options.progress,
        )?;
        let recipe = model
            .card
            .pointer("/recipe/name")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let l2 = model.card.pointer("/recipe/l2").and_then(|v| v.as_bool());
        // The service's rule first (the serve test compares the first space with a
        // replay), then LOF alone for the ablation.
        for rule in [Rule::LofOrDistance, Rule::Lof] {
            let scored = Scored {
                fitted: &fitted,
                rule,
                typed_right: Some(typed_right.clone()),
            };
            let (at, [fashion, cifar, letters, doodles], typed_digits) = scored.figures()?;
            spaces.push(SpaceResult {
                space: model.name.clone(),
                rule,
                recipe: recipe.clone(),
                l2,
                dim,
                test_accuracy: Some(test_accuracy),
                at,
                fashion,
                cifar,
                letters,
                doodles,
                typed_digits,
                seconds: t.elapsed().as_secs_f64(),
            });
        }
    }

    let [mnist, fashion, cifar, letters, doodles, typed_digits] = &sets.tests;
    Ok(Report {
        k: options.k,
        limit: options.limit,
        mnist_train: sets.train.len(),
        mnist_test: mnist.len(),
        fashion_test: fashion.len(),
        cifar_test: cifar.len(),
        letters_images: letters.len(),
        doodles_images: doodles.len(),
        typed_digits_images: typed_digits.len(),
        spaces,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

fn space_label(s: &SpaceResult) -> String {
    match (&s.recipe, s.l2) {
        (Some(recipe), Some(l2)) => format!(
            "{} ({}, {}, {}-d), {}",
            s.space,
            recipe,
            if l2 { "L2" } else { "plain" },
            s.dim,
            s.rule.label()
        ),
        _ => format!("{}, {}", s.space, s.rule.label()),
    }
}

/// The report as Markdown: the seed's table, then the threshold-free figures.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "LOF (k = {}, exact neighbours) fitted on {} MNIST training images; {} MNIST, {} Fashion-MNIST and {} CIFAR-10 test images.\n\n",
        report.k, report.mnist_train, report.mnist_test, report.fashion_test, report.cifar_test
    ));
    out.push_str("| LOF space | MNIST test accuracy | contamination | MNIST accepted | Fashion-MNIST rejected | CIFAR-10 rejected |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for s in &report.spaces {
        for a in &s.at {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                space_label(s),
                s.test_accuracy
                    .map_or("-".into(), |a| format!("{:.2} %", 100.0 * a)),
                a.contamination,
                pct(a.mnist_accepted),
                pct(a.fashion_rejected),
                pct(a.cifar_rejected)
            ));
        }
    }
    out.push_str("\n| LOF space | AUROC Fashion-MNIST | AUROC CIFAR-10 | FPR at 95 % TPR Fashion-MNIST | FPR at 95 % TPR CIFAR-10 | Fashion-MNIST rejected at 99 % MNIST accepted | CIFAR-10 rejected at 99 % MNIST accepted |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for s in &report.spaces {
        out.push_str(&format!(
            "| {} | {:.5} | {:.5} | {} | {} | {} | {} |\n",
            space_label(s),
            s.fashion.auroc,
            s.cifar.auroc,
            pct(s.fashion.fpr_at_95_tpr),
            pct(s.cifar.fpr_at_95_tpr),
            pct(s.fashion.rejected_at_99_accepted),
            pct(s.cifar.rejected_at_99_accepted)
        ));
    }
    out.push_str(&format!(
        "\nNear-digit sets (synthetic, report-only; `oodgate data synth` writes them): {} letters (no digit-shaped ones), {} doodles, {} typed digits (fonts and Hershey stroke fonts the trainer does not use).\n\n",
        report.letters_images, report.doodles_images, report.typed_digits_images
    ));
    out.push_str("| LOF space | contamination | letters rejected | doodles rejected | typed digits accepted | typed digits accepted and right |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for s in &report.spaces {
        for a in &s.at {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                space_label(s),
                a.contamination,
                pct(a.letters_rejected),
                pct(a.doodles_rejected),
                pct(a.typed_digits_accepted),
                a.typed_digits_accepted_and_right.map_or("-".into(), pct)
            ));
        }
    }
    out.push_str("\n| LOF space | AUROC letters | AUROC doodles | FPR at 95 % TPR letters | FPR at 95 % TPR doodles | letters rejected at 99 % MNIST accepted | doodles rejected at 99 % MNIST accepted | typed-digit accuracy | typed digits accepted and right at 99 % MNIST accepted |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for s in &report.spaces {
        let t = &s.typed_digits;
        out.push_str(&format!(
            "| {} | {:.5} | {:.5} | {} | {} | {} | {} | {} | {} |\n",
            space_label(s),
            s.letters.auroc,
            s.doodles.auroc,
            pct(s.letters.fpr_at_95_tpr),
            pct(s.doodles.fpr_at_95_tpr),
            pct(s.letters.rejected_at_99_accepted),
            pct(s.doodles.rejected_at_99_accepted),
            t.accuracy.map_or("-".into(), pct),
            t.accepted_and_right_at_99_accepted.map_or("-".into(), pct)
        ));
    }
    out
}
