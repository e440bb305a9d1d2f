//! TLS for snapshot delivery, the dataplane's side: trust only the controller's CA, and present
//! this dataplane's client certificate.
//!
//! Errors name the file and what was wrong with it, never its content (`tollhouse-pemfile`
//! reads the files): a key file must not end up in a log because it was passed to the wrong flag.
//!
//! The files are re-read every [`RELOAD_INTERVAL`] ([`Reloader`], `tollhouse-pemfile`'s): when
//! their bytes change, a new config is built and swapped in, and the poll's next connection
//! uses it. Files that do not build (half written, a certificate and key from different
//! updates) keep the previous config.

use rustls::{ClientConfig, RootCertStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tollhouse_pemfile::reload;
use tollhouse_pemfile::{certificates, private_key};

/// How often [`Reloader::watch`](reload::Reloader::watch) re-reads the files in production.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The files that make up the dataplane's trust in the controller and its own identity.
#[derive(Clone, Debug)]
pub struct ControllerTlsFiles {
    /// PEM CA certificate(s): the only roots trusted for the controller.
    pub ca: PathBuf,
    /// PEM client certificate chain and its private key, when the controller asks for one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Why the controller TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryTlsError {
    /// A certificate or key file could not be read or parsed.
    #[error(transparent)]
    File(#[from] tollhouse_pemfile::PemFileError),
    /// The CA file holds a certificate rustls does not accept as a trust anchor.
    #[error("{}: not usable as a CA: {source}", path.display())]
    Ca {
        /// File.
        path: PathBuf,
        /// Cause.
        source: rustls::Error,
    },
    /// rustls refused the client certificate and key (for example, they do not belong
    /// together).
    #[error("{} and {}: {source}", cert.display(), key.display())]
    Identity {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// Cause.
        source: rustls::Error,
    },
    /// No TLS version is left with the ring provider (not expected).
    #[error("TLS versions: {0}")]
    Versions(rustls::Error),
}

/// A TLS 1.2/1.3 client config (ring) whose only roots are `files.ca`, presenting the client
/// certificate when one is given.
pub fn client_config(files: &ControllerTlsFiles) -> Result<ClientConfig, DeliveryTlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(&files.ca)? {
        roots.add(ca).map_err(|source| DeliveryTlsError::Ca {
            path: files.ca.clone(),
            source,
        })?;
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(DeliveryTlsError::Versions)?
            .with_root_certificates(roots);
    // No ALPN here: the hyper-rustls connector sets it (http/1.1) and refuses a preset one.
    let config = match &files.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|source| DeliveryTlsError::Identity {
                cert: cert.clone(),
                key: key.clone(),
                source,
            })?,
    };
    Ok(config)
}

/// Re-reads the controller TLS files and swaps in a new config when their bytes change; the
/// poll makes a new client when the [`current`](tollhouse_pemfile::reload::Reloading::current)
/// config is a new one.
pub type Reloader = reload::Reloader<ClientConfig, DeliveryTlsError>;

/// Reads the files and builds the first config. A problem here is a startup error.
pub fn load(files: ControllerTlsFiles) -> Result<Reloader, DeliveryTlsError> {
    let paths = std::iter::once(&files.ca)
        .chain(files.identity.iter().flat_map(|(cert, key)| [cert, key]))
        .cloned()
        .collect();
    Reloader::load("controller TLS", paths, move || client_config(&files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollhouse_pemfile::reload::Reload;
    use tollhouse_pemfile::testing::{handshake, Authority, Dir};

    /// Each error names the file at fault and quotes nothing from it.
    #[test]
    fn errors_name_the_file_and_never_show_the_key() {
        let dir = Dir::new("dp-delivery-tls");
        let ca = Authority::new();
        let leaf = ca.client();
        dir.replace("ca.pem", &ca.pem());
        dir.replace("dp.pem", &leaf.cert);
        dir.replace("dp.key", &leaf.key);
        let (ca_file, cert_file, key_file) =
            (dir.path("ca.pem"), dir.path("dp.pem"), dir.path("dp.key"));

        let good = ControllerTlsFiles {
            ca: ca_file.clone(),
            identity: Some((cert_file.clone(), key_file.clone())),
        };
        assert!(client_config(&good).is_ok());
        let cases = [
            (
                key_file.clone(),
                Some((cert_file.clone(), key_file.clone())),
                &key_file,
            ),
            (
                ca_file.clone(),
                Some((key_file.clone(), key_file.clone())),
                &key_file,
            ),
            (
                ca_file.clone(),
                Some((cert_file.clone(), cert_file.clone())),
                &cert_file,
            ),
            (dir.path("missing.pem"), None, &dir.path("missing.pem")),
        ];
        for (ca, identity, culprit) in cases {
            let error = client_config(&ControllerTlsFiles { ca, identity })
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&culprit.display().to_string()),
                "{error} should name {}",
                culprit.display()
            );
            for line in leaf.key.lines() {
                assert!(!error.contains(line), "{error} shows key material");
            }
        }
    }

    /// The client follows its files: a rotated certificate is presented on the next
    /// connection (from a new config, which is how the poll notices), broken files keep the
    /// previous config until they are fixed, and a new CA file changes whom it trusts.
    #[tokio::test]
    async fn the_client_config_follows_its_files() {
        let dir = Dir::new("dataplane-controller-reload");
        let (ca, next) = (Authority::new(), Authority::new());
        let controller = ca.server_config(&ca.server());
        let (a, b) = (ca.client(), ca.client());
        dir.replace("ca.crt", &ca.pem());
        dir.replace("tls.crt", &a.cert);
        dir.replace("tls.key", &a.key);
        let mut reloader = load(ControllerTlsFiles {
            ca: dir.path("ca.crt"),
            identity: Some((dir.path("tls.crt"), dir.path("tls.key"))),
        })
        .unwrap();
        let client = reloader.config();
        let presented =
            |server: &Arc<rustls::ServerConfig>| handshake(client.current(), server.clone());
        assert_eq!(presented(&controller).await.unwrap().client, a.der);
        assert_eq!(reloader.check(), Reload::Unchanged);

        // The new certificate before its key.
        let before = client.current();
        dir.replace("tls.crt", &b.cert);
        assert_eq!(reloader.check(), Reload::Refused);
        assert!(Arc::ptr_eq(&before, &client.current()));
        assert_eq!(presented(&controller).await.unwrap().client, a.der);
        dir.replace("tls.key", &b.key);
        assert_eq!(reloader.check(), Reload::Applied);
        assert!(!Arc::ptr_eq(&before, &client.current()));
        assert_eq!(presented(&controller).await.unwrap().client, b.der);

        // The controller moves to a new CA: the old trust refuses it until the CA file follows.
        let moved = ca.server_config(&next.server());
        let refused = presented(&moved).await.unwrap_err();
        assert!(refused.starts_with("client:"), "{refused}");
        dir.replace("ca.crt", &next.pem());
        assert_eq!(reloader.check(), Reload::Applied);
        assert_eq!(presented(&moved).await.unwrap().client, b.der);
        assert!(presented(&controller).await.is_err());
    }
}
