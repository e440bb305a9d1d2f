//! Support for the end-to-end tests and the demo binaries.

pub mod certs;
