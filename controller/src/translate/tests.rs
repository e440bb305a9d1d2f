//! Unit tests of translate; the goldens under `testdata/translate/` test it end to end.

use super::route::check as check_route;
use super::stage::{check as check_stage, normalise_base_path};
use super::*;
use crate::model::{Input, Meta, Resource};
use std::collections::BTreeMap;
use tollhouse_api::{
    ApiRouteSpec, IntegrationSpec, IntegrationType, LocalObjectRef, Method, MockSpec, StageSpec,
    StageTls,
};
use tollhouse_snapshot::{ConditionStatus, ConditionType};

fn meta(name: &str, seen: u64) -> Meta {
    Meta {
        namespace: "default".into(),
        name: name.into(),
        generation: 1,
        created: None,
        seen,
    }
}

fn stage(name: &str, seen: u64, base_path: &str) -> Resource<StageSpec> {
    Resource {
        meta: meta(name, seen),
        spec: StageSpec {
            api: "pets".into(),
            hostnames: vec![],
            base_path: Some(base_path.into()),
            variables: BTreeMap::new(),
            tls: None,
            api_type: None,
            access_log: None,
            throttle: None,
            api_key_source: None,
            resource_policy: None,
        },
    }
}

fn proxy(
    name: &str,
    seen: u64,
    path: &str,
    methods: Vec<Method>,
    uri: &str,
) -> Resource<ApiRouteSpec> {
    Resource {
        meta: meta(name, seen),
        spec: ApiRouteSpec {
            api: "pets".into(),
            path: path.into(),
            methods,
            integration: IntegrationSpec {
                kind: IntegrationType::HttpProxy,
                uri: Some(uri.into()),
                backend_ref: None,
                timeout_in_millis: None,
                http2: None,
                request_parameters: Default::default(),
                mock: None,
            },
            throttle: None,
            api_key_required: false,
            authorization: None,
        },
    }
}

fn condition_of(out: &Output, kind: Kind, name: &str, which: ConditionType) -> Condition {
    let status = &out.statuses[&ObjectKey::new(kind, "default", name)];
    status
        .conditions
        .iter()
        .find(|c| c.kind == which)
        .cloned()
        .unwrap()
}

fn reason_of(out: &Output, kind: Kind, name: &str) -> Reason {
    condition_of(out, kind, name, ConditionType::Ready).reason
}

#[test]
fn base_paths_are_normalised_or_refused() {
    assert_eq!(normalise_base_path("/").unwrap(), "/");
    assert_eq!(normalise_base_path("/prod/").unwrap(), "/prod");
    assert_eq!(normalise_base_path("/a/b").unwrap(), "/a/b");
    for bad in ["", "prod", "/a//b", "/a/../b", "/{x}", "//"] {
        assert_eq!(
            normalise_base_path(bad).unwrap_err().reason,
            Reason::InvalidBasePath,
            "{bad}"
        );
    }
}

#[test]
fn hostnames_and_variables_follow_the_rules() {
    let mut s = stage("s", 0, "/");
    s.spec.hostnames = vec!["API.Example.com".into(), "api.example.com".into()];
    assert_eq!(
        check_stage(&s.spec).map(|ok| ok.hostnames).unwrap(),
        vec!["api.example.com"]
    );
    for bad in ["*.example.com", "example.com:443", "-a.com", "a..com", ""] {
        s.spec.hostnames = vec![bad.into()];
        assert_eq!(
            check_stage(&s.spec).err().unwrap().reason,
            Reason::InvalidHostname,
            "{bad}"
        );
    }
    s.spec.hostnames = vec![];
    s.spec.variables = [("ok_1".to_string(), "http://a:80/b?c=d&e,f#g~".to_string())].into();
    assert!(check_stage(&s.spec).is_ok());
    for (name, value) in [
        ("a-b", "x"),
        ("a", "sp ace"),
        ("a", ""),
        (&*"n".repeat(65), "x"),
    ] {
        s.spec.variables = [(name.to_string(), value.to_string())].into();
        assert_eq!(
            check_stage(&s.spec).err().unwrap().reason,
            Reason::InvalidStageVariable
        );
    }
    s.spec.variables = (0..101)
        .map(|i| (format!("v{i}"), "x".to_string()))
        .collect();
    assert_eq!(
        check_stage(&s.spec).err().unwrap().reason,
        Reason::InvalidStageVariable
    );
    s.spec.variables = [("v".to_string(), "x".repeat(513))].into();
    assert_eq!(
        check_stage(&s.spec).err().unwrap().reason,
        Reason::InvalidStageVariable
    );
}

#[test]
fn oldest_stage_wins_a_host_and_base_path() {
    let input = Input {
        stages: vec![
            stage("young", 2, "/v1/"),
            stage("old", 1, "/v1"),
            stage("other", 3, "/v2"),
        ],
        ..Input::default()
    };
    let out = translate(&input);
    assert_eq!(reason_of(&out, Kind::Stage, "young"), Reason::Conflict);
    assert!(
        condition_of(&out, Kind::Stage, "young", ConditionType::Accepted)
            .message
            .contains("default/old")
    );
    let names: Vec<_> = out
        .snapshot
        .stages
        .iter()
        .map(|s| s.source.name.as_str())
        .collect();
    assert_eq!(names, vec!["old", "other"]);
}

#[test]
fn creation_timestamps_beat_first_seen_order() {
    let mut young = stage("a", 1, "/");
    let mut old = stage("b", 2, "/");
    old.meta.created = Some(serde_json::from_str("\"2020-01-01T00:00:00Z\"").unwrap());
    young.meta.created = Some(serde_json::from_str("\"2021-01-01T00:00:00Z\"").unwrap());
    let out = translate(&Input {
        stages: vec![young, old],
        ..Input::default()
    });
    assert_eq!(reason_of(&out, Kind::Stage, "a"), Reason::Conflict);
    assert_eq!(reason_of(&out, Kind::Stage, "b"), Reason::Ready);
}

#[test]
fn routes_conflict_on_shape_and_overlapping_methods() {
    let input = Input {
        stages: vec![stage("prod", 0, "/")],
        routes: vec![
            proxy("get", 1, "/pets/{a}", vec![Method::Get], "http://b/{a}"),
            proxy("post", 2, "/pets/{b}", vec![Method::Post], "http://b/{b}"),
            proxy("any", 3, "/pets/{c}/", vec![], "http://b"),
            proxy("greedy", 4, "/pets/{c+}", vec![Method::Get], "http://b/{c}"),
            proxy("literal", 5, "/pets/x", vec![Method::Get], "http://b"),
            proxy("any-again", 6, "/pets/{d}", vec![Method::Any], "http://b"),
            proxy(
                "get-again",
                7,
                "/pets/{e}",
                vec![Method::Get, Method::Put],
                "http://b",
            ),
        ],
        ..Input::default()
    };
    let out = translate(&input);
    // ANY beside explicit methods on one path is AWS's "methods not otherwise defined".
    for ok in ["get", "post", "any", "greedy", "literal"] {
        assert_eq!(reason_of(&out, Kind::ApiRoute, ok), Reason::Ready, "{ok}");
    }
    assert_eq!(
        reason_of(&out, Kind::ApiRoute, "any-again"),
        Reason::Conflict
    );
    assert!(
        condition_of(&out, Kind::ApiRoute, "any-again", ConditionType::Accepted)
            .message
            .contains("default/any")
    );
    assert_eq!(
        reason_of(&out, Kind::ApiRoute, "get-again"),
        Reason::Conflict
    );
    assert!(
        condition_of(&out, Kind::ApiRoute, "get-again", ConditionType::Accepted)
            .message
            .contains("default/get")
    );
    assert_eq!(out.snapshot.route_count(), 5);
}

#[test]
fn methods_default_to_any_and_any_stands_alone() {
    let mut r = proxy(
        "r",
        0,
        "/",
        vec![Method::Post, Method::Get, Method::Get],
        "http://b",
    );
    assert_eq!(
        check_route(&r.spec).map(|ok| ok.methods).unwrap(),
        vec!["GET", "POST"]
    );
    r.spec.methods = vec![];
    assert_eq!(
        check_route(&r.spec).map(|ok| ok.methods).unwrap(),
        vec!["ANY"]
    );
    r.spec.methods = vec![Method::Any, Method::Get];
    assert_eq!(
        check_route(&r.spec).err().unwrap().reason,
        Reason::InvalidMethod
    );
}

#[test]
fn integrations_are_checked() {
    let mut r = proxy("r", 0, "/{id}", vec![], "ftp://b");
    assert_eq!(
        check_route(&r.spec).err().unwrap().reason,
        Reason::InvalidIntegration
    );
    r.spec.integration.uri = Some("https://b/{id}".into());
    r.spec.integration.timeout_in_millis = Some(49);
    assert_eq!(
        check_route(&r.spec).err().unwrap().reason,
        Reason::InvalidIntegration
    );
    r.spec.integration.timeout_in_millis = None;
    match check_route(&r.spec).unwrap().integration {
        Integration::HttpProxy(p) => assert_eq!((p.timeout_ms, p.http2), (29_000, false)),
        other => panic!("{other:?}"),
    }
    r.spec.integration = IntegrationSpec {
        kind: IntegrationType::Mock,
        uri: None,
        backend_ref: None,
        timeout_in_millis: None,
        http2: None,
        request_parameters: Default::default(),
        mock: None,
    };
    match check_route(&r.spec).unwrap().integration {
        Integration::Mock(m) => assert_eq!(m.status_code, 200),
        other => panic!("{other:?}"),
    }
    r.spec.integration.mock = Some(MockSpec {
        status_code: Some(600),
        headers: BTreeMap::new(),
        body: None,
    });
    assert_eq!(
        check_route(&r.spec).err().unwrap().reason,
        Reason::InvalidIntegration
    );
}

/// reference §3a R7: the route is served by the Stage that lacks the variable (its calls
/// fail there with 500), and ResolvedRefs (and so Ready) says which Stage lacks what.
#[test]
fn undefined_stage_variables_keep_the_route_served_and_say_why() {
    let mut with = stage("with", 0, "/with");
    with.spec.variables = [("host".to_string(), "backend".to_string())].into();
    let input = Input {
        stages: vec![with, stage("without", 1, "/without")],
        routes: vec![proxy("r", 2, "/", vec![], "http://${stageVariables.host}/")],
        ..Input::default()
    };
    let out = translate(&input);
    let refs = condition_of(&out, Kind::ApiRoute, "r", ConditionType::ResolvedRefs);
    assert_eq!(refs.reason, Reason::UndefinedStageVariable);
    assert!(refs.message.contains("default/without") && refs.message.contains("host"));
    assert_eq!(
        reason_of(&out, Kind::ApiRoute, "r"),
        Reason::UndefinedStageVariable
    );
    let counts: Vec<_> = out.snapshot.stages.iter().map(|s| s.routes.len()).collect();
    assert_eq!(counts, vec![1, 1]);
}

#[test]
fn every_stage_of_an_api_takes_the_oldest_stages_api_type() {
    let mut old = stage("old", 1, "/old");
    old.spec.api_type = Some(tollhouse_api::ApiType::Rest);
    let young = stage("young", 2, "/young");
    let mut also_rest = stage("also-rest", 3, "/also");
    also_rest.spec.api_type = Some(tollhouse_api::ApiType::Rest);
    let mut other_api = stage("other-api", 4, "/other");
    other_api.spec.api = "orders".into();
    let out = translate(&Input {
        stages: vec![young, old, also_rest, other_api],
        ..Input::default()
    });
    let accepted = condition_of(&out, Kind::Stage, "young", ConditionType::Accepted);
    assert_eq!(accepted.reason, Reason::Conflict);
    assert!(
        accepted.message.contains("default/old")
            && accepted.message.contains("HTTP")
            && accepted.message.contains("REST"),
        "{}",
        accepted.message
    );
    let served: Vec<_> = out
        .snapshot
        .stages
        .iter()
        .map(|s| (s.source.name.as_str(), s.api_type))
        .collect();
    use tollhouse_snapshot::ApiType::{Http, Rest};
    assert_eq!(
        served,
        vec![("also-rest", Rest), ("old", Rest), ("other-api", Http)]
    );
}

/// A format AWS refuses leaves the Stage out, like any other invalid Stage field; the
/// message names the variable, never the rest of the format.
#[test]
fn access_log_formats_are_checked_and_carried() {
    let mut good = stage("good", 1, "/good");
    good.spec.access_log = Some(tollhouse_api::AccessLog {
        format: tollhouse_template::access_log::examples::CLF.into(),
    });
    let mut bad = stage("bad", 2, "/bad");
    bad.spec.access_log = Some(tollhouse_api::AccessLog {
        format: "password=hunter2 $context.requestId $context.nope".into(),
    });
    let out = translate(&Input {
        stages: vec![good, bad],
        ..Input::default()
    });
    let accepted = condition_of(&out, Kind::Stage, "bad", ConditionType::Accepted);
    assert_eq!(accepted.reason, Reason::InvalidAccessLogFormat);
    assert!(accepted.message.contains("$context.nope") && !accepted.message.contains("hunter2"));
    assert_eq!(out.snapshot.stages.len(), 1);
    assert_eq!(
        out.snapshot.stages[0]
            .access_log
            .as_ref()
            .map(|a| a.format.as_str()),
        Some(tollhouse_template::access_log::examples::CLF)
    );
}

#[test]
fn routes_without_a_stage_are_not_served() {
    let out = translate(&Input {
        routes: vec![proxy("r", 0, "/", vec![], "http://b")],
        ..Input::default()
    });
    assert_eq!(reason_of(&out, Kind::ApiRoute, "r"), Reason::NotServed);
    assert_eq!(
        condition_of(&out, Kind::ApiRoute, "r", ConditionType::Accepted).status,
        ConditionStatus::True
    );
}

#[test]
fn certificates_come_from_pem_secrets_in_the_namespace() {
    let mut s = stage("tls", 0, "/");
    s.spec.tls = Some(StageTls {
        certificate_ref: LocalObjectRef {
            name: "cert".into(),
        },
    });
    let missing = translate(&Input {
        stages: vec![s.clone()],
        ..Input::default()
    });
    assert_eq!(
        reason_of(&missing, Kind::Stage, "tls"),
        Reason::CertificateNotFound
    );
    assert!(missing.snapshot.stages.is_empty());
    let ca = tollhouse_pemfile::testing::Authority::new();
    let leaf = ca.server();
    let other = ca.server();
    let secret = |crt: &str, key: &str| Resource {
        meta: meta("cert", 1),
        spec: std::sync::Arc::new(crate::model::SecretData {
            data: [
                ("tls.crt".to_string(), crt.as_bytes().to_vec()),
                ("tls.key".to_string(), key.as_bytes().to_vec()),
            ]
            .into(),
            ..Default::default()
        }),
    };
    // What the dataplane would refuse is refused here, with the same code: text that merely
    // looks like PEM, a key that is not a key, a key of another certificate.
    for (crt, key, why) in [
        (
            "-----BEGIN CERTIFICATE-----\nx\n",
            "-----BEGIN PRIVATE KEY-----\nsekrit\n",
            "tls.crt is not PEM",
        ),
        (
            leaf.cert.as_str(),
            "sekrit",
            "tls.key holds no PEM private key",
        ),
        (
            leaf.cert.as_str(),
            other.key.as_str(),
            "tls.key does not belong to the first certificate",
        ),
    ] {
        let bad = translate(&Input {
            stages: vec![s.clone()],
            secrets: vec![secret(crt, key)],
            ..Input::default()
        });
        assert_eq!(
            reason_of(&bad, Kind::Stage, "tls"),
            Reason::InvalidCertificate
        );
        let refs = condition_of(&bad, Kind::Stage, "tls", ConditionType::ResolvedRefs);
        assert!(refs.message.contains(why), "{}", refs.message);
        assert!(!format!("{:?}", bad.statuses).contains("sekrit"));
        assert!(!format!("{:?}", bad.statuses).contains("PRIVATE"));
        assert!(bad.snapshot.stages.is_empty());
    }
    let good = translate(&Input {
        stages: vec![s],
        secrets: vec![secret(&leaf.cert, &leaf.key)],
        ..Input::default()
    });
    assert_eq!(reason_of(&good, Kind::Stage, "tls"), Reason::Ready);
    assert_eq!(
        good.snapshot.stages[0].certificate.as_deref(),
        Some("default/cert")
    );
    assert_eq!(
        good.snapshot.certificates["default/cert"].private_key_pem.0,
        leaf.key
    );
}

/// A URI that a serving Stage's variables make unusable is bound with the dataplane's code: the
/// route stays served (its calls fail with 500 there, as for an undefined variable) and
/// ResolvedRefs says which Stage breaks it.
#[test]
fn uris_unusable_with_a_stages_variables_say_so() {
    let mut good = stage("good", 0, "/good");
    good.spec.variables = [("host".to_string(), "backend:8080".to_string())].into();
    let mut broken = stage("broken", 1, "/broken");
    broken.spec.variables = [("host".to_string(), "a:b:c".to_string())].into();
    let out = translate(&Input {
        stages: vec![good, broken],
        routes: vec![proxy("r", 2, "/", vec![], "http://${stageVariables.host}/")],
        ..Input::default()
    });
    let refs = condition_of(&out, Kind::ApiRoute, "r", ConditionType::ResolvedRefs);
    assert_eq!(refs.reason, Reason::InvalidIntegration);
    assert!(
        refs.message.contains("default/broken") && !refs.message.contains("default/good"),
        "{}",
        refs.message
    );
    let counts: Vec<_> = out.snapshot.stages.iter().map(|s| s.routes.len()).collect();
    assert_eq!(counts, vec![1, 1]);
}

#[test]
fn ten_thousand_routes_translate() {
    let routes: Vec<_> = (0..10_000)
        .map(|i| {
            proxy(
                &format!("r{i}"),
                i,
                &format!("/r{}/{{id}}", i % 5_000),
                vec![Method::Get],
                "http://b/{id}",
            )
        })
        .collect();
    let out = translate(&Input {
        stages: vec![stage("prod", 0, "/")],
        routes,
        ..Input::default()
    });
    assert_eq!(out.snapshot.route_count(), 5_000);
    assert_eq!(out.statuses.len(), 10_001);
    assert_eq!(reason_of(&out, Kind::ApiRoute, "r9999"), Reason::Conflict);
}
