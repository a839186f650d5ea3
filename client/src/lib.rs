//! oodgate-replay library.
