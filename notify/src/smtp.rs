//! Delivering a message: the [`Sender`] trait, the SMTP implementation and a simulator.

use crate::plan::{MessageId, StoredMessage, UnixSecs};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tandem_config::schema::{NotificationConfig, TlsPolicy};

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// An address in the configuration is not a valid mailbox.
    #[error("invalid e-mail address {address:?}")]
    Address {
        /// The address.
        address: String,
        /// The cause.
        source: lettre::address::AddressError,
    },
    /// The message could not be put together.
    #[error("cannot build message {id}")]
    Build {
        /// The message.
        id: MessageId,
        /// The cause.
        source: lettre::error::Error,
    },
    /// The SMTP server refused the message or could not be reached.
    #[error("smtp delivery of message {id} to {target} failed")]
    Smtp {
        /// The message.
        id: MessageId,
        /// The server.
        target: SmtpTarget,
        /// The cause.
        source: lettre::transport::smtp::Error,
    },
    /// A trust anchor given in PEM could not be used.
    #[error("invalid root certificate")]
    Certificate {
        /// The cause.
        source: lettre::transport::smtp::Error,
    },
    /// A trust anchor given in PEM is not valid PEM.
    #[error("invalid root certificate pem")]
    CertificatePem {
        /// The cause.
        source: rustls_pki_types::pem::Error,
    },
    /// The PEM text given as trust anchor holds no certificate.
    #[error("root certificate pem holds no certificate")]
    NoCertificate,
    /// Recipients but no relay host: direct delivery to the recipients' mail
    /// exchangers (MX lookup) is not available.
    #[error(
        "no relay host configured: direct delivery to the recipients' MX is not available yet; configure a relay"
    )]
    NoServer,
    /// The relay offers no STARTTLS while the configuration requires it: nothing is
    /// sent over plain text.
    #[error(
        "relay {target} offers no STARTTLS and notification.tls is \"required\": message {id} not sent over plain text"
    )]
    TlsRequired {
        /// The message.
        id: MessageId,
        /// The relay.
        target: SmtpTarget,
        /// The cause.
        source: lettre::transport::smtp::Error,
    },
    /// The simulator was told to fail.
    #[error("simulated failure for message {id}: {reason}")]
    Simulated {
        /// The message.
        id: MessageId,
        /// The configured reason.
        reason: String,
    },
}

/// Delivers one message.
pub trait Sender {
    /// Sends `msg`; `Ok` means the server accepted it.
    ///
    /// # Errors
    /// The message was not accepted.
    fn send(&self, msg: &StoredMessage) -> Result<(), SendError>;
}

/// An SMTP server: the relay host from the configuration, or a directly configured server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    /// Name or address.
    pub host: String,
    /// Port (25 when the configuration gives none).
    pub port: u16,
}

impl fmt::Display for SmtpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Sends over SMTP with STARTTLS: always ([`TlsPolicy::Required`], the default) or when
/// the server offers it ([`TlsPolicy::Opportunistic`]).
#[derive(Debug)]
pub struct SmtpSender {
    target: SmtpTarget,
    tls: TlsPolicy,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
    /// Extra trust anchors (PEM) besides the public roots, e.g. a site's internal CA.
    extra_roots: Vec<Vec<u8>>,
}

fn mailbox(address: &str) -> Result<Mailbox, SendError> {
    address.parse().map_err(|source| SendError::Address {
        address: address.to_owned(),
        source,
    })
}

impl SmtpSender {
    /// A sender from `from` to every address in `to`, via `target`, with TLS required
    /// (see [`SmtpSender::with_tls`]).
    ///
    /// # Errors
    /// An address is not a valid mailbox.
    pub fn new(target: SmtpTarget, from: &str, to: &[&str]) -> Result<Self, SendError> {
        Ok(Self {
            target,
            tls: TlsPolicy::Required,
            from: mailbox(from)?,
            to: to.iter().map(|a| mailbox(a)).collect::<Result<_, _>>()?,
            timeout: Duration::from_secs(30),
            extra_roots: Vec::new(),
        })
    }

    /// Also trusts the certificate(s) in `pem` when the server offers STARTTLS (a relay
    /// with a certificate from the site's own CA).
    ///
    /// # Errors
    /// `pem` holds no usable certificate.
    pub fn with_root_certificate_pem(mut self, pem: &[u8]) -> Result<Self, SendError> {
        // lettre accepts text without any certificate in it; count them ourselves.
        let mut count = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            cert.map_err(|source| SendError::CertificatePem { source })?;
            count += 1;
        }
        if count == 0 {
            return Err(SendError::NoCertificate);
        }
        Certificate::from_pem(pem).map_err(|source| SendError::Certificate { source })?;
        self.extra_roots.push(pem.to_vec());
        Ok(self)
    }

    fn tls_parameters(&self, id: MessageId) -> Result<TlsParameters, SendError> {
        let mut b = TlsParameters::builder(self.target.host.clone());
        for pem in &self.extra_roots {
            // Checked in with_root_certificate_pem; parsing again cannot differ.
            let cert = Certificate::from_pem(pem).map_err(self.smtp_err(id))?;
            b = b.add_root_certificate(cert);
        }
        b.build().map_err(self.smtp_err(id))
    }

    /// The TLS policy: [`TlsPolicy::Required`] refuses to send when the server offers
    /// no STARTTLS.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsPolicy) -> Self {
        self.tls = tls;
        self
    }

    /// The sender the `notification` section of the configuration asks for: to every
    /// address (plus the vendor's when `copy-vendor` is on), from `sender` or
    /// `root@<hostname>`, through `relay-host` (port 25 unless given), with its `tls`
    /// policy. `Ok(None)` when there is nobody to write to.
    ///
    /// # Errors
    /// No relay host (direct delivery is not available), or an address lettre does not
    /// accept.
    pub fn from_config(
        cfg: &NotificationConfig,
        hostname: &str,
    ) -> Result<Option<Self>, SendError> {
        let mut to: Vec<String> = cfg
            .addresses
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect();
        if cfg.copy_vendor
            && let Some(v) = &cfg.vendor_address
        {
            to.push(v.as_str().to_owned());
        }
        if to.is_empty() {
            return Ok(None);
        }
        let target = match &cfg.relay_host {
            Some(relay) => SmtpTarget {
                host: relay.host().to_owned(),
                port: relay.port().unwrap_or(25),
            },
            None => return Err(SendError::NoServer),
        };
        let from = cfg
            .sender
            .as_ref()
            .map_or_else(|| format!("root@{hostname}"), |s| s.as_str().to_owned());
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        Self::new(target, &from, &to).map(|s| Some(s.with_tls(cfg.tls_policy())))
    }

    /// Bounds each SMTP exchange (connect, each command) by `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn smtp_err(&self, id: MessageId) -> impl FnOnce(lettre::transport::smtp::Error) -> SendError {
        let target = self.target.clone();
        move |source| SendError::Smtp { id, target, source }
    }
}

fn system_time(t: UnixSecs) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.0)
}

impl Sender for SmtpSender {
    fn send(&self, msg: &StoredMessage) -> Result<(), SendError> {
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(msg.subject())
            .date(system_time(msg.created))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            b = b.to(to.clone());
        }
        let email = b
            .body(msg.body())
            .map_err(|source| SendError::Build { id: msg.id, source })?;
        // STARTTLS with certificate checks against the host name; with the opportunistic
        // policy plain text when the server offers none (many internal relays).
        let params = self.tls_parameters(msg.id)?;
        let tls = match self.tls {
            TlsPolicy::Required => Tls::Required(params),
            TlsPolicy::Opportunistic => Tls::Opportunistic(params),
        };
        let transport = SmtpTransport::builder_dangerous(&self.target.host)
            .port(self.target.port)
            .tls(tls)
            .timeout(Some(self.timeout))
            .build();
        transport.send(&email).map_err(|source| {
            // lettre refuses before MAIL FROM when STARTTLS is required but not offered.
            if self.tls == TlsPolicy::Required && source.to_string().contains("STARTTLS") {
                SendError::TlsRequired {
                    id: msg.id,
                    target: self.target.clone(),
                    source,
                }
            } else {
                SendError::Smtp {
                    id: msg.id,
                    target: self.target.clone(),
                    source,
                }
            }
        })?;
        Ok(())
    }
}

/// A sender for tests of the callers: records messages, fails on request.
#[derive(Debug, Default)]
pub struct SimSender {
    fail: Mutex<Option<String>>,
    sent: Mutex<Vec<StoredMessage>>,
}

impl SimSender {
    /// Fault knob: `Some(reason)` makes every send fail, `None` succeed.
    pub fn set_failure(&self, reason: Option<&str>) {
        if let Ok(mut f) = self.fail.lock() {
            *f = reason.map(str::to_owned);
        }
    }

    /// Everything accepted so far.
    #[must_use]
    pub fn sent(&self) -> Vec<StoredMessage> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Sender for SimSender {
    fn send(&self, msg: &StoredMessage) -> Result<(), SendError> {
        let fail = self.fail.lock().ok().and_then(|f| f.clone());
        if let Some(reason) = fail {
            return Err(SendError::Simulated { id: msg.id, reason });
        }
        if let Ok(mut s) = self.sent.lock() {
            s.push(msg.clone());
        }
        Ok(())
    }
}
