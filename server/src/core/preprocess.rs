//! Any client image to the model's input: decode, channel conversion, resize, scale.
//!
//! Raw pixels of any size with 1, 3 or 4 channels, or PNG/JPEG bytes, become float32
//! values at the model's height, width and channel count, in its layout. How depends on
//! the input's [`Transform`]:
//!
//! - [`Transform::Legacy`]: the `image` crate's u8 colour conversion and Triangle resize,
//!   then `/ 255`, so values in [0, 1]. Model folders without `gate.toml` use it, and the
//!   models trained on it score exactly as they always did.
//! - [`Transform::Float`]: every step in float, equal to a PIL + numpy reference
//!   (`tests/python/preprocess_reference.py`) within 1e-5:
//!   1. Colour, in pixel units (0..255), alpha dropped. A gray model given colour gets
//!      PIL's "L" weights, `(R * 299 + G * 587 + B * 114) / 1000` (PIL's RGB to "F"); a
//!      colour model given gray gets the gray value in every channel; BGR swaps R and B.
//!   2. Resize, for a model input of W x H and an image of w x h:
//!      - stretch: resize to W x H;
//!      - center-crop: `s = max(W / w, H / h) / crop_fraction`, resize to
//!        `rw = max(W, floor(w * s + 0.5))` by `rh = max(H, floor(h * s + 0.5))`, keep
//!        the W x H centre from `left = (rw - W) / 2`, `top = (rh - H) / 2` (integer
//!        division);
//!      - letterbox: `s = min(W / w, H / h)`, resize to `rw = max(1, floor(w * s + 0.5))`
//!        by `rh = max(1, floor(h * s + 0.5))`, paste at `((W - rw) / 2, (H - rh) / 2)`
//!        on a W x H canvas filled with `pad` (pixel units).
//!
//!      No resize when the size already matches. Resampling is PIL's BILINEAR on mode
//!      "F" images: a triangle filter whose support widens on downscale (antialiasing),
//!      accumulated in f64 and stored as f32, horizontal pass first.
//!   3. `(v / scale - mean[c]) / std[c]`, then the model's layout.

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::F32;
use fast_image_resize::{FilterType as ResizeFilter, ResizeAlg, ResizeOptions, Resizer};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageReader, RgbImage, RgbaImage};

/// What the model takes (read from the ONNX input) and how pixels become its values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    pub layout: Layout,
    pub height: u32,
    pub width: u32,
    pub channels: u32,
    pub transform: Transform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nhwc,
    Nchw,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Nhwc => "NHWC",
            Layout::Nchw => "NCHW",
        }
    }
}

impl InputSpec {
    /// Floats per image.
    pub fn len(&self) -> usize {
        (self.height * self.width * self.channels) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How decoded pixels become model input values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Transform {
    /// u8 conversion and resize by the `image` crate, then `/ 255`: what the models
    /// trained before gates were fed, kept bit for bit.
    #[default]
    Legacy,
    /// Float colour conversion, a Pillow-compatible resize policy and mean/std.
    Float(FloatTransform),
}

/// The float path's settings (a gate's `[input]` table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloatTransform {
    pub colour: Colour,
    pub resize: Resize,
    /// Pixel units per input unit: 255 for inputs in [0, 1], 1 for raw 0..255.
    pub scale: f32,
    /// Per channel, in model channel order; the entries past the channel count are unused.
    pub mean: [f32; 4],
    pub std: [f32; 4],
}

/// The model's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Gray,
    Rgb,
    Bgr,
}

impl Colour {
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Gray => "gray",
            Colour::Rgb => "rgb",
            Colour::Bgr => "bgr",
        }
    }

    /// The channel count a model with these colours has.
    pub fn channels(self) -> u32 {
        match self {
            Colour::Gray => 1,
            Colour::Rgb | Colour::Bgr => 3,
        }
    }
}

/// How an image of another size is brought to the model's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resize {
    /// To W x H, whatever the aspect ratio.
    Stretch,
    /// Scaled to cover W x H / `crop_fraction`, the centre kept (torchvision's
    /// `Resize(256)` + `CenterCrop(224)` is 0.875).
    CenterCrop { crop_fraction: f32 },
    /// Scaled to fit inside W x H, the rest filled with `pad` (pixel units, 0..255).
    Letterbox { pad: f32 },
}

impl Resize {
    pub fn as_str(self) -> &'static str {
        match self {
            Resize::Stretch => "stretch",
            Resize::CenterCrop { .. } => "center-crop",
            Resize::Letterbox { .. } => "letterbox",
        }
    }
}

impl FloatTransform {
    /// Why these settings cannot feed a model with `channels` channels, if they cannot.
    /// The message names the `gate.toml` field.
    pub fn check(&self, channels: u32) -> Result<(), String> {
        if self.colour.channels() != channels {
            return Err(format!(
                "colour = \"{}\" needs a {}-channel input, the model has {channels}",
                self.colour.as_str(),
                self.colour.channels()
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(format!("scale must be positive, got {}", self.scale));
        }
        let used = channels as usize;
        if let Some(m) = self.mean[..used].iter().find(|m| !m.is_finite()) {
            return Err(format!("mean must be finite, got {m}"));
        }
        if let Some(s) = self.std[..used]
            .iter()
            .find(|s| !(s.is_finite() && **s > 0.0))
        {
            return Err(format!("std must be positive, got {s}"));
        }
        match self.resize {
            Resize::Stretch => Ok(()),
            Resize::CenterCrop { crop_fraction } if crop_fraction > 0.0 && crop_fraction <= 1.0 => {
                Ok(())
            }
            Resize::CenterCrop { crop_fraction } => Err(format!(
                "crop_fraction must be in (0, 1], got {crop_fraction}"
            )),
            Resize::Letterbox { pad } if (0.0..=255.0).contains(&pad) => Ok(()),
            Resize::Letterbox { pad } => Err(format!("pad must be in 0..255, got {pad}")),
        }
    }

    /// A model input value of channel `c` back in pixel units (0..255), e.g. to show
    /// what the model saw.
    pub fn to_pixel_units(&self, value: f32, c: usize) -> f32 {
        (value * self.std[c] + self.mean[c]) * self.scale
    }
}

/// An image as a client sends it.
#[derive(Debug, Clone, Copy)]
pub enum ImageInput<'a> {
    Raw {
        width: u32,
        height: u32,
        channels: u32,
        pixels: &'a [u8],
    },
    /// PNG or JPEG.
    Encoded(&'a [u8]),
}

/// Bounds on what a client may send; an image past them is refused before work is done.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest width or height, raw or decoded.
    pub max_side: u32,
    /// Largest width x height, raw or decoded (decompression bombs stop here).
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_side: 4096,
            max_pixels: 4 * 1024 * 1024,
        }
    }
}

/// Why one image could not be used. The request goes on; this image gets the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    #[error("width and height must be at least 1, got {width}x{height}")]
    EmptyImage { width: u32, height: u32 },
    #[error("image is {width}x{height}, over the limit ({max_side} per side, {max_pixels} pixels)")]
    TooLarge {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
    #[error("unsupported channel count {0}: use 1 (gray), 3 (RGB) or 4 (RGBA)")]
    Channels(u32),
    #[error("pixels hold {got} bytes, but {width}x{height}x{channels} needs {expected}")]
    PixelCount {
        width: u32,
        height: u32,
        channels: u32,
        expected: u64,
        got: usize,
    },
    #[error("unknown image encoding: only PNG and JPEG are accepted")]
    UnknownEncoding,
    #[error("could not decode image: {0}")]
    Decode(String),
    #[error("image has no pixel data")]
    Missing,
}

fn check_size(width: u32, height: u32, limits: &Limits) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::EmptyImage { width, height });
    }
    if width > limits.max_side
        || height > limits.max_side
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
}

/// Decodes or wraps the client's bytes, checking every size against `limits`.
pub fn to_dynamic_image(
    input: ImageInput<'_>,
    limits: &Limits,
) -> Result<DynamicImage, ImageError> {
    match input {
        ImageInput::Raw {
            width,
            height,
            channels,
            pixels,
        } => {
            check_size(width, height, limits)?;
            if !matches!(channels, 1 | 3 | 4) {
                return Err(ImageError::Channels(channels));
            }
            let expected = u64::from(width) * u64::from(height) * u64::from(channels);
            if pixels.len() as u64 != expected {
                return Err(ImageError::PixelCount {
                    width,
                    height,
                    channels,
                    expected,
                    got: pixels.len(),
                });
            }
            let pixels = pixels.to_vec();
            // The lengths were checked above, so the constructors cannot fail.
            let image = match channels {
                1 => GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8),
                3 => RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8),
                _ => RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8),
            };
            image.ok_or(ImageError::Missing)
        }
        ImageInput::Encoded(bytes) => {
            let format = image::guess_format(bytes).map_err(|_| ImageError::UnknownEncoding)?;
            if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
                return Err(ImageError::UnknownEncoding);
            }
            // The JPEG decoder fills a truncated file's missing data in silently; a
            // complete JPEG ends with the end-of-image marker (padding aside).
            if format == image::ImageFormat::Jpeg {
                let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                if !bytes[..end].ends_with(&[0xFF, 0xD9]) {
                    return Err(ImageError::Decode(
                        "truncated JPEG: no end-of-image marker".into(),
                    ));
                }
            }
            let reader = || ImageReader::with_format(std::io::Cursor::new(bytes), format);
            // Read the header first so a huge declared size is refused before allocating.
            let (width, height) = reader()
                .into_dimensions()
                .map_err(|e| ImageError::Decode(e.to_string()))?;
            check_size(width, height, limits)?;
            let mut decoder_limits = image::Limits::default();
            decoder_limits.max_image_width = Some(limits.max_side);
            decoder_limits.max_image_height = Some(limits.max_side);
            decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
            let mut reader = reader();
            reader.limits(decoder_limits);
            reader
                .decode()
                .map_err(|e| ImageError::Decode(e.to_string()))
        }
    }
}

/// Converts one image to the model's input and writes it into `out` (`spec.len()` floats).
///
/// A [`Transform::Float`] spec is expected to have passed [`FloatTransform::check`].
pub fn preprocess_into(image: &DynamicImage, spec: &InputSpec, out: &mut [f32]) {
    debug_assert_eq!(out.len(), spec.len());
    match &spec.transform {
        Transform::Legacy => legacy_into(image, spec, out),
        Transform::Float(transform) => float_into(image, spec, transform, out),
    }
}

fn legacy_into(image: &DynamicImage, spec: &InputSpec, out: &mut [f32]) {
    let (w, h) = (spec.width, spec.height);
    let resize = |img: &DynamicImage| -> DynamicImage {
        if img.width() == w && img.height() == h {
            img.clone()
        } else {
            img.resize_exact(w, h, FilterType::Triangle)
        }
    };
    let plane = (w * h) as usize;
    match spec.channels {
        1 => {
            let gray = resize(image).into_luma8();
            for (o, p) in out.iter_mut().zip(gray.as_raw()) {
                *o = f32::from(*p) / 255.0;
            }
        }
        c => {
            // Models with 3 (or 4) channels get RGB; a fourth channel, if any, is opaque.
            let rgb = resize(image).into_rgb8();
            let raw = rgb.as_raw();
            for i in 0..plane {
                for ch in 0..c as usize {
                    let value = if ch < 3 {
                        f32::from(raw[i * 3 + ch]) / 255.0
                    } else {
                        1.0
                    };
                    let at = match spec.layout {
                        Layout::Nhwc => i * c as usize + ch,
                        Layout::Nchw => ch * plane + i,
                    };
                    out[at] = value;
                }
            }
        }
    }
}

fn float_into(image: &DynamicImage, spec: &InputSpec, transform: &FloatTransform, out: &mut [f32]) {
    let (planes, source) = colour_planes(image, transform.colour);
    let (w, h) = (image.width(), image.height());
    let resized: Vec<Vec<f32>> = planes
        .iter()
        .map(|plane| resize_plane(plane, w, h, spec.width, spec.height, transform.resize))
        .collect();
    let pixels = (spec.width * spec.height) as usize;
    let channels = spec.channels as usize;
    for (c, &from) in source.iter().enumerate().take(channels) {
        let (mean, std) = (transform.mean[c], transform.std[c]);
        for (i, v) in resized[from].iter().enumerate() {
            let at = match spec.layout {
                Layout::Nhwc => i * channels + c,
                Layout::Nchw => c * pixels + i,
            };
            out[at] = (v / transform.scale - mean) / std;
        }
    }
}

/// The planes to resize (pixel units, row-major, alpha dropped) and, per model
/// channel, which of them it reads: a gray image for a colour model is one plane read
/// three times, and BGR reads RGB planes backwards.
fn colour_planes(image: &DynamicImage, colour: Colour) -> (Vec<Vec<f32>>, [usize; 3]) {
    let mut planes: Vec<Vec<f32>> = Vec::new();
    if image.color().has_color() {
        let rgb = match image {
            // 8-bit images as they are: their values are exact in f32.
            DynamicImage::ImageRgb8(img) => channel_planes(img.as_raw(), 3),
            DynamicImage::ImageRgba8(img) => channel_planes(img.as_raw(), 4),
            // Deeper images in pixel units too (16-bit PNG, ...).
            other => {
                let img = other.to_rgb32f();
                let mut planes = [Vec::new(), Vec::new(), Vec::new()];
                for p in img.pixels() {
                    for (plane, v) in planes.iter_mut().zip(p.0) {
                        plane.push(v * 255.0);
                    }
                }
                planes
            }
        };
        if colour == Colour::Gray {
            // PIL's RGB to "F": the integer sum is exact in f32 (< 2^24) for 8-bit input.
            let [r, g, b] = &rgb;
            let gray = r
                .iter()
                .zip(g)
                .zip(b)
                .map(|((r, g), b)| (r * 299.0 + g * 587.0 + b * 114.0) / 1000.0)
                .collect();
            planes.push(gray);
        } else {
            planes.extend(rgb);
        }
    } else {
        let gray = match image {
            DynamicImage::ImageLuma8(img) => img.as_raw().iter().map(|&v| f32::from(v)).collect(),
            DynamicImage::ImageLumaA8(img) => {
                let [gray] = channel_planes(img.as_raw(), 2);
                gray
            }
            other => other
                .to_luma32f()
                .as_raw()
                .iter()
                .map(|v| v * 255.0)
                .collect(),
        };
        planes.push(gray);
    }
    let source = match (colour, planes.len()) {
        (Colour::Bgr, 3) => [2, 1, 0],
        (_, 3) => [0, 1, 2],
        _ => [0, 0, 0],
    };
    (planes, source)
}

/// The first `N` channels of interleaved 8-bit pixels with `stride` values each, as
/// float planes.
fn channel_planes<const N: usize>(raw: &[u8], stride: usize) -> [Vec<f32>; N] {
    let mut planes: [Vec<f32>; N] = std::array::from_fn(|_| Vec::with_capacity(raw.len() / stride));
    for pixel in raw.chunks_exact(stride) {
        for (plane, v) in planes.iter_mut().zip(pixel) {
            plane.push(f32::from(*v));
        }
    }
    planes
}

/// One plane of `w` x `h` to the model's `width` x `height` under `policy`.
fn resize_plane(
    plane: &[f32],
    w: u32,
    h: u32,
    width: u32,
    height: u32,
    policy: Resize,
) -> Vec<f32> {
    let (wf, hf, width_f, height_f) = (
        f64::from(w),
        f64::from(h),
        f64::from(width),
        f64::from(height),
    );
    match policy {
        Resize::Stretch => bilinear(plane, w, h, width, height, None),
        Resize::CenterCrop { crop_fraction } => {
            let s = (width_f / wf).max(height_f / hf) / f64::from(crop_fraction);
            let rw = (wf * s + 0.5).floor().max(width_f);
            let rh = (hf * s + 0.5).floor().max(height_f);
            let left = ((rw - width_f) / 2.0).floor();
            let top = ((rh - height_f) / 2.0).floor();
            // Only the kept centre is computed: the same output pixels as resizing to
            // rw x rh and cropping (same filter centres, same edges), without the
            // full-size image, which a thin image would make huge.
            let (sx, sy) = (wf / rw, hf / rh);
            let crop_w = (width_f * sx).min(wf);
            let crop_h = (height_f * sy).min(hf);
            let crop = [
                (left * sx).min(wf - crop_w),
                (top * sy).min(hf - crop_h),
                crop_w,
                crop_h,
            ];
            bilinear(plane, w, h, width, height, Some(crop))
        }
        Resize::Letterbox { pad } => {
            let s = (width_f / wf).min(height_f / hf);
            // `s * w` is at most `width` (and `s * h` at most `height`), so these fit.
            let rw = ((wf * s + 0.5).floor().max(1.0) as u32).min(width);
            let rh = ((hf * s + 0.5).floor().max(1.0) as u32).min(height);
            let inner = bilinear(plane, w, h, rw, rh, None);
            let (left, top) = ((width - rw) / 2, (height - rh) / 2);
            let mut canvas = vec![pad; (width * height) as usize];
            for (y, row) in inner.chunks_exact(rw as usize).enumerate() {
                let at = (top as usize + y) * width as usize + left as usize;
                canvas[at..at + rw as usize].copy_from_slice(row);
            }
            canvas
        }
    }
}

/// PIL's BILINEAR resize of a float plane to `width` x `height`, optionally of a
/// sub-rectangle `[left, top, width, height]` of the source (in source pixels).
fn bilinear(
    plane: &[f32],
    w: u32,
    h: u32,
    width: u32,
    height: u32,
    crop: Option<[f64; 4]>,
) -> Vec<f32> {
    if crop.is_none() && (w, h) == (width, height) {
        return plane.to_vec();
    }
    // `F32` is a one-field wrapper: copying into it is the price of the typed API.
    let src: Vec<F32> = plane.iter().map(|&v| F32::new(v)).collect();
    let mut dst = TypedImage::<F32>::new(width, height);
    let mut options =
        ResizeOptions::new().resize_alg(ResizeAlg::Convolution(ResizeFilter::Bilinear));
    if let Some([left, top, cw, ch]) = crop {
        options = options.crop(left, top, cw, ch);
    }
    // The plane holds w x h values, the destination is allocated for its size and the
    // crop lies inside the source, so the resize has nothing to refuse.
    let src = TypedImageRef::new(w, h, &src).expect("plane holds w x h values");
    Resizer::new()
        .resize_typed(&src, &mut dst, &options)
        .expect("float resize with a valid crop");
    dst.pixels().iter().map(|p| p.0).collect()
}

/// Decode and preprocess in one step.
pub fn prepare(
    input: ImageInput<'_>,
    spec: &InputSpec,
    limits: &Limits,
) -> Result<Vec<f32>, ImageError> {
    let image = to_dynamic_image(input, limits)?;
    let mut out = vec![0.0; spec.len()];
    preprocess_into(&image, spec, &mut out);
    Ok(out)
}

/// Every image of a dataset, converted to `spec` and laid end to end (in parallel).
///
/// The same path as client images, so offline figures describe what serving does.
pub fn prepare_dataset(
    dataset: &oodgate_datasets::Dataset,
    spec: &InputSpec,
) -> Result<Vec<f32>, ImageError> {
    use rayon::prelude::*;

    let limits = Limits::default();
    let mut pixels = vec![0.0f32; dataset.len() * spec.len()];
    pixels
        .par_chunks_mut(spec.len())
        .enumerate()
        .try_for_each(|(i, out)| {
            let image = ImageInput::Raw {
                width: dataset.width,
                height: dataset.height,
                channels: u32::from(dataset.channels),
                pixels: dataset.image(i),
            };
            let image = to_dynamic_image(image, &limits)?;
            preprocess_into(&image, spec, out);
            Ok(())
        })?;
    Ok(pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MNIST: InputSpec = InputSpec {
        layout: Layout::Nhwc,
        height: 28,
        width: 28,
        channels: 1,
        transform: Transform::Legacy,
    };

    fn raw(width: u32, height: u32, channels: u32, pixels: &[u8]) -> ImageInput<'_> {
        ImageInput::Raw {
            width,
            height,
            channels,
            pixels,
        }
    }

    #[test]
    fn a_fourth_channel_is_opaque_not_the_next_pixel() {
        let spec = InputSpec {
            layout: Layout::Nhwc,
            height: 1,
            width: 2,
            channels: 4,
            transform: Transform::Legacy,
        };
        // Two RGB pixels, black then green: the black one's alpha once read the green
        // one's red (0), making it transparent.
        let out = prepare(
            raw(2, 1, 3, &[0, 0, 0, 0, 255, 0]),
            &spec,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(out, [0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn gray_28x28_is_scaled_without_resampling() {
        let pixels: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
        let out = prepare(raw(28, 28, 1, &pixels), &MNIST, &Limits::default()).unwrap();
        assert_eq!(out.len(), 784);
        for (o, p) in out.iter().zip(&pixels) {
            assert_eq!(*o, f32::from(*p) / 255.0);
        }
    }

    #[test]
    fn rgb_32x32_becomes_gray_28x28() {
        // A white image stays white whatever the conversion and resize.
        let pixels = vec![255u8; 32 * 32 * 3];
        let out = prepare(raw(32, 32, 3, &pixels), &MNIST, &Limits::default()).unwrap();
        assert_eq!(out.len(), 784);
        assert!(out.iter().all(|v| (*v - 1.0).abs() < 1e-6));
    }

    #[test]
    fn png_and_raw_give_the_same_input() {
        let pixels: Vec<u8> = (0..28 * 28).map(|i| ((i * 7) % 256) as u8).collect();
        let img = GrayImage::from_raw(28, 28, pixels.clone()).unwrap();
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let a = prepare(ImageInput::Encoded(&png), &MNIST, &Limits::default()).unwrap();
        let b = prepare(raw(28, 28, 1, &pixels), &MNIST, &Limits::default()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn nchw_layout_is_planar() {
        let spec = InputSpec {
            layout: Layout::Nchw,
            height: 2,
            width: 2,
            channels: 3,
            transform: Transform::Legacy,
        };
        let pixels = [255, 0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0];
        let out = prepare(raw(2, 2, 3, &pixels), &spec, &Limits::default()).unwrap();
        assert_eq!(
            out,
            vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn bad_images_are_errors_not_panics() {
        let l = Limits::default();
        assert!(matches!(
            prepare(raw(28, 28, 1, &[0; 10]), &MNIST, &l),
            Err(ImageError::PixelCount { .. })
        ));
        assert!(matches!(
            prepare(raw(0, 28, 1, &[]), &MNIST, &l),
            Err(ImageError::EmptyImage { .. })
        ));
        assert!(matches!(
            prepare(raw(2, 2, 2, &[0; 8]), &MNIST, &l),
            Err(ImageError::Channels(2))
        ));
        assert!(matches!(
            prepare(raw(100_000, 100_000, 1, &[]), &MNIST, &l),
            Err(ImageError::TooLarge { .. })
        ));
        assert_eq!(
            prepare(ImageInput::Encoded(b"not an image"), &MNIST, &l),
            Err(ImageError::UnknownEncoding)
        );
        // A PNG signature followed by garbage.
        let truncated = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert!(matches!(
            prepare(ImageInput::Encoded(truncated), &MNIST, &l),
            Err(ImageError::Decode(_))
        ));
    }

    fn float(colour: Colour, resize: Resize, height: u32, width: u32) -> InputSpec {
        InputSpec {
            layout: Layout::Nhwc,
            height,
            width,
            channels: colour.channels(),
            transform: Transform::Float(FloatTransform {
                colour,
                resize,
                scale: 255.0,
                mean: [0.0; 4],
                std: [1.0; 4],
            }),
        }
    }

    fn transform(spec: &InputSpec) -> FloatTransform {
        match spec.transform {
            Transform::Float(t) => t,
            Transform::Legacy => panic!("a float spec"),
        }
    }

    #[test]
    fn float_settings_that_cannot_work_are_named() {
        let ok = transform(&float(Colour::Rgb, Resize::Stretch, 4, 4));
        assert_eq!(ok.check(3), Ok(()));
        let err = |t: FloatTransform, channels| t.check(channels).unwrap_err();
        assert!(err(ok, 1).contains("colour = \"rgb\" needs a 3-channel input"));
        assert!(err(FloatTransform { scale: 0.0, ..ok }, 3).contains("scale"));
        let std = FloatTransform {
            std: [1.0, 0.0, 1.0, 1.0],
            ..ok
        };
        assert!(err(std, 3).contains("std"));
        let mean = FloatTransform {
            mean: [f32::NAN; 4],
            ..ok
        };
        assert!(err(mean, 3).contains("mean"));
        for crop_fraction in [0.0, 1.5, f32::NAN] {
            let crop = FloatTransform {
                resize: Resize::CenterCrop { crop_fraction },
                ..ok
            };
            assert!(err(crop, 3).contains("crop_fraction"));
        }
        let pad = FloatTransform {
            resize: Resize::Letterbox { pad: 256.0 },
            ..ok
        };
        assert!(err(pad, 3).contains("pad"));
        // Only the model's channels need a mean and std.
        let gray = FloatTransform {
            colour: Colour::Gray,
            std: [0.5, 0.0, 0.0, 0.0],
            ..ok
        };
        assert_eq!(gray.check(1), Ok(()));
    }

    #[test]
    fn letterbox_centres_the_image_on_the_fill() {
        // A white 4x2 image in a 4x4 input: one row of fill above, one below.
        let spec = float(Colour::Gray, Resize::Letterbox { pad: 51.0 }, 4, 4);
        let out = prepare(raw(4, 2, 1, &[255; 8]), &spec, &Limits::default()).unwrap();
        let fill = 51.0 / 255.0;
        #[rustfmt::skip]
        let expected = [
            fill, fill, fill, fill,
            1.0, 1.0, 1.0, 1.0,
            1.0, 1.0, 1.0, 1.0,
            fill, fill, fill, fill,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn colour_conversions_in_float() {
        let l = Limits::default();
        let red = raw(1, 1, 3, &[255, 10, 0]);
        let bgr = prepare(red, &float(Colour::Bgr, Resize::Stretch, 1, 1), &l).unwrap();
        assert_eq!(bgr, [0.0, 10.0 / 255.0, 1.0]);
        // PIL's "L" weights, not rounded to an integer.
        let gray = prepare(red, &float(Colour::Gray, Resize::Stretch, 1, 1), &l).unwrap();
        assert_eq!(gray, [(255.0 * 299.0 + 10.0 * 587.0) / 1000.0 / 255.0]);
        // Alpha dropped, gray repeated.
        let gray_alpha = ImageInput::Encoded(&png_gray_alpha());
        let rgb = prepare(gray_alpha, &float(Colour::Rgb, Resize::Stretch, 1, 1), &l).unwrap();
        assert_eq!(rgb, [102.0 / 255.0; 3]);
    }

    fn png_gray_alpha() -> Vec<u8> {
        let img = image::GrayAlphaImage::from_raw(1, 1, vec![102, 0]).unwrap();
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }

    #[test]
    fn float_path_reads_png_and_raw_alike_and_normalises() {
        let pixels: Vec<u8> = (0..37 * 23 * 3).map(|i| ((i * 31) % 256) as u8).collect();
        let img = RgbImage::from_raw(37, 23, pixels.clone()).unwrap();
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let mut spec = float(
            Colour::Rgb,
            Resize::CenterCrop {
                crop_fraction: 0.875,
            },
            20,
            24,
        );
        spec.layout = Layout::Nchw;
        let l = Limits::default();
        let plain = prepare(raw(37, 23, 3, &pixels), &spec, &l).unwrap();
        assert_eq!(
            prepare(ImageInput::Encoded(&png), &spec, &l).unwrap(),
            plain
        );
        assert!(plain.iter().all(|v| (0.0..=1.0).contains(v)));

        let mut t = transform(&spec);
        t.mean = [0.485, 0.456, 0.406, 0.0];
        t.std = [0.229, 0.224, 0.225, 1.0];
        spec.transform = Transform::Float(t);
        let normalised = prepare(raw(37, 23, 3, &pixels), &spec, &l).unwrap();
        let plane = 20 * 24;
        for (i, (n, p)) in normalised.iter().zip(&plain).enumerate() {
            let c = i / plane;
            assert!((n - (p - t.mean[c]) / t.std[c]).abs() < 1e-6);
            assert!((t.to_pixel_units(*n, c) - p * 255.0).abs() < 1e-3);
        }
    }

    #[test]
    fn a_thin_image_is_center_cropped_without_a_huge_resize() {
        // Scaled to cover 224 x 224 it would be 256 x 1,048,576 per channel; only the
        // kept centre is computed. A flat image stays flat.
        let spec = float(
            Colour::Rgb,
            Resize::CenterCrop {
                crop_fraction: 0.875,
            },
            224,
            224,
        );
        let out = prepare(raw(1, 4096, 1, &[200; 4096]), &spec, &Limits::default()).unwrap();
        assert_eq!(out.len(), 224 * 224 * 3);
        assert!(out.iter().all(|v| (v - 200.0 / 255.0).abs() < 1e-6));
    }
}
