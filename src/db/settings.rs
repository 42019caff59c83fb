//! Connection settings as libpq reads them.
//!
//! Precedence, highest first (as libpq's): the connection string (URL or `key=value`), then the
//! named service's section of the connection service file, then the `PG*` environment variables,
//! then defaults. The password: the string's, the service's, `PGPASSWORD`, then the password file
//! (`passfile`, `PGPASSFILE` or `~/.pgpass`), looked up for each host as it is tried. Nothing here
//! prints a password: warnings name the file, never its lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::endpoint::{ConnInfo, Password, KNOWN_KEYS};

/// The environment variables libpq reads for a setting, and the setting.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSFILE", "passfile"),
    ("PGSERVICE", "service"),
    ("PGOPTIONS", "options"),
    ("PGAPPNAME", "application_name"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGSSLCRL", "sslcrl"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
    ("PGCLIENTENCODING", "client_encoding"),
];

/// What the process environment says, for the settings and the files: tests pass a map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// libpq's default host: the socket directory of Debian's packages, else upstream's.
pub fn default_socket_dir() -> String {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".into()
    } else {
        "/tmp".into()
    }
}

/// The settings of one connection after every source libpq reads has been applied.
#[derive(Clone)]
pub struct Resolved {
    settings: BTreeMap<String, String>,
    /// The password given (string, service file or `PGPASSWORD`); else the password file is read.
    pub password: Option<Password>,
    /// The password file and whether it may be read, decided once.
    passfile: Option<PathBuf>,
    /// Things the operator should know (a password file ignored for its permissions).
    pub warnings: Vec<String>,
    /// The user's home directory, for `~/.postgresql/…` defaults.
    pub home: Option<PathBuf>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the passwords (`sslpassword` is a setting).
        let shown: BTreeMap<&String, &str> = self
            .settings
            .iter()
            .map(|(k, v)| {
                (
                    k,
                    if k == "sslpassword" {
                        "***"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("Resolved")
            .field("settings", &shown)
            .field("password", &self.password)
            .finish()
    }
}

impl Resolved {
    /// The settings as a `key=value` string for a child program (pg_dump): never a password, no
    /// service or password file (the child gets the password in its environment), nothing older
    /// libpq versions refuse, and the verification `sslrootcert=system` implies said explicitly.
    pub fn for_child(&self) -> String {
        let mut parts: Vec<String> = self
            .settings()
            .filter(|(k, _)| {
                !matches!(
                    *k,
                    "password" | "sslpassword" | "service" | "passfile" | "load_balance_hosts"
                )
            })
            .map(|(k, v)| format!("{k}={}", crate::endpoint::quote_value(v)))
            .collect();
        if self.get("sslmode").is_none() && self.get("sslrootcert") == Some("system") {
            parts.push("sslmode=verify-full".into());
        }
        parts.join(" ")
    }

    /// The password for the first host of the list, as [`Resolved::password_for`] finds it.
    pub fn password_for_first_host(&self) -> Option<Password> {
        let host = self
            .get("host")
            .and_then(|h| h.split(',').next())
            .map(str::to_string)
            .unwrap_or_else(default_socket_dir);
        let port = self
            .get("port")
            .and_then(|p| p.split(',').next())
            .unwrap_or("5432")
            .to_string();
        self.password_for(&host, &port)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every resolved setting (never the password), in name order.
    pub fn settings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .filter(|(_, v)| !v.is_empty())
    }

    /// The password for one host, as libpq finds it: the one given, else the password file's first
    /// line matching host (`localhost` for the default socket directory), port, database and user.
    pub fn password_for(&self, host: &str, port: &str) -> Option<Password> {
        if self.password.is_some() {
            return self.password.clone();
        }
        let file = self.passfile.as_ref()?;
        let text = std::fs::read_to_string(file).ok()?;
        let host = if host.is_empty() || host == default_socket_dir() {
            "localhost"
        } else {
            host
        };
        let user = self.get("user").unwrap_or("");
        let db = self.get("dbname").unwrap_or(user);
        passfile_lookup(&text, [host, port, db, user]).map(Password::new)
    }
}

/// Apply the service file, the environment and the defaults to a connection string's settings.
pub fn resolve(c: &ConnInfo, env: Env) -> Result<Resolved, String> {
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &c.settings {
        settings.insert(k.clone(), v.clone());
    }
    let home = env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    // An empty password is no password: the password file is read (as libpq).
    let mut password = c.password.clone().filter(|p| !p.expose().is_empty());
    let service = settings
        .get("service")
        .cloned()
        .or_else(|| env("PGSERVICE"))
        .filter(|s| !s.is_empty());
    if let Some(name) = service {
        let (section, file) = find_service(&name, env, home.as_deref())?;
        for (k, v) in section {
            if k == "password" {
                if password.is_none() && !v.is_empty() {
                    password = Some(Password::new(v));
                }
            } else if !KNOWN_KEYS.contains(&k.as_str()) || k == "service" {
                return Err(format!(
                    "service file {}: \"{k}\" in service \"{name}\" is not a connection setting anonymize \
                     supports (write key=value, without spaces around =)",
                    file.display()
                ));
            } else {
                settings.entry(k).or_insert(v);
            }
        }
    }
    for (var, key) in ENV_VARS {
        if !settings.contains_key(*key) {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                settings.insert(key.to_string(), v);
            }
        }
    }
    if password.is_none() {
        password = env("PGPASSWORD")
            .filter(|p| !p.is_empty())
            .map(Password::new);
    }
    if !settings.contains_key("user") {
        if let Some(u) = os_user() {
            settings.insert("user".into(), u);
        }
    }
    if !settings.contains_key("application_name") {
        let name = settings
            .get("fallback_application_name")
            .cloned()
            .unwrap_or_else(|| "anonymize".into());
        settings.insert("application_name".into(), name);
    }
    let mut warnings = Vec::new();
    let passfile = if password.is_some() {
        None
    } else {
        let file = match settings.get("passfile") {
            Some(f) => Some(PathBuf::from(f)),
            None => home.as_ref().map(|h| h.join(".pgpass")),
        };
        file.filter(|f| passfile_usable(f, &mut warnings))
    };
    Ok(Resolved {
        settings,
        password,
        passfile,
        warnings,
        home,
    })
}

/// The operating-system user, libpq's default user name.
fn os_user() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; the name is copied at once
    // and this process reads no other passwd entry concurrently at this point.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

/// Whether a password file may be read: it exists, is a plain file, and only its owner may read
/// it (libpq ignores it otherwise, with a warning, as here).
fn passfile_usable(path: &Path, warnings: &mut Vec<String>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        warnings.push(format!(
            "password file {} is not a plain file: ignored",
            path.display()
        ));
        return false;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warnings.push(format!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less: ignored",
            path.display()
        ));
        return false;
    }
    true
}

/// The password of the first line of a password file matching `want` (host, port, database,
/// user). Fields are separated by `:`, `\` escapes the next character, and a field that is `*`
/// matches anything.
pub fn passfile_lookup(text: &str, want: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let fields = split_passfile_line(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = fields[..4]
            .iter()
            .zip(want)
            .all(|((field, star), w)| *star || field == w);
        if matches {
            return Some(fields[4].0.clone());
        }
    }
    None
}

/// A line's fields, unescaped, each with whether it was a bare `*`, as libpq reads them: `\`
/// escapes the next character (a `\` at the end of the line stays), and the password ends at the
/// next unescaped `:`.
fn split_passfile_line(line: &str) -> Vec<(String, bool)> {
    let mut fields = Vec::new();
    let (mut cur, mut escaped_any) = (String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => {
                    cur.push(n);
                    escaped_any = true;
                }
                None => cur.push('\\'),
            },
            ':' if fields.len() < 4 => {
                let star = cur == "*" && !escaped_any;
                fields.push((std::mem::take(&mut cur), star));
                escaped_any = false;
            }
            ':' => break,
            c => cur.push(c),
        }
    }
    fields.push((cur, false));
    fields
}

/// A service's settings and the file they came from: the user's file (`PGSERVICEFILE` or
/// `~/.pg_service.conf`) first, then the system's (`PGSYSCONFDIR/pg_service.conf`).
fn find_service(
    name: &str,
    env: Env,
    home: Option<&Path>,
) -> Result<(Vec<(String, String)>, PathBuf), String> {
    let mut files = Vec::new();
    match env("PGSERVICEFILE").filter(|f| !f.is_empty()) {
        Some(f) => files.push(PathBuf::from(f)),
        None => files.extend(home.map(|h| h.join(".pg_service.conf"))),
    }
    let sysconf = env("PGSYSCONFDIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/etc/postgresql-common".into());
    files.push(Path::new(&sysconf).join("pg_service.conf"));
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if let Some(section) = service_section(&text, name)
            .map_err(|line| format!("service file {} line {line}: syntax error", file.display()))?
        {
            return Ok((section, file.clone()));
        }
    }
    let tried: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    Err(format!(
        "definition of service \"{name}\" not found (looked in {})",
        tried.join(", ")
    ))
}

/// The `key=value` lines of section `[name]` of a service file, or the number of a line of that
/// section that is not `key=value`, read as libpq reads them: leading blanks skipped, `#` comments,
/// a section named up to its `]`, other sections not read, nothing trimmed around `=`.
fn service_section(text: &str, name: &str) -> Result<Option<Vec<(String, String)>>, usize> {
    let mut found: Option<Vec<(String, String)>> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start().trim_end_matches(['\r', ' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            if found.is_some() {
                break;
            }
            if section.split(']').next() == Some(name) && section.contains(']') {
                found = Some(Vec::new());
            }
            continue;
        }
        if let Some(s) = found.as_mut() {
            let (k, v) = line.split_once('=').ok_or(i + 1)?;
            s.push((k.to_string(), v.to_string()));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;

    fn conn(s: &str) -> ConnInfo {
        match Endpoint::parse(s).unwrap() {
            Endpoint::Database(c) => c,
            _ => panic!("not a database"),
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn the_string_wins_over_the_service_file_which_wins_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let services = dir.path().join("services.conf");
        std::fs::write(
            &services,
            "# comment\n[other]\nhost=elsewhere\n[third]\nnot a setting\n\n[prod] # the primary's replica\nhost=replica.internal\nport=6432\ndbname=shop\nsslmode=verify-full\npassword=from-service\n",
        )
        .unwrap();
        let env = env_of(&[
            ("PGSERVICEFILE", services.to_str().unwrap()),
            ("PGPORT", "7777"),
            ("PGUSER", "envuser"),
            ("PGSSLMODE", "disable"),
            ("PGAPPNAME", "nightly"),
            ("PGPASSWORD", "from-env"),
            ("PGCONNECT_TIMEOUT", "5"),
        ]);
        let r = resolve(&conn("service=prod dbname=override"), &env).unwrap();
        assert_eq!(r.get("host"), Some("replica.internal"));
        assert_eq!(r.get("port"), Some("6432"));
        assert_eq!(r.get("dbname"), Some("override"));
        assert_eq!(r.get("user"), Some("envuser"));
        assert_eq!(r.get("sslmode"), Some("verify-full"));
        assert_eq!(r.get("application_name"), Some("nightly"));
        assert_eq!(r.get("connect_timeout"), Some("5"));
        assert_eq!(
            r.password.as_ref().map(|p| p.expose()),
            Some("from-service")
        );
        // PGSERVICE names the service when the string does not.
        let env2 = env_of(&[
            ("PGSERVICEFILE", services.to_str().unwrap()),
            ("PGSERVICE", "other"),
        ]);
        let r = resolve(&conn("postgres://u@/db"), &env2).unwrap();
        assert_eq!(r.get("host"), Some("elsewhere"));
        assert_eq!(r.get("application_name"), Some("anonymize"));
        // A missing service is an error naming the files looked in; an unknown key in it too.
        let e = resolve(&conn("service=nope"), &env2).unwrap_err();
        assert!(
            e.contains("service \"nope\" not found") && e.contains("services.conf"),
            "{e}"
        );
        std::fs::write(&services, "[prod]\nhots=x\n").unwrap();
        let e = resolve(&conn("service=prod"), &env2).unwrap_err();
        assert!(e.contains("\"hots\""), "{e}");
        // Spaces around = make another key, as libpq reads it.
        std::fs::write(&services, "[prod]\nhost = x\n").unwrap();
        let e = resolve(&conn("service=prod"), &env2).unwrap_err();
        assert!(e.contains("\"host \""), "{e}");
        std::fs::write(&services, "[prod]\njunk\n").unwrap();
        let e = resolve(&conn("service=prod"), &env2).unwrap_err();
        assert!(e.ends_with("line 2: syntax error"), "{e}");
    }

    #[test]
    fn the_password_file_matches_as_libpq_does_and_is_refused_when_others_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let text = "# comment\n\
            db.internal:5432:shop:app:first\n\
            *:*:shop:app:second\n\
            localhost:5433:*:app:sock\\:et\n\
            h\\:x:*:*:*:escaped\n";
        assert_eq!(
            passfile_lookup(text, ["db.internal", "5432", "shop", "app"]).as_deref(),
            Some("first")
        );
        assert_eq!(
            passfile_lookup(text, ["other", "1", "shop", "app"]).as_deref(),
            Some("second")
        );
        assert_eq!(
            passfile_lookup(text, ["localhost", "5433", "x", "app"]).as_deref(),
            Some("sock:et")
        );
        assert_eq!(
            passfile_lookup(text, ["h:x", "1", "d", "u"]).as_deref(),
            Some("escaped")
        );
        assert_eq!(passfile_lookup(text, ["other", "1", "x", "app"]), None);
        // The password ends at the next unescaped colon; a backslash at the end stays.
        assert_eq!(
            passfile_lookup("*:*:*:*:Zz:colon\n", ["h", "1", "d", "u"]).as_deref(),
            Some("Zz")
        );
        assert_eq!(
            passfile_lookup("*:*:*:*:end\\\n", ["h", "1", "d", "u"]).as_deref(),
            Some("end\\")
        );
        // An escaped star is a star, not a wildcard.
        assert_eq!(
            passfile_lookup("\\*:*:*:*:pw\n", ["h", "1", "d", "u"]),
            None
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:app:secret-pw\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = env_of(&[("PGPASSFILE", file.to_str().unwrap())]);
        let r = resolve(&conn("host=/tmp user=app dbname=d"), &env).unwrap();
        assert!(r.warnings.is_empty());
        assert_eq!(
            r.password_for("/tmp", "5432")
                .map(|p| p.expose().to_string()),
            Some("secret-pw".into())
        );
        // A password in the string or PGPASSWORD wins over the file.
        let env_pw = env_of(&[("PGPASSFILE", file.to_str().unwrap()), ("PGPASSWORD", "e")]);
        let r = resolve(&conn("host=h user=app"), &env_pw).unwrap();
        assert_eq!(r.password_for("h", "5432").unwrap().expose(), "e");
        // Readable by others: ignored, with a warning naming the file and never its contents.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let r = resolve(&conn("host=h user=app"), &env).unwrap();
        assert!(r.password_for("h", "5432").is_none());
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].contains("group or world access"));
        assert!(r.warnings[0].contains(file.to_str().unwrap()));
        assert!(!r.warnings[0].contains("secret-pw"));
    }
}
