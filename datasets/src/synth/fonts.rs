//! The TrueType/OpenType fonts the synthetic sets are typeset in, by path, each with the
//! Debian package that installs it, and their glyph outlines as `tiny-skia` paths.
//!
//! The list is fixed, so a seed means the same images wherever the same packages are
//! installed. A missing file is an error naming the file and the package: a set drawn
//! from fewer fonts would be a different set under the same name.

use std::path::Path;

use tiny_skia::{Path as SkPath, PathBuilder};

use crate::error::{DatasetError, Result};

/// A font file and the Debian package that installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FontFile {
    pub path: &'static str,
    pub package: &'static str,
}

const fn font(package: &'static str, path: &'static str) -> FontFile {
    FontFile { path, package }
}

/// The Debian packages of [`FONT_FILES`] (and of the Hershey fonts): the tests check
/// that `scripts/setup.sh` installs each.
#[cfg(test)]
pub(crate) const FONT_PACKAGES: [&str; 8] = [
    "fonts-dejavu-core",
    "fonts-liberation2",
    "fonts-freefont-ttf",
    "fonts-texgyre",
    "fonts-comic-neue",
    "fonts-urw-base35",
    "fonts-cantarell",
    super::hershey::HERSHEY_PACKAGE,
];

/// Every font the letters and typed digits are typeset in: sans, serif, monospaced,
/// condensed, geometric, bold, italic, and handwriting-like (Comic Neue, Chorus).
#[rustfmt::skip]
pub(crate) const FONT_FILES: &[FontFile] = &[
    // Sans.
    font("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    font("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    font("fonts-liberation2", "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"),
    font("fonts-liberation2", "/usr/share/fonts/truetype/liberation2/LiberationSans-BoldItalic.ttf"),
    font("fonts-freefont-ttf", "/usr/share/fonts/truetype/freefont/FreeSansOblique.ttf"),
    font("fonts-texgyre", "/usr/share/texmf/fonts/opentype/public/tex-gyre/texgyreadventor-regular.otf"),
    font("fonts-texgyre", "/usr/share/texmf/fonts/opentype/public/tex-gyre/texgyreheroscn-bold.otf"),
    font("fonts-urw-base35", "/usr/share/fonts/opentype/urw-base35/NimbusSansNarrow-Regular.otf"),
    font("fonts-cantarell", "/usr/share/fonts/opentype/cantarell/Cantarell-Regular.otf"),
    font("fonts-cantarell", "/usr/share/fonts/opentype/cantarell/Cantarell-ExtraBold.otf"),
    // Serif.
    font("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf"),
    font("fonts-liberation2", "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf"),
    font("fonts-liberation2", "/usr/share/fonts/truetype/liberation2/LiberationSerif-Italic.ttf"),
    font("fonts-freefont-ttf", "/usr/share/fonts/truetype/freefont/FreeSerifBold.ttf"),
    font("fonts-texgyre", "/usr/share/texmf/fonts/opentype/public/tex-gyre/texgyrepagella-italic.otf"),
    font("fonts-texgyre", "/usr/share/texmf/fonts/opentype/public/tex-gyre/texgyrebonum-regular.otf"),
    font("fonts-texgyre", "/usr/share/texmf/fonts/opentype/public/tex-gyre/texgyreschola-bold.otf"),
    font("fonts-urw-base35", "/usr/share/fonts/opentype/urw-base35/C059-Roman.otf"),
    font("fonts-urw-base35", "/usr/share/fonts/opentype/urw-base35/P052-BoldItalic.otf"),
    font("fonts-urw-base35", "/usr/share/fonts/opentype/urw-base35/URWBookman-DemiItalic.otf"),
    // Monospaced.
    font("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"),
    font("fonts-liberation2", "/usr/share/fonts/truetype/liberation2/LiberationMono-Bold.ttf"),
    font("fonts-freefont-ttf", "/usr/share/fonts/truetype/freefont/FreeMonoBold.ttf"),
    font("fonts-texgyre", "/usr/share/texmf/fonts/opentype/public/tex-gyre/texgyrecursor-bold.otf"),
    // Handwriting-like.
    font("fonts-comic-neue", "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf"),
    font("fonts-comic-neue", "/usr/share/fonts/opentype/comic-neue/ComicNeue-BoldItalic.otf"),
    font("fonts-texgyre", "/usr/share/texmf/fonts/opentype/public/tex-gyre/texgyrechorus-mediumitalic.otf"),
];

/// The outlines of some characters in one font, in font units with y down.
#[derive(Debug, Clone)]
pub(super) struct FontOutlines {
    /// `paths[i]` is the outline of the i-th requested character.
    pub paths: Vec<SkPath>,
}

/// Reads every font of `files` and extracts the outlines of `chars`.
///
/// Fails on the first file that is missing ([`DatasetError::MissingFont`], naming it
/// and its package), cannot be parsed, or lacks one of the characters
/// ([`DatasetError::BadFont`]): never a silently smaller set.
pub(super) fn load_outlines(files: &[FontFile], chars: &[char]) -> Result<Vec<FontOutlines>> {
    files
        .iter()
        .map(|&file| {
            let path = Path::new(file.path);
            let data = std::fs::read(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DatasetError::MissingFont {
                    path: path.to_path_buf(),
                    package: file.package.into(),
                },
                _ => DatasetError::io(path, e),
            })?;
            let bad = |message: String| DatasetError::BadFont {
                path: path.to_path_buf(),
                message,
            };
            let face = ttf_parser::Face::parse(&data, 0).map_err(|e| bad(e.to_string()))?;
            let paths = chars
                .iter()
                .map(|&c| {
                    let glyph = face
                        .glyph_index(c)
                        .ok_or_else(|| bad(format!("no glyph for {c:?}")))?;
                    let mut builder = Outline(PathBuilder::new());
                    face.outline_glyph(glyph, &mut builder)
                        .ok_or_else(|| bad(format!("no outline for {c:?}")))?;
                    builder
                        .0
                        .finish()
                        .ok_or_else(|| bad(format!("empty outline for {c:?}")))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(FontOutlines { paths })
        })
        .collect()
}

/// A glyph outline into a `tiny-skia` path, y flipped (fonts have y up).
struct Outline(PathBuilder);

impl ttf_parser::OutlineBuilder for Outline {
    fn move_to(&mut self, x: f32, y: f32) {
        self.0.move_to(x, -y);
    }
    fn line_to(&mut self, x: f32, y: f32) {
        self.0.line_to(x, -y);
    }
    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        self.0.quad_to(x1, -y1, x, -y);
    }
    fn curve_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        self.0.cubic_to(x1, -y1, x2, -y2, x, -y);
    }
    fn close(&mut self) {
        self.0.close();
    }
}
