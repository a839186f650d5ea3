//! The serving core: an image becomes a verdict. Knows nothing of gRPC or HTTP.

pub mod batcher;
pub mod detector;
pub mod embed;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod runtime;
pub mod training;
pub mod view;
pub mod worker;
