//! TLS for every connection (source, staging), with libpq's `sslmode` meanings, on rustls.
//!
//! | sslmode | encryption | server certificate |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `allow` | only if the server insists (plain first) | checked as `verify-ca` when a root file exists |
//! | `prefer` (default) | when the server offers it | as for `allow` |
//! | `require` | always | as for `allow` |
//! | `verify-ca` | always | signed by the root certificates |
//! | `verify-full` | always | signed, and names the host |
//!
//! Root certificates: `sslrootcert` (a PEM file, or `system` for the platform's trust store, which
//! only `verify-full` may use and which makes it the default mode), else `~/.postgresql/root.crt`.
//! A client certificate (`sslcert`, `sslkey`, default `~/.postgresql/postgresql.{crt,key}`) is
//! sent when its file exists; the key must not be readable by others. `sslcrl` (default
//! `~/.postgresql/root.crl`) revokes server certificates. Unix-socket connections never use TLS,
//! as with libpq.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::settings::Resolved;

/// When to encrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// A connection's TLS, decided from its settings before any connection is tried.
#[derive(Clone)]
pub struct Tls {
    pub mode: Mode,
    /// As written (or the default), for messages.
    pub sslmode: String,
    pub verify: Verify,
    /// What the server's certificate is checked against, for messages.
    pub roots: Option<String>,
    /// The client certificate sent, for messages.
    pub client_cert: Option<PathBuf>,
    config: Option<Arc<rustls::ClientConfig>>,
}

impl Tls {
    /// The driver's connector (unverified connections still check the handshake's signatures).
    pub fn connector(&self) -> Option<tokio_postgres_rustls::MakeRustlsConnect> {
        self.config
            .as_ref()
            .map(|c| tokio_postgres_rustls::MakeRustlsConnect::new((**c).clone()))
    }

    /// Decide TLS from resolved settings, reading the certificate files now: a missing or broken
    /// file is an error before any connection.
    pub fn from_settings(r: &Resolved) -> Result<Tls, String> {
        let rootcert = r.get("sslrootcert");
        let system = rootcert == Some("system");
        let sslmode = match r.get("sslmode") {
            Some(m) => m.to_string(),
            None if system => "verify-full".into(),
            None => "prefer".into(),
        };
        let (mode, wants) = match sslmode.as_str() {
            "disable" => (Mode::Disable, Verify::Nothing),
            "allow" => (Mode::Allow, Verify::Nothing),
            "prefer" => (Mode::Prefer, Verify::Nothing),
            "require" => (Mode::Require, Verify::Nothing),
            "verify-ca" => (Mode::Require, Verify::Chain),
            "verify-full" => (Mode::Require, Verify::ChainAndName),
            other => {
                return Err(format!(
                    "sslmode=\"{other}\" is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ))
            }
        };
        if mode == Mode::Disable {
            return Ok(Tls {
                mode,
                sslmode,
                verify: Verify::Nothing,
                roots: None,
                client_cert: None,
                config: None,
            });
        }
        if system && wants != Verify::ChainAndName {
            return Err(format!(
                "weak sslmode \"{sslmode}\" may not be used with sslrootcert=system (use \"verify-full\")"
            ));
        }
        let home_file = |name: &str| r.home.as_ref().map(|h| h.join(".postgresql").join(name));
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        // Root certificates: required by verify-*, used by the weaker modes when the file exists.
        let (roots, roots_shown) = if system {
            (
                Some(system_roots()?),
                Some("the system's trusted roots".to_string()),
            )
        } else {
            let file = rootcert
                .map(PathBuf::from)
                .or_else(|| home_file("root.crt"));
            match file {
                Some(f) if f.exists() => (
                    Some(root_file(&f)?),
                    Some(format!("the root certificate file {}", f.display())),
                ),
                f if wants != Verify::Nothing => {
                    let shown =
                        f.map_or("~/.postgresql/root.crt".into(), |f| f.display().to_string());
                    return Err(format!(
                        "sslmode={sslmode}: root certificate file \"{shown}\" does not exist; either \
                         provide the file (sslrootcert), use the system's trusted roots \
                         (sslrootcert=system), or change sslmode to disable server certificate \
                         verification"
                    ));
                }
                _ => (None, None),
            }
        };
        let verify = match (&roots, wants) {
            (Some(_), Verify::Nothing) => Verify::Chain,
            (_, w) => w,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match roots {
            None => Arc::new(Unverified(Arc::clone(&provider))),
            Some(store) => {
                let mut builder = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(store),
                    Arc::clone(&provider),
                );
                // A CRL file that does not exist is not used (as libpq).
                let crl = r.get("sslcrl").map(PathBuf::from);
                let crl = crl.or_else(|| home_file("root.crl")).filter(|f| f.exists());
                if let Some(f) = crl {
                    builder = builder
                        .with_crls(crl_file(&f)?)
                        .only_check_end_entity_revocation();
                }
                let webpki = builder
                    .build()
                    .map_err(|e| format!("the server certificate checks cannot be set up: {e}"))?;
                match verify {
                    Verify::ChainAndName => webpki,
                    _ => Arc::new(ChainOnly(webpki)),
                }
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS cannot be set up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let (config, client_cert) = client_auth(builder, r)?;
        Ok(Tls {
            mode,
            sslmode,
            verify,
            roots: roots_shown,
            client_cert,
            config: Some(Arc::new(config)),
        })
    }

    /// A TLS failure said plainly, when `e` is one: untrusted certificate (naming what it was
    /// checked against), a host name mismatch (naming both), a refused client certificate, a
    /// server without TLS.
    pub fn describe(&self, e: &tokio_postgres::Error, host: &str) -> Option<String> {
        if let Some(t) = rustls_error(e) {
            return Some(self.describe_rustls(t, host));
        }
        let text = e.to_string();
        if text.contains("server does not support TLS") {
            return Some(format!(
                "the server does not offer TLS and sslmode={} requires it",
                self.sslmode
            ));
        }
        None
    }

    fn describe_rustls(&self, e: &rustls::Error, host: &str) -> String {
        use rustls::AlertDescription as A;
        let roots = self.roots.as_deref().unwrap_or("the root certificates");
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                    "the server's certificate is not trusted: it is not signed by {roots} (sslmode={})",
                    self.sslmode
                ),
                CertificateError::NotValidForName => {
                    format!("the server's certificate does not name the host \"{host}\" (sslmode=verify-full)")
                }
                CertificateError::NotValidForNameContext { presented, .. } => format!(
                    "the server's certificate is for {} but the host is \"{host}\" (sslmode=verify-full)",
                    if presented.is_empty() {
                        "no host name in its subjectAltName (its CN is not read)".to_string()
                    } else {
                        presented
                            .iter()
                            .map(|p| plain_name(p))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the server's certificate has expired".into()
                }
                CertificateError::Revoked => "the server's certificate is revoked (sslcrl)".into(),
                CertificateError::UnknownRevocationStatus => {
                    "the server's certificate is not covered by the CRL file (sslcrl): it is from another issuer".into()
                }
                CertificateError::Other(o) if format!("{o:?}").contains("UnsupportedCertVersion") => {
                    "the server's certificate is an X.509 v1 certificate, which this build cannot \
                     check: reissue it as v3 with a subjectAltName, or connect with sslmode=require \
                     and no root certificate file"
                        .into()
                }
                other => format!("the server's certificate was refused: {other:?}"),
            },
            rustls::Error::AlertReceived(
                a @ (A::BadCertificate
                | A::UnknownCA
                | A::CertificateRequired
                | A::CertificateUnknown
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::AccessDenied
                | A::DecryptError),
            ) => match &self.client_cert {
                Some(c) => format!(
                    "the server refused the client certificate {} (TLS alert: {a:?})",
                    c.display()
                ),
                None => format!(
                    "the server asks for a client certificate and none was given (sslcert, sslkey; TLS alert: {a:?})"
                ),
            },
            other => format!("TLS: {other}"),
        }
    }
}

/// A certificate's name as rustls renders it (`DnsName("db.internal")`, `IpAddress(…)`), plainly.
fn plain_name(p: &str) -> String {
    let inner = p
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(p);
    inner.trim_matches('"').to_string()
}

/// The client certificate and key to send, when the certificate file exists (as libpq, for a given
/// path and for the default one).
fn client_auth(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    r: &Resolved,
) -> Result<(rustls::ClientConfig, Option<PathBuf>), String> {
    let home_file = |name: &str| r.home.as_ref().map(|h| h.join(".postgresql").join(name));
    // Sent when the file exists (as libpq, for a given path and for the default one).
    let cert = r
        .get("sslcert")
        .map(|c| (PathBuf::from(c), true))
        .or_else(|| home_file("postgresql.crt").map(|f| (f, false)));
    match cert {
        Some((cert, explicit)) if cert.exists() => {
            let key = r
                .get("sslkey")
                .map(PathBuf::from)
                .or_else(|| home_file("postgresql.key"))
                .unwrap_or_else(|| PathBuf::from("postgresql.key"));
            let chain = client_chain(&cert)?;
            let key_der = client_key(&key, r.get("sslpassword").is_some())?;
            match builder.clone().with_client_auth_cert(chain, key_der) {
                Ok(config) => Ok((config, Some(cert))),
                Err(e) if format!("{e:?}").contains("UnsupportedCertVersion") => {
                    let why = format!(
                        "client certificate {} is an X.509 v1 certificate, which this build \
                         cannot use: reissue it as v3 (openssl x509 -req … -extfile with a \
                         basicConstraints or subjectAltName line)",
                        cert.display()
                    );
                    if explicit {
                        return Err(why);
                    }
                    log::warn!("{why}; connecting without it");
                    Ok((builder.with_no_client_auth(), None))
                }
                Err(e) => Err(format!(
                    "the client certificate {} and key {} do not go together: {e}",
                    cert.display(),
                    key.display()
                )),
            }
        }
        _ => Ok((builder.with_no_client_auth(), None)),
    }
}

/// The rustls error inside a driver error, if any (io errors hide their inner error from
/// `source()`, so each is opened).
fn rustls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(t);
            }
        }
        cur = err.source();
    }
    None
}

fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(
            "sslrootcert=system: the system's trust store holds no usable certificate".into(),
        );
    }
    Ok(store)
}

/// Every PEM item of one kind in a file; an unreadable file, a bad item or none at all is an
/// error naming the file as `what`.
fn pem_items<T: PemObject>(f: &Path, what: &str, kind: &str) -> Result<Vec<T>, String> {
    let bad = |why: String| format!("{what} {}: {why}", f.display());
    let items: Vec<T> = T::pem_file_iter(f)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if items.is_empty() {
        return Err(bad(format!("no PEM {kind} in it")));
    }
    Ok(items)
}

fn root_file(f: &Path) -> Result<rustls::RootCertStore, String> {
    let what = "root certificate file";
    let mut store = rustls::RootCertStore::empty();
    for c in pem_items::<CertificateDer>(f, what, "certificate")? {
        store
            .add(c)
            .map_err(|e| format!("{what} {}: a certificate cannot be used: {e}", f.display()))?;
    }
    Ok(store)
}

fn crl_file(f: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    pem_items(f, "certificate revocation list", "X509 CRL")
}

fn client_chain(f: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    pem_items(f, "client certificate file", "certificate")
}

/// The client's private key, refused as libpq refuses it when others may read it.
fn client_key(f: &Path, has_password: bool) -> Result<PrivateKeyDer<'static>, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(f).map_err(|e| {
        format!(
            "certificate present, but not private key file \"{}\": {e}",
            f.display()
        )
    })?;
    if !meta.is_file() {
        return Err(format!(
            "private key file \"{}\" is not a regular file",
            f.display()
        ));
    }
    // libpq's rule: no group or world bits for the owner's own key; group read only for root's.
    let mode = meta.permissions().mode() & 0o777;
    let forbidden = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if mode & forbidden != 0 {
        return Err(format!(
            "private key file \"{}\" has group or world access; file must have permissions u=rw \
             (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if \
             owned by root",
            f.display()
        ));
    }
    let text = std::fs::read(f).map_err(|e| format!("private key file {}: {e}", f.display()))?;
    if memchr::memmem::find(&text, b"ENCRYPTED").is_some() {
        return Err(format!(
            "private key file {} is encrypted{}: this build reads unencrypted PEM keys only \
             (decrypt it with `openssl pkey -in KEY -out KEY.plain`, mode 0600)",
            f.display(),
            if has_password { " (sslpassword)" } else { "" }
        ));
    }
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        format!(
            "private key file {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}",
            f.display()
        )
    })
}

/// `require` and weaker without root certificates: encrypted, the server not authenticated (as
/// libpq). The handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root; the host name is not compared. The chain is
/// checked before the name, so a name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{ConnInfo, Endpoint};

    fn tls(s: &str, home: &Path) -> Result<Tls, String> {
        let c: ConnInfo = match Endpoint::parse(s).unwrap() {
            Endpoint::Database(c) => c,
            _ => unreachable!(),
        };
        let home = home.display().to_string();
        let env = move |k: &str| (k == "HOME").then(|| home.clone());
        Tls::from_settings(&super::super::settings::resolve(&c, &env)?)
    }

    #[test]
    fn sslmode_decides_encryption_and_checks_as_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let root = dir.path().join("root.pem");
        std::fs::write(&root, ca.pem()).unwrap();
        let root = root.display().to_string();
        let home = dir.path();

        let t = tls("host=h", home).unwrap();
        assert_eq!(
            (t.mode, t.verify, t.sslmode.as_str()),
            (Mode::Prefer, Verify::Nothing, "prefer")
        );
        assert!(t.connector().is_some());
        let t = tls("host=h sslmode=disable", home).unwrap();
        assert_eq!(t.mode, Mode::Disable);
        assert!(t.connector().is_none());
        // A root file makes the weaker modes check the chain (libpq's compatibility rule).
        let t = tls(&format!("host=h sslmode=require sslrootcert={root}"), home).unwrap();
        assert_eq!((t.mode, t.verify), (Mode::Require, Verify::Chain));
        assert_eq!(
            t.roots.unwrap(),
            format!("the root certificate file {root}")
        );
        let t = tls(
            &format!("host=h sslmode=verify-full sslrootcert={root}"),
            home,
        )
        .unwrap();
        assert_eq!(t.verify, Verify::ChainAndName);
        // verify-* without a root file, a weak mode with the system store, an unknown mode.
        let e = tls("host=h sslmode=verify-ca", home).err().unwrap();
        assert!(e.contains(".postgresql/root.crt\" does not exist"), "{e}");
        let e = tls("host=h sslmode=require sslrootcert=system", home)
            .err()
            .unwrap();
        assert!(e.contains("weak sslmode \"require\""), "{e}");
        let e = tls("host=h sslmode=verify", home).err().unwrap();
        assert!(e.contains("not one of"), "{e}");
        // A file that holds no certificate is named.
        let e = tls(
            &format!("host=h sslmode=verify-ca sslrootcert={}", home.display()),
            home,
        )
        .err()
        .unwrap();
        assert!(e.starts_with("root certificate file"), "{e}");
        // Client key: others may read it → refused; encrypted → refused, naming the file.
        use std::os::unix::fs::PermissionsExt;
        let (crt, k) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        std::fs::write(&crt, ca.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        let conn = format!("host=h sslcert={} sslkey={}", crt.display(), k.display());
        let t = tls(&conn, home).unwrap();
        assert_eq!(t.client_cert.as_deref(), Some(crt.as_path()));
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o604)).unwrap();
        let e = tls(&conn, home).err().unwrap();
        assert!(e.contains("has group or world access"), "{e}");
        std::fs::write(
            &k,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = tls(&conn, home).err().unwrap();
        assert!(e.contains("is encrypted"), "{e}");
    }
}
