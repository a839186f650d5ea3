//! Synthetic evaluation sets of 28x28 grayscale images, MNIST-style, that are *close*
//! to a digit: what an out-of-distribution gate must reject (letters, doodles) or
//! accept (typed digits) although the model never saw anything like them.
//!
//! - [`SynthSet::Letters`]: Latin letters A-Z and a-z except those that are also digit shapes
//!   ([`EXCLUDED_LETTERS`]: O o l I S s Z z b g q), typeset in the TrueType/OpenType
//!   fonts of [`FONT_FILES`] and drawn with a pen from every Latin Hershey stroke font
//!   ([`letter_hershey_fonts`]). Class = the letter.
//! - [`SynthSet::TypedDigits`]: 0-9 from the same TrueType/OpenType fonts and from the Hershey
//!   fonts the trainer does not use ([`TYPED_DIGIT_HERSHEY_FONTS`]). Class = the digit:
//!   a labelled digit set.
//! - [`SynthSet::Doodles`]: stars, smileys, hearts, arrows, houses... drawn as pen strokes with a
//!   hand's wobble ([`Doodle`]). Class = the kind.
//!
//! Each image is drawn with a random hand (rotation ±12°, shear ±0.25, aspect ±12 %;
//! strokes also wobble), anti-aliased, and normalised as MNIST was ([`render`]): the ink
//! cropped, its longer side scaled to 20 px, its centre of mass put at the centre of a
//! black 28x28 image. Hershey pens are 1.2 to 3.5 px wide (gothic and triplex fonts
//! at most 2 and 3 px, or their parallel lines merge), doodle pens 1.5 to 3 px (2.4
//! for kinds with small parts);
//! font glyphs are filled, half of them emboldened by a stroke of up to 1.5 px.
//!
//! The images are never stored in the repository; this code is. A seed gives a
//! byte-identical set wherever the same font packages are installed: image `i` draws
//! from its own ChaCha8 stream (key from the seed, stream `i`), so the order rayon
//! runs them in does not matter. A font file that is missing is an error that names it
//! and its Debian package (`FONT_PACKAGES`; `scripts/setup.sh test` installs
//! them), never a silently smaller set.
//!
//! These sets are report-only (DESIGN.md, "Measuring out-of-distribution quality
//! honestly"): nothing is tuned on them.

mod doodles;
mod fonts;
mod hershey;
mod render;
#[cfg(test)]
mod tests;

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub(crate) use doodles::Doodle;
pub(crate) use fonts::{FONT_FILES, FontFile};
pub(crate) use hershey::{HERSHEY_DIR, HersheyFont};

use crate::error::{DatasetError, Result};
use crate::{Dataset, MNIST_CLASSES, class_names};
use render::{Ink, SIZE};

/// Letters left out of [`SynthSet::Letters`] because they are also digit shapes (0, 1, 5, 2, 6,
/// 9): an image of one of them is a digit as much as a letter.
pub(crate) const EXCLUDED_LETTERS: [char; 11] =
    ['O', 'o', 'l', 'I', 'S', 's', 'Z', 'z', 'b', 'g', 'q'];

/// Latin Hershey fonts whose digits the trainer draws as training digits
/// (`DIGIT_FONTS` in `train/oodtrain/glyphs.py`): letters only, never typed digits.
pub(crate) const TRAINER_DIGIT_HERSHEY_FONTS: [&str; 7] = [
    "futural", "futuram", "rowmans", "rowmand", "rowmant", "timesr", "timesrb",
];

/// Every Latin Hershey font: the letters are drawn from all of them.
pub(crate) fn letter_hershey_fonts() -> Vec<&'static str> {
    [
        &TRAINER_DIGIT_HERSHEY_FONTS[..],
        &TYPED_DIGIT_HERSHEY_FONTS[..],
    ]
    .concat()
}

/// The Hershey fonts of [`SynthSet::TypedDigits`]: the Latin ones but
/// [`TRAINER_DIGIT_HERSHEY_FONTS`], whose digits are training data.
pub(crate) const TYPED_DIGIT_HERSHEY_FONTS: [&str; 11] = [
    "timesi",
    "timesib",
    "scripts",
    "scriptc",
    "cursive",
    "gothiceng",
    "gothicger",
    "gothicita",
    "gothgbt",
    "gothgrt",
    "gothitt",
];

/// Draws per image before giving up. A draw is refused when its ink is too lopsided to
/// centre; with these shapes that is rare (none in the three defined sets), never every
/// draw of an image.
const MAX_ATTEMPTS: usize = 64;

/// The letters of [`SynthSet::Letters`], in label order: A-Z then a-z, without
/// [`EXCLUDED_LETTERS`].
pub(crate) fn kept_letters() -> Vec<char> {
    ('A'..='Z')
        .chain('a'..='z')
        .filter(|c| !EXCLUDED_LETTERS.contains(c))
        .collect()
}

/// Where the glyphs come from: the font table and the Hershey folder. [`Sources::debian`]
/// is what the sets are defined with; another table is for tests.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub fonts: &'a [FontFile],
    pub hershey_dir: &'a Path,
}

impl Sources<'static> {
    /// [`FONT_FILES`] and [`HERSHEY_DIR`], as Debian installs them.
    pub fn debian() -> Self {
        Self {
            fonts: FONT_FILES,
            hershey_dir: Path::new(HERSHEY_DIR),
        }
    }
}

/// The three synthetic sets by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthSet {
    Letters,
    TypedDigits,
    Doodles,
}

impl SynthSet {
    pub const ALL: [SynthSet; 3] = [SynthSet::Letters, SynthSet::TypedDigits, SynthSet::Doodles];

    /// `letters`, `typed-digits` or `doodles`: the set's name in commands and reports.
    pub fn name(self) -> &'static str {
        match self {
            SynthSet::Letters => "letters",
            SynthSet::TypedDigits => "typed-digits",
            SynthSet::Doodles => "doodles",
        }
    }

    /// The set of a [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The seed the set is defined with.
    pub fn default_seed(self) -> u64 {
        match self {
            SynthSet::Letters => 0x1e77_e125,
            SynthSet::TypedDigits => 0x7e7d_d161,
            SynthSet::Doodles => 0xd00d_1e50,
        }
    }

    /// Number of images.
    pub fn size(self) -> usize {
        match self {
            SynthSet::Letters => 8200, // 200 of each of the 41 letters
            SynthSet::TypedDigits => 5000,
            SynthSet::Doodles => 5000, // 200 of each of the 25 kinds
        }
    }

    /// True when the labels are digits 0-9, as the model's classes.
    pub fn labelled_digits(self) -> bool {
        self == SynthSet::TypedDigits
    }

    /// The set at `seed` ([`default_seed`](Self::default_seed) for the defined one),
    /// from the Debian fonts.
    pub fn generate(self, seed: u64) -> Result<Dataset> {
        self.generate_with(seed, self.size(), Sources::debian())
    }

    /// The first `count` images of the set at `seed`, drawn from `sources`. Image `i` is
    /// the same whatever `count` is.
    pub fn generate_with(self, seed: u64, count: usize, sources: Sources) -> Result<Dataset> {
        match self {
            SynthSet::Letters => glyph_set(
                self,
                seed,
                count,
                &kept_letters(),
                &letter_hershey_fonts(),
                sources,
            ),
            SynthSet::TypedDigits => {
                let digits: Vec<char> = ('0'..='9').collect();
                let mut set = glyph_set(
                    self,
                    seed,
                    count,
                    &digits,
                    &TYPED_DIGIT_HERSHEY_FONTS,
                    sources,
                )?;
                set.class_names = class_names(&MNIST_CLASSES);
                Ok(set)
            }
            SynthSet::Doodles => {
                let kinds = Doodle::ALL;
                let pixels = draw_all(self, seed, count, |i, rng| {
                    let kind = kinds[i % kinds.len()];
                    let drawing = kind.strokes(rng);
                    let strokes = render::wobble(rng, &drawing, 0.01, 0.03);
                    let path = render::polylines(&strokes)?;
                    let pen = rng.random_range(1.5..=kind.max_pen());
                    render::draw(&path, render::hand(rng), Ink::Pen(pen))
                })?;
                Ok(dataset(
                    self,
                    kinds.iter().map(|k| k.name().to_string()).collect(),
                    pixels,
                ))
            }
        }
    }
}

/// Letters or digits: image `i` is character `i mod chars.len()`, half of the time
/// typeset in a random font of the table, half drawn with a pen from a random Hershey
/// font of `hershey_names`.
fn glyph_set(
    set: SynthSet,
    seed: u64,
    count: usize,
    chars: &[char],
    hershey_names: &[&str],
    sources: Sources,
) -> Result<Dataset> {
    let typeset = fonts::load_outlines(sources.fonts, chars)?;
    let hershey = hershey_names
        .iter()
        .map(|name| {
            let font = HersheyFont::load_named(sources.hershey_dir, name)?;
            // Every glyph a set needs must have ink.
            let strokes = chars
                .iter()
                .map(|&c| match font.glyph(c) {
                    Some(g) if !g.strokes.is_empty() => Ok(g.strokes.clone()),
                    _ => Err(DatasetError::BadFont {
                        path: font.path.clone(),
                        message: format!("no strokes for {c:?}"),
                    }),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((strokes, hershey_max_pen(name)))
        })
        .collect::<Result<Vec<_>>>()?;
    if typeset.is_empty() || hershey.is_empty() {
        return Err(DatasetError::Synth {
            set: set.name().into(),
            message: "no fonts to draw from".into(),
        });
    }
    let pixels = draw_all(set, seed, count, |i, rng| {
        let class = i % chars.len();
        if rng.random_bool(0.5) {
            let (font, max_pen) = &hershey[rng.random_range(0..hershey.len())];
            let strokes = render::wobble(rng, &font[class], 0.01, 0.015);
            let path = render::polylines(&strokes)?;
            let pen = rng.random_range(1.2..=*max_pen);
            render::draw(&path, render::hand(rng), Ink::Pen(pen))
        } else {
            let font = &typeset[rng.random_range(0..typeset.len())];
            let embolden = if rng.random_bool(0.5) {
                rng.random_range(0.0..=1.5)
            } else {
                0.0
            };
            render::draw(&font.paths[class], render::hand(rng), Ink::Fill(embolden))
        }
    })?;
    Ok(dataset(
        set,
        chars.iter().map(|c| c.to_string()).collect(),
        pixels,
    ))
}

/// The widest pen (final pixels) a Hershey font is drawn with. The gothic and triplex
/// fonts draw each stroke as several parallel lines, which a wide pen merges into a
/// blot; the simplex and duplex fonts take the full 3.5 px.
fn hershey_max_pen(name: &str) -> f32 {
    if name.starts_with("goth") {
        2.0
    } else if matches!(name, "rowmant" | "timesrb" | "timesib") {
        3.0
    } else {
        3.5
    }
}

/// Draws `count` images in parallel, image `i` from its own random stream; a refused
/// draw (None) is drawn again from where the stream is.
fn draw_all(
    set: SynthSet,
    seed: u64,
    count: usize,
    draw: impl Fn(usize, &mut ChaCha8Rng) -> Option<[u8; SIZE * SIZE]> + Sync,
) -> Result<Vec<[u8; SIZE * SIZE]>> {
    (0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            (0..MAX_ATTEMPTS)
                .find_map(|_| draw(i, &mut rng))
                .ok_or_else(|| DatasetError::Synth {
                    set: set.name().into(),
                    message: format!("image {i}: no centred drawing in {MAX_ATTEMPTS} attempts"),
                })
        })
        .collect()
}

/// The images as a [`Dataset`]; labels cycle through the classes.
fn dataset(set: SynthSet, class_names: Vec<String>, images: Vec<[u8; SIZE * SIZE]>) -> Dataset {
    let classes = class_names.len();
    Dataset {
        name: set.name().into(),
        class_names,
        width: SIZE as u32,
        height: SIZE as u32,
        channels: 1,
        labels: (0..images.len()).map(|i| (i % classes) as u8).collect(),
        pixels: images.concat(),
    }
}

/// The first `count` images of a grayscale dataset on a grid `columns` wide, each cell
/// `zoom` times its size, cells parted by grey lines: for a person to look at.
pub fn contact_sheet(
    dataset: &Dataset,
    count: usize,
    columns: usize,
    zoom: u32,
) -> image::GrayImage {
    let count = count.min(dataset.len());
    let columns = columns.max(1);
    let rows = count.div_ceil(columns).max(1);
    let (w, h) = (dataset.width, dataset.height);
    let cell = |n: u32| n * zoom + 1;
    let mut sheet = image::GrayImage::from_pixel(
        columns as u32 * cell(w) + 1,
        rows as u32 * cell(h) + 1,
        image::Luma([96]),
    );
    for i in 0..count {
        let (cx, cy) = (
            (i % columns) as u32 * cell(w) + 1,
            (i / columns) as u32 * cell(h) + 1,
        );
        let img = dataset.image(i);
        let channels = u32::from(dataset.channels);
        for y in 0..h * zoom {
            for x in 0..w * zoom {
                let p = (((y / zoom) * w + x / zoom) * channels) as usize;
                sheet.put_pixel(cx + x, cy + y, image::Luma([img[p]]));
            }
        }
    }
    sheet
}
