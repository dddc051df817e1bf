//! The node's own hardware: the IPMI device (or a BMC over the LAN) and the Areca
//! controller, opened on the polling thread and again while absent or failing.

use std::path::PathBuf;

use tandem_board::areca::linux::{SCSI_HOST_CLASS, SysfsMu};
use tandem_board::areca::{ArecaError, Controller, RaidReport, report};
use tandem_board::ipmi::bmc::{Bmc, Sweep};
use tandem_board::ipmi::{IpmiError, IpmiTransport};

use super::Hardware;

/// A device of the linux and lan boards.
pub(super) enum Slot<T> {
    /// Not on this machine (yet): looked for again at the next poll.
    Absent,
    /// Opened.
    Open(T),
    /// Exists but could not be opened; opening is retried at the next poll.
    Retry,
}

/// Opens the BMC transport: `Ok(None)` when there is none.
pub(super) type Opener =
    Box<dyn FnMut() -> Result<Option<Box<dyn IpmiTransport>>, IpmiError> + Send>;

pub(super) struct Real {
    pub(super) open: Opener,
    pub(super) bmc: Slot<Bmc<Box<dyn IpmiTransport>>>,
    pub(super) raid: Slot<Controller<SysfsMu>>,
    /// Where Areca message units are looked for (the SCSI host class in sysfs).
    pub(super) scsi_hosts: PathBuf,
}

impl Real {
    /// Hardware opened by `open` at the first poll, and again while absent or failing
    /// (a driver may load after start-up; a silent BMC must not delay it).
    pub(super) fn new(open: Opener) -> Real {
        Real {
            open,
            bmc: Slot::Retry,
            raid: Slot::Retry,
            scsi_hosts: PathBuf::from(SCSI_HOST_CLASS),
        }
    }

    fn open_bmc(&mut self) -> Option<IpmiError> {
        match (self.open)() {
            Ok(Some(d)) => self.bmc = Slot::Open(Bmc::new(d)),
            Ok(None) => self.bmc = Slot::Absent,
            Err(e) => {
                self.bmc = Slot::Retry;
                return Some(e);
            }
        }
        None
    }

    fn open_raid(&mut self) -> Option<ArecaError> {
        match SysfsMu::discover(&self.scsi_hosts) {
            Ok(Some(t)) => self.raid = Slot::Open(Controller::new(t, None)),
            Ok(None) => self.raid = Slot::Absent,
            Err(e) => {
                self.raid = Slot::Retry;
                return Some(e);
            }
        }
        None
    }
}

impl Hardware for Real {
    fn refresh(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn sweep(&mut self) -> Option<Result<Sweep, IpmiError>> {
        if matches!(self.bmc, Slot::Retry | Slot::Absent)
            && let Some(e) = self.open_bmc()
        {
            return Some(Err(e));
        }
        match &mut self.bmc {
            Slot::Open(b) => Some(b.sweep()),
            _ => None,
        }
    }
    fn raid(&mut self) -> RaidReport {
        if matches!(self.raid, Slot::Retry | Slot::Absent)
            && let Some(e) = self.open_raid()
        {
            return RaidReport::Fault(e);
        }
        match &mut self.raid {
            Slot::Open(c) => report(Some(c)),
            _ => RaidReport::Absent,
        }
    }
}
