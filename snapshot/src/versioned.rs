//! A snapshot as delivered: schema, version and content hash around the content.

use crate::{Snapshot, MIN_SCHEMA_VERSION, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A snapshot as delivered: schema, version and content hash around the content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Versioned {
    /// [`SCHEMA_VERSION`] of the sender.
    pub schema: u32,
    /// Monotonic version assigned by the controller when the content changed.
    pub version: u64,
    /// [`Snapshot::content_hash`] of `snapshot`.
    pub hash: String,
    /// The content.
    pub snapshot: Snapshot,
}

/// Why a delivered snapshot was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum IntegrityError {
    /// Sent with another schema version.
    Schema { got: u32 },
    /// The hash does not match the content.
    Hash { claimed: String, actual: String },
}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntegrityError::Schema { got } => {
                write!(
                    f,
                    "snapshot schema {got} is not the supported {SCHEMA_VERSION}"
                )
            }
            IntegrityError::Hash { claimed, actual } => {
                write!(
                    f,
                    "snapshot hash {claimed} does not match its content ({actual})"
                )
            }
        }
    }
}

impl std::error::Error for IntegrityError {}

impl Versioned {
    /// Wraps content with its hash.
    pub fn new(version: u64, snapshot: Snapshot) -> Self {
        Versioned {
            schema: SCHEMA_VERSION,
            version,
            hash: snapshot.content_hash(),
            snapshot,
        }
    }

    /// The wire form of a snapshot already encoded by [`Snapshot::encoded`]: byte for byte what
    /// serialising the `Versioned` gives, without serialising the content again.
    pub fn wire(version: u64, hash: &str, snapshot_json: &[u8]) -> Vec<u8> {
        let head = format!(
            r#"{{"schema":{SCHEMA_VERSION},"version":{version},"hash":"{hash}","snapshot":"#
        );
        let mut body = Vec::with_capacity(head.len() + snapshot_json.len() + 1);
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(snapshot_json);
        body.push(b'}');
        body
    }

    /// Checks schema and hash, as a receiver must before applying.
    pub fn verify(&self) -> Result<(), IntegrityError> {
        if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&self.schema) {
            return Err(IntegrityError::Schema { got: self.schema });
        }
        let actual = self.snapshot.content_hash();
        if actual != self.hash {
            return Err(IntegrityError::Hash {
                claimed: self.hash.clone(),
                actual,
            });
        }
        Ok(())
    }
}
