//! The server under pressure, over gRPC against the real `oodgate serve`:
//! overload (RESOURCE_EXHAUSTED, then recovery), clients that go away mid-stream
//! (their work is dropped and accounted for), and SIGTERM while streams are busy
//! (everything sent is answered, streams end with a status, exit 0 in the grace period).
//! The binary, not an in-process server: the tests signal the process, read its exit
//! status and log, and count in `/metrics` (a recorder global to the process).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oodgate_e2e::{Server, digits_request, metric_value, mnist_test, percentile, runtime};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// A tiny queue, many concurrent requests: some are refused with RESOURCE_EXHAUSTED
/// (none fails otherwise, none is answered partly); afterwards every request succeeds.
#[test]
fn overload_refuses_with_resource_exhausted_then_recovers() {
    let server = Server::start(&[
        ("OODGATE_BATCHING__QUEUE_CAPACITY", "32"),
        ("OODGATE_SERVER__MAX_IMAGES_PER_REQUEST", "32"),
    ]);
    let mnist = Arc::new(mnist_test());
    let rt = runtime();
    rt.block_on(async {
        // Three connections, 96 unary calls of 32 images at once.
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(
                oodgate_replay::replay::connect(&server.endpoint)
                    .await
                    .unwrap(),
            );
        }
        let start = Arc::new(tokio::sync::Barrier::new(96));
        let calls: Vec<_> = (0..96)
            .map(|c| {
                let mut client = clients[c % 3].clone();
                let request = digits_request(&mnist, &format!("u{c}"), c * 32, 32);
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    let began = Instant::now();
                    let answer = client.detect(request).await;
                    (answer, began.elapsed())
                })
            })
            .collect();
        let mut served = Vec::new();
        let mut refused = Vec::new();
        for call in calls {
            let (answer, took) = call.await.unwrap();
            match answer {
                Ok(response) => {
                    assert_eq!(response.into_inner().verdicts.len(), 32, "answered whole");
                    served.push(took);
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    assert!(status.message().contains("busy"), "{status:?}");
                    refused.push(took);
                }
            }
        }
        println!(
            "unary: {} served (p50 {:?}, max {:?}), {} refused (p50 {:?}, max {:?})",
            served.len(),
            percentile(&mut served, 0.5),
            percentile(&mut served, 1.0),
            refused.len(),
            percentile(&mut refused, 0.5),
            percentile(&mut refused, 1.0),
        );
        assert!(!served.is_empty(), "some calls are served");
        assert!(!refused.is_empty(), "some calls are refused");

        // Streams, each sending its requests at once: a refusal ends a stream after the
        // responses already given, each complete and in order.
        let mut tasks = Vec::new();
        for s in 0..8 {
            let mut client = clients[s % 3].clone();
            let requests: Vec<_> = (0..6)
                .map(|r| digits_request(&mnist, &format!("s{s}-r{r}"), 100 * s + r, 16))
                .collect();
            tasks.push(tokio::spawn(async move {
                let mut answers = client
                    .detect_stream(tokio_stream::iter(requests))
                    .await?
                    .into_inner();
                let mut received = Vec::new();
                let end = loop {
                    match answers.message().await {
                        Ok(Some(response)) => received.push(response),
                        Ok(None) => break Code::Ok,
                        Err(status) => {
                            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                            break status.code();
                        }
                    }
                };
                Ok::<_, tonic::Status>((s, received, end))
            }));
        }
        let mut ends = BTreeMap::new();
        for task in tasks {
            let (s, received, end) = task.await.unwrap().unwrap();
            for (r, response) in received.iter().enumerate() {
                let ids: Vec<_> = response.verdicts.iter().map(|v| v.id.clone()).collect();
                let due: Vec<_> = (0..16).map(|n| format!("s{s}-r{r}-{n}")).collect();
                assert_eq!(ids, due, "stream {s}, response {r}");
            }
            if end == Code::Ok {
                assert_eq!(
                    received.len(),
                    6,
                    "stream {s} ended OK with requests unanswered"
                );
            }
            *ends.entry(format!("{end:?}")).or_insert(0) += 1;
        }
        println!("streams: {ends:?}");
    });

    // Recovery: the queue drains, then every sequential request succeeds.
    let (queue, drained) = server.wait_for_metric(
        r#"oodgate_queue_images{gate="digits"}"#,
        |v| v == 0.0,
        Duration::from_secs(5),
    );
    assert!(drained, "queue not empty after the burst: {queue:?}");
    rt.block_on(async {
        let mut client = oodgate_replay::replay::connect(&server.endpoint)
            .await
            .unwrap();
        for r in 0..20 {
            let response = client
                .detect(digits_request(&mnist, &format!("after{r}"), r * 32, 32))
                .await
                .unwrap_or_else(|s| panic!("request {r} after the burst: {s:?}"));
            assert_eq!(response.into_inner().verdicts.len(), 32);
        }
        // One stream, one request at a time.
        let (tx, rx) = mpsc::channel(1);
        let mut answers = client
            .detect_stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for r in 0..20 {
            tx.send(digits_request(&mnist, &format!("stream{r}"), r * 32, 32))
                .await
                .unwrap();
            let response = answers.message().await.unwrap().expect("a response");
            assert_eq!(response.verdicts.len(), 32);
        }
        drop(tx);
        assert!(answers.message().await.unwrap().is_none());
    });
    let metrics = server.metrics();
    let exhausted = metric_value(
        &metrics,
        r#"oodgate_requests_total{gate="digits",method="Detect",code="RESOURCE_EXHAUSTED"}"#,
    );
    assert!(exhausted.is_some_and(|v| v >= 1.0), "{metrics}");
}

/// Clients that go away mid-stream (the client process dies: its runtime, connection
/// and all, is dropped): their queued work is dropped, the gauges return to zero within
/// a few seconds, the cancellations are counted, and the server goes on serving.
#[test]
fn clients_that_go_away_mid_stream_leave_nothing_behind() {
    let server = Server::start(&[]);
    let mnist = Arc::new(mnist_test());
    let cancelled_before = metric_value(
        &server.metrics(),
        r#"oodgate_cancelled_requests_total{gate="digits"}"#,
    )
    .unwrap_or(0.0);
    for round in 0..4 {
        // The client's own runtime: dropping it closes its connection, like a client
        // process that dies.
        let client_rt = runtime();
        client_rt.block_on(async {
            let mut client = oodgate_replay::replay::connect(&server.endpoint)
                .await
                .unwrap();
            let (tx, rx) = mpsc::channel(8);
            let mut answers = client
                .detect_stream(ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let mnist = mnist.clone();
            tokio::spawn(async move {
                for r in 0.. {
                    if tx
                        .send(digits_request(
                            &mnist,
                            &format!("c{round}-r{r}"),
                            r * 256,
                            256,
                        ))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
            // Rounds differ in when the client goes: before any answer, or after some.
            for _ in 0..round {
                let response = answers.message().await.unwrap().expect("a response");
                assert_eq!(response.verdicts.len(), 256);
            }
            tokio::time::sleep(Duration::from_millis(50 * round as u64)).await;
            // `answers` and the sending task stay alive: only the connection goes.
            std::mem::forget(answers);
        });
        client_rt.shutdown_background();
    }
    // Unary calls abandoned while they are processed (the call is cancelled, the
    // connection stays).
    let rt = runtime();
    rt.block_on(async {
        let client = oodgate_replay::replay::connect(&server.endpoint)
            .await
            .unwrap();
        for c in 0..4 {
            let mut client = client.clone();
            let request = digits_request(&mnist, &format!("unary{c}"), c * 1000, 1000);
            let call = tokio::spawn(async move { client.detect(request).await });
            tokio::time::sleep(Duration::from_millis(5 + 20 * c as u64)).await;
            call.abort();
        }
    });

    // Measured up to 60 s (to tell slow from stuck); asserted within 5 s.
    let gone = Instant::now();
    let (active, closed) = server.wait_for_metric(
        "oodgate_streams_active",
        |v| v == 0.0,
        Duration::from_secs(60),
    );
    let closed_after = gone.elapsed();
    let (queue, drained) = server.wait_for_metric(
        r#"oodgate_queue_images{gate="digits"}"#,
        |v| v == 0.0,
        Duration::from_secs(60),
    );
    let drained_after = gone.elapsed();
    println!(
        "after the clients went away: streams active 0 after {closed_after:?} ({closed}), queue empty after {drained_after:?} ({drained})"
    );
    let metrics = server.metrics();
    assert!(
        closed,
        "streams still active after 60 s: {active:?}\n{metrics}"
    );
    assert!(
        drained,
        "images still queued after 60 s: {queue:?}\n{metrics}"
    );
    let short = |m: &str| {
        m.lines()
            .filter(|l| {
                l.starts_with("oodgate_") && !l.contains("_bucket") && !l.contains("model_info")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        closed_after <= Duration::from_secs(5) && drained_after <= Duration::from_secs(5),
        "the abandoned streams' work was not dropped: streams closed after {closed_after:?}, queue empty after {drained_after:?}\n{}",
        short(&metrics)
    );
    let cancelled = metric_value(
        &metrics,
        r#"oodgate_cancelled_requests_total{gate="digits"}"#,
    )
    .unwrap_or(0.0);
    let streams = metric_value(&metrics, "oodgate_streams_total").unwrap_or(0.0);
    println!(
        "after 4 abandoned streams and 4 abandoned calls: cancelled requests {cancelled}, streams opened {streams}"
    );
    assert_eq!(streams, 4.0, "{metrics}");
    assert!(
        cancelled > cancelled_before,
        "no cancelled request counted:\n{metrics}"
    );
    let log = server.log_text();
    assert_eq!(
        log.matches("stream closed").count(),
        4,
        "each abandoned stream logs its end:\n{log}"
    );

    // Still serving.
    rt.block_on(async {
        let mut client = oodgate_replay::replay::connect(&server.endpoint)
            .await
            .unwrap();
        let response = client
            .detect(digits_request(&mnist, "after", 0, 64))
            .await
            .unwrap();
        assert_eq!(response.into_inner().verdicts.len(), 64);
    });
}

/// What one stream saw around SIGTERM.
struct StreamOutcome {
    /// When each request was handed to the transport.
    sent_at: Vec<Instant>,
    /// Images per response, in order (checked against the request it answers).
    answered: usize,
    end: Result<(), tonic::Status>,
}

/// Sends requests of `size` images continuously (at most `window` unanswered) until
/// the stream ends; checks each response against its request.
async fn busy_stream(
    endpoint: String,
    s: usize,
    size: usize,
    window: usize,
    mnist: Arc<oodgate_datasets::Dataset>,
) -> StreamOutcome {
    let mut client = oodgate_replay::replay::connect(&endpoint).await.unwrap();
    let (tx, rx) = mpsc::channel(window);
    let permits = Arc::new(Semaphore::new(window));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let sender = {
        let permits = permits.clone();
        tokio::spawn(async move {
            for r in 0.. {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                permit.forget();
                let request = digits_request(&mnist, &format!("s{s}-r{r}"), r * size, size);
                let _ = sent_tx.send((r, Instant::now()));
                if tx.send(request).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut answers = client
        .detect_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut sent_at = Vec::new();
    let mut answered = 0;
    let end = loop {
        match answers.message().await {
            Ok(Some(response)) => {
                while sent_at.len() <= answered {
                    let (_, at) = sent_rx
                        .recv()
                        .await
                        .expect("a response to a request never sent");
                    sent_at.push(at);
                }
                let ids: Vec<_> = response.verdicts.iter().map(|v| v.id.clone()).collect();
                let due: Vec<_> = (0..size).map(|n| format!("s{s}-r{answered}-{n}")).collect();
                assert_eq!(
                    ids, due,
                    "stream {s}: response {answered} incomplete or out of order"
                );
                assert!(
                    response.verdicts.iter().all(|v| v.lof.is_some()),
                    "stream {s}: an unjudged digit"
                );
                answered += 1;
                permits.add_permits(1);
            }
            Ok(None) => break Ok(()),
            Err(status) => break Err(status),
        }
    };
    permits.close();
    sender.abort();
    while let Ok((_, at)) = sent_rx.try_recv() {
        sent_at.push(at);
    }
    StreamOutcome {
        sent_at,
        answered,
        end,
    }
}

/// SIGTERM while streams send continuously: every request sent before the signal is
/// answered completely and in order, each stream ends with OK or UNAVAILABLE (not a
/// broken connection), and the process exits 0 within the grace period.
#[test]
fn sigterm_while_streams_are_busy_answers_what_was_sent_and_exits_0() {
    let grace = 10;
    let mut server = Server::start(&[("OODGATE_SERVER__SHUTDOWN_GRACE_SECONDS", "10")]);
    let mnist = Arc::new(mnist_test());
    let rt = runtime();
    let (outcomes, signalled, status, exit_after) = rt.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|s| {
                tokio::spawn(busy_stream(
                    server.endpoint.clone(),
                    s,
                    32,
                    4,
                    mnist.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let signalled = Instant::now();
        server.send_sigterm();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let status =
            tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(grace + 5)));
        (outcomes, signalled, status, signalled.elapsed())
    });
    let log = server.log_text();
    let mut problems = Vec::new();
    for (s, o) in outcomes.iter().enumerate() {
        let before = o
            .sent_at
            .iter()
            .filter(|&&at| at + Duration::from_millis(100) < signalled)
            .count();
        let ended = match &o.end {
            Ok(()) => "OK".to_owned(),
            Err(status) => format!("{:?}: {}", status.code(), status.message()),
        };
        println!(
            "stream {s}: {} requests sent ({before} before SIGTERM), {} answered, ended {ended}",
            o.sent_at.len(),
            o.answered
        );
        if before == 0 {
            problems.push(format!("stream {s} sent nothing before SIGTERM"));
        }
        if o.answered < before {
            problems.push(format!(
                "stream {s}: {before} requests sent before SIGTERM, only {} answered",
                o.answered
            ));
        }
        if let Err(status) = &o.end
            && status.code() != Code::Unavailable
        {
            problems.push(format!(
                "stream {s} ended by {:?} ({}) instead of OK or UNAVAILABLE, {} of {} sent requests answered",
                status.code(),
                status.message(),
                o.answered,
                o.sent_at.len()
            ));
        }
    }
    match status {
        None => problems.push(format!("still running {exit_after:?} after SIGTERM")),
        Some(status) => {
            println!("exit {status} {exit_after:?} after SIGTERM (grace {grace} s)");
            if !status.success() {
                problems.push(format!("exit {status} after SIGTERM"));
            }
            if exit_after > Duration::from_secs(grace + 2) {
                problems.push(format!(
                    "exited {exit_after:?} after SIGTERM, grace {grace} s"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nserver log:\n{log}",
        problems.join("\n")
    );
}

/// SIGTERM while streams are busy, clients that finish what they have: each stream
/// half-closes after its requests; all are answered, and the process exits 0 as soon
/// as they are done (well before the grace period ends).
#[test]
fn sigterm_lets_finishing_streams_complete_then_exits_promptly() {
    let mut server = Server::start(&[("OODGATE_SERVER__SHUTDOWN_GRACE_SECONDS", "10")]);
    let mnist = Arc::new(mnist_test());
    let rt = runtime();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for s in 0..4 {
            let endpoint = server.endpoint.clone();
            let mnist = mnist.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = oodgate_replay::replay::connect(&endpoint).await.unwrap();
                let (tx, rx) = mpsc::channel(64);
                let mut answers = client.detect_stream(ReceiverStream::new(rx)).await.unwrap().into_inner();
                let mut pending = VecDeque::new();
                // Ten requests sent at once, then the sending side closes.
                for r in 0..10 {
                    tx.send(digits_request(&mnist, &format!("s{s}-r{r}"), r * 32, 32)).await.unwrap();
                    pending.push_back(r);
                }
                drop(tx);
                let mut answered = 0;
                loop {
                    match answers.message().await {
                        Ok(Some(response)) => {
                            let r = pending.pop_front().expect("a response to a request never sent");
                            assert_eq!(response.verdicts.len(), 32);
                            assert_eq!(response.verdicts[0].id, format!("s{s}-r{r}-0"));
                            answered += 1;
                        }
                        Ok(None) => break Ok(answered),
                        Err(status) => break Err((answered, status)),
                    }
                }
            }));
        }
        // Let the streams get going, then signal.
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.send_sigterm();
        let signalled = Instant::now();
        for (s, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(answered) => assert_eq!(answered, 10, "stream {s}"),
                Err((answered, status)) => panic!(
                    "stream {s} cut after {answered} of 10 responses, {:?} after SIGTERM: {status:?}\nserver log:\n{}",
                    signalled.elapsed(),
                    server.log_text()
                ),
            }
        }
        let finished = signalled.elapsed();
        let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(15)))
            .unwrap_or_else(|| panic!("still running after SIGTERM:\n{}", server.log_text()));
        let took = signalled.elapsed();
        println!("streams done {finished:?} after SIGTERM, exit {status} {took:?} after SIGTERM");
        assert!(status.success(), "exit {status}:\n{}", server.log_text());
        assert!(
            took < finished + Duration::from_secs(3) && took < Duration::from_secs(10),
            "exit {took:?} after SIGTERM, the streams were done after {finished:?}\n{}",
            server.log_text()
        );
        // New calls are refused once it is gone.
        assert!(oodgate_replay::replay::connect(&server.endpoint).await.is_err());
    });
}
