//! TLS material and bearer-token checks shared by the gRPC and HTTP sides.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// TLS for both sides (rustls). All empty: plaintext.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain and private key of the server.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM CA certificates: when set, clients must present a certificate it signed (mTLS).
    pub client_ca: PathBuf,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }
}

/// Optional bearer-token authentication for gRPC and HTTP.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The token clients send as `authorization: Bearer <token>`; empty: no auth.
    /// A secret: never logged.
    pub token: String,
    /// Or a file holding it (first line), e.g. a mounted Kubernetes secret.
    pub token_file: PathBuf,
    /// Whether health (gRPC health, /healthz, /readyz) and /metrics need the token too.
    pub protect_health: bool,
    pub protect_metrics: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SecurityError {
    #[error("{what} {path}: {message}")]
    File {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|e| SecurityError::File {
        what,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The PEM files named by `[tls]`, read once at start.
pub(crate) struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl TlsFiles {
    pub(crate) fn load(config: &TlsConfig) -> Result<Option<Self>, SecurityError> {
        if !config.enabled() {
            return Ok(None);
        }
        let client_ca = if config.client_ca.as_os_str().is_empty() {
            None
        } else {
            Some(read("tls.client_ca", &config.client_ca)?)
        };
        Ok(Some(Self {
            cert: read("tls.cert", &config.cert)?,
            key: read("tls.key", &config.key)?,
            client_ca,
        }))
    }

    pub(crate) fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert, &self.key);
        let tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        match &self.client_ca {
            Some(ca) => tls.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
            None => tls,
        }
    }

    /// rustls for the HTTP side, with the same certificate and client-certificate policy.
    pub(crate) fn http(&self) -> Result<Arc<rustls::ServerConfig>, SecurityError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let bad =
            |what: &str, e: &dyn std::fmt::Display| SecurityError::Tls(format!("{what}: {e}"));
        let certs = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("tls.cert", &e))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| bad("tls.key", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("protocol versions", &e))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca) {
                    roots
                        .add(cert.map_err(|e| bad("tls.client_ca", &e))?)
                        .map_err(|e| bad("tls.client_ca", &e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| bad("tls.client_ca", &e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| bad("tls.cert/tls.key", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The expected bearer token, if authentication is on.
#[derive(Clone, Default)]
pub(crate) struct Token(Option<Arc<[u8]>>);

impl Token {
    pub(crate) fn load(config: &AuthConfig) -> Result<Self, SecurityError> {
        let token = if !config.token_file.as_os_str().is_empty() {
            let text = read("auth.token_file", &config.token_file)?;
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        } else {
            config.token.clone()
        };
        if token.is_empty() && !config.token_file.as_os_str().is_empty() {
            return Err(SecurityError::File {
                what: "auth.token_file",
                path: config.token_file.display().to_string(),
                message: "empty".into(),
            });
        }
        Ok(Self(
            (!token.is_empty()).then(|| Arc::from(token.into_bytes())),
        ))
    }

    pub(crate) fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// No token required (for endpoints configured as open).
    pub(crate) fn open() -> Self {
        Self(None)
    }

    /// Whether an `authorization` header value lets the caller in.
    pub(crate) fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(expected) = &self.0 else {
            return true;
        };
        let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        // Constant time: the comparison does not reveal how much of the token matched.
        given.ct_eq(expected).into()
    }
}

/// The gRPC side's check, as a tonic interceptor.
impl tonic::service::Interceptor for Token {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if self.admits(header) {
            Ok(request)
        } else {
            crate::metrics::record_unauthenticated();
            Err(Status::unauthenticated(
                "missing or wrong bearer token (authorization: Bearer <token>)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        let token = Token(Some(Arc::from(b"s3cret".to_vec())));
        assert!(token.admits(Some(b"Bearer s3cret")));
        assert!(!token.admits(Some(b"Bearer s3cre")));
        assert!(!token.admits(Some(b"Bearer s3cret2")));
        assert!(!token.admits(Some(b"s3cret")));
        assert!(!token.admits(None));
        assert!(Token::open().admits(None));
    }
}
