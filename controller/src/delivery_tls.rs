//! TLS for snapshot delivery: the server config that makes the snapshot server speak TLS and
//! accept only dataplanes whose client certificate chains to the given CA.
//!
//! Errors name the file and what was wrong with it, never its content (`tollhouse-pemfile`
//! reads the files): a key file must not end up in a log because it was passed to the wrong flag.

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tollhouse_pemfile::{certificates, private_key};

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

/// The acceptor the snapshot server wraps each connection with.
pub fn acceptor(files: &DeliveryTlsFiles) -> Result<tokio_rustls::TlsAcceptor, DeliveryTlsError> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config(
        files,
    )?)))
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
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    struct Files {
        dir: PathBuf,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        other_key: PathBuf,
        key_pem: String,
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn files(tag: &str) -> Files {
        let dir = std::env::temp_dir().join(format!(
            "tollhouse-delivery-tls-{tag}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Files {
            ca: write("ca.pem", &ca.pem()),
            cert: write("server.pem", &cert.pem()),
            key: write("server.key", &key.serialize_pem()),
            other_key: write("other.key", &KeyPair::generate().unwrap().serialize_pem()),
            key_pem: key.serialize_pem(),
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
                f.dir.join("missing.key"),
                f.ca.clone(),
                &f.dir,
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
}
