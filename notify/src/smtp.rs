//! Delivering a message: the [`Sender`] trait, the SMTP implementation and a simulator.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tandem_config::schema::{NotificationConfig, TlsPolicy};

use crate::mx::{MxError, MxResolver};
use crate::plan::{MessageId, StoredMessage, UnixSecs};

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
    /// The DNS resolver for direct delivery could not be set up.
    #[error("cannot deliver to the recipients' MX")]
    Resolver {
        /// The cause.
        source: MxError,
    },
    /// The exchangers of a recipient domain are not known (DNS).
    #[error("message {id}: no mail exchanger found for {domain}")]
    Route {
        /// The message.
        id: MessageId,
        /// The recipients' domain.
        domain: String,
        /// The cause.
        source: MxError,
    },
    /// Every exchanger of a recipient domain failed; each attempt is listed.
    #[error("message {id} to {domain} not delivered: {}", attempts.join("; "))]
    Exchangers {
        /// The message.
        id: MessageId,
        /// The recipients' domain.
        domain: String,
        /// `host (address:port): error chain`, in the order tried.
        attempts: Vec<String>,
    },
    /// Some recipient domains took the message, others did not.
    #[error("message {id} delivered to {} but not to every recipient", delivered.join(", "))]
    Partly {
        /// The message.
        id: MessageId,
        /// Recipients whose exchanger accepted it (not sent to again).
        delivered: Vec<String>,
        /// Why the others failed (the first failing domain).
        source: Box<SendError>,
    },
    /// The server (relay or mail exchanger) offers no STARTTLS while the configuration
    /// requires it: nothing is sent over plain text.
    #[error(
        "smtp server {target} offers no STARTTLS and notification.tls is \"required\": message {id} not sent over plain text"
    )]
    TlsRequired {
        /// The message.
        id: MessageId,
        /// The relay or mail exchanger.
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

impl SendError {
    /// Recipients that got the message although the send as a whole failed.
    #[must_use]
    pub fn delivered(&self) -> &[String] {
        match self {
            Self::Partly { delivered, .. } => delivered,
            _ => &[],
        }
    }
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

/// Where messages go: one relay, or each recipient domain's mail exchangers.
#[derive(Debug)]
enum Route {
    Relay(SmtpTarget),
    Mx {
        resolver: Box<MxResolver>,
        port: u16,
    },
}

/// Sends over SMTP, to the relay of the configuration or, without one, straight to each
/// recipient domain's MX. STARTTLS: always ([`TlsPolicy::Required`]) or when the server
/// offers it ([`TlsPolicy::Opportunistic`]).
#[derive(Debug)]
pub struct SmtpSender {
    route: Route,
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

/// The SMTP port of mail exchangers.
pub const MX_PORT: u16 = 25;

/// How long one DNS query may take per server.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

impl SmtpSender {
    /// A sender from `from` to every address in `to`, via the relay `target`, with TLS
    /// required (see [`SmtpSender::with_tls`]).
    ///
    /// # Errors
    /// An address is not a valid mailbox.
    pub fn new(target: SmtpTarget, from: &str, to: &[&str]) -> Result<Self, SendError> {
        Self::with_route(Route::Relay(target), TlsPolicy::Required, from, to)
    }

    /// A sender from `from` to every address in `to`, straight to each recipient
    /// domain's mail exchangers on `port` (25 in production), found by asking
    /// `dns_servers`; TLS opportunistic (see [`SmtpSender::with_tls`]).
    ///
    /// # Errors
    /// An address is not a valid mailbox, or the resolver cannot be set up.
    pub fn direct(
        dns_servers: &[SocketAddr],
        port: u16,
        from: &str,
        to: &[&str],
    ) -> Result<Self, SendError> {
        let resolver = MxResolver::new(dns_servers, DNS_TIMEOUT)
            .map_err(|source| SendError::Resolver { source })?;
        Self::with_route(
            Route::Mx {
                resolver: Box::new(resolver),
                port,
            },
            TlsPolicy::Opportunistic,
            from,
            to,
        )
    }

    fn with_route(
        route: Route,
        tls: TlsPolicy,
        from: &str,
        to: &[&str],
    ) -> Result<Self, SendError> {
        Ok(Self {
            route,
            tls,
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

    /// TLS for a session with `host`. Opportunistic STARTTLS with a mail exchanger
    /// encrypts without checking the certificate (as MTAs do, RFC 7435): a check that
    /// fails would only make the message go out in plain text or not at all.
    fn tls(&self, host: &str, to_mx: bool) -> Result<Tls, lettre::transport::smtp::Error> {
        let mut b = TlsParameters::builder(host.to_owned());
        for pem in &self.extra_roots {
            // Checked in with_root_certificate_pem; parsing again cannot differ.
            b = b.add_root_certificate(Certificate::from_pem(pem)?);
        }
        Ok(match self.tls {
            TlsPolicy::Required => Tls::Required(b.build()?),
            TlsPolicy::Opportunistic if to_mx => {
                Tls::Opportunistic(b.dangerous_accept_invalid_certs(true).build()?)
            }
            TlsPolicy::Opportunistic => Tls::Opportunistic(b.build()?),
        })
    }

    /// The TLS policy: [`TlsPolicy::Required`] refuses to send when the server offers
    /// no STARTTLS.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsPolicy) -> Self {
        self.tls = tls;
        self
    }

    /// The sender the configuration asks for: to every address of the `notification`
    /// section (plus the vendor's when `copy-vendor` is on), from `sender` or
    /// `root@<hostname>`, through `relay-host` (port 25 unless given) or, without one,
    /// straight to the recipients' MX found through `dns_servers`
    /// (`network.dns-servers`), with the section's `tls` policy (default: required for
    /// a relay, opportunistic for MX delivery). `Ok(None)` when there is nobody to
    /// write to.
    ///
    /// # Errors
    /// An address lettre does not accept, or no DNS server for MX delivery.
    pub fn from_config(
        cfg: &NotificationConfig,
        hostname: &str,
        dns_servers: &[Ipv4Addr],
    ) -> Result<Option<Self>, SendError> {
        let to = recipients(cfg);
        if to.is_empty() {
            return Ok(None);
        }
        let from = cfg
            .sender
            .as_ref()
            .map_or_else(|| format!("root@{hostname}"), |s| s.as_str().to_owned());
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        let sender = match &cfg.relay_host {
            Some(relay) => {
                let target = SmtpTarget {
                    host: relay.host().to_owned(),
                    port: relay.port().unwrap_or(25),
                };
                Self::new(target, &from, &to)?
            }
            None => {
                let servers: Vec<SocketAddr> = dns_servers
                    .iter()
                    .map(|ip| SocketAddr::from((*ip, 53)))
                    .collect();
                Self::direct(&servers, MX_PORT, &from, &to)?
            }
        };
        Ok(Some(sender.with_tls(cfg.tls_policy())))
    }

    /// Bounds each SMTP exchange (connect, each command) by `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// One SMTP session with `target` (checked against `tls_name`) for `rcpts`.
    fn session(
        &self,
        id: MessageId,
        target: &SmtpTarget,
        tls_name: &str,
        to_mx: bool,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<(), SendError> {
        let smtp = |source| SendError::Smtp {
            id,
            target: target.clone(),
            source,
        };
        let tls = self.tls(tls_name, to_mx).map_err(smtp)?;
        let transport = SmtpTransport::builder_dangerous(&target.host)
            .port(target.port)
            .tls(tls)
            .timeout(Some(self.timeout))
            .build();
        transport.send_raw(envelope, raw).map_err(|source| {
            // lettre refuses before MAIL FROM when STARTTLS is required but not offered.
            if self.tls == TlsPolicy::Required && source.to_string().contains("STARTTLS") {
                SendError::TlsRequired {
                    id,
                    target: target.clone(),
                    source,
                }
            } else {
                smtp(source)
            }
        })?;
        Ok(())
    }

    /// Delivers to one domain's exchangers, in preference order, each address in turn,
    /// until one accepts. A permanent refusal (5xx) ends the attempt: the next exchanger
    /// would say the same.
    fn to_domain(
        &self,
        resolver: &MxResolver,
        port: u16,
        id: MessageId,
        domain: &str,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<(), SendError> {
        let exchangers = resolver
            .exchangers(domain)
            .map_err(|source| SendError::Route {
                id,
                domain: domain.to_owned(),
                source,
            })?;
        let mut attempts = Vec::new();
        for ex in &exchangers {
            for addr in &ex.addrs {
                let target = SmtpTarget {
                    host: addr.to_string(),
                    port,
                };
                match self.session(id, &target, &ex.host, true, envelope, raw) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        let permanent =
                            matches!(&e, SendError::Smtp { source, .. } if source.is_permanent());
                        attempts.push(format!("{} ({target}): {}", ex.host, error_chain(&e)));
                        if permanent {
                            return Err(SendError::Exchangers {
                                id,
                                domain: domain.to_owned(),
                                attempts,
                            });
                        }
                    }
                }
            }
        }
        Err(SendError::Exchangers {
            id,
            domain: domain.to_owned(),
            attempts,
        })
    }
}

/// Every address of the section, the vendor's copy last.
fn recipients(cfg: &NotificationConfig) -> Vec<String> {
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
    to
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    tandem_api::error_chain(e)
}

fn system_time(t: UnixSecs) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.0)
}

/// Recipients grouped by domain (lowercase), in a stable order.
fn by_domain<'a>(to: impl Iterator<Item = &'a Mailbox>) -> BTreeMap<String, Vec<&'a Mailbox>> {
    let mut out: BTreeMap<String, Vec<&Mailbox>> = BTreeMap::new();
    for m in to {
        out.entry(m.email.domain().to_ascii_lowercase())
            .or_default()
            .push(m);
    }
    out
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
        let raw = email.formatted();
        let pending = self
            .to
            .iter()
            .filter(|m| !msg.delivered_to.contains(&m.email.to_string()));
        let envelope_for = |rcpts: Vec<&Mailbox>| {
            Envelope::new(
                Some(self.from.email.clone()),
                rcpts.into_iter().map(|m| m.email.clone()).collect(),
            )
            .map_err(|source| SendError::Build { id: msg.id, source })
        };
        match &self.route {
            Route::Relay(target) => {
                let envelope = envelope_for(pending.collect())?;
                self.session(msg.id, target, &target.host, false, &envelope, &raw)
            }
            Route::Mx { resolver, port } => {
                let mut delivered: Vec<String> = Vec::new();
                let mut first_err = None;
                for (domain, rcpts) in by_domain(pending) {
                    let names: Vec<String> = rcpts.iter().map(|m| m.email.to_string()).collect();
                    let envelope = envelope_for(rcpts)?;
                    match self.to_domain(resolver, *port, msg.id, &domain, &envelope, &raw) {
                        Ok(()) => delivered.extend(names),
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                match first_err {
                    None => Ok(()),
                    Some(e) if delivered.is_empty() => Err(e),
                    Some(e) => Err(SendError::Partly {
                        id: msg.id,
                        delivered,
                        source: Box::new(e),
                    }),
                }
            }
        }
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
