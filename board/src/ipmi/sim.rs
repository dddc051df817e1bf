//! A simulated BMC answering the commands this crate sends, with fault knobs.

use std::collections::BTreeMap;

use super::{CompletionCode, IpmiError, IpmiTransport, NetFn, Request, Response};

/// One simulated sensor's current reading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimSensor {
    /// Raw reading byte.
    pub raw: u8,
    /// Byte 2 (0xC0 = events and scanning enabled).
    pub flags: u8,
    /// State bits (threshold comparison or discrete offsets 0–14).
    pub states: u16,
    /// Readable threshold mask and raw thresholds LNC, LCR, LNR, UNC, UCR, UNR.
    pub thresholds: (u8, [u8; 6]),
}

/// A simulated BMC.
///
/// Holds an SDR repository (records as given, ids assigned 0, 1, …), sensor readings, a
/// SEL and chassis state. Fault knobs: [`SimBmc::set_unresponsive`],
/// [`SimBmc::fail_command`], [`SimBmc::set_max_read`], [`SimBmc::cancel_reservations`],
/// [`SimBmc::corrupt_record`], [`SimBmc::fail_record`].
#[derive(Debug, Default)]
pub struct SimBmc {
    records: Vec<Vec<u8>>,
    sensors: BTreeMap<u8, SimSensor>,
    sel: Vec<[u8; 16]>,
    addition_ts: u32,
    erase_ts: u32,
    reservation: u16,
    identify: Option<(u8, bool)>,
    power_on: bool,
    // Fault knobs.
    unresponsive: bool,
    failures: BTreeMap<(u8, u8), (u8, u32)>,
    max_read: Option<u8>,
    cancel_reservations: u32,
    corrupt: BTreeMap<u16, isize>,
    failed_records: BTreeMap<u16, (u8, u8)>,
    calls: u64,
}

impl SimBmc {
    /// An empty BMC with chassis power on.
    pub fn new() -> Self {
        Self {
            power_on: true,
            addition_ts: 1,
            ..Self::default()
        }
    }

    /// Adds a record (its record id is overwritten) and bumps the addition timestamp.
    pub fn add_record(&mut self, mut bytes: Vec<u8>) -> u16 {
        let id = u16::try_from(self.records.len()).unwrap_or(u16::MAX);
        if bytes.len() >= 2 {
            bytes[..2].copy_from_slice(&id.to_le_bytes());
        }
        self.records.push(bytes);
        self.addition_ts += 1;
        id
    }

    /// Sets a sensor's reading.
    pub fn set_sensor(&mut self, number: u8, sensor: SimSensor) {
        self.sensors.insert(number, sensor);
    }

    /// Sets a sensor's raw value and state bits, keeping its other fields.
    pub fn set_reading(&mut self, number: u8, raw: u8, states: u16) {
        let s = self.sensors.entry(number).or_insert(SimSensor {
            raw: 0,
            flags: 0xC0,
            states: 0,
            thresholds: (0, [0; 6]),
        });
        s.raw = raw;
        s.states = states;
    }

    /// Adds a SEL entry (record id assigned).
    pub fn add_sel(&mut self, mut entry: [u8; 16]) {
        let id = u16::try_from(self.sel.len() + 1).unwrap_or(u16::MAX);
        entry[..2].copy_from_slice(&id.to_le_bytes());
        self.sel.push(entry);
    }

    /// Knob: no answers at all (every call times out).
    pub fn set_unresponsive(&mut self, on: bool) {
        self.unresponsive = on;
    }

    /// Knob: the next `times` requests of `netfn`/`cmd` answer completion code `cc`.
    pub fn fail_command(&mut self, netfn: NetFn, cmd: u8, cc: u8, times: u32) {
        self.failures.insert((netfn.0, cmd), (cc, times));
    }

    /// Knob: Get SDR reads longer than `n` bytes answer 0xCA.
    pub fn set_max_read(&mut self, n: Option<u8>) {
        self.max_read = n;
    }

    /// Knob: the next `times` Get SDR calls answer 0xC5 (reservation cancelled).
    pub fn cancel_reservations(&mut self, times: u32) {
        self.cancel_reservations = times;
    }

    /// Knob: every Get SDR reply for record `id` carries `delta` bytes more (padding with
    /// 0xA5) or fewer than asked for.
    pub fn corrupt_record(&mut self, id: u16, delta: isize) {
        self.corrupt.insert(id, delta);
    }

    /// Knob: every Get SDR for record `id` at an offset of `from_offset` or more answers
    /// completion code `cc` (0 for the header read fails the whole record, 5 only its body).
    pub fn fail_record(&mut self, id: u16, from_offset: u8, cc: u8) {
        self.failed_records.insert(id, (from_offset, cc));
    }

    /// Number of requests received.
    pub fn call_count(&self) -> u64 {
        self.calls
    }

    /// Current identify state: `(interval, forced)` of the last Chassis Identify.
    pub fn identify(&self) -> Option<(u8, bool)> {
        self.identify
    }

    /// Current chassis power state.
    pub fn power_on(&self) -> bool {
        self.power_on
    }

    fn served_record(&self, id: u16) -> Option<Vec<u8>> {
        self.records.get(usize::from(id)).cloned()
    }

    fn answer(&mut self, req: &Request<'_>) -> Response {
        let ok = |data: Vec<u8>| Response { cc: 0, data };
        let cc = |cc: u8| Response { cc, data: vec![] };
        let d = req.data;
        match (req.netfn, req.cmd) {
            (NetFn::STORAGE, 0x20) => {
                let count = u16::try_from(self.records.len())
                    .unwrap_or(u16::MAX)
                    .to_le_bytes();
                let a = self.addition_ts.to_le_bytes();
                let e = self.erase_ts.to_le_bytes();
                ok(vec![
                    0x51, count[0], count[1], 0xFF, 0x0F, a[0], a[1], a[2], a[3], e[0], e[1], e[2],
                    e[3], 0x22,
                ])
            }
            (NetFn::STORAGE, 0x22 | 0x42) => {
                self.reservation = self.reservation.wrapping_add(1).max(1);
                ok(self.reservation.to_le_bytes().to_vec())
            }
            (NetFn::STORAGE, 0x23) => {
                if d.len() != 6 {
                    return cc(0xC7);
                }
                if self.cancel_reservations > 0 {
                    self.cancel_reservations -= 1;
                    return cc(CompletionCode::RESERVATION_CANCELLED);
                }
                let resv = u16::from_le_bytes([d[0], d[1]]);
                let (off, n) = (usize::from(d[4]), d[5]);
                if off != 0 && resv != self.reservation {
                    return cc(CompletionCode::RESERVATION_CANCELLED);
                }
                if self.max_read.is_some_and(|m| n > m) {
                    return cc(CompletionCode::CANNOT_RETURN_BYTES);
                }
                let id = u16::from_le_bytes([d[2], d[3]]);
                if let Some((from, code)) = self.failed_records.get(&id)
                    && d[4] >= *from
                {
                    return cc(*code);
                }
                let Some(rec) = self.served_record(id) else {
                    return cc(CompletionCode::NOT_PRESENT);
                };
                let next = if usize::from(id) + 1 < self.records.len() {
                    id + 1
                } else {
                    0xFFFF
                };
                let mut out = next.to_le_bytes().to_vec();
                let end = (off + usize::from(n)).min(rec.len());
                if off > rec.len() {
                    return cc(0xC9);
                }
                out.extend_from_slice(&rec[off..end]);
                match self.corrupt.get(&id) {
                    Some(d) if *d > 0 => out.extend(std::iter::repeat_n(0xA5, d.unsigned_abs())),
                    Some(d) => out.truncate(out.len().saturating_sub(d.unsigned_abs())),
                    None => {}
                }
                ok(out)
            }
            (NetFn::SENSOR_EVENT, 0x2D) => match d.first().and_then(|n| self.sensors.get(n)) {
                Some(s) => {
                    let st = s.states.to_le_bytes();
                    ok(vec![s.raw, s.flags, st[0], st[1] | 0x80])
                }
                None => cc(CompletionCode::NOT_PRESENT),
            },
            (NetFn::SENSOR_EVENT, 0x27) => match d.first().and_then(|n| self.sensors.get(n)) {
                Some(s) => {
                    let mut out = vec![s.thresholds.0];
                    out.extend_from_slice(&s.thresholds.1);
                    ok(out)
                }
                None => cc(CompletionCode::NOT_PRESENT),
            },
            (NetFn::STORAGE, 0x43) => {
                if d.len() != 6 {
                    return cc(0xC7);
                }
                let id = u16::from_le_bytes([d[2], d[3]]);
                let idx = if id == 0 {
                    0
                } else if id == 0xFFFF {
                    self.sel.len().saturating_sub(1)
                } else {
                    match self
                        .sel
                        .iter()
                        .position(|e| u16::from_le_bytes([e[0], e[1]]) == id)
                    {
                        Some(i) => i,
                        None => return cc(CompletionCode::NOT_PRESENT),
                    }
                };
                let Some(e) = self.sel.get(idx) else {
                    return cc(CompletionCode::NOT_PRESENT);
                };
                let next = match self.sel.get(idx + 1) {
                    Some(n) => u16::from_le_bytes([n[0], n[1]]),
                    None => 0xFFFF,
                };
                let mut out = next.to_le_bytes().to_vec();
                out.extend_from_slice(e);
                ok(out)
            }
            (NetFn::STORAGE, 0x47) => {
                if d.len() != 6 || &d[2..5] != b"CLR" {
                    return cc(0xCC);
                }
                if u16::from_le_bytes([d[0], d[1]]) != self.reservation {
                    return cc(CompletionCode::RESERVATION_CANCELLED);
                }
                self.sel.clear();
                ok(vec![0x01])
            }
            (NetFn::CHASSIS, 0x01) => ok(vec![u8::from(self.power_on), 0, 0]),
            (NetFn::CHASSIS, 0x02) => match d.first() {
                Some(0x00) => {
                    self.power_on = false;
                    ok(vec![])
                }
                Some(0x01..=0x03) => {
                    self.power_on = true;
                    ok(vec![])
                }
                _ => cc(0xCC),
            },
            (NetFn::CHASSIS, 0x04) => {
                self.identify = Some((
                    d.first().copied().unwrap_or(15),
                    d.get(1).is_some_and(|f| f & 1 != 0),
                ));
                ok(vec![])
            }
            _ => cc(0xC1),
        }
    }
}

impl IpmiTransport for SimBmc {
    fn send(&mut self, req: &Request<'_>) -> Result<Response, IpmiError> {
        self.calls += 1;
        if self.unresponsive {
            return Err(IpmiError::Timeout {
                target: "sim".into(),
                timeout_ms: 0,
            });
        }
        if let Some((cc, times)) = self.failures.get_mut(&(req.netfn.0, req.cmd))
            && *times > 0
        {
            *times -= 1;
            return Ok(Response {
                cc: *cc,
                data: vec![],
            });
        }
        Ok(self.answer(req))
    }

    fn target(&self) -> &str {
        "sim"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::ipmi::bmc::{Bmc, PowerAction};
    use crate::ipmi::sdr::{RecordBuilder, SensorType};
    use crate::ipmi::sensor::{Health, Value};

    fn sr2500_like() -> SimBmc {
        let mut sim = SimBmc::new();
        sim.add_record(
            RecordBuilder::full(0x10, SensorType::TEMPERATURE, 1, "Baseboard Temp")
                .thresholds([80, 75, 70, 0, 5, 10], 0x3F)
                .build(),
        );
        sim.add_record(
            RecordBuilder::full(0x20, SensorType::FAN, 18, "Fan 1")
                .factors(60, 0, 0, 0)
                .thresholds([0, 0, 0, 0, 10, 15], 0x03)
                .build(),
        );
        sim.add_record(
            RecordBuilder::full(0x30, SensorType::VOLTAGE, 4, "BB +12.0V")
                .factors(63, 0, 0, -3)
                .build(),
        );
        sim.add_record(
            RecordBuilder::compact(0x40, SensorType::POWER_SUPPLY, 0x6F, "PS1 Status").build(),
        );
        // An OEM record the walk must skip.
        sim.add_record(vec![0, 0, 0x51, 0xC0, 3, 0x57, 0x01, 0x00]);
        sim.set_reading(0x10, 40, 0);
        sim.set_reading(0x20, 100, 0);
        sim.set_reading(0x30, 190, 0);
        sim.set_reading(0x40, 0, 0x01);
        sim
    }

    #[test]
    fn sweep_reads_all_sensors() {
        let mut bmc = Bmc::new(sr2500_like());
        let sweep = bmc.sweep().unwrap();
        assert_eq!(sweep.readings.len(), 4);
        assert!(sweep.faults.is_empty());
        let fan = &sweep.readings[1];
        assert_eq!(fan.name, "Fan 1");
        assert!(matches!(fan.value, Value::Analog { value, .. } if value == 6000.0));
        assert!(sweep.readings.iter().all(|r| r.health == Health::Ok));
    }

    #[test]
    fn cache_is_reused_until_timestamps_change() {
        let mut bmc = Bmc::new(sr2500_like());
        bmc.sweep().unwrap();
        let calls = bmc.transport_mut().call_count();
        bmc.sweep().unwrap();
        // Warm sweep: repository info + one reading per sensor.
        assert_eq!(bmc.transport_mut().call_count() - calls, 5);
        assert_eq!(bmc.sdr_walks(), 1);
        bmc.transport_mut()
            .add_record(RecordBuilder::full(0x31, SensorType::VOLTAGE, 4, "BB +5V").build());
        bmc.transport_mut().set_reading(0x31, 5, 0);
        let sweep = bmc.sweep().unwrap();
        assert_eq!(bmc.sdr_walks(), 2);
        assert_eq!(sweep.readings.len(), 5);
    }

    #[test]
    fn shrinks_chunks_and_rereserves() {
        let mut sim = sr2500_like();
        sim.set_max_read(Some(9));
        sim.cancel_reservations(2);
        let mut bmc = Bmc::new(sim);
        let (records, faults) = bmc.read_repository().unwrap();
        assert_eq!(records.len(), 4);
        assert!(faults.is_empty());
        assert_eq!(records[2].name, "BB +12.0V");
    }

    #[test]
    fn endless_reservation_cancel_is_an_error() {
        let mut sim = sr2500_like();
        sim.cancel_reservations(100);
        let err = Bmc::new(sim).read_repository().unwrap_err();
        assert!(
            matches!(
                err,
                IpmiError::Completion {
                    cc: CompletionCode(0xC5),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn truncated_and_padded_records_are_that_records_fault() {
        for delta in [-3isize, 4] {
            let mut sim = sr2500_like();
            sim.corrupt_record(1, delta);
            let mut bmc = Bmc::new(sim);
            let sweep = bmc.sweep().unwrap();
            // The other sensors are read; Fan 1's record is a fault, not a gap.
            let names: Vec<&str> = sweep.readings.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(names, ["Baseboard Temp", "BB +12.0V", "PS1 Status"]);
            assert_eq!(sweep.record_faults.len(), 1, "{:?}", sweep.record_faults);
            let f = &sweep.record_faults[0];
            assert_eq!(f.record_id, 1);
            assert_eq!(f.label(), "sdr record 0x0001");
            assert_eq!(f.error.kind(), ErrorKind::Protocol, "{}", f.error);
            assert!(f.error.to_string().contains("record 0x0001"), "{}", f.error);
            // A warm sweep reports it again from the cache.
            let again = bmc.sweep().unwrap();
            assert_eq!(again.record_faults.len(), 1);
            assert_eq!(bmc.sdr_walks(), 1);
        }
    }

    #[test]
    fn error_completion_on_a_record_is_that_records_fault() {
        let mut sim = sr2500_like();
        // Fan 1's body fails after its key bytes were read.
        sim.fail_record(1, 30, 0xCB);
        let mut bmc = Bmc::new(sim);
        bmc.set_sdr_chunk(16);
        let sweep = bmc.sweep().unwrap();
        assert_eq!(sweep.readings.len(), 3);
        assert_eq!(sweep.record_faults.len(), 1);
        let f = &sweep.record_faults[0];
        assert_eq!(f.record_id, 1);
        assert_eq!(
            f.key,
            Some(crate::ipmi::sdr::SensorKey {
                owner: 0x20,
                lun: 0,
                number: 0x20
            })
        );
        assert_eq!(f.error.kind(), ErrorKind::NotPresent);
        assert!(f.error.to_string().contains("0xcb"), "{}", f.error);

        // A record whose header cannot be read names no successor: the walk cannot go
        // on, and the repository is reported unreadable (never a shorter "all good" list).
        let mut sim = sr2500_like();
        sim.fail_record(2, 0, 0xCB);
        let err = Bmc::new(sim).sweep().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotPresent, "{err}");
    }

    #[test]
    fn nonsense_record_is_reported_and_skipped() {
        let mut sim = sr2500_like();
        let mut bad = RecordBuilder::full(0x50, SensorType::FAN, 18, "Fan 9")
            .linearization(0x42)
            .build();
        bad[0] = 0;
        let id = sim.add_record(bad);
        let mut bmc = Bmc::new(sim);
        let sweep = bmc.sweep().unwrap();
        assert_eq!(sweep.readings.len(), 4);
        assert_eq!(sweep.record_faults.len(), 1);
        let f = &sweep.record_faults[0];
        assert_eq!((f.record_id, f.label().as_str()), (id, "Fan 9"));
        assert_eq!(f.key.map(|k| k.number), Some(0x50));
        assert_eq!(f.error.kind(), ErrorKind::Protocol);
    }

    #[test]
    fn sensors_of_other_controllers_are_listed_not_read() {
        let mut sim = sr2500_like();
        sim.add_record(
            RecordBuilder::full(0x05, SensorType::TEMPERATURE, 1, "HSC Temp")
                .owner(0x2C)
                .build(),
        );
        let mut bmc = Bmc::new(sim);
        let sweep = bmc.sweep().unwrap();
        assert_eq!(sweep.readings.len(), 4);
        assert!(sweep.faults.is_empty() && sweep.record_faults.is_empty());
        assert_eq!(sweep.not_read.len(), 1);
        assert_eq!(sweep.not_read[0].name, "HSC Temp");
        assert_eq!(sweep.not_read[0].key.owner, 0x2C);
        assert_eq!(sweep.not_read[0].sensor_type, SensorType::TEMPERATURE);
    }

    #[test]
    fn timeouts_and_error_codes_are_faults_not_ok() {
        let mut sim = sr2500_like();
        sim.set_unresponsive(true);
        let err = Bmc::new(sim).sweep().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);

        let mut sim = sr2500_like();
        let mut bmc = Bmc::new(std::mem::take(&mut sim));
        bmc.sweep().unwrap();
        bmc.transport_mut()
            .fail_command(NetFn::SENSOR_EVENT, 0x2D, 0xCB, 1);
        let sweep = bmc.sweep().unwrap();
        assert_eq!(sweep.faults.len(), 1);
        assert_eq!(sweep.faults[0].name, "Baseboard Temp");
        assert_eq!(sweep.faults[0].error.kind(), ErrorKind::NotPresent);
        assert_eq!(sweep.readings.len(), 3);

        bmc.transport_mut()
            .fail_command(NetFn::STORAGE, 0x20, 0xFF, 1);
        let err = bmc.sweep().unwrap_err();
        assert!(
            err.to_string().contains("0xff (unspecified error)"),
            "{err}"
        );
    }

    #[test]
    fn sel_read_and_clear() {
        let mut sim = sr2500_like();
        let mut e = [0u8; 16];
        e[2] = 0x02;
        e[3..7].copy_from_slice(&1_700_000_000u32.to_le_bytes());
        e[10] = 0x08;
        e[11] = 0x40;
        e[12] = 0x6F;
        e[13] = 0x01;
        sim.add_sel(e);
        sim.add_sel(e);
        let mut bmc = Bmc::new(sim);
        let entries = bmc.sel_entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].record_id, 2);
        assert_eq!(entries[0].sensor_number, 0x40);
        assert_eq!(entries[0].timestamp, 1_700_000_000);
        bmc.sel_clear().unwrap();
        assert!(bmc.sel_entries().unwrap().is_empty());
    }

    #[test]
    fn chassis_identify_and_power() {
        let mut bmc = Bmc::new(sr2500_like());
        bmc.chassis_identify(Some(30)).unwrap();
        assert_eq!(bmc.transport_mut().identify(), Some((30, false)));
        bmc.chassis_identify(None).unwrap();
        assert_eq!(bmc.transport_mut().identify(), Some((0, true)));
        assert!(bmc.chassis_power_is_on().unwrap());
        bmc.chassis_power(PowerAction::Off).unwrap();
        assert!(!bmc.chassis_power_is_on().unwrap());
    }
}
