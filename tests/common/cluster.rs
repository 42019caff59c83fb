//! A throwaway PostgreSQL for the end-to-end tests, so `cargo test` needs no server of its own.
//!
//! Each test binary starts one cluster the first time a test asks for [`server`]: a copy of an
//! `initdb` template (made once per build directory, under a lock), trust authentication, a Unix
//! socket in the cluster's own temporary directory plus 127.0.0.1 on a free port, durability off.
//! Test binaries run one after another, so one cluster runs at a time; starting from the template
//! costs about half a second per binary instead of the two and a half seconds of an `initdb`.
//!
//! The server is a direct child of the test process, started from a thread that lives as long as the
//! process, with a parent-death signal: when the test binary ends — normally, after a failed test, or
//! killed with SIGKILL — the server goes with it. A normal exit also removes its directory (an
//! `atexit` handler, for every cluster the process started); the directory of a killed run is found
//! and removed by the next run.
//!
//! `ANONYMIZE_TEST_DATABASE_URL` (a superuser URL) makes the suite use that server instead. Tests that
//! need a differently configured server (TLS, password authentication, few connections) start their
//! own with [`Cluster::start`]; it is stopped and removed when the value is dropped.
//!
//! Nothing here touches a server this module did not start, unless told to by that variable.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The variable that points the suite at an existing server.
pub const URL_VAR: &str = "ANONYMIZE_TEST_DATABASE_URL";

/// A server the tests talk to: how to reach it as a superuser.
#[derive(Debug, Clone)]
pub struct Server {
    /// A host name or address for TCP clients.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// Where `psql`, `pg_dump`, `createdb` … are; `None` uses `PATH`.
    pub bindir: Option<PathBuf>,
    /// The cluster behind it, when this module started it.
    pub cluster: Option<Arc<Cluster>>,
}

impl Server {
    /// A URL for database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        self.url_as(&self.user, self.password.as_deref(), db)
    }

    /// A URL for database `db` as another role.
    pub fn url_as(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let auth = match password {
            Some(p) => format!("{user}:{}", percent(p)),
            None => user.to_string(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("postgres://{auth}@{host}:{}/{db}", self.port)
    }

    /// How the binary shows a URL of `user` with a password: the password as `***`.
    pub fn redacted_url(&self, user: &str, db: &str) -> String {
        self.url_as(user, Some("PASSWORD"), db)
            .replacen(":PASSWORD@", ":***@", 1)
    }

    /// `-h host -p port -U user` for the client programs.
    pub fn client_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.host.clone(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            self.user.clone(),
        ]
    }

    /// A client program (`psql`, `pg_dump`, …) of this server's installation, with no `PG*`
    /// variable inherited from the environment (they could point it elsewhere) and the password, if
    /// any, in its environment. The connection arguments are the caller's to add.
    pub fn program(&self, name: &str) -> Command {
        let path = self
            .bindir
            .as_ref()
            .map(|d| d.join(name))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(name));
        let mut c = Command::new(path);
        clear_pg_env(&mut c);
        if let Some(p) = &self.password {
            c.env("PGPASSWORD", p);
        }
        c
    }
}

/// A `PATH` with the installation's programs first, for the binary under test (it runs pg_dump).
pub fn path_env() -> std::ffi::OsString {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let mut dirs: Vec<PathBuf> = BINDIR.get_or_init(find_bindir).iter().cloned().collect();
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).expect("PATH entries without separators")
}

/// Remove every `PG*` variable from a command's environment.
pub fn clear_pg_env(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            c.env_remove(k);
        }
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// The server of this test run: started on first use, or the one `ANONYMIZE_TEST_DATABASE_URL`
/// names. Panics with what to install or set when neither is possible: a test that cannot reach a
/// server fails, it is never skipped.
pub fn server() -> &'static Server {
    let s = SERVER.get_or_init(|| match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => parse_url(&url),
        _ => start_main(),
    });
    match s {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn start_main() -> Result<Server, String> {
    let bindir = find_bindir().ok_or_else(missing_binaries)?;
    let cluster = Cluster::start_in(&bindir, &ClusterConfig::default())?;
    Ok(Server {
        host: "127.0.0.1".into(),
        port: cluster.port(),
        user: "postgres".into(),
        password: None,
        bindir: Some(bindir),
        cluster: Some(Arc::new(cluster)),
    })
}

fn missing_binaries() -> String {
    format!(
        "the end-to-end tests start a throwaway PostgreSQL server and need its server programs \
         (initdb, postgres), found through `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH; \
         none were found. Install them (Debian/Ubuntu: `apt-get install postgresql`; Fedora: \
         `dnf install postgresql-server`; macOS: `brew install postgresql@16`), or set {URL_VAR} to \
         a superuser URL of a server the tests may use (postgres://postgres@host:port/postgres)"
    )
}

/// `postgres://user[:password]@host[:port][/db]` → a server.
fn parse_url(url: &str) -> Result<Server, String> {
    let bad =
        || format!("{URL_VAR} must look like postgres://user[:password]@host[:port][/database]");
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(bad)?;
    let (auth, hostpart) = rest.rsplit_once('@').ok_or_else(bad)?;
    let (user, password) = match auth.split_once(':') {
        Some((u, p)) => (u.to_string(), Some(unpercent(p))),
        None => (auth.to_string(), None),
    };
    let hostport = hostpart.split(['/', '?']).next().unwrap_or("");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (hostport, 5432),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if user.is_empty() || host.is_empty() {
        return Err(bad());
    }
    let bindir = find_bindir();
    Ok(Server {
        host: host.to_string(),
        port,
        user,
        password,
        bindir,
        cluster: None,
    })
}

fn unpercent(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of the server programs: `pg_config --bindir`, the highest
/// `/usr/lib/postgresql/N/bin`, or the directory of `initdb` on `PATH`.
pub fn find_bindir() -> Option<PathBuf> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .filter(|(_, d)| has_server(d))
            .collect();
        versions.sort();
        if let Some((_, d)) = versions.pop() {
            return Some(d);
        }
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|d| has_server(d))
}

/// How a cluster differs from the default one.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// Extra `name = value` settings for postgresql.conf.
    pub settings: Vec<(String, String)>,
    /// The whole pg_hba.conf; `None` trusts every local and 127.0.0.1 connection.
    pub hba: Option<String>,
    /// Files to put into the data directory before the start (certificates, keys), with mode 0600.
    pub files: Vec<(String, Vec<u8>)>,
    /// A password for the superuser, set once the server is up.
    pub superuser_password: Option<String>,
    /// The superuser's name, `postgres` unless said (a cluster that loads a pg_dumpall file, which
    /// creates the role `postgres`, needs another).
    pub superuser: Option<String>,
    /// Start as a streaming hot standby of this server (a `pg_basebackup -R` of it, which must
    /// allow local replication connections), instead of from the template.
    pub standby_of: Option<Server>,
}

impl ClusterConfig {
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// A running cluster this module started; stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    handle: Arc<ClusterHandle>,
    pub bindir: PathBuf,
    pub superuser: String,
}

/// What stops a cluster: its directory, port and the server process's exit.
#[derive(Debug)]
pub struct ClusterHandle {
    pub dir: PathBuf,
    pub port: u16,
    pub pid: u32,
    exited: Arc<(Mutex<bool>, Condvar)>,
    stopped: Mutex<bool>,
}

impl ClusterHandle {
    /// The Unix socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// Stop the server at once (an immediate shutdown: the cluster is thrown away) and remove its
    /// directory. Safe to call twice.
    pub fn stop(&self) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if *stopped {
            return;
        }
        *stopped = true;
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGQUIT);
        }
        if !self.wait_exit(Duration::from_secs(20)) {
            unsafe {
                libc::kill(self.pid as i32, libc::SIGKILL);
            }
            self.wait_exit(Duration::from_secs(5));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }

    fn wait_exit(&self, timeout: Duration) -> bool {
        let (lock, cv) = &*self.exited;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (done, _) = cv
            .wait_timeout_while(guard, timeout, |exited| !*exited)
            .unwrap_or_else(|e| e.into_inner());
        *done
    }

    pub fn has_exited(&self) -> bool {
        *self.exited.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.handle.stop();
    }
}

impl Cluster {
    /// Start a cluster of the installation the suite uses, configured as asked.
    pub fn start(config: &ClusterConfig) -> Cluster {
        let bindir = find_bindir().unwrap_or_else(|| panic!("{}", missing_binaries()));
        Cluster::start_in(&bindir, config).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn port(&self) -> u16 {
        self.handle.port
    }

    pub fn dir(&self) -> &Path {
        &self.handle.dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.handle.dir.join("data")
    }

    /// The superuser over TCP on 127.0.0.1 (trusted unless the configuration's pg_hba.conf says
    /// otherwise).
    pub fn tcp(&self) -> Server {
        Server {
            host: "127.0.0.1".into(),
            ..self.admin()
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.handle.dir.join("server.log")).unwrap_or_default()
    }

    /// The superuser, reached through the Unix socket (always trusted).
    pub fn admin(&self) -> Server {
        Server {
            host: self.handle.dir.display().to_string(),
            port: self.handle.port,
            user: self.superuser.clone(),
            password: None,
            bindir: Some(self.bindir.clone()),
            cluster: None,
        }
    }

    pub fn handle(&self) -> &ClusterHandle {
        &self.handle
    }

    fn start_in(bindir: &Path, config: &ClusterConfig) -> Result<Cluster, String> {
        remove_stale_clusters();
        let account = Account::current_or_unprivileged()?;
        let superuser = config
            .superuser
            .clone()
            .unwrap_or_else(|| "postgres".into());
        let template = template(bindir, &account, &superuser)?;
        let parent = clusters_dir()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(|e| format!("creating a cluster directory in {}: {e}", parent.display()))?
            .keep();
        fs::write(dir.join("owner"), owner_line(std::process::id()))
            .map_err(|e| format!("writing {}/owner: {e}", dir.display()))?;
        let data = dir.join("data");
        if let Some(primary) = &config.standby_of {
            account.give(&dir)?;
            let o = account
                .command(&bindir.join("pg_basebackup"))
                .arg("-D")
                .arg(&data)
                .args(["-R", "-X", "stream", "-c", "fast", "-h", &primary.host])
                .args(["-p", &primary.port.to_string(), "-U", &primary.user])
                .output()
                .map_err(|e| format!("running pg_basebackup: {e}"))?;
            if !o.status.success() {
                return Err(format!(
                    "pg_basebackup failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        } else {
            let copied = Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(&data)
                .status()
                .map_err(|e| format!("copying the template cluster: {e}"))?;
            if !copied.success() {
                return Err(format!("copying {} failed", template.display()));
            }
        }
        if let Some(hba) = &config.hba {
            fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())?;
        }
        for (name, bytes) in &config.files {
            let p = data.join(name);
            fs::write(&p, bytes).map_err(|e| e.to_string())?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
        }
        account.give(&dir)?;
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            match launch(bindir, &dir, port, config, &account) {
                Ok(handle) => {
                    let handle = Arc::new(handle);
                    stop_at_exit(&handle);
                    let cluster = Cluster {
                        handle,
                        bindir: bindir.to_path_buf(),
                        superuser: superuser.clone(),
                    };
                    if let Some(p) = &config.superuser_password {
                        let admin = cluster.admin();
                        let o = admin
                            .program("psql")
                            .args(admin.client_args())
                            .args(["-X", "-q", "-d", "postgres", "-c"])
                            .arg(format!(
                                "ALTER ROLE \"{superuser}\" PASSWORD '{}'",
                                p.replace('\'', "''")
                            ))
                            .output()
                            .map_err(|e| e.to_string())?;
                        if !o.status.success() {
                            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
                        }
                    }
                    return Ok(cluster);
                }
                Err(e) => last_error = e,
            }
        }
        let _ = fs::remove_dir_all(&dir);
        Err(last_error)
    }
}

/// Every cluster this process started, stopped and removed when it exits — whether its tests passed
/// or not, and also for a cluster kept in a static, which is never dropped.
static STARTED: Mutex<Vec<Arc<ClusterHandle>>> = Mutex::new(Vec::new());

fn stop_at_exit(handle: &Arc<ClusterHandle>) {
    extern "C" fn stop_all() {
        let started = std::mem::take(&mut *STARTED.lock().unwrap_or_else(|e| e.into_inner()));
        for h in started {
            h.stop();
        }
    }
    static REGISTER: std::sync::Once = std::sync::Once::new();
    // SAFETY: registering a plain function; it runs once at process exit.
    REGISTER.call_once(|| unsafe {
        libc::atexit(stop_all);
    });
    STARTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::clone(handle));
}

/// Start the server of `dir/data` on `port` and wait until it accepts connections.
fn launch(
    bindir: &Path,
    dir: &Path,
    port: u16,
    config: &ClusterConfig,
    account: &Account,
) -> Result<ClusterHandle, String> {
    let log_path = dir.join("server.log");
    let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
    account.give(&log_path)?;
    let mut settings: Vec<(String, String)> = vec![
        ("port".into(), port.to_string()),
        ("listen_addresses".into(), "127.0.0.1".into()),
        ("unix_socket_directories".into(), dir.display().to_string()),
        ("fsync".into(), "off".into()),
        ("full_page_writes".into(), "off".into()),
        ("synchronous_commit".into(), "off".into()),
        // One refresh locks every table, index and constraint of a 600-table schema at once.
        ("max_locks_per_transaction".into(), "1024".into()),
        ("max_connections".into(), "100".into()),
        ("shared_buffers".into(), "64MB".into()),
        ("max_wal_size".into(), "1GB".into()),
        ("logging_collector".into(), "off".into()),
        ("log_min_messages".into(), "warning".into()),
    ];
    settings.extend(config.settings.iter().cloned());
    let mut cmd = Command::new(bindir.join("postgres"));
    cmd.arg("-D").arg(dir.join("data"));
    for (k, v) in &settings {
        cmd.arg("-c").arg(format!("{k}={v}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    clear_pg_env(&mut cmd);
    let (uid, gid) = (account.uid, account.gid);
    let switch = account.switch;
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if switch
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After the user switch (which clears it): the server ends when the thread that
            // started it does, and that thread lives as long as the test process.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    // The starting thread waits on the server for the rest of the process's life.
    let exited = Arc::new((Mutex::new(false), Condvar::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let exited = Arc::clone(&exited);
        std::thread::Builder::new()
            .name(format!("postgres-{port}"))
            .spawn(move || {
                let child = cmd.spawn();
                let mut child = match child {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(format!("starting postgres: {e}")));
                        return;
                    }
                };
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
                let (lock, cv) = &*exited;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
                cv.notify_all();
                // Stay alive: the parent-death signal follows this thread, not the process.
                loop {
                    std::thread::park();
                }
            })
            .map_err(|e| e.to_string())?;
    }
    let pid = rx.recv().map_err(|e| e.to_string())??;
    let handle = ClusterHandle {
        dir: dir.to_path_buf(),
        port,
        pid,
        exited,
        stopped: Mutex::new(false),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let pidfile = dir.join("data/postmaster.pid");
    loop {
        if handle.has_exited() {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            *handle.stopped.lock().unwrap() = true;
            return Err(format!("the test server did not start:\n{log}"));
        }
        // The 8th line of postmaster.pid says "ready" once connections are accepted.
        if let Ok(text) = fs::read_to_string(&pidfile) {
            if text.lines().nth(7).is_some_and(|l| l.trim() == "ready") {
                return Ok(handle);
            }
        }
        if Instant::now() > deadline {
            handle.stop();
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("the test server did not start within 60 s:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Where every cluster of the suite lives: one directory per cluster, named after its owner.
pub fn clusters_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join("anonymize-test-clusters");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // The unprivileged server account must reach its own directory inside.
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777));
    Ok(dir)
}

/// "pid start-time" of a process: a pid alone could be reused by another process.
fn owner_line(pid: u32) -> String {
    format!("{pid} {}", start_time(pid).unwrap_or_default())
}

fn start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19).map(String::from)
}

fn alive(owner: &str) -> bool {
    let mut parts = owner.split_whitespace();
    let (Some(pid), Some(started)) = (parts.next(), parts.next()) else {
        return false;
    };
    pid.parse::<u32>()
        .ok()
        .and_then(start_time)
        .is_some_and(|s| s == started)
}

/// Remove the clusters of test runs that ended without removing them (killed): their server is
/// stopped if it still runs, and their directory removed. Clusters of live runs are left alone.
pub fn remove_stale_clusters() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(parent) = clusters_dir() else {
        return removed;
    };
    let Ok(entries) = fs::read_dir(&parent) else {
        return removed;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let owner = fs::read_to_string(dir.join("owner")).unwrap_or_default();
        if alive(&owner) {
            continue;
        }
        // A directory being set up has no owner file yet for a moment: spare young ones.
        let young = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(10));
        if owner.is_empty() && young {
            continue;
        }
        if let Ok(pidfile) = fs::read_to_string(dir.join("data/postmaster.pid")) {
            if let Some(pid) = pidfile
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok())
            {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let dir_text = dir.display().to_string();
                if String::from_utf8_lossy(&cmdline).contains(&dir_text) {
                    // SAFETY: a server process of a cluster nobody owns any more.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        if fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// The account the server runs as: this one, or an unprivileged one when the tests run as root
/// (initdb and postgres refuse root).
struct Account {
    uid: u32,
    gid: u32,
    switch: bool,
    name: String,
}

impl Account {
    fn current_or_unprivileged() -> Result<Account, String> {
        // SAFETY: plain queries of this process's ids.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if uid != 0 {
            return Ok(Account {
                uid,
                gid,
                switch: false,
                name: String::new(),
            });
        }
        for name in ["postgres", "nobody"] {
            let cname = std::ffi::CString::new(name).expect("no NUL");
            // SAFETY: getpwnam returns a pointer into static storage or NULL; read at once.
            let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
            if !pw.is_null() {
                let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
                return Ok(Account {
                    uid,
                    gid,
                    switch: true,
                    name: name.into(),
                });
            }
        }
        Err(
            "the tests run as root and PostgreSQL refuses to run as root, but there is no \
             unprivileged `postgres` or `nobody` account to run the test server as \
             (create one: `useradd --system postgres`)"
                .into(),
        )
    }

    /// Make a path (recursively) the server account's.
    fn give(&self, path: &Path) -> Result<(), String> {
        if !self.switch {
            return Ok(());
        }
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path)
            .status()
            .map_err(|e| e.to_string())?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("chown {} to {} failed", path.display(), self.name))
        }
    }

    /// Run a program as this account.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        clear_pg_env(&mut c);
        if self.switch {
            // std drops the supplementary groups too when it switches away from root.
            c.uid(self.uid).gid(self.gid);
        }
        c
    }
}

/// A data directory made by `initdb` once per build directory, server version and account, copied
/// for every cluster (a copy takes a tenth of an initdb's time). initdb runs in the clusters'
/// directory, which the server account can reach wherever the checkout is.
fn template(bindir: &Path, account: &Account, superuser: &str) -> Result<PathBuf, String> {
    let version = Command::new(bindir.join("postgres"))
        .arg("--version")
        .output()
        .map_err(|e| format!("running {}/postgres: {e}", bindir.display()))?;
    let version: String = String::from_utf8_lossy(&version.stdout)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("pg-template-{version}-{}-{superuser}", account.uid));
    if dir.join("PG_VERSION").is_file() {
        return Ok(dir);
    }
    fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    // One initdb at a time; whoever waited finds the template made.
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(base.join("pg-template.lock"))
        .map_err(|e| e.to_string())?;
    // SAFETY: flock on an open descriptor; released when `lock` is closed.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
    }
    if dir.join("PG_VERSION").is_file() {
        return Ok(dir);
    }
    let work = tempfile::Builder::new()
        .prefix(&format!("{}-initdb-", std::process::id()))
        .tempdir_in(clusters_dir()?)
        .map_err(|e| e.to_string())?;
    fs::write(work.path().join("owner"), owner_line(std::process::id()))
        .map_err(|e| e.to_string())?;
    account.give(work.path())?;
    let data = work.path().join("data");
    let out = account
        .command(&bindir.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", superuser])
        .args(["-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        .current_dir(work.path())
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let partial = base.join(format!(
        "pg-template-{version}-{}-{superuser}.partial",
        account.uid
    ));
    let _ = fs::remove_dir_all(&partial);
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&partial)
        .status()
        .map_err(|e| e.to_string())?;
    if !copied.success() {
        return Err(format!(
            "copying the new template to {} failed",
            partial.display()
        ));
    }
    fs::rename(&partial, &dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
