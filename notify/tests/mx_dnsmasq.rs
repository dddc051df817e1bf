//! Direct delivery to the recipients' mail exchangers, against real servers in a network
//! namespace this test creates: dnsmasq (Debian package `dnsmasq-base`) as the name server
//! with MX and address records, and Python's aiosmtpd (`python3-aiosmtpd`) as the mail
//! exchangers on port 25, each storing what it receives in its own Maildir. The sender runs
//! on a thread moved into the namespace; no packet leaves it. Servers are killed by their
//! process id and the namespace is deleted when a test ends.
//!
//! Runs as root (namespaces). Needs iproute2, dnsmasq-base and python3-aiosmtpd.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

mod aiosmtpd;

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aiosmtpd::{received, require_aiosmtpd};
use tandem_config::schema::TlsPolicy;
use tandem_notify::{Event, MxResolver, Outbox, Policy, RunReport, SmtpSender, UnixSecs, run_once};

const DNS: &str = "10.78.0.53";
const MX1: &str = "10.78.0.25";
const MX2: &str = "10.78.0.26";
/// `b.test` has no MX record, only this address.
const BARE: &str = "10.78.0.27";
/// `c.test`'s only exchanger; nothing listens there unless a test starts a server.
const MXC: &str = "10.78.0.28";

static SEQ: AtomicU32 = AtomicU32::new(0);

fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(
        found,
        "`{tool}` is missing: apt-get install -y --no-install-recommends {package}"
    );
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {} (the MX tests need root for network namespaces)",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::spawn(move || {
        let fd = File::open(&path).expect("open the namespace");
        rustix::thread::move_into_link_name_space(
            fd.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("enter the namespace");
        f()
    })
    .join()
    .expect("thread in the namespace")
}

/// A namespace whose loopback interface carries every address above, and dnsmasq
/// serving the zone `test`.
struct Lab {
    ns: String,
    dir: tempfile::TempDir,
    servers: Vec<(String, Child)>,
}

impl Lab {
    fn new() -> Lab {
        need("ip", "iproute2");
        need("dnsmasq", "dnsmasq-base");
        require_aiosmtpd();
        let ns = format!(
            "tdmmx{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &ns]);
        let mut lab = Lab {
            ns,
            dir: tempfile::tempdir().expect("tempdir"),
            servers: Vec::new(),
        };
        let ns = lab.ns.clone();
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        for a in [DNS, MX1, MX2, BARE, MXC] {
            ip(&["-n", &ns, "addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "dnsmasq", "--keep-in-foreground"])
            .args([
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
            ])
            .args(["--bind-interfaces", &format!("--listen-address={DNS}")])
            .args(["--port=53", "--local=/test/", "--pid-file="])
            .arg("--mx-host=a.test,mx1.a.test,10")
            .arg("--mx-host=a.test,mx2.a.test,20")
            .arg("--mx-host=c.test,mx.c.test,10")
            .arg("--mx-host=null.test,.,0")
            .arg(format!("--host-record=mx1.a.test,{MX1}"))
            .arg(format!("--host-record=mx2.a.test,{MX2}"))
            .arg(format!("--host-record=mx.c.test,{MXC}"))
            .arg(format!("--host-record=b.test,{BARE}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dnsmasq");
        lab.servers.push(("dnsmasq".into(), child));
        // Ready once it answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ns = lab.ns.clone();
            let ok = in_netns(&ns, || {
                MxResolver::new(&[dns()], Duration::from_millis(500))
                    .and_then(|r| r.exchangers("a.test"))
                    .is_ok()
            });
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not answer on {DNS}:53 within 10 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        lab
    }

    fn maildir(&self, addr: &str) -> PathBuf {
        self.dir.path().join(addr)
    }

    /// aiosmtpd on `addr`:25 (plain text), storing into `maildir(addr)`.
    fn smtp(&mut self, addr: &str) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "/usr/bin/python3",
                "-m",
                "aiosmtpd",
                "-n",
            ])
            .arg("-l")
            .arg(format!("{addr}:25"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(self.maildir(addr))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        self.servers.push((addr.to_owned(), child));
        let deadline = Instant::now() + Duration::from_secs(15);
        let a: SocketAddr = format!("{addr}:25").parse().expect("address");
        while !in_netns(&self.ns, move || TcpStream::connect(a).is_ok()) {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {addr}:25 within 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn subjects(&self, addr: &str) -> Vec<String> {
        received(&self.maildir(addr))
            .iter()
            .flat_map(|m| {
                m.lines()
                    .take_while(|l| !l.is_empty())
                    .filter_map(|l| l.strip_prefix("Subject: "))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// One outbox pass, from inside the namespace, with a sender built there.
    fn run(&self, outbox: &Outbox, to: &[&str], tls: TlsPolicy, now: u64) -> RunReport {
        let outbox = outbox.clone();
        let to: Vec<String> = to.iter().map(|s| (*s).to_owned()).collect();
        in_netns(&self.ns, move || {
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            let sender = SmtpSender::direct(&[dns()], 25, "tandem@node1.example.net", &to)
                .expect("sender")
                .with_tls(tls)
                .with_timeout(Duration::from_secs(5));
            run_once(&outbox, &sender, UnixSecs(now)).expect("outbox pass")
        })
    }

    fn outbox(&self) -> Outbox {
        Outbox::open(self.dir.path().join("outbox"), Policy::default()).expect("open outbox")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.servers {
            // `ip netns exec` execs the server, so this PID is the server's.
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn dns() -> SocketAddr {
    format!("{DNS}:53").parse().expect("address")
}

fn push(ob: &Outbox, kind: &str, at: u64) {
    ob.push(
        &Event {
            node: "node1".into(),
            kind: kind.into(),
            old: "up".into(),
            new: "down".into(),
            text: format!("{kind} changed"),
            at: UnixSecs(at),
        },
        UnixSecs(at),
    )
    .expect("push");
}

fn subject(kind: &str) -> String {
    format!("[tandem node1] {kind}: up -> down")
}

#[test]
fn mail_goes_to_the_preferred_exchanger_in_order_and_once() {
    let mut lab = Lab::new();
    lab.smtp(MX1);
    lab.smtp(MX2);
    let ob = lab.outbox();
    for (i, kind) in ["first", "second", "third"].iter().enumerate() {
        push(&ob, kind, 100 + i as u64);
    }
    let r = lab.run(&ob, &["ops@a.test"], TlsPolicy::Opportunistic, 200);
    assert_eq!(r.failed, vec![], "delivery through MX failed");
    assert_eq!(r.delivered.len(), 3);
    assert_eq!(
        lab.subjects(MX1),
        [subject("first"), subject("second"), subject("third")],
        "in order, at the exchanger with the lowest preference"
    );
    assert!(
        lab.subjects(MX2).is_empty(),
        "the backup exchanger got mail"
    );
    let r = lab.run(&ob, &["ops@a.test"], TlsPolicy::Opportunistic, 300);
    assert!(r.delivered.is_empty() && r.failed.is_empty(), "{r:?}");
    assert_eq!(lab.subjects(MX1).len(), 3, "delivered once");
}

#[test]
fn an_exchanger_that_is_down_passes_to_the_next_preference() {
    let mut lab = Lab::new();
    lab.smtp(MX2);
    let ob = lab.outbox();
    push(&ob, "failover", 100);
    let r = lab.run(&ob, &["ops@a.test"], TlsPolicy::Opportunistic, 100);
    assert_eq!(r.failed, vec![], "mx2 should have taken it");
    assert_eq!(lab.subjects(MX2), [subject("failover")]);
    assert!(lab.subjects(MX1).is_empty());
}

#[test]
fn a_domain_without_mx_gets_mail_at_its_own_address() {
    let mut lab = Lab::new();
    lab.smtp(BARE);
    let ob = lab.outbox();
    push(&ob, "raid", 100);
    let r = lab.run(&ob, &["admin@b.test"], TlsPolicy::Opportunistic, 100);
    assert_eq!(r.failed, vec![], "A fallback failed");
    assert_eq!(lab.subjects(BARE), [subject("raid")]);
}

#[test]
fn each_domain_gets_its_copy_once_while_another_domain_is_down() {
    let mut lab = Lab::new();
    lab.smtp(MX1);
    lab.smtp(BARE);
    let ob = lab.outbox();
    push(&ob, "peer", 100);
    let to = ["ops@a.test", "admin@b.test", "oncall@c.test"];
    // c.test's only exchanger is down: a.test and b.test take it, c.test waits.
    let r = lab.run(&ob, &to, TlsPolicy::Opportunistic, 100);
    assert_eq!(r.failed.len(), 1, "{r:?}");
    let err = &r.failed[0].1;
    assert!(
        err.contains("c.test") && err.contains(MXC) && err.contains("ops@a.test"),
        "the error names the failed domain, its exchanger and who got it: {err}"
    );
    let rcpt = |lab: &Lab, addr: &str| {
        received(&lab.maildir(addr))
            .iter()
            .flat_map(|m| {
                m.lines()
                    .filter_map(|l| l.strip_prefix("X-RcptTo: "))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rcpt(&lab, MX1),
        ["ops@a.test"],
        "each domain's envelope holds its own"
    );
    assert_eq!(rcpt(&lab, BARE), ["admin@b.test"]);
    let queued = ob.pending().expect("pending");
    assert_eq!(queued[0].delivered_to, ["ops@a.test", "admin@b.test"]);

    // c.test comes back: after the backoff only c.test gets it.
    lab.smtp(MXC);
    let later = 100 + Policy::default().retry.initial_secs;
    let r = lab.run(&ob, &to, TlsPolicy::Opportunistic, later);
    assert_eq!(r.failed, vec![], "retry to c.test");
    assert_eq!(rcpt(&lab, MXC), ["oncall@c.test"]);
    assert_eq!(lab.subjects(MX1).len(), 1, "a.test not sent to again");
    assert_eq!(lab.subjects(BARE).len(), 1, "b.test not sent to again");
    assert!(ob.pending().expect("pending").is_empty());
}

#[test]
fn tls_required_sends_nothing_to_a_plain_text_exchanger() {
    let mut lab = Lab::new();
    lab.smtp(MX1);
    let ob = lab.outbox();
    push(&ob, "failover", 100);
    let r = lab.run(&ob, &["ops@a.test"], TlsPolicy::Required, 100);
    assert_eq!(r.failed.len(), 1, "{r:?}");
    let err = &r.failed[0].1;
    assert!(
        err.contains("offers no STARTTLS") && err.contains("not sent over plain text"),
        "{err}"
    );
    assert!(lab.subjects(MX1).is_empty(), "sent over plain text");
}

#[test]
fn unknown_and_null_mx_domains_are_named_in_the_error() {
    let lab = Lab::new();
    let ob = lab.outbox();
    push(&ob, "failover", 100);
    let r = lab.run(&ob, &["ops@nowhere.test"], TlsPolicy::Opportunistic, 100);
    let err = &r.failed[0].1;
    assert!(err.contains("nowhere.test does not exist"), "{err}");
    let r = lab.run(
        &ob,
        &["ops@null.test"],
        TlsPolicy::Opportunistic,
        100 + 3600,
    );
    let err = &r.failed[0].1;
    assert!(err.contains("null.test accepts no mail"), "{err}");
}
