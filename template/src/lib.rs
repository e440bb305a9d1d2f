//! Tollhouse's one template grammar, shared by the controller (which refuses what AWS refuses,
//! with a condition) and the dataplane (which matches and renders): path templates, integration
//! URI templates, AWS access-log formats with their `$context.*` variables and authorizer
//! identity sources; mapping templates are to join them.

pub mod access_log;
pub mod identity;
pub mod path;
pub mod uri;

pub use access_log::{AccessLogFormat, ContextValues, FormatError, Var};
pub use identity::{IdentitySource, IdentitySourceError};
pub use path::{PathError, PathTemplate, Segment};
pub use uri::{BoundUri, Origin, UriError, UriForm, UriTemplate};
