//! PEM certificate and private-key files, read for the controller's and the dataplane's
//! delivery TLS alike.
//!
//! Errors name the file and what was wrong with it, never its content: a key file must not end
//! up in a log because it was passed to the wrong flag.
//!
//! [`reload`] re-reads the files while the process runs, so rotated certificates are used
//! without a restart.

pub mod reload;
#[cfg(any(test, feature = "test-pki"))]
pub mod testing;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// Why a PEM file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not PEM, or holds no item of the wanted kind.
    #[error("{}: {what}", path.display())]
    Pem {
        /// File.
        path: PathBuf,
        /// What is wrong, without any of the file's content.
        what: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, PemFileError> {
    std::fs::read(path).map_err(|source| PemFileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every `CERTIFICATE` block in the file, in order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if certs.is_empty() {
        return Err(PemFileError::Pem {
            path: path.to_path_buf(),
            what: "no PEM CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// The first private key in the file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemFileError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => PemFileError::Pem {
            path: path.to_path_buf(),
            what: "no PEM private key block found (PKCS#8, PKCS#1 or SEC1)".into(),
        },
        e => pem_error(path, &e),
    })
}

/// Describes a PEM error without the parts of it that quote the file.
fn pem_error(path: &Path, error: &pem::Error) -> PemFileError {
    PemFileError::Pem {
        path: path.to_path_buf(),
        what: pem_what(error).into(),
    }
}

/// What a PEM error says, without any of the input.
fn pem_what(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64",
        pem::Error::NoItemsFound => "no usable PEM block found",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        _ => "not a readable PEM file",
    }
}

/// A certificate chain and its private key, from PEM text, as a TLS server uses them: at least
/// one certificate, a private key of a supported type (ring), and the two belonging together.
///
/// The controller checks a Stage's certificate Secret with this before it reports the Stage
/// Accepted, and the dataplane builds its certificates with it, so the two never disagree
/// about a certificate. Errors describe what is wrong, never the content.
pub fn certified_key(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<rustls::sign::CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not PEM: {}", pem_what(&e)))?;
    if chain.is_empty() {
        return Err("tls.crt holds no PEM CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            "tls.key holds no PEM private key block (PKCS#8, PKCS#1 or SEC1)".to_string()
        }
        e => format!("tls.key is not PEM: {}", pem_what(&e)),
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| "tls.key is not a usable RSA, ECDSA or Ed25519 private key".to_string())?;
    let certified = rustls::sign::CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "tls.key does not belong to the first certificate of tls.crt".to_string()
        }
        _ => "the first certificate of tls.crt cannot be read".to_string(),
    })?;
    Ok(certified)
}
