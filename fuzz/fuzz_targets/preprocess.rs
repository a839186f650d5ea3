//! Client image bytes → model input, as the server does it (`oodgate_server::preprocess`).
//!
//! The same input is tried twice:
//! - whole, as encoded bytes (PNG/JPEG or anything else): `ImageInput::Encoded`;
//! - as raw pixels: a 9-byte header (width u32 LE, height u32 LE, channels u8), then
//!   the pixels: `ImageInput::Raw`, any width/height/channels.
//!
//! Each must give `Ok` or a typed `ImageError`: never a panic, an abort, a huge
//! allocation (libFuzzer's -rss_limit_mb / -malloc_limit_mb) or a hang (-timeout).
//! On `Ok`, the decoded image is within `Limits` and the model input is `spec.len()`
//! finite values in [0, 1].

#![no_main]

use libfuzzer_sys::fuzz_target;
use oodgate_server::preprocess::{
    Colour, FloatTransform, ImageInput, InputSpec, Layout, Limits, Resize, Transform,
    preprocess_into, to_dynamic_image,
};

/// The served model's input (models/*: float32 NHWC 28x28x1).
const MNIST: InputSpec = InputSpec {
    layout: Layout::Nhwc,
    height: 28,
    width: 28,
    channels: 1,
    transform: Transform::Legacy,
};

/// A small colour NCHW input, for the other branch of `preprocess_into`.
const RGB_NCHW: InputSpec = InputSpec {
    layout: Layout::Nchw,
    height: 5,
    width: 7,
    channels: 3,
    transform: Transform::Legacy,
};

/// The float path, scaled to [0, 1] too: a triangle filter never overshoots.
const RGB_FLOAT: InputSpec = InputSpec {
    layout: Layout::Nhwc,
    height: 6,
    width: 4,
    channels: 3,
    transform: Transform::Float(FloatTransform {
        colour: Colour::Rgb,
        resize: Resize::CenterCrop { crop_fraction: 0.875 },
        scale: 255.0,
        mean: [0.0; 4],
        std: [1.0; 4],
    }),
};

fn check(input: ImageInput<'_>, limits: &Limits) {
    // `prepare` is `to_dynamic_image` then `preprocess_into`; both steps are public, so
    // the decoded size can be checked in between.
    let Ok(image) = to_dynamic_image(input, limits) else {
        return; // a typed error is the right answer to bad bytes
    };
    let (w, h) = (image.width(), image.height());
    assert!(w >= 1 && h >= 1, "decoded an empty {w}x{h} image");
    assert!(
        w <= limits.max_side && h <= limits.max_side && u64::from(w) * u64::from(h) <= limits.max_pixels,
        "decoded {w}x{h}, past the limits {limits:?}"
    );
    for spec in [MNIST, RGB_NCHW, RGB_FLOAT] {
        let mut out = vec![f32::NAN; spec.len()];
        preprocess_into(&image, &spec, &mut out);
        assert!(
            out.iter().all(|v| (0.0..=1.0).contains(v)),
            "model input outside [0, 1] (or unwritten) for {spec:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default(); // what the server uses
    check(ImageInput::Encoded(data), &limits);

    if data.len() >= 9 {
        let width = u32::from_le_bytes(data[0..4].try_into().unwrap());
        let height = u32::from_le_bytes(data[4..8].try_into().unwrap());
        let channels = u32::from(data[8]);
        let raw = ImageInput::Raw {
            width,
            height,
            channels,
            pixels: &data[9..],
        };
        check(raw, &limits);
    }
});
