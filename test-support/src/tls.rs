//! TLS for tests: certificates generated at run time (a CA, a server
//! certificate for `127.0.0.1`/`localhost`, a client certificate, and an
//! unrelated second CA for the "untrusted" cases), and whether the installed
//! `redis-server` speaks TLS at all.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use redis::{ClientTlsConfig, TlsCertificates};

use crate::process::{free_port, kill_child, server_binary, spawn_or_explain};

/// How [`TestRedis::spawn_tls`](crate::TestRedis::spawn_tls) configures the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `--tls-auth-clients yes`: clients must show a certificate the test CA signed.
    pub client_auth: bool,
}

/// One certificate and its private key, as PEM text and as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    /// Where `cert_pem` is written.
    pub cert_path: PathBuf,
    /// Where `key_pem` is written.
    pub key_path: PathBuf,
}

/// Certificates generated for one test, written as PEM files into a
/// temporary directory that lives as long as this value.
///
/// `ca` signed `server` (for `127.0.0.1` and `localhost`) and `client`;
/// `other_ca` is unrelated to them and signed `other_client`.
pub struct TestCerts {
    /// The CA the server and the trusted client certificate chain to.
    pub ca: CertFiles,
    /// The server's certificate, for `127.0.0.1` and `localhost`, signed by `ca`.
    pub server: CertFiles,
    /// A client certificate signed by `ca`.
    pub client: CertFiles,
    /// A second CA, unrelated to `ca`: trusting it means not trusting the server.
    pub other_ca: CertFiles,
    /// A client certificate signed by `other_ca`, which a server requiring
    /// client certificates from `ca` refuses.
    pub other_client: CertFiles,
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// Generates fresh keys and certificates and writes them to a temporary directory.
    pub fn generate() -> TestCerts {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let (ca, ca_issuer) = new_ca(dir.path(), "ca", "redis-memo test CA");
        let (other_ca, other_issuer) = new_ca(dir.path(), "other-ca", "redis-memo untrusted CA");
        let server = new_leaf(
            dir.path(),
            "server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca_issuer,
        );
        let client = new_leaf(
            dir.path(),
            "client",
            &["redis-memo-test-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca_issuer,
        );
        let other_client = new_leaf(
            dir.path(),
            "other-client",
            &["redis-memo-untrusted-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &other_issuer,
        );
        TestCerts {
            ca,
            server,
            client,
            other_ca,
            other_client,
            dir,
        }
    }

    /// The arguments that make a `redis-server` speak only TLS on `port`
    /// with the server certificate, trusting the CA: `--port 0 --bind
    /// 127.0.0.1 --tls-port {port} --tls-cert-file .. --tls-key-file ..
    /// --tls-ca-cert-file ..`.
    pub fn server_args(&self, port: u16) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = ["--port", "0", "--bind", "127.0.0.1"]
            .into_iter()
            .map(Into::into)
            .collect();
        args.push("--tls-port".into());
        args.push(port.to_string().into());
        for (flag, path) in [
            ("--tls-cert-file", &self.server.cert_path),
            ("--tls-key-file", &self.server.key_path),
            ("--tls-ca-cert-file", &self.ca.cert_path),
        ] {
            args.push(flag.into());
            args.push(path.clone().into_os_string());
        }
        args
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// For `Client::build_with_tls`: trust the test CA, no client certificate.
    pub fn trusting_ca(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: None,
            root_cert: Some(self.ca.cert_pem.clone().into_bytes()),
        }
    }

    /// For `Client::build_with_tls`: trust the test CA and show the client
    /// certificate it signed.
    pub fn with_client_cert(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: Some(client_tls(&self.client)),
            root_cert: Some(self.ca.cert_pem.clone().into_bytes()),
        }
    }

    /// For `Client::build_with_tls`: trust the test CA but show the client
    /// certificate the other CA signed.
    pub fn with_other_client_cert(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: Some(client_tls(&self.other_client)),
            root_cert: Some(self.ca.cert_pem.clone().into_bytes()),
        }
    }

    /// For `Client::build_with_tls`: trust only the other CA, which did not
    /// sign the server's certificate (the client certificate is the good one).
    pub fn trusting_other_ca(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: Some(client_tls(&self.client)),
            root_cert: Some(self.other_ca.cert_pem.clone().into_bytes()),
        }
    }
}

fn client_tls(files: &CertFiles) -> ClientTlsConfig {
    ClientTlsConfig {
        client_cert: files.cert_pem.clone().into_bytes(),
        client_key: files.key_pem.clone().into_bytes(),
    }
}

/// A self-signed CA, written as `{name}.crt` and `{name}.key`.
fn new_ca(
    dir: &Path,
    name: &str,
    common_name: &str,
) -> (CertFiles, CertifiedIssuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("generate a CA key");
    let key_pem = key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign the CA");
    let files = write(dir, name, issuer.pem(), key_pem);
    (files, issuer)
}

/// A certificate for `names` (IP addresses or DNS names) signed by `issuer`.
fn new_leaf(
    dir: &Path,
    name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> CertFiles {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("certificate parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, &names[0]);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("generate a key");
    let cert = params
        .signed_by(&key, &**issuer)
        .expect("sign the certificate");
    write(dir, name, cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, cert_pem: String, key_pem: String) -> CertFiles {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, &cert_pem).expect("write a certificate");
    std::fs::write(&key_path, &key_pem).expect("write a private key");
    CertFiles {
        cert_pem,
        key_pem,
        cert_path,
        key_path,
    }
}

/// Whether the installed `redis-server` (or `REDIS_SERVER`) was built with
/// TLS: a server started with `--tls-port` either answers a PING over TLS
/// (yes) or exits at once on the unknown option (no). Decided once per
/// process. Tests that need TLS skip with a message when it is `false`.
pub fn tls_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let binary = server_binary();
        let certs = TestCerts::generate();
        // Three tries, in case another process takes the free port first.
        (0..3).any(|_| {
            let port = free_port();
            let spawned = std::process::Command::new(&binary)
                .args(certs.server_args(port))
                .args([
                    "--tls-auth-clients",
                    "no",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(certs.dir())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            let mut child: Child = spawn_or_explain(&binary, spawned);
            let answered = wait_for_tls_ping(&mut child, port, &certs, Duration::from_secs(10));
            kill_child(&mut child);
            answered.is_ok()
        })
    })
}

/// Waits until the TLS server on `port` answers PING to a client that
/// trusts the test CA and shows the test client certificate; an error says
/// why not (the server exited, or never answered).
pub(crate) fn wait_for_tls_ping(
    child: &mut Child,
    port: u16,
    certs: &TestCerts,
    limit: Duration,
) -> Result<(), String> {
    let url = format!("rediss://127.0.0.1:{port}");
    let client = redis::Client::build_with_tls(url.as_str(), certs.with_client_cert())
        .map_err(|err| format!("TLS client for {url}: {err}"))?;
    let start = Instant::now();
    let mut last = String::from("no answer");
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "redis-server with --tls-port {port} exited ({status})"
            ));
        }
        match ping_with(&client) {
            Ok(()) => return Ok(()),
            Err(err) => last = err.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "redis-server on TLS port {port} did not answer PING: {last}"
    ))
}

fn ping_with(client: &redis::Client) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(1)))?;
    redis::cmd("PING").query::<String>(&mut conn).map(drop)
}
