//! LOF query cost: `LofIndex::query` in exact and HNSW modes, over batch sizes, for
//! queries near the training clusters (inliers) and away from them (outliers).
//!
//! ```text
//! cargo bench -p oodgate-lof --bench query [-- --quick] [-- FILTER]
//! ```
//!
//! The index (20,000 x 64 synthetic embeddings shaped like the model's, k = 20, default
//! HNSW parameters) is built once per run, in a few seconds. Throughput is in queries
//! per second; `query` runs on the rayon pool, so figures depend on the core count.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use oodgate_lof::ndarray::{Array2, s};
use oodgate_lof::{HnswParams, LofIndex, SearchMode};

const POINTS: usize = 20_000;
const DIM: usize = 64;
const K: usize = 20;
const BATCHES: [usize; 3] = [1, 16, 256];
/// Queries per pool: a whole number of the largest batch, so slices never wrap.
const POOL: usize = 1_024;

fn query(c: &mut Criterion) {
    // Ten classes of low intrinsic dimension on a sphere of radius 16, as in the scale
    // example: the shape of the L2-constrained embeddings the service indexes.
    let source = common::EmbeddingLike::new(DIM, 10, 6, 16.0, 7);
    let (data, labels) = source.sample(POINTS, 8);
    let started = Instant::now();
    // The build's recall check at ef 64, as this bench has always reported it.
    let params = HnswParams {
        ef_search: 64,
        ..HnswParams::default()
    };
    let (index, report) =
        LofIndex::build(data, labels, DIM, K, params, false).expect("synthetic data is valid");
    let recall = report.graph.expect("build() makes the graph").recall;
    eprintln!(
        "index: {POINTS} x {DIM}, k = {K}, built in {:.1} s, recall@{K} at ef {} = {:.3}",
        started.elapsed().as_secs_f64(),
        recall.ef,
        recall.recall
    );

    // Held-out draws (other seeds than the training set's), and random directions at
    // the same radius, which an HNSW search explores longer before it settles.
    let (inliers, _) = source.sample(POOL, 9);
    let pools = [
        (
            "inliers",
            Array2::from_shape_vec((POOL, DIM), inliers).expect("POOL rows"),
        ),
        (
            "outliers",
            Array2::from_shape_vec((POOL, DIM), source.outliers(POOL, 10)).expect("POOL rows"),
        ),
    ];

    let modes = [
        ("exact", SearchMode::Exact),
        ("hnsw_ef32", SearchMode::Hnsw { ef: 32 }),
        ("hnsw_ef256", SearchMode::Hnsw { ef: 256 }),
    ];
    for (mode_name, mode) in modes {
        let mut group = c.benchmark_group(format!("lof_query/{mode_name}"));
        for batch in BATCHES {
            group.throughput(Throughput::Elements(batch as u64));
            // A batch of 256 takes 15 to 30 ms: flat sampling keeps the iteration
            // count, and so the run, short.
            group.sampling_mode(if batch >= 16 {
                SamplingMode::Flat
            } else {
                SamplingMode::Auto
            });
            for (pool_name, pool) in &pools {
                let id = BenchmarkId::new(*pool_name, batch);
                group.bench_with_input(id, pool, |b, pool| {
                    // A different slice each iteration, so a batch of 1 is not one
                    // query answered from a warm cache over and over.
                    let mut start = 0;
                    b.iter(|| {
                        let rows = pool.slice(s![start..start + batch, ..]);
                        start = (start + batch) % POOL;
                        black_box(index.query(rows, mode).expect("valid queries"))
                    });
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // 18 benchmarks: short warm-up and measurement keep the run near a minute on 2
    // cores (command-line options such as --quick still apply).
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = query
}
criterion_main!(benches);
