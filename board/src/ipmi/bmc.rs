//! BMC commands over any [`IpmiTransport`]: SDR repository walk with cache, sensor
//! sweep, SEL read/clear, chassis identify and power control.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::sdr::{self, Sdr, SensorKey, SensorRecord, decode_sdr, peek_sensor};
use super::sensor::{SensorReading, Thresholds, decode_reading, decode_thresholds};
use super::{CompletionCode, IpmiError, IpmiTransport, NetFn, Request};
use crate::ErrorKind;

/// Largest body chunk asked for in one Get SDR; shrunk when the BMC answers 0xCA.
/// 32 bytes plus the reply's own overhead fits the smallest message buffers BMCs use.
const INITIAL_CHUNK: u8 = 32;
/// Times a record read restarts after its reservation was cancelled.
const MAX_RESERVATION_RETRIES: u32 = 5;
/// Upper bound on records walked, so a BMC whose "next record" chain loops cannot hang us.
const MAX_RECORDS: usize = 1024;
/// The SDR header length as a Get SDR byte count.
const HEADER_LEN_U8: u8 = 5;
const _: () = assert!(HEADER_LEN_U8 as usize == sdr::HEADER_LEN);
/// Slave address of the BMC; sensors owned elsewhere need bridging, which we do not do.
const BMC_ADDR: u8 = 0x20;

/// Repository state used as the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepositoryInfo {
    /// Number of records.
    pub count: u16,
    /// Most recent addition timestamp.
    pub addition: u32,
    /// Most recent erase timestamp.
    pub erase: u32,
}

/// A record that could not be read or decoded; the walk continued past it. Kept with the
/// SDR cache and reported by every sweep until the repository changes.
#[derive(Debug, Clone)]
pub struct RecordFault {
    /// The record id.
    pub record_id: u16,
    /// The sensor the record describes, when its key bytes could be read (or, failing
    /// that, the sensor the same record id described at the previous walk).
    pub key: Option<SensorKey>,
    /// The sensor's name, when its id string could be read (or known as for `key`).
    pub name: Option<String>,
    /// Why.
    pub error: Arc<IpmiError>,
}

impl RecordFault {
    /// What to call the record: its sensor's name, or its record id.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("sdr record {:#06x}", self.record_id),
        }
    }
}

/// A sensor owned by another controller than the BMC: listed, not read (reading it would
/// need bridging, which this crate does not do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRead {
    /// Owner, LUN and number.
    pub key: SensorKey,
    /// Its name from the SDR.
    pub name: String,
    /// Its type.
    pub sensor_type: sdr::SensorType,
}

/// A sensor that could not be read during a sweep.
#[derive(Debug)]
pub struct SensorFault {
    /// Which sensor.
    pub key: SensorKey,
    /// Its name.
    pub name: String,
    /// Why.
    pub error: IpmiError,
}

/// Result of one sweep over all sensors.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Sensors read.
    pub readings: Vec<SensorReading>,
    /// Sensors that failed to read; each is that sensor's fault, never "ok".
    pub faults: Vec<SensorFault>,
    /// Records that could not be read or decoded: each may hide a sensor, so each is a
    /// fault, never "ok".
    pub record_faults: Vec<RecordFault>,
    /// Sensors owned by other controllers, which are not read.
    pub not_read: Vec<NotRead>,
}

/// One SEL entry, raw 16 bytes with the common fields decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelEntry {
    /// Record id.
    pub record_id: u16,
    /// Record type (0x02 system event, 0xC0–0xFF OEM).
    pub record_type: u8,
    /// Timestamp (seconds since 1970 per the BMC's clock).
    pub timestamp: u32,
    /// Sensor type (system event records).
    pub sensor_type: u8,
    /// Sensor number (system event records).
    pub sensor_number: u8,
    /// Event direction (bit 7, 1 = deassertion) and event/reading type.
    pub event_dir_type: u8,
    /// Event data 1–3.
    pub event_data: [u8; 3],
    /// The raw entry.
    pub raw: [u8; 16],
}

/// Chassis power actions (Chassis Control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Immediate power off (used to fence the peer).
    Off,
    /// Power on.
    On,
    /// Power cycle.
    Cycle,
    /// Hard reset.
    Reset,
}

/// A BMC reached through a transport, with its SDR cache.
#[derive(Debug)]
pub struct Bmc<T> {
    transport: T,
    cache: Option<(RepositoryInfo, Vec<SensorRecord>, Vec<RecordFault>)>,
    chunk: u8,
    sdr_walks: u64,
}

impl<T: IpmiTransport> Bmc<T> {
    /// Wraps a transport; nothing is sent yet.
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            cache: None,
            chunk: INITIAL_CHUNK,
            sdr_walks: 0,
        }
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sets the largest body chunk asked for in one Get SDR (default 32). A BMC that
    /// cannot return that many answers 0xCA and the chunk is halved until it can.
    pub fn set_sdr_chunk(&mut self, bytes: u8) {
        self.chunk = bytes.max(1);
    }

    /// The current Get SDR body chunk size.
    pub fn sdr_chunk(&self) -> u8 {
        self.chunk
    }

    /// Swaps the transport (e.g. after a session was re-opened), keeping the SDR cache;
    /// returns the old one.
    pub fn replace_transport(&mut self, transport: T) -> T {
        std::mem::replace(&mut self.transport, transport)
    }

    /// How many times the whole repository has been read (cache misses).
    pub fn sdr_walks(&self) -> u64 {
        self.sdr_walks
    }

    fn call(&mut self, netfn: NetFn, cmd: u8, data: &[u8]) -> Result<super::Response, IpmiError> {
        self.transport.send(&Request::new(netfn, cmd, data))
    }

    fn call_ok(
        &mut self,
        netfn: NetFn,
        cmd: u8,
        data: &[u8],
        what: &'static str,
    ) -> Result<Vec<u8>, IpmiError> {
        let r = self.call(netfn, cmd, data)?;
        r.ok(self.transport.target(), what)
    }

    fn protocol(&self, what: &'static str, detail: String) -> IpmiError {
        IpmiError::Protocol {
            target: self.transport.target().to_owned(),
            what,
            detail,
        }
    }

    /// Get SDR Repository Info.
    pub fn repository_info(&mut self) -> Result<RepositoryInfo, IpmiError> {
        let what = "get sdr repository info";
        let d = self.call_ok(NetFn::STORAGE, 0x20, &[], what)?;
        if d.len() < 13 {
            return Err(self.protocol(what, format!("{} data bytes, need 13", d.len())));
        }
        Ok(RepositoryInfo {
            count: u16::from_le_bytes([d[1], d[2]]),
            addition: u32::from_le_bytes([d[5], d[6], d[7], d[8]]),
            erase: u32::from_le_bytes([d[9], d[10], d[11], d[12]]),
        })
    }

    fn reserve(&mut self, netfn_cmd: u8, what: &'static str) -> Result<[u8; 2], IpmiError> {
        let r = self.call(NetFn::STORAGE, netfn_cmd, &[])?;
        // BMCs without reservation support answer "invalid command"; 0 is then valid.
        if r.cc == 0xC1 {
            return Ok([0, 0]);
        }
        let d = r.ok(self.transport.target(), what)?;
        if d.len() < 2 {
            return Err(self.protocol(what, format!("{} data bytes, need 2", d.len())));
        }
        Ok([d[0], d[1]])
    }

    /// Reads one record (header, then the body in chunks). Returns the bytes and the id
    /// of the next record; a failure says how far it got.
    fn read_record(&mut self, id: u16, resv: &mut [u8; 2]) -> Result<(Vec<u8>, u16), ReadFailure> {
        let what = "get sdr";
        let mut restarts = 0;
        'record: loop {
            let idb = id.to_le_bytes();
            let mut bytes = Vec::with_capacity(64);
            // The next record's id, from the first well-formed reply.
            let mut next = None;
            let fail = |error: IpmiError, next: Option<u16>, bytes: Vec<u8>| ReadFailure {
                error,
                next,
                bytes,
            };
            let mut off: u8 = 0;
            let mut want: u8 = HEADER_LEN_U8;
            let mut total = usize::from(want);
            while usize::from(off) < total {
                let n = if off == 0 {
                    want
                } else {
                    want.min(self.chunk)
                        .min(u8::try_from(total - usize::from(off)).unwrap_or(u8::MAX))
                };
                let r = match self.call(
                    NetFn::STORAGE,
                    0x23,
                    &[resv[0], resv[1], idb[0], idb[1], off, n],
                ) {
                    Ok(r) => r,
                    Err(e) => return Err(fail(e, None, bytes)),
                };
                match r.cc {
                    0 => {}
                    CompletionCode::RESERVATION_CANCELLED if restarts < MAX_RESERVATION_RETRIES => {
                        restarts += 1;
                        *resv = self
                            .reserve(0x22, "reserve sdr repository")
                            .map_err(|e| fail(e, None, vec![]))?;
                        continue 'record;
                    }
                    CompletionCode::CANNOT_RETURN_BYTES if off != 0 && self.chunk > 1 => {
                        self.chunk /= 2;
                        continue;
                    }
                    _ => {
                        let e = IpmiError::Completion {
                            target: self.transport.target().to_owned(),
                            what,
                            cc: CompletionCode(r.cc),
                        };
                        return Err(fail(e, next, bytes));
                    }
                }
                let reply_next =
                    (r.data.len() >= 2).then(|| u16::from_le_bytes([r.data[0], r.data[1]]));
                if r.data.len() != 2 + usize::from(n) {
                    let e = self.protocol(
                        what,
                        format!(
                            "record {id:#06x} offset {off}: asked for {n} bytes, got {}",
                            r.data.len().saturating_sub(2)
                        ),
                    );
                    // A reply of the wrong length still names the next record.
                    return Err(fail(e, next.or(reply_next), bytes));
                }
                next = next.or(reply_next);
                bytes.extend_from_slice(&r.data[2..]);
                off += n;
                if off == HEADER_LEN_U8 && total == sdr::HEADER_LEN {
                    total += usize::from(bytes[4]);
                    want = self.chunk;
                    if total > usize::from(u8::MAX) {
                        let e = self.protocol(what, format!("record {id:#06x} too long"));
                        return Err(fail(e, next, bytes));
                    }
                }
            }
            return Ok((bytes, next.unwrap_or(0xFFFF)));
        }
    }

    /// Reads the whole repository, bypassing the cache.
    ///
    /// A record that fails to read (error completion code, a reply of the wrong length)
    /// or to decode is returned as that record's fault, and the walk goes on when the
    /// next record's id is known from the replies. Errors: the BMC does not answer, is
    /// busy, keeps cancelling the reservation, or a record fails before naming its
    /// successor; the repository cannot be walked then.
    pub fn read_repository(&mut self) -> Result<(Vec<SensorRecord>, Vec<RecordFault>), IpmiError> {
        let mut resv = self.reserve(0x22, "reserve sdr repository")?;
        let mut id = 0u16;
        let mut records = Vec::new();
        let mut faults = Vec::new();
        let mut visited = BTreeSet::new();
        while id != 0xFFFF {
            if visited.len() >= MAX_RECORDS {
                return Err(self.protocol(
                    "get sdr",
                    format!("more than {MAX_RECORDS} records (loop?)"),
                ));
            }
            if !visited.insert(id) {
                return Err(
                    self.protocol("get sdr", format!("record {id:#06x} reached twice (loop)"))
                );
            }
            let next = match self.read_record(id, &mut resv) {
                Ok((bytes, next)) => {
                    let record_id = u16::from_le_bytes([bytes[0], bytes[1]]);
                    match decode_sdr(&bytes) {
                        Ok(Sdr::Sensor(s)) => records.push(s),
                        Ok(Sdr::Other { .. }) => {}
                        Err(source) => {
                            let error = IpmiError::Record {
                                target: self.transport.target().to_owned(),
                                record_id,
                                source,
                            };
                            faults.push(record_fault(record_id, &bytes, error));
                        }
                    }
                    next
                }
                Err(ReadFailure { error, next, bytes }) => match next {
                    Some(next) if is_record_level(&error) => {
                        // The first record may be asked for as id 0 whatever its real id.
                        let record_id = match bytes.get(..2) {
                            Some(b) if id == 0 => u16::from_le_bytes([b[0], b[1]]),
                            _ => id,
                        };
                        faults.push(record_fault(record_id, &bytes, error));
                        next
                    }
                    _ => return Err(error),
                },
            };
            if next == id {
                return Err(
                    self.protocol("get sdr", format!("record {id:#06x} names itself as next"))
                );
            }
            id = next;
        }
        self.sdr_walks += 1;
        Ok((records, faults))
    }

    /// The sensor records and the faults of the records that could not be read, read
    /// again only when the repository's count or timestamps changed since the last walk.
    pub fn sensor_records(&mut self) -> Result<(&[SensorRecord], &[RecordFault]), IpmiError> {
        let info = self.repository_info()?;
        let fresh = matches!(&self.cache, Some((cached, _, _)) if *cached == info);
        if !fresh {
            let (records, mut faults) = self.read_repository()?;
            // A record that failed before its key was read is most likely the sensor it
            // was at the last walk: name it so, rather than let that sensor vanish.
            if let Some((_, old, _)) = &self.cache {
                for f in faults.iter_mut().filter(|f| f.key.is_none()) {
                    if let Some(r) = old.iter().find(|r| r.record_id == f.record_id) {
                        f.key = Some(r.key);
                        f.name = Some(r.name.clone());
                    }
                }
            }
            self.cache = Some((info, records, faults));
        }
        match &self.cache {
            Some((_, records, faults)) => Ok((records, faults)),
            None => Ok((&[], &[])),
        }
    }

    /// Drops the SDR cache so the next sweep walks the repository.
    pub fn invalidate_cache(&mut self) {
        self.cache = None;
    }

    /// Reads one sensor.
    pub fn read_sensor(&mut self, record: &SensorRecord) -> Result<SensorReading, IpmiError> {
        let what = "get sensor reading";
        let r = self.transport.send(&Request {
            netfn: NetFn::SENSOR_EVENT,
            lun: record.key.lun,
            cmd: 0x2D,
            data: &[record.key.number],
        })?;
        let data = r.ok(self.transport.target(), what)?;
        decode_reading(record, &data).map_err(|e| self.protocol(what, e.to_string()))
    }

    /// Reads one threshold sensor's thresholds.
    pub fn read_thresholds(&mut self, record: &SensorRecord) -> Result<Thresholds, IpmiError> {
        let what = "get sensor thresholds";
        let r = self.transport.send(&Request {
            netfn: NetFn::SENSOR_EVENT,
            lun: record.key.lun,
            cmd: 0x27,
            data: &[record.key.number],
        })?;
        let data = r.ok(self.transport.target(), what)?;
        decode_thresholds(record, &data).map_err(|e| self.protocol(what, e.to_string()))
    }

    /// Reads every sensor the BMC owns, using the SDR cache.
    ///
    /// Errors: only when the repository itself cannot be read (the BMC is unreachable);
    /// a single sensor's failure is recorded in [`Sweep::faults`], a single record's in
    /// [`Sweep::record_faults`]; sensors of other controllers are listed in
    /// [`Sweep::not_read`].
    pub fn sweep(&mut self) -> Result<Sweep, IpmiError> {
        let (records, record_faults) = self.sensor_records()?;
        let (records, others): (Vec<SensorRecord>, Vec<SensorRecord>) = records
            .iter()
            .cloned()
            .partition(|r| r.key.owner == BMC_ADDR);
        let mut sweep = Sweep {
            record_faults: record_faults.to_vec(),
            not_read: others
                .into_iter()
                .map(|r| NotRead {
                    key: r.key,
                    name: r.name,
                    sensor_type: r.sensor_type,
                })
                .collect(),
            ..Sweep::default()
        };
        for rec in &records {
            match self.read_sensor(rec) {
                Ok(r) => sweep.readings.push(r),
                Err(error) => sweep.faults.push(SensorFault {
                    key: rec.key,
                    name: rec.name.clone(),
                    error,
                }),
            }
        }
        Ok(sweep)
    }

    /// Reads all SEL entries, oldest first.
    pub fn sel_entries(&mut self) -> Result<Vec<SelEntry>, IpmiError> {
        let what = "get sel entry";
        let mut id = 0u16;
        let mut out = Vec::new();
        let resv = self.reserve(0x42, "reserve sel")?;
        while id != 0xFFFF {
            if out.len() > 4096 {
                return Err(self.protocol(what, "more than 4096 entries (loop?)".into()));
            }
            let idb = id.to_le_bytes();
            let r = self.call(
                NetFn::STORAGE,
                0x43,
                &[resv[0], resv[1], idb[0], idb[1], 0, 0xFF],
            )?;
            // An empty SEL answers "not present" for the first entry.
            if r.cc == CompletionCode::NOT_PRESENT && id == 0 {
                break;
            }
            let d = r.ok(self.transport.target(), what)?;
            if d.len() != 18 {
                return Err(self.protocol(
                    what,
                    format!("entry {id:#06x}: {} data bytes, need 18", d.len()),
                ));
            }
            let mut raw = [0u8; 16];
            raw.copy_from_slice(&d[2..18]);
            out.push(SelEntry {
                record_id: u16::from_le_bytes([raw[0], raw[1]]),
                record_type: raw[2],
                timestamp: u32::from_le_bytes([raw[3], raw[4], raw[5], raw[6]]),
                sensor_type: raw[10],
                sensor_number: raw[11],
                event_dir_type: raw[12],
                event_data: [raw[13], raw[14], raw[15]],
                raw,
            });
            let next = u16::from_le_bytes([d[0], d[1]]);
            if next == id {
                return Err(self.protocol(what, format!("entry {id:#06x} names itself as next")));
            }
            id = next;
        }
        Ok(out)
    }

    /// Clears the SEL (initiate erase; the caller may poll [`Bmc::sel_entries`]).
    pub fn sel_clear(&mut self) -> Result<(), IpmiError> {
        let resv = self.reserve(0x42, "reserve sel")?;
        self.call_ok(
            NetFn::STORAGE,
            0x47,
            &[resv[0], resv[1], b'C', b'L', b'R', 0xAA],
            "clear sel",
        )?;
        Ok(())
    }

    /// Chassis Identify: `Some(seconds)` lights the ID LED for that long (0 = off),
    /// `None` lights it until turned off.
    pub fn chassis_identify(&mut self, seconds: Option<u8>) -> Result<(), IpmiError> {
        let data: &[u8] = match seconds {
            Some(s) => &[s],
            None => &[0, 1],
        };
        let data = data.to_vec();
        self.call_ok(NetFn::CHASSIS, 0x04, &data, "chassis identify")?;
        Ok(())
    }

    /// Chassis Control.
    pub fn chassis_power(&mut self, action: PowerAction) -> Result<(), IpmiError> {
        let code = match action {
            PowerAction::Off => 0x00,
            PowerAction::On => 0x01,
            PowerAction::Cycle => 0x02,
            PowerAction::Reset => 0x03,
        };
        self.call_ok(NetFn::CHASSIS, 0x02, &[code], "chassis control")?;
        Ok(())
    }

    /// Whether the chassis power is on (Get Chassis Status).
    pub fn chassis_power_is_on(&mut self) -> Result<bool, IpmiError> {
        let what = "get chassis status";
        let d = self.call_ok(NetFn::CHASSIS, 0x01, &[], what)?;
        match d.first() {
            Some(b) => Ok(b & 0x01 != 0),
            None => Err(self.protocol(what, "empty reply".into())),
        }
    }
}

/// How far a record read got before it failed.
struct ReadFailure {
    error: IpmiError,
    /// The next record's id, if a reply named it.
    next: Option<u16>,
    /// The record's bytes read so far.
    bytes: Vec<u8>,
}

/// Whether a failed record read is that record's problem rather than the BMC's: the BMC
/// answered, but not with this record. A silent, busy or restarting BMC, and a
/// reservation that keeps being cancelled, make the whole walk fail instead.
fn is_record_level(e: &IpmiError) -> bool {
    match e {
        IpmiError::Completion { cc, .. } => {
            cc.0 != CompletionCode::RESERVATION_CANCELLED
                && matches!(e.kind(), ErrorKind::Protocol | ErrorKind::NotPresent)
        }
        IpmiError::Protocol { .. } => true,
        _ => false,
    }
}

fn record_fault(record_id: u16, bytes: &[u8], error: IpmiError) -> RecordFault {
    let (key, name) = peek_sensor(bytes);
    RecordFault {
        record_id,
        key,
        name,
        error: Arc::new(error),
    }
}
