//! Bad input over gRPC, against the real `oodgate serve`.
//!
//! Per image: every kind of broken image gets its own error verdict naming the problem,
//! in its place, while the images around it are still judged and the stream goes on
//! (unary `Detect` and inside a `DetectStream`).
//!
//! Per request: an empty or too large batch and out-of-range thresholds get
//! INVALID_ARGUMENT naming the field; a message over the size limit gets
//! RESOURCE_EXHAUSTED and the server keeps serving; duplicate ids are echoed.

use std::io::Write;

use oodgate_e2e::{Server, mnist_test, raw_image};
use oodgate_proto::v1;
use tonic::Code;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn encoded(id: &str, bytes: Vec<u8>) -> v1::Image {
    v1::Image {
        id: id.into(),
        data: Some(v1::image::Data::Encoded(bytes)),
    }
}

/// A deterministic noise image (so PNG and JPEG have real pixel data to cut into).
fn noise(width: u32, height: u32, channels: u8, seed: u32) -> image::DynamicImage {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 8) as u8
    };
    let len = (width * height) as usize * usize::from(channels);
    let pixels: Vec<u8> = (0..len).map(|_| next()).collect();
    match channels {
        1 => image::DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(width, height, pixels).unwrap(),
        ),
        _ => image::DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(width, height, pixels).unwrap(),
        ),
    }
}

fn encode(image: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A decompression bomb: a small, well-formed 8-bit grayscale PNG whose header declares
/// `width` x `height` pixels and whose IDAT starts a zlib stream of zero rows (the
/// first `rows` rows of it; a decoder that believed the header would allocate it all).
fn png_bomb(width: u32, height: u32, rows: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray, deflate, filter 0, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; width as usize + 1];
    for _ in 0..rows {
        zlib.write_all(&row).unwrap();
    }
    png_chunk(&mut out, b"IDAT", &zlib.finish().unwrap());
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// One bad image and what its error message must say.
struct Bad {
    name: &'static str,
    image: v1::Image,
    says: Vec<&'static str>,
}

/// Every kind of bad image; ids are `bad-<name>`.
fn bad_images() -> Vec<Bad> {
    let digit = mnist_test().image(0).to_vec();
    let png = encode(&noise(64, 64, 1, 7), image::ImageFormat::Png);
    let bomb = png_bomb(20_000, 20_000, 64);
    assert!(bomb.len() < 4096, "the bomb is small: {} bytes", bomb.len());
    let pixel_bomb = png_bomb(8000, 8000, 16); // each side allowed, 64 M pixels not
    let mut corrupt_png = png.clone();
    for b in &mut corrupt_png[40..] {
        *b = b.wrapping_mul(31).wrapping_add(17);
    }
    let mut random = vec![0u8; 512];
    let mut state = 99u32;
    for b in &mut random {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *b = (state >> 16) as u8;
    }
    random[0] = 0x42; // not a PNG or JPEG signature by chance
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec();
    let bmp = encode_bmp();

    let raw = |name: &'static str, w, h, c, pixels: Vec<u8>, says: Vec<&'static str>| Bad {
        name,
        image: raw_image(&format!("bad-{name}"), w, h, c, pixels),
        says,
    };
    let enc = |name: &'static str, bytes: Vec<u8>, says: Vec<&'static str>| Bad {
        name,
        image: encoded(&format!("bad-{name}"), bytes),
        says,
    };
    vec![
        raw(
            "short-pixels",
            28,
            28,
            1,
            digit[..100].to_vec(),
            vec!["pixels hold 100 bytes", "28x28x1 needs 784"],
        ),
        raw(
            "long-pixels",
            28,
            28,
            1,
            [digit.clone(), vec![0; 16]].concat(),
            vec!["pixels hold 800 bytes", "28x28x1 needs 784"],
        ),
        raw(
            "rgb-size-as-gray",
            28,
            28,
            3,
            digit.clone(),
            vec!["pixels hold 784 bytes", "28x28x3 needs 2352"],
        ),
        raw("zero-width", 0, 28, 1, vec![], vec!["at least 1", "0x28"]),
        raw("zero-height", 28, 0, 1, vec![], vec!["at least 1", "28x0"]),
        raw(
            "huge",
            100_000,
            100_000,
            1,
            vec![0; 16],
            vec!["100000x100000", "over the limit"],
        ),
        raw(
            "max-u32",
            u32::MAX,
            u32::MAX,
            4,
            vec![0; 16],
            vec!["4294967295x4294967295", "over the limit"],
        ),
        raw(
            "two-channels",
            28,
            28,
            2,
            vec![0; 28 * 28 * 2],
            vec!["unsupported channel count 2"],
        ),
        raw(
            "five-channels",
            28,
            28,
            5,
            vec![0; 28 * 28 * 5],
            vec!["unsupported channel count 5"],
        ),
        raw(
            "zero-channels",
            28,
            28,
            0,
            vec![],
            vec!["unsupported channel count 0"],
        ),
        enc("corrupt-png", corrupt_png, vec!["could not decode"]),
        enc(
            "truncated-png",
            png[..png.len() / 2].to_vec(),
            vec!["could not decode"],
        ),
        enc(
            "png-header-only",
            png[..33].to_vec(),
            vec!["could not decode"],
        ),
        enc("png-bomb", bomb, vec!["20000x20000", "over the limit"]),
        enc(
            "png-pixel-bomb",
            pixel_bomb,
            vec!["8000x8000", "over the limit"],
        ),
        enc("gif", gif, vec!["unknown image encoding"]),
        enc("bmp", bmp, vec!["unknown image encoding"]),
        enc("random-bytes", random, vec!["unknown image encoding"]),
        enc("empty-bytes", vec![], vec!["unknown image encoding"]),
        Bad {
            name: "missing-data",
            image: v1::Image {
                id: "bad-missing-data".into(),
                data: None,
            },
            says: vec!["no pixel data"],
        },
    ]
}

/// A 2x2 24-bit BMP, by hand (the `image` crate here has only PNG and JPEG).
fn encode_bmp() -> Vec<u8> {
    let row = [0u8, 0, 255, 255, 255, 255, 0, 0]; // two BGR pixels + 2 bytes padding
    let pixels: Vec<u8> = [row, row].concat();
    let mut out = Vec::new();
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&(54 + pixels.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&2i32.to_le_bytes());
    out.extend_from_slice(&2i32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    out.extend_from_slice(&pixels);
    out
}

/// Good images of every accepted kind; ids are `good-<n>`.
fn good_images(count: usize, offset: usize) -> Vec<v1::Image> {
    let mnist = mnist_test();
    (0..count)
        .map(|n| {
            let i = offset + n;
            let id = format!("good-{i}");
            let digit = mnist.image(i % mnist.len()).to_vec();
            match i % 4 {
                0 | 1 => raw_image(&id, 28, 28, 1, digit),
                2 => {
                    let img = image::GrayImage::from_raw(28, 28, digit).unwrap();
                    encoded(
                        &id,
                        encode(
                            &image::DynamicImage::ImageLuma8(img),
                            image::ImageFormat::Png,
                        ),
                    )
                }
                _ => {
                    // RGB at another size: converted and resized by the server.
                    let img = image::GrayImage::from_raw(28, 28, digit).unwrap();
                    let rgb = image::DynamicImage::ImageLuma8(img)
                        .resize_exact(40, 40, image::imageops::FilterType::Triangle)
                        .into_rgb8();
                    raw_image(&id, 40, 40, 3, rgb.into_raw())
                }
            }
        })
        .collect()
}

/// Per image of a request: its id, and what its error must say (None: judged).
type Due = Vec<(String, Option<Vec<&'static str>>)>;

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
    let server = Server::start(&[]);
    let bad = bad_images();
    let good = good_images(bad.len() + 1, 0);
    let mut images = Vec::new();
    let mut expected: Due = Vec::new();
    for (i, g) in good.iter().enumerate() {
        images.push(g.clone());
        expected.push((g.id.clone(), None));
        if let Some(b) = bad.get(i) {
            images.push(b.image.clone());
            expected.push((b.image.id.clone(), Some(b.says.clone())));
        }
    }
    runtime().block_on(async {
        let mut client = oodgate_replay::replay::connect(&server.endpoint)
            .await
            .unwrap();
        let response = client
            .detect(v1::DetectRequest {
                images,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("{s:?}\n{}", server.log_text()))
            .into_inner();
        assert_eq!(
            response.verdicts.len(),
            expected.len(),
            "one verdict per image"
        );
        for (verdict, (id, says)) in response.verdicts.iter().zip(&expected) {
            check(verdict, id, says.as_deref());
        }
        // Each bad image alone in a request: the same error, and the request still succeeds.
        for b in &bad {
            let response = client
                .detect(v1::DetectRequest {
                    images: vec![b.image.clone()],
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|s| panic!("{}: {s:?}", b.name))
                .into_inner();
            assert_eq!(response.verdicts.len(), 1, "{}", b.name);
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
                images: Vec<(v1::Image, Option<Vec<&'static str>>)>| {
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
        let mut client = oodgate_replay::replay::connect(&server.endpoint)
            .await
            .unwrap();
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
        r#"oodgate_images_total{outcome="error",source="none"}"#,
    );
    assert_eq!(errors, Some(2.0 * bad.len() as f64), "{metrics}");
}

fn detect_request(
    images: Vec<v1::Image>,
    threshold: Option<v1::threshold::Kind>,
) -> v1::DetectRequest {
    v1::DetectRequest {
        images,
        threshold: threshold.map(|kind| v1::Threshold { kind: Some(kind) }),
        source: String::new(),
    }
}

/// Whole-request refusals name the field; a too large message is RESOURCE_EXHAUSTED and
/// the server goes on serving; duplicate ids are echoed.
#[test]
fn refused_requests_name_the_field_and_the_server_goes_on() {
    use v1::threshold::Kind;
    let server = Server::start(&[
        ("OODGATE_SERVER__MAX_IMAGES_PER_REQUEST", "8"),
        ("OODGATE_SERVER__MAX_MESSAGE_BYTES", "100000"),
    ]);
    let good = |n: usize| good_images(n, 0);
    runtime().block_on(async {
        let client = oodgate_replay::replay::connect(&server.endpoint)
            .await
            .unwrap();
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
        let response = call(detect_request(good(8), None))
            .await
            .expect("still serving");
        assert_eq!(response.verdicts.len(), 8);
    });
}

/// A message over `server.max_message_bytes` (100,000 here, ~200 kB sent) gets
/// RESOURCE_EXHAUSTED (gRPC's code for a message over the receiver's limit, and what
/// the README promises) naming the limit, unary and on a stream (after the answers
/// already given); the server goes on serving.
#[test]
fn a_message_over_the_size_limit_is_resource_exhausted_and_the_server_goes_on() {
    let server = Server::start(&[("OODGATE_SERVER__MAX_MESSAGE_BYTES", "100000")]);
    let big = raw_image("big", 448, 448, 1, vec![0; 448 * 448]);
    runtime().block_on(async {
        let mut client = oodgate_replay::replay::connect(&server.endpoint)
            .await
            .unwrap();
        let status = client
            .detect(detect_request(vec![big.clone()], None))
            .await
            .expect_err("too large");
        let unary = (status.code(), status.message().to_owned());
        let response = client
            .detect(detect_request(good_images(8, 0), None))
            .await
            .expect("served after a too large message");
        assert_eq!(response.into_inner().verdicts.len(), 8);

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
        let response = client
            .detect(detect_request(good_images(8, 0), None))
            .await
            .expect("served after a too large message on a stream");
        assert_eq!(response.into_inner().verdicts.len(), 8);

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
    let server = Server::start(&[]);
    let jpeg = encode(&noise(64, 64, 3, 9), image::ImageFormat::Jpeg);
    // Digit-like content too: a 28x28 gray MNIST digit as JPEG.
    let digit = image::GrayImage::from_raw(28, 28, mnist_test().image(0).to_vec()).unwrap();
    let digit = encode(
        &image::DynamicImage::ImageLuma8(digit),
        image::ImageFormat::Jpeg,
    );
    let mut images = vec![good_images(1, 0).remove(0)];
    let mut cuts = Vec::new();
    for (name, bytes) in [("noise", &jpeg), ("digit", &digit)] {
        for fraction in [0.5, 0.8, 0.95] {
            let cut = (bytes.len() as f64 * fraction) as usize;
            let id = format!("{name}-jpeg-cut-at-{cut}-of-{}", bytes.len());
            images.push(encoded(&id, bytes[..cut].to_vec()));
            cuts.push(id);
        }
        // Everything but the end-of-image marker.
        let id = format!("{name}-jpeg-without-eoi");
        images.push(encoded(&id, bytes[..bytes.len() - 2].to_vec()));
        cuts.push(id);
    }
    images.push(good_images(1, 1).remove(0));
    runtime().block_on(async {
        let mut client = oodgate_replay::replay::connect(&server.endpoint)
            .await
            .unwrap();
        let response = client
            .detect(detect_request(images, None))
            .await
            .unwrap()
            .into_inner();
        check(&response.verdicts[0], "good-0", None);
        check(response.verdicts.last().unwrap(), "good-1", None);
        let mut wrong = Vec::new();
        for (verdict, id) in response.verdicts[1..].iter().zip(&cuts) {
            assert_eq!(&verdict.id, id);
            match &verdict.outcome {
                Some(v1::verdict::Outcome::Error(e)) if e.message.contains("could not decode") => {}
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
