//! Where clusterd's events go: the event feed and, for those that deserve it,
//! e-mail; also the hardware poller, whose changes are events.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tandem_api::HwJson;
use tandem_notify::UnixSecs;
use tokio::sync::mpsc;

use crate::alerts::{Alert, Alerts};
use crate::events::EventFeed;
use crate::hw::{HwConfig, HwEvent, HwPoller};
use crate::mail::{MailCall, MailSettings, Mailer};
use crate::settings::Settings;
use tandem_api::{Refusal, Reply};

pub(super) struct EventHub {
    pub(super) feed: Arc<EventFeed>,
    /// What becomes e-mail, and the mail thread; `None` when clusterd runs without
    /// e-mail settings at all.
    mail: Option<Mutex<MailState>>,
}

/// The e-mail side of the hub.
struct MailState {
    /// This node's name, for the test message's subject.
    node: String,
    alerts: Alerts,
    /// The thread, once there is somebody to mail.
    mailer: Option<Mailer>,
    settings: MailSettings,
    /// Where the thread reports its own trouble.
    reports: mpsc::Sender<String>,
}

impl MailState {
    fn start(&mut self) {
        if self.mailer.is_some() || !crate::mail::has_recipients(&self.settings.notification) {
            return;
        }
        let reports = self.reports.clone();
        match crate::mail::start(
            self.settings.clone(),
            Box::new(move |text| {
                let _ = reports.try_send(text);
            }),
        ) {
            Ok(m) => self.mailer = m,
            Err(e) => {
                let _ = self.reports.try_send(format!(
                    "e-mail alerts are off: {}",
                    crate::error_chain(&*e)
                ));
            }
        }
    }
}

impl EventHub {
    /// Publishes an event and, when it deserves one, queues an e-mail about it. Never
    /// waits for the mail thread.
    pub(super) fn alert(&self, kind: &str, text: String, alert: &Alert) {
        if let Some(mail) = &self.mail {
            let at = UnixSecs(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            );
            if let Ok(mut m) = mail.lock() {
                let m = &mut *m;
                if let Some(mailer) = &m.mailer
                    && crate::mail::has_recipients(&m.settings.notification)
                    && let Some(e) = m.alerts.mail(alert, &text, at)
                {
                    mailer.queue(e);
                }
            }
        }
        self.publish(kind, text);
    }

    /// New notification settings or name servers (a configuration change): the mail
    /// thread starts when there was nobody to mail before, or sends with the new ones.
    pub(super) fn set_notification(
        &self,
        n: &tandem_config::schema::NotificationConfig,
        dns_servers: Vec<std::net::Ipv4Addr>,
    ) {
        if let Some(mail) = &self.mail
            && let Ok(mut m) = mail.lock()
        {
            m.settings.notification = n.clone();
            m.settings.dns_servers = dns_servers.clone();
            match &m.mailer {
                Some(mailer) => mailer.set_notification(n.clone(), dns_servers),
                None => m.start(),
            }
        }
    }

    /// The control API's questions to the mail side: the outbox's state, or a test
    /// message queued to the configured recipients.
    pub(super) fn mail_call(&self, call: MailCall) -> Reply {
        let failed = |text: String| Reply::Refused(Refusal::Failed(text));
        let Some(mail) = &self.mail else {
            return failed("this clusterd runs without a configuration: it sends no e-mail".into());
        };
        let Ok(m) = mail.lock() else {
            return failed("the e-mail state is unavailable (a thread failed)".into());
        };
        match call {
            MailCall::Outbox => match crate::mail::outbox_view(&m.settings) {
                Ok(v) => Reply::Outbox(v),
                Err(e) => failed(format!("reading the e-mail outbox: {e}")),
            },
            MailCall::Test => match &m.mailer {
                Some(mailer) => {
                    mailer.queue(crate::mail::test_event(
                        &m.node,
                        &m.settings.hostname,
                        crate::mail::unix_now(),
                    ));
                    Reply::MailTestQueued
                }
                None => failed(
                    "no e-mail recipients are configured: add addresses on the Notification page; no test message was queued"
                        .into(),
                ),
            },
        }
    }

    pub(super) fn publish(&self, kind: &str, text: String) {
        self.feed.publish(kind, text);
    }
}

/// Reports of the mail thread's own trouble queued for the event feed before new ones
/// are dropped: the thread retries on its own schedule, so more waiting reports are
/// repeats of the same trouble.
const MAIL_REPORTS: usize = 16;

/// The hub of this node's events; with `mail`, the mail thread is started when there
/// is somebody to mail.
pub(super) fn start(settings: &Settings, mail: Option<MailSettings>) -> Arc<EventHub> {
    // The mail thread reports its own trouble as events; those are never mailed.
    let (mail_reports_tx, mut mail_reports) = mpsc::channel::<String>(MAIL_REPORTS);
    let mail = mail.map(|ms| {
        let mut m = MailState {
            node: settings.node.name().to_owned(),
            alerts: Alerts::new(settings.node),
            mailer: None,
            settings: ms,
            reports: mail_reports_tx,
        };
        m.start();
        Mutex::new(m)
    });
    let hub = Arc::new(EventHub {
        feed: Arc::new(EventFeed::new(settings.node.name())),
        mail,
    });
    let mail_hub = Arc::clone(&hub);
    tokio::spawn(async move {
        while let Some(text) = mail_reports.recv().await {
            mail_hub.publish("mail", text);
        }
    });
    hub
}

/// Starts hardware polling on its own thread; its events join the hub and its
/// readings are served from the returned snapshot without involving the loop.
///
/// # Errors
/// A hardware configuration (scenario file) that cannot be used.
pub(super) fn start_hw(
    hw: &HwConfig,
    hub: &Arc<EventHub>,
) -> anyhow::Result<(Arc<Mutex<HwJson>>, Option<HwPoller>)> {
    let hw_snapshot = Arc::new(Mutex::new(crate::hw::initial_snapshot(&hw.board)));
    let hw_hub = Arc::clone(hub);
    let poller = crate::hw::start(
        hw,
        Arc::clone(&hw_snapshot),
        Box::new(move |e: HwEvent| match e.change {
            Some(c) => hw_hub.alert(
                e.kind,
                e.text,
                &Alert::Hardware {
                    kind: e.kind.to_owned(),
                    name: c.name,
                    old: c.from,
                    new: c.to,
                },
            ),
            None => hw_hub.publish(e.kind, e.text),
        }),
    )
    .context("starting hardware polling")?;
    Ok((hw_snapshot, poller))
}
