//! For tests (feature `test-pki`): a scratch directory whose files are replaced the way kubelet
//! and editors do, a CA issuing server and client leaves, and a TLS handshake in memory.

// Test fixtures: a failure here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// A directory under the system's temporary one, removed on drop.
pub struct Dir(PathBuf);

impl Dir {
    /// An empty directory; `tag` keeps tests of one process apart.
    pub fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("tollhouse-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    /// The file `name` in it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes to a temporary file and renames it over `name`.
    pub fn replace(&self, name: &str, text: &str) {
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    /// Removes `name`.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.path(name)).unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA that issues leaves.
pub struct Authority(CertifiedIssuer<'static, KeyPair>);

/// A leaf: certificate PEM, key PEM, certificate DER.
pub struct Leaf {
    /// Certificate, PEM.
    pub cert: String,
    /// Private key, PEM.
    pub key: String,
    /// Certificate, DER: what a peer sees.
    pub der: Vec<u8>,
}

impl Default for Authority {
    fn default() -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Authority(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }
}

impl Authority {
    /// A new self-signed CA.
    pub fn new() -> Authority {
        Authority::default()
    }

    /// Its certificate, PEM.
    pub fn pem(&self) -> String {
        self.0.pem()
    }

    fn leaf(&self, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.0).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A server leaf for `localhost`.
    pub fn server(&self) -> Leaf {
        self.leaf(
            vec!["localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client leaf.
    pub fn client(&self) -> Leaf {
        self.leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem().as_bytes()).unwrap())
            .unwrap();
        Arc::new(roots)
    }

    /// A client that trusts only this CA and presents `identity`.
    pub fn client_config(&self, identity: &Leaf) -> Arc<ClientConfig> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_client_auth_cert(
                vec![CertificateDer::from(identity.der.clone())],
                PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).unwrap(),
            )
            .unwrap();
        Arc::new(config)
    }

    /// A server that presents `leaf` and requires a client certificate from this CA.
    pub fn server_config(&self, leaf: &Leaf) -> Arc<ServerConfig> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots(), provider())
            .build()
            .unwrap();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(leaf.der.clone())],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap();
        Arc::new(config)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The leaf certificates (DER) each side of a handshake saw from the other.
#[derive(Debug)]
pub struct Peers {
    /// The server's, as the client saw it.
    pub server: Vec<u8>,
    /// The client's, as the server saw it (empty: none).
    pub client: Vec<u8>,
}

/// One handshake between `client` and `server` (for `localhost`) over an in-memory pipe: what
/// each side saw, or why it failed, `client: …` and/or `server: …`.
pub async fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> Result<Peers, String> {
    let connector = tokio_rustls::TlsConnector::from(client);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let (a, b) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from("localhost").unwrap();
    let (served, connected) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
    let leaf = |chain: Option<&[CertificateDer<'_>]>| {
        chain
            .and_then(|chain| chain.first())
            .map(|leaf| leaf.to_vec())
            .unwrap_or_default()
    };
    match (connected, served) {
        (Ok(connected), Ok(served)) => Ok(Peers {
            server: leaf(connected.get_ref().1.peer_certificates()),
            client: leaf(served.get_ref().1.peer_certificates()),
        }),
        (Err(c), Ok(_)) => Err(format!("client: {c}")),
        (Ok(_), Err(s)) => Err(format!("server: {s}")),
        (Err(c), Err(s)) => Err(format!("client: {c}; server: {s}")),
    }
}
