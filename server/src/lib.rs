//! The oodgate server: classify images, reject what the model does not know.
//!
//! Three layers, each importing only the ones below it:
//! - [`core`] (no tonic, no axum): preprocess, embed, detector, batcher, pipeline, and
//!   the protocol-neutral views of a verdict and of a model;
//! - [`api`]: the gRPC and HTTP adapters, thin copies from the core's views, and security;
//! - [`app`]: configuration, loading, hot reload and [`app::serve::run`].
//!
//! [`metrics`] is a leaf every layer reports to; it imports nothing from this crate.

pub mod api;
pub mod app;
pub mod core;
pub mod metrics;
