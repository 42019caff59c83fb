//! Opening a connection as libpq would: settings resolved (string, service file, `PG*`
//! variables, defaults), each host tried in turn with its own password-file entry and TLS as
//! `sslmode` says, until one gives the session `target_session_attrs` asks for.

use tokio_postgres::config::{ChannelBinding, SslMode};
use tokio_postgres::{Client, NoTls};

use super::settings::{self, Env, Resolved};
use super::tls::{Mode, Tls};
use super::{describe_verbatim, DbError};
use crate::endpoint::ConnInfo;

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    for w in &r.warnings {
        log::warn!("{w}");
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
    errors.dedup();
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
    if names.len() > 1 && addrs.len() > 1 && names.len() != addrs.len() {
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
                None => default_socket_dir(),
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

/// libpq's default host: the socket directory of Debian's packages, else upstream's.
fn default_socket_dir() -> String {
    if std::path::Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".into()
    } else {
        "/tmp".into()
    }
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
            "connect_timeout" => {
                config.connect_timeout(secs(k, v)?);
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
    // A nightly job must not hang on an unreachable host: 30 s unless the string says otherwise.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Connect to one host, encrypted or not as `sslmode` says; a failure said in one line.
async fn connect_host(r: &Resolved, tls: &Tls, host: &Host) -> Result<Client, String> {
    let mut config = host_config(r, host)?;
    // TLS is never used on a Unix socket (as libpq).
    let mode = if host.name.starts_with('/') {
        Mode::Disable
    } else {
        tls.mode
    };
    let result = match mode {
        Mode::Disable => plain(&mut config).await,
        // Plain first; encrypted when the server turns a plain session away.
        Mode::Allow => match plain(&mut config).await {
            Err(e) if e.as_db_error().is_some() => {
                encrypted(&mut config, tls, SslMode::Require).await
            }
            r => r,
        },
        // Encrypted when offered; plain when the server turns the encrypted session away.
        Mode::Prefer => match encrypted(&mut config, tls, SslMode::Prefer).await {
            Err(e)
                if e.code()
                    == Some(
                        &tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                    ) =>
            {
                // When that fails too, the encrypted attempt's refusal is the one that explains.
                plain(&mut config).await.map_err(|_| e)
            }
            r => r,
        },
        Mode::Require => encrypted(&mut config, tls, SslMode::Require).await,
    };
    result.map_err(|e| {
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
    })
}

async fn plain(config: &mut tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    config.ssl_mode(SslMode::Disable);
    let (client, connection) = config.connect(NoTls).await?;
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
) -> Result<Client, tokio_postgres::Error> {
    let Some(connector) = tls.connector() else {
        return plain(config).await;
    };
    config.ssl_mode(mode);
    let (client, connection) = config.connect(connector).await?;
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
