//! Where a run reads and writes: a database (a connection string parsed once), a dump file, or
//! stdin/stdout.
//!
//! A connection string is read in libpq's two forms — `postgres://user:password@host:port/db?k=v` and
//! `host=… user=… password='…'` — into settings by name, with the password held apart in a type that
//! never prints. Everything that shows an endpoint (messages, logs, reports) uses its `Display`,
//! which writes the string as given with the password as `***`. A string that looks like a URL of
//! another scheme is refused rather than taken for a file name.

use std::fmt;
use std::path::PathBuf;

/// A password: no `Display`, a `Debug` that hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }

    /// The password itself, for the driver or a child's environment only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A database connection: libpq settings by name (without the password), and the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// (key, value) in libpq's names: host, port, dbname, user, sslmode, application_name, …
    pub settings: Vec<(String, String)>,
    pub password: Option<Password>,
    /// The string as given, with the password replaced by `***`.
    shown: String,
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnInfo({})", self.shown)
    }
}

/// The libpq settings a connection string may hold (the ones this tool follows or passes on).
pub const KNOWN_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "options",
    "application_name",
    "fallback_application_name",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslpassword",
    "target_session_attrs",
    "load_balance_hosts",
    "service",
    "channel_binding",
    "client_encoding",
];

impl ConnInfo {
    /// The value of a setting.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set (or replace) a setting.
    pub fn set(&mut self, key: &str, value: &str) {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_string(), value.to_string()));
    }

    /// The connection as a `key=value` string without the password, for a child program's command
    /// line (its password goes through the environment).
    pub fn without_password(&self) -> String {
        self.settings
            .iter()
            .filter(|(k, _)| !SECRET_KEYS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={}", quote_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value for a `key=value` string: quoted when it must be.
pub fn quote_value(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Where a run reads from or writes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Database(ConnInfo),
    /// A dump file (or directory archive), as given.
    File(PathBuf),
    /// `-`: stdin as a source, stdout as a target.
    Stdio,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Database(c) => c.fmt(f),
            Endpoint::File(p) => write!(f, "{}", p.display()),
            Endpoint::Stdio => f.write_str("-"),
        }
    }
}

/// Why a string is not an endpoint. Shows the string with its password hidden.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{shown}: unknown scheme \"{scheme}\" (a database is postgres:// or postgresql://, or host=… dbname=…; a file is a path)")]
    UnknownScheme { shown: String, scheme: String },
    #[error("{shown}: {why}")]
    Invalid { shown: String, why: String },
}

impl Endpoint {
    /// Read a source or target as the user wrote it.
    pub fn parse(s: &str) -> Result<Endpoint, EndpointError> {
        if s == "-" {
            return Ok(Endpoint::Stdio);
        }
        // Space around a connection string (a pasted value) does not make it a file name.
        let t = s.trim();
        if let Some(rest) = t
            .strip_prefix("postgres://")
            .or_else(|| t.strip_prefix("postgresql://"))
        {
            return parse_url(t, rest).map(Endpoint::Database);
        }
        if let Some(scheme) = url_scheme(t) {
            return Err(EndpointError::UnknownScheme {
                shown: redact(t),
                scheme: scheme.to_string(),
            });
        }
        if looks_like_key_value(t) {
            return parse_key_value(t).map(Endpoint::Database);
        }
        if mistyped_url(t) || holds_a_password_key(t) {
            // Shown as nothing of what was written: it may hold a password.
            return Err(EndpointError::Invalid {
                shown: "a connection string".into(),
                why:
                    "neither a postgres:// URL nor a file name (a `scheme:` with `@` after it, or \
                      postgres: without //): write postgres://user@host/db"
                        .into(),
            });
        }
        Ok(Endpoint::File(PathBuf::from(s)))
    }

    pub fn is_database(&self) -> bool {
        matches!(self, Endpoint::Database(_))
    }

    pub fn database(&self) -> Option<&ConnInfo> {
        match self {
            Endpoint::Database(c) => Some(c),
            _ => None,
        }
    }
}

/// `postgres:…` or `postgresql:…` without `//`, or any `scheme:…@…`: a URL typed wrong, not a path.
fn mistyped_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_like = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_like
        && (scheme.eq_ignore_ascii_case("postgres")
            || scheme.eq_ignore_ascii_case("postgresql")
            || rest.contains('@'))
}

/// A `password=` or `sslpassword=` in any case (`PASSWORD=…` is no libpq key, so the string is
/// not read as `key=value`): a connection string typed wrong, never a file name to echo.
fn holds_a_password_key(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    lower
        .match_indices("password")
        .any(|(i, m)| lower[i + m.len()..].trim_start().starts_with('='))
}

/// `scheme://…` → the scheme, when it looks like one.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    (chars.next()?.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// `key=value …` with a known first key.
fn looks_like_key_value(s: &str) -> bool {
    let t = s.trim_start();
    let key: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    !key.is_empty()
        && t[key.len()..].trim_start().starts_with('=')
        && KNOWN_KEYS.contains(&key.as_str())
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("an invalid percent-encoding")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoded bytes that are not UTF-8".to_string())
}

/// `postgres://[user[:password]@][host[:port][,host[:port]…]][/dbname][?key=value&…]`.
fn parse_url(whole: &str, rest: &str) -> Result<ConnInfo, EndpointError> {
    // A string that cannot be read cannot be told apart into its password and the rest: only its
    // scheme is shown.
    let scheme = &whole[..whole.len() - rest.len()];
    let invalid = |why: String| EndpointError::Invalid {
        shown: format!("{scheme}…"),
        why,
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut password = None;
    let hostspec = match authority.rsplit_once('@') {
        Some((user, hosts)) => {
            let (u, p) = match user.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (user, None),
            };
            if !u.is_empty() {
                settings.push(("user".into(), percent_decode(u).map_err(&invalid)?));
            }
            if let Some(p) = p {
                password = Some(Password::new(percent_decode(p).map_err(&invalid)?));
            }
            hosts
        }
        None => authority,
    };
    if !hostspec.is_empty() {
        let (mut hosts, mut ports) = (Vec::new(), Vec::new());
        for part in hostspec.split(',') {
            let (host, port) = if let Some(v6) = part.strip_prefix('[') {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| invalid("an IPv6 host without its closing ]".into()))?;
                (h.to_string(), after.strip_prefix(':').map(String::from))
            } else {
                match part.rsplit_once(':') {
                    Some((h, p)) => (percent_decode(h).map_err(&invalid)?, Some(p.to_string())),
                    None => (percent_decode(part).map_err(&invalid)?, None),
                }
            };
            hosts.push(host);
            ports.push(port.unwrap_or_default());
        }
        settings.push(("host".into(), hosts.join(",")));
        if ports.iter().any(|p| !p.is_empty()) {
            if ports
                .iter()
                .any(|p| !p.is_empty() && p.parse::<u16>().is_err())
            {
                return Err(invalid(
                    "an invalid port (a password with / ? @ or : in it must be percent-encoded)"
                        .into(),
                ));
            }
            settings.push(("port".into(), ports.join(",")));
        }
    }
    // What is shown: the same URL rebuilt from what was read, the password as ***.
    let mut shown = scheme.to_string();
    if let Some(u) = settings.iter().find(|(k, _)| k == "user").map(|(_, v)| v) {
        shown.push_str(&shown_part(u));
        if password.is_some() {
            shown.push_str(":***");
        }
        shown.push('@');
    } else if password.is_some() {
        shown.push_str(":***@");
    }
    shown.push_str(&shown_part(hostspec));
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        let db = percent_decode(db).map_err(&invalid)?;
        shown.push('/');
        shown.push_str(&shown_part(&db));
        settings.push(("dbname".into(), db));
    }
    let mut query_shown = Vec::new();
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| invalid("a query parameter without a value".into()))?;
        let k = percent_decode(k).map_err(&invalid)?;
        let v = percent_decode(v).map_err(&invalid)?;
        if k == "password" {
            password = Some(Password::new(v));
            query_shown.push("password=***".to_string());
            continue;
        }
        if !KNOWN_KEYS.contains(&k.as_str()) {
            return Err(invalid(unknown_key(&k)));
        }
        query_shown.push(if SECRET_KEYS.contains(&k.as_str()) {
            format!("{k}=***")
        } else {
            format!("{k}={}", shown_part(&v))
        });
        settings.retain(|(key, _)| *key != k);
        settings.push((k, v));
    }
    if !query_shown.is_empty() {
        shown.push('?');
        shown.push_str(&query_shown.join("&"));
    }
    Ok(ConnInfo {
        settings,
        password,
        shown,
    })
}

/// Settings whose value is a secret: never shown.
const SECRET_KEYS: &[&str] = &["password", "sslpassword"];

/// An unknown key, named only when it looks like one.
fn unknown_key(k: &str) -> String {
    if !k.is_empty() && k.len() <= 40 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        format!("an unknown connection parameter \"{k}\"")
    } else {
        "an unknown connection parameter".into()
    }
}

/// A part of a connection string for messages: printable, on one line.
fn shown_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || c == '%' {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// libpq's `key = value` syntax: values bare or in single quotes with `\\` and `\'` escapes.
fn parse_key_value(s: &str) -> Result<ConnInfo, EndpointError> {
    let invalid = |why: String| EndpointError::Invalid {
        shown: "(a key=value connection string)".into(),
        why,
    };
    let mut shown_parts = Vec::new();
    let mut settings = Vec::new();
    let mut password = None;
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(invalid(
                "a setting without a value (write key=value)".into(),
            ));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(invalid("an unterminated quoted value".into())),
                    Some('\\') => value.push(
                        chars
                            .next()
                            .ok_or_else(|| invalid("a value ending in \\".into()))?,
                    ),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        if key == "password" {
            password = Some(Password::new(value));
            shown_parts.push("password=***".to_string());
            continue;
        }
        if !KNOWN_KEYS.contains(&key.as_str()) {
            return Err(invalid(unknown_key(&key)));
        }
        shown_parts.push(if SECRET_KEYS.contains(&key.as_str()) {
            format!("{key}=***")
        } else {
            format!("{key}={}", quote_value(&shown_part(&value)))
        });
        settings.push((key, value));
    }
    Ok(ConnInfo {
        settings,
        password,
        shown: shown_parts.join(" "),
    })
}

/// A source or target as given, for messages and reports: as its endpoint shows it, or as much of it
/// as an error about it shows.
pub fn shown(s: &str) -> String {
    match Endpoint::parse(s) {
        Ok(e) => e.to_string(),
        Err(EndpointError::Invalid { shown, .. } | EndpointError::UnknownScheme { shown, .. }) => {
            shown
        }
    }
}

/// A connection string with any password in it replaced by `***`: the `user:password@` of a URL,
/// a `password=` query parameter or `key=value` setting. For strings that never became an endpoint
/// (an error about one, a server's message).
pub fn redact(s: &str) -> String {
    redact_keys(s, &["password"])
}

/// [`redact`], also hiding the values of other keys (a misspelled key may hold a password).
fn redact_keys(s: &str, keys: &[&str]) -> String {
    let mut out = s.to_string();
    // user:password@ in anything that looks like a URL.
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let rest = &out[start..];
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                out = format!("{}***{}", &out[..start + colon + 1], &out[start + at..]);
            }
        }
    }
    for key in keys {
        out = redact_key(&out, key);
    }
    out
}

/// `key=…` in a query string or a key=value string (quoted or not) with its value as `***`.
fn redact_key(out: &str, key: &str) -> String {
    let out = out.to_string();
    let lower = out.to_ascii_lowercase();
    let key = key.to_ascii_lowercase();
    let klen = key.len();
    let mut result = String::with_capacity(out.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find(&key) {
        let key_start = i + found;
        let mut j = key_start + klen;
        let bytes = out.as_bytes();
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let boundary = key_start == 0 || matches!(bytes[key_start - 1], b' ' | b'?' | b'&' | b'\t');
        if !boundary || bytes.get(j) != Some(&b'=') {
            result.push_str(&out[i..key_start + klen]);
            i = key_start + klen;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        result.push_str(&out[i..j]);
        result.push_str("***");
        // Skip the value: quoted with backslash escapes, or up to space or &.
        if bytes.get(j) == Some(&b'\'') {
            j += 1;
            while j < bytes.len() && bytes[j] != b'\'' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            j = (j + 1).min(bytes.len());
        } else {
            while j < bytes.len() && !matches!(bytes[j], b' ' | b'&' | b'\t') {
                j += 1;
            }
        }
        i = j;
    }
    result.push_str(&out[i..]);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(s: &str) -> ConnInfo {
        match Endpoint::parse(s).unwrap() {
            Endpoint::Database(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_password_key_in_any_case_is_never_a_file_name() {
        for s in [
            "PASSWORD=FakeS3 host=x",
            "Password = FakeS3",
            "host=x SSLPASSWORD=FakeS3",
        ] {
            let e = Endpoint::parse(s).unwrap_err();
            assert!(!e.to_string().contains("FakeS3"), "{e}");
        }
        // A file whose name merely holds the word is a file.
        assert!(matches!(
            Endpoint::parse("dumps/passwords.sql"),
            Ok(Endpoint::File(_))
        ));
    }

    #[test]
    fn mistyped_connection_strings_are_not_files_and_never_shown() {
        // Space around a URL: still a URL.
        assert_eq!(
            db("  postgres://app:pw@db/prod\t").get("dbname"),
            Some("prod")
        );
        assert_eq!(
            db(" host=db password=pw dbname=prod").get("dbname"),
            Some("prod")
        );
        for s in [
            "postgres:/app:SECRET1@db/prod",
            "postgresql:app:SECRET1@db/prod",
            "pg:app:SECRET1@db/prod",
            "POSTGRES:SECRET1",
        ] {
            let e = Endpoint::parse(s).unwrap_err().to_string();
            assert!(!e.contains("SECRET1"), "{s}: {e}");
        }
        // Paths stay paths.
        for s in ["dump.sql", "./a:b.sql", "/tmp/x@y.sql", "C.sql"] {
            assert!(matches!(Endpoint::parse(s), Ok(Endpoint::File(_))), "{s}");
        }
    }

    #[test]
    fn urls_and_key_value_strings_are_databases_with_the_password_apart() {
        let c = db("postgres://app:p%40ss%3Aw@db.internal:5433,db2/prod?sslmode=require&application_name=x");
        assert_eq!(c.get("user"), Some("app"));
        assert_eq!(c.get("host"), Some("db.internal,db2"));
        assert_eq!(c.get("port"), Some("5433,"));
        assert_eq!(c.get("dbname"), Some("prod"));
        assert_eq!(c.get("sslmode"), Some("require"));
        assert_eq!(c.password.as_ref().map(Password::expose), Some("p@ss:w"));
        assert_eq!(
            c.to_string(),
            "postgres://app:***@db.internal:5433,db2/prod?sslmode=require&application_name=x"
        );
        assert!(!format!("{c:?}").contains("p%40ss"));
        let c = db("host=db user=app password='with \\' space' dbname=prod");
        assert_eq!(
            c.password.as_ref().map(Password::expose),
            Some("with ' space")
        );
        assert_eq!(c.to_string(), "host=db user=app password=*** dbname=prod");
        assert_eq!(c.without_password(), "host=db user=app dbname=prod");
        let c = db("postgresql://db/prod?user=app&password=s3cr3t");
        assert_eq!(c.to_string(), "postgresql://db/prod?user=app&password=***");
        assert_eq!(c.get("user"), Some("app"));
        assert_eq!(c.password.as_ref().map(Password::expose), Some("s3cr3t"));
        let c = db("postgres://[::1]:5432/x");
        assert_eq!((c.get("host"), c.get("port")), (Some("::1"), Some("5432")));
    }

    #[test]
    fn files_stdio_and_unknown_schemes() {
        assert_eq!(Endpoint::parse("-").unwrap(), Endpoint::Stdio);
        assert_eq!(
            Endpoint::parse("dumps/prod.sql").unwrap(),
            Endpoint::File("dumps/prod.sql".into())
        );
        assert_eq!(
            Endpoint::parse("postgress://app:s3cr3t@db/prod").unwrap_err().to_string(),
            "postgress://app:***@db/prod: unknown scheme \"postgress\" (a database is postgres:// or postgresql://, or host=… dbname=…; a file is a path)"
        );
        let e = Endpoint::parse("host=db passwrd=s3cr3t")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "(a key=value connection string): an unknown connection parameter \"passwrd\""
        );
        // Whatever cannot be read shows no part that could be its password.
        for (bad, secret) in [
            ("postgres://postgres:S3CRET/D@127.0.0.1/db", "S3CRET"),
            ("postgres://postgres:S3CRET?E@127.0.0.1/db", "S3CRET"),
            ("postgres://h/db?S3CRET", "S3CRET"),
            ("host=h password", "password"),
        ] {
            let e = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(!e.contains(secret), "{e}");
        }
        // Percent-encoded keys, control characters, sslpassword: never shown.
        for (s, secret) in [
            ("postgres://h/db?pass%77ord=S3CRET_A", "S3CRET_A"),
            ("host=h dbname=d\npassword=S3CRET_B", "S3CRET_B"),
            ("postgres://h/db?sslpassword=S3CRET_C", "S3CRET_C"),
        ] {
            let shown = db(s).to_string();
            assert!(!shown.contains(secret), "{shown}");
            assert!(!shown.contains('\n'), "{shown}");
        }
        let e = Endpoint::parse("postgres://app:s3cr3t@db/prod?pasword=x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn redaction_finds_passwords_in_any_form() {
        for (input, want) in [
            (
                "postgres://app:s3cr3t@db:5432/prod",
                "postgres://app:***@db:5432/prod",
            ),
            (
                "postgres://db/prod?user=app&password=s3cr3t",
                "postgres://db/prod?user=app&password=***",
            ),
            (
                "host=db user=app password=s3cr3t dbname=prod",
                "host=db user=app password=*** dbname=prod",
            ),
            (
                "host=db password = 'with space' dbname=prod",
                "host=db password = *** dbname=prod",
            ),
            ("host=db passwordish=x", "host=db passwordish=x"),
            ("no secret here", "no secret here"),
        ] {
            assert_eq!(redact(input), want, "{input}");
        }
    }
}
