//! The lab: offline tools around the oodgate server. Evaluation tables ([`eval`]),
//! the seed article's figures ([`report`]), the performance harness ([`bench`]) and the
//! embedding export for checks against scikit-learn ([`export`]).
//!
//! The lab uses the server crate's core (preprocessing, embedding, loading) and starts
//! the server binary to measure it; the server never depends on the lab.

pub mod bench;
pub mod eval;
pub mod export;
mod npy;
pub mod report;
