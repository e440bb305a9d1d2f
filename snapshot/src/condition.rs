//! The vocabulary of status conditions: their types, statuses and reasons, typed.
//!
//! Shared by the controller (which writes conditions), `tollhouse-api` (whose status types
//! carry them) and the dataplane (whose report of what it left out names a reason), so a reason
//! is spelled in one place and tools can match on it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Defines a string-valued enum with `ALL`, `as_str` and `from_name` from one list, so the
/// spelling on the wire and the list of values cannot drift apart.
macro_rules! named {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name as written in status.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }

            /// The value with this name, if there is one.
            pub fn from_name(name: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named! {
    /// The condition types, in the order they appear in status.
    ConditionType {
        /// The object itself is valid and wins every conflict.
        Accepted,
        /// Everything it references exists and fits.
        ResolvedRefs,
        /// Every connected dataplane serves its current generation (written by the Kubernetes
        /// status writer only).
        Programmed,
        /// It serves traffic as its spec says: the first blocking reason of the others.
        Ready,
    }
}

named! {
    /// A condition's status.
    ConditionStatus {
        /// The condition holds.
        True,
        /// It does not; the reason says why.
        False,
        /// Not known yet.
        Unknown,
    }
}

named! {
    /// Why a condition has its status: a fixed list, so tools can match on it.
    Reason {
        /// Accepted=True.
        Accepted,
        /// ResolvedRefs=True.
        ResolvedRefs,
        /// Programmed=True.
        Programmed,
        /// Ready=True.
        Ready,
        /// A Stage without `api`.
        InvalidApi,
        /// A bad Stage `basePath`.
        InvalidBasePath,
        /// A bad Stage host name.
        InvalidHostname,
        /// A stage variable breaks the AWS limits.
        InvalidStageVariable,
        /// A `throttle` whose `rateLimit` is negative or not a number.
        InvalidThrottle,
        /// An access-log format AWS would refuse. The Stage is left out, as for any other
        /// invalid Stage field: AWS refuses the update and keeps the old config, which
        /// translate does not have, and serving without the log would hide the mistake.
        InvalidAccessLogFormat,
        /// A resource policy statement AWS would refuse: an address that is not a CIDR block
        /// or a route pattern that is not `METHOD /path`. The Stage is left out: serving it
        /// without its policy would open it.
        InvalidResourcePolicy,
        /// The certificate Secret does not exist.
        CertificateNotFound,
        /// The certificate Secret lacks `tls.crt` / `tls.key`, or they do not parse as a
        /// certificate chain and a private key that belong together.
        InvalidCertificate,
        /// An older object claims the same thing, or an older Stage of the API has another
        /// apiType.
        Conflict,
        /// A bad ApiRoute path.
        InvalidPath,
        /// Bad ApiRoute methods.
        InvalidMethod,
        /// A bad ApiRoute integration, or an integration URI that a serving Stage's variables
        /// make unusable.
        InvalidIntegration,
        /// The route uses a stage variable a serving stage lacks. The route is still served
        /// there (its calls fail with 500, as AWS's), so Ready is False while Programmed may
        /// be True.
        UndefinedStageVariable,
        /// No Stage deploys the route's API.
        NotServed,
        /// A UsagePlan names a Stage twice, or has a quota offset not below its limit, or an
        /// `apiKeySelector` that is not a valid label selector.
        InvalidUsagePlan,
        /// A UsagePlan names a Stage that does not exist or is not served.
        StageNotFound,
        /// A UsagePlan's per-route throttle names a route key its Stage does not serve.
        RouteNotFound,
        /// An api-key Secret a UsagePlan selects has a malformed key value, a value another
        /// Secret already has, or a bad `tollhouse.dev/enabled` annotation: it is left out.
        InvalidApiKey,
        /// An Authorizer whose spec cannot be run: a type without its settings, an issuer or
        /// JWKS URL that is not an `http(s)` URL, an identity source that is not one, a function
        /// or SigV4 setting out of range.
        InvalidAuthorizer,
        /// An ApiRoute's `authorizerRef` names no Authorizer in its namespace, or one that is
        /// not accepted: the route is left out (serving it unprotected would open it).
        AuthorizerNotFound,
        /// The `backendRef` Service does not exist.
        BackendNotFound,
        /// The `backendRef` port is not a port of the Service.
        InvalidBackendPort,
        /// The Service has no ready endpoints: requests get 503.
        NoReadyEndpoints,
        /// Programmed=False: the object is not part of the served snapshot.
        NotProgrammed,
        /// Programmed=False: no dataplane is connected.
        NoDataplanes,
        /// Programmed=False: some connected dataplane still serves an older snapshot.
        Pending,
        /// Ready=False before anything is known.
        Unknown,
    }
}

impl ConditionType {
    /// The reason this condition has when it holds.
    pub fn ok_reason(self) -> Reason {
        match self {
            ConditionType::Accepted => Reason::Accepted,
            ConditionType::ResolvedRefs => Reason::ResolvedRefs,
            ConditionType::Programmed => Reason::Programmed,
            ConditionType::Ready => Reason::Ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serialise_as_written() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_name(r.as_str()), Some(*r));
            assert_eq!(
                serde_json::to_string(r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(Reason::from_name("SomethingElse"), None);
        assert_eq!(ConditionType::ResolvedRefs.as_str(), "ResolvedRefs");
        assert_eq!(ConditionStatus::False.as_str(), "False");
    }
}
