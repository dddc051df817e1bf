//! chronyd with the configuration tandem writes, against a real NTP server: a second
//! chronyd serving its own clock (`local stratum 8`) on an address inside a network
//! namespace this test creates. Both run with `-x`: they never touch the clock of the
//! machine (a network namespace shares it). The client must reach synchronisation,
//! and `chronyc -c tracking` must parse and say so. Daemons are killed by their process
//! id and the namespace is deleted when the test ends.
//!
//! A second test changes the time servers of a running chronyd through
//! [`tandem_runtime::chrony::Setup`], as clusterd does, with a loop that starts chronyd
//! again as init does (only while its configuration exists). Its servers are loopback
//! addresses nobody answers on, and it runs with `-x` too.
//!
//! Runs as root (namespaces). Needs Debian packages iproute2 and chrony.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tandem_runtime::chrony::{PID_FILE, SOCKET, Setup, Tracking, chrony_conf, parse_tracking};
use tandem_runtime::confsync::Changes;

const SERVER: &str = "10.79.0.1";

fn need(tool: &str, package: &str) {
    assert!(
        Path::new(tool).is_file(),
        "{tool} is missing: apt-get install -y --no-install-recommends {package}"
    );
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {} (this test needs root for network namespaces)",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace and the daemons in it.
struct Lab {
    ns: String,
    daemons: Vec<Child>,
}

impl Lab {
    fn chronyd(&mut self, conf: &Path) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "/usr/sbin/chronyd"])
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chronyd");
        self.daemons.push(child);
    }

    fn tracking(&self, sock: &Path) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "/usr/bin/chronyc", "-c", "-h"])
            .arg(sock)
            .arg("tracking")
            .output()
            .expect("run chronyc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.daemons {
            // `ip netns exec` execs chronyd (-d keeps it in the foreground): its PID.
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn chronyd_with_the_written_configuration_synchronises_to_a_local_server() {
    need("/usr/sbin/chronyd", "chrony");
    need("/usr/bin/chronyc", "chrony");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ns = format!("tdmntp{}", std::process::id());
    ip(&["netns", "add", &ns]);
    let mut lab = Lab {
        ns: ns.clone(),
        daemons: Vec::new(),
    };
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{SERVER}/32"),
        "dev",
        "lo",
    ]);

    let server = d.join("server.conf");
    std::fs::write(
        &server,
        format!(
            "local stratum 8\nallow {SERVER}/32\nbindaddress {SERVER}\ncmdport 0\nbindcmdaddress {dir}/server.sock\npidfile {dir}/server.pid\n",
            dir = d.display()
        ),
    )
    .unwrap();
    lab.chronyd(&server);

    let run = d.join("client");
    std::fs::create_dir(&run).unwrap();
    // chronyd refuses a command socket in a directory others may enter.
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let conf = chrony_conf(&[(SERVER, None)], &run, &run).expect("configuration");
    let client = d.join("client.conf");
    std::fs::write(&client, &conf).unwrap();
    lab.chronyd(&client);
    let sock = run.join("chronyd.sock");

    let t0 = Instant::now();
    let mut last;
    let mut first: Option<Tracking> = None;
    let synced = loop {
        last = lab.tracking(&sock);
        if let Ok(t) = parse_tracking(&last) {
            if first.is_none() {
                eprintln!("first `chronyc -c tracking`: {last}");
            }
            first.get_or_insert(t.clone());
            if t.synchronised() {
                break t;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "chronyd did not synchronise to {SERVER} within 40 s; last `chronyc -c tracking`: {last:?}; configuration:\n{conf}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "synchronised after {:?}: {last}first report: {first:?}",
        t0.elapsed()
    );
    assert_eq!(synced.reference, SERVER, "{synced:?}");
    assert_eq!(synced.stratum, 9, "one below the server's local stratum 8");
    assert!(synced.offset_secs.abs() < 0.5, "{synced:?}");
}

/// Starts chronyd while its configuration exists and starts it again when it exits,
/// as init does; ends the chronyd it started (by its process id) when dropped.
struct Supervisor {
    stop: Arc<AtomicBool>,
    /// Process ids of the chronyd started, in order.
    started: Arc<Mutex<Vec<u32>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    fn start(conf: &Path, log: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Mutex::new(Vec::new()));
        let (conf, log) = (conf.to_owned(), log.to_owned());
        let (s, st) = (Arc::clone(&stop), Arc::clone(&started));
        let thread = std::thread::spawn(move || {
            let mut child: Option<Child> = None;
            while !s.load(Ordering::SeqCst) {
                let running = child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
                if !running && conf.exists() {
                    let out = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .unwrap();
                    let c = Command::new("/usr/sbin/chronyd")
                        .args(["-d", "-x", "-u", "root", "-f"])
                        .arg(&conf)
                        .stdin(Stdio::null())
                        .stdout(out.try_clone().unwrap())
                        .stderr(out)
                        .spawn()
                        .expect("start chronyd");
                    st.lock().unwrap().push(c.id());
                    child = Some(c);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if let Some(mut c) = child {
                let _ = c.kill();
                let _ = c.wait();
            }
        });
        Supervisor {
            stop,
            started,
            thread: Some(thread),
        }
    }

    fn started(&self) -> Vec<u32> {
        self.started.lock().unwrap().clone()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The addresses of chronyd's sources (`chronyc -n -c -h SOCKET sources`), or why not.
fn sources(sock: &Path) -> Result<Vec<String>, String> {
    let out = Command::new("/usr/bin/chronyc")
        .args(["-n", "-c", "-h"])
        .arg(sock)
        .arg("sources")
        .stdin(Stdio::null())
        .output()
        .expect("run chronyc");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.trim().starts_with("50") {
        return Err(format!(
            "{text}{}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(text
        .lines()
        .filter_map(|l| l.split(',').nth(2).map(str::to_owned))
        .collect())
}

fn wait_for(what: &str, mut ok: impl FnMut() -> Result<(), String>) {
    let t0 = Instant::now();
    loop {
        match ok() {
            Ok(()) => return,
            Err(e) => assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{what}: not within 20 s: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn with_servers(
    cfg: &tandem_config::ApplianceConfig,
    servers: &[&str],
) -> tandem_config::ApplianceConfig {
    let mut c = cfg.clone();
    c.network.ntp_servers = servers.iter().map(|s| s.parse().unwrap()).collect();
    c.cluster.revision += 1;
    c
}

#[test]
fn a_change_of_the_time_servers_restarts_chronyd_with_them() {
    need("/usr/sbin/chronyd", "chrony");
    need("/usr/bin/chronyc", "chrony");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = d.join("run");
    std::fs::create_dir(&run).unwrap();
    // chronyd refuses a command socket in a directory others may enter.
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let setup = Setup {
        conf: d.join("tandem/chrony.conf"),
        run_dir: run.clone(),
    };
    let sock = run.join(SOCKET);
    let sock = sock.as_path();
    let pid = || -> Option<u32> {
        std::fs::read_to_string(run.join(PID_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    };
    let log = d.join("chronyd.log");
    let expect = |servers: &[&str]| {
        let want: Vec<String> = servers.iter().map(|s| (*s).to_owned()).collect();
        move || match sources(sock) {
            Ok(mut have) => {
                have.sort();
                if have == want {
                    Ok(())
                } else {
                    Err(format!("sources {have:?}, expected {want:?}"))
                }
            }
            Err(e) => Err(e),
        }
    };

    let (none, _) =
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
    assert!(none.network.ntp_servers.is_empty());
    // No time servers: no file, and nothing starts.
    let sup = Supervisor::start(&setup.conf, &log);
    let one = with_servers(&none, &["127.0.0.77:1123"]);
    let c = Changes::between(&none, &one);
    assert!(c.time_servers && !c.needs_restart(), "{c:?}");
    std::thread::sleep(Duration::from_millis(600));
    assert!(sup.started().is_empty());

    // Servers where there were none: the file appears and chronyd starts with it.
    assert_eq!(
        setup.refresh(&one).unwrap(),
        "time servers 127.0.0.77:1123 (chronyd starts with them)"
    );
    let text = std::fs::read_to_string(&setup.conf).unwrap();
    assert!(
        text.contains("server 127.0.0.77 iburst port 1123\n"),
        "{text}"
    );
    wait_for("chronyd with 127.0.0.77", expect(&["127.0.0.77"]));
    let first = pid().expect("chronyd's pid file");
    assert_eq!(sup.started(), vec![first]);

    // Other servers: chronyd is ended and runs again with them.
    let two = with_servers(&one, &["127.0.0.78", "127.0.0.79:1124"]);
    let c = Changes::between(&one, &two);
    assert!(c.time_servers && !c.needs_restart(), "{c:?}");
    assert_eq!(
        setup.refresh(&two).unwrap(),
        "time servers 127.0.0.78, 127.0.0.79:1124 (chronyd restarts with them)"
    );
    wait_for(
        "chronyd with 127.0.0.78 and 127.0.0.79",
        expect(&["127.0.0.78", "127.0.0.79"]),
    );
    let second = pid().expect("chronyd's pid file");
    assert_ne!(second, first, "a new chronyd");
    assert_eq!(sup.started(), vec![first, second]);

    // No servers left: the file goes, chronyd stops and is not started again.
    let three = with_servers(&two, &[]);
    assert!(Changes::between(&two, &three).time_servers);
    assert_eq!(
        setup.refresh(&three).unwrap(),
        format!("{} (chronyd stopped)", tandem_runtime::chrony::NO_SERVERS)
    );
    assert!(!setup.conf.exists());
    wait_for("chronyd ended", || match sources(sock) {
        Ok(s) => Err(format!("chronyd still answers: {s:?}")),
        Err(_) if pid().is_none() => Ok(()),
        Err(_) => Err("the pid file is still there".into()),
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sup.started(), vec![first, second], "not started again");
    assert!(sources(sock).is_err());

    // And back: chronyd starts again.
    let four = with_servers(&three, &["127.0.0.80"]);
    assert_eq!(
        setup.refresh(&four).unwrap(),
        "time servers 127.0.0.80 (chronyd starts with them)"
    );
    wait_for("chronyd with 127.0.0.80", expect(&["127.0.0.80"]));
    assert_eq!(sup.started().len(), 3);
    drop(sup);
    eprintln!(
        "chronyd's output:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
