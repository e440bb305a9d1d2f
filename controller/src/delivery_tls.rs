//! TLS for snapshot delivery: the server config that makes the snapshot server speak TLS and
//! accept only dataplanes whose client certificate chains to the given CA.
//!
//! Errors name the file and what was wrong with it, never its content (`tollhouse-pemfile`
//! reads the files): a key file must not end up in a log because it was passed to the wrong flag.
//!
//! The files are re-read every [`RELOAD_INTERVAL`] ([`Reloader`], `tollhouse-pemfile`'s): when
//! their bytes change, a new config is built and swapped in, and each new connection takes the
//! newest one; connections already open keep theirs. Files that do not build (half written, a
//! certificate and key from different updates) keep the previous config, so a rotation never
//! takes delivery down.

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tollhouse_pemfile::reload::{self, Reloading};
use tollhouse_pemfile::{certificates, private_key};

pub use tollhouse_pemfile::reload::Reload;

/// How often [`Reloader::watch`](reload::Reloader::watch) re-reads the files in production.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The files that make up the snapshot server's TLS identity and its client trust.
#[derive(Clone, Debug)]
pub struct DeliveryTlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificate(s) that client certificates must chain to.
    pub client_ca: PathBuf,
}

/// Why the delivery TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryTlsError {
    /// A certificate or key file could not be read or parsed.
    #[error(transparent)]
    File(#[from] tollhouse_pemfile::PemFileError),
    /// The client CA file holds a certificate rustls does not accept as a trust anchor.
    #[error("{}: not usable as a client CA: {reason}", path.display())]
    ClientCa {
        /// File.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// rustls refused the certificate and key (for example, they do not belong together).
    #[error("{} and {}: {source}", cert.display(), key.display())]
    Config {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// Cause.
        source: rustls::Error,
    },
}

/// A TLS 1.2/1.3 server config (ring, ALPN http/1.1) that requires a client certificate
/// chaining to `files.client_ca`.
pub fn server_config(files: &DeliveryTlsFiles) -> Result<ServerConfig, DeliveryTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let mut roots = RootCertStore::empty();
    for ca in certificates(&files.client_ca)? {
        roots
            .add(ca)
            .map_err(|e| client_ca_error(&files.client_ca, &e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| client_ca_error(&files.client_ca, &e))?;
    let config_error = |source| DeliveryTlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The snapshot server's TLS config, replaced in place when its files change.
#[derive(Clone, Debug)]
pub struct ReloadingServerConfig(Reloading<ServerConfig>);

impl From<Reloading<ServerConfig>> for ReloadingServerConfig {
    fn from(config: Reloading<ServerConfig>) -> ReloadingServerConfig {
        ReloadingServerConfig(config)
    }
}

impl ReloadingServerConfig {
    /// The newest config.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.current()
    }

    /// An acceptor for one new connection, with the newest config.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current())
    }
}

/// Re-reads the delivery TLS files and swaps in a new config when their bytes change; its
/// [`config`](reload::Reloader::config) is the server's, as a [`ReloadingServerConfig`].
pub type Reloader = reload::Reloader<ServerConfig, DeliveryTlsError>;

/// Reads the files and builds the first config. A problem here is a startup error.
pub fn load(files: DeliveryTlsFiles) -> Result<Reloader, DeliveryTlsError> {
    let paths = vec![
        files.cert.clone(),
        files.key.clone(),
        files.client_ca.clone(),
    ];
    Reloader::load("delivery TLS", paths, move || server_config(&files))
}

fn client_ca_error(path: &Path, error: &dyn std::fmt::Display) -> DeliveryTlsError {
    DeliveryTlsError::ClientCa {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollhouse_pemfile::testing::{handshake, Authority, Dir};

    struct Files {
        dir: Dir,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        other_key: PathBuf,
        key_pem: String,
    }

    /// A CA, a server leaf and the key of another leaf, written to a scratch directory.
    fn files(tag: &str) -> Files {
        let dir = Dir::new(&format!("delivery-tls-{tag}"));
        let ca = Authority::new();
        let (leaf, other) = (ca.server(), ca.server());
        dir.replace("ca.pem", &ca.pem());
        dir.replace("server.pem", &leaf.cert);
        dir.replace("server.key", &leaf.key);
        dir.replace("other.key", &other.key);
        Files {
            ca: dir.path("ca.pem"),
            cert: dir.path("server.pem"),
            key: dir.path("server.key"),
            other_key: dir.path("other.key"),
            key_pem: leaf.key,
            dir,
        }
    }

    #[test]
    fn a_matching_certificate_key_and_ca_build_a_config() {
        let f = files("ok");
        let config = server_config(&DeliveryTlsFiles {
            cert: f.cert.clone(),
            key: f.key.clone(),
            client_ca: f.ca.clone(),
        })
        .unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    /// Each error names the file at fault and quotes nothing from it.
    #[test]
    fn errors_name_the_file_and_never_show_the_key() {
        let f = files("bad");
        let cases = [
            // The key given as the certificate: the usual slip.
            (f.key.clone(), f.cert.clone(), f.ca.clone(), &f.key),
            (f.cert.clone(), f.cert.clone(), f.ca.clone(), &f.cert),
            (f.cert.clone(), f.key.clone(), f.key.clone(), &f.key),
            (
                f.cert.clone(),
                f.dir.path("missing.key"),
                f.ca.clone(),
                &f.dir.path("missing.key"),
            ),
        ];
        for (cert, key, client_ca, culprit) in cases {
            let error = server_config(&DeliveryTlsFiles {
                cert,
                key,
                client_ca,
            })
            .unwrap_err()
            .to_string();
            assert!(
                error.contains(&culprit.display().to_string()),
                "{error} should name {}",
                culprit.display()
            );
            for line in f.key_pem.lines() {
                assert!(!error.contains(line), "{error} shows key material");
            }
        }
        // Certificate and key that do not belong together are refused, naming both.
        let error = server_config(&DeliveryTlsFiles {
            cert: f.cert.clone(),
            key: f.other_key.clone(),
            client_ca: f.ca.clone(),
        })
        .unwrap_err();
        assert!(matches!(error, DeliveryTlsError::Config { .. }), "{error}");
    }

    /// The server follows its files: a rotated leaf is served to the next connection, a
    /// half-written key keeps the previous config, and after a new client CA, certificates from
    /// the old one are refused and those from the new one accepted.
    #[tokio::test]
    async fn the_server_config_follows_its_files() {
        let dir = Dir::new("controller-delivery-reload");
        let (ca, next) = (Authority::new(), Authority::new());
        let (a, b) = (ca.server(), ca.server());
        let (old_client, new_client) = (
            ca.client_config(&ca.client()),
            ca.client_config(&next.client()),
        );
        dir.replace("ca.crt", &ca.pem());
        dir.replace("tls.crt", &a.cert);
        dir.replace("tls.key", &a.key);
        let mut reloader = load(DeliveryTlsFiles {
            cert: dir.path("tls.crt"),
            key: dir.path("tls.key"),
            client_ca: dir.path("ca.crt"),
        })
        .unwrap();
        let server = ReloadingServerConfig::from(reloader.config());
        let served =
            |client: &Arc<rustls::ClientConfig>| handshake(client.clone(), server.current());
        assert_eq!(served(&old_client).await.unwrap().server, a.der);
        assert_eq!(reloader.check(), Reload::Unchanged);

        dir.replace("tls.crt", &b.cert);
        dir.replace("tls.key", &b.key[..b.key.len() / 2]);
        assert_eq!(reloader.check(), Reload::Refused);
        assert_eq!(served(&old_client).await.unwrap().server, a.der);
        dir.replace("tls.key", &b.key);
        assert_eq!(reloader.check(), Reload::Applied);
        assert_eq!(served(&old_client).await.unwrap().server, b.der);

        assert!(served(&new_client).await.is_err());
        dir.replace("ca.crt", &next.pem());
        assert_eq!(reloader.check(), Reload::Applied);
        let refused = served(&old_client).await.unwrap_err();
        assert!(refused.contains("server:"), "{refused}");
        assert_eq!(served(&new_client).await.unwrap().server, b.der);
    }
}
