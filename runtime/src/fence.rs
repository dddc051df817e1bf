//! Fencing the peer through its BMC (R4.5): IPMI 2.0 RMCP+ Chassis Control "power
//! down", then Get Chassis Status until the power reads off, within a bound. The
//! cluster core decides when ([`tandem_core::Output::Fence`]); this module only acts and
//! says what the BMC answered, for the log and the operator.
//!
//! A BMC that refuses, cannot be reached, or whose chassis still reads on at the end
//! of the bound is a failed fence: the core then keeps the node passive until the
//! operator confirms the peer is down.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tandem_board::ipmi::IpmiError;
use tandem_board::ipmi::bmc::{Bmc, PowerAction};
use tandem_board::ipmi::lan::{LanConfig, LanSession};

/// How often the chassis status is read while waiting for the power to go.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// The peer's BMC and the bound of one fence.
#[derive(Clone)]
pub struct Fencer {
    /// The peer's name, for messages.
    pub peer: String,
    /// Its BMC's RMCP+ address.
    pub addr: SocketAddr,
    /// IPMI user.
    pub user: String,
    /// IPMI password.
    pub password: String,
    /// The whole fence (session, power off, status until off) must end within this.
    pub timeout: Duration,
}

impl std::fmt::Debug for Fencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fencer")
            .field("peer", &self.peer)
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a fence did not power the peer off.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The BMC could not be reached, refused the session or the command.
    #[error("fencing {peer} through its BMC {addr}: {step}")]
    Bmc {
        /// The peer.
        peer: String,
        /// Its BMC.
        addr: SocketAddr,
        /// What was being done.
        step: &'static str,
        /// The BMC client's error.
        #[source]
        source: Box<IpmiError>,
    },
    /// The BMC took the power-off but the chassis still read on at the end of the bound.
    #[error(
        "fencing {peer} through its BMC {addr}: chassis power still on {seconds:.1} s after the power-off was accepted"
    )]
    StillOn {
        /// The peer.
        peer: String,
        /// Its BMC.
        addr: SocketAddr,
        /// Time waited.
        seconds: f64,
    },
}

impl FenceError {
    /// True when the fence ran out of time (rather than being refused).
    #[must_use]
    pub fn timed_out(&self) -> bool {
        matches!(self, FenceError::StillOn { .. })
            || matches!(self, FenceError::Bmc { source, .. } if matches!(**source, IpmiError::Timeout { .. }))
    }
}

impl Fencer {
    /// Powers the peer off and waits until its chassis reads off. Blocking: run it off
    /// the daemon's loop. Returns what the BMC answered, for the log.
    ///
    /// # Errors
    /// [`FenceError`] when the BMC cannot be reached or refuses, or the power does not
    /// read off within [`Fencer::timeout`].
    pub fn fence(&self) -> Result<String, FenceError> {
        let start = Instant::now();
        let bmc_err = |step, source| FenceError::Bmc {
            peer: self.peer.clone(),
            addr: self.addr,
            step,
            source: Box::new(source),
        };
        let mut lan = LanConfig::new(self.addr, &self.user, &self.password);
        // A few tries within the bound, never one longer than it.
        lan.timeout = (self.timeout / 6).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let session = LanSession::open(lan).map_err(|e| bmc_err("opening an RMCP+ session", e))?;
        let mut bmc = Bmc::new(session);
        let was_on = bmc
            .chassis_power_is_on()
            .map_err(|e| bmc_err("reading the chassis status", e))?;
        bmc.chassis_power(PowerAction::Off)
            .map_err(|e| bmc_err("chassis power off", e))?;
        let accepted = start.elapsed();
        loop {
            let on = bmc
                .chassis_power_is_on()
                .map_err(|e| bmc_err("reading the chassis status after the power-off", e))?;
            if !on {
                return Ok(format!(
                    "{} powered off through its BMC {}: chassis power was {}, power-off accepted after {:.1} s, chassis status reads off after {:.1} s",
                    self.peer,
                    self.addr,
                    if was_on { "on" } else { "already off" },
                    accepted.as_secs_f64(),
                    start.elapsed().as_secs_f64()
                ));
            }
            if start.elapsed() + STATUS_EVERY > self.timeout {
                return Err(FenceError::StillOn {
                    peer: self.peer.clone(),
                    addr: self.addr,
                    seconds: start.elapsed().as_secs_f64(),
                });
            }
            std::thread::sleep(STATUS_EVERY);
        }
    }
}
