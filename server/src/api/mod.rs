//! The protocols: gRPC and HTTP adapters over the core's pipeline and views, and the
//! transport security both share.

pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod linger;
pub(crate) mod security;
