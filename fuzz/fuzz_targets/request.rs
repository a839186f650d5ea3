//! Arbitrary bytes as a gRPC `DetectRequest` body, handled as the server handles it up
//! to the model: protobuf decode (prost, as tonic does), `grpc::detect_input` (wire →
//! pipeline), `pipeline::validate` (batch size, threshold range), the LOF percentile for
//! a valid threshold (`LofIndex::offset` is `score::threshold` on the training scores),
//! the source label, then `pipeline::decode`: every image through `prepare` with the
//! served model's input spec and the server's `Limits`.
//!
//! Never a panic, an abort, a huge allocation or a hang; refusals are typed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oodgate_server::config::Config;
use oodgate_server::ThresholdSpec;
use oodgate_server::detect_input;
use oodgate_server::{SourceLabels, decode, validate};
use oodgate_server::preprocess::{InputSpec, Layout, Limits, Transform};
use oodgate_proto::v1;
use prost::Message;

/// The served model's input (models/*: float32 NHWC 28x28x1).
const MNIST: InputSpec = InputSpec {
    layout: Layout::Nhwc,
    height: 28,
    width: 28,
    channels: 1,
    transform: Transform::Legacy,
};

/// Stands in for the index's sorted training scores.
const SCORES: [f64; 5] = [-3.5, -1.25, -1.0, -1.0, -0.99];

fuzz_target!(|data: &[u8]| {
    let Ok(request) = v1::DetectRequest::decode(data) else {
        return; // tonic answers INTERNAL "failed to decode" for these
    };
    // A decoded message re-encodes to bytes that decode to the same message. Compared
    // as bytes: a NaN threshold is not equal to itself.
    let bytes = request.encode_to_vec();
    let again = v1::DetectRequest::decode(bytes.as_slice()).expect("a decoded request re-encodes");
    assert_eq!(again.encode_to_vec(), bytes);

    let config = Config::default();
    let input = detect_input(request);
    let count = input.images.len();
    if validate(&input, config.server.max_images_per_request).is_err() {
        return; // INVALID_ARGUMENT naming the field
    }
    assert!(count >= 1 && count <= config.server.max_images_per_request);

    // A rate that passed validation always gives a threshold within the training scores.
    if let ThresholdSpec::Contamination(rate) | ThresholdSpec::FalseRejectionRate(rate) =
        input.threshold
    {
        let t = oodgate_lof::threshold(&SCORES, rate)
            .expect("a validated rate is accepted by the index");
        assert!(
            (SCORES[0]..=SCORES[SCORES.len() - 1]).contains(&t),
            "threshold {t} outside the training scores for rate {rate}"
        );
    }

    let sources = SourceLabels::new(&config.server.sources, config.server.max_sources);
    let label = sources.label(&input.source);
    assert!(label.len() <= 64, "source label of {} bytes", label.len());

    let (ids, outcomes, pixels) = decode(input.images, &MNIST, &Limits::default());
    assert_eq!(ids.len(), count);
    assert_eq!(outcomes.len(), count);
    let valid = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(pixels.len(), valid * MNIST.len());
    assert!(pixels.iter().all(|v| (0.0..=1.0).contains(v)));
});
