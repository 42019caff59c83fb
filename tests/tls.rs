//! TLS and libpq-compatible connection settings against a cluster of the test's own that refuses
//! unencrypted TCP sessions: every sslmode, root certificates (right, wrong, missing), host-name
//! checks, client certificates, the password file and its permissions, the PG* variables, the
//! service file, several hosts with target_session_attrs, and a hot standby as the source.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

const PASSWORD: &str = "Pw-of-the-tls-suite-42";

/// A CA and what it signed, as PEM.
struct Pki {
    ca: String,
    other_ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    stranger_cert: String,
    stranger_key: String,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

fn signed(
    cn: &str,
    sans: Vec<SanType>,
    issuer: &(rcgen::Certificate, KeyPair),
) -> (String, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = sans;
    p.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer.0, &issuer.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let root = ca("anonymize test CA");
        let other = ca("some other CA");
        // The server's certificate names localhost only: 127.0.0.1 is a host-name mismatch.
        let (server_cert, server_key) = signed(
            "localhost",
            vec![SanType::DnsName("localhost".try_into().unwrap())],
            &root,
        );
        let (client_cert, client_key) = signed("certuser", vec![], &root);
        let (stranger_cert, stranger_key) = signed("certuser", vec![], &other);
        Pki {
            ca: root.0.pem(),
            other_ca: other.0.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
            stranger_cert,
            stranger_key,
        }
    })
}

/// TLS on, with the files of the data directory (a standby's base backup copies them).
fn tls_settings() -> Vec<(String, String)> {
    vec![
        ("ssl".into(), "on".into()),
        ("ssl_cert_file".into(), "server.crt".into()),
        ("ssl_key_file".into(), "server.key".into()),
        ("ssl_ca_file".into(), "root.crt".into()),
    ]
}

/// The cluster: TCP only with TLS; `certuser` by client certificate, everyone else by password
/// (scram). Local socket connections are trusted (the harness uses them).
fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        let p = pki();
        let c = Cluster::start(&ClusterConfig {
            settings: tls_settings(),
            hba: Some(
                "local all all trust\n\
                 local replication all trust\n\
                 hostssl all certuser 127.0.0.1/32 cert\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\n\
                 hostnossl all all 127.0.0.1/32 reject\n"
                    .into(),
            ),
            files: vec![
                ("server.crt".into(), p.server_cert.clone().into_bytes()),
                ("server.key".into(), p.server_key.clone().into_bytes()),
                ("root.crt".into(), p.ca.clone().into_bytes()),
            ],
            ..ClusterConfig::default()
        });
        let admin = c.admin();
        for (db, sql) in [
            ("postgres", format!("CREATE ROLE certuser LOGIN SUPERUSER; CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD '{PASSWORD}'")),
            ("postgres", "CREATE DATABASE shop".to_string()),
            ("shop", "CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL); \
                      INSERT INTO people SELECT g, 'person' || g || '@example.com' FROM generate_series(1, 50) g".to_string()),
        ] {
            succeeded(
                admin
                    .program("psql")
                    .args(admin.client_args())
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c"])
                    .arg(sql),
                "setting up the TLS cluster",
            );
        }
        c
    })
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let f = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        let p = pki();
        f.write("ca.pem", &p.ca, 0o644);
        f.write("other.pem", &p.other_ca, 0o644);
        f.write("client.crt", &p.client_cert, 0o644);
        f.write("client.key", &p.client_key, 0o600);
        f.write("stranger.crt", &p.stranger_cert, 0o644);
        f.write("stranger.key", &p.stranger_key, 0o600);
        f.write(
            "rules.toml",
            "[tables.people.columns]\nid = \"keep\"\nemail = { fake = \"email\", unique = true }\n",
            0o644,
        );
        f
    }

    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A dump-to-stdout run of `people` from `source`, with `env` added and HOME set to an empty
    /// directory (no `~/.postgresql` or `~/.pgpass` of the machine's user applies).
    fn run(&self, source: &str, env: &[(&str, &str)]) -> Output {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut c = anonymize();
        c.arg("--rules")
            .arg(self.dir.path().join("rules.toml"))
            .args(["--source", source, "--target", "-", "-v"])
            .env("HOME", &home);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    }
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(o));
    assert!(out.contains("COPY public.people"), "{out}");
    for g in 1..=50 {
        assert!(
            !out.contains(&format!("\tperson{g}@example.com\n")),
            "an original email passed"
        );
    }
    assert_eq!(out.lines().filter(|l| l.contains('@')).count(), 50, "{out}");
    out
}

fn fails(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(what), "{what:?} not in: {err}");
    assert!(!err.contains(PASSWORD), "{err}");
    err
}

fn port() -> u16 {
    cluster().port()
}

#[test]
fn every_sslmode_behaves_as_libpq_says() {
    let f = Files::new();
    let p = port();
    let url =
        |host: &str, extra: &str| format!("postgres://pwuser:{PASSWORD}@{host}:{p}/shop?{extra}");
    // The server refuses unencrypted TCP sessions: disable fails and says why.
    fails(
        &f.run(&url("127.0.0.1", "sslmode=disable"), &[]),
        "the server requires TLS and sslmode=disable",
    );
    // allow (plain, then encrypted when turned away), prefer (the default) and require connect.
    ok(&f.run(&url("127.0.0.1", "sslmode=allow"), &[]));
    ok(&f.run(&url("127.0.0.1", ""), &[]));
    ok(&f.run(&url("127.0.0.1", "sslmode=require"), &[]));
    // verify-full: the root file, and a host the certificate names.
    let ca = f.path("ca.pem");
    ok(&f.run(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &[],
    ));
    // The certificate names localhost, not 127.0.0.1: verify-full says both; verify-ca accepts.
    fails(
        &f.run(
            &url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            &[],
        ),
        "the server's certificate is for localhost but the host is \"127.0.0.1\"",
    );
    ok(&f.run(
        &url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
        &[],
    ));
    // Signed by another CA than the root file: not trusted, naming the file used.
    let other = f.path("other.pem");
    fails(
        &f.run(&url("localhost", &format!("sslmode=verify-ca&sslrootcert={other}")), &[]),
        &format!("the server's certificate is not trusted: it is not signed by the root certificate file {other}"),
    );
    // require with a root file checks the chain too (libpq's compatibility rule).
    fails(
        &f.run(
            &url("localhost", &format!("sslmode=require&sslrootcert={other}")),
            &[],
        ),
        "is not trusted",
    );
    // verify-* without any root file: refused before connecting, with what to do.
    fails(
        &f.run(&url("localhost", "sslmode=verify-full"), &[]),
        "root certificate file",
    );
    // ~/.postgresql/root.crt is the default root file.
    let home = f.dir.path().join("home/.postgresql");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(f.dir.path().join("ca.pem"), home.join("root.crt")).unwrap();
    ok(&f.run(&url("localhost", "sslmode=verify-full"), &[]));
    std::fs::remove_dir_all(&home).unwrap();
    // The system's trust store does not hold the test CA; system refuses weak modes.
    fails(
        &f.run(&url("localhost", "sslrootcert=system"), &[]),
        "is not trusted",
    );
    fails(
        &f.run(&url("localhost", "sslmode=require&sslrootcert=system"), &[]),
        "weak sslmode \"require\" may not be used with sslrootcert=system",
    );
    fails(
        &f.run(&url("localhost", "sslmode=bogus"), &[]),
        "sslmode=\"bogus\" is not one of",
    );
}

#[test]
fn a_verified_refresh_creates_and_loads_staging_over_tls() {
    let f = Files::new();
    let p = port();
    let admin = cluster().admin();
    let staging = format!("shop_staging_{}", std::process::id());
    succeeded(
        admin
            .program("createdb")
            .args(admin.client_args())
            .arg(&staging),
        "createdb",
    );
    let ca = f.path("ca.pem");
    // Source and staging both verify-full; the password of each is in its URL; pg_dump
    // (--create-schema) reaches the source with the same settings.
    let url = |db: &str| {
        format!(
            "postgres://pwuser:{PASSWORD}@localhost:{p}/{db}?sslmode=verify-full&sslrootcert={ca}"
        )
    };
    let o = run(anonymize()
        .arg("--rules")
        .arg(f.dir.path().join("rules.toml"))
        .args([
            "--source",
            &url("shop"),
            "--target",
            &url(&staging),
            "--create-schema",
        ])
        .env("HOME", f.dir.path()));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    let count = |db: &str, sql: &str| {
        let o = admin
            .program("psql")
            .args(admin.client_args())
            .args(["-X", "-At", "-d", db, "-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(count(&staging, "SELECT count(*) FROM people"), "50");
    assert_eq!(
        count(
            &staging,
            "SELECT count(*) FROM people WHERE email LIKE 'person%@example.com'"
        ),
        "0"
    );
    // The sessions were encrypted: staging's log of connections is not needed, the server refuses
    // anything else over TCP. A wrong password for staging fails alone, without being shown.
    let bad = url(&staging).replace(PASSWORD, "Not-the-pw-99");
    let o = run(anonymize()
        .arg("--rules")
        .arg(f.dir.path().join("rules.toml"))
        .args(["--source", &url("shop"), "--target", &bad])
        .env("HOME", f.dir.path()));
    let err = fails(&o, "password authentication failed");
    assert!(!err.contains("Not-the-pw-99"), "{err}");
    succeeded(
        admin
            .program("dropdb")
            .args(admin.client_args())
            .arg(&staging),
        "dropdb",
    );
}

#[test]
fn client_certificates_authenticate_and_bad_ones_are_named() {
    let f = Files::new();
    let p = port();
    let url = |cert: &str, key: &str| {
        format!(
            "host=localhost port={p} dbname=shop user=certuser sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
            f.path("ca.pem"),
            f.path(cert),
            f.path(key)
        )
    };
    ok(&f.run(&url("client.crt", "client.key"), &[]));
    // Signed by a CA the server does not trust: the server refuses it, and the message names it.
    fails(
        &f.run(&url("stranger.crt", "stranger.key"), &[]),
        &format!(
            "the server refused the client certificate {}",
            f.path("stranger.crt")
        ),
    );
    // A key others may read is refused as libpq refuses it.
    f.write("open.key", &pki().client_key, 0o644);
    fails(
        &f.run(&url("client.crt", "open.key"), &[]),
        "has group or world access",
    );
    // No certificate for a cert-authenticated role: the server's refusal is shown.
    fails(
        &f.run(
            &format!(
                "host=localhost port={p} dbname=shop user=certuser sslrootcert={}",
                f.path("ca.pem")
            ),
            &[],
        ),
        "client certificate",
    );
}

#[test]
fn pg_variables_service_file_and_password_file_are_read_as_libpq_reads_them() {
    let f = Files::new();
    let p = port().to_string();
    let ca = f.path("ca.pem");
    // Everything from the environment: the source is only a database name.
    let pgpass = f.write(
        "pgpass",
        &format!("localhost:{p}:*:pwuser:{PASSWORD}\n"),
        0o600,
    );
    let env = [
        ("PGHOST", "localhost"),
        ("PGPORT", p.as_str()),
        ("PGUSER", "pwuser"),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca.as_str()),
        ("PGPASSFILE", pgpass.to_str().unwrap()),
    ];
    ok(&f.run("dbname=shop", &env));
    // The password file readable by others: ignored with a warning naming it, and the server
    // then refuses the missing password.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(&f.run("dbname=shop", &env), "password");
    assert!(err.contains("has group or world access"), "{err}");
    assert!(err.contains(pgpass.to_str().unwrap()), "{err}");
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    // PGPASSWORD alone authenticates.
    ok(&f.run(
        "dbname=shop",
        &[&env[..5], &[("PGPASSWORD", PASSWORD)]].concat(),
    ));
    // PGPASSWORD wins over the file; a wrong one fails without being shown.
    fails(
        &f.run(
            "dbname=shop",
            &[&env[..], &[("PGPASSWORD", "Wrong-pw-123")]].concat(),
        ),
        "password authentication failed",
    );
    // The string wins over the environment.
    fails(
        &f.run("dbname=shop sslmode=disable", &env),
        "the server requires TLS and sslmode=disable",
    );
    // A service file section, named by the string or PGSERVICE.
    let services = f.write(
        "services.conf",
        &format!(
            "[staging-replica]\nhost=localhost\nport={p}\nuser=pwuser\ndbname=shop\nsslmode=verify-full\nsslrootcert={ca}\n"
        ),
        0o644,
    );
    let senv = [
        ("PGSERVICEFILE", services.to_str().unwrap()),
        ("PGPASSFILE", pgpass.to_str().unwrap()),
    ];
    ok(&f.run("service=staging-replica", &senv));
    ok(&f.run(
        "dbname=shop",
        &[&senv[..], &[("PGSERVICE", "staging-replica")]].concat(),
    ));
    fails(
        &f.run("service=nope", &senv),
        "definition of service \"nope\" not found",
    );
}

#[test]
fn several_hosts_and_target_session_attrs_reach_a_hot_standby() {
    let f = Files::new();
    let primary = cluster();
    let standby = Cluster::start(&ClusterConfig {
        standby_of: Some(primary.admin()),
        settings: tls_settings(),
        ..ClusterConfig::default()
    });
    let (pp, sp) = (primary.port(), standby.port());
    let ca = f.path("ca.pem");
    let src = |hosts: &str, ports: &str, attrs: &str| {
        format!(
            "host={hosts} port={ports} user=pwuser password={PASSWORD} dbname=shop sslmode=verify-full sslrootcert={ca} target_session_attrs={attrs}"
        )
    };
    let chosen = |o: &Output, port: u16| {
        let err = stderr(o);
        assert!(
            err.contains(&format!("(localhost:{port})")),
            "not on {port}: {err}"
        );
    };
    // Nothing listens on port 1: the next host is tried.
    let o = f.run(&src("localhost,localhost", &format!("1,{pp}"), "any"), &[]);
    ok(&o);
    chosen(&o, pp);
    // A standby first in the list, but read-write wanted: the primary.
    let o = f.run(
        &src("localhost,localhost", &format!("{sp},{pp}"), "read-write"),
        &[],
    );
    ok(&o);
    chosen(&o, pp);
    // The primary first, a standby wanted (standby, prefer-standby, read-only): the standby, and
    // the whole run reads from it (an exported snapshot works on a standby).
    for attrs in ["standby", "prefer-standby", "read-only"] {
        let o = f.run(
            &src("localhost,localhost", &format!("{pp},{sp}"), attrs),
            &[],
        );
        ok(&o);
        chosen(&o, sp);
    }
    // prefer-standby without a standby: the primary.
    let o = f.run(&src("localhost", &pp.to_string(), "prefer-standby"), &[]);
    ok(&o);
    chosen(&o, pp);
    // standby without one: one line per host tried.
    let err = fails(
        &f.run(
            &src("localhost,localhost", &format!("1,{pp}"), "standby"),
            &[],
        ),
        &format!("localhost:{pp}: the server is not a standby"),
    );
    assert!(err.contains("localhost:1: "), "{err}");
}
