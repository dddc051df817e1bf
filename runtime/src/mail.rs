//! clusterd's e-mail thread: mail events from [`crate::alerts`] go into the persistent
//! outbox of `tandem-notify` (on the config partition) and due messages go out over
//! SMTP, with the outbox's retry, backoff, duplicate and flapping rules.
//!
//! The cluster loop never waits for this: [`Mailer::queue`] is a send on an unbounded
//! channel; writing the outbox (fsync) and talking SMTP (up to the sender's timeout per
//! message) happen on the mail thread only.
//!
//! Mail goes to the configuration's relay host or, without one, straight to the
//! recipients' MX (found through the configuration's DNS servers), with its TLS policy.
//!
//! Limitations: an event is on disk only once the mail thread has written it (a few
//! milliseconds after it happened); a crash in between loses that one message.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tandem_config::schema::NotificationConfig;
use tandem_notify::{
    Outbox, Policy, RetryPolicy, Sender, SmtpSender, StoredMessage, UnixSecs, run_once,
};

/// Longest wait between two looks at the outbox when nothing is due.
const IDLE: Duration = Duration::from_secs(60);

/// What the control API asks of the mail side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailCall {
    /// The outbox's state ([`tandem_api::Reply::Outbox`]).
    Outbox,
    /// Queue a test message ([`tandem_api::Reply::MailTestQueued`]).
    Test,
}

/// The test message: its subject names the node, its text says what it proves.
#[must_use]
pub fn test_event(node: &str, hostname: &str, at: UnixSecs) -> tandem_notify::Event {
    tandem_notify::Event {
        node: node.to_owned(),
        kind: "test".to_owned(),
        old: String::new(),
        new: String::new(),
        text: format!(
            "test message from {hostname}, asked for by an administrator\n\nE-mail alerts of this cluster reach this address."
        ),
        at,
    }
}

/// The outbox of `settings` as the operator sees it. Read beside the mail thread:
/// files it removes in between are not counted.
///
/// # Errors
/// The outbox cannot be read (the text says which file and why).
pub fn outbox_view(settings: &MailSettings) -> Result<tandem_api::OutboxView, String> {
    let s = tandem_notify::read_summary(&settings.outbox).map_err(|e| crate::error_chain(&e))?;
    Ok(tandem_api::OutboxView {
        recipients: has_recipients(&settings.notification),
        relay: settings
            .notification
            .relay_host
            .as_ref()
            .map(|r| format!("{}:{}", r.host(), r.port().unwrap_or(25))),
        queued: s.queued as u64,
        oldest_queued: s.oldest.map(|t| t.0),
        last_error: s.last_error,
    })
}

/// What the mail thread needs.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Outbox directory (created when missing).
    pub outbox: PathBuf,
    /// Recipients, sender and relay host.
    pub notification: NotificationConfig,
    /// Name servers for direct delivery (`network.dns-servers`).
    pub dns_servers: Vec<Ipv4Addr>,
    /// This node's host name, for the default sender `root@<hostname>`.
    pub hostname: String,
    /// Wait after the first failed delivery; it doubles per failure up to an hour.
    pub retry_initial: Duration,
    /// Bound of each SMTP exchange.
    pub smtp_timeout: Duration,
}

/// A report from the mail thread for the event stream (never mailed itself).
pub type Report = Box<dyn Fn(String) + Send>;

/// The running mail thread. Dropping it ends the thread after its current step.
#[derive(Debug)]
pub struct Mailer {
    tx: mpsc::Sender<Msg>,
}

/// What the mail thread is told.
enum Msg {
    Event(tandem_notify::Event),
    Notification(NotificationConfig, Vec<Ipv4Addr>),
}

impl Mailer {
    /// Hands `event` to the mail thread. Never blocks; a thread that has ended (its
    /// outbox failed) drops the event, which it has already reported.
    pub fn queue(&self, event: tandem_notify::Event) {
        let _ = self.tx.send(Msg::Event(event));
    }

    /// New recipients, sender, relay host or name servers (a configuration change):
    /// messages still queued go out with them. Never blocks.
    pub fn set_notification(&self, notification: NotificationConfig, dns_servers: Vec<Ipv4Addr>) {
        let _ = self.tx.send(Msg::Notification(notification, dns_servers));
    }
}

/// The time of day in whole seconds since 1970, for the outbox's timestamps.
#[must_use]
pub fn unix_now() -> UnixSecs {
    UnixSecs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// How long to sleep before the next look at the outbox: until the earliest message is
/// due, at most `idle`.
#[must_use]
pub fn next_wake(pending: &[StoredMessage], now: UnixSecs, idle: Duration) -> Duration {
    pending
        .iter()
        .map(|m| Duration::from_secs(m.next_attempt.0.saturating_sub(now.0)))
        .min()
        .map_or(idle, |d| d.min(idle))
}

/// The outbox policy with `retry_initial` as first wait (at least a second: the outbox
/// counts in seconds).
fn policy(retry_initial: Duration) -> Policy {
    let mut p = Policy::default();
    p.retry = RetryPolicy {
        initial_secs: retry_initial.as_secs().max(1),
        ..p.retry
    };
    p
}

/// Opens the outbox and starts the mail thread. `Ok(None)` when the configuration has
/// no recipient. A configuration the sender cannot use (no relay host and no direct
/// server, a bad address) is reported through `report`; mail is then queued but not
/// sent until a corrected configuration runs.
///
/// # Errors
/// The outbox directory cannot be created or read, or the thread cannot start.
pub fn start(settings: MailSettings, report: Report) -> anyhow::Result<Option<Mailer>> {
    if !has_recipients(&settings.notification) {
        return Ok(None);
    }
    let outbox = Outbox::open(&settings.outbox, policy(settings.retry_initial))
        .with_context(|| format!("opening the mail outbox {}", settings.outbox.display()))?;
    let sender = make_sender(&settings, &report);
    let (tx, rx) = mpsc::channel::<Msg>();
    std::thread::Builder::new()
        .name("mail".into())
        .spawn(move || mail_loop(&outbox, &settings, sender, &rx, &report))
        .context("starting the mail thread")?;
    Ok(Some(Mailer { tx }))
}

/// The name servers mail is routed with: the configuration's `network.dns-servers`.
#[must_use]
pub fn dns_servers(cfg: &tandem_config::ApplianceConfig) -> Vec<Ipv4Addr> {
    cfg.network.dns_servers.iter().map(|a| a.addr()).collect()
}

/// Whether `n` names anybody to mail: an address, or the vendor's copy.
#[must_use]
pub fn has_recipients(n: &NotificationConfig) -> bool {
    !n.addresses.is_empty() || (n.copy_vendor && n.vendor_address.is_some())
}

/// The SMTP sender for `settings`, or `None` (reported) when it cannot send.
fn make_sender(settings: &MailSettings, report: &Report) -> Option<SmtpSender> {
    match SmtpSender::from_config(
        &settings.notification,
        &settings.hostname,
        &settings.dns_servers,
    ) {
        Ok(Some(s)) => Some(s.with_timeout(settings.smtp_timeout)),
        Ok(None) => None,
        Err(e) => {
            report(format!(
                "e-mail is queued in {} but not sent: {} (check the notification settings and the DNS servers)",
                settings.outbox.display(),
                crate::error_chain(&e)
            ));
            None
        }
    }
}

fn mail_loop(
    outbox: &Outbox,
    settings: &MailSettings,
    mut sender: Option<SmtpSender>,
    rx: &mpsc::Receiver<Msg>,
    report: &Report,
) {
    let mut settings = settings.clone();
    // Messages left by an earlier run are tried at once.
    let mut wait = Duration::ZERO;
    let mut failing: Option<String> = None;
    loop {
        let first = match rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        for m in first.into_iter().chain(rx.try_iter()) {
            match m {
                Msg::Event(e) => {
                    if let Err(err) = outbox.push(&e, unix_now()) {
                        report(format!(
                            "e-mail about {} on {} lost: {}",
                            e.kind,
                            e.node,
                            crate::error_chain(&err)
                        ));
                    }
                }
                Msg::Notification(n, dns) => {
                    settings.notification = n;
                    settings.dns_servers = dns;
                    sender = make_sender(&settings, report);
                    failing = None;
                }
            }
        }
        let now = unix_now();
        if let Some(sender) = &sender {
            match run_once(outbox, sender as &dyn Sender, now) {
                Ok(r) => {
                    if let Some((id, why)) = r.failed.first() {
                        if failing.as_deref() != Some(why.as_str()) {
                            report(format!(
                                "e-mail {id} not delivered, will retry: {why} ({} queued in {})",
                                r.failed.len(),
                                outbox.dir().display()
                            ));
                            failing = Some(why.clone());
                        }
                    } else if !r.delivered.is_empty() && failing.take().is_some() {
                        report("e-mail delivered again".to_owned());
                    }
                }
                Err(err) => report(format!("e-mail outbox: {}", crate::error_chain(&err))),
            }
        }
        wait = match outbox.pending() {
            Ok(p) if sender.is_some() => next_wake(&p, unix_now(), IDLE),
            Ok(_) => IDLE,
            Err(err) => {
                report(format!("e-mail outbox: {}", crate::error_chain(&err)));
                IDLE
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(next: u64) -> StoredMessage {
        StoredMessage {
            id: tandem_notify::MessageId(next),
            events: vec![],
            summary: false,
            created: UnixSecs(0),
            attempts: 0,
            next_attempt: UnixSecs(next),
            last_error: None,
            delivered_to: Vec::new(),
        }
    }

    #[test]
    fn wakes_for_the_earliest_due_message_within_the_idle_bound() {
        let idle = Duration::from_secs(60);
        assert_eq!(next_wake(&[], UnixSecs(100), idle), idle);
        assert_eq!(
            next_wake(&[msg(130), msg(110)], UnixSecs(100), idle),
            Duration::from_secs(10)
        );
        assert_eq!(next_wake(&[msg(90)], UnixSecs(100), idle), Duration::ZERO);
        assert_eq!(next_wake(&[msg(10_000)], UnixSecs(100), idle), idle);
    }

    #[test]
    fn retry_policy_counts_whole_seconds() {
        assert_eq!(policy(Duration::from_millis(200)).retry.initial_secs, 1);
        assert_eq!(policy(Duration::from_secs(30)).retry.initial_secs, 30);
        assert_eq!(policy(Duration::from_secs(5)).retry.max_secs, 3600);
    }

    #[test]
    fn no_recipient_means_no_thread() {
        let dir = std::env::temp_dir().join(format!("tdm-mail-none-{}", std::process::id()));
        let m = start(
            MailSettings {
                outbox: dir.clone(),
                notification: NotificationConfig::default(),
                dns_servers: Vec::new(),
                hostname: "node1".into(),
                retry_initial: Duration::from_secs(30),
                smtp_timeout: Duration::from_secs(30),
            },
            Box::new(|_| {}),
        )
        .expect("start");
        assert!(m.is_none());
        assert!(!dir.exists(), "no outbox without recipients");
    }
}
