//! BENCHMARKS.md from a run's [`BenchResults`]: one function per section.
//!
//! A figure a run did not take prints as NaN (or `null`), as in the saved JSON, so a
//! report shows what was missing rather than hiding it.

use super::results::{
    AlternativeService, BenchResults, LatencyStats, LofMode, Scaling, ScalingMode, Seed, TwoGates,
};

/// The whole report.
pub(crate) fn markdown(r: &BenchResults) -> String {
    [
        header(r),
        summary(r),
        limits(r),
        against_sklearn(r),
        seed_stack(r),
        latency(r),
        r.unary_transports
            .as_ref()
            .map(super::unary::section)
            .unwrap_or_default(),
        startup(r),
        scaling(r.scaling.as_ref()),
        METHOD.to_owned(),
    ]
    .concat()
}

pub(super) fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

/// An optional figure, NaN when absent.
fn or_nan(x: Option<f64>) -> f64 {
    x.unwrap_or(f64::NAN)
}

/// An optional count as JSON writes it.
fn or_null(x: Option<usize>) -> String {
    x.map_or_else(|| "null".into(), |n| n.to_string())
}

/// The configured search mode's row of section 2.
fn configured_row(r: &BenchResults) -> Option<&LofMode> {
    r.lof_vs_sklearn
        .modes
        .iter()
        .find(|row| row.search == r.model.search)
}

fn header(r: &BenchResults) -> String {
    let m = &r.machine;
    let mut s = String::from("# Benchmarks\n\n");
    s += &format!(
        "Measured {} on {} ({} cores, {}), by `{}` ({:.0} s in all). Commit {}.\n\n",
        m.date, m.cpu, m.cores, m.memory, r.command, r.total_seconds, m.git,
    );
    if r.quick {
        s += "**Quick run (`--quick`): small samples everywhere, to check that the harness works; not a measurement to quote.**\n\n";
    }
    s += "Every headline figure is a **ratio** of two things measured side by side in this one run, on the same images, \
          because the machine may be busy with other work (absolute rates below move with the load; ratios much less). \
          Load average (1, 5, 15 min) at each stage:\n\n";
    for l in &m.loads {
        s += &format!("- {}: {}\n", l.stage, l.load);
    }
    s
}

/// The goals, each a ratio of two figures of this run.
fn summary(r: &BenchResults) -> String {
    let limit = r.pipeline_limit.images_per_second;
    let stream = r.service.stream.images_per_second;
    let unary = &r.service.unary_ms;
    let local = &r.service.in_process_interleaved_ms;
    let mut s = String::from(
        "\n## Summary\n\n| ratio | goal | measured | met? |\n| --- | --- | --- | --- |\n",
    );
    let ratio = stream / limit;
    s += &format!(
        "| service streaming (gRPC, loopback) / in-process pipeline limit | >= 0.9 | {ratio:.2} ({stream:.0} / {limit:.0} images/s) | {} |\n",
        met(ratio >= 0.9)
    );
    if let Some(row) = configured_row(r) {
        let x = or_nan(row.speedup_vs_sklearn);
        s += &format!(
            "| LOF speed: scikit-learn `score_samples` time / oodgate ({}) time, 30,000 queries | >= 5x | {x:.1}x | {} |\n",
            row.mode,
            met(x >= 5.0)
        );
        let a = or_nan(row.agreement_with_sklearn) * 100.0;
        s += &format!(
            "| LOF verdict agreement with scikit-learn at contamination 0.001 ({}) | >= 99.9 % | {a:.2} % | {} |\n",
            row.mode,
            met(a >= 99.9)
        );
    }
    if let Some(row) = r
        .lof_vs_sklearn
        .modes
        .iter()
        .find(|row| row.mode == "exact")
    {
        let x = or_nan(row.speedup_vs_sklearn);
        let a = or_nan(row.agreement_with_sklearn) * 100.0;
        s += &format!(
            "| same, exact mode: speed / agreement | >= 5x / >= 99.9 % | {x:.1}x / {a:.2} % | {} |\n",
            met(x >= 5.0 && a >= 99.9)
        );
    }
    if let Some(seed) = &r.seed {
        let batch = seed.batch_images_per_second;
        let x = stream / batch;
        s += &format!(
            "| oodgate streaming / Keras + scikit-learn batch job, images/s (30,000 images) | >= 2x | {x:.1}x ({stream:.0} / {batch:.0}) | {} |\n",
            met(x >= 2.0)
        );
        let single = seed.single_predict_ms.p50;
        let x = single / unary.p50;
        s += &format!(
            "| Keras `predict` + scikit-learn one image per call, p50 / oodgate unary `Detect` p50 | >= 20x | {x:.1}x ({single:.1} / {:.2} ms) | {} |\n",
            unary.p50,
            met(x >= 20.0)
        );
    }
    for (q, what, unary_q, local_q) in [
        ("p50", "in-process embed + LOF p50", unary.p50, local.p50),
        ("p99", "in-process p99", unary.p99, local.p99),
    ] {
        let x = unary_q / local_q;
        s += &format!(
            "| unary `Detect` {q} / {what}, one image | <= 1.5x | {x:.2}x ({unary_q:.2} / {local_q:.2} ms) | {} |\n",
            met(x <= 1.5)
        );
    }
    if let Some((n, row)) = r.scaling.as_ref().and_then(scaling_goal) {
        let speedup = or_nan(row.speedup_vs_exact);
        let agreement = or_nan(row.agreement_with_exact);
        s += &format!(
            "| at {n} embeddings: exact LOF search time / HNSW LOF search time, at verdict agreement >= 99 % ({}) | >= 50x | {speedup:.1}x at {:.2} % | {} |\n",
            row.search,
            100.0 * agreement,
            met(speedup >= 50.0 && agreement >= 0.99)
        );
    }
    if let Some(ex) = &r.service_alternative {
        s += &alternative_goals(ex, r.seed.as_ref());
    }
    if let Some(c) = &r.int8 {
        s += &super::int8::summary_rows(c);
    }
    if let Some(first) = &r.first_start {
        let t = first.all_gates_seconds;
        s += &format!(
            "| first start with no index cached, process start to `SERVING`, gates {} (not a ratio: seconds) | <= 5 s | {t:.2} s (default gate alone {:.2} s) | {} |\n",
            first.gates.join(" + "),
            first.default_gate_seconds,
            met(t <= 5.0)
        );
    }
    if let Some(u) = &r.unary_transports {
        s += &super::unary::summary_rows(u);
    }
    s
}

/// The summary's rows for the search mode that is not configured.
fn alternative_goals(ex: &AlternativeService, seed: Option<&Seed>) -> String {
    let (setting, search) = (&ex.setting, &ex.search);
    let es = ex.images_per_second;
    let el = ex.pipeline_limit_images_per_second;
    let mut s = format!(
        "| *not the default:* service with `index.search = \"{setting}\"` / in-process pipeline limit with {search} | >= 0.9 | {:.2} ({es:.0} / {el:.0} images/s) | {} |\n",
        es / el,
        met(es / el >= 0.9)
    );
    if let Some(seed) = seed {
        let x = es / seed.batch_images_per_second;
        s += &format!(
            "| *not the default:* oodgate streaming with {search} / Keras + scikit-learn batch job | >= 2x | {x:.1}x ({es:.0} / {:.0}) | {} |\n",
            seed.batch_images_per_second,
            met(x >= 2.0)
        );
    }
    s
}

/// The largest size's fastest HNSW row that still agrees with exact search on >= 99 % of
/// verdicts (or, if none does, its most accurate one); from its exact build if it has one.
fn scaling_goal(scaling: &Scaling) -> Option<(usize, &ScalingMode)> {
    let largest = scaling.sizes.last()?;
    let build = largest.exact_build.as_ref().unwrap_or(&largest.graph_build);
    let hnsw: Vec<&ScalingMode> = build.modes.iter().filter(|m| m.ef.is_some()).collect();
    let agreement = |m: &ScalingMode| or_nan(m.agreement_with_exact);
    let pick = hnsw
        .iter()
        .filter(|m| agreement(m) >= 0.99)
        .max_by(|a, b| or_nan(a.speedup_vs_exact).total_cmp(&or_nan(b.speedup_vs_exact)))
        .or_else(|| {
            hnsw.iter()
                .max_by(|a, b| agreement(a).total_cmp(&agreement(b)))
        })?;
    Some((largest.points, *pick))
}

/// Section 1: ONNX Runtime alone, LOF alone, the pipeline limit, the service's stream.
fn limits(r: &BenchResults) -> String {
    let model = &r.model;
    let configured = &model.search;
    let mut s = format!(
        "\n## 1. Limits in one process, and the service\n\nModel `{}` (SHA-256 {}…), ONNX Runtime {} with {} intra-op threads \
         (`model.intra_threads`), LOF k = {}, {} training points, configured search {}.\n\n",
        model.name,
        &model.sha256[..12.min(model.sha256.len())],
        r.machine.onnxruntime.as_deref().unwrap_or("?"),
        model.intra_threads,
        model.k,
        model.index_size,
        configured,
    );
    s += &format!(
        "ONNX Runtime alone (`Embedder::run`, preprocessed MNIST test images, first {} of them; batch 1: 1,000; best of 2 rounds):\n\n| batch | images/s |\n| --- | --- |\n",
        r.ort.images
    );
    for row in &r.ort.sweep {
        s += &format!("| {} | {:.0} |\n", row.batch, row.images_per_second);
    }
    s += "\nLOF alone on the same images' embeddings (`LofIndex::query` on chunks of 1, 16 (a streaming request), the best ONNX batch and the service's largest batch; batch 1: 500 queries):\n\n| search | batch | queries | queries/s |\n| --- | --- | --- | --- |\n";
    for row in &r.lof_alone {
        s += &format!(
            "| {} | {} | {} | {:.0} |\n",
            row.mode, row.batch, row.queries, row.queries_per_second
        );
    }
    let pl = &r.pipeline_limit;
    let batches: Vec<String> = pl.batches.iter().map(usize::to_string).collect();
    s += &format!(
        "\nPipeline limit: embed then LOF ({}), one stage after the other (no overlap), over the 30,000 test images \
         (MNIST, Fashion-MNIST, CIFAR-10; already preprocessed), in batches of [{}] (the ONNX Runtime sweep's best and the service's \
         largest batch), the better of them: {:.0} images/s before the service run, {:.0} after; mean {:.0}.\n\n",
        configured,
        batches.join(","),
        pl.before_service_images_per_second,
        pl.after_service_images_per_second,
        pl.images_per_second
    );
    let st = &r.service.stream;
    s += &format!(
        "Service: `oodgate serve` (this binary, default batching settings) on free loopback ports; the replay library streams the same \
         30,000 images as raw pixels ({} streams x batch {}, window {}; after a warm-up of 900 images): {:.0} images/s ({:.1} s). \
         The client runs on the same 2 cores. Scores identical to the in-process {} scores: {} of {}.\n\n",
        st.streams,
        st.batch,
        st.window,
        st.images_per_second,
        st.seconds,
        configured,
        or_null(st.scores_identical_to_in_process),
        st.images
    );
    if let Some(ex) = &r.service_alternative {
        let (setting, search) = (&ex.setting, &ex.search);
        s += &format!(
            "The same with {search} (`OODGATE_INDEX__SEARCH={setting}`, a second server, started in {:.2} s): pipeline limit {:.0} images/s \
             (measured just before), service {:.0} images/s ({:.1} s); scores identical to in-process {search}: {} of {}.\n\n",
            ex.startup_seconds,
            ex.pipeline_limit_images_per_second,
            ex.images_per_second,
            ex.seconds,
            or_null(ex.scores_identical_to_in_process),
            ex.images
        );
    }
    s += "The service overlaps stages that the in-process limit runs one after the other (ONNX Runtime on one batch while LOF \
          scores the previous requests on the rayon pool), which is how it can exceed that limit.\n\n";
    if let Some(two) = &r.two_gates {
        s += &two_gates(two, r);
    }
    if let Some(c) = &r.int8 {
        s += &super::int8::section(c);
    }
    s
}

/// Section 1's two-gate run, next to the one-gate figures above it.
fn two_gates(two: &TwoGates, r: &BenchResults) -> String {
    let one = &two.one_gate;
    let names: Vec<String> = two
        .gates
        .iter()
        .map(|g| format!("`{}` (model `{}`)", g.gate, g.model))
        .collect();
    let sets: Vec<String> = two
        .gates
        .iter()
        .map(|g| format!("{} test ({} images) to `{}`", g.set, g.images, g.gate))
        .collect();
    let mut s = format!(
        "**Two gates in one process.** One server serves {} (started in {:.2} s); the replay library streams {} at the same time, \
         each gate by its own client with the settings above ({} streams x batch {}, window {}; after a warm-up of 300 images \
         each), so twice as many images are in flight. Next to it, a second server serving `{}` alone, as every other service \
         run here, is streamed the same {} images (the sets one after the other) by one such client, just before and just \
         after: {:.0} and {:.0} images/s, mean {:.0}; and in between by two such clients at once (each gate's set to `{}`, as \
         many images in flight as with two gates): {:.0} images/s. The two servers (the one not streamed to sits idle) and the clients share the machine's {} cores.\n\n\
         | gate | set | images | seconds | images/s | verdicts | class = label | images answered (server) | model runs (server) | images in them (server) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        names.join(" and "),
        two.startup_seconds,
        sets.join(" and "),
        two.streams,
        two.batch,
        two.window,
        one.gate,
        one.images,
        one.before_images_per_second,
        one.after_images_per_second,
        one.images_per_second,
        one.gate,
        one.two_clients_images_per_second,
        r.machine.cores,
    );
    for g in &two.gates {
        s += &format!(
            "| `{}` | {} | {} | {:.1} | {:.0} | {} | {:.2} % | {} | {} | {} |\n",
            g.gate,
            g.set,
            g.images,
            g.seconds,
            g.images_per_second,
            g.verdicts,
            100.0 * g.accuracy,
            g.served_images,
            g.batches,
            g.batch_images,
        );
    }
    s += &format!(
        "| both, first request to last verdict | | {} | {:.1} | **{:.0}** | | | | | |\n\n",
        two.images, two.seconds, two.images_per_second
    );
    s += &format!(
        "Total two-gate throughput / one-gate throughput, same images: **{:.2}** ({:.0} / {:.0} images/s; the one-gate run of \
         all 30,000 images above: {:.0} images/s); against one gate under the same two clients: {:.2}. A gate's batcher runs \
         its model one batch at a time; two gates' model runs can overlap. Every image got a verdict that is not an error, and the server answered \
         each gate's images under that gate: {}. No model run mixed gates (each gate's model runs, from the server's \
         `oodgate_batch_images{{gate}}`, carried exactly the images sent to that gate): {}. The `class = label` column is the \
         classifier's accuracy on its own test set, which a gate given the other's images would not reach.\n\n",
        two.ratio(),
        two.images_per_second,
        one.images_per_second,
        r.service.stream.images_per_second,
        two.images_per_second / one.two_clients_images_per_second,
        met(two.every_image_judged()),
        met(two.batches_kept_apart()),
    );
    s
}

/// Section 2: every search mode against scikit-learn's LOF.
fn against_sklearn(r: &BenchResults) -> String {
    let mut s = String::from("## 2. LOF against scikit-learn\n\n");
    if let Some(seed) = &r.seed {
        s += &format!(
            "scikit-learn {} `LocalOutlierFactor(n_neighbors=20, novelty=True, contamination=0.001)` (algorithm chosen: `{}`), fitted on the \
             index's {} training embeddings in {:.1} s; `score_samples` of the 30,000 query embeddings (MNIST, Fashion-MNIST, \
             CIFAR-10 test) took {:.2} s. oodgate's `LofIndex::query` on the same 30,000 embeddings, one call (parallel on rayon). \
             Verdict = score below the threshold at contamination 0.001, each side with its own threshold (oodgate {:.7}, \
             scikit-learn `offset_` {:.7}). Recall@20 against oodgate's exact search.\n\n",
            seed.versions.sklearn,
            seed.lof_method,
            r.model.index_size,
            seed.lof_fit_seconds,
            seed.lof_score_seconds,
            r.lof_vs_sklearn.offset,
            seed.lof_offset,
        );
    }
    s += "| search | seconds | queries/s | speed vs scikit-learn | verdict agreement | max relative score difference | recall@20 |\n| --- | --- | --- | --- | --- | --- | --- |\n";
    for row in &r.lof_vs_sklearn.modes {
        s += &format!(
            "| {} | {:.2} | {:.0} | {:.1}x | {:.3} % | {:.1e} | {:.4} |\n",
            row.mode,
            row.seconds,
            row.queries_per_second,
            or_nan(row.speedup_vs_sklearn),
            100.0 * or_nan(row.agreement_with_sklearn),
            or_nan(row.max_relative_score_difference),
            row.recall_at_k,
        );
    }
    s
}

/// Section 3: the Keras + scikit-learn stack.
fn seed_stack(r: &BenchResults) -> String {
    let mut s = String::from("\n## 3. What a user would pick instead: Keras + scikit-learn\n\n");
    let Some(seed) = &r.seed else {
        return s + "Not measured in this run (--skip-seed).\n";
    };
    let unary = &r.service.unary_ms;
    s += &format!(
        "`bench/seed_stack.py`: TensorFlow {} / Keras {}, the default model's architecture (recipe l2-aug, built by `train/oodtrain`, \
         fresh weights: speed does not depend on them), scikit-learn LOF as in section 2. TensorFlow uses both cores.\n\n\
         - Batch job on the 30,000 images: preprocessing (u8 to [0, 1]; CIFAR-10 to gray 28x28 with `tf.image`) {:.2} s, \
         `model.predict(batch_size=256)` {:.2} s (after a one-batch warm-up), `score_samples` {:.2} s (section 2, on oodgate's \
         embeddings of the same images): {:.2} s in all, **{:.0} images/s**; the LOF fit ({:.1} s) is not counted. \
         oodgate streaming: **{:.0} images/s**.\n\
         - One image per call, {} images spread over the three sets (preprocess, `model.predict`, `score_samples`): \
         p50 **{:.1} ms**, p99 {:.1} ms; calling the model directly (`model(x)`) instead of `predict`: p50 {:.1} ms, p99 {:.1} ms. \
         oodgate unary `Detect`: p50 **{:.2} ms**, p99 {:.2} ms.\n",
        seed.versions.tensorflow,
        seed.versions.keras,
        seed.batch_preprocess_seconds,
        seed.batch_predict_seconds,
        seed.lof_score_seconds,
        seed.batch_seconds,
        seed.batch_images_per_second,
        seed.lof_fit_seconds,
        r.service.stream.images_per_second,
        seed.single_predict_ms.n,
        seed.single_predict_ms.p50,
        seed.single_predict_ms.p99,
        seed.single_call_ms.p50,
        seed.single_call_ms.p99,
        unary.p50,
        unary.p99,
    );
    s
}

pub(super) fn latency_row(name: &str, v: &LatencyStats) -> String {
    format!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
        v.n, v.p50, v.p90, v.p99, v.max
    )
}

/// Section 4: latencies, and where a unary call's time goes.
fn latency(r: &BenchResults) -> String {
    let service = &r.service;
    let unary = &service.unary_ms;
    let st = &service.stream;
    let mut s = String::from(
        "\n## 4. Latency\n\n| what | n | p50 ms | p90 ms | p99 ms | max ms |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    s += &latency_row(
        "in-process, one image: `Detector::embed` + `score` + `judge`, each next to the unary call for the same image, alternately before and after (the ratio's denominator)",
        &service.in_process_interleaved_ms,
    );
    s += &latency_row(
        "in-process, one image, measured alone before the server started",
        &r.in_process_single_ms,
    );
    s += &latency_row(
        "unary `Detect`, one image per call, one client, sequential",
        unary,
    );
    s += &latency_row(
        "`GetModelInfo` round trip (no model work: the gRPC + scheduling floor), same client",
        &service.get_model_info_ms,
    );
    s += &latency_row(
        "streaming load (section 1): per request of 16 images, send to verdicts",
        &st.request_latency_ms,
    );
    if let Some(ex) = &r.service_alternative {
        s += &latency_row(
            &format!(
                "streaming load, server with {}: per request of 16 images",
                ex.search
            ),
            &ex.request_latency_ms,
        );
    }
    for g in r.two_gates.iter().flat_map(|two| &two.gates) {
        s += &latency_row(
            &format!(
                "streaming load, two gates at once (section 1), gate `{}`: per request of 16 images",
                g.gate
            ),
            &g.request_latency_ms,
        );
    }
    s += &format!(
        "\nUnder the streaming load {} streams x window {} x {} images = {} images are in flight at once, so a request's round \
         trip is about that many images divided by the throughput (Little's law), not a per-image cost. On a machine whose \
         load average exceeds its core count, every hand-off between threads (gRPC task, decode on rayon, the batcher, ONNX \
         Runtime, LOF on rayon, back) can wait for a time slice; the `GetModelInfo` row shows the part of the unary time that \
         has nothing to do with the model.\n",
        st.streams,
        st.window,
        st.batch,
        st.streams * st.window * st.batch,
    );
    let inside = &service.unary_inside_server_mean_ms;
    if let Some(handler) = inside.handler {
        let total = unary.mean;
        let (preprocess, queue, embed, lof) = (
            or_nan(inside.preprocess),
            or_nan(inside.queue),
            or_nan(inside.embed),
            or_nan(inside.lof),
        );
        s += &format!(
            "\nWhere a unary call's time goes (means over the same {} calls; the server's own histograms, read from its \
             `/metrics` before and after): inside the server's handler {handler:.3} ms, of which preprocessing {preprocess:.3}, \
             queue {queue:.3}, ONNX Runtime {embed:.3} and LOF {lof:.3} ms, so {:.3} ms of hand-offs and bookkeeping; the other \
             {:.3} ms of the {total:.3} ms mean are the gRPC round trip and the client (the `GetModelInfo` mean is {:.3} ms).\n",
            unary.n,
            handler - preprocess - queue - embed - lof,
            total - handler,
            service.get_model_info_ms.mean,
        );
    }
    s
}

/// Section 5: start-up, index build, peak memory.
fn startup(r: &BenchResults) -> String {
    let mut s = String::from("\n## 5. Start-up, index build, memory\n\n");
    s += &format!(
        "- Process start to gRPC health `SERVING`, saved index: **{:.2} s** (health polled every 10 ms).\n",
        r.service.startup_seconds
    );
    match &r.index_build {
        None => s += "- Index build: not measured in this run (--skip-index-build).\n",
        Some(build) => match (build.graph_seconds, &build.graph_output) {
            (Some(graph_seconds), Some(graph_output)) => {
                s += &format!(
                    "- `oodgate index build --out TMP` (embed the 60,000 training images, exact kNN, LOF, save; no HNSW graph, \
                     since the configuration searches exactly): **{:.1} s** wall clock. It printed: `{}`\n\
                     - The same with `--graph` (HNSW graph and its recall check too): **{graph_seconds:.1} s**. It printed: `{graph_output}`\n",
                    build.seconds, build.output
                )
            }
            // Runs made before the graph was optional built it every time.
            _ => {
                s += &format!(
                    "- `oodgate index build --out TMP` (embed the 60,000 training images, exact kNN, LOF, HNSW graph, recall check, save): \
                     **{:.1} s** wall clock. It printed: `{}`\n",
                    build.seconds, build.output
                )
            }
        },
    }
    if let Some(first) = &r.first_start {
        s += &format!(
            "- First start, no index cached (`oodgate serve` with an empty `index.cache_dir`: every gate embeds its reference set \
             and fits LOF before health says `SERVING`): **{:.2} s** with the gates {}; **{:.2} s** with the default gate alone. \
             With the indexes cached: {:.2} s (default gate alone, above){}.\n",
            first.all_gates_seconds,
            first.gates.join(" and "),
            first.default_gate_seconds,
            r.service.startup_seconds,
            r.two_gates.as_ref().map_or(String::new(), |two| format!(
                ", {:.2} s with two gates",
                two.startup_seconds
            )),
        );
    }
    let mib = |kb: Option<u64>| kb.map_or(f64::NAN, |kb| kb as f64) / 1024.0;
    s += &format!(
        "- Peak RSS of the service (`VmHWM`): {:.0} MiB after the streaming run, {:.0} MiB at the end (after the unary calls).\n",
        mib(r.service.vm_hwm_kb_after_stream),
        mib(r.service.vm_hwm_kb),
    );
    s
}

/// Section 6: how LOF cost grows with the index.
fn scaling(scaling: Option<&Scaling>) -> String {
    let mut s = String::from("\n## 6. How cost grows with the index\n\n");
    let Some(scaling) = scaling else {
        return s + "Not measured in this run.\n";
    };
    let sizes = &scaling.sizes;
    s += &format!(
        "LOF over training sets of growing size (k = {}), queried with {} embeddings sampled evenly from the three test sets; \
         verdicts at contamination {}, each index with its own threshold. Up to 60,000 points the training set is the model's \
         real training embeddings; beyond, synthetic points are added: real embeddings moved by Gaussian noise ({} of the \
         radius over sqrt(dim) per dimension) and put back on the sphere. Up to {} points every index is built twice: with \
         exact training neighbours (scikit-learn's fit) and with training neighbours searched on the HNSW graph (ef {}); larger \
         ones only from the graph, since the exact all-pairs pass grows with n squared. Size is the index artifact on disk \
         (embeddings, graph, LOF state), about what the service holds in memory. Each search's time is the best of {} runs over the \
         queries. Recall and agreement are with exact search on the same index: recall is the share of each query's k exact \
         neighbours that the search returned.\n\n\
         | points (synthetic) | build | build s | size MiB | search | queries/s | speed vs exact | recall@k | agreement with exact |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        scaling.k,
        or_null(sizes.first().map(|size| size.queries)),
        scaling.contamination,
        scaling.jitter,
        scaling.exact_build_max,
        scaling.build_ef,
        scaling.runs,
    );
    for size in sizes {
        for (label, build) in size.builds() {
            for mode in &build.modes {
                let (speed, recall, agree) = if mode.ef.is_none() {
                    ("1x".to_string(), String::new(), String::new())
                } else {
                    (
                        format!("{:.1}x", or_nan(mode.speedup_vs_exact)),
                        format!("{:.3}", or_nan(mode.recall_at_k)),
                        format!("{:.2} %", 100.0 * or_nan(mode.agreement_with_exact)),
                    )
                };
                s += &format!(
                    "| {} ({}) | {label} neighbours | {:.1} | {:.1} | {} | {:.0} | {speed} | {recall} | {agree} |\n",
                    size.points,
                    size.synthetic,
                    build.build_seconds,
                    build.artifact_bytes as f64 / 1_048_576.0,
                    mode.search,
                    mode.queries_per_second,
                );
            }
        }
    }
    s += &format!(
        "\nHow many queries a small error in their neighbours can flip: the share whose exact score lies within {:.0} % of \
         the threshold. Where it is large, agreement stays low even at high recall: a query that misses a few of its \
         neighbours gets neighbours with other densities instead, and its score moves either way.\n\n",
        100.0 * scaling.near
    );
    for size in sizes {
        for (label, build) in size.builds() {
            if let Some(exact) = build.modes.first() {
                s += &format!(
                    "- {} points, {label} neighbours: {:.1} %\n",
                    size.points,
                    100.0 * or_nan(exact.near_threshold)
                );
            }
        }
    }
    s += "\nTaking the training neighbours from the graph instead of the exact pass changes these verdicts (both indexes searched exactly):\n\n";
    for size in sizes {
        if let Some(a) = size.graph_build_agreement_with_exact_build {
            s += &format!("- {} points: {:.2} % agreement\n", size.points, 100.0 * a);
        }
    }
    s
}

const METHOD: &str = "\n## Method and caveats\n\n\
    - All figures come from one `oodgate bench` run; `target/bench/results.json` holds the raw numbers. \
    Ratios pair measurements taken minutes apart at most; the load average above shows how much other work shared the 2 cores.\n\
    - The pipeline limit is measured twice (before and after the service run) and averaged, so a change of load in between \
    shows as a gap between the two.\n\
    - The in-process limits run on preprocessed pixels; the service also decodes and preprocesses every image, and its \
    client (the replay library, in this process) shares the cores.\n\
    - The seed stack's batch figure adds three separately timed parts; its Keras weights are fresh (see section 3).\n\
    - On a shared machine one run is one sample: tail latencies (p99) and ratios near their goal can move between runs; \
    rerun `make bench` before drawing a conclusion from them.\n";
