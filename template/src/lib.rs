//! Tollhouse's template grammar, shared by the controller (which refuses what AWS refuses,
//! with a condition) and the dataplane (which renders): AWS access-log formats with their
//! `$context.*` variables today; path templates, URI templates, identity sources and mapping
//! templates are to move here.

pub mod access_log;

pub use access_log::{AccessLogFormat, ContextValues, FormatError, Var};
