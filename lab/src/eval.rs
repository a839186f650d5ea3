//! `oodgate eval`: the seed article's tables for the committed models.
//!
//! The evaluation is about one in-distribution dataset ([`InDistribution`]: MNIST, or
//! Fashion-MNIST for the Fashion gate), taken from the models' cards. For each space
//! (raw input pixels, and each model's embedding) LOF is fitted on that dataset's
//! training set, exactly as scikit-learn does (exact neighbours), and scores its test
//! set (to accept) and the others (to reject): for MNIST, Fashion-MNIST and CIFAR-10
//! test and the synthetic letters and doodles of `oodgate_datasets::synth` at their
//! default seeds, plus the synthetic typed digits (to accept and classify); for
//! Fashion-MNIST, MNIST and CIFAR-10 test, letters and doodles. Every image goes through
//! the same preprocessing as client images (CIFAR-10: grayscale, resized to 28x28).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::ArrayView2;
use oodgate_datasets::{DataDir, Dataset, DatasetId, Split, SynthSet};
use oodgate_lof::{
    FittedLof, QueryScores, Thresholds, Verdict, auroc, decide, rejected_fraction,
    threshold_accepting,
};
use serde::Serialize;

use oodgate_server::ModelFiles;
use oodgate_server::preprocess::{InputSpec, Layout, Transform, prepare_dataset};
use oodgate_server::{SessionOptions, embed_dataset};

/// Contaminations of the seed article's table.
pub(crate) const CONTAMINATIONS: [f64; 2] = [0.001, 0.01];

/// The dataset an evaluation is about: its training set is the LOF reference, its test
/// set the images to accept; a model card names it in `dataset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InDistribution {
    Mnist,
    FashionMnist,
}

impl InDistribution {
    pub const ALL: [InDistribution; 2] = [InDistribution::Mnist, InDistribution::FashionMnist];

    /// The name in model cards and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            InDistribution::Mnist => "mnist",
            InDistribution::FashionMnist => "fashion-mnist",
        }
    }

    pub fn from_name(name: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|d| d.name()).collect();
                anyhow::anyhow!(
                    "unknown dataset {name:?}; known datasets: {}",
                    known.join(", ")
                )
            })
    }

    /// The dataset a model card names; cards without `dataset` are MNIST models (the
    /// ones written before the field existed).
    pub fn of_card(card: &serde_json::Value) -> anyhow::Result<Self> {
        match card.get("dataset") {
            None => Ok(InDistribution::Mnist),
            Some(serde_json::Value::String(name)) => Self::from_name(name),
            Some(other) => anyhow::bail!("card.json: `dataset` is {other}, expected a string"),
        }
    }

    fn set(self) -> Set {
        match self {
            InDistribution::Mnist => Set::Mnist,
            InDistribution::FashionMnist => Set::Fashion,
        }
    }

    /// The sets to reject, in table order: two datasets, then two synthetic sets.
    fn others(self) -> [Set; 4] {
        match self {
            InDistribution::Mnist => [Set::Fashion, Set::Cifar, Set::Letters, Set::Doodles],
            InDistribution::FashionMnist => [Set::Mnist, Set::Cifar, Set::Letters, Set::Doodles],
        }
    }

    /// Typed digits are digits: only a digits model should accept them.
    fn has_typed_digits(self) -> bool {
        self == InDistribution::Mnist
    }
}

/// A test set of the evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    Mnist,
    Fashion,
    Cifar,
    Letters,
    Doodles,
}

impl Set {
    /// The prefix of the set's JSON keys (`fashion_rejected`, `fashion`).
    fn key(self) -> &'static str {
        match self {
            Set::Mnist => "mnist",
            Set::Fashion => "fashion",
            Set::Cifar => "cifar",
            Set::Letters => "letters",
            Set::Doodles => "doodles",
        }
    }

    /// The set's name in the tables.
    fn title(self) -> &'static str {
        match self {
            Set::Mnist => "MNIST",
            Set::Fashion => "Fashion-MNIST",
            Set::Cifar => "CIFAR-10",
            Set::Letters => "letters",
            Set::Doodles => "doodles",
        }
    }

    /// The report's key for the set's image count.
    fn count_key(self) -> String {
        match self {
            Set::Letters | Set::Doodles => format!("{}_images", self.key()),
            _ => format!("{}_test", self.key()),
        }
    }

    fn load(self, data: &DataDir) -> anyhow::Result<Dataset> {
        Ok(match self {
            Set::Mnist => data.load(DatasetId::Mnist, Split::Test)?,
            Set::Fashion => data.load(DatasetId::FashionMnist, Split::Test)?,
            Set::Cifar => data.cifar10_test()?,
            Set::Letters => synth(SynthSet::Letters)?,
            Set::Doodles => synth(SynthSet::Doodles)?,
        })
    }

    fn train(self, data: &DataDir) -> anyhow::Result<Dataset> {
        Ok(match self {
            Set::Mnist => data.load(DatasetId::Mnist, Split::Train)?,
            Set::Fashion => data.load(DatasetId::FashionMnist, Split::Train)?,
            _ => anyhow::bail!("{} has no training set", self.title()),
        })
    }
}

/// The model folders under `root` whose card names `dataset` (`oodgate eval` without
/// `--model`): a table compares models of one dataset only.
pub fn model_dirs_of(root: &Path, dataset: InDistribution) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for dir in oodgate_server::model_dirs(root)? {
        if dataset_of_dir(&dir)? == dataset {
            dirs.push(dir);
        }
    }
    Ok(dirs)
}

/// The one dataset all these models' cards name (MNIST when there are none).
pub fn dataset_of(models: &[PathBuf]) -> anyhow::Result<InDistribution> {
    let mut found: Option<(InDistribution, &PathBuf)> = None;
    for dir in models {
        let dataset = dataset_of_dir(dir)?;
        match found {
            Some((first, first_dir)) if first != dataset => anyhow::bail!(
                "{} is a {} model but {} is a {} model; evaluate them separately",
                first_dir.display(),
                first.name(),
                dir.display(),
                dataset.name()
            ),
            Some(_) => {}
            None => found = Some((dataset, dir)),
        }
    }
    Ok(found.map_or(InDistribution::Mnist, |(d, _)| d))
}

fn dataset_of_dir(dir: &Path) -> anyhow::Result<InDistribution> {
    let model = ModelFiles::load(dir)?;
    InDistribution::of_card(&model.card).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

pub struct EvalOptions {
    pub models: Vec<PathBuf>,
    /// Every model's card must name this dataset.
    pub dataset: InDistribution,
    pub k: usize,
    /// Use only the first n images of every set (a quick check, not the real table).
    pub limit: Option<usize>,
    pub include_input_space: bool,
    pub progress: bool,
}

/// Rates at one contamination: fraction of the in-distribution test set accepted, OOD
/// sets rejected.
#[derive(Debug, Clone, Serialize)]
pub struct AtContamination {
    pub contamination: f64,
    /// The LOF threshold (scikit-learn's `offset_`).
    pub threshold: f64,
    /// The k-distance threshold, for the rule with the distance part.
    pub distance_threshold: Option<f64>,
    /// `<in-distribution>_accepted` (`mnist_accepted`, `fashion_accepted`) and
    /// `<set>_rejected` for each OOD set (`fashion_rejected`, `cifar_rejected`, ...):
    /// keys named after the sets, so an MNIST report reads as it always has.
    #[serde(flatten)]
    pub rates: BTreeMap<String, f64>,
    /// MNIST only.
    #[serde(flatten)]
    pub typed_digits: Option<TypedDigitsAt>,
}

impl AtContamination {
    fn rate(&self, key: &str) -> f64 {
        self.rates.get(key).copied().unwrap_or(f64::NAN)
    }
}

/// The typed digits at one contamination.
#[derive(Debug, Clone, Serialize)]
pub struct TypedDigitsAt {
    /// Fraction of the typed digits accepted (whatever class the model gave them).
    pub typed_digits_accepted: f64,
    /// Fraction of the typed digits accepted *and* classified as their digit (None for
    /// the input space, which has no classifier).
    pub typed_digits_accepted_and_right: Option<f64>,
}

/// One OOD set against the in-distribution test set.
#[derive(Debug, Clone, Serialize)]
pub struct Separation {
    pub auroc: f64,
    /// Fraction of the OOD set accepted at the threshold that accepts 95 % of the
    /// in-distribution test set.
    pub fpr_at_95_tpr: f64,
    /// Fraction of the OOD set rejected at the threshold that accepts exactly 99 % of
    /// the in-distribution test set.
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
    /// Classifier accuracy on the in-distribution test set (None for the input space).
    pub test_accuracy: Option<f64>,
    pub at: Vec<AtContamination>,
    /// Each OOD set against the in-distribution test set, by the set's key (`fashion`,
    /// `mnist`, `cifar`, `letters`, `doodles`).
    #[serde(flatten)]
    pub separations: BTreeMap<String, Separation>,
    /// MNIST only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typed_digits: Option<TypedDigits>,
    pub seconds: f64,
}

impl SpaceResult {
    fn separation(&self, set: Set) -> Option<&Separation> {
        self.separations.get(set.key())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset: InDistribution,
    pub k: usize,
    pub limit: Option<usize>,
    /// Image counts: `<in-distribution>_train`, `<set>_test` for the datasets,
    /// `<set>_images` for the synthetic sets (`mnist_train`, `fashion_test`,
    /// `letters_images`, `typed_digits_images`, ...).
    #[serde(flatten)]
    pub images: BTreeMap<String, usize>,
    pub spaces: Vec<SpaceResult>,
    pub seconds: f64,
}

impl Report {
    fn count(&self, key: &str) -> usize {
        self.images.get(key).copied().unwrap_or(0)
    }
}

struct Sets {
    train: Dataset,
    /// The sets LOF scores: the in-distribution test set, the OOD sets in
    /// `InDistribution::others` order, then the typed digits (MNIST only).
    tests: Vec<Dataset>,
}

/// LOF fitted on a space's training images, and the test sets' scores and k-th
/// neighbour distances, in the order of `Sets::tests`.
struct Fitted {
    lof: FittedLof,
    sets: Vec<QueryScores>,
}

/// What a space's figures under one rule are computed from.
struct Scored<'a> {
    fitted: &'a Fitted,
    dataset: InDistribution,
    rule: Rule,
    /// For each typed digit: did the classifier name its digit (None: no classifier).
    typed_right: Option<Vec<bool>>,
}

fn separation(inlier: &[f64], ood: &[f64]) -> Separation {
    let t95 = threshold_accepting(inlier, 0.95);
    let t99 = threshold_accepting(inlier, 0.99);
    Separation {
        auroc: auroc(inlier, ood),
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
    tests: &[&[f32]],
    k: usize,
    progress: bool,
) -> anyhow::Result<Fitted> {
    let lof = FittedLof::fit(train, dim, k, progress)?;
    let mut sets = Vec::with_capacity(tests.len());
    for x in tests {
        let view = ArrayView2::from_shape((x.len() / dim, dim), x)?;
        sets.push(lof.score(view, progress)?);
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
    /// from the in-distribution test set, and the typed digits' acceptance (MNIST only).
    fn figures(&self) -> anyhow::Result<Figures> {
        let right = self.typed_right.as_deref();
        let lof = &self.fitted.lof;
        let others = self.dataset.others();
        let sets = &self.fitted.sets;
        let inlier = &sets[0];
        let ood = &sets[1..=others.len()];
        let typed = sets.get(others.len() + 1);
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
            let mut rates = BTreeMap::new();
            rates.insert(
                format!("{}_accepted", self.dataset.set().key()),
                1.0 - share(&Self::rejected(inlier, thresholds)),
            );
            for (set, scores) in others.iter().zip(ood) {
                rates.insert(
                    format!("{}_rejected", set.key()),
                    share(&Self::rejected(scores, thresholds)),
                );
            }
            let typed_digits = typed.map(|typed| {
                let typed_rejected = Self::rejected(typed, thresholds);
                TypedDigitsAt {
                    typed_digits_accepted: 1.0 - share(&typed_rejected),
                    typed_digits_accepted_and_right: right.map(|r| {
                        let kept: Vec<bool> = typed_rejected
                            .iter()
                            .zip(r)
                            .map(|(rejected, right)| !rejected && *right)
                            .collect();
                        share(&kept)
                    }),
                }
            });
            at.push(AtContamination {
                contamination,
                threshold: thresholds.lof,
                distance_threshold: thresholds.distance,
                rates,
                typed_digits,
            });
        }
        let inlier = self.ranks(inlier);
        let t99 = threshold_accepting(&inlier, 0.99);
        let typed_digits = typed.map(|typed| {
            let typed = self.ranks(typed);
            TypedDigits {
                accuracy: right
                    .map(|r| r.iter().filter(|r| **r).count() as f64 / r.len().max(1) as f64),
                accepted_at_99_accepted: 1.0 - rejected_fraction(&typed, t99),
                accepted_and_right_at_99_accepted: right
                    .map(|r| accepted_and_right(&typed, r, t99)),
            }
        });
        let separations = others
            .iter()
            .zip(ood)
            .map(|(set, scores)| {
                (
                    set.key().to_owned(),
                    separation(&inlier, &self.ranks(scores)),
                )
            })
            .collect();
        Ok(Figures {
            at,
            separations,
            typed_digits,
        })
    }
}

/// A space's figures under one rule.
struct Figures {
    at: Vec<AtContamination>,
    separations: BTreeMap<String, Separation>,
    typed_digits: Option<TypedDigits>,
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
    let dataset = options.dataset;
    for dir in &options.models {
        let found = dataset_of_dir(dir)?;
        anyhow::ensure!(
            found == dataset,
            "{} is a {} model; this evaluation is on {} (see --dataset)",
            dir.display(),
            found.name(),
            dataset.name()
        );
    }
    let data = DataDir::from_env()?;
    let limit = |d: Dataset| d.truncated(options.limit);
    let others = dataset.others();
    let mut tests = vec![limit(dataset.set().load(&data)?)];
    for set in others {
        tests.push(limit(set.load(&data)?));
    }
    if dataset.has_typed_digits() {
        tests.push(limit(synth(SynthSet::TypedDigits)?));
    }
    let sets = Sets {
        train: limit(dataset.set().train(&data)?),
        tests,
    };
    let typed_labels = sets.tests.get(others.len() + 1).map(|d| &d.labels);
    let mut spaces = Vec::new();

    if options.include_input_space {
        let t = Instant::now();
        let tests = sets
            .tests
            .iter()
            .map(input_space)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tests: Vec<&[f32]> = tests.iter().map(Vec::as_slice).collect();
        let fitted = score_space(
            input_space(&sets.train)?,
            784,
            &tests,
            options.k,
            options.progress,
        )?;
        let scored = Scored {
            fitted: &fitted,
            dataset,
            rule: Rule::Lof,
            typed_right: None,
        };
        let figures = scored.figures()?;
        spaces.push(SpaceResult {
            space: "input pixels (784-d)".into(),
            rule: Rule::Lof,
            recipe: None,
            l2: None,
            dim: 784,
            test_accuracy: None,
            at: figures.at,
            separations: figures.separations,
            typed_digits: figures.typed_digits,
            seconds: t.elapsed().as_secs_f64(),
        });
    }

    for dir in &options.models {
        let t = Instant::now();
        let model = ModelFiles::load(dir)?;
        // The gate's own input, outputs and preprocessing, as serving reads them.
        let embedder =
            oodgate_server::load::model_embedder(env, &model, SessionOptions::default())?;
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
        let typed_right = typed_labels.map(|labels| {
            right(
                &tests[others.len() + 1].probabilities,
                embedder.classes,
                labels,
            )
        });
        let dim = embedder.embedding_dim;
        let embeddings: Vec<&[f32]> = tests.iter().map(|t| t.embeddings.as_slice()).collect();
        let fitted = score_space(
            train.embeddings,
            dim,
            &embeddings,
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
                dataset,
                rule,
                typed_right: typed_right.clone(),
            };
            let figures = scored.figures()?;
            spaces.push(SpaceResult {
                space: model.name.clone(),
                rule,
                recipe: recipe.clone(),
                l2,
                dim,
                test_accuracy: Some(test_accuracy),
                at: figures.at,
                separations: figures.separations,
                typed_digits: figures.typed_digits,
                seconds: t.elapsed().as_secs_f64(),
            });
        }
    }

    let mut images = BTreeMap::new();
    images.insert(format!("{}_train", dataset.set().key()), sets.train.len());
    let names = std::iter::once(dataset.set()).chain(others);
    for (set, d) in names.zip(&sets.tests) {
        images.insert(set.count_key(), d.len());
    }
    if let Some(typed) = sets.tests.get(others.len() + 1) {
        images.insert("typed_digits_images".into(), typed.len());
    }
    Ok(Report {
        dataset,
        k: options.k,
        limit: options.limit,
        images,
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
    let inlier = report.dataset.set();
    let name = inlier.title();
    let [a, b, c, d] = report.dataset.others();
    let rate = |s: &SpaceResult, set: Set, f: fn(&Separation) -> f64| {
        s.separation(set).map_or("-".into(), |x| pct(f(x)))
    };
    let auroc = |s: &SpaceResult, set: Set| {
        s.separation(set)
            .map_or("-".into(), |x| format!("{:.5}", x.auroc))
    };
    let mut out = String::new();
    out.push_str(&format!(
        "LOF (k = {}, exact neighbours) fitted on {} {name} training images; {} {name}, {} {} and {} {} test images.\n\n",
        report.k,
        report.count(&format!("{}_train", inlier.key())),
        report.count(&inlier.count_key()),
        report.count(&a.count_key()),
        a.title(),
        report.count(&b.count_key()),
        b.title(),
    ));
    out.push_str(&format!(
        "| LOF space | {name} test accuracy | contamination | {name} accepted | {} rejected | {} rejected |\n",
        a.title(),
        b.title()
    ));
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for s in &report.spaces {
        for at in &s.at {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                space_label(s),
                s.test_accuracy
                    .map_or("-".into(), |a| format!("{:.2} %", 100.0 * a)),
                at.contamination,
                pct(at.rate(&format!("{}_accepted", inlier.key()))),
                pct(at.rate(&format!("{}_rejected", a.key()))),
                pct(at.rate(&format!("{}_rejected", b.key())))
            ));
        }
    }
    out.push_str(&format!(
        "\n| LOF space | AUROC {a} | AUROC {b} | FPR at 95 % TPR {a} | FPR at 95 % TPR {b} | {a} rejected at 99 % {name} accepted | {b} rejected at 99 % {name} accepted |\n",
        a = a.title(),
        b = b.title()
    ));
    out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for s in &report.spaces {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            space_label(s),
            auroc(s, a),
            auroc(s, b),
            rate(s, a, |x| x.fpr_at_95_tpr),
            rate(s, b, |x| x.fpr_at_95_tpr),
            rate(s, a, |x| x.rejected_at_99_accepted),
            rate(s, b, |x| x.rejected_at_99_accepted)
        ));
    }
    let typed = report.dataset.has_typed_digits();
    if typed {
        out.push_str(&format!(
            "\nNear-digit sets (synthetic, report-only; `oodgate data synth` writes them): {} letters (no digit-shaped ones), {} doodles, {} typed digits (fonts and Hershey stroke fonts the trainer does not use).\n\n",
            report.count(&c.count_key()),
            report.count(&d.count_key()),
            report.count("typed_digits_images")
        ));
        out.push_str("| LOF space | contamination | letters rejected | doodles rejected | typed digits accepted | typed digits accepted and right |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    } else {
        out.push_str(&format!(
            "\nSynthetic sets (report-only; `oodgate data synth` writes them): {} letters, {} doodles.\n\n",
            report.count(&c.count_key()),
            report.count(&d.count_key()),
        ));
        out.push_str("| LOF space | contamination | letters rejected | doodles rejected |\n");
        out.push_str("| --- | --- | --- | --- |\n");
    }
    for s in &report.spaces {
        for at in &s.at {
            let mut row = format!(
                "| {} | {} | {} | {} |",
                space_label(s),
                at.contamination,
                pct(at.rate(&format!("{}_rejected", c.key()))),
                pct(at.rate(&format!("{}_rejected", d.key()))),
            );
            if let Some(t) = &at.typed_digits {
                row.push_str(&format!(
                    " {} | {} |",
                    pct(t.typed_digits_accepted),
                    t.typed_digits_accepted_and_right.map_or("-".into(), pct)
                ));
            }
            out.push_str(&row);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n| LOF space | AUROC letters | AUROC doodles | FPR at 95 % TPR letters | FPR at 95 % TPR doodles | letters rejected at 99 % {name} accepted | doodles rejected at 99 % {name} accepted |"
    ));
    if typed {
        out.push_str(&format!(
            " typed-digit accuracy | typed digits accepted and right at 99 % {name} accepted |\n"
        ));
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    } else {
        out.push_str("\n| --- | --- | --- | --- | --- | --- | --- |\n");
    }
    for s in &report.spaces {
        let mut row = format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            space_label(s),
            auroc(s, c),
            auroc(s, d),
            rate(s, c, |x| x.fpr_at_95_tpr),
            rate(s, d, |x| x.fpr_at_95_tpr),
            rate(s, c, |x| x.rejected_at_99_accepted),
            rate(s, d, |x| x.rejected_at_99_accepted),
        );
        if let Some(t) = &s.typed_digits {
            row.push_str(&format!(
                " {} | {} |",
                t.accuracy.map_or("-".into(), pct),
                t.accepted_and_right_at_99_accepted.map_or("-".into(), pct)
            ));
        }
        out.push_str(&row);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_names_its_dataset_and_older_cards_are_mnist() {
        let card = |v: serde_json::Value| InDistribution::of_card(&v);
        assert_eq!(card(serde_json::json!({})).unwrap(), InDistribution::Mnist);
        assert_eq!(
            card(serde_json::json!({"dataset": "fashion-mnist"})).unwrap(),
            InDistribution::FashionMnist
        );
        let err = card(serde_json::json!({"dataset": "cifar"})).unwrap_err();
        assert!(err.to_string().contains("mnist, fashion-mnist"), "{err}");
        assert!(card(serde_json::json!({"dataset": 3})).is_err());
    }

    fn fashion_report() -> Report {
        let separation = |auroc| Separation {
            auroc,
            fpr_at_95_tpr: 0.01,
            rejected_at_99_accepted: 0.9,
        };
        let separations = [
            ("mnist", 0.995),
            ("cifar", 0.991),
            ("letters", 0.98),
            ("doodles", 0.97),
        ]
        .into_iter()
        .map(|(k, a)| (k.to_owned(), separation(a)))
        .collect();
        let rates = [
            ("fashion_accepted", 0.99),
            ("mnist_rejected", 0.95),
            ("cifar_rejected", 0.96),
            ("letters_rejected", 0.8),
            ("doodles_rejected", 0.7),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let images = [
            ("fashion_train", 60_000),
            ("fashion_test", 10_000),
            ("mnist_test", 10_000),
            ("cifar_test", 10_000),
            ("letters_images", 5_200),
            ("doodles_images", 4_000),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Report {
            dataset: InDistribution::FashionMnist,
            k: 20,
            limit: None,
            images,
            spaces: vec![SpaceResult {
                space: "fashion-cosface".into(),
                rule: Rule::LofOrDistance,
                recipe: Some("fashion-cosface".into()),
                l2: Some(true),
                dim: 64,
                test_accuracy: Some(0.93),
                at: vec![AtContamination {
                    contamination: 0.01,
                    threshold: -1.5,
                    distance_threshold: Some(3.0),
                    rates,
                    typed_digits: None,
                }],
                separations,
                typed_digits: None,
                seconds: 1.0,
            }],
            seconds: 1.0,
        }
    }

    #[test]
    fn a_fashion_report_rejects_mnist_and_has_no_typed_digits() {
        let report = fashion_report();
        let md = markdown(&report);
        assert!(md.contains("fitted on 60000 Fashion-MNIST training images; 10000 Fashion-MNIST, 10000 MNIST and 10000 CIFAR-10 test images."), "{md}");
        assert!(md.contains("| LOF space | Fashion-MNIST test accuracy | contamination | Fashion-MNIST accepted | MNIST rejected | CIFAR-10 rejected |"), "{md}");
        assert!(
            md.contains("| 0.01 | 99.00 % | 95.00 % | 96.00 % |"),
            "{md}"
        );
        assert!(md.contains("| 0.99500 | 0.99100 |"), "{md}");
        assert!(md.contains("| 0.01 | 80.00 % | 70.00 % |\n"), "{md}");
        assert!(
            md.contains("letters rejected at 99 % Fashion-MNIST accepted"),
            "{md}"
        );
        assert!(!md.contains("typed"), "{md}");

        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["dataset"], "fashion-mnist");
        assert_eq!(json["fashion_train"], 60_000);
        assert_eq!(json["spaces"][0]["mnist"]["auroc"], 0.995);
        assert_eq!(json["spaces"][0]["at"][0]["mnist_rejected"], 0.95);
        assert!(json["spaces"][0].get("typed_digits").is_none());
        assert!(
            json["spaces"][0]["at"][0]
                .get("typed_digits_accepted")
                .is_none()
        );
    }
}
