//! oodgate: classify digits, reject what the model does not know.
//!
//! An ONNX model embeds each image ([`embed`], after [`preprocess`]); Local Outlier
//! Factor on that embedding (the `oodgate-lof` crate) decides Classify or Reject.

pub mod batcher;
pub mod config;
pub mod cpu;
pub mod detector;
pub mod embed;
pub mod eval;
pub mod grpc;
pub mod http;
pub mod linger;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod reload;
pub mod report;
pub mod runtime;
pub mod security;
pub mod serve;
