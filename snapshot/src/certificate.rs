//! TLS certificates and the secret strings they carry.

use crate::SourceRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A TLS certificate chain and its private key, both PEM.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// The Secret it came from.
    pub source: SourceRef,
    /// Certificate chain, PEM.
    pub certificate_chain_pem: String,
    /// Private key, PEM; never printed.
    pub private_key_pem: Sensitive,
}

/// A secret string: serialised as is (it travels to the dataplane), but never shown by `Debug`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct Sensitive(pub String);

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Sensitive {
    /// `<redacted sha256:…>`: names the value without revealing it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!("<redacted sha256:{}>", &hex::encode(digest)[..16])
    }
}
