//! Connection failures: each is one clear line on stderr, with the password redacted, and exit 1.
//! The local server trusts every local connection, so a password exchange and a server demanding
//! TLS are played by a minimal fake server (without TLS) speaking the start of the PostgreSQL protocol.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::*;

const SECRET: &str = "N0tTheRealPw";

/// A server that answers one connection's startup with `reply` (after asking for a cleartext
/// password when `ask_password`). Returns its port.
fn fake_server(ask_password: bool, code: &'static str, message: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let read_message = |s: &mut std::net::TcpStream, tagged: bool| {
            let mut head = vec![0u8; if tagged { 5 } else { 4 }];
            s.read_exact(&mut head).unwrap();
            let len = u32::from_be_bytes(head[head.len() - 4..].try_into().unwrap()) as usize;
            let mut body = vec![0u8; len - 4];
            s.read_exact(&mut body).unwrap();
            body
        };
        // A server without TLS answers an SSLRequest with `N`; the startup message follows.
        if read_message(&mut s, false) == [4, 210, 22, 47] {
            s.write_all(b"N").unwrap();
            read_message(&mut s, false); // StartupMessage
        }
        if ask_password {
            s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).unwrap(); // AuthenticationCleartextPassword
            read_message(&mut s, true); // PasswordMessage
        }
        let mut fields = Vec::new();
        for (tag, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', code),
            (b'M', message),
        ] {
            fields.push(tag);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut reply = vec![b'E'];
        reply.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        reply.extend_from_slice(&fields);
        s.write_all(&reply).unwrap();
    });
    port
}

/// Run against a source URL; assert exit 1 and one line, without the password, that says `what`.
fn fails_with_one_line(source: &str, what: &str) -> String {
    let o = run(anonymize().args([
        "--rules",
        "rules/customers.toml",
        "--target",
        "-",
        "--source",
        source,
    ]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(o.stdout.is_empty());
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(what), "{what:?} not in {err}");
    err
}

#[test]
fn a_wrong_password_is_one_redacted_line() {
    let port = fake_server(
        true,
        "28P01",
        "password authentication failed for user \"postgres\"",
    );
    let err = fails_with_one_line(
        &format!("postgres://postgres:{SECRET}@127.0.0.1:{port}/app"),
        "(SQLSTATE 28P01)",
    );
    assert_eq!(
        err,
        format!("anonymize: error: connecting to postgres://postgres:***@127.0.0.1:{port}/app: password authentication failed for user \"postgres\" (SQLSTATE 28P01)\n")
    );
}

#[test]
fn a_server_requiring_tls_says_so() {
    let port = fake_server(
        false,
        "28000",
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"app\", no encryption",
    );
    fails_with_one_line(
        &format!("postgres://postgres:{SECRET}@127.0.0.1:{port}/app?sslmode=disable"),
        "no encryption (SQLSTATE 28000); the server requires TLS and sslmode=disable: use sslmode=require or stronger",
    );
    // Verifying the server without any root certificate is refused before any connection is tried.
    fails_with_one_line(
        &format!("postgres://postgres:{SECRET}@127.0.0.1:{port}/app?sslmode=verify-full&sslrootcert=/nonexistent/root.crt"),
        "root certificate file \"/nonexistent/root.crt\" does not exist",
    );
}

#[test]
fn unreachable_hosts_and_missing_databases_are_one_line_each() {
    // Nothing listens on port 1.
    fails_with_one_line(
        &format!("postgres://postgres:{SECRET}@127.0.0.1:1/app"),
        "error connecting to server: Connection refused",
    );
    fails_with_one_line(&format!(
        "postgres://postgres:{SECRET}@no-such-host.invalid/app"
    ), "postgres://postgres:***@no-such-host.invalid/app: error connecting to server: failed to lookup address");
    fails_with_one_line(
        &server().url_as("postgres", Some(SECRET), "anon_no_such_database"),
        "database \"anon_no_such_database\" does not exist (SQLSTATE 3D000)",
    );
    fails_with_one_line(
        &server().url_as("anon_no_such_role", Some(SECRET), "postgres"),
        "role \"…\" does not exist (SQLSTATE 28000)",
    );
}

#[test]
fn a_host_that_never_answers_times_out_and_the_next_host_is_tried() {
    // Accepts connections and says nothing (a wedged proxy, a server stopped with SIGSTOP).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    fails_with_one_line(
        &format!("host=127.0.0.1 port={silent} dbname=app user=postgres password={SECRET} connect_timeout=2"),
        "timeout expired: no answer within 2 s (connect_timeout)",
    );
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(20),
        "{took:?}"
    );
    // With a second host, the run goes on there.
    let s = server();
    let db = TestDb::new("conn_failover");
    let o = run(anonymize().args([
        "check",
        "--rules",
        "rules/customers.toml",
        "--source",
        &format!(
            "host=127.0.0.1,{} port={silent},{} dbname={} user={} connect_timeout=2",
            s.host, s.port, db.name, s.user
        ),
    ]));
    let err = stderr(&o);
    // The run reached the second host's (empty) database: the rules' tables are missing there
    // (exit 2), not a connection failure (exit 1).
    assert!(!err.contains("timeout expired"), "{err}");
    assert_ne!(
        o.status.code(),
        Some(1),
        "the second host was not tried: {err}"
    );
}
