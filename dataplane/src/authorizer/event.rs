//! AWS's authorizer events (reference §5): TOKEN, REST's REQUEST, and the HTTP API's REQUEST in
//! formats 1.0 and 2.0, with the shapes of the `aws_lambda_events` fixtures
//! (`example-apigw-custom-auth-request*.json`, `example-apigw-v2-custom-authorizer-v*-request*`).
//!
//! Header names reach us lower-cased (HTTP/2 requires it and our HTTP/1 server does the same),
//! so 1.0 and REST events carry them lower-cased where AWS keeps the client's case.

use super::{query_pairs, Call};
use crate::context::RequestContext;
use crate::flavour::Flavour;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;
use tollhouse_snapshot::EventFormat;

/// The host the request named, without a port (`requestContext.domainName`).
pub fn domain_name(ctx: &RequestContext) -> &str {
    let host = ctx.host_str();
    if host.starts_with('[') {
        return host
            .find(']')
            .and_then(|end| host.get(..=end))
            .unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

/// The TOKEN event.
pub fn token(token: &str, method_arn: &str) -> Value {
    json!({"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn})
}

/// The REQUEST event for the Stage's flavour and `format`; `values` are the identity-source
/// values, in order.
pub fn request(call: &Call<'_>, format: EventFormat, values: &[String], method_arn: &str) -> Value {
    match (call.stage.flavour, format) {
        (Flavour::Rest, _) => rest(call, None, method_arn),
        (Flavour::Http, EventFormat::V1) => rest(call, Some(values), method_arn),
        (Flavour::Http, EventFormat::V2) => v2(call, values, method_arn),
    }
}

fn epoch_millis(ctx: &RequestContext) -> u64 {
    ctx.time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn request_id(ctx: &RequestContext) -> &str {
    ctx.ids
        .as_ref()
        .and_then(|i| i.request_id.to_str().ok())
        .unwrap_or("")
}

fn user_agent(ctx: &RequestContext) -> Value {
    ctx.user_agent
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// Header values by name, in arrival order.
fn header_values(call: &Call<'_>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in call.headers {
        if let Ok(v) = value.to_str() {
            out.entry(name.as_str().to_string())
                .or_default()
                .push(v.to_string());
        }
    }
    out
}

fn query_values(call: &Call<'_>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in query_pairs(call.query()) {
        out.entry(k).or_default().push(v);
    }
    out
}

fn path_parameters(call: &Call<'_>) -> Map<String, Value> {
    call.route
        .params
        .iter()
        .zip(call.ctx.param_values())
        .map(|(name, raw)| {
            let v = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
            (name.clone(), Value::String(v.into_owned()))
        })
        .collect()
}

fn stage_variables(call: &Call<'_>) -> Map<String, Value> {
    call.stage
        .variables
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// The last value of each name, and every value (REST's `headers` and `multiValueHeaders`).
fn single_and_multi(m: &BTreeMap<String, Vec<String>>) -> (Value, Value) {
    if m.is_empty() {
        return (Value::Null, Value::Null);
    }
    let single = m
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), Value::String(v.last()?.clone()))))
        .collect::<Map<_, _>>();
    let multi = m
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect::<Map<_, _>>();
    (Value::Object(single), Value::Object(multi))
}

/// REST's REQUEST event; with `values`, the HTTP API's format 1.0 (which adds `version`,
/// `identitySource`, `authorizationToken`, `routeKey` and `requestContext.http`, and drops the
/// `multiValue*` maps).
fn rest(call: &Call<'_>, values: Option<&[String]>, method_arn: &str) -> Value {
    let ctx = call.ctx;
    let route = call.route;
    let (headers, multi_headers) = single_and_multi(&header_values(call));
    let (query, multi_query) = single_and_multi(&query_values(call));
    let mut time = String::new();
    crate::phases::access_log::clf_time(ctx.time, &mut time);
    let host = domain_name(ctx);
    let source_ip = ctx.conn.remote.ip().to_string();
    let mut request_context = json!({
        "accountId": call.arn_prefix.trim_end_matches(':').rsplit(':').next().unwrap_or(""),
        "apiId": call.stage.api.to_str().unwrap_or(""),
        "domainName": host,
        "domainPrefix": host.split('.').next().unwrap_or(""),
        "extendedRequestId": ctx.ids.as_ref().and_then(|i| i.extended().to_str().ok()).unwrap_or(""),
        "httpMethod": ctx.method.as_str(),
        "identity": {
            "accessKey": null, "accountId": null, "apiKey": null, "apiKeyId": null,
            "caller": null, "cognitoAuthenticationProvider": null,
            "cognitoAuthenticationType": null, "cognitoIdentityId": null,
            "cognitoIdentityPoolId": null, "principalOrgId": null,
            "sourceIp": source_ip, "user": null, "userAgent": user_agent(ctx), "userArn": null,
        },
        "path": ctx.uri.path(),
        "protocol": "HTTP/1.1",
        "requestId": request_id(ctx),
        "requestTime": time,
        "requestTimeEpoch": epoch_millis(ctx),
        "resourceId": resource_id(&route.label),
        "resourcePath": route.resource_path,
        "stage": call.stage.name,
    });
    let rest_path = ctx.rest();
    let mut event = json!({
        "type": "REQUEST",
        "methodArn": method_arn,
        "resource": route.resource_path,
        "path": rest_path,
        "httpMethod": ctx.method.as_str(),
        "headers": headers,
        "queryStringParameters": query,
        "pathParameters": path_parameters(call),
        "stageVariables": stage_variables(call),
    });
    let (Value::Object(e), Value::Object(rc)) = (&mut event, &mut request_context) else {
        return event;
    };
    match values {
        None => {
            e.insert("multiValueHeaders".into(), multi_headers);
            e.insert("multiValueQueryStringParameters".into(), multi_query);
        }
        Some(values) => {
            let joined = values.join(",");
            e.insert("version".into(), json!("1.0"));
            e.insert("identitySource".into(), json!(joined));
            e.insert("authorizationToken".into(), json!(joined));
            rc.insert("routeKey".into(), json!(route.route_key(&ctx.method)));
            rc.insert("time".into(), json!(time));
            rc.insert("timeEpoch".into(), json!(epoch_millis(ctx)));
            rc.insert(
                "http".into(),
                json!({
                    "method": ctx.method.as_str(), "path": ctx.uri.path(),
                    "protocol": "HTTP/1.1", "sourceIp": source_ip, "userAgent": user_agent(ctx),
                }),
            );
        }
    }
    e.insert("requestContext".into(), request_context);
    event
}

/// A stable six-character id for a route (`requestContext.resourceId`; AWS's are random).
fn resource_id(route: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(route.as_bytes());
    hex::encode(digest.get(..3).unwrap_or_default())
}

/// The HTTP API's format 2.0: header names lower-case and repeated values comma-joined,
/// cookies in `cookies`, absent maps left out.
fn v2(call: &Call<'_>, values: &[String], route_arn: &str) -> Value {
    let ctx = call.ctx;
    let mut cookies = Vec::new();
    let mut headers = Map::new();
    for (name, values) in header_values(call) {
        if name == "cookie" {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_string())),
            );
            continue;
        }
        headers.insert(name, Value::String(values.join(",")));
    }
    let query = query_values(call)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v.join(","))))
        .collect::<Map<_, _>>();
    let mut time = String::new();
    crate::phases::access_log::clf_time(ctx.time, &mut time);
    let host = domain_name(ctx);
    let route_key = call.route.route_key(&ctx.method);
    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("type".into(), json!("REQUEST"));
    event.insert("routeArn".into(), json!(route_arn));
    event.insert("identitySource".into(), json!(values));
    event.insert("routeKey".into(), json!(route_key));
    event.insert("rawPath".into(), json!(ctx.uri.path()));
    event.insert(
        "rawQueryString".into(),
        json!(ctx.uri.query().unwrap_or("")),
    );
    if !cookies.is_empty() {
        event.insert("cookies".into(), Value::Array(cookies));
    }
    event.insert("headers".into(), Value::Object(headers));
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), Value::Object(query));
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": call.arn_prefix.trim_end_matches(':').rsplit(':').next().unwrap_or(""),
            "apiId": call.stage.api.to_str().unwrap_or(""),
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(""),
            "http": {
                "method": ctx.method.as_str(), "path": ctx.uri.path(), "protocol": "HTTP/1.1",
                "sourceIp": ctx.conn.remote.ip().to_string(), "userAgent": user_agent(ctx),
            },
            "requestId": request_id(ctx),
            "routeKey": route_key,
            "stage": call.stage.name,
            "time": time,
            "timeEpoch": epoch_millis(ctx),
        }),
    );
    let params = path_parameters(call);
    if !params.is_empty() {
        event.insert("pathParameters".into(), Value::Object(params));
    }
    let variables = stage_variables(call);
    if !variables.is_empty() {
        event.insert("stageVariables".into(), Value::Object(variables));
    }
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_are_six_hex_characters_and_stable() {
        assert_eq!(resource_id("shop/pets").len(), 6);
        assert_eq!(resource_id("shop/pets"), resource_id("shop/pets"));
        assert_ne!(resource_id("shop/pets"), resource_id("shop/orders"));
    }

    #[test]
    fn token_event_is_awss() {
        assert_eq!(
            token("Bearer x", "arn:aws:execute-api:us-east-1:1:a/s/GET/p").to_string(),
            r#"{"authorizationToken":"Bearer x","methodArn":"arn:aws:execute-api:us-east-1:1:a/s/GET/p","type":"TOKEN"}"#
        );
    }
}
