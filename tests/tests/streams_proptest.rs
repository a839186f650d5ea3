//! Nothing is lost: random mixes of valid and invalid images over several concurrent
//! streams (random stream count, request count, batch sizes and invalid kinds) against
//! one server. Every id gets exactly one answer, in the order sent; invalid images get
//! errors and valid ones verdicts.
//!
//! The server runs in-process: it is the only one in this test binary, so the gauges
//! read at the end are its own.
//!
//! 12 cases by default (`PROPTEST_CASES` changes it); a failure is shrunk and printed.

use std::collections::HashSet;
use std::sync::Arc;

use oodgate_e2e::{InProcessServer, mnist_test, raw_image, runtime, tail};
use oodgate_proto::v1;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// What one image of a generated request is.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A MNIST test digit by index.
    Good(usize),
    /// One of the invalid kinds of [`invalid`].
    Bad(usize),
}

const INVALID_KINDS: usize = 8;

/// An invalid image of kind `k`, and a word its error message must contain.
fn invalid(k: usize, id: String, truncated_png: &[u8]) -> (v1::Image, &'static str) {
    let encoded = |bytes: Vec<u8>| v1::Image {
        id: id.clone(),
        data: Some(v1::image::Data::Encoded(bytes)),
    };
    match k {
        0 => (raw_image(&id, 28, 28, 1, vec![1; 100]), "needs 784"),
        1 => (raw_image(&id, 0, 28, 1, vec![]), "at least 1"),
        2 => (
            raw_image(&id, 28, 28, 5, vec![0; 28 * 28 * 5]),
            "channel count 5",
        ),
        3 => (
            raw_image(&id, 100_000, 100_000, 1, vec![0; 64]),
            "over the limit",
        ),
        4 => (
            encoded(b"GIF89a not really".to_vec()),
            "unknown image encoding",
        ),
        5 => (encoded(truncated_png.to_vec()), "could not decode"),
        6 => (
            v1::Image {
                id: id.clone(),
                data: None,
            },
            "no pixel data",
        ),
        _ => (
            raw_image(&id, 28, 28, 2, vec![0; 28 * 28 * 2]),
            "channel count 2",
        ),
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => (0usize..10_000).prop_map(Kind::Good),
        1 => (0..INVALID_KINDS).prop_map(Kind::Bad),
    ]
}

/// Streams -> requests -> images.
fn workload() -> impl Strategy<Value = Vec<Vec<Vec<Kind>>>> {
    let request = prop::collection::vec(kind(), 1..=24);
    let stream = prop::collection::vec(request, 1..=10);
    prop::collection::vec(stream, 1..=6)
}

#[test]
fn random_mixes_over_concurrent_streams_lose_nothing() {
    let server = InProcessServer::start(&[]);
    let mnist = Arc::new(mnist_test());
    let truncated_png = {
        let digit = image::GrayImage::from_raw(28, 28, mnist.image(1).to_vec()).unwrap();
        let mut bytes = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma8(digit)
            .write_to(&mut bytes, image::ImageFormat::Png)
            .unwrap();
        let bytes = bytes.into_inner();
        Arc::new(bytes[..bytes.len() * 2 / 3].to_vec())
    };
    let rt = runtime();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(12);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let cases_run = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&workload(), |streams| {
        let case = cases_run.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        rt.block_on(async {
            let mut tasks = Vec::new();
            for (s, stream) in streams.iter().enumerate() {
                let endpoint = server.endpoint.clone();
                let mnist = mnist.clone();
                let truncated_png = truncated_png.clone();
                // (id, Some(word an error must say) | None for a valid image) per request.
                let mut expected: Vec<Vec<(String, Option<&'static str>)>> = Vec::new();
                let mut requests = Vec::new();
                for (r, kinds) in stream.iter().enumerate() {
                    let mut images = Vec::new();
                    let mut due = Vec::new();
                    for (i, kind) in kinds.iter().enumerate() {
                        let id = format!("c{case}-s{s}-r{r}-i{i}");
                        match *kind {
                            Kind::Good(k) => {
                                images.push(raw_image(&id, 28, 28, 1, mnist.image(k).to_vec()));
                                due.push((id, None));
                            }
                            Kind::Bad(k) => {
                                let (image, says) = invalid(k, id.clone(), &truncated_png);
                                images.push(image);
                                due.push((id, Some(says)));
                            }
                        }
                    }
                    expected.push(due);
                    requests.push(v1::DetectRequest {
                        images,
                        ..Default::default()
                    });
                }
                tasks.push(tokio::spawn(async move {
                    let mut client = oodgate_replay::replay::connect(&endpoint)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut answers = client
                        .detect_stream(tokio_stream::iter(requests))
                        .await
                        .map_err(|e| e.to_string())?
                        .into_inner();
                    let mut received = Vec::new();
                    loop {
                        match answers.message().await {
                            Ok(Some(response)) => received.push(response),
                            Ok(None) => break,
                            Err(status) => {
                                return Err(format!(
                                    "stream {s} ended after {} responses: {status:?}",
                                    received.len()
                                ));
                            }
                        }
                    }
                    Ok::<_, String>((expected, received))
                }));
            }
            let mut seen = HashSet::new();
            for task in tasks {
                let (expected, received) = task
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .map_err(TestCaseError::fail)?;
                prop_assert_eq!(received.len(), expected.len(), "one response per request");
                for (response, due) in received.iter().zip(&expected) {
                    prop_assert_eq!(response.verdicts.len(), due.len(), "one verdict per image");
                    for (verdict, (id, says)) in response.verdicts.iter().zip(due) {
                        prop_assert_eq!(&verdict.id, id, "verdicts in the order sent");
                        prop_assert!(seen.insert(id.clone()), "{} answered twice", id);
                        use v1::verdict::Outcome;
                        match (says, &verdict.outcome) {
                            (None, Some(Outcome::Classify(_) | Outcome::Reject(_))) => {
                                prop_assert!(verdict.lof.is_some(), "{} without LOF", id);
                            }
                            (Some(says), Some(Outcome::Error(e))) => {
                                prop_assert!(
                                    e.message.contains(says),
                                    "{}: {:?} does not say {:?}",
                                    id,
                                    e.message,
                                    says
                                );
                            }
                            (says, outcome) => {
                                return Err(TestCaseError::fail(format!(
                                    "{id}: expected {says:?} (None: a verdict), got {outcome:?}"
                                )));
                            }
                        }
                    }
                }
            }
            let images: usize = streams.iter().flatten().map(Vec::len).sum();
            prop_assert_eq!(seen.len(), images, "every id answered exactly once");
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}\nserver log:\n{}", tail(&server.log_text(), 40));
    }
    // Nothing left behind on the server.
    let metrics = server.metrics();
    assert_eq!(
        oodgate_e2e::metric_value(&metrics, r#"oodgate_queue_images{gate="digits"}"#),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        oodgate_e2e::metric_value(&metrics, "oodgate_streams_active"),
        Some(0.0),
        "{metrics}"
    );
}
