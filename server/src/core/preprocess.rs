//! Any client image to the model's input: decode, channel conversion, resize, scale.
//!
//! Raw pixels of any size with 1, 3 or 4 channels, or PNG/JPEG bytes, become
//! float32 values in [0, 1] at the model's height, width and channel count, in its
//! layout. Resizing and colour conversion are the `image` crate's.

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageReader, RgbImage, RgbaImage};

/// What the model takes, read from the ONNX input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    pub layout: Layout,
    pub height: u32,
    pub width: u32,
    pub channels: u32,
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
pub fn preprocess_into(image: &DynamicImage, spec: &InputSpec, out: &mut [f32]) {
    debug_assert_eq!(out.len(), spec.len());
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
}
