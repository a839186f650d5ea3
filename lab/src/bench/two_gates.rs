//! Two gates in one process under load: one server serving the default (digits) gate
//! and the Fashion-MNIST gate, MNIST test streamed to the first and Fashion-MNIST test
//! to the second at the same time, each by a client with the one-gate streaming run's
//! settings. Next to it, on a second server serving the default gate alone, the same
//! images streamed by one such client just before and just after: the ratio of the two
//! throughputs is what serving a second gate costs (or gains) on this machine. The
//! two-gate run has twice the images in flight, so the one-gate server is also streamed
//! by two such clients at once: what the same load gives without a second gate.
//!
//! Both servers are up for the whole stage (the idle one waits on its sockets), so the
//! three runs follow each other within seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use oodgate_replay::{Replay, ReplayOptions, ReplaySet};

use super::results::{GateStream, LatencyStats, OneGate, TwoGates};
use super::service::{GateCounts, Replayer, Server, scrape, start_server, stop_server};
use super::{Context, Log};

/// The second gate (the default configuration serves it beside the digits).
pub(super) const SECOND_GATE: &str = "fashion";
/// What each gate is streamed: the default gate first.
const SETS: [&str; 2] = ["mnist", "fashion-mnist"];
/// Warm-up images per gate before each measured run.
const WARM_UP: usize = 300;

/// Starts both servers, measures, stops both. `limit`: the first this many images of
/// each set (`--quick`), else all of them.
pub(super) fn run(
    ctx: &Context,
    replayer: &Replayer,
    limit: Option<usize>,
    log: &mut Log,
) -> anyhow::Result<TwoGates> {
    log.stage("two gates: start a server with both, and one with the default gate alone");
    // The two-gate server first: a first start builds the second gate's index if none is
    // cached, which must be over before anything is measured.
    let two = start_server(
        ctx.config_file,
        &ctx.work.join("serve-two-gates.log"),
        &ctx.gates_env(&[SECOND_GATE]),
    )?;
    eprintln!(
        "  two gates SERVING after {:.2} s at {}",
        two.startup.as_secs_f64(),
        two.endpoint
    );
    let one = match start_server(
        ctx.config_file,
        &ctx.work.join("serve-one-gate.log"),
        &ctx.gates_env(&[]),
    ) {
        Ok(one) => one,
        Err(e) => {
            stop_server(two)?;
            return Err(e);
        }
    };
    let measured = measure(ctx, replayer, &two, &one, limit, log);
    // Both stopped whatever the measurement gave, so no server outlives the bench.
    let stopped = [stop_server(two), stop_server(one)];
    let measured = measured?;
    for s in stopped {
        s?;
    }
    Ok(measured)
}

fn measure(
    ctx: &Context,
    replayer: &Replayer,
    two: &Server,
    one: &Server,
    limit: Option<usize>,
    log: &mut Log,
) -> anyhow::Result<TwoGates> {
    let gates = [ctx.default_gate.as_str(), SECOND_GATE];
    let load = |names: &[&str], n: Option<usize>| -> anyhow::Result<Arc<Vec<ReplaySet>>> {
        let mut sets = Vec::new();
        for name in names {
            let mut set = ReplaySet::load(name, &ctx.images.data)?;
            if let Some(n) = n {
                set.truncate(n);
            }
            sets.push(set);
        }
        Ok(Arc::new(sets))
    };
    let per_gate = [load(&SETS[..1], limit)?, load(&SETS[1..], limit)?];
    let per_gate_warm = [
        load(&SETS[..1], Some(WARM_UP))?,
        load(&SETS[1..], Some(WARM_UP))?,
    ];
    let both = load(&SETS, limit)?;
    let both_warm = load(&SETS, Some(WARM_UP))?;
    let images: Vec<usize> = per_gate.iter().map(|s| s[0].len()).collect();
    let total: usize = images.iter().sum();
    let options = |gate: &str| ReplayOptions {
        gate: gate.to_owned(),
        ..replayer.options.clone()
    };
    let rt = &replayer.rt;
    let one_gate = |warm: bool| -> anyhow::Result<f64> {
        let sets = if warm { &both_warm } else { &both };
        // Timed from outside, as the runs with two clients are.
        let started = Instant::now();
        rt.block_on(oodgate_replay::replay(
            one.endpoint.as_str(),
            sets.clone(),
            options(gates[0]),
        ))?;
        Ok(total as f64 / started.elapsed().as_secs_f64())
    };

    // Both sets streamed at once by two clients, to `server`'s gates `to`.
    let at_once = |server: &Server, to: [&str; 2], sets: &[Arc<Vec<ReplaySet>>; 2]| {
        rt.block_on(async {
            tokio::try_join!(
                oodgate_replay::replay(server.endpoint.as_str(), sets[0].clone(), options(to[0])),
                oodgate_replay::replay(server.endpoint.as_str(), sets[1].clone(), options(to[1])),
            )
        })
    };

    log.stage("two gates: the default gate alone, before");
    one_gate(true)?;
    let before = one_gate(false)?;
    eprintln!("  one gate: {before:.0} images/s");
    // The same two clients as the two-gate run, both to the default gate: as many
    // images in flight as there.
    let one_gate_twice = [gates[0]; 2];
    at_once(one, one_gate_twice, &per_gate_warm)?;
    let started = Instant::now();
    at_once(one, one_gate_twice, &per_gate)?;
    let two_clients = total as f64 / started.elapsed().as_secs_f64();
    eprintln!("  one gate, two clients: {two_clients:.0} images/s");

    log.stage("two gates: both streamed at once");
    at_once(two, gates, &per_gate_warm)?;
    let counts_before = scrape(&two.http)?;
    let started = Instant::now();
    let (first, second) = at_once(two, gates, &per_gate)?;
    let seconds = started.elapsed().as_secs_f64();
    let counts = counted_since(&two.http, &counts_before, &gates, &images)?;
    let images_per_second = total as f64 / seconds;
    eprintln!("  two gates: {images_per_second:.0} images/s in all");

    log.stage("two gates: the default gate alone, after");
    let after = one_gate(false)?;
    eprintln!("  one gate: {after:.0} images/s");

    let streams = [first, second]
        .iter()
        .zip(gates)
        .zip(&per_gate)
        .zip(counts)
        .map(|(((replay, gate), sets), counts)| gate_stream(replay, gate, &sets[0], counts))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let o = &replayer.options;
    Ok(TwoGates {
        startup_seconds: two.startup.as_secs_f64(),
        streams: o.streams,
        batch: o.batch_size,
        window: o.window,
        one_gate: OneGate {
            gate: gates[0].to_owned(),
            images: total,
            before_images_per_second: before,
            after_images_per_second: after,
            images_per_second: (before + after) / 2.0,
            two_clients_images_per_second: two_clients,
        },
        gates: streams,
        images: total,
        seconds,
        images_per_second,
    })
}

/// Each gate's counts since `before`, once the server has counted every image sent to
/// it (its metrics may trail the last verdict a little), or after 5 s with what it has.
fn counted_since(
    http: &str,
    before: &[super::service::Sample],
    gates: &[&str; 2],
    images: &[usize],
) -> anyhow::Result<Vec<GateCounts>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = scrape(http)?;
        let counts: Vec<GateCounts> = gates
            .iter()
            .map(|gate| GateCounts::of(&now, gate).since(GateCounts::of(before, gate)))
            .collect();
        let complete = counts
            .iter()
            .zip(images)
            .all(|(c, &n)| c.served >= n as f64 && c.batch_images >= n as f64);
        if complete || Instant::now() > deadline {
            return Ok(counts);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One gate's figures from its replay of `set` and the server's counts.
fn gate_stream(
    replay: &Replay,
    gate: &str,
    set: &ReplaySet,
    counts: GateCounts,
) -> anyhow::Result<GateStream> {
    ensure!(
        replay.model.gate == gate,
        "asked gate {gate:?}, GetModelInfo answered for {:?}",
        replay.model.gate
    );
    let answers = replay.answers.first().context("no answers")?;
    let judged: Vec<(u32, u8)> = answers
        .iter()
        .zip(&set.dataset.labels)
        .filter_map(|(a, &label)| a.class().map(|c| (c, label)))
        .collect();
    let right = judged
        .iter()
        .filter(|&&(c, label)| c == u32::from(label))
        .count();
    let images = answers.len();
    let seconds = replay.elapsed.as_secs_f64();
    Ok(GateStream {
        gate: gate.to_owned(),
        model: replay.model.model_name.clone(),
        set: set.name.clone(),
        images,
        seconds,
        images_per_second: images as f64 / seconds,
        request_latency_ms: LatencyStats::of(&replay.latencies),
        verdicts: judged.len(),
        accuracy: right as f64 / judged.len().max(1) as f64,
        served_images: counts.served.round() as u64,
        batches: counts.batches.round() as u64,
        batch_images: counts.batch_images.round() as u64,
    })
}
