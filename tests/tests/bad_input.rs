//! Bad input over gRPC, against the server in-process, or the real `oodgate serve` where
//! a test counts errors in `/metrics` (the metrics recorder is global to a process).
//!
//! Per image: every kind of broken image gets its own error verdict naming the problem,
//! in its place, while the images around it are still judged and the stream goes on
//! (unary `Detect` and inside a `DetectStream`).
//!
//! Per request: an empty or too large batch and out-of-range thresholds get
//! INVALID_ARGUMENT naming the field; a message over the size limit gets
//! RESOURCE_EXHAUSTED and the server keeps serving; duplicate ids are echoed.
//!
//! The cases are `oodgate_e2e::bad_images`; `http_api.rs` sends the same ones over the
//! HTTP JSON API.

use oodgate_e2e::bad_images::{Expected, bad_images, good_images, mixed_batch, truncated_jpegs};
use oodgate_e2e::{InProcessServer, Server, detect_request, raw_image, runtime};
use oodgate_proto::v1;
use tonic::Code;

/// Per image of a request: its id and what it must get.
type Due = Vec<(String, Expected)>;

/// Checks one verdict: a judged image has an outcome and LOF evidence; a bad one an
/// error whose message says every part of `says`.
fn check(verdict: &v1::Verdict, id: &str, says: Option<&[&str]>) {
    use v1::verdict::Outcome;
    assert_eq!(verdict.id, id, "verdicts in the order sent");
    match (says, &verdict.outcome) {
        (None, Some(Outcome::Classify(_) | Outcome::Reject(_))) => {
            assert!(verdict.lof.is_some(), "{id}: judged without LOF evidence");
        }
        (Some(says), Some(Outcome::Error(e))) => {
            for part in says {
                assert!(
                    e.message.contains(part),
                    "{id}: error {:?} does not say {part:?}",
                    e.message
                );
            }
            assert!(verdict.lof.is_none(), "{id}: an error with LOF evidence");
        }
        (None, other) => panic!("{id}: a good image got {other:?}"),
        (Some(says), other) => {
            panic!("{id}: a bad image (expected an error saying {says:?}) got {other:?}")
        }
    }
}

/// Unary: one request with every bad image between good ones.
#[test]
fn unary_detect_answers_each_bad_image_with_its_own_error() {
    let server = InProcessServer::start(&[]);
    let bad = bad_images();
    let (images, expected): (Vec<_>, Vec<_>) = mixed_batch(&bad).into_iter().unzip();
    runtime().block_on(async {
        let mut client = server.client().await;
        let response = client
            .detect(detect_request(images.clone(), None))
            .await
            .unwrap_or_else(|s| panic!("{s:?}\n{}", server.log_text()))
            .into_inner();
        assert_eq!(
            response.verdicts.len(),
            expected.len(),
            "one verdict per image"
        );
        for ((verdict, image), says) in response.verdicts.iter().zip(&images).zip(&expected) {
            check(verdict, &image.id, says.as_deref());
        }
        // Each bad image alone in a request: the same error, and the request still succeeds.
        for b in &bad {
            let response = client
                .detect(detect_request(vec![b.image.clone()], None))
                .await
                .unwrap_or_else(|s| panic!("{}: {s:?}", b.image.id))
                .into_inner();
            assert_eq!(response.verdicts.len(), 1, "{}", b.image.id);
            check(&response.verdicts[0], &b.image.id, Some(&b.says));
        }
    });
}

/// Streaming: good requests before and after, each bad image alone and between good
/// ones; every response complete and in order, the stream ends cleanly.
#[test]
fn a_stream_goes_on_past_every_bad_image() {
    let server = Server::start(&[]);
    let bad = bad_images();
    let mut requests = Vec::new();
    let mut expected: Vec<Due> = Vec::new();
    let mut offset = 0;
    let mut goods = |n: usize| {
        let images = good_images(n, offset);
        offset += n;
        images
    };
    let push = |requests: &mut Vec<v1::DetectRequest>,
                expected: &mut Vec<Due>,
                images: Vec<(v1::Image, Expected)>| {
        expected.push(
            images
                .iter()
                .map(|(i, s)| (i.id.clone(), s.clone()))
                .collect(),
        );
        requests.push(v1::DetectRequest {
            images: images.into_iter().map(|(i, _)| i).collect(),
            ..Default::default()
        });
    };
    push(
        &mut requests,
        &mut expected,
        goods(8).into_iter().map(|i| (i, None)).collect(),
    );
    for b in &bad {
        push(
            &mut requests,
            &mut expected,
            vec![(b.image.clone(), Some(b.says.clone()))],
        );
        let mut around: Vec<_> = goods(2).into_iter().map(|i| (i, None)).collect();
        around.insert(1, (b.image.clone(), Some(b.says.clone())));
        push(&mut requests, &mut expected, around);
    }
    push(
        &mut requests,
        &mut expected,
        goods(8).into_iter().map(|i| (i, None)).collect(),
    );

    runtime().block_on(async {
        let mut client = server.client().await;
        let mut answers = client
            .detect_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut n = 0;
        while let Some(response) = answers
            .message()
            .await
            .unwrap_or_else(|s| panic!("stream ended after {n} responses: {s:?}"))
        {
            let due = expected
                .get(n)
                .unwrap_or_else(|| panic!("response {n} was never asked for"));
            assert_eq!(response.verdicts.len(), due.len(), "response {n}");
            for (verdict, (id, says)) in response.verdicts.iter().zip(due) {
                check(verdict, id, says.as_deref());
            }
            n += 1;
        }
        assert_eq!(n, expected.len(), "every request answered");
    });
    let metrics = server.metrics();
    let errors = oodgate_e2e::metric_value(
        &metrics,
        r#"oodgate_images_total{gate="digits",outcome="error",source="none"}"#,
    );
    assert_eq!(errors, Some(2.0 * bad.len() as f64), "{metrics}");
}

/// Eight good images in one request, all answered: the server still serves after `after`.
async fn still_serving(client: &mut oodgate_replay::replay::Client, after: &str) {
    let response = client
        .detect(detect_request(good_images(8, 0), None))
        .await
        .unwrap_or_else(|s| panic!("not served after {after}: {s:?}"))
        .into_inner();
    assert_eq!(response.verdicts.len(), 8, "after {after}");
}

/// Whole-request refusals name the field; a too large message is RESOURCE_EXHAUSTED and
/// the server goes on serving; duplicate ids are echoed.
#[test]
fn refused_requests_name_the_field_and_the_server_goes_on() {
    use v1::threshold::Kind;
    let server = InProcessServer::start(&[
        ("OODGATE_SERVER__MAX_IMAGES_PER_REQUEST", "8"),
        ("OODGATE_SERVER__MAX_MESSAGE_BYTES", "100000"),
    ]);
    let good = |n: usize| good_images(n, 0);
    runtime().block_on(async {
        let client = server.client().await;
        let call = |request: v1::DetectRequest| {
            let mut client = client.clone();
            async move { client.detect(request).await.map(|r| r.into_inner()) }
        };
        let refused = |request: v1::DetectRequest, code: Code, says: Vec<&'static str>| {
            let call = call(request);
            async move {
                let status = call.await.expect_err("refused");
                assert_eq!(status.code(), code, "{status:?}");
                for part in &says {
                    assert!(
                        status.message().contains(part),
                        "{status:?} does not say {part:?}"
                    );
                }
            }
        };
        refused(
            detect_request(vec![], None),
            Code::InvalidArgument,
            vec!["images", "empty"],
        )
        .await;
        refused(
            detect_request(good(9), None),
            Code::InvalidArgument,
            vec!["images", "9 images", "limit is 8"],
        )
        .await;
        for (kind, shown) in [
            (Kind::Contamination(0.0), "got 0"),
            (Kind::Contamination(-0.1), "got -0.1"),
            (Kind::Contamination(0.7), "got 0.7"),
            (Kind::Contamination(f64::NAN), "got NaN"),
            (Kind::Contamination(f64::INFINITY), "got inf"),
            (Kind::Contamination(f64::NEG_INFINITY), "got -inf"),
        ] {
            refused(
                detect_request(good(1), Some(kind)),
                Code::InvalidArgument,
                vec!["threshold.contamination", "(0, 0.5]", shown],
            )
            .await;
        }
        for (kind, shown) in [
            (Kind::FalseRejectionRate(f64::NAN), "got NaN"),
            (Kind::FalseRejectionRate(0.0), "got 0"),
            (Kind::FalseRejectionRate(0.51), "got 0.51"),
        ] {
            refused(
                detect_request(good(1), Some(kind)),
                Code::InvalidArgument,
                vec!["threshold.false_rejection_rate", shown],
            )
            .await;
        }
        // The bounds themselves are allowed.
        for kind in [
            Kind::Contamination(0.5),
            Kind::FalseRejectionRate(0.5),
            Kind::Contamination(1e-9),
        ] {
            let response = call(detect_request(good(8), Some(kind))).await.unwrap();
            assert_eq!(response.verdicts.len(), 8);
        }

        // Duplicate ids: allowed, echoed in order.
        let mut images = good(3);
        for image in &mut images {
            image.id = "same".into();
        }
        images.push(v1::Image {
            id: String::new(),
            ..good(1).remove(0)
        });
        images.push(v1::Image {
            id: String::new(),
            ..good(1).remove(0)
        });
        let response = call(detect_request(images, None)).await.unwrap();
        let ids: Vec<_> = response.verdicts.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["same", "same", "same", "", ""]);
        assert!(response.verdicts.iter().all(|v| v.lof.is_some()));

        // On a stream: answered requests first, then the refusal ends the stream.
        for (bad_request, code, says) in [
            (
                detect_request(good(1), Some(Kind::Contamination(f64::NAN))),
                Code::InvalidArgument,
                "threshold.contamination",
            ),
            (
                detect_request(vec![], None),
                Code::InvalidArgument,
                "images",
            ),
            (
                detect_request(good(9), None),
                Code::InvalidArgument,
                "images",
            ),
        ] {
            let mut client = client.clone();
            let requests = vec![
                detect_request(good(2), None),
                detect_request(good(3), None),
                bad_request,
                detect_request(good(4), None),
            ];
            let mut answers = client
                .detect_stream(tokio_stream::iter(requests))
                .await
                .unwrap()
                .into_inner();
            let mut sizes = Vec::new();
            let status = loop {
                match answers.message().await {
                    Ok(Some(response)) => sizes.push(response.verdicts.len()),
                    Ok(None) => {
                        panic!("the stream ended without the refusal ({code:?}) after {sizes:?}")
                    }
                    Err(status) => break status,
                }
            };
            assert_eq!(
                sizes,
                [2, 3],
                "the requests before the refusal are answered"
            );
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(says), "{status:?}");
        }
        // Duplicate ids on a stream.
        let mut client = client.clone();
        let mut images = good(2);
        images[1].id = images[0].id.clone();
        let mut answers = client
            .detect_stream(tokio_stream::iter(vec![
                detect_request(images.clone(), None),
                detect_request(images, None),
            ]))
            .await
            .unwrap()
            .into_inner();
        let mut count = 0;
        while let Some(response) = answers.message().await.unwrap() {
            assert_eq!(response.verdicts[0].id, response.verdicts[1].id);
            count += 1;
        }
        assert_eq!(count, 2);
        still_serving(&mut client, "the refusals").await;
    });
}

/// A message over `server.max_message_bytes` (100,000 here, ~200 kB sent) gets
/// RESOURCE_EXHAUSTED (gRPC's code for a message over the receiver's limit, and what
/// the README promises) naming the limit, unary and on a stream (after the answers
/// already given); the server goes on serving.
#[test]
fn a_message_over_the_size_limit_is_resource_exhausted_and_the_server_goes_on() {
    let server = InProcessServer::start(&[("OODGATE_SERVER__MAX_MESSAGE_BYTES", "100000")]);
    let big = raw_image("big", 448, 448, 1, vec![0; 448 * 448]);
    runtime().block_on(async {
        let mut client = server.client().await;
        let status = client
            .detect(detect_request(vec![big.clone()], None))
            .await
            .expect_err("too large");
        let unary = (status.code(), status.message().to_owned());
        still_serving(&mut client, "a too large message").await;

        let requests = vec![
            detect_request(good_images(2, 0), None),
            detect_request(vec![big.clone()], None),
            detect_request(good_images(2, 0), None),
        ];
        let mut answers = client
            .detect_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let first = answers
            .message()
            .await
            .expect("the request before")
            .expect("a response");
        assert_eq!(first.verdicts.len(), 2);
        let status = answers.message().await.expect_err("too large");
        let stream = (status.code(), status.message().to_owned());
        still_serving(&mut client, "a too large message on a stream").await;

        let calls = [("Detect", unary), ("DetectStream", stream)];
        for (call, (code, message)) in &calls {
            assert!(
                *code == Code::ResourceExhausted && message.contains("100000"),
                "RESOURCE_EXHAUSTED naming the limit expected; got {calls:?} ({call})"
            );
        }
    });
}

/// A JPEG cut short is an error verdict, not an image with the missing part guessed.
#[test]
fn a_truncated_jpeg_is_an_error() {
    let server = InProcessServer::start(&[]);
    let cuts = truncated_jpegs();
    let mut images = good_images(1, 0);
    images.extend(cuts.iter().map(|b| b.image.clone()));
    images.extend(good_images(1, 1));
    runtime().block_on(async {
        let mut client = server.client().await;
        let response = client
            .detect(detect_request(images, None))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.verdicts.len(),
            cuts.len() + 2,
            "one verdict per image"
        );
        check(&response.verdicts[0], "good-0", None);
        check(response.verdicts.last().unwrap(), "good-1", None);
        let mut wrong = Vec::new();
        for (verdict, cut) in response.verdicts[1..].iter().zip(&cuts) {
            let id = &cut.image.id;
            assert_eq!(&verdict.id, id);
            match &verdict.outcome {
                Some(v1::verdict::Outcome::Error(e))
                    if cut.says.iter().all(|part| e.message.contains(part)) => {}
                Some(v1::verdict::Outcome::Classify(c)) => {
                    wrong.push(format!("{id}: classified as {}", c.class_index))
                }
                Some(v1::verdict::Outcome::Reject(_)) => {
                    wrong.push(format!("{id}: rejected (judged)"))
                }
                other => wrong.push(format!("{id}: {other:?}")),
            }
        }
        assert!(
            wrong.is_empty(),
            "truncated JPEGs judged instead of refused:\n{}",
            wrong.join("\n")
        );
    });
}
