//! The oodgate server: classify images, reject what the model does not know.
//!
//! Three layers, each importing only the ones below it:
//! - `core` (no tonic, no axum): preprocess, embed, detector, batcher, pipeline, and
//!   the protocol-neutral views of a verdict and of a model;
//! - `api`: the gRPC and HTTP adapters, thin copies from the core's views, and security;
//! - `app`: configuration, loading, hot reload and [`serve::run`].
//!
//! [`metrics`] is a leaf every layer reports to; it imports nothing from this crate.
//!
//! The layers are private; what the `oodgate` command, the lab, the tests and the fuzz
//! targets use is re-exported here, so everything else is `pub(crate)` and the compiler
//! reports what nothing uses.

mod api;
mod app;
mod core;
pub mod metrics;

pub use self::api::grpc::detect_input;
pub use self::app::config::{self, Config};
pub use self::app::load;
pub use self::app::serve::{self, Listeners, Signal};
pub use self::app::unix_socket::{SocketFile, UnixSocket};
pub use self::core::detector::{Detector, ThresholdSpec, argmax};
pub use self::core::embed::{Embedder, ModelIo, SessionOptions, embed_dataset};
pub use self::core::gate;
pub use self::core::model::{ModelFiles, ModelVariant, model_dirs};
pub use self::core::pipeline::{ClientImage, ImageData, SourceLabels, decode, validate};
pub use self::core::preprocess::{self, InputSpec, Layout, Limits, prepare_dataset};
pub use self::core::runtime;
