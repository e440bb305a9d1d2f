//! Parameter mapping (AWS HTTP API's `requestParameters`): the backend's request changed as
//! the route says, after the authorizer, so that an HTTP backend learns who called
//! (`$context.authorizer.claims.sub`, `$context.identity.caller`). Every value is rendered
//! from the request as the client sent it, then the changes are made: one mapping never sees
//! another's result. A value that is not a valid header value leaves that header alone.

use crate::authorizer::query_pairs;
use crate::compile::CompiledStage;
use crate::context::RequestContext;
use crate::phases::access_log::{authorizer_value, context_value};
use crate::phases::route::CompiledRoute;
use http::{HeaderMap, HeaderName, HeaderValue};
use tollhouse_template::mapping::{Mapping, Op, Piece, Target};

/// Renders one value from the request as it arrived.
fn render(
    value: &[Piece],
    ctx: &RequestContext,
    headers: &HeaderMap,
    stage: &CompiledStage,
    route: &CompiledRoute,
) -> String {
    let mut out = String::new();
    for piece in value {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Header(name) => {
                let values: Vec<&str> = headers
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                out.push_str(&values.join(","));
            }
            Piece::Query(name) => {
                let values: Vec<String> = query_pairs(ctx.uri.query())
                    .into_iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v)
                    .collect();
                out.push_str(&values.join(","));
            }
            Piece::PathParam(name) => {
                if let Some(raw) = route
                    .params
                    .iter()
                    .position(|p| p == name)
                    .and_then(|i| ctx.param_values().get(i).copied())
                {
                    out.push_str(&percent_encoding::percent_decode_str(raw).decode_utf8_lossy());
                }
            }
            Piece::Path => out.push_str(ctx.rest()),
            Piece::Context(var) => out.push_str(&context_value(ctx, *var).unwrap_or_default()),
            Piece::Authorizer(key) => out.push_str(&authorizer_value(ctx, key).unwrap_or_default()),
            Piece::StageVariable(name) => {
                out.push_str(stage.variables.get(name).map_or("", String::as_str));
            }
        }
    }
    out
}

/// Encodes a query-string name or value.
fn encode_query(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

/// Applies `mappings` to the backend request's headers and URI.
pub fn apply(
    mappings: &[Mapping],
    ctx: &RequestContext,
    stage: &CompiledStage,
    route: &CompiledRoute,
    headers: &mut HeaderMap,
    uri: http::Uri,
) -> http::Uri {
    let values: Vec<String> = mappings
        .iter()
        .map(|m| render(&m.value, ctx, headers, stage, route))
        .collect();
    let mut path = uri.path().to_string();
    let mut query: Option<Vec<(String, String)>> = None;
    for (m, value) in mappings.iter().zip(values) {
        match &m.target {
            Target::Header(name) => {
                let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                    continue;
                };
                match m.op {
                    Op::Remove => {
                        headers.remove(&name);
                    }
                    Op::Overwrite | Op::Append => {
                        let Ok(v) = HeaderValue::from_str(&value) else {
                            continue;
                        };
                        if m.op == Op::Overwrite {
                            headers.insert(name, v);
                        } else {
                            headers.append(name, v);
                        }
                    }
                }
            }
            Target::Query(name) => {
                let q = query.get_or_insert_with(|| query_pairs(uri.query()));
                match m.op {
                    Op::Remove => q.retain(|(k, _)| k != name),
                    Op::Overwrite => {
                        q.retain(|(k, _)| k != name);
                        q.push((name.clone(), value));
                    }
                    Op::Append => q.push((name.clone(), value)),
                }
            }
            Target::Path => {
                let p = if value.starts_with('/') {
                    value
                } else {
                    format!("/{value}")
                };
                // Each segment encoded, so a value cannot add a query or a fragment.
                path = p
                    .split('/')
                    .map(|s| {
                        percent_encoding::utf8_percent_encode(
                            &percent_encoding::percent_decode_str(s).decode_utf8_lossy(),
                            SEGMENT,
                        )
                        .to_string()
                    })
                    .collect::<Vec<_>>()
                    .join("/");
            }
        }
    }
    let query = match query {
        Some(q) => (!q.is_empty()).then(|| {
            q.iter()
                .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
                .collect::<Vec<_>>()
                .join("&")
        }),
        None => uri.query().map(str::to_string),
    };
    let pq = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.into_parts();
    match http::uri::PathAndQuery::try_from(pq) {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return http::Uri::from_parts(parts).unwrap_or_default(),
    }
    http::Uri::from_parts(parts).unwrap_or_default()
}

/// What a path segment keeps as is: RFC 3986 `pchar` less `%` (encoded once, here).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'%')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');
