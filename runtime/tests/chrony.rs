//! chronyd with the configuration tandem writes, against a real NTP server: a second
//! chronyd serving its own clock (`local stratum 8`) on an address inside a network
//! namespace this test creates. Both run with `-x`: they never touch the clock of the
//! machine (a network namespace shares it). The client must reach synchronisation,
//! and `chronyc -c tracking` must parse and say so. Daemons are killed by their process
//! id and the namespace is deleted when the test ends.
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

use tandem_runtime::chrony::{Tracking, chrony_conf, parse_tracking};

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
