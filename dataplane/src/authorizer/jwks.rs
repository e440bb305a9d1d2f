//! An issuer's signing keys: fetched through OIDC discovery or a `jwksUri`, cached, refreshed,
//! refetched for an unknown `kid`, and kept when the issuer is down.
//!
//! Built from what peers got wrong (crates.md §12): one [`Jwks`] per issuer and URL, shared by
//! every route and kept across pushes by the runtime (envoyproxy/gateway#4180 never refetched,
//! #4791 fetched 30 times a second); a fetch is bounded in time (1.5 s per request, AWS's
//! limit) and size (150,000 bytes, AWS's), one at a time per issuer; an unknown `kid` refetches
//! at most once per [`Jwks::refetch_after`]; a set past its lifetime is still served while one
//! request refreshes it in the background; a failed fetch keeps the last good set.

use super::crypto::ALGORITHMS;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// AWS's limit on a JWKS (and discovery) response.
pub const MAX_BYTES: usize = 150_000;
/// AWS's timeout for each of the discovery and JWKS requests.
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a set is used without a `Cache-Control: max-age` (AWS caches keys up to an hour).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The shortest lifetime a `max-age` may give: an issuer saying `max-age=0` would otherwise
/// be fetched on every request.
const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// After a failed refresh, how long the old set is used before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// One verification key of the set.
pub struct Key {
    /// The key.
    pub key: DecodingKey,
    /// The algorithms it may check: the JWK's `alg` alone, else every accepted one of its
    /// family (jsonwebtoken wants one family per validation).
    pub algorithms: Vec<Algorithm>,
}

/// The keys of one fetch, by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<Key>>,
}

impl KeySet {
    /// Reads a JWKS document. Keys the gateway cannot use (encryption keys, HMAC secrets,
    /// unknown types, keys without a `kid`) are skipped, not fatal: an issuer may publish more
    /// than its signing keys.
    pub fn parse(body: &[u8]) -> Result<KeySet, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        for value in doc.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            ) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let family = key.family();
            if family == AlgorithmFamily::Hmac {
                continue;
            }
            let algorithms: Vec<Algorithm> = match jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok())
            {
                Some(a) if ALGORITHMS.contains(&a) && a.family() == family => vec![a],
                Some(_) => continue,
                None => ALGORITHMS
                    .iter()
                    .copied()
                    .filter(|a| a.family() == family)
                    .collect(),
            };
            keys.insert(kid, Arc::new(Key { key, algorithms }));
        }
        Ok(KeySet { keys })
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<Arc<Key>> {
        self.keys.get(kid).cloned()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why no key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The issuer's keys are known and none has this `kid`.
    UnknownKid,
    /// No set could be fetched yet.
    Unavailable,
}

/// When the set was fetched and tried.
#[derive(Default)]
struct Times {
    /// The last fetch attempt, successful or not.
    tried: Option<Instant>,
    /// Until when the current set is fresh.
    fresh_until: Option<Instant>,
    /// Whether a background refresh is running.
    refreshing: bool,
}

/// One issuer's keys.
pub struct Jwks {
    issuer: String,
    jwks_uri: Option<String>,
    /// The URL discovery found, once found.
    discovered: Mutex<Option<String>>,
    current: ArcSwapOption<KeySet>,
    times: Mutex<Times>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// The least time between two fetches for an unknown `kid`.
    pub refetch_after: Duration,
    client: Result<Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>, String>,
}

impl Jwks {
    /// The keys of `issuer`, at `jwks_uri` or through discovery; nothing is fetched yet.
    /// `tls`: the client configuration for `https` fetches (`--jwks-ca-file`), else the public
    /// web roots.
    pub fn new(
        issuer: &str,
        jwks_uri: Option<&str>,
        refetch_after: Duration,
        tls: Option<&rustls::ClientConfig>,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(FETCH_TIMEOUT));
        let builder = match tls {
            Some(config) => {
                Ok(hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config.clone()))
            }
            None => hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider())),
        };
        let client = builder
            .map(|b| {
                let https = b.https_or_http().enable_http1().wrap_connector(http);
                // Fetches are rare: no idle connections are kept.
                Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(0)
                    .build(https)
            })
            .map_err(|e| format!("TLS: {e}"));
        Jwks {
            issuer: issuer.to_string(),
            jwks_uri: jwks_uri.map(str::to_string),
            discovered: Mutex::new(None),
            current: ArcSwapOption::empty(),
            times: Mutex::new(Times::default()),
            fetching: tokio::sync::Mutex::new(()),
            refetch_after,
            client,
        }
    }

    /// The key for `kid` at `now`: from the current set (refreshing it in the background when
    /// it is past its lifetime), else after the fetch in flight, else after one fetch of its
    /// own when the last is long enough ago.
    pub async fn key(self: &Arc<Self>, kid: &str, now: Instant) -> Result<Arc<Key>, Missing> {
        if let Some(set) = self.current.load_full() {
            if let Some(key) = set.get(kid) {
                self.refresh_if_stale(now);
                return Ok(key);
            }
        }
        // A fetch in flight (for this kid or any) is waited for: concurrent misses share it.
        let _one = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.current.load_full().and_then(|s| s.get(kid)) {
            return Ok(key);
        }
        if !self.may_fetch(now) {
            return Err(self.missing());
        }
        self.fetch(now).await;
        self.current
            .load_full()
            .and_then(|s| s.get(kid))
            .ok_or_else(|| self.missing())
    }

    fn missing(&self) -> Missing {
        if self.current.load().is_some() {
            Missing::UnknownKid
        } else {
            Missing::Unavailable
        }
    }

    fn may_fetch(&self, now: Instant) -> bool {
        let Ok(t) = self.times.lock() else {
            return false;
        };
        t.tried
            .is_none_or(|at| now.saturating_duration_since(at) >= self.refetch_after)
    }

    fn refresh_if_stale(self: &Arc<Self>, now: Instant) {
        {
            let Ok(mut t) = self.times.lock() else { return };
            if t.refreshing || t.fresh_until.is_some_and(|until| now < until) {
                return;
            }
            t.refreshing = true;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _one = this.fetching.lock().await;
            this.fetch(now).await;
            if let Ok(mut t) = this.times.lock() {
                t.refreshing = false;
            }
        });
    }

    /// Fetches the set once; on failure the current set stays, and is tried again after
    /// [`RETRY_AFTER`].
    async fn fetch(&self, now: Instant) {
        if let Ok(mut t) = self.times.lock() {
            t.tried = Some(now);
        }
        match self.fetch_set().await {
            Ok((set, lifetime)) => {
                tracing::info!(
                    issuer = %self.issuer,
                    keys = set.len(),
                    lifetime_s = lifetime.as_secs(),
                    "JWKS fetched"
                );
                self.current.store(Some(Arc::new(set)));
                if let Ok(mut t) = self.times.lock() {
                    t.fresh_until = Some(now + lifetime);
                }
            }
            Err(e) => {
                tracing::warn!(
                    issuer = %self.issuer,
                    error = %e,
                    keeping = self.current.load().as_ref().map_or(0, |s| s.len()),
                    "JWKS fetch failed; keeping the last good keys"
                );
                if let Ok(mut t) = self.times.lock() {
                    t.fresh_until = Some(now + RETRY_AFTER);
                }
            }
        }
    }

    async fn fetch_set(&self) -> Result<(KeySet, Duration), String> {
        let url = match &self.jwks_uri {
            Some(u) => u.clone(),
            None => self.discover().await?,
        };
        let (body, max_age) = self.get(&url).await?;
        let set = KeySet::parse(&body)?;
        if set.is_empty() {
            return Err(format!("{url} holds no usable signing key"));
        }
        let lifetime = max_age.map_or(DEFAULT_LIFETIME, |a| {
            a.clamp(MIN_LIFETIME, DEFAULT_LIFETIME)
        });
        Ok((set, lifetime))
    }

    /// The `jwks_uri` of the issuer's OIDC discovery document (found once, then reused).
    async fn discover(&self) -> Result<String, String> {
        if let Some(u) = self.discovered.lock().ok().and_then(|d| d.clone()) {
            return Ok(u);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let (body, _) = self.get(&url).await?;
        #[derive(serde::Deserialize)]
        struct Discovery {
            jwks_uri: String,
        }
        let d: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("{url}: not an OIDC discovery document: {e}"))?;
        if let Ok(mut slot) = self.discovered.lock() {
            *slot = Some(d.jwks_uri.clone());
        }
        Ok(d.jwks_uri)
    }

    /// GETs `url` within the timeout and size limit: the body and `Cache-Control: max-age`.
    async fn get(&self, url: &str) -> Result<(Bytes, Option<Duration>), String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let got = async {
            let client = self.client.as_ref().map_err(Clone::clone)?;
            let resp = client
                .request(req)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("{url} answered {}", resp.status()));
            }
            let max_age = resp
                .headers()
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .and_then(max_age);
            let body = Limited::new(resp.into_body(), MAX_BYTES)
                .collect()
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .to_bytes();
            Ok((body, max_age))
        };
        tokio::time::timeout(FETCH_TIMEOUT, got)
            .await
            .map_err(|_| format!("{url} did not answer within {FETCH_TIMEOUT:?}"))?
    }
}

/// `max-age` of a `Cache-Control` value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age_is_read() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("Max-Age=\"7\""), Some(Duration::from_secs(7)));
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"EC","crv":"P-256","kid":"nokid-alg","alg":"RS256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"WAT","kid":"w"}
        ]}"#;
        let set = KeySet::parse(doc).unwrap();
        assert_eq!(set.len(), 1);
        let ed = set.get("ed").unwrap();
        assert_eq!(ed.algorithms, vec![Algorithm::EdDSA]);
        assert!(set.get("h").is_none(), "an HMAC secret is never a key");
        assert!(KeySet::parse(b"{}").is_err());
    }

    /// A JWKS endpoint on loopback that counts its requests, answers after `delay`, and
    /// answers 503 while `down` is set.
    struct Issuer {
        url: String,
        hits: Arc<std::sync::atomic::AtomicUsize>,
        down: Arc<std::sync::atomic::AtomicBool>,
    }

    async fn issuer(doc: String, delay: Duration) -> Issuer {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (h, dn) = (hits.clone(), down.clone());
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let (doc, h, dn) = (doc.clone(), h.clone(), dn.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    h.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let (status, body) = if dn.load(Ordering::SeqCst) {
                        ("503 Service Unavailable", "{}".to_string())
                    } else {
                        ("200 OK", doc)
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        Issuer { url, hits, down }
    }

    fn ed25519_doc(kid: &str) -> String {
        use base64::Engine;
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"{x}"}}]}}"#)
    }

    /// Concurrent misses for one issuer make one fetch; an unknown `kid` refetches at most once
    /// per interval; a failed refresh keeps the last good keys (crates.md §12's peer bugs).
    #[tokio::test]
    async fn one_fetch_for_concurrent_misses_rate_limited_refetch_and_last_good_keys() {
        use std::sync::atomic::Ordering;
        let idp = issuer(ed25519_doc("k1"), Duration::from_millis(100)).await;
        let every = Duration::from_secs(10);
        let jwks = Arc::new(Jwks::new("http://issuer", Some(&idp.url), every, None));
        let t0 = Instant::now();
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let j = jwks.clone();
                tokio::spawn(async move { j.key("k1", t0).await.is_ok() })
            })
            .collect();
        for c in calls {
            assert!(c.await.unwrap());
        }
        assert_eq!(
            idp.hits.load(Ordering::SeqCst),
            1,
            "one fetch for 20 misses"
        );

        // An unknown kid within the interval: refused at once, no fetch.
        assert_eq!(jwks.key("k2", t0).await.err(), Some(Missing::UnknownKid));
        assert_eq!(idp.hits.load(Ordering::SeqCst), 1);
        // After the interval: one refetch.
        assert_eq!(
            jwks.key("k2", t0 + every).await.err(),
            Some(Missing::UnknownKid)
        );
        assert_eq!(idp.hits.load(Ordering::SeqCst), 2);

        // The issuer goes down and the set is past its lifetime: the key still verifies while
        // one background refresh fails.
        idp.down.store(true, Ordering::SeqCst);
        let later = t0 + Duration::from_secs(7200);
        assert!(jwks.key("k1", later).await.is_ok());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(idp.hits.load(Ordering::SeqCst), 3, "one background refresh");
        assert!(jwks.key("k1", later).await.is_ok(), "last good keys kept");
        assert_eq!(
            idp.hits.load(Ordering::SeqCst),
            3,
            "no retry before RETRY_AFTER"
        );
    }

    /// Nothing fetched and the issuer unreachable: Unavailable, within the fetch timeout.
    #[tokio::test]
    async fn an_unreachable_issuer_is_unavailable_quickly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        drop(listener);
        let jwks = Arc::new(Jwks::new(
            "http://issuer",
            Some(&url),
            Duration::from_secs(1),
            None,
        ));
        let started = Instant::now();
        assert_eq!(
            jwks.key("k1", started).await.err(),
            Some(Missing::Unavailable)
        );
        assert!(started.elapsed() <= FETCH_TIMEOUT + Duration::from_millis(500));
    }
}
