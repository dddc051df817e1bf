//! E-mail alerts for cluster events (R8.1/R8.2).
//!
//! What it does:
//! - [`Outbox`]: a persistent queue in a directory (on the config partition). Each event
//!   becomes one message file, written atomically (temp file, fsync, rename, directory
//!   fsync), so a crash or restart loses nothing. Delivery is retried with exponential
//!   backoff; the caller injects the time. Exact duplicate events are dropped, and a kind of
//!   event that flaps (many changes within a window) is collected into one summary message
//!   sent when the window closes.
//! - [`SmtpSender`]: delivers a message over SMTP with `lettre` to the relay host of the
//!   configuration, with STARTTLS required (nothing goes out over plain text) unless
//!   `notification.tls = "opportunistic"`; without a relay, straight to each recipient
//!   domain's mail exchangers ([`MxResolver`]: MX records from the configuration's DNS
//!   servers with `hickory-resolver`, in preference order, the domain's own address when
//!   it has no MX), with STARTTLS opportunistic unless `tls = "required"`.
//!   [`SmtpSender::from_config`] reads the `notification` section.
//! - [`run_once`]: one pass that sends every due message; the runtime calls it periodically.
//!
//! What it does not do: authenticate to the relay, check DANE/MTA-STS for MX delivery,
//! or run a timer of its own.
//!
//! Limitations: one process owns the directory and calls its methods one at a time (there is
//! no file locking). Exact duplicates are recognised while pending and for one flap window
//! after being queued. A damaged file stops [`run_once`] with an error naming it. Delivery
//! is at least once (a crash between the server's acceptance and the
//! removal of the file sends that message again). With direct delivery each recipient
//! domain is its own session; a domain that took the message is not sent to again when
//! another one fails. Opportunistic STARTTLS does not protect against an attacker who strips the
//! STARTTLS offer; a certificate that does not verify makes the attempt fail and retry.

mod mx;
mod outbox;
mod plan;
mod smtp;

pub use mx::{Exchanger, MxError, MxResolver};
pub use outbox::{Outbox, OutboxError, OutboxSummary, RunReport, read_summary, run_once};
pub use plan::{
    Event, FlapPolicy, History, MessageId, Plan, Policy, RetryPolicy, StoredMessage, UnixSecs,
    backoff, plan_event, remember,
};
pub use smtp::{MX_PORT, SendError, Sender, SimSender, SmtpSender, SmtpTarget};
