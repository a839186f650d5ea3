//! Build, save and load timings at MNIST scale: 60,000 x 64 synthetic embeddings (10
//! classes of low intrinsic dimension on a sphere of radius 16, the shape of the seed
//! model's L2-constrained embeddings), k = 20.
//!
//! ```text
//! cargo run --release -p oodgate-lof --example scale [-- N [DIM]]
//! ```
//!
//! Prints build time per step, recall, artifact size, save and load time, and query
//! throughput in exact and HNSW modes. A measurement, not a test: nothing is asserted.
//! Process CPU time is printed beside wall time because a shared machine inflates the
//! latter.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use oodgate_lof::ndarray::Array2;
use oodgate_lof::{HnswParams, LofIndex, SearchMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(60_000);
    let dim: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let k = 20;
    let threads = rayon::current_num_threads();
    println!("{n} x {dim} points, k = {k}, {threads} threads");

    let source = common::EmbeddingLike::new(dim, 10, 6, 16.0, 7);
    let (data, labels) = source.sample(n, 8);
    // The build's recall check at ef 64, the width the searches below start from.
    let params = HnswParams {
        ef_search: 64,
        ..HnswParams::default()
    };
    let cpu = cpu_seconds();
    let (index, report) = LofIndex::build(data, labels, dim, k, params, true)?;
    println!("build CPU time {:.1} s", cpu_seconds() - cpu);
    let graph = report.graph.expect("build() makes the graph");
    println!(
        "build: exact kNN {:.2} s, LOF maths {:.3} s, HNSW graph {:.2} s, recall check {:.2} s, total {:.2} s",
        report.knn.as_secs_f64(),
        report.lof.as_secs_f64(),
        graph.build.as_secs_f64(),
        graph.recall_check.as_secs_f64(),
        report.total.as_secs_f64()
    );
    for (name, r) in [
        ("served search", graph.recall),
        ("hnsw_rs's own search", graph.hnsw_rs_recall),
    ] {
        println!(
            "{name}: recall@{} at ef {} on {} training points: {:.4} (self found {:.4})",
            r.k, r.ef, r.sample, r.recall, r.self_found
        );
    }

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("index.lof");
    let t = Instant::now();
    index.save(&path, "scale-example")?;
    let save = t.elapsed();
    let size = std::fs::metadata(&path)?.len();
    println!(
        "artifact: {:.1} MB, saved in {:.2} s",
        size as f64 / 1e6,
        save.as_secs_f64()
    );

    drop(index);
    let mut loads = Vec::new();
    let mut cpu_loads = Vec::new();
    let mut loaded = None;
    for _ in 0..5 {
        drop(loaded.take()); // outside the timing: freeing a graph takes a while too
        let (t, cpu) = (Instant::now(), cpu_seconds());
        loaded = Some(LofIndex::load(&path, "scale-example")?);
        loads.push(t.elapsed().as_secs_f64());
        cpu_loads.push(cpu_seconds() - cpu);
    }
    let loaded = loaded.expect("loaded five times");
    loads.sort_by(f64::total_cmp);
    cpu_loads.sort_by(f64::total_cmp);
    println!(
        "load (file in page cache), 5 runs: wall min {:.3} s, median {:.3} s, max {:.3} s; CPU median {:.2} s",
        loads[0], loads[2], loads[4], cpu_loads[2]
    );

    // Held-out queries: 2,000 from the same classes, 1,000 in random directions.
    let (mut q, _) = source.sample(2_000, 9);
    q.extend(source.outliers(1_000, 10));
    let queries = Array2::from_shape_vec((3_000, dim), q)?;
    let offset = loaded.offset(0.01)?;
    let mut exact_scores = Vec::new();
    for (name, mode) in [
        ("exact", SearchMode::Exact),
        ("HNSW ef 64", SearchMode::Hnsw { ef: 64 }),
        ("HNSW ef 128", SearchMode::Hnsw { ef: 128 }),
    ] {
        // Best of three: the machine may be shared.
        let mut secs = f64::INFINITY;
        let mut results = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            results = loaded.query(queries.view(), mode)?;
            secs = secs.min(t.elapsed().as_secs_f64());
        }
        let rejected_in = results[..2_000].iter().filter(|r| r.score < offset).count();
        let rejected_out = results[2_000..].iter().filter(|r| r.score < offset).count();
        let scores: Vec<f64> = results.iter().map(|r| r.score).collect();
        let agree = if exact_scores.is_empty() {
            exact_scores = scores;
            String::new()
        } else {
            let same = scores
                .iter()
                .zip(&exact_scores)
                .filter(|(a, b)| (**a < offset) == (**b < offset))
                .count();
            format!(", verdicts agree with exact on {same}/3000")
        };
        println!(
            "{name}: {:.0} queries/s; at contamination 0.01 rejected {rejected_in}/2000 in-distribution, {rejected_out}/1000 outliers{agree}",
            3_000.0 / secs
        );
    }
    // Latency at serving-like batch sizes (mean over 300 batches of held-out queries).
    for batch in [1, 64] {
        for (name, mode) in [
            ("exact", SearchMode::Exact),
            ("HNSW ef 64", SearchMode::Hnsw { ef: 64 }),
        ] {
            let t = Instant::now();
            for b in 0..300 {
                let start = (b * batch) % (2_000 - batch);
                let rows = queries.slice(oodgate_lof::ndarray::s![start..start + batch, ..]);
                loaded.query(rows, mode)?;
            }
            println!(
                "batch {batch}, {name}: {:.3} ms per batch",
                t.elapsed().as_secs_f64() * 1e3 / 300.0
            );
        }
    }
    for ef in [64, 128] {
        let r = loaded.measure_recall(1_000, ef)?;
        println!("reloaded graph: recall@{} at ef {ef}: {:.4}", r.k, r.recall);
    }
    Ok(())
}

/// User + system CPU time of this process so far (Linux; 0 elsewhere), 10 ms resolution.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
