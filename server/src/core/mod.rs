//! The serving core: an image becomes a verdict. Knows nothing of gRPC or HTTP.

pub(crate) mod batcher;
pub(crate) mod detector;
pub(crate) mod embed;
pub mod gate;
pub(crate) mod model;
pub(crate) mod pipeline;
pub mod preprocess;
pub(crate) mod reference;
pub mod runtime;
pub(crate) mod training;
pub(crate) mod view;
pub(crate) mod worker;
