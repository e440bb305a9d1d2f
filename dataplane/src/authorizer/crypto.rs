//! jsonwebtoken's verification on ring, the tree's one crypto provider.
//!
//! jsonwebtoken 12 leaves the crypto to a [`CryptoProvider`]; its own are aws-lc and RustCrypto,
//! neither of which this tree carries. This one verifies only: the asymmetric algorithms an
//! issuer's JWKS can hold (RS*, PS*, ES256, ES384, EdDSA). HMAC is not here at all, so a token
//! signed "HS256" with a public key as the secret has nothing to be verified by, and signing
//! is refused (the gateway never signs a token).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};

/// The algorithms a JWT authorizer accepts.
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs the provider for the process; later calls (and a provider installed before) keep
/// what is there. Called before the first token is decoded.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

/// How a key of one algorithm is checked.
#[derive(Clone, Copy)]
enum Check {
    Rsa(&'static sig::RsaParameters),
    Other(&'static dyn sig::VerificationAlgorithm),
}

fn verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    use jsonwebtoken::AlgorithmFamily as F;
    let (check, family) = match alg {
        Algorithm::RS256 => (Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA256), F::Rsa),
        Algorithm::RS384 => (Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA384), F::Rsa),
        Algorithm::RS512 => (Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA512), F::Rsa),
        Algorithm::PS256 => (Check::Rsa(&sig::RSA_PSS_2048_8192_SHA256), F::Rsa),
        Algorithm::PS384 => (Check::Rsa(&sig::RSA_PSS_2048_8192_SHA384), F::Rsa),
        Algorithm::PS512 => (Check::Rsa(&sig::RSA_PSS_2048_8192_SHA512), F::Rsa),
        Algorithm::ES256 => (Check::Other(&sig::ECDSA_P256_SHA256_FIXED), F::Ec),
        Algorithm::ES384 => (Check::Other(&sig::ECDSA_P384_SHA384_FIXED), F::Ec),
        Algorithm::EdDSA => (Check::Other(&sig::ED25519), F::Ed),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    // The key's family must be the algorithm's: an RSA key never checks an EC signature.
    if key.family() != family {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        check,
        key: key.clone(),
    }))
}

struct RingVerifier {
    alg: Algorithm,
    check: Check,
    key: DecodingKey,
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        let ok = match (self.check, self.key.kind()) {
            (Check::Rsa(params), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
            (Check::Rsa(params), DecodingKeyKind::SecretOrDer(der)) => {
                UnparsedPublicKey::new(params, der).verify(msg, signature)
            }
            (Check::Other(alg), DecodingKeyKind::SecretOrDer(raw)) => {
                UnparsedPublicKey::new(alg, raw).verify(msg, signature)
            }
            (Check::Other(_), DecodingKeyKind::RsaModulusExponent { .. }) => {
                return Err(jsonwebtoken::signature::Error::new())
            }
        };
        ok.map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Whether `e` is a failed signature (as opposed to a malformed token).
pub fn is_bad_signature(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::InvalidSignature)
}
