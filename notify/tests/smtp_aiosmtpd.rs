//! Delivery to a real SMTP server: Python's aiosmtpd (Debian package `python3-aiosmtpd`),
//! started on 127.0.0.1 with a free port, storing what it receives in a Maildir.

mod aiosmtpd;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use aiosmtpd::{Server, free_port, received, require_aiosmtpd};
use tandem_config::schema::{NotificationConfig, TlsPolicy};
use tandem_notify::{Event, Outbox, Policy, SmtpSender, SmtpTarget, UnixSecs, run_once};

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .collect()
}

fn ev(kind: &str, old: &str, new: &str, text: &str, at: u64) -> Event {
    Event {
        node: "node1".into(),
        kind: kind.into(),
        old: old.into(),
        new: new.into(),
        text: text.into(),
        at: UnixSecs(at),
    }
}

#[test]
fn delivers_and_keeps_messages_while_the_server_is_down() {
    require_aiosmtpd();
    let work = tempfile::tempdir().expect("tempdir");
    let maildir = work.path().join("mail");
    let port = free_port();
    let target = SmtpTarget {
        host: "127.0.0.1".into(),
        port,
    };
    let sender = SmtpSender::new(
        target,
        "tandem@node1.example.net",
        &["ops@example.net", "oncall@example.org"],
    )
    .expect("sender")
    .with_tls(TlsPolicy::Opportunistic)
    .with_timeout(Duration::from_secs(10));
    let policy = Policy::default();
    let ob = Outbox::open(work.path().join("outbox"), policy).expect("open outbox");

    // 1. Server up: delivered, subject/body/recipients as sent, outbox empty.
    let server = Server::start(port, &maildir);
    ob.push(
        &ev(
            "failover",
            "passive",
            "active",
            "peer node2 stopped answering",
            1000,
        ),
        UnixSecs(1000),
    )
    .expect("push");
    let r = run_once(&ob, &sender, UnixSecs(1000)).expect("run");
    assert_eq!(r.failed, vec![], "first delivery");
    assert_eq!(r.delivered.len(), 1);
    let got = received(&maildir);
    assert_eq!(got.len(), 1);
    assert_eq!(
        header(&got[0], "Subject"),
        ["[tandem node1] failover: passive -> active"]
    );
    assert_eq!(header(&got[0], "From"), ["tandem@node1.example.net"]);
    let rcpt = header(&got[0], "X-RcptTo").join(",");
    assert!(
        rcpt.contains("ops@example.net") && rcpt.contains("oncall@example.org"),
        "{rcpt}"
    );
    assert!(got[0].contains("Change: passive -> active"), "{}", got[0]);
    assert!(
        got[0].contains("peer node2 stopped answering"),
        "{}",
        got[0]
    );
    assert!(ob.pending().expect("pending").is_empty());

    // 2. Server down: the message stays queued with its error.
    drop(server);
    ob.push(
        &ev("link", "up", "down", "bond0 lost its carrier", 2000),
        UnixSecs(2000),
    )
    .expect("push");
    let r = run_once(&ob, &sender, UnixSecs(2000)).expect("run");
    assert!(r.delivered.is_empty());
    assert_eq!(r.failed.len(), 1);
    let p = ob.pending().expect("pending");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].attempts, 1);
    let err = p[0].last_error.clone().expect("error recorded");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");

    // 3. Restart of both: after the backoff the message arrives, exactly once.
    let ob = Outbox::open(work.path().join("outbox"), policy).expect("reopen outbox");
    let _server = Server::start(port, &maildir);
    let r = run_once(&ob, &sender, UnixSecs(2001)).expect("run");
    assert!(
        r.delivered.is_empty() && r.failed.is_empty(),
        "not due yet: {r:?}"
    );
    let r = run_once(&ob, &sender, UnixSecs(2000 + policy.retry.initial_secs)).expect("run");
    assert_eq!(r.failed, vec![]);
    assert_eq!(r.delivered.len(), 1);
    let r = run_once(&ob, &sender, UnixSecs(9999)).expect("run");
    assert!(r.delivered.is_empty() && r.failed.is_empty());
    let got = received(&maildir);
    assert_eq!(got.len(), 2);
    let link: Vec<_> = got
        .iter()
        .filter(|m| header(m, "Subject") == ["[tandem node1] link: up -> down"])
        .collect();
    assert_eq!(link.len(), 1, "exactly once");
    assert!(link[0].contains("bond0 lost its carrier"));
}

#[test]
fn bad_address_is_refused_with_its_name() {
    let target = SmtpTarget {
        host: "127.0.0.1".into(),
        port: 25,
    };
    let err = SmtpSender::new(target, "tandem@node1", &["not an address"]).expect_err("bad");
    assert!(err.to_string().contains("not an address"), "{err}");
}

/// A self-signed certificate for 127.0.0.1 made with the `openssl` tool: (cert, key).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "openssl is missing: apt-get install -y --no-install-recommends openssl"
    );
    (cert, key)
}

#[test]
fn uses_starttls_when_offered_and_checks_the_certificate() {
    require_aiosmtpd();
    let work = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(work.path());
    let maildir = work.path().join("mail");
    let port = free_port();
    let target = SmtpTarget {
        host: "127.0.0.1".into(),
        port,
    };
    let _server = Server::start_with(port, &maildir, &[&cert, &key]);
    let ob = Outbox::open(work.path().join("outbox"), Policy::default()).expect("open outbox");
    ob.push(
        &ev("peer", "up", "down", "heartbeat lost", 10),
        UnixSecs(10),
    )
    .expect("push");

    // The server offers STARTTLS with a certificate nobody vouches for: the sender takes the
    // offer, refuses the certificate and keeps the message.
    let untrusting = SmtpSender::new(
        target.clone(),
        "tandem@node1.example.net",
        &["ops@example.net"],
    )
    .expect("sender")
    .with_timeout(Duration::from_secs(10));
    let r = run_once(&ob, &untrusting, UnixSecs(10)).expect("run");
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(received(&maildir).is_empty());
    let err = &r.failed[0].1;
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // Trusting that certificate, the same message goes out over TLS.
    let pem = std::fs::read(&cert).expect("read cert");
    let trusting = SmtpSender::new(target, "tandem@node1.example.net", &["ops@example.net"])
        .expect("sender")
        .with_root_certificate_pem(&pem)
        .expect("root certificate")
        .with_timeout(Duration::from_secs(10));
    let r = run_once(&ob, &trusting, UnixSecs(10_000)).expect("run");
    assert_eq!(r.failed, vec![]);
    assert_eq!(r.delivered.len(), 1);
    let got = received(&maildir);
    assert_eq!(got.len(), 1);
    assert_eq!(
        header(&got[0], "Subject"),
        ["[tandem node1] peer: up -> down"]
    );
}

#[test]
fn garbage_root_certificate_is_refused() {
    let target = SmtpTarget {
        host: "127.0.0.1".into(),
        port: 25,
    };
    let err = SmtpSender::new(target, "tandem@node1.example.net", &["ops@example.net"])
        .expect("sender")
        .with_root_certificate_pem(b"not a certificate")
        .expect_err("garbage");
    assert!(err.to_string().contains("root certificate"), "{err}");
}

#[test]
fn relay_host_and_recipients_come_from_the_configuration() {
    require_aiosmtpd();
    let work = tempfile::tempdir().expect("tempdir");
    let maildir = work.path().join("mail");
    let port = free_port();
    let cfg = NotificationConfig {
        addresses: vec!["ops@example.net".parse().expect("address")],
        sender: None,
        relay_host: Some(format!("127.0.0.1:{port}").parse().expect("relay")),
        copy_vendor: true,
        vendor_address: Some("support@vendor.example.com".parse().expect("address")),
        tls: Some(TlsPolicy::Opportunistic),
    };
    let sender = SmtpSender::from_config(&cfg, "node1.example.net", &[])
        .expect("sender")
        .expect("recipients configured")
        .with_timeout(Duration::from_secs(10));
    let _server = Server::start(port, &maildir);
    let ob = Outbox::open(work.path().join("outbox"), Policy::default()).expect("open outbox");
    ob.push(&ev("failover", "active", "passive", "", 5), UnixSecs(5))
        .expect("push");
    let r = run_once(&ob, &sender, UnixSecs(5)).expect("run");
    assert_eq!(r.failed, vec![]);
    let got = received(&maildir);
    assert_eq!(got.len(), 1);
    assert_eq!(header(&got[0], "From"), ["root@node1.example.net"]);
    let rcpt = header(&got[0], "X-RcptTo").join(",");
    assert!(
        rcpt.contains("ops@example.net") && rcpt.contains("support@vendor.example.com"),
        "{rcpt}"
    );

    // Nobody to write to: no sender. No relay and no name server for MX delivery: a
    // clear error naming the setting.
    let empty = NotificationConfig::default();
    assert!(
        SmtpSender::from_config(&empty, "node1", &[])
            .expect("empty")
            .is_none()
    );
    let no_relay = NotificationConfig {
        relay_host: None,
        ..cfg
    };
    let err = SmtpSender::from_config(&no_relay, "node1", &[]).expect_err("no server");
    let err = tandem_api::error_chain(&err);
    assert!(err.contains("network.dns-servers"), "{err}");
    // Without a relay the default policy is opportunistic (mail exchangers).
    assert_eq!(
        NotificationConfig {
            tls: None,
            ..no_relay
        }
        .tls_policy(),
        TlsPolicy::Opportunistic
    );
}

#[test]
fn required_tls_sends_nothing_to_a_relay_without_starttls() {
    require_aiosmtpd();
    let work = tempfile::tempdir().expect("tempdir");
    let maildir = work.path().join("mail");
    let port = free_port();
    // The configuration's default policy (no `tls` key): required.
    let cfg = NotificationConfig {
        addresses: vec!["ops@example.net".parse().expect("address")],
        relay_host: Some(format!("127.0.0.1:{port}").parse().expect("relay")),
        ..NotificationConfig::default()
    };
    assert_eq!(cfg.tls_policy(), TlsPolicy::Required);
    let sender = SmtpSender::from_config(&cfg, "node1.example.net", &[])
        .expect("sender")
        .expect("recipients configured")
        .with_timeout(Duration::from_secs(10));
    let _server = Server::start(port, &maildir);
    let ob = Outbox::open(work.path().join("outbox"), Policy::default()).expect("open outbox");
    ob.push(&ev("failover", "active", "passive", "", 5), UnixSecs(5))
        .expect("push");
    let r = run_once(&ob, &sender, UnixSecs(5)).expect("run");
    assert_eq!(r.failed.len(), 1, "{r:?}");
    let why = &r.failed[0].1;
    assert!(
        why.contains("offers no STARTTLS and notification.tls is \"required\""),
        "{why}"
    );
    assert!(received(&maildir).is_empty(), "nothing sent in plain text");
    // The message waits in the outbox with that error.
    let p = ob.pending().expect("pending");
    assert_eq!(p.len(), 1);
    assert!(
        p[0].last_error
            .as_deref()
            .is_some_and(|e| e.contains("not sent over plain text")),
        "{p:?}"
    );
}
