//! A folder of images, one subfolder per class (`<dir>/<class>/<file>`).
//!
//! Classes are the subfolders sorted by name, so labels do not depend on the order the
//! file system lists them in; files are sorted by name within a class for the same
//! reason. Hidden entries (names starting with `.`, e.g. `.DS_Store`) are skipped; any
//! other file in a class folder is taken to be an image, so a stray non-image file is a
//! decode error rather than silently left out.
//!
//! Two ways in: [`list_image_folder`] only lists the files (a client can then send the
//! encoded bytes as they are), and [`load_image_folder`] decodes every image into a
//! [`Dataset`].

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader};
use rayon::prelude::*;

use crate::Dataset;
use crate::error::{DatasetError, Result};

/// One image file of a folder and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// Path of the image file.
    pub path: PathBuf,
    /// Index of its class in [`ImageFolder::class_names`].
    pub label: u8,
}

/// The listing of an image folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFolder {
    /// The folder that was listed.
    pub root: PathBuf,
    /// Class (subfolder) names, sorted; a label indexes this.
    pub class_names: Vec<String>,
    /// Every image, class by class, files sorted by name within a class.
    pub entries: Vec<FolderEntry>,
}

/// Lists the images of `dir` without decoding them.
///
/// Fails with [`DatasetError::Empty`] when there is no image at all.
pub fn list_image_folder(dir: &Path) -> Result<ImageFolder> {
    let mut classes: Vec<(String, PathBuf)> = visible_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .map(|p| (file_name(&p), p))
        .collect();
    classes.sort();
    if classes.len() > usize::from(u8::MAX) + 1 {
        return Err(DatasetError::TooManyClasses {
            path: dir.to_path_buf(),
            count: classes.len(),
        });
    }

    let mut entries = Vec::new();
    for (label, (_, class_dir)) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = visible_entries(class_dir)?
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        entries.extend(files.into_iter().map(|path| FolderEntry {
            path,
            // Cannot truncate: the class count was checked against u8 above.
            label: label as u8,
        }));
    }
    if entries.is_empty() {
        return Err(DatasetError::Empty {
            path: dir.to_path_buf(),
        });
    }
    Ok(ImageFolder {
        root: dir.to_path_buf(),
        class_names: classes.into_iter().map(|(name, _)| name).collect(),
        entries,
    })
}

/// Lists and decodes the images of `dir` into a [`Dataset`] named after the folder.
pub fn load_image_folder(dir: &Path) -> Result<Dataset> {
    let folder = list_image_folder(dir)?;
    decode_image_folder(&file_name(dir), &folder)
}

/// Decodes every image of a listed folder into a [`Dataset`] named `name`.
///
/// All images must share one width and height. If every image is grayscale the dataset
/// has 1 channel; otherwise every image is converted to RGB (3 channels). Alpha is
/// dropped.
pub(crate) fn decode_image_folder(name: &str, folder: &ImageFolder) -> Result<Dataset> {
    // Decode in parallel, but collect every result first so that the error reported is
    // the one of the first bad file in sorted order, the same on every run.
    let decoded: Vec<Result<DynamicImage>> = folder
        .entries
        .par_iter()
        .map(|entry| decode(&entry.path))
        .collect();
    let images = decoded.into_iter().collect::<Result<Vec<_>>>()?;

    let (Some(first_image), Some(first_entry)) = (images.first(), folder.entries.first()) else {
        return Err(DatasetError::Empty {
            path: folder.root.clone(),
        });
    };
    let (width, height) = (first_image.width(), first_image.height());
    for (image, entry) in images.iter().zip(&folder.entries) {
        if (image.width(), image.height()) != (width, height) {
            return Err(DatasetError::MixedSizes {
                path: entry.path.clone(),
                width: image.width(),
                height: image.height(),
                first: first_entry.path.clone(),
                first_width: width,
                first_height: height,
            });
        }
    }

    let grayscale = images.iter().all(|image| !image.color().has_color());
    let channels: u8 = if grayscale { 1 } else { 3 };
    let mut pixels =
        Vec::with_capacity(images.len() * width as usize * height as usize * channels as usize);
    for image in &images {
        if grayscale {
            pixels.extend_from_slice(image.to_luma8().as_raw());
        } else {
            pixels.extend_from_slice(image.to_rgb8().as_raw());
        }
    }
    Ok(Dataset {
        name: name.to_string(),
        class_names: folder.class_names.clone(),
        width,
        height,
        channels,
        pixels,
        labels: folder.entries.iter().map(|e| e.label).collect(),
    })
}

/// Decodes one image, guessing its format from its content rather than its extension.
fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| DatasetError::io(path, e))?;
    reader.decode().map_err(|source| DatasetError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Paths of the entries of `dir` whose names do not start with a dot.
fn visible_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_dir = std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in read_dir {
        let entry = entry.map_err(|e| DatasetError::io(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    Ok(paths)
}

/// Last component of a path as a string (lossy for non-UTF-8 names).
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
