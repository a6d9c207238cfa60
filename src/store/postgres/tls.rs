//! The ledger's connections over TLS, with libpq's URL parameters, so that a URL an operator
//! uses with psql works here unchanged: `sslmode` (`disable`, `prefer` (the default), `require`,
//! `verify-ca`, `verify-full`), `sslrootcert` (a PEM file of trusted CAs; the system's roots
//! without it) and `sslcert` / `sslkey` (a client certificate).
//!
//! tokio-postgres reads `sslmode` only up to `require` and none of the files, so they are taken
//! out of the URL here and turned into a rustls configuration; what tokio-postgres is told is
//! whether to ask for TLS at all (`prefer`) or insist on it (`require` and stronger). As in
//! libpq, `require` and `prefer` encrypt without checking whom they talk to unless a root
//! certificate is named (then they check as `verify-ca` does), `verify-ca` checks the
//! certificate's chain, and `verify-full` also the host name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS parameters a ledger URL carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Why the TLS parameters cannot be used, in words fit for a start-up refusal (never the URL).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode `{0}` is not one of disable, prefer, require, verify-ca, verify-full")]
    Mode(String),
    #[error("{param} {path}: {reason}")]
    File {
        param: &'static str,
        path: String,
        reason: String,
    },
    #[error("sslcert and sslkey go together: the URL names only {0}")]
    HalfAPair(&'static str),
    #[error("no CA roots to verify the server with: {0}")]
    NoRoots(String),
}

const PARAMS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Takes libpq's TLS parameters out of a ledger URL (a `postgres://` URL's query, or a
/// `key=value` string's pairs): the URL tokio-postgres is given, and the settings.
pub fn split(url: &str) -> Result<(String, TlsSettings), TlsError> {
    let mut found: Vec<(String, String)> = Vec::new();
    let rest = if let Some((base, query)) = url.split_once('?').filter(|_| url.contains("://")) {
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(k);
            if PARAMS.contains(&key.as_str()) {
                found.push((key, decode(v)));
            } else {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else if url.contains("://") {
        url.to_owned()
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if PARAMS.contains(&k) => found.push((k.to_owned(), v.trim_matches('\'').to_owned())),
                _ => kept.push(token),
            }
        }
        kept.join(" ")
    };
    let mut settings = TlsSettings {
        mode: SslMode::Prefer,
        root_cert: None,
        cert: None,
        key: None,
    };
    for (key, value) in found {
        match key.as_str() {
            "sslmode" => settings.mode = SslMode::parse(&value).ok_or(TlsError::Mode(value))?,
            "sslrootcert" => settings.root_cert = Some(value.into()),
            "sslcert" => settings.cert = Some(value.into()),
            _ => settings.key = Some(value.into()),
        }
    }
    match (&settings.cert, &settings.key) {
        (Some(_), None) => return Err(TlsError::HalfAPair("sslcert")),
        (None, Some(_)) => return Err(TlsError::HalfAPair("sslkey")),
        _ => {}
    }
    Ok((rest, settings))
}

/// Percent-decodes a URL query's key or value.
fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl TlsSettings {
    /// What tokio-postgres is to do about TLS.
    pub fn driver_mode(&self) -> DriverMode {
        match self.mode {
            SslMode::Disable => DriverMode::Disable,
            SslMode::Prefer => DriverMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
        }
    }

    /// The connector every connection of the ledger uses (the pool's, the listener's, the
    /// probe's), its files read once, now.
    pub fn connector(&self) -> Result<MakeRustlsConnect, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        // libpq: `require` and `prefer` verify only when a root certificate is named.
        let check = match (self.mode, &self.root_cert) {
            (SslMode::Disable, _) | (SslMode::Prefer | SslMode::Require, None) => Check::Nothing,
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, _) => Check::Chain,
            (SslMode::VerifyFull, _) => Check::ChainAndName,
        };
        let builder = match check {
            Check::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider))),
            Check::Chain | Check::ChainAndName => {
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), provider)
                    .build()
                    .map_err(|e| TlsError::NoRoots(e.to_string()))?;
                if check == Check::Chain {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                } else {
                    builder.with_webpki_verifier(webpki)
                }
            }
        };
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| file("sslcert", cert, e))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file("sslkey", key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| file("sslcert", cert, e))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }

    /// The CAs the server's certificate must chain to: `sslrootcert`'s, else the system's.
    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| file("sslrootcert", path, e))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(TlsError::File {
                        param: "sslrootcert",
                        path: path.display().to_string(),
                        reason: "holds no CA certificate (PEM)".into(),
                    });
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::NoRoots(
                        "the system has no CA certificates; name one with sslrootcert".into(),
                    ));
                }
            }
        }
        Ok(roots)
    }
}

fn file(param: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        param,
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// `verify-ca`: the certificate must chain to a trusted CA; the name it was issued for is not
/// checked (libpq's meaning).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` or `prefer` with no root certificate named: encrypted, whoever answers (libpq's
/// meaning). The handshake's signatures are still checked, so the session is the one the
/// certificate's key holder set up.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_are_taken_out_of_the_url() {
        let (rest, s) = split(
            "postgres://gw:secret@db.example.com:5432/ledger?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://gw:secret@db.example.com:5432/ledger?application_name=x"
        );
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        let (rest, s) = split("postgres://localhost/db").unwrap();
        assert_eq!((rest.as_str(), s.mode), ("postgres://localhost/db", SslMode::Prefer));
        let (rest, s) = split("host=db user=gw sslmode=require dbname=l").unwrap();
        assert_eq!((rest.as_str(), s.mode), ("host=db user=gw dbname=l", SslMode::Require));
        assert!(matches!(split("postgres://h/d?sslmode=allowed"), Err(TlsError::Mode(m)) if m == "allowed"));
        assert!(matches!(
            split("postgres://h/d?sslcert=/c.pem"),
            Err(TlsError::HalfAPair("sslcert"))
        ));
    }

    #[test]
    fn a_missing_root_file_is_named() {
        let (_, s) = split("postgres://h/d?sslmode=verify-full&sslrootcert=/nowhere/ca.pem").unwrap();
        let e = s.connector().err().expect("refused").to_string();
        assert!(e.starts_with("sslrootcert /nowhere/ca.pem: "), "{e}");
    }
}
