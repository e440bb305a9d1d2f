//! TLS for snapshot delivery, the dataplane's side: trust only the controller's CA, and present
//! this dataplane's client certificate.
//!
//! Errors name the file and what was wrong with it, never its content (`tollhouse-pemfile`
//! reads the files): a key file must not end up in a log because it was passed to the wrong flag.

use rustls::{ClientConfig, RootCertStore};
use std::path::PathBuf;
use std::sync::Arc;
use tollhouse_pemfile::{certificates, private_key};

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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    /// Each error names the file at fault and quotes nothing from it.
    #[test]
    fn errors_name_the_file_and_never_show_the_key() {
        let dir =
            std::env::temp_dir().join(format!("tollhouse-dp-delivery-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["dataplane".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let (ca_file, cert_file, key_file) =
            (dir.join("ca.pem"), dir.join("dp.pem"), dir.join("dp.key"));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();

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
            (dir.join("missing.pem"), None, &dir),
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
            for line in key.serialize_pem().lines() {
                assert!(!error.contains(line), "{error} shows key material");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
