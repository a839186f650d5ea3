//! oodgate-replay: stream image sets through an oodgate server and summarise what it
//! accepted and rejected. The binary is a thin layer over this library, which the
//! end-to-end tests use too.

pub mod replay;
pub mod report;
pub mod sets;

pub use replay::{Answer, Replay, ReplayOptions, Threshold, replay, wait_until_serving};
pub use report::Summary;
pub use sets::ReplaySet;
