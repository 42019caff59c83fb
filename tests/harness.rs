//! The suite's own server: a test binary's cluster is gone when the binary ends — after passing
//! tests, after a failing one, or killed with SIGKILL (then its directory is removed by the next
//! run) — and a second cluster can be configured differently.
//!
//! The child runs are this same test binary, started again with `HARNESS_CHILD` set to how it
//! should end; the test then looks for the child's server process and directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CHILD: &str = "HARNESS_CHILD";
const TEST: &str = "clusters_end_with_their_test_binary_and_leftovers_are_removed";

/// The server processes whose command line names this directory.
fn servers_in(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Start this binary as a child that brings up its cluster and ends as `how` says; returns the
/// child's cluster directory (printed by the child) and, for "kill", the still running child.
fn child(how: &str) -> (PathBuf, Option<std::process::Child>) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", TEST, "--nocapture", "--test-threads", "1"])
        .env(CHILD, how)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut dir = None;
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0 {
        // libtest prints the test's name on the same line first.
        if let Some((_, d)) = line.trim().split_once("cluster-dir=") {
            dir = Some(PathBuf::from(d));
            break;
        }
        line.clear();
    }
    let Some(dir) = dir else {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        panic!("the child ({how}) printed no cluster directory: {err}");
    };
    if how == "kill" {
        return (dir, Some(child));
    }
    // Drain and wait.
    std::io::copy(&mut out, &mut std::io::sink()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.success(), how == "pass", "child {how}: {status}");
    (dir, None)
}

/// The child's side: start a cluster (kept for the rest of the process, as the suite's own
/// server is), prove it works, say where it is, end as told.
fn be_the_child(how: &str) {
    static KEPT: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();
    let cluster = KEPT.get_or_init(|| Cluster::start(&ClusterConfig::default()));
    let db = TestDb::on(&cluster.tcp(), "harness");
    assert_eq!(db.query("SELECT 1"), "1");
    let dir = cluster.dir().to_path_buf();
    println!("cluster-dir={}", dir.display());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    match how {
        "pass" => {}
        "fail" => panic!("a failing test"),
        _ => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

#[test]
fn clusters_end_with_their_test_binary_and_leftovers_are_removed() {
    if let Ok(how) = std::env::var(CHILD) {
        return be_the_child(&how);
    }
    // A run that passes and one that fails: the server is gone and the directory removed as soon as
    // the binary has exited.
    for how in ["pass", "fail"] {
        let (dir, _) = child(how);
        assert!(
            servers_in(&dir).is_empty(),
            "{how}: a server process is left"
        );
        assert!(!dir.exists(), "{how}: {} is left", dir.display());
    }
    // A run killed with SIGKILL: its server goes with it (parent-death signal) but nothing could
    // remove the directory; the next run does.
    let (dir, running) = child("kill");
    let mut running = running.unwrap();
    assert!(!servers_in(&dir).is_empty(), "the child's server runs");
    running.kill().unwrap();
    running.wait().unwrap();
    wait_until("the killed run's server has stopped", || {
        servers_in(&dir).is_empty()
    });
    assert!(dir.exists(), "a killed run cannot clean up after itself");
    let (next, _) = child("pass");
    assert_ne!(next, dir);
    assert!(!dir.exists(), "the next run removed {}", dir.display());
    // None of the children's clusters is left.
    let left: Vec<PathBuf> = std::fs::read_dir(cluster::clusters_dir().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| [&dir, &next].contains(&p))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_second_cluster_takes_its_own_settings_and_is_removed_on_drop() {
    let config = ClusterConfig {
        hba: Some("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n".to_string()),
        superuser_password: Some("harness-pw".into()),
        ..ClusterConfig::default()
    }
    .setting("max_connections", "7")
    .setting("password_encryption", "scram-sha-256");
    let c = Cluster::start(&config);
    let admin = c.admin();
    let show = |sql: &str| {
        let o = admin
            .program("psql")
            .args(admin.client_args())
            .args(["-X", "-At", "-d", "postgres", "-c", sql])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    assert_eq!(show("SHOW max_connections"), "7");
    assert_eq!(show("SHOW fsync"), "off");
    // Over TCP the password is asked for: wrong fails, right succeeds.
    let tcp = |pw: &str| {
        let mut p = admin.program("psql");
        p.args(["-X", "-At", "-h", "127.0.0.1", "-p", &c.port().to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c", "SELECT 1"])
            .env("PGPASSWORD", pw)
            .stdin(Stdio::null());
        p.output().unwrap()
    };
    assert!(!tcp("wrong").status.success());
    assert!(tcp("harness-pw").status.success());
    let dir = c.dir().to_path_buf();
    drop(c);
    assert!(!dir.exists());
    assert!(servers_in(&dir).is_empty());
}
