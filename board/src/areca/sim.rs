//! A simulated Areca controller answering framed requests, with fault knobs.

use super::{
    ArecaError, ArecaTransport, FrameError, Reply, cmd, decode_areca_reply, encode_reply, fixture,
    status,
};

/// A simulated ARC-1210/1220 with one RAID-1 set over two disks by default.
///
/// Fault knobs: [`SimRaid::set_unresponsive`], [`SimRaid::corrupt_checksum`],
/// [`SimRaid::truncate_replies`], [`SimRaid::require_password`].
#[derive(Debug)]
pub struct SimRaid {
    sysinfo: Vec<u8>,
    raid_sets: Vec<Vec<u8>>,
    volumes: Vec<Vec<u8>>,
    disks: Vec<Option<Vec<u8>>>,
    unresponsive: bool,
    bad_checksum: bool,
    truncate: usize,
    password: Option<String>,
    unlocked: bool,
    calls: u64,
}

impl SimRaid {
    /// An ARC-1220 (8 ports) with a healthy mirror on disks 0 and 1.
    pub fn new() -> Self {
        let mut disks = vec![None; 8];
        disks[0] = Some(fixture::disk(
            "ST3500630NS",
            "9QG00001",
            976_773_168,
            0x88,
            0,
        ));
        disks[1] = Some(fixture::disk(
            "ST3500630NS",
            "9QG00002",
            976_773_168,
            0x88,
            0,
        ));
        Self {
            sysinfo: fixture::sysinfo("ARC-1220", "Y611CAABAR200064", "V1.49 2010-12-02", 8),
            raid_sets: vec![fixture::raidset("Raid Set # 00", &[0, 1], 0, &[0])],
            volumes: vec![fixture::volume(
                "ARC-1220-VOL#00",
                976_773_168,
                1,
                0,
                0,
                0,
                0,
            )],
            disks,
            unresponsive: false,
            bad_checksum: false,
            truncate: 0,
            password: None,
            unlocked: false,
            calls: 0,
        }
    }

    /// Sets volume 0's status bits, fail mask and progress (0.1 %).
    pub fn set_volume(&mut self, status: u32, fail_mask: u32, progress: u32) {
        self.volumes[0] = fixture::volume(
            "ARC-1220-VOL#00",
            976_773_168,
            1,
            0,
            status,
            fail_mask,
            progress,
        );
    }

    /// Sets disk `n`'s state byte (0x88 normal, 0x10 failed, …) or removes it (`None`).
    pub fn set_disk(&mut self, n: usize, state: Option<u8>) {
        if let Some(slot) = self.disks.get_mut(n) {
            *slot = state
                .map(|s| fixture::disk("ST3500630NS", &format!("9QG0000{n}"), 976_773_168, s, 0));
        }
    }

    /// Knob: no replies.
    pub fn set_unresponsive(&mut self, on: bool) {
        self.unresponsive = on;
    }

    /// Knob: replies carry a wrong checksum.
    pub fn corrupt_checksum(&mut self, on: bool) {
        self.bad_checksum = on;
    }

    /// Knob: replies lose their last `n` bytes.
    pub fn truncate_replies(&mut self, n: usize) {
        self.truncate = n;
    }

    /// Knob: every command answers 0x4D until this password was checked.
    pub fn require_password(&mut self, password: Option<&str>) {
        self.password = password.map(str::to_owned);
        self.unlocked = false;
    }

    /// Requests received.
    pub fn call_count(&self) -> u64 {
        self.calls
    }

    fn answer(&mut self, request: &[u8]) -> Vec<u8> {
        // Requests are framed like replies; a bad one gets the checksum-error status.
        let body = match decode_areca_reply(request) {
            Ok(Reply::Data(b)) => b,
            Ok(Reply::Status(c)) => vec![c],
            Err(FrameError::Checksum { .. }) => return vec![status::CHECKSUM_ERROR],
            Err(_) => return vec![status::PARAM_ERROR],
        };
        let (command, args) = (body[0], &body[1..]);
        if command == cmd::CHECK_PASSWORD {
            let given = args.get(1..).unwrap_or_default();
            return match &self.password {
                Some(p) if p.as_bytes() == given => {
                    self.unlocked = true;
                    vec![status::OK]
                }
                Some(_) => vec![0x4A],
                None => vec![status::OK],
            };
        }
        if self.password.is_some() && !self.unlocked {
            return vec![status::PASSWORD_REQUIRED];
        }
        let index = usize::from(args.first().copied().unwrap_or(0));
        match command {
            cmd::SYSTEM_INFO => self.sysinfo.clone(),
            cmd::RAID_SET => self
                .raid_sets
                .get(index)
                .cloned()
                .unwrap_or_else(|| vec![status::NO_RAID]),
            cmd::VOLUME_SET => self
                .volumes
                .get(index)
                .cloned()
                .unwrap_or_else(|| vec![status::NO_VOLUME]),
            cmd::DISK => self
                .disks
                .get(index)
                .cloned()
                .flatten()
                .unwrap_or_else(|| vec![0u8; super::DISK_LEN]),
            _ => vec![status::UNSUPPORTED],
        }
    }
}

impl Default for SimRaid {
    fn default() -> Self {
        Self::new()
    }
}

impl ArecaTransport for SimRaid {
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, ArecaError> {
        self.calls += 1;
        if self.unresponsive {
            return Err(ArecaError::Timeout {
                controller: "sim".into(),
                timeout_ms: 0,
            });
        }
        let body = self.answer(request);
        let mut frame = encode_reply(&body);
        if self.bad_checksum
            && let Some(last) = frame.last_mut()
        {
            *last = last.wrapping_add(1);
        }
        frame.truncate(frame.len().saturating_sub(self.truncate));
        Ok(frame)
    }

    fn target(&self) -> &str {
        "sim"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::areca::{Controller, DiskRole, RaidReport, RaidState, report};

    #[test]
    fn healthy_mirror() {
        let mut c = Controller::new(SimRaid::new(), None);
        let s = c.status().unwrap();
        assert_eq!(s.controller.model, "ARC-1220");
        assert_eq!(s.volumes.len(), 1);
        assert_eq!(s.volumes[0].state, RaidState::Ok);
        assert_eq!(s.volumes[0].raid_level, 1);
        assert_eq!(s.disks.len(), 2);
        assert!(
            s.disks
                .iter()
                .all(|d| d.state == RaidState::Ok && d.role == DiskRole::Member(0))
        );
        assert_eq!(s.raid_sets[0].members, vec![0, 1]);
    }

    #[test]
    fn failed_disk_degraded_then_rebuilding() {
        let mut sim = SimRaid::new();
        sim.set_disk(1, Some(0x10));
        sim.set_volume(0, 0b10, 0);
        let mut c = Controller::new(sim, None);
        let s = c.status().unwrap();
        assert_eq!(s.volumes[0].state, RaidState::Degraded);
        assert_eq!(s.disks[1].state, RaidState::Failed);
        c.transport_mut().set_disk(1, Some(0x88));
        c.transport_mut().set_volume(0x08, 0, 125);
        let s = c.status().unwrap();
        assert_eq!(s.volumes[0].state, RaidState::Rebuilding { permille: 125 });
        assert!(
            s.disks
                .iter()
                .all(|d| d.state == RaidState::Rebuilding { permille: 125 })
        );
        c.transport_mut().set_volume(0x02, 0b11, 0);
        assert_eq!(c.status().unwrap().volumes[0].state, RaidState::Failed);
    }

    #[test]
    fn bad_checksum_truncation_and_silence_are_controller_faults() {
        let mut c = Controller::new(SimRaid::new(), None);
        c.transport_mut().corrupt_checksum(true);
        let RaidReport::Fault(e) = report(Some(&mut c)) else {
            panic!("bad checksum not reported");
        };
        assert!(e.to_string().contains("bad checksum"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Protocol);
        c.transport_mut().corrupt_checksum(false);
        c.transport_mut().truncate_replies(3);
        assert!(matches!(
            report(Some(&mut c)),
            RaidReport::Fault(ArecaError::Frame { .. })
        ));
        c.transport_mut().truncate_replies(0);
        c.transport_mut().set_unresponsive(true);
        let RaidReport::Fault(e) = report(Some(&mut c)) else {
            panic!("silence not reported");
        };
        assert_eq!(e.kind(), ErrorKind::Timeout);
        c.transport_mut().set_unresponsive(false);
        assert!(matches!(report(Some(&mut c)), RaidReport::Present(_)));
    }

    #[test]
    fn password_handshake() {
        let mut sim = SimRaid::new();
        sim.require_password(Some("0000"));
        let mut c = Controller::new(sim, None);
        let e = c.info().unwrap_err();
        assert!(e.to_string().contains("password required"), "{e}");
        let mut sim = SimRaid::new();
        sim.require_password(Some("0000"));
        let mut c = Controller::new(sim, Some("0000".into()));
        assert_eq!(c.info().unwrap().model, "ARC-1220");
        let mut sim = SimRaid::new();
        sim.require_password(Some("0000"));
        let mut c = Controller::new(sim, Some("1234".into()));
        assert!(
            c.info()
                .unwrap_err()
                .to_string()
                .contains("invalid password")
        );
    }
}
