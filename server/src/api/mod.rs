//! The protocols: gRPC and HTTP adapters over the core's pipeline and views, and the
//! transport security both share.

pub mod grpc;
pub mod http;
pub mod linger;
pub mod security;
