//! Decode + preprocess cost per image, for each kind of image the service accepts:
//! `pipeline::decode` (what a request runs off the async runtime: each image checked,
//! decoded if encoded, converted to the model's input) on a one-image request.
//!
//! ```text
//! cargo bench -p oodgate-server --bench preprocess [-- --quick]
//! ```
//!
//! The model input is the default model's (28 x 28 x 1, NHWC, the legacy path); images
//! are generated here: an MNIST-like gray digit and a CIFAR-like RGB picture, raw and as
//! PNG and JPEG. The float path (a gate's `[input]`) is measured on a photo-sized case:
//! an RGB 300 x 200 PNG to 3 x 224 x 224, center-crop 0.875, ImageNet mean/std.

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use oodgate_server::preprocess::{
    Colour, FloatTransform, InputSpec, Layout, Limits, Resize, Transform,
};
use oodgate_server::{ClientImage, ImageData, decode};

const MNIST: InputSpec = InputSpec {
    layout: Layout::Nhwc,
    height: 28,
    width: 28,
    channels: 1,
    transform: Transform::Legacy,
};

/// An ImageNet-style colour model's input, as a gate.toml would describe it.
const IMAGENET: InputSpec = InputSpec {
    layout: Layout::Nchw,
    height: 224,
    width: 224,
    channels: 3,
    transform: Transform::Float(FloatTransform {
        colour: Colour::Rgb,
        resize: Resize::CenterCrop {
            crop_fraction: 0.875,
        },
        scale: 255.0,
        mean: [0.485, 0.456, 0.406, 0.0],
        std: [0.229, 0.224, 0.225, 1.0],
    }),
};

/// A bright ring on black, antialiased: compresses like a handwritten digit, unlike
/// noise or a flat image.
fn digit() -> GrayImage {
    GrayImage::from_fn(28, 28, |x, y| {
        let (dx, dy) = (x as f32 - 13.5, (y as f32 - 13.5) * 0.8);
        let off_ring = ((dx * dx + dy * dy).sqrt() - 8.0).abs();
        image::Luma([(255.0 * (1.5 - off_ring).clamp(0.0, 1.0)) as u8])
    })
}

/// Smooth colour gradients with some texture, like a small photo.
fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let texture = ((x * 7 + y * 13) % 17) as u8;
        image::Rgb([
            (x * 8) as u8 ^ texture,
            (y * 8) as u8,
            (((x + y) * 4) as u8).wrapping_add(texture),
        ])
    })
}

fn png(image: &DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .expect("PNG encodes");
    bytes
}

fn jpeg(image: &DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Quality 75: what CIFAR-10's JPEG export and most cameras' defaults are near.
    image
        .write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, 75))
        .expect("JPEG encodes");
    bytes
}

fn preprocess(c: &mut Criterion) {
    let digit = digit();
    let photo = DynamicImage::ImageRgb8(picture(300, 200));
    let picture = picture(32, 32);
    let raw = |width, height, channels, pixels: &[u8]| ImageData::Raw {
        width,
        height,
        channels,
        pixels: pixels.to_vec(),
    };
    let (digit_img, picture_img) = (
        DynamicImage::ImageLuma8(digit.clone()),
        DynamicImage::ImageRgb8(picture.clone()),
    );
    let cases = [
        ("raw_gray_28x28", raw(28, 28, 1, digit.as_raw()), MNIST),
        ("raw_rgb_32x32", raw(32, 32, 3, picture.as_raw()), MNIST),
        ("png_gray_28x28", ImageData::Encoded(png(&digit_img)), MNIST),
        (
            "png_rgb_32x32",
            ImageData::Encoded(png(&picture_img)),
            MNIST,
        ),
        (
            "jpeg_gray_28x28",
            ImageData::Encoded(jpeg(&digit_img)),
            MNIST,
        ),
        (
            "jpeg_rgb_32x32",
            ImageData::Encoded(jpeg(&picture_img)),
            MNIST,
        ),
        (
            "float_png_rgb_300x200_to_224_center_crop",
            ImageData::Encoded(png(&photo)),
            IMAGENET,
        ),
    ];

    let limits = Limits::default();
    let mut group = c.benchmark_group("preprocess");
    group.throughput(Throughput::Elements(1));
    for (name, data, spec) in cases {
        // A bench that measures an error path would read as fast preprocessing.
        let (_, outcomes, _) = decode(vec![request(&data)], &spec, &limits);
        assert!(outcomes[0].is_ok(), "{name}: {:?}", outcomes[0]);
        group.bench_function(name, |b| {
            // The request owns its bytes (as off the wire): building it is not timed.
            b.iter_batched(
                || vec![request(&data)],
                |images| black_box(decode(images, &spec, &limits)),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn request(data: &ImageData) -> ClientImage {
    ClientImage {
        id: "bench".into(),
        data: Some(data.clone()),
    }
}

criterion_group! {
    name = benches;
    // Microsecond-scale work: a short measurement is already tight.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = preprocess
}
criterion_main!(benches);
