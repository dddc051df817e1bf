//! Hardware access for the tandem appliance: IPMI sensors, the SEL, chassis identify and
//! power, and Areca RAID controllers.
//!
//! What it does:
//! - [`ipmi`]: talks to a BMC through a small [`ipmi::IpmiTransport`] trait with three
//!   implementations: Linux in-band `/dev/ipmi0`, IPMI 2.0 RMCP+ over UDP (cipher suite 3,
//!   used for host-side tests and for fencing the peer's BMC) and a simulated BMC with
//!   fault knobs. Above it: SDR repository reading with reservations, partial reads and a
//!   cache keyed on the repository's timestamps; full and compact sensor records; reading
//!   conversion; threshold and discrete states; SEL read/clear; chassis identify.
//! - [`poller`]: a sans-IO debouncer that turns sensor sweeps and RAID reports into
//!   status-change events, with injected time.
//! - [`areca`]: the Areca ARC-1210/1220 message protocol (pure encoder/decoder), a
//!   transport trait with the Linux arcmsr sysfs implementation and a simulated controller.
//!
//! - The `tandem-board-probe` binary: one sweep of a BMC (in-band or LAN), for installers,
//!   diagnostics and the QEMU test.
//!
//! What it does not do: schedule polling, log or notify (the runtime does, driving
//! [`poller::SensorPoller`]); bridge to sensors owned by satellite controllers (only
//! sensors owned by the BMC itself are read); IPMI 1.5 sessions; cipher suites other than
//! 3; a BMC key (Kg) other than the user's password.
//!
//! Limitations: the LAN transport and `/dev/ipmi0` are blocking, one request at a time;
//! run them on a blocking thread. The SDR cache lives in memory only. Areca support covers
//! the information commands over the driver's sysfs message unit (no configuration
//! changes, no SCSI READ/WRITE BUFFER path, no event log); which member disk a rebuild
//! targets is not reported by those commands, so all members of a rebuilding set show as
//! rebuilding.

#![warn(missing_docs)]

pub mod areca;
pub mod ipmi;
pub mod poller;

use std::fmt;

/// Coarse error classes shared by all hardware errors, for decisions by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The device did not answer in time.
    Timeout,
    /// The device does not exist on this machine.
    NotPresent,
    /// The device is busy; retrying later may help.
    Busy,
    /// The device answered something that does not follow the protocol.
    Protocol,
    /// The operating system reported an error.
    Io,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timeout",
            Self::NotPresent => "not present",
            Self::Busy => "busy",
            Self::Protocol => "protocol error",
            Self::Io => "i/o error",
        })
    }
}

/// A point on a monotonic clock, in milliseconds from an arbitrary origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + d`, saturating.
    #[must_use]
    pub fn plus(self, d: Millis) -> Millis {
        Millis(self.0.saturating_add(d.0))
    }
}
