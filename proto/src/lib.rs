//! The `oodgate.v1` API: messages, the `Detector` client and server, and the
//! encoded descriptor set that server reflection serves.

#![allow(clippy::doc_lazy_continuation)]

pub mod v1 {
    tonic::include_proto!("oodgate.v1");
}

/// `FileDescriptorSet` of the API, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/oodgate_descriptor.bin"));
