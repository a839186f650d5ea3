//! The application: configuration, loading a model from it, hot reload, and the
//! service's run loop.

pub mod config;
pub mod load;
pub(crate) mod reload;
pub mod serve;
pub(crate) mod unix_socket;
