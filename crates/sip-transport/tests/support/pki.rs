//! A test CA and a server certificate it signed for `sip.test` and 127.0.0.1, made at test
//! time with rcgen and written as PEM files: no private key is committed. Shared by the
//! sip-transport and daemon tests (the daemon's include it by path).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// The PEM files of a test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate: what clients trust.
    pub ca: PathBuf,
    /// The server certificate (`sip.test`, 127.0.0.1), signed by the CA.
    pub certificate: PathBuf,
    /// The server certificate's private key.
    pub private_key: PathBuf,
}

impl TestPki {
    /// Makes a CA and a server certificate and writes them into `dir`.
    pub fn generate(dir: &Path) -> TestPki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Tandem test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["sip.test".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "sip.test");
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pki = TestPki {
            ca: dir.join("ca.pem"),
            certificate: dir.join("cert.pem"),
            private_key: dir.join("key.pem"),
        };
        std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
        std::fs::write(&pki.certificate, cert.pem()).unwrap();
        std::fs::write(&pki.private_key, key.serialize_pem()).unwrap();
        pki
    }
}
