//! TLS termination: the certificate is chosen by SNI from the snapshot being served.

use crate::pipeline::Gateway;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::fmt;
use std::sync::Arc;

/// Resolves certificates from whatever snapshot is current, so a new snapshot brings new
/// certificates without rebuilding the listener.
struct SniResolver(Arc<Gateway>);

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0
            .snapshot
            .load()
            .as_ref()?
            .certificate(hello.server_name())
    }
}

/// A server config with ALPN h2 and http/1.1 whose certificates follow the snapshot.
pub fn server_config(gateway: Arc<Gateway>) -> Result<ServerConfig, rustls::Error> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver(gateway)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
