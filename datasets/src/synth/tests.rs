//! The synthetic evaluation sets: deterministic, the promised sizes and classes, every
//! image normalised as MNIST's are; the Hershey parser on a real font file; a missing
//! font is an error that says what to install.
//!
//! Unit tests, as they check the font lists and the Hershey parser, which are not
//! the crate's API. They need the Debian font packages (`scripts/setup.sh test` installs them). Without
//! them they fail, naming the missing file and its package; they never skip.

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

use super::fonts::{self, FONT_PACKAGES};
use super::{
    EXCLUDED_LETTERS, FONT_FILES, FontFile, HERSHEY_DIR, HersheyFont, Sources, SynthSet,
    TRAINER_DIGIT_HERSHEY_FONTS, TYPED_DIGIT_HERSHEY_FONTS, kept_letters, letter_hershey_fonts,
};
use crate::{Dataset, DatasetError, MNIST_CLASSES, idx};

/// The three sets at their default seeds, generated once for all tests of this file.
fn sets() -> &'static [Dataset; 3] {
    static SETS: OnceLock<[Dataset; 3]> = OnceLock::new();
    SETS.get_or_init(|| SynthSet::ALL.map(|s| generate(s, s.default_seed())))
}

fn generate(set: SynthSet, seed: u64) -> Dataset {
    set.generate(seed)
        .unwrap_or_else(|e| panic!("cannot generate {}: {e}", set.name()))
}

fn set(which: SynthSet) -> &'static Dataset {
    &sets()[SynthSet::ALL.iter().position(|s| *s == which).unwrap()]
}

#[test]
fn a_seed_gives_byte_identical_sets_whatever_the_thread_count() {
    for (which, first) in SynthSet::ALL.iter().zip(sets()) {
        // Again, on one thread: the per-image streams make the schedule irrelevant.
        let again = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| generate(*which, which.default_seed()));
        assert!(
            first == &again,
            "{}: two runs with the same seed differ",
            which.name()
        );
        let other = generate(*which, which.default_seed() + 1);
        assert_ne!(
            first.pixels,
            other.pixels,
            "{}: the seed changes nothing",
            which.name()
        );
        // A prefix is the same images.
        let head = which
            .generate_with(which.default_seed(), 100, Sources::debian())
            .unwrap();
        assert_eq!(head.pixels, first.pixels[..100 * 784]);
    }
}

#[test]
fn sizes_labels_and_class_names() {
    let letters = set(SynthSet::Letters);
    let digits = set(SynthSet::TypedDigits);
    let doodles = set(SynthSet::Doodles);
    for (ds, which) in sets().iter().zip(SynthSet::ALL) {
        assert_eq!(ds.name, which.name());
        assert_eq!(ds.len(), which.size());
        assert_eq!((ds.width, ds.height, ds.channels), (28, 28, 1));
        assert_eq!(ds.pixels.len(), ds.len() * 784);
        // Every class, equally often (sizes are multiples of the class count).
        let counts = ds.class_counts();
        assert_eq!(
            counts.iter().sum::<usize>(),
            ds.len(),
            "{}: labels out of range",
            ds.name
        );
        assert!(
            counts.iter().all(|&c| c == ds.len() / counts.len()),
            "{}: {counts:?}",
            ds.name
        );
    }
    assert!((7000..=9000).contains(&letters.len()));
    assert!((4000..=6000).contains(&digits.len()) && (4000..=6000).contains(&doodles.len()));

    // Letters: 52 minus the 11 that are also digit shapes.
    assert_eq!(letters.class_names.len(), 41);
    for excluded in EXCLUDED_LETTERS {
        assert!(
            !letters.class_names.contains(&excluded.to_string()),
            "{excluded} is a digit shape"
        );
    }
    for c in ['O', 'o', 'l', 'I', 'S', 's', 'Z', 'z', 'b', 'g', 'q'] {
        assert!(!kept_letters().contains(&c));
    }
    assert!(
        letters
            .class_names
            .iter()
            .all(|n| n.len() == 1 && n.chars().all(|c| c.is_ascii_alphabetic()))
    );

    assert_eq!(digits.class_names, MNIST_CLASSES.map(String::from));
    assert!(SynthSet::TypedDigits.labelled_digits());

    assert!(doodles.class_names.len() >= 20);
    let unique: HashSet<&String> = doodles.class_names.iter().collect();
    assert_eq!(
        unique.len(),
        doodles.class_names.len(),
        "doodle kinds repeat"
    );
    for digit_like in ["circle", "ellipse", "oval", "line", "zero", "one"] {
        assert!(
            !doodles.class_names.iter().any(|n| n == digit_like),
            "{digit_like} is a digit, not a doodle"
        );
    }
}

#[test]
fn every_image_is_normalised_like_mnist() {
    for ds in sets() {
        let mut total_ink = 0.0;
        for i in 0..ds.len() {
            let img = ds.image(i);
            let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
            let (mut mass, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
            for (p, &v) in img.iter().enumerate() {
                if v == 0 {
                    continue;
                }
                let (x, y) = (p % 28, p / 28);
                (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
                let v = f64::from(v) / 255.0;
                mass += v;
                mx += v * (x as f64 + 0.5);
                my += v * (y as f64 + 0.5);
            }
            assert!(mass > 5.0, "{} image {i}: no ink", ds.name);
            let (w, h) = (x1 + 1 - x0, y1 + 1 - y0);
            assert!(w <= 21 && h <= 21, "{} image {i}: ink box {w}x{h}", ds.name);
            // The longer side is the 20 px MNIST scales to (the shorter may be anything).
            assert!(w.max(h) >= 19, "{} image {i}: ink box {w}x{h}", ds.name);
            let (cx, cy) = (mx / mass, my / mass);
            assert!(
                (cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0,
                "{} image {i}: centre of mass ({cx:.2}, {cy:.2})",
                ds.name
            );
            total_ink += mass;
        }
        // Strokes as wide as MNIST's on average (MNIST test: about 104 full-ink pixels
        // per image): not hairlines, not blots.
        let mean = total_ink / ds.len() as f64;
        assert!(
            (70.0..=170.0).contains(&mean),
            "{}: {mean:.1} ink per image",
            ds.name
        );
    }
}

#[test]
fn typed_digits_leave_out_the_trainers_hershey_fonts() {
    // The trainer's own list (train/oodtrain/glyphs.py, DIGIT_FONTS) is the one kept out.
    let glyphs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../train/oodtrain/glyphs.py"),
    )
    .unwrap();
    let line = glyphs
        .lines()
        .find(|l| l.starts_with("DIGIT_FONTS = ("))
        .expect("DIGIT_FONTS in glyphs.py");
    let trainer: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    assert_eq!(trainer, TRAINER_DIGIT_HERSHEY_FONTS);
    for font in TYPED_DIGIT_HERSHEY_FONTS {
        assert!(!trainer.contains(&font), "{font} draws training digits");
    }
    assert_eq!(letter_hershey_fonts().len(), 18);
}

#[test]
fn hershey_parser_reads_futural_as_checked_by_hand() {
    let font = HersheyFont::load_named(Path::new(HERSHEY_DIR), "futural")
        .unwrap_or_else(|e| panic!("{e}"));
    // 96 glyphs: ASCII 32 to 127.
    assert_eq!(font.glyphs.len(), 96);
    // Line 34 of futural.jhf, 'A': "12345  9I[RFJ[ RRFZ[ RMTWT": 9 pairs, margins I[
    // (-9, 9), then two legs from the apex (R,F) = (0, -12) and the bar M,T to W,T.
    let a = font.glyph('A').unwrap();
    assert_eq!((a.left, a.right), (-9, 9));
    assert_eq!(
        a.strokes,
        vec![
            vec![(0.0, -12.0), (-8.0, 9.0)],
            vec![(0.0, -12.0), (8.0, 9.0)],
            vec![(-5.0, 2.0), (5.0, 2.0)],
        ]
    );
    // ' ' is margins only; '1' (line 18, "12345  5H\\NJPISFS[") is one polyline.
    assert!(font.glyph(' ').unwrap().strokes.is_empty());
    let one = font.glyph('1').unwrap();
    assert_eq!((one.left, one.right), (-10, 10));
    assert_eq!(
        one.strokes,
        vec![vec![(-4.0, -8.0), (-2.0, -9.0), (1.0, -12.0), (1.0, 9.0)]]
    );
}

#[test]
fn a_missing_font_is_an_error_naming_the_file_and_its_package() {
    let fonts = [
        FONT_FILES[0],
        FontFile {
            path: "/nonexistent/oodgate-test/NoSuchFont.ttf",
            package: "fonts-no-such-package",
        },
    ];
    let sources = Sources {
        fonts: &fonts,
        hershey_dir: Path::new(HERSHEY_DIR),
    };
    for which in [SynthSet::Letters, SynthSet::TypedDigits] {
        let err = which.generate_with(1, 10, sources).unwrap_err();
        assert!(
            matches!(&err, DatasetError::MissingFont { path, package }
                if path == Path::new("/nonexistent/oodgate-test/NoSuchFont.ttf")
                    && package == "fonts-no-such-package"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("NoSuchFont.ttf") && message.contains("fonts-no-such-package"),
            "{message}"
        );
    }

    let sources = Sources {
        fonts: FONT_FILES,
        hershey_dir: Path::new("/nonexistent/hershey"),
    };
    let message = SynthSet::Letters
        .generate_with(1, 10, sources)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("/nonexistent/hershey/futural.jhf")
            && message.contains("hershey-fonts-data"),
        "{message}"
    );
}

#[test]
fn every_font_of_the_table_is_installed_and_has_every_glyph() {
    let chars: Vec<char> = kept_letters().into_iter().chain('0'..='9').collect();
    let fonts = fonts::load_outlines(FONT_FILES, &chars).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fonts.len(), FONT_FILES.len());
    // Every font is a different file.
    let paths: HashSet<&str> = FONT_FILES.iter().map(|f| f.path).collect();
    assert_eq!(paths.len(), FONT_FILES.len());
    assert!((15..=30).contains(&FONT_FILES.len()));
}

#[test]
fn setup_installs_every_font_package() {
    let setup =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup.sh"))
            .expect("scripts/setup.sh");
    for file in FONT_FILES {
        assert!(
            FONT_PACKAGES.contains(&file.package),
            "{} not in FONT_PACKAGES",
            file.package
        );
    }
    for package in FONT_PACKAGES {
        assert!(
            setup.contains(package),
            "scripts/setup.sh does not install {package}"
        );
    }
}

#[test]
fn a_set_written_as_idx_reads_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let ds = set(SynthSet::Doodles);
    let (images, labels) = (dir.path().join("images"), dir.path().join("labels"));
    idx::write_idx_dataset(ds, &images, &labels).unwrap();
    let names: Vec<&str> = ds.class_names.iter().map(String::as_str).collect();
    let back = idx::load_idx_dataset(&ds.name, &images, &labels, &names).unwrap();
    assert_eq!(&back, ds);
}
