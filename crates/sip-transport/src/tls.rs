//! TLS for SIP (RFC 3261 §26.2.1, RFC 5630) and for secure WebSockets (RFC 7118
//! §5.1): rustls on the ring provider, certificates and keys loaded from PEM.

use crate::error::TransportError;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// What the TLS and WSS listeners present, and what outbound TLS trusts.
///
/// `server` is used by the `tls` and `wss` listeners (no client certificates are
/// asked for). `client` opens outbound TLS connections and verifies the peer's
/// certificate against its roots; with `None`, outbound TLS is refused with
/// [`TransportError::NoTlsRoots`], so a connection is never opened unverified.
#[derive(Clone)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The listeners' rustls configuration.
    pub server: Arc<ServerConfig>,
    /// The configuration for connections we open; `None` refuses outbound TLS.
    pub client: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("client", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// The crypto provider of every configuration built here: ring, named
/// explicitly so that no process-wide default has to be installed.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// A configuration from rustls configurations built by the caller (e.g. a
    /// client configuration with its own certificate verifier).
    pub fn new(server: Arc<ServerConfig>, client: Option<Arc<ClientConfig>>) -> TlsConfig {
        TlsConfig { server, client }
    }

    /// Builds the configuration from PEM files: `cert_chain` holds the
    /// certificate first, then its intermediates; `private_key` holds the key
    /// (PKCS#8, PKCS#1 or SEC1); `ca_file` holds the roots that outbound
    /// connections trust (without it, outbound TLS is refused).
    ///
    /// Every error names the file and says what is wrong with it.
    pub fn from_pem_files(
        cert_chain: &Path,
        private_key: &Path,
        ca_file: Option<&Path>,
    ) -> Result<TlsConfig, TransportError> {
        let certs = load_certs(cert_chain)?;
        let key = PrivateKeyDer::from_pem_file(private_key)
            .map_err(|e| file_error(private_key, pem_reason(&e, "private key")))?;
        let server = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::TlsSetup { source: e })?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                file_error(
                    private_key,
                    format!(
                        "does not go with the certificate in {}: {e}",
                        cert_chain.display()
                    ),
                )
            })?;
        let client = match ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in load_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| file_error(path, format!("bad CA certificate: {e}")))?;
                }
                Some(Arc::new(client_config(roots)?))
            }
            None => None,
        };
        Ok(TlsConfig {
            server: Arc::new(server),
            client,
        })
    }
}

/// A client configuration trusting `roots`, on the ring provider.
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, TransportError> {
    Ok(ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::TlsSetup { source: e })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(path, pem_reason(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn pem_reason(error: &rustls_pki_types::pem::Error, what: &str) -> String {
    match error {
        rustls_pki_types::pem::Error::NoItemsFound => format!("no PEM {what} in the file"),
        rustls_pki_types::pem::Error::Io(e) => format!("cannot read: {e}"),
        other => format!("bad PEM: {other}"),
    }
}

fn file_error(path: &Path, reason: String) -> TransportError {
    TransportError::TlsFile {
        path: path.to_path_buf(),
        reason,
    }
}

/// The name an outbound TLS connection verifies (and sends as SNI, RFC 6066
/// §3): the given server name, else the peer's IP address (RFC 5922 §7.2 wants
/// the domain when there is one; an address is verified against the
/// certificate's IP SANs and sent as no SNI).
pub(crate) fn server_name(
    name: Option<&str>,
    ip: IpAddr,
) -> Result<ServerName<'static>, TransportError> {
    match name {
        Some(name) => {
            ServerName::try_from(name.to_owned()).map_err(|_| TransportError::InvalidServerName {
                name: name.to_owned(),
            })
        }
        None => Ok(ServerName::IpAddress(ip.into())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sip-transport-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_pair(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["sip.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn loads_a_pair_and_roots() {
        let dir = scratch("ok");
        let (cert, key) = write_pair(&dir);
        let config = TlsConfig::from_pem_files(&cert, &key, Some(&cert)).unwrap();
        assert!(config.client.is_some());
        let config = TlsConfig::from_pem_files(&cert, &key, None).unwrap();
        assert!(config.client.is_none());
    }

    #[test]
    fn errors_name_the_file_and_the_reason() {
        let dir = scratch("bad");
        let (cert, key) = write_pair(&dir);
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a pem file\n").unwrap();
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        let other_key = dir.join("other-key.pem");
        std::fs::write(&other_key, other.serialize_pem()).unwrap();
        let cases: [(&Path, &Path, Option<&Path>, &str, &str); 5] = [
            (&missing, &key, None, "missing.pem", "cannot read"),
            (&empty, &key, None, "empty.pem", "no PEM certificate"),
            (&cert, &empty, None, "empty.pem", "no PEM private key"),
            (&cert, &other_key, None, "other-key.pem", "does not go"),
            (&cert, &key, Some(&empty), "empty.pem", "no PEM certificate"),
        ];
        for (cert, key, ca, file, reason) in cases {
            let err = TlsConfig::from_pem_files(cert, key, ca).unwrap_err();
            assert!(matches!(err, TransportError::TlsFile { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains(file) && text.contains(reason), "{text}");
        }
    }

    #[test]
    fn server_name_is_the_name_else_the_ip() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            server_name(Some("sip.example.com"), ip).unwrap(),
            ServerName::try_from("sip.example.com").unwrap()
        );
        assert_eq!(
            server_name(None, ip).unwrap(),
            ServerName::IpAddress(ip.into())
        );
        assert!(matches!(
            server_name(Some("bad name!"), ip),
            Err(TransportError::InvalidServerName { .. })
        ));
    }
}
