//! A gate's reference images, by the ids that verdicts name as neighbours: where they
//! come from is what the index recorded (its provenance). A folder's images are served
//! as the files they are (any size and colour); images of IDX files, CIFAR-10 batches
//! and known datasets are loaded on first use (most servers are never asked), kept,
//! and served as PNG.

use std::path::Path;
use std::sync::{Arc, Mutex};

use oodgate_datasets::Dataset;

use crate::core::detector::Detector;
use crate::core::reference::SetRecord;

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TrainingError {
    #[error("the training images are unavailable: {0}")]
    Unavailable(String),
    #[error("training image {id}: ids go from 0 to {last}")]
    NoSuchId { id: usize, last: usize },
    #[error("PNG: {0}")]
    Encode(String),
}

/// One reference image: its bytes as served, with its label and origin.
pub(crate) struct TrainingImage {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub label: u8,
    /// A folder image's relative path, or `file#index`.
    pub source: Option<String>,
}

/// The in-memory set last loaded, by the fingerprint of what it was read from (a
/// reload to another reference set loads that one instead).
#[derive(Clone, Default)]
pub(crate) struct TrainingImages {
    loaded: Arc<Mutex<Option<Keyed>>>,
}

/// A loaded set and the fingerprint it was loaded for.
type Keyed = (String, Arc<Dataset>);

impl TrainingImages {
    /// Reference image `id` of the index `detector` serves.
    pub(crate) async fn get(
        &self,
        detector: &Detector,
        id: usize,
    ) -> Result<TrainingImage, TrainingError> {
        let count = detector.index.len();
        if id >= count {
            return Err(TrainingError::NoSuchId {
                id,
                last: count.saturating_sub(1),
            });
        }
        let label = detector.index.labels()[id];
        // An index built before provenance was recorded is a digits model's: MNIST train.
        let record = detector.provenance.as_ref().map(|p| p.reference.clone());
        let source = record.as_ref().and_then(|r| r.item(id));
        if let Some(record) = record.as_ref().filter(|r| r.kind == "folder") {
            let relative = source.clone().unwrap_or_default();
            let path = Path::new(&record.location).join(&relative);
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| TrainingError::Unavailable(format!("{}: {e}", path.display())))?;
            let content_type = match image::guess_format(&bytes) {
                Ok(image::ImageFormat::Jpeg) => "image/jpeg",
                _ => "image/png",
            };
            return Ok(TrainingImage {
                bytes,
                content_type,
                label,
                source,
            });
        }
        let set = self.load(record).await?;
        // The set's image i is the index's item i: both were read in the same order.
        if id >= set.len() {
            return Err(TrainingError::Unavailable(format!(
                "the reference set now holds {} images, the index {count}",
                set.len()
            )));
        }
        Ok(TrainingImage {
            bytes: encode_png(&set, id)?,
            content_type: "image/png",
            label,
            source,
        })
    }

    async fn load(&self, record: Option<SetRecord>) -> Result<Arc<Dataset>, TrainingError> {
        let key = record
            .as_ref()
            .map_or_else(|| "mnist/train".to_owned(), |r| r.fingerprint.clone());
        if let Some((loaded_key, set)) = &*self.loaded.lock().unwrap_or_else(|p| p.into_inner())
            && *loaded_key == key
        {
            return Ok(set.clone());
        }
        let loaded = tokio::task::spawn_blocking(move || read_set(record.as_ref()))
            .await
            .map_err(|_| TrainingError::Unavailable("loading them panicked".into()))?;
        let set = match loaded {
            Ok(set) => Arc::new(set),
            Err(message) => {
                tracing::warn!(error = %message, "reference images unavailable");
                return Err(TrainingError::Unavailable(message));
            }
        };
        tracing::info!(count = set.len(), "reference images loaded");
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, set.clone()));
        Ok(set)
    }
}

/// The images of a set that lives in memory (not a folder), as the index read them.
fn read_set(record: Option<&SetRecord>) -> Result<Dataset, String> {
    use oodgate_datasets::{DataDir, DatasetId, Split};
    let text = |e: oodgate_datasets::DatasetError| e.to_string();
    let Some(record) = record else {
        return DataDir::from_env()
            .and_then(|d| d.mnist(Split::Train))
            .map_err(text);
    };
    match record.kind.as_str() {
        "dataset" => {
            let (name, split) = record
                .location
                .split_once('/')
                .unwrap_or((&record.location, "train"));
            let id: DatasetId = crate::core::gate::dataset_id(name)
                .ok_or_else(|| format!("unknown dataset {name:?}"))?;
            let split = if split == "test" {
                Split::Test
            } else {
                Split::Train
            };
            DataDir::from_env()
                .and_then(|d| d.load(id, split))
                .map_err(text)
        }
        "idx" => {
            let path = Path::new(&record.location);
            let images = oodgate_datasets::read_idx_images(path).map_err(text)?;
            Ok(Dataset {
                name: record.location.clone(),
                class_names: Vec::new(),
                width: images.cols,
                height: images.rows,
                channels: 1,
                labels: vec![0; images.count],
                pixels: images.pixels,
            })
        }
        "cifar10" => {
            let mut all: Option<Dataset> = None;
            for path in record.location.split(',') {
                let batch =
                    oodgate_datasets::read_cifar10_batch(path, Path::new(path)).map_err(text)?;
                all = Some(match all {
                    None => batch,
                    Some(mut all) => {
                        all.pixels.extend_from_slice(&batch.pixels);
                        all.labels.extend_from_slice(&batch.labels);
                        all
                    }
                });
            }
            all.ok_or_else(|| "no CIFAR-10 file recorded".into())
        }
        "npy" => Err(format!(
            "the index was built from embeddings ({}), not images",
            record.location
        )),
        other => Err(format!("unknown reference kind {other:?}")),
    }
}

fn encode_png(data: &Dataset, i: usize) -> Result<Vec<u8>, TrainingError> {
    let color = match data.channels {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        _ => image::ExtendedColorType::Rgba8,
    };
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        data.image(i),
        data.width,
        data.height,
        color,
    )
    .map_err(|e| TrainingError::Encode(e.to_string()))?;
    Ok(png)
}
