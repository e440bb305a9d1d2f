//! Tollhouse's one template grammar, shared by the controller (which refuses what AWS refuses,
//! with a condition) and the dataplane (which matches and renders): path templates, integration
//! URI templates, AWS access-log formats with their `$context.*` variables, authorizer
//! identity sources and HTTP API parameter mappings.

pub mod access_log;
pub mod identity;
pub mod mapping;
pub mod path;
pub mod policy;
pub mod uri;

pub use access_log::{AccessLogFormat, ContextValues, FormatError, Var};
pub use identity::{IdentitySource, IdentitySourceError};
pub use mapping::{Mapping, MappingError};
pub use path::{PathError, PathTemplate, Segment};
pub use uri::{BoundUri, Origin, UriError, UriForm, UriTemplate};
