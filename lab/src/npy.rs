//! `.npy` files for the Python side of the lab (scikit-learn and Keras checks).

use std::path::Path;

use anyhow::Context;
use ndarray_npy::WriteNpyExt;

/// Writes `array` to `path` as `.npy`, naming the file in any error.
pub(crate) fn write_npy<A: WriteNpyExt>(path: &Path, array: &A) -> anyhow::Result<()> {
    let file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    array
        .write_npy(file)
        .with_context(|| format!("writing {}", path.display()))
}
