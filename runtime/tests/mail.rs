//! E-mail alerts from a real clusterd pair to a real SMTP server, all settings from the
//! cluster configuration (`--config`; clusterd has no mail options of its own): the
//! netns rig of `rig` (two node namespaces, crossover, external LAN, serial cable, fast
//! timings), and Python's aiosmtpd (Debian package `python3-aiosmtpd`) as relay host in
//! the LAN namespace, storing what it receives in a Maildir. Daemons are killed by their
//! process id (SIGKILL), as a power loss would. No packet leaves the rig's namespaces.
//!
//! Runs as root (namespaces). Needs Debian packages iproute2, socat and python3-aiosmtpd.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

mod rig;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rig::{DEADTIME_MS, KEEPALIVE_MS, PING_NODE, Rig, config_text, in_netns, wait_until};
use tandem_config::ApplianceConfig;
use tandem_config::schema::TlsPolicy;

#[path = "../../notify/tests/aiosmtpd/mod.rs"]
mod aiosmtpd;

use aiosmtpd::{received, require_aiosmtpd};

/// The relay's port on the LAN namespace's address.
const RELAY_PORT: u16 = 2525;

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

/// aiosmtpd listening on the LAN namespace's address; killed by its PID when dropped.
struct Smtp {
    child: Child,
}

impl Smtp {
    fn start(lan: &str, maildir: &Path) -> Smtp {
        Smtp::start_on(lan, RELAY_PORT, maildir)
    }

    fn start_on(lan: &str, port: u16, maildir: &Path) -> Smtp {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                lan,
                "/usr/bin/python3",
                "-m",
                "aiosmtpd",
                "-n",
            ])
            .arg("-l")
            .arg(format!("{PING_NODE}:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ns = lan.to_owned();
        wait_until("aiosmtpd listening", Duration::from_secs(15), || {
            in_netns(&ns, move || TcpStream::connect((PING_NODE, port)).is_ok())
        });
        Smtp { child }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        // `ip netns exec` execs python, so this PID is the server's.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq (Debian package `dnsmasq-base`) on the LAN namespace's address, port 53 (the
/// rig's `network.dns-servers`): `example.test` has its MX `mx.example.test` there too.
/// Killed by its PID when dropped.
struct Dns {
    child: Child,
}

impl Dns {
    fn start(lan: &str) -> Dns {
        rig::need_tool("dnsmasq", "dnsmasq-base");
        let child = Command::new("ip")
            .args(["netns", "exec", lan, "dnsmasq", "--keep-in-foreground"])
            .args([
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
            ])
            .args([
                "--bind-interfaces",
                &format!("--listen-address={PING_NODE}"),
            ])
            .args(["--port=53", "--local=/test/", "--pid-file="])
            .arg("--mx-host=example.test,mx.example.test,10")
            .arg(format!("--host-record=mx.example.test,{PING_NODE}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ns = lan.to_owned();
        wait_until("dnsmasq listening", Duration::from_secs(10), || {
            in_netns(&ns, || std::net::UdpSocket::bind((PING_NODE, 53)).is_err())
        });
        Dns { child }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        // `ip netns exec` execs dnsmasq (kept in the foreground): this PID is its.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rig with a configuration whose notification section names the relay in the LAN
/// namespace (plain SMTP there, so TLS is opportunistic).
struct Pair {
    rig: Rig,
    config: PathBuf,
}

impl Pair {
    fn new() -> Pair {
        Pair::with_tls(Some(TlsPolicy::Opportunistic))
    }

    fn with_tls(tls: Option<TlsPolicy>) -> Pair {
        let rig = Rig::new();
        let mut cfg = ApplianceConfig::from_toml(&config_text()).unwrap();
        cfg.notification.addresses = vec!["ops@example.net".parse().unwrap()];
        cfg.notification.relay_host = Some(format!("{PING_NODE}:{RELAY_PORT}").parse().unwrap());
        cfg.notification.tls = tls;
        let text = cfg.to_toml();
        ApplianceConfig::from_toml(&text).expect("mail configuration is valid");
        let config = rig.dir.join("mail.toml");
        std::fs::write(&config, text).unwrap();
        Pair { rig, config }
    }

    /// No relay: mail for `ops@example.test` goes to its MX, found through the rig's
    /// DNS server; the TLS policy is the default for that (opportunistic).
    fn direct() -> Pair {
        let rig = Rig::new();
        let mut cfg = ApplianceConfig::from_toml(&config_text()).unwrap();
        cfg.notification.addresses = vec!["ops@example.test".parse().unwrap()];
        cfg.notification.relay_host = None;
        cfg.notification.tls = None;
        let text = cfg.to_toml();
        ApplianceConfig::from_toml(&text).expect("direct-delivery configuration is valid");
        let config = rig.dir.join("mail.toml");
        std::fs::write(&config, text).unwrap();
        Pair { rig, config }
    }

    fn start(&mut self, i: usize) {
        let c = self.config.clone();
        self.rig.start_with_args(i, &c, &["--mail-retry", "1s"]);
    }

    fn kill(&mut self, i: usize) {
        self.rig.kill(i);
    }

    fn role(&self, i: usize) -> String {
        self.rig.role(i)
    }

    fn wait_roles(&self, r0: &str, r1: &str, limit: Duration) {
        self.rig.wait_roles(r0, r1, limit);
    }

    fn lan(&self) -> String {
        self.rig.lan.clone()
    }

    fn maildir(&self) -> PathBuf {
        self.rig.dir.join("mail")
    }

    /// The queued messages' files of node `i`'s outbox (clusterd's default, in its
    /// state directory), as text.
    fn queued(&self, i: usize) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.rig.nodes[i].state.join("outbox")) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("msg-"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

#[test]
fn failover_is_mailed_and_mail_survives_smtp_and_daemon_outages() {
    require_aiosmtpd();
    let mut pair = Pair::new();
    let maildir = pair.maildir();
    let smtp = Smtp::start(&pair.lan(), &maildir);

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
        ]
        .iter()
        .all(|want| s.iter().any(|got| got == want))
            // The last path heard (which one depends on timing) is mailed as down.
            && s.iter().any(|got| {
                got.starts_with("[tandem node2] heartbeat ") && got.ends_with(": up -> down")
            })
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
            .any(|m| m.contains(&format!("{PING_NODE}:{RELAY_PORT}")))
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
    let _smtp = Smtp::start(&pair.lan(), &maildir);
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
    let mut pair = Pair::new();
    let silent = in_netns(&pair.lan(), || {
        TcpListener::bind((PING_NODE, RELAY_PORT)).unwrap()
    });
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

#[test]
fn with_tls_required_nothing_goes_to_a_plain_relay_and_the_events_say_why() {
    require_aiosmtpd();
    // No `tls` key: the default, required.
    let mut pair = Pair::with_tls(None);
    let maildir = pair.maildir();
    let _smtp = Smtp::start(&pair.lan(), &maildir);
    pair.start(0);
    wait_until("node1 active", Duration::from_secs(10), || {
        pair.role(0) == "active"
    });
    wait_until("the refusal in the events", Duration::from_secs(15), || {
        pair.rig.events(0).iter().any(|(k, t)| {
            k == "mail"
                && t.contains("offers no STARTTLS and notification.tls is \"required\"")
                && t.contains("not sent over plain text")
        })
    });
    wait_until("the error in the outbox", Duration::from_secs(5), || {
        pair.queued(0)
            .iter()
            .any(|m| m.contains("not sent over plain text"))
    });
    assert!(received(&maildir).is_empty(), "nothing in plain text");
}

/// The subjects in the order the server stored them.
fn arrivals(maildir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .map(|e| (e.metadata().unwrap().modified().unwrap(), e.path()))
        .collect();
    files.sort();
    files
        .iter()
        .map(|(_, p)| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn without_a_relay_failover_mails_reach_the_recipients_mx_once_and_in_order() {
    require_aiosmtpd();
    let mut pair = Pair::direct();
    let maildir = pair.maildir();
    let _dns = Dns::start(&pair.lan());
    let _mx = Smtp::start_on(&pair.lan(), 25, &maildir);
    pair.start(0);
    wait_until("node1 active", Duration::from_secs(10), || {
        pair.role(0) == "active"
    });
    pair.start(1);
    pair.wait_roles("active", "passive", Duration::from_secs(10));
    wait_until("takeover mail at the MX", Duration::from_secs(15), || {
        count(&maildir, "[tandem node1] takeover: starting -> active") == 1
    });
    // Delivered means out of the outbox too: a node killed between the server's
    // acceptance and the removal sends the message again when it restarts (SMTP
    // delivers at least once), which is not what this test is about.
    wait_until("node1's outbox empty", Duration::from_secs(15), || {
        pair.queued(0).is_empty()
    });
    pair.kill(0);
    wait_until("failover mails at the MX", Duration::from_secs(15), || {
        count(&maildir, "[tandem node2] failover: passive -> active") == 1
            && count(&maildir, "[tandem node2] peer node1: alive -> dead") == 1
    });
    pair.start(0);
    pair.wait_roles("passive", "active", Duration::from_secs(10));
    wait_until("peer-back mail at the MX", Duration::from_secs(15), || {
        count(&maildir, "[tandem node2] peer node1: dead -> alive") == 1
    });
    // Nothing more comes, nothing twice, and they arrive in the order of the events.
    std::thread::sleep(Duration::from_secs(2));
    let got = arrivals(&maildir);
    eprintln!("arrived: {got:#?}");
    let mut seen = std::collections::HashSet::new();
    for subject in &got {
        assert!(
            seen.insert(subject.clone()),
            "{subject} arrived twice: {got:#?}"
        );
    }
    let pos = |s: &str| got.iter().position(|x| x == s).unwrap();
    assert!(
        pos("[tandem node1] takeover: starting -> active")
            < pos("[tandem node2] failover: passive -> active")
            && pos("[tandem node2] failover: passive -> active")
                < pos("[tandem node2] peer node1: dead -> alive"),
        "out of order: {got:#?}"
    );
    assert!(pair.queued(0).is_empty() && pair.queued(1).is_empty());

    // The console's and the CLI's test message and outbox, as requests to clusterd.
    let mut client = tandem_api::Client::connect(&pair.rig.nodes[1].control).unwrap();
    assert_eq!(
        client.call(&tandem_api::Request::MailTest).unwrap(),
        tandem_api::Reply::MailTestQueued
    );
    wait_until("test message at the MX", Duration::from_secs(15), || {
        subjects(&maildir)
            .iter()
            .any(|s| s.starts_with("[tandem node2] test: test message from "))
    });
    // The server stores the message before the node hears its answer and deletes the
    // message from its outbox: wait for that.
    let mut v = tandem_api::OutboxView::default();
    wait_until("the outbox empty", Duration::from_secs(10), || {
        let tandem_api::Reply::Outbox(o) = client.call(&tandem_api::Request::MailOutbox).unwrap()
        else {
            panic!("no outbox view");
        };
        v = o;
        v.queued == 0
    });
    assert!(v.recipients && v.relay.is_none(), "{v:?}");
    assert_eq!((v.queued, v.oldest_queued), (0, None), "{v:?}");
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("--control")
            .arg(&pair.rig.nodes[1].control)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tandem {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A second test within the same second is the same event, which the outbox
    // drops as a duplicate: ask a second later.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(cli(&["mail", "test"]).contains("test message queued"));
    let shown = cli(&["mail", "outbox"]);
    assert!(
        shown.contains("delivery:   the recipients' MX") && shown.contains("queued:"),
        "{shown}"
    );
    wait_until(
        "CLI test message at the MX",
        Duration::from_secs(15),
        || {
            subjects(&maildir)
                .iter()
                .filter(|s| s.starts_with("[tandem node2] test: "))
                .count()
                == 2
        },
    );
}
