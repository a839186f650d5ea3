//! Hershey stroke fonts in the `.jhf` text format (Debian's `hershey-fonts-data`).
//!
//! One glyph per line: a 5-character id, a 3-character vertex count, then that many
//! pairs of characters. Each coordinate is the character's code minus `'R'` (x right,
//! y down); the pair `" R"` lifts the pen; the first pair is the glyph's left and right
//! margin, not a vertex. Some copies of the files wrap long glyphs at 72 characters, so a
//! line shorter than its count promises continues on the next. In the Latin fonts, glyph
//! `i` (in line order) is ASCII `32 + i`.

use std::path::{Path, PathBuf};

use crate::error::{DatasetError, Result};

/// Where Debian installs the Hershey fonts.
pub(crate) const HERSHEY_DIR: &str = "/usr/share/hershey-fonts";

/// The Debian package that holds them.
pub(super) const HERSHEY_PACKAGE: &str = "hershey-fonts-data";

/// One glyph: its margins and its strokes (polylines, x right, y down).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HersheyGlyph {
    /// Left margin (usually negative: the glyph's origin is its centre).
    pub left: i32,
    /// Right margin.
    pub right: i32,
    /// Pen-down runs, each a polyline of at least one point.
    pub strokes: Vec<Vec<(f32, f32)>>,
}

/// A parsed `.jhf` file.
#[derive(Debug, Clone)]
pub(crate) struct HersheyFont {
    /// The file it came from.
    pub path: PathBuf,
    /// Glyphs in file order.
    pub glyphs: Vec<HersheyGlyph>,
}

impl HersheyFont {
    /// Reads and parses a `.jhf` file. A missing file is [`DatasetError::MissingFont`]
    /// (naming `hershey-fonts-data`), a malformed one [`DatasetError::BadFont`].
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DatasetError::MissingFont {
                path: path.to_path_buf(),
                package: HERSHEY_PACKAGE.into(),
            },
            _ => DatasetError::io(path, e),
        })?;
        let glyphs = parse_jhf(&bytes).map_err(|message| DatasetError::BadFont {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            glyphs,
        })
    }

    /// `dir/<name>.jhf`.
    pub(crate) fn load_named(dir: &Path, name: &str) -> Result<Self> {
        Self::load(&dir.join(format!("{name}.jhf")))
    }

    /// The glyph of a printable ASCII character (Latin fonts: glyph `i` is `32 + i`).
    pub(crate) fn glyph(&self, c: char) -> Option<&HersheyGlyph> {
        let code = u32::from(c);
        if !(32..127).contains(&code) {
            return None;
        }
        self.glyphs.get((code - 32) as usize)
    }
}

/// Parses the text of a `.jhf` file into its glyphs, in file order. The error says which
/// line is wrong and how.
pub(super) fn parse_jhf(text: &[u8]) -> Result<Vec<HersheyGlyph>, String> {
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    let mut glyphs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i + 1;
        let line = lines[i];
        i += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() < 8 {
            return Err(format!("line {start}: too short for a glyph header"));
        }
        let count: usize = std::str::from_utf8(&line[5..8])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                format!(
                    "line {start}: vertex count {:?} is not a number",
                    &line[5..8]
                )
            })?;
        if count == 0 {
            return Err(format!("line {start}: a glyph needs at least its margins"));
        }
        let mut body = line[8..].to_vec();
        // Continuation lines: the glyph was wrapped.
        while body.len() < 2 * count {
            let Some(next) = lines.get(i) else {
                return Err(format!(
                    "line {start}: {count} pairs promised, the file ends after {}",
                    body.len() / 2
                ));
            };
            body.extend_from_slice(next);
            i += 1;
        }
        let pairs: Vec<[u8; 2]> = body[..2 * count]
            .chunks_exact(2)
            .map(|p| [p[0], p[1]])
            .collect();
        let coordinate = |b: u8| i32::from(b) - i32::from(b'R');
        let mut strokes = Vec::new();
        let mut current: Vec<(f32, f32)> = Vec::new();
        for pair in &pairs[1..] {
            if *pair == *b" R" {
                if !current.is_empty() {
                    strokes.push(std::mem::take(&mut current));
                }
            } else {
                current.push((coordinate(pair[0]) as f32, coordinate(pair[1]) as f32));
            }
        }
        if !current.is_empty() {
            strokes.push(current);
        }
        glyphs.push(HersheyGlyph {
            left: coordinate(pairs[0][0]),
            right: coordinate(pairs[0][1]),
            strokes,
        });
    }
    Ok(glyphs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_margins_pen_ups_and_wrapped_lines() {
        // 'A' of futural, then the same glyph wrapped after its 4th pair.
        let text = b"12345  9I[RFJ[ RRFZ[ RMTWT\n12345  9I[RFJ[ R\nRFZ[ RMTWT\n";
        let glyphs = parse_jhf(text).unwrap();
        assert_eq!(glyphs.len(), 2);
        assert_eq!(glyphs[0], glyphs[1]);
        let a = &glyphs[0];
        assert_eq!((a.left, a.right), (-9, 9));
        assert_eq!(
            a.strokes,
            vec![
                vec![(0.0, -12.0), (-8.0, 9.0)],
                vec![(0.0, -12.0), (8.0, 9.0)],
                vec![(-5.0, 2.0), (5.0, 2.0)],
            ]
        );
    }

    #[test]
    fn a_glyph_cut_short_is_an_error_naming_its_line() {
        let err = parse_jhf(b"\n12345  9I[RFJ[").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(parse_jhf(b"12345 xx").is_err());
    }
}
