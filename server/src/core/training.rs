//! The index's training images, by the ids that verdicts name as neighbours: loaded on
//! first use (most servers are never asked), served as PNG.

use std::sync::Arc;

use oodgate_datasets::Dataset;
use tokio::sync::OnceCell;

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TrainingError {
    #[error("the training images are unavailable: {0}")]
    Unavailable(String),
    #[error("training image {id}: ids go from 0 to {last}")]
    NoSuchId { id: usize, last: usize },
    #[error("PNG: {0}")]
    Encode(String),
}

/// One training image as PNG bytes, with its label.
pub(crate) struct TrainingImage {
    pub png: Vec<u8>,
    pub label: u8,
}

/// MNIST train (the index's training images, in order), loaded once when first asked.
#[derive(Clone, Default)]
pub(crate) struct TrainingImages {
    /// Not set while loading fails: the next request tries again.
    loaded: Arc<OnceCell<Dataset>>,
}

impl TrainingImages {
    pub(crate) async fn get(&self, id: usize) -> Result<TrainingImage, TrainingError> {
        let train = self
            .loaded
            .get_or_try_init(|| async {
                let loaded = tokio::task::spawn_blocking(|| {
                    oodgate_datasets::DataDir::from_env()?.mnist(oodgate_datasets::Split::Train)
                })
                .await;
                match loaded {
                    Ok(Ok(train)) => {
                        tracing::info!(count = train.len(), "training images loaded");
                        Ok(train)
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "training images unavailable");
                        Err(TrainingError::Unavailable(error.to_string()))
                    }
                    Err(_) => Err(TrainingError::Unavailable("loading them panicked".into())),
                }
            })
            .await?;
        if id >= train.len() {
            return Err(TrainingError::NoSuchId {
                id,
                last: train.len().saturating_sub(1),
            });
        }
        Ok(TrainingImage {
            png: encode_png(train, id)?,
            label: train.label(id),
        })
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
