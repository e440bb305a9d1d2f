//! Where an entity came from: the object it was translated from.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The object an entity was translated from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRef {
    /// Kind of the object, e.g. `ApiRoute`.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// `metadata.generation` the entity was built from.
    pub generation: i64,
}

impl SourceRef {
    /// `namespace/name`, the form used in metric labels and logs.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}
