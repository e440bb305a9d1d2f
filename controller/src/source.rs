//! Where objects come from. Today a directory of manifests; the Kubernetes API comes later and
//! feeds the same index, translate and server.

pub mod directory;
