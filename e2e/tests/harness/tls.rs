//! TLS test fixtures shared by the test binaries: rustls clients trusting one CA, the
//! certificate a server presents, and certificate files laid out the way kubelet projects a
//! Secret into a pod.

use super::{addr, install_crypto};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tollhouse_e2e::certs;

/// A rustls client config trusting only the CA(s) in `ca`, presenting `identity`.
pub fn tls_config(ca: &Path, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    }
}

/// An HTTP client trusting only the CA(s) in `ca`, presenting `identity` (certificate, key).
pub fn tls_client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls_config(ca, identity))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A directory laid out the way kubelet mounts a Secret: each file is a symlink through
/// `..data`, itself a symlink to a directory of this version's files. An update writes a new
/// directory, swaps `..data` with one rename and removes the old one, so a reader sees all the
/// old files or all the new ones, as the Helm chart's pods do.
pub struct SecretDir {
    path: PathBuf,
    files: BTreeMap<String, String>,
    version: u32,
}

impl SecretDir {
    pub fn new<K: AsRef<str>, V: AsRef<str>>(path: PathBuf, files: &[(K, V)]) -> SecretDir {
        std::fs::create_dir_all(&path).unwrap();
        let mut secret = SecretDir {
            path,
            files: BTreeMap::new(),
            version: 0,
        };
        secret.update(files);
        for name in secret.files.keys() {
            std::os::unix::fs::symlink(format!("..data/{name}"), secret.path.join(name)).unwrap();
        }
        secret
    }

    /// Replaces the files named (the others keep their content), all at once.
    pub fn update<K: AsRef<str>, V: AsRef<str>>(&mut self, files: &[(K, V)]) {
        for (name, text) in files {
            self.files
                .insert(name.as_ref().to_string(), text.as_ref().to_string());
        }
        self.version += 1;
        let version = format!("..v{}", self.version);
        let dir = self.path.join(&version);
        std::fs::create_dir(&dir).unwrap();
        for (name, text) in &self.files {
            certs::write(&dir, name, text).unwrap();
        }
        let tmp = self.path.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.path.join("..data")).unwrap();
        if self.version > 1 {
            std::fs::remove_dir_all(self.path.join(format!("..v{}", self.version - 1))).unwrap();
        }
    }

    /// The mount point: where the pod would see the files.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// The leaf certificate the controller presents to a new connection (DER), from an in-process
/// rustls handshake trusting `ca`, presenting `identity` and verifying `server_name`.
pub fn presented(
    port: u16,
    ca: &Path,
    identity: (&Path, &Path),
    server_name: &str,
) -> Result<Vec<u8>, String> {
    let config = Arc::new(tls_config(ca, Some(identity)));
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let mut tls = rustls::ClientConnection::new(config, name).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr(port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    tls.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.to_vec())
        .ok_or_else(|| "no peer certificate".to_string())
}

/// The DER of the first certificate in `cert_pem`.
pub fn der(cert_pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}
