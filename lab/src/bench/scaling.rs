//! Section 6 of the benchmark: how LOF query time, build time and index size grow with
//! the training set, exact search against HNSW.
//!
//! Sizes up to the 60,000 real training embeddings use them as they are; larger ones
//! add synthetic points: copies of real embeddings moved by Gaussian noise and put back
//! on the embedding sphere, so the data keep the model's class structure. Queries are an
//! even sample of the three test sets' embeddings. Up to [`EXACT_BUILD_MAX`] points the
//! index is built both ways (exact training neighbours, and neighbours from the graph),
//! which measures what the graph build costs in verdicts; beyond it only from the graph.

use std::path::Path;
use std::time::Instant;

use ndarray::{Array2, ArrayView2, Axis, Slice};
use oodgate_lof::{HnswParams, LofIndex, QueryResult, SearchMode, TrainingNeighbours};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::results::{Scaling, ScalingBuild, ScalingMode, ScalingSize};

/// Largest training set built with the exact all-pairs neighbour pass (its cost grows
/// with n squared: minutes at 240,000 on 2 cores, hours at 1,000,000).
pub(crate) const EXACT_BUILD_MAX: usize = 240_000;
/// HNSW widths measured at every size.
const EFS: [usize; 4] = [24, 32, 64, 128];
/// Each search mode's time is the best of this many runs: one HNSW run over the
/// queries lasts tens of milliseconds, short enough for one time slice lost to other
/// work on the machine to show.
const RUNS: usize = 3;
/// Graph search width for the training neighbours of a graph build.
const BUILD_EF: usize = 64;
/// Noise per dimension of the synthetic copies, relative to the embedding radius over
/// sqrt(dim): a copy moves by about a tenth of the radius, less than the distance to a
/// real point's 20th neighbour, so copies join their class without piling up on it.
const JITTER: f64 = 0.1;
/// "Near the threshold": a score within this fraction of it (LOF scores of the
/// out-of-distribution test sets crowd there at some sizes).
const NEAR: f64 = 0.05;

/// Training sets of `sizes` built from `real` (n x d embeddings, labels), each queried
/// with `queries`; verdicts at `contamination`.
pub(crate) fn run(
    real: ArrayView2<'_, f32>,
    labels: &[u8],
    queries: ArrayView2<'_, f32>,
    sizes: &[usize],
    k: usize,
    contamination: f64,
    work: &Path,
) -> anyhow::Result<Scaling> {
    let artifact = work.join("scaling-index.lof");
    let mut rows = Vec::new();
    for &n in sizes {
        let (data, data_labels) = training_set(real, labels, n);

        let exact_built = if n <= EXACT_BUILD_MAX {
            eprintln!("  {n} points: build with exact training neighbours");
            let (index, seconds) = build(&data, &data_labels, k, TrainingNeighbours::Exact)?;
            Some(measure(&index, seconds, queries, contamination, &artifact)?)
        } else {
            None
        };
        eprintln!("  {n} points: build with training neighbours from the graph");
        let (graph_index, seconds) = build(
            &data,
            &data_labels,
            k,
            TrainingNeighbours::Graph { ef: BUILD_EF },
        )?;
        let (graph_build, graph_verdicts) =
            measure(&graph_index, seconds, queries, contamination, &artifact)?;
        // What taking the training neighbours from the graph changes: verdicts of the
        // two indexes, both searched exactly.
        let graph_build_agreement_with_exact_build = exact_built
            .as_ref()
            .map(|(_, exact_verdicts)| agreement(exact_verdicts, &graph_verdicts));
        let row = ScalingSize {
            points: n,
            synthetic: n.saturating_sub(real.nrows()),
            queries: queries.nrows(),
            exact_build: exact_built.map(|(figures, _)| figures),
            graph_build,
            graph_build_agreement_with_exact_build,
        };
        eprintln!("  {n} points: {}", serde_json::to_string(&row)?);
        rows.push(row);
    }
    Ok(Scaling {
        k,
        contamination,
        exact_build_max: EXACT_BUILD_MAX,
        build_ef: BUILD_EF,
        jitter: JITTER,
        runs: RUNS,
        near: NEAR,
        sizes: rows,
    })
}

/// The first `n` real points, or all of them plus synthetic copies.
fn training_set(real: ArrayView2<'_, f32>, labels: &[u8], n: usize) -> (Array2<f32>, Vec<u8>) {
    let have = real.nrows();
    if n <= have {
        return (
            real.slice_axis(Axis(0), Slice::from(..n)).to_owned(),
            labels[..n].to_vec(),
        );
    }
    let dim = real.ncols();
    let radius = real
        .axis_iter(Axis(0))
        .map(|r| r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt())
        .sum::<f64>()
        / have as f64;
    let sigma = JITTER * radius / (dim as f64).sqrt();
    let mut rng = StdRng::seed_from_u64(6);
    let mut data = Array2::<f32>::zeros((n, dim));
    data.slice_axis_mut(Axis(0), Slice::from(..have))
        .assign(&real);
    let mut out_labels = labels.to_vec();
    for i in have..n {
        let source = real.row(i % have);
        let moved: Vec<f64> = source
            .iter()
            .map(|&v| f64::from(v) + sigma * gaussian(&mut rng))
            .collect();
        let norm = moved.iter().map(|v| v * v).sum::<f64>().sqrt();
        for (d, v) in moved.iter().enumerate() {
            data[[i, d]] = (v * radius / norm) as f32;
        }
        out_labels.push(labels[i % have]);
    }
    (data, out_labels)
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn build(
    data: &Array2<f32>,
    labels: &[u8],
    k: usize,
    training: TrainingNeighbours,
) -> anyhow::Result<(LofIndex, f64)> {
    let started = Instant::now();
    let (index, _) = LofIndex::build_with(
        data.iter().copied().collect(),
        labels.to_vec(),
        data.ncols(),
        k,
        // ef 64 for the build's recall check, whose time the reported build time includes.
        HnswParams {
            ef_search: 64,
            ..HnswParams::default()
        },
        training,
        false,
    )?;
    Ok((index, started.elapsed().as_secs_f64()))
}

/// Build time, artifact size, and query speed and agreement per search mode; and the
/// exact search's verdicts.
fn measure(
    index: &LofIndex,
    build_seconds: f64,
    queries: ArrayView2<'_, f32>,
    contamination: f64,
    artifact: &Path,
) -> anyhow::Result<(ScalingBuild, Vec<bool>)> {
    index.save(artifact, "scaling")?;
    let bytes = std::fs::metadata(artifact)?.len();
    std::fs::remove_file(artifact)?;
    let offset = index.offset(contamination)?;
    let (exact, exact_seconds) = timed_query(index, queries, SearchMode::Exact)?;
    let exact_verdicts = verdicts(&exact, offset);
    let mut modes = vec![ScalingMode {
        search: "exact".into(),
        ef: None,
        seconds: exact_seconds,
        queries_per_second: queries.nrows() as f64 / exact_seconds,
        near_threshold: Some(near_threshold(&exact, offset)),
        speedup_vs_exact: None,
        recall_at_k: None,
        agreement_with_exact: None,
    }];
    for ef in EFS {
        let (found, seconds) = timed_query(index, queries, SearchMode::Hnsw { ef })?;
        modes.push(ScalingMode {
            search: format!("HNSW ef {ef}"),
            ef: Some(ef),
            seconds,
            queries_per_second: queries.nrows() as f64 / seconds,
            near_threshold: None,
            speedup_vs_exact: Some(exact_seconds / seconds),
            recall_at_k: Some(recall(&found, &exact)),
            agreement_with_exact: Some(agreement(&verdicts(&found, offset), &exact_verdicts)),
        });
    }
    let figures = ScalingBuild {
        build_seconds,
        artifact_bytes: bytes,
        recall_at_k: index.recall().map(|r| r.recall),
        modes,
    };
    Ok((figures, exact_verdicts))
}

/// The answers of `mode`, and the best time of [`RUNS`] runs.
fn timed_query(
    index: &LofIndex,
    queries: ArrayView2<'_, f32>,
    mode: SearchMode,
) -> anyhow::Result<(Vec<QueryResult>, f64)> {
    let mut best = f64::INFINITY;
    let mut found = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        found = index.query(queries, mode)?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok((found, best))
}

/// Reject (true) or not per query.
fn verdicts(results: &[QueryResult], offset: f64) -> Vec<bool> {
    results.iter().map(|r| r.score < offset).collect()
}

/// Share of the queries whose score lies within [`NEAR`] of the threshold: the ones a
/// small error in their neighbours can flip, so agreement depends on it as much as on
/// recall.
fn near_threshold(results: &[QueryResult], offset: f64) -> f64 {
    let near = results
        .iter()
        .filter(|r| ((r.score - offset) / offset).abs() < NEAR)
        .count();
    near as f64 / results.len().max(1) as f64
}

/// Mean share of each query's exact k neighbours that `found` returned.
fn recall(found: &[QueryResult], exact: &[QueryResult]) -> f64 {
    let (mut hits, mut total) = (0usize, 0usize);
    for (f, e) in found.iter().zip(exact) {
        total += e.neighbours.len();
        hits += f
            .neighbours
            .iter()
            .filter(|n| e.neighbours.iter().any(|t| t.id == n.id))
            .count();
    }
    hits as f64 / total.max(1) as f64
}

fn agreement(a: &[bool], b: &[bool]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}
