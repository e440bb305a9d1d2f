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
    let what = match error {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64",
        pem::Error::NoItemsFound => "no usable PEM block found",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        _ => "not a readable PEM file",
    };
    PemFileError::Pem {
        path: path.to_path_buf(),
        what: what.into(),
    }
}
