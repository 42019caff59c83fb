//! Opening a connection as libpq would: settings resolved (string, service file, `PG*`
//! variables, defaults), each host tried in turn with its own password-file entry and TLS as
//! `sslmode` says, until one gives the session `target_session_attrs` asks for.

use tokio_postgres::config::{ChannelBinding, SslMode};
use tokio_postgres::{Client, NoTls};

use super::settings::{self, Env, Resolved};
use super::tls::{Mode, Tls};
use super::{describe_verbatim, DbError};
use crate::endpoint::ConnInfo;

use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The kind of session `target_session_attrs` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
}

impl Want {
    fn describe(self) -> &'static str {
        match self {
            Want::Any => "any server",
            Want::ReadWrite => "a read-write session",
            Want::ReadOnly => "a read-only session",
            Want::Primary => "a primary",
            Want::Standby => "a standby",
        }
    }
}

/// Connect with the process's environment; the connection's driver runs on the current runtime.
pub async fn connect(c: &ConnInfo) -> Result<Client, DbError> {
    connect_with(c, &|k| std::env::var(k).ok()).await
}

/// Connect with the environment `env` describes.
pub async fn connect_with(c: &ConnInfo, env: Env<'_>) -> Result<Client, DbError> {
    let failed = |message: String| DbError::Connect {
        url: c.to_string(),
        message,
    };
    let r = settings::resolve(c, env).map_err(&failed)?;
    // Each warning once per run, not once per session.
    static SAID: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for w in &r.warnings {
        if SAID.lock().map(|mut s| s.insert(w.clone())).unwrap_or(true) {
            log::warn!("{w}");
        }
    }
    let tls = Tls::from_settings(&r).map_err(&failed)?;
    let hosts = hosts(&r).map_err(&failed)?;
    let passes: &[Want] = match r.get("target_session_attrs").unwrap_or("any") {
        "any" => &[Want::Any],
        "read-write" => &[Want::ReadWrite],
        "read-only" => &[Want::ReadOnly],
        "primary" => &[Want::Primary],
        "standby" => &[Want::Standby],
        "prefer-standby" => &[Want::Standby, Want::Any],
        other => {
            return Err(failed(format!(
                "target_session_attrs=\"{other}\" is not one of any, read-write, read-only, \
                 primary, standby, prefer-standby"
            )))
        }
    };
    let mut errors: Vec<String> = Vec::new();
    for want in passes {
        for host in &hosts {
            let client = match connect_host(&r, &tls, host).await {
                Ok(c) => c,
                Err(message) => {
                    errors.push(host.prefixed(&message, hosts.len()));
                    continue;
                }
            };
            match session_is(&client, *want).await {
                Ok(true) => {
                    // Which server a run reads is worth a line when there was a choice.
                    if hosts.len() > 1 || passes != [Want::Any] {
                        log::info!("connected to {c} ({}:{})", host.name, host.port);
                    } else {
                        log::debug!("connected to {c}");
                    }
                    return Ok(client);
                }
                Ok(false) => errors.push(host.prefixed(
                    &format!("the server is not {}", want.describe()),
                    hosts.len(),
                )),
                Err(e) => errors.push(host.prefixed(&describe_verbatim(&e), hosts.len())),
            }
        }
    }
    // Each host's failure once, even when a second pass (prefer-standby) met it again.
    let mut seen = std::collections::BTreeSet::new();
    errors.retain(|e| seen.insert(e.clone()));
    Err(failed(errors.join("; ")))
}

/// One host to try.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Host {
    /// A name, an address, or a socket directory (starting with `/`).
    name: String,
    port: u16,
    /// `hostaddr`: the address to reach, `name` kept for the certificate check.
    addr: Option<std::net::IpAddr>,
}

impl Host {
    fn prefixed(&self, message: &str, hosts: usize) -> String {
        if hosts > 1 {
            format!("{}:{}: {message}", self.name, self.port)
        } else {
            message.to_string()
        }
    }
}

/// The hosts in the order to try them: `host` and `hostaddr` (comma-separated lists, matched by
/// position), `port` (one for all, or one each); without a host, the local socket directory.
fn hosts(r: &Resolved) -> Result<Vec<Host>, String> {
    let split = |k: &str| -> Vec<String> {
        r.get(k)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    };
    let (names, addrs, ports) = (split("host"), split("hostaddr"), split("port"));
    let count = names.len().max(addrs.len()).max(1);
    if !names.is_empty() && !addrs.is_empty() && names.len() != addrs.len() {
        return Err(format!(
            "{} host names but {} host addresses",
            names.len(),
            addrs.len()
        ));
    }
    if ports.len() > 1 && ports.len() != count {
        return Err(format!("{count} hosts but {} ports", ports.len()));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let port = match ports.get(i).or(ports.first()).filter(|p| !p.is_empty()) {
            Some(p) => p.parse().map_err(|_| format!("an invalid port \"{p}\""))?,
            None => 5432,
        };
        let addr = match addrs.get(i).filter(|a| !a.is_empty()) {
            Some(a) => Some(
                a.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("hostaddr \"{a}\" is not an IP address"))?,
            ),
            None => None,
        };
        let name = match names.get(i).filter(|n| !n.is_empty()) {
            Some(n) => n.clone(),
            None => match addr {
                Some(a) => a.to_string(),
                None => settings::default_socket_dir(),
            },
        };
        out.push(Host { name, port, addr });
    }
    if r.get("load_balance_hosts") == Some("random") && out.len() > 1 {
        // Spread runs over the hosts; which host serves a run never changes its output.
        let start = std::process::id() as usize % out.len();
        out.rotate_left(start);
    }
    Ok(out)
}

/// The driver's configuration for one host (TLS mode set by the caller).
fn host_config(r: &Resolved, host: &Host) -> Result<tokio_postgres::Config, String> {
    let mut config = tokio_postgres::Config::new();
    if host.name.starts_with('/') {
        config.host_path(&host.name);
    } else {
        config.host(&host.name);
    }
    if let Some(a) = host.addr {
        config.hostaddr(a);
    }
    config.port(host.port);
    let secs = |k: &str, v: &str| -> Result<std::time::Duration, String> {
        v.parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|_| format!("{k} must be a number of seconds, not \"{v}\""))
    };
    for (k, v) in r.settings() {
        match k {
            "dbname" => {
                config.dbname(v);
            }
            "user" => {
                config.user(v);
            }
            "options" => {
                config.options(v);
            }
            "application_name" => {
                config.application_name(v);
            }
            // Applied around the whole attempt (connection, TLS, authentication) by connect_host.
            "connect_timeout" => {
                secs(k, v)?;
            }
            "keepalives" => {
                config.keepalives(v != "0");
            }
            "keepalives_idle" => {
                config.keepalives_idle(secs(k, v)?);
            }
            "keepalives_interval" => {
                config.keepalives_interval(secs(k, v)?);
            }
            "keepalives_count" => {
                let n = v
                    .parse()
                    .map_err(|_| format!("keepalives_count must be a number, not \"{v}\""))?;
                config.keepalives_retries(n);
            }
            "tcp_user_timeout" => {
                let ms: u64 = v
                    .parse()
                    .map_err(|_| format!("tcp_user_timeout must be milliseconds, not \"{v}\""))?;
                config.tcp_user_timeout(std::time::Duration::from_millis(ms));
            }
            "channel_binding" => {
                config.channel_binding(match v {
                    "disable" => ChannelBinding::Disable,
                    "require" => ChannelBinding::Require,
                    "prefer" => ChannelBinding::Prefer,
                    _ => {
                        return Err(format!(
                            "channel_binding=\"{v}\" is not one of disable, prefer, require"
                        ))
                    }
                });
            }
            "client_encoding" if v.eq_ignore_ascii_case("utf8") => {}
            "load_balance_hosts" if v == "disable" || v == "random" => {}
            // Read by the resolution, the TLS set-up or the host list.
            "host"
            | "hostaddr"
            | "port"
            | "service"
            | "passfile"
            | "fallback_application_name"
            | "sslmode"
            | "sslrootcert"
            | "sslcert"
            | "sslkey"
            | "sslcrl"
            | "sslpassword"
            | "target_session_attrs" => {}
            other => {
                return Err(format!(
                    "the connection setting {other}={v} is not supported"
                ))
            }
        }
    }
    if let Some(p) = r.password_for(&host.name, &host.port.to_string()) {
        config.password(p.expose());
    }
    Ok(config)
}

/// How long one attempt on one host may take, from the socket to the end of authentication (as
/// libpq's `connect_timeout`): 30 s unless the settings say; `0` waits for ever; less than 2 s
/// counts as 2 s. A nightly job must not hang on a host that accepts and never answers.
fn attempt_limit(r: &Resolved) -> Option<Duration> {
    match r.get("connect_timeout").map(|v| v.parse::<u64>()) {
        Some(Ok(0)) => None,
        Some(Ok(n)) => Some(Duration::from_secs(n.max(2))),
        _ => Some(CONNECT_TIMEOUT),
    }
}

/// Why one attempt failed.
enum Failure {
    Driver(tokio_postgres::Error),
    Timeout(Duration),
}

impl Failure {
    /// Whether the server was reached at all (a refused or unreachable socket, or no answer, is
    /// not worth a second attempt without TLS).
    fn reached_server(&self) -> bool {
        match self {
            Failure::Driver(e) => !e.to_string().starts_with("error connecting to server"),
            Failure::Timeout(_) => false,
        }
    }
}

/// Connect to one host, encrypted or not as `sslmode` says; a failure said in one line.
async fn connect_host(r: &Resolved, tls: &Tls, host: &Host) -> Result<Client, String> {
    let mut config = host_config(r, host)?;
    let limit = attempt_limit(r);
    if let Some(l) = limit {
        config.connect_timeout(l);
    }
    // TLS is never used on a Unix socket (as libpq).
    let mode = if host.name.starts_with('/') {
        Mode::Disable
    } else {
        tls.mode
    };
    let result = match mode {
        Mode::Disable => plain(&mut config, limit).await,
        // Plain first; encrypted when the server turns a plain session away.
        Mode::Allow => match plain(&mut config, limit).await {
            Err(e) if e.reached_server() => {
                encrypted(&mut config, tls, SslMode::Require, limit).await
            }
            r => r,
        },
        // Encrypted when offered; plain when the encrypted session fails once the server was
        // reached (a certificate not trusted, a refusal by pg_hba.conf or authentication), as
        // libpq. When that fails too, the encrypted attempt's failure is the one that explains.
        Mode::Prefer => match encrypted(&mut config, tls, SslMode::Prefer, limit).await {
            Err(e) if e.reached_server() => plain(&mut config, limit).await.map_err(|_| e),
            r => r,
        },
        Mode::Require => encrypted(&mut config, tls, SslMode::Require, limit).await,
    };
    result.map_err(|f| match f {
        Failure::Timeout(l) => format!(
            "timeout expired: no answer within {} s (connect_timeout)",
            l.as_secs()
        ),
        Failure::Driver(e) => {
            let mut m = tls
                .describe(&e, &host.name)
                .unwrap_or_else(|| describe_verbatim(&e));
            if mode == Mode::Disable && m.contains("no encryption") && !host.name.starts_with('/') {
                m.push_str(&format!(
                    "; the server requires TLS and sslmode={}: use sslmode=require or stronger",
                    tls.sslmode
                ));
            }
            m
        }
    })
}

/// `connect` under the attempt's time limit.
async fn limited<F, T>(limit: Option<Duration>, connect: F) -> Result<T, Failure>
where
    F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    match limit {
        None => connect.await.map_err(Failure::Driver),
        Some(l) => match tokio::time::timeout(l, connect).await {
            Ok(r) => r.map_err(Failure::Driver),
            Err(_) => Err(Failure::Timeout(l)),
        },
    }
}

async fn plain(
    config: &mut tokio_postgres::Config,
    limit: Option<Duration>,
) -> Result<Client, Failure> {
    config.ssl_mode(SslMode::Disable);
    let (client, connection) = limited(limit, config.connect(NoTls)).await?;
    tokio::spawn(async move {
        // Errors surface on the next query through the client.
        let _ = connection.await;
    });
    Ok(client)
}

async fn encrypted(
    config: &mut tokio_postgres::Config,
    tls: &Tls,
    mode: SslMode,
    limit: Option<Duration>,
) -> Result<Client, Failure> {
    let Some(connector) = tls.connector() else {
        return plain(config, limit).await;
    };
    config.ssl_mode(mode);
    let (client, connection) = limited(limit, config.connect(connector)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether a session is of the kind asked for (libpq's checks: `transaction_read_only` for
/// read-write and read-only, `pg_is_in_recovery()` for primary and standby).
async fn session_is(client: &Client, want: Want) -> Result<bool, tokio_postgres::Error> {
    let query = match want {
        Want::Any => return Ok(true),
        Want::ReadWrite | Want::ReadOnly => {
            "SELECT pg_catalog.current_setting('transaction_read_only') = 'on'"
        }
        Want::Primary | Want::Standby => "SELECT pg_catalog.pg_is_in_recovery()",
    };
    let yes: bool = client.query_one(query, &[]).await?.get(0);
    Ok(match want {
        Want::ReadOnly | Want::Standby => yes,
        _ => !yes,
    })
}
