//! JWT authorizers over real processes: tokens minted by PyJWT (PyPI) for an issuer served by
//! `e2e/idp/idp.py` (OIDC discovery and a JWKS, counting its requests), checked by the
//! dataplane as AWS's HTTP-API JWT authorizer checks them (reference §6): valid, expired, not
//! yet valid, issued in the future, wrong issuer, wrong audience, `client_id`, missing scope,
//! `scp`, ES256, unknown `kid` then rotated in, `alg: none`, HS256 signed with the RSA public
//! key, a tampered payload, garbage, and the issuer going down (the last good keys keep
//! working). Keys are fetched once for many requests and kept across a push.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::idp::Idp;
use harness::*;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn manifests(issuer: &str, mock_body: &str) -> String {
    format!(
        "apiVersion: tollhouse.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec:
  api: pets
  accessLog:
    format: '{{\"requestId\":\"$context.requestId\",\"status\":\"$context.status\",\"sub\":\"$context.authorizer.claims.sub\",\"principal\":\"$context.authorizer.principalId\",\"exp\":\"$context.authorizer.claims.exp\"}}'
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: corp, namespace: shop}}
spec:
  type: JWT
  identitySource: [$request.header.Authorization]
  jwt:
    issuer: {issuer}
    audience: [pets-api]
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: pets, namespace: shop}}
spec:
  api: pets
  path: /pets
  methods: [GET]
  authorization:
    authorizerRef: {{name: corp}}
    scopes: [pets:read]
  integration:
    type: MOCK
    mock: {{statusCode: 200, body: {mock_body}}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: any, namespace: shop}}
spec:
  api: pets
  path: /any
  authorization: {{authorizerRef: {{name: corp}}}}
  integration:
    type: MOCK
    mock: {{statusCode: 200, body: any}}
"
    )
}

struct Answer {
    status: u16,
    body: String,
    challenge: Option<String>,
}

fn get(d: &Dataplane, path: &str, auth: Option<&str>) -> Answer {
    let mut req = http().get(d.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().unwrap();
    Answer {
        status: r.status().as_u16(),
        challenge: r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string()),
        body: r.text().unwrap(),
    }
}

/// A 401 exactly as AWS's HTTP API answers a failed JWT (reference §3a, §6).
fn assert_refused(a: &Answer, description: &str, what: &str) {
    assert_eq!(a.status, 401, "{what}: {}", a.body);
    assert_eq!(a.body, r#"{"message":"Unauthorized"}"#, "{what}");
    assert_eq!(
        a.challenge.as_deref(),
        Some(
            format!(r#"Bearer scope="" error="invalid_token" error_description="{description}""#)
                .as_str()
        ),
        "{what}"
    );
}

#[test]
fn jwt_authorizer_checks_pyjwt_tokens_as_aws_and_keeps_the_issuers_keys() {
    let idp = Idp::start();
    let dir = TempDir::new("jwt");
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    std::fs::write(
        manifests_dir.join("api.yaml"),
        manifests(&idp.issuer(), "pets"),
    )
    .unwrap();
    let controller = Controller::start(&manifests_dir, dir.path());
    let d = Dataplane::start_with(
        &controller.url(""),
        &dir.path().join("state"),
        dir.path(),
        &[
            "--jwks-refetch-interval-ms".into(),
            "500".into(),
            "--access-log".into(),
            dir.path().join("access.log").display().to_string(),
        ],
    );
    d.wait_synced(&controller);

    let t = now();
    let claims = |extra: Value| {
        let mut c = json!({
            "iss": idp.issuer(), "aud": "pets-api", "sub": "user-1",
            "iat": t - 10, "exp": t + 600, "scope": "pets:read pets:write",
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let good = idp.mint("k1", claims(json!({})), "RS256");

    // A valid token, with and without `Bearer `.
    let a = get(&d, "/pets", Some(&format!("Bearer {good}")));
    assert_eq!((a.status, a.body.as_str()), (200, "pets"));
    assert_eq!(get(&d, "/pets", Some(&good)).status, 200, "a bare token");

    // No token: 401 with RFC 6750's bare challenge, the issuer not asked.
    let a = get(&d, "/pets", None);
    assert_eq!(
        (a.status, a.body.as_str(), a.challenge.as_deref()),
        (401, r#"{"message":"Unauthorized"}"#, Some("Bearer"))
    );

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            idp.mint("k1", claims(json!({"exp": t - 5})), "RS256"),
            "the token has expired",
        ),
        (
            "no exp",
            idp.mint("k1", claims(json!({"exp": null})), "RS256"),
            "the token has expired",
        ),
        (
            "not yet valid",
            idp.mint("k1", claims(json!({"nbf": t + 300})), "RS256"),
            "the token is not valid yet",
        ),
        (
            "issued in the future",
            idp.mint("k1", claims(json!({"iat": t + 300})), "RS256"),
            "the token was issued in the future",
        ),
        (
            "wrong issuer",
            idp.mint(
                "k1",
                claims(json!({"iss": "https://evil.example"})),
                "RS256",
            ),
            "the token does not have a valid issuer",
        ),
        (
            "wrong audience",
            idp.mint("k1", claims(json!({"aud": ["other-api"]})), "RS256"),
            "the token does not have a valid audience",
        ),
        (
            "missing scope",
            idp.mint("k1", claims(json!({"scope": "pets:write"})), "RS256"),
            "the token does not have the required scope",
        ),
        (
            "signed by an unpublished key",
            idp.mint("unpublished", claims(json!({})), "RS256"),
            "the token's key id is not one of the issuer's keys",
        ),
        (
            "alg none",
            idp.forge("none", claims(json!({}))),
            "the token is malformed",
        ),
        (
            "HS256 with the RSA public key as secret",
            idp.forge("hs256-pubkey", claims(json!({}))),
            "the token's signing algorithm is not accepted",
        ),
        (
            "tampered payload",
            idp.forge("tampered", claims(json!({}))),
            "the token's signature is invalid",
        ),
        ("garbage", "not.a.jwt".to_string(), "the token is malformed"),
    ];
    for (what, token, description) in &cases {
        assert_refused(
            &get(&d, "/pets", Some(&format!("Bearer {token}"))),
            description,
            what,
        );
    }

    // `client_id` instead of `aud` (AWS), `scp` instead of `scope`, an ES256 key, and a route
    // without scopes.
    let ok = [
        (
            "client_id",
            idp.mint(
                "k1",
                claims(json!({"aud": null, "client_id": "pets-api"})),
                "RS256",
            ),
        ),
        (
            "scp",
            idp.mint(
                "k1",
                claims(json!({"scope": null, "scp": ["pets:read"]})),
                "RS256",
            ),
        ),
        ("ES256", idp.mint("ec1", claims(json!({})), "ES256")),
    ];
    for (what, token) in &ok {
        assert_eq!(
            get(&d, "/pets", Some(&format!("Bearer {token}"))).status,
            200,
            "{what}"
        );
    }
    let unscoped = idp.mint("k1", claims(json!({"scope": null})), "RS256");
    assert_eq!(
        get(&d, "/any", Some(&format!("Bearer {unscoped}"))).status,
        200
    );

    // Many requests, one discovery and one JWKS fetch; the unknown kid above fetched once more
    // at most (refetches are limited to one per interval).
    let (discovery, jwks) = idp.counts();
    assert_eq!(discovery, 1, "discovery is fetched once");
    assert!((1..=2).contains(&jwks), "JWKS fetched {jwks} times");

    // Rotation: a token under a new kid is refused until the issuer publishes it, then
    // accepted after one refetch.
    let rotated = || idp.mint("k2", claims(json!({})), "RS256");
    idp.post("/rotate", json!({"kid": "k2"}));
    let token = rotated();
    std::thread::sleep(Duration::from_millis(600));
    let a = get(&d, "/pets", Some(&format!("Bearer {token}")));
    assert_eq!(
        a.status, 200,
        "the rotated key is fetched: {:?}",
        a.challenge
    );
    let (_, after_rotation) = idp.counts();
    assert_eq!(after_rotation, jwks + 1, "one refetch for the new kid");

    // A push (an unrelated change) keeps the keys: no fetch.
    std::fs::write(
        manifests_dir.join("api.yaml"),
        manifests(&idp.issuer(), "pets-v2"),
    )
    .unwrap();
    wait_for("the push", Duration::from_secs(20), || {
        (get(&d, "/pets", Some(&good)).body == "pets-v2").then_some(())
    });
    assert_eq!(idp.counts().1, after_rotation, "a push refetches nothing");

    // The issuer goes down: the keys fetched keep working; an unknown kid is refused after the
    // failed refetch, and nothing waits long.
    idp.post("/down", json!({"down": true}));
    std::thread::sleep(Duration::from_millis(600));
    let started = std::time::Instant::now();
    let unknown = idp.mint("unpublished", claims(json!({})), "RS256");
    assert_refused(
        &get(&d, "/pets", Some(&format!("Bearer {unknown}"))),
        "the token's key id is not one of the issuer's keys",
        "unknown kid while the issuer is down",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    for token in [&good, &token] {
        assert_eq!(
            get(&d, "/pets", Some(&format!("Bearer {token}"))).status,
            200,
            "the last good keys keep working while the issuer is down"
        );
    }
    // The caller reaches the access log (`$context.authorizer.*`); a refused one is `-`.
    let access = wait_for("the access log", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(dir.path().join("access.log")).ok()?;
        text.contains(r#""status":"401""#).then_some(text)
    });
    let lines: Vec<Value> = access
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_ok = lines.iter().find(|l| l["status"] == "200").unwrap();
    assert_eq!(first_ok["sub"], "user-1");
    assert_eq!(first_ok["principal"], "user-1");
    assert_eq!(first_ok["exp"], (t + 600).to_string());
    let refused = lines.iter().find(|l| l["status"] == "401").unwrap();
    assert_eq!(
        (&refused["sub"], &refused["principal"]),
        (&json!("-"), &json!("-"))
    );

    // No token value reaches the logs.
    let logs = d.proc.log_text() + &controller.proc.log_text() + &access;
    assert!(
        !logs.contains(&good[good.len() - 20..]),
        "a token in the logs"
    );
}

/// A real OIDC server: oauth2-mock-server (npm; `e2e/oidc/server.js`), its discovery document,
/// JWKS and token endpoint. Tokens come from its `/token` endpoint (client credentials), the
/// dataplane finds the keys through discovery, and a key published later is fetched when a
/// token signed by it arrives.
#[test]
fn jwt_authorizer_takes_tokens_from_oauth2_mock_server() {
    use std::io::{BufRead, BufReader, Write};
    let port = free_port();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc/server.js");
    let mut child = std::process::Command::new("node")
        .arg(script)
        .arg(port.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("node (e2e/kube/setup.sh installs oauth2-mock-server)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let _server = Kill(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "oauth2-mock-server did not start");
    // It names itself by `localhost`, whatever address it listens on.
    let issuer = format!("http://localhost:{port}");

    let dir = TempDir::new("jwt-oidc");
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    std::fs::write(manifests_dir.join("api.yaml"), manifests(&issuer, "pets")).unwrap();
    let controller = Controller::start(&manifests_dir, dir.path());
    let d = Dataplane::start_with(
        &controller.url(""),
        &dir.path().join("state"),
        dir.path(),
        &["--jwks-refetch-interval-ms".into(), "200".into()],
    );
    d.wait_synced(&controller);

    let token = |scope: &str, aud: &str| -> String {
        let v: Value = http()
            .post(format!("http://127.0.0.1:{port}/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("aud", aud),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["access_token"].as_str().unwrap().to_string()
    };
    let kid = |t: &str| -> String {
        let header = t.split('.').next().unwrap();
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let good = token("pets:read", "pets-api");
    let a = get(&d, "/pets", Some(&format!("Bearer {good}")));
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "pets"),
        "{:?}",
        a.challenge
    );
    assert_refused(
        &get(
            &d,
            "/pets",
            Some(&format!("Bearer {}", token("pets:read", "other-api"))),
        ),
        "the token does not have a valid audience",
        "wrong audience",
    );
    assert_refused(
        &get(
            &d,
            "/pets",
            Some(&format!("Bearer {}", token("pets:write", "pets-api"))),
        ),
        "the token does not have the required scope",
        "missing scope",
    );

    // Rotation: a new key is published; the server signs with each key in turn, so within a
    // few tokens one carries the new kid, which the dataplane has not seen: it refetches.
    writeln!(stdin, "rotate").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let new_kid = line.trim().strip_prefix("rotated ").unwrap().to_string();
    assert_ne!(new_kid, kid(&good));
    let rotated = (0..10)
        .map(|_| token("pets:read", "pets-api"))
        .find(|t| kid(t) == new_kid)
        .expect("a token signed by the new key");
    std::thread::sleep(Duration::from_millis(300));
    let a = get(&d, "/pets", Some(&format!("Bearer {rotated}")));
    assert_eq!(a.status, 200, "the new key is fetched: {:?}", a.challenge);
    assert_eq!(
        get(&d, "/pets", Some(&format!("Bearer {good}"))).status,
        200
    );
}

/// An issuer behind a private CA: its `https` discovery and keys are refused by the public
/// web roots (401, the keys could not be fetched), and trusted with `--jwks-ca-file`.
#[test]
fn jwt_issuer_behind_a_private_ca_needs_jwks_ca_file() {
    let ca = tollhouse_pemfile::testing::Authority::new();
    let leaf = ca.server();
    let dir = TempDir::new("jwt-private-ca");
    let files = harness::tls::SecretDir::new(
        dir.path().join("pki"),
        &[
            ("ca.pem", ca.pem()),
            ("tls.crt", leaf.cert.clone()),
            ("tls.key", leaf.key.clone()),
        ],
    );
    let idp = Idp::start_tls(
        &files.file("tls.crt"),
        &files.file("tls.key"),
        &files.file("ca.pem"),
    );
    let issuer = idp.tls_issuer();
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    std::fs::write(manifests_dir.join("api.yaml"), manifests(&issuer, "pets")).unwrap();
    let controller = Controller::start(&manifests_dir, dir.path());
    let public_roots = Dataplane::start_with(
        &controller.url(""),
        &dir.path().join("state-a"),
        dir.path(),
        &[],
    );
    let private_ca = Dataplane::start_with(
        &controller.url(""),
        &dir.path().join("state-b"),
        dir.path(),
        &[
            "--jwks-ca-file".into(),
            files.file("ca.pem").display().to_string(),
        ],
    );
    public_roots.wait_synced(&controller);
    private_ca.wait_synced(&controller);
    let t = now();
    let token = idp.mint(
        "k1",
        json!({"iss": issuer, "aud": "pets-api", "sub": "u", "iat": t - 5, "exp": t + 600,
            "scope": "pets:read"}),
        "RS256",
    );
    let bearer = format!("Bearer {token}");
    assert_refused(
        &get(&public_roots, "/pets", Some(&bearer)),
        "the issuer's keys could not be fetched",
        "an issuer the public roots do not vouch for",
    );
    let a = get(&private_ca, "/pets", Some(&bearer));
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "pets"),
        "{:?}",
        a.challenge
    );
}
