//! E-mail alerts from a real clusterd pair to a real SMTP server: two clusterd on
//! loopback (internal heartbeat path 127.0.0.1 <-> 127.0.0.2, fast timings) and Python's
//! aiosmtpd (Debian package `python3-aiosmtpd`) as relay host on 127.0.0.1, storing what
//! it receives in a Maildir. Daemons are killed by their process id (SIGKILL), as a
//! power loss would. No packet leaves loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_api::Client;

#[path = "../../notify/tests/aiosmtpd/mod.rs"]
mod aiosmtpd;

use aiosmtpd::{Server as Smtp, free_port as free_tcp_port, received, require_aiosmtpd};

const KEEPALIVE_MS: u64 = 200;
const DEADTIME_MS: u64 = 1000;

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// The subjects of every message the server stored.
fn subjects(maildir: &Path) -> Vec<String> {
    let mut out: Vec<String> = received(maildir)
        .iter()
        .flat_map(|m| {
            m.lines()
                .take_while(|l| !l.is_empty())
                .filter_map(|l| l.strip_prefix("Subject: "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

fn count(maildir: &Path, subject: &str) -> usize {
    subjects(maildir).iter().filter(|s| *s == subject).count()
}

/// A pair of clusterd on loopback, each with its state directory (and so its outbox)
/// kept across restarts.
struct Pair {
    dir: PathBuf,
    udp_port: u16,
    relay: String,
    children: [Option<Child>; 2],
}

const NODES: [&str; 2] = ["node1", "node2"];
const ADDRS: [&str; 2] = ["127.0.0.1", "127.0.0.2"];

impl Pair {
    fn new(name: &str, relay_port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("tdm-mail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("key"), b"mail test cluster key").unwrap();
        Pair {
            dir,
            udp_port: free_udp_port(),
            relay: format!("127.0.0.1:{relay_port}"),
            children: [None, None],
        }
    }

    fn control(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.sock", NODES[i]))
    }

    fn outbox(&self, i: usize) -> PathBuf {
        self.dir.join(NODES[i]).join("outbox")
    }

    fn start(&mut self, i: usize) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", NODES[i])))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_clusterd"))
            .args(["--node", NODES[i], "--key-file"])
            .arg(self.dir.join("key"))
            .arg("--state-dir")
            .arg(self.dir.join(NODES[i]))
            .arg("--control")
            .arg(self.control(i))
            .arg("--internal")
            .arg(format!("{},{}", ADDRS[i], ADDRS[1 - i]))
            .arg("--udp-port")
            .arg(self.udp_port.to_string())
            .arg("--keepalive-ms")
            .arg(KEEPALIVE_MS.to_string())
            .arg("--deadtime-ms")
            .arg(DEADTIME_MS.to_string())
            .arg("--warntime-ms")
            .arg((DEADTIME_MS / 2).to_string())
            .arg("--initdead-ms")
            .arg((DEADTIME_MS * 2).to_string())
            .args(["--board", "none"])
            .args([
                "--notify-to",
                "ops@example.net",
                "--notify-relay",
                &self.relay,
            ])
            .args(["--mail-retry", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
        let sock = self.control(i);
        wait_until("control socket", Duration::from_secs(10), || {
            Client::connect(&sock).is_ok()
        });
    }

    /// SIGKILL to the daemon's own process id.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn role(&self, i: usize) -> String {
        Client::connect(&self.control(i))
            .ok()
            .and_then(|mut c| c.status().ok())
            .map_or_else(|| "unreachable".into(), |s| s.role)
    }

    fn wait_roles(&self, r0: &str, r1: &str, limit: Duration) {
        wait_until(&format!("roles {r0}/{r1}"), limit, || {
            self.role(0) == r0 && self.role(1) == r1
        });
    }

    /// The queued messages' files of node `i`'s outbox, as text.
    fn queued(&self, i: usize) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.outbox(i)) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("msg-"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.kill(0);
        self.kill(1);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("daemon logs kept in {}", self.dir.display());
        }
    }
}

#[test]
fn failover_is_mailed_and_mail_survives_smtp_and_daemon_outages() {
    require_aiosmtpd();
    let smtp_port = free_tcp_port();
    let mut pair = Pair::new("failover", smtp_port);
    let maildir = pair.dir.join("mail");
    let smtp = Smtp::start(smtp_port, &maildir);

    // node1 alone takes over at start; node2 joins as passive.
    pair.start(0);
    wait_until("node1 active", Duration::from_secs(10), || {
        pair.role(0) == "active"
    });
    pair.start(1);
    pair.wait_roles("active", "passive", Duration::from_secs(10));
    wait_until("takeover mail", Duration::from_secs(10), || {
        count(&maildir, "[tandem node1] takeover: starting -> active") == 1
    });

    // SIGKILL of the active node: the passive one takes over and says so.
    pair.kill(0);
    let took = wait_until("failover mails", Duration::from_secs(15), || {
        let s = subjects(&maildir);
        [
            "[tandem node2] failover: passive -> active",
            "[tandem node2] peer node1: alive -> dead",
            "[tandem node2] heartbeat internal: up -> down",
        ]
        .iter()
        .all(|want| s.iter().any(|got| got == want))
    });
    eprintln!("failover mails arrived {took:?} after the kill");
    assert_eq!(pair.role(1), "active");
    // Start-up is not mailed: node2 first hearing node1 was no change.
    let s = subjects(&maildir);
    assert!(
        !s.iter()
            .any(|x| x.contains("dead -> alive") || x.contains("down -> up")),
        "{s:?}"
    );

    // Relay down. node1 comes back: node2 queues "peer back", cannot send it.
    drop(smtp);
    pair.start(0);
    pair.wait_roles("passive", "active", Duration::from_secs(10));
    wait_until(
        "peer-back mail queued on node2",
        Duration::from_secs(10),
        || {
            pair.queued(1)
                .iter()
                .any(|m| m.contains("\"kind\": \"peer node1\"") && m.contains("\"new\": \"alive\""))
        },
    );
    wait_until("failed attempt recorded", Duration::from_secs(10), || {
        pair.queued(1)
            .iter()
            .any(|m| m.contains(&format!("127.0.0.1:{smtp_port}")))
    });

    // node2 dies with the message only on its disk; node1 takes over (its mails queue
    // too); node2 restarts, and only then the relay comes back.
    pair.kill(1);
    pair.wait_roles("active", "unreachable", Duration::from_secs(10));
    pair.start(1);
    pair.wait_roles("active", "passive", Duration::from_secs(10));
    assert!(
        subjects(&maildir)
            .iter()
            .all(|s| !s.contains("dead -> alive"))
    );
    let _smtp = Smtp::start(smtp_port, &maildir);
    wait_until("queued mails delivered", Duration::from_secs(30), || {
        count(&maildir, "[tandem node2] peer node1: dead -> alive") == 1
            && count(&maildir, "[tandem node1] failover: passive -> active") == 1
            && pair.queued(0).is_empty()
            && pair.queued(1).is_empty()
    });
    eprintln!("received: {:#?}", subjects(&maildir));
    // Delivered once each, also after both restarts.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count(&maildir, "[tandem node2] peer node1: dead -> alive"),
        1
    );
    assert_eq!(
        count(&maildir, "[tandem node2] failover: passive -> active"),
        1
    );
    assert_eq!(
        count(&maildir, "[tandem node1] failover: passive -> active"),
        1
    );
}

#[test]
fn a_hanging_relay_does_not_hold_up_the_cluster() {
    // A "relay" that never says a word: the kernel completes the connection (backlog)
    // and nobody answers, so the mail thread waits for its SMTP timeout while the
    // heartbeat and decisions go on.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut pair = Pair::new("hang", port);
    pair.start(0);
    wait_until("node1 active", Duration::from_secs(10), || {
        pair.role(0) == "active"
    });
    pair.start(1);
    pair.wait_roles("active", "passive", Duration::from_secs(10));
    // node1's takeover mail is stuck at the silent relay by now.
    let t0 = Instant::now();
    pair.kill(0);
    pair.wait_roles("unreachable", "active", Duration::from_secs(5));
    let took = t0.elapsed();
    let bound = Duration::from_millis(DEADTIME_MS + KEEPALIVE_MS + 1500);
    assert!(took <= bound, "takeover took {took:?}, bound {bound:?}");
    // node2's mail thread now hangs on the relay too; node1 restarting must still see
    // node2's heartbeats and join as passive, and status must answer at once.
    pair.start(0);
    pair.wait_roles("passive", "active", Duration::from_secs(5));
    let t = Instant::now();
    assert_eq!(pair.role(1), "active");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(
        !pair.queued(1).is_empty(),
        "node2's mails wait in its outbox"
    );
    drop(pair);
    drop(silent);
}
