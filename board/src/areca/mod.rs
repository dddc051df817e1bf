//! Areca ARC-1210/1220 (arcmsr) RAID controllers: the firmware message protocol.
//!
//! Messages are `5E 01 61 | length (LE16) | command + payload | checksum`, the checksum
//! being the low byte of the sum of every byte from the length on. A reply carries either
//! a one-byte status (0x41 OK, 0x4D password required, …) or the requested structure.
//! Layouts follow the firmware structures documented by the arcmsr drivers (Linux
//! `drivers/scsi/arcmsr`, OpenBSD `arc(4)`): system info (command 0x23, 256 bytes), RAID
//! set info (0x20, 128 bytes), volume set info (0x21, 64 bytes), disk info (0x22, 128
//! bytes) and the hardware monitor (0x1B).
//!
//! All decoders are pure and return errors on any malformed input; they never panic.
//! [`Controller`] runs the queries over an [`ArecaTransport`]: [`linux::SysfsMu`] (the
//! driver's `mu_write`/`mu_read`/`mu_clear` files) or [`sim::SimRaid`].
//!
//! Not supported: configuration commands (create/delete sets, rebuild priority), the
//! event log, SCSI READ/WRITE BUFFER access.

pub mod linux;
pub mod sim;

use std::fmt;

use crate::ErrorKind;

/// Frame header bytes.
pub const HEADER: [u8; 3] = [0x5E, 0x01, 0x61];
/// Largest message the driver moves in one go.
pub const MAX_MESSAGE: usize = 1032;

/// Command codes.
pub mod cmd {
    /// Hardware monitor (fans, voltages, temperatures, power).
    pub const HW_MONITOR: u8 = 0x1B;
    /// RAID set info, + set number.
    pub const RAID_SET: u8 = 0x20;
    /// Volume set info, + volume number.
    pub const VOLUME_SET: u8 = 0x21;
    /// Physical disk info, + disk number.
    pub const DISK: u8 = 0x22;
    /// System (controller) info.
    pub const SYSTEM_INFO: u8 = 0x23;
    /// Check password, + length + password.
    pub const CHECK_PASSWORD: u8 = 0x14;
}

/// Status codes of one-byte replies.
pub mod status {
    /// Command completed.
    pub const OK: u8 = 0x41;
    /// Invalid RAID set.
    pub const RAID_INVALID: u8 = 0x42;
    /// Invalid volume set.
    pub const VOLUME_INVALID: u8 = 0x43;
    /// No RAID set.
    pub const NO_RAID: u8 = 0x44;
    /// No volume.
    pub const NO_VOLUME: u8 = 0x45;
    /// No physical drive.
    pub const NO_DRIVE: u8 = 0x46;
    /// Parameter error.
    pub const PARAM_ERROR: u8 = 0x47;
    /// Unsupported command.
    pub const UNSUPPORTED: u8 = 0x48;
    /// Checksum error (the controller rejected our request).
    pub const CHECKSUM_ERROR: u8 = 0x4C;
    /// Password required.
    pub const PASSWORD_REQUIRED: u8 = 0x4D;
}

fn status_text(s: u8) -> &'static str {
    match s {
        0x41 => "ok",
        0x42 => "invalid raid set",
        0x43 => "invalid volume set",
        0x44 => "no raid set",
        0x45 => "no volume set",
        0x46 => "no physical drive",
        0x47 => "parameter error",
        0x48 => "unsupported command",
        0x49 => "disk configuration changed",
        0x4A => "invalid password",
        0x4B => "no disk space",
        0x4C => "checksum error",
        0x4D => "password required",
        _ => "unknown status",
    }
}

/// Errors talking to or decoding an Areca controller.
#[derive(Debug, thiserror::Error)]
pub enum ArecaError {
    /// A reply does not follow the framing.
    #[error("malformed reply from {controller}: {detail}")]
    Frame {
        /// Which controller.
        controller: String,
        /// What was wrong.
        detail: FrameError,
    },
    /// The controller answered a status other than the data we asked for.
    #[error("{controller} answered {what} with status {status:#04x} ({})", status_text(*status))]
    Status {
        /// Which controller.
        controller: String,
        /// The command.
        what: &'static str,
        /// Status code.
        status: u8,
    },
    /// A structure in a reply has the wrong size.
    #[error("{controller} returned {len} bytes for {what}, expected {expected}")]
    Layout {
        /// Which controller.
        controller: String,
        /// The structure.
        what: &'static str,
        /// Bytes received.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// No complete reply within the deadline.
    #[error("no reply from {controller} within {timeout_ms} ms")]
    Timeout {
        /// Which controller.
        controller: String,
        /// How long we waited.
        timeout_ms: u64,
    },
    /// A sysfs file operation failed.
    #[error("i/o error on {path} while {what}")]
    Io {
        /// The file.
        path: String,
        /// What we were doing.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ArecaError {
    /// Coarse class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Frame { .. } | Self::Layout { .. } | Self::Status { .. } => ErrorKind::Protocol,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotPresent
            }
            Self::Io { .. } => ErrorKind::Io,
        }
    }
}

/// Framing errors of [`decode_areca_reply`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than a frame of the declared length.
    #[error("truncated: {len} bytes, need {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Bytes after the checksum.
    #[error("{extra} bytes after the checksum")]
    TrailingBytes {
        /// Extra bytes.
        extra: usize,
    },
    /// Wrong header.
    #[error("bad header {0:02x?}, expected 5e 01 61")]
    BadHeader([u8; 3]),
    /// Zero-length body.
    #[error("empty body")]
    Empty,
    /// Checksum mismatch.
    #[error("bad checksum {got:#04x}, computed {want:#04x}")]
    Checksum {
        /// In the frame.
        got: u8,
        /// Computed.
        want: u8,
    },
}

/// A decoded reply body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A one-byte status.
    Status(u8),
    /// A data structure.
    Data(Vec<u8>),
}

fn frame_checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Frames a request: command and payload.
pub fn encode_request(command: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 1).unwrap_or(u16::MAX);
    let mut f = HEADER.to_vec();
    f.extend_from_slice(&len.to_le_bytes());
    f.push(command);
    f.extend_from_slice(payload);
    f.push(frame_checksum(&f[3..]));
    f
}

/// Bytes a complete frame starting at `bytes[0]` occupies, once its length is known.
pub fn frame_len(bytes: &[u8]) -> Option<usize> {
    (bytes.len() >= 5).then(|| 6 + usize::from(u16::from_le_bytes([bytes[3], bytes[4]])))
}

/// Decodes one whole reply frame.
pub fn decode_areca_reply(bytes: &[u8]) -> Result<Reply, FrameError> {
    let Some(need) = frame_len(bytes) else {
        return Err(FrameError::Truncated {
            len: bytes.len(),
            need: 6,
        });
    };
    let header = [bytes[0], bytes[1], bytes[2]];
    if header != HEADER {
        return Err(FrameError::BadHeader(header));
    }
    if bytes.len() < need {
        return Err(FrameError::Truncated {
            len: bytes.len(),
            need,
        });
    }
    if bytes.len() > need {
        return Err(FrameError::TrailingBytes {
            extra: bytes.len() - need,
        });
    }
    if need == 6 {
        return Err(FrameError::Empty);
    }
    let want = frame_checksum(&bytes[3..need - 1]);
    let got = bytes[need - 1];
    if got != want {
        return Err(FrameError::Checksum { got, want });
    }
    let body = &bytes[5..need - 1];
    Ok(if body.len() == 1 {
        Reply::Status(body[0])
    } else {
        Reply::Data(body.to_vec())
    })
}

/// Frames a reply (for simulators and fixtures).
pub fn encode_reply(body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    let mut f = HEADER.to_vec();
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(body);
    f.push(frame_checksum(&f[3..]));
    f
}

/// Normalised state of a volume or disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaidState {
    /// Working with full redundancy.
    Ok,
    /// Working without full redundancy, or in a state this crate does not know.
    Degraded,
    /// Redundancy being restored; progress in tenths of a percent.
    Rebuilding {
        /// 0–1000.
        permille: u16,
    },
    /// Not working.
    Failed,
}

impl fmt::Display for RaidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Degraded => f.write_str("degraded"),
            Self::Rebuilding { permille } => {
                write!(f, "rebuilding {}.{}%", permille / 10, permille % 10)
            }
            Self::Failed => f.write_str("failed"),
        }
    }
}

/// Controller identity (command 0x23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerInfo {
    /// Vendor string.
    pub vendor: String,
    /// Model, e.g. "ARC-1220".
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Firmware version.
    pub firmware: String,
    /// Number of disk channels (ports).
    pub channels: u8,
    /// Volume sets supported.
    pub max_volume_sets: u8,
    /// RAID sets supported.
    pub max_raid_sets: u8,
}

/// One RAID set (command 0x20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaidSet {
    /// Set number.
    pub number: u8,
    /// Name.
    pub name: String,
    /// Member disk numbers.
    pub members: Vec<u8>,
    /// Bit mask of failed members.
    pub fail_mask: u32,
    /// Raw set state byte.
    pub raw_state: u8,
    /// Volume numbers in this set.
    pub volumes: Vec<u8>,
}

/// One volume set (command 0x21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Volume number.
    pub number: u8,
    /// Name.
    pub name: String,
    /// Capacity in 512-byte blocks.
    pub capacity_blocks: u64,
    /// RAID level (0, 1, 3, 5, 6; 255 for pass-through).
    pub raid_level: u8,
    /// Member disks.
    pub member_disks: u8,
    /// RAID set holding it.
    pub raid_set: u8,
    /// Raw status bits.
    pub raw_status: u32,
    /// Normalised state.
    pub state: RaidState,
}

/// Role of a physical disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskRole {
    /// Member of a RAID set.
    Member(u8),
    /// Hot spare.
    HotSpare,
    /// Pass-through disk.
    PassThrough,
    /// Not in use.
    Free,
    /// Unknown.
    Unknown,
}

/// One physical disk (command 0x22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Disk (slot) number.
    pub number: u8,
    /// Model string.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Firmware revision.
    pub firmware: String,
    /// Capacity in 512-byte blocks.
    pub capacity_blocks: u64,
    /// Raw device state byte.
    pub raw_state: u8,
    /// Role.
    pub role: DiskRole,
    /// Normalised state.
    pub state: RaidState,
}

/// Hardware monitor (command 0x1B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwMonitor {
    /// Fan speeds, RPM.
    pub fans_rpm: Vec<u16>,
    /// Voltages as (nominal, measured) millivolts.
    pub voltages_mv: Vec<(u16, u16)>,
    /// Temperatures, °C.
    pub temps_c: Vec<u8>,
    /// Power-supply indicator bits (bit n = supply n good).
    pub power: u8,
}

/// Sizes of the firmware structures.
pub const SYSINFO_LEN: usize = 256;
/// RAID set info size.
pub const RAIDSET_LEN: usize = 128;
/// Volume info size.
pub const VOLUME_LEN: usize = 64;
/// Disk info size.
pub const DISK_LEN: usize = 128;
/// Hardware monitor size.
pub const HWMON_LEN: usize = 24;

fn text(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    b[..end]
        .iter()
        .map(|c| {
            if c.is_ascii_graphic() || *c == b' ' {
                char::from(*c)
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Checks a structure's size: at least `expected` bytes (firmware versions may append).
fn check_len(
    b: &[u8],
    expected: usize,
    what: &'static str,
    controller: &str,
) -> Result<(), ArecaError> {
    if b.len() < expected {
        return Err(ArecaError::Layout {
            controller: controller.to_owned(),
            what,
            len: b.len(),
            expected,
        });
    }
    Ok(())
}

/// Decodes system info.
pub fn decode_sysinfo(b: &[u8], controller: &str) -> Result<ControllerInfo, ArecaError> {
    check_len(b, SYSINFO_LEN, "system info", controller)?;
    Ok(ControllerInfo {
        vendor: text(&b[0..40]),
        serial: text(&b[40..56]),
        firmware: text(&b[56..72]),
        model: text(&b[104..112]),
        channels: b[174],
        max_volume_sets: b[177],
        max_raid_sets: b[178],
    })
}

/// Decodes RAID set info; `None` for an empty slot.
pub fn decode_raidset(
    number: u8,
    b: &[u8],
    controller: &str,
) -> Result<Option<RaidSet>, ArecaError> {
    check_len(b, RAIDSET_LEN, "raid set info", controller)?;
    let count = usize::from(b[60]).min(32);
    if count == 0 && b[0] == 0 {
        return Ok(None);
    }
    let nvol = usize::from(b[63]).min(16);
    Ok(Some(RaidSet {
        number,
        name: text(&b[0..16]),
        members: b[28..28 + count].to_vec(),
        fail_mask: le32(b, 24),
        raw_state: b[62],
        volumes: b[64..64 + nvol].to_vec(),
    }))
}

/// Volume status bits.
mod vol {
    pub const INITIALIZING: u32 = 1 << 0;
    pub const FAILED: u32 = 1 << 1;
    pub const REBUILDING: u32 = 1 << 3;
    pub const NEED_REGEN: u32 = 1 << 7;
}

/// Decodes volume set info; `None` for an empty slot (zero capacity).
pub fn decode_volume(number: u8, b: &[u8], controller: &str) -> Result<Option<Volume>, ArecaError> {
    check_len(b, VOLUME_LEN, "volume set info", controller)?;
    let capacity_blocks = u64::from(le32(b, 16)) | (u64::from(le32(b, 20)) << 32);
    if capacity_blocks == 0 {
        return Ok(None);
    }
    let status = le32(b, 40);
    let fail_mask = le32(b, 24);
    let progress = le32(b, 44);
    let permille = u16::try_from(progress.min(1000)).unwrap_or(1000);
    let state = if status & vol::FAILED != 0 {
        RaidState::Failed
    } else if status & vol::REBUILDING != 0 {
        RaidState::Rebuilding { permille }
    } else if status & vol::NEED_REGEN != 0 || fail_mask != 0 {
        RaidState::Degraded
    } else if status & !(vol::INITIALIZING | (1 << 8)) == 0 {
        // Normal, or initialising / checking in the background: data is redundant.
        RaidState::Ok
    } else {
        // Migrating or a state we do not know: not claimed healthy.
        RaidState::Degraded
    };
    Ok(Some(Volume {
        number,
        name: text(&b[0..16]),
        capacity_blocks,
        raid_level: match b[55] {
            0 => 0,
            1 => 1,
            2 => 3,
            3 => 5,
            4 => 6,
            _ => 255,
        },
        member_disks: b[54],
        raid_set: b[58],
        raw_status: status,
        state,
    }))
}

/// Decodes disk info; `None` for an empty slot.
pub fn decode_disk(number: u8, b: &[u8], controller: &str) -> Result<Option<Disk>, ArecaError> {
    check_len(b, DISK_LEN, "disk info", controller)?;
    let capacity_blocks = u64::from(le32(b, 68)) | (u64::from(le32(b, 72)) << 32);
    let raw_state = b[76];
    if capacity_blocks == 0 && raw_state != 0x10 {
        return Ok(None);
    }
    let (role, state) = match raw_state {
        0x88 => (DiskRole::Member(b[81]), RaidState::Ok),
        0x8A => (DiskRole::PassThrough, RaidState::Ok),
        0xA8 => (DiskRole::HotSpare, RaidState::Ok),
        0xC8 => (DiskRole::Free, RaidState::Ok),
        0x10 => (
            if b[81] == 0xFF {
                DiskRole::Unknown
            } else {
                DiskRole::Member(b[81])
            },
            RaidState::Failed,
        ),
        _ => (DiskRole::Unknown, RaidState::Degraded),
    };
    Ok(Some(Disk {
        number,
        model: text(&b[0..40]),
        serial: text(&b[40..60]),
        firmware: text(&b[60..68]),
        capacity_blocks,
        raw_state,
        role,
        state,
    }))
}

/// Decodes the hardware monitor.
pub fn decode_hwmon(b: &[u8], controller: &str) -> Result<HwMonitor, ArecaError> {
    check_len(b, HWMON_LEN, "hardware monitor", controller)?;
    let fans = usize::from(b[0]).min(2);
    let volts = usize::from(b[1]).min(3);
    let temps = usize::from(b[2]).min(2);
    Ok(HwMonitor {
        fans_rpm: (0..fans).map(|i| le16(b, 4 + 2 * i)).collect(),
        voltages_mv: (0..volts)
            .map(|i| (le16(b, 8 + 4 * i), le16(b, 10 + 4 * i)))
            .collect(),
        temps_c: b[20..20 + temps].to_vec(),
        power: b[22],
    })
}

/// Moves framed messages to and from one controller.
pub trait ArecaTransport: fmt::Debug + Send {
    /// Sends one framed request and returns the raw bytes of one complete reply frame.
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, ArecaError>;
    /// A short name for messages (e.g. `host2`).
    fn target(&self) -> &str;
}

/// Everything the controller reports, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaidStatus {
    /// The controller.
    pub controller: ControllerInfo,
    /// RAID sets.
    pub raid_sets: Vec<RaidSet>,
    /// Volumes.
    pub volumes: Vec<Volume>,
    /// Disks present.
    pub disks: Vec<Disk>,
}

/// What a poll of the RAID subsystem found.
#[derive(Debug)]
pub enum RaidReport {
    /// No Areca controller on this machine: not an error.
    Absent,
    /// The controller's status.
    Present(RaidStatus),
    /// A controller exists but could not be read: that controller's fault.
    Fault(ArecaError),
}

/// Queries over a transport.
#[derive(Debug)]
pub struct Controller<T> {
    transport: T,
    password: Option<String>,
}

impl<T: ArecaTransport> Controller<T> {
    /// Wraps a transport; `password` is sent once when the controller asks for one.
    pub fn new(transport: T, password: Option<String>) -> Self {
        Self {
            transport,
            password,
        }
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// One command, with the password handshake when asked. Returns the reply body.
    pub fn command(&mut self, command: u8, payload: &[u8]) -> Result<Reply, ArecaError> {
        let mut tried_password = false;
        loop {
            let raw = self.transport.exchange(&encode_request(command, payload))?;
            let reply = decode_areca_reply(&raw).map_err(|detail| ArecaError::Frame {
                controller: self.transport.target().to_owned(),
                detail,
            })?;
            match (&reply, &self.password) {
                (Reply::Status(status::PASSWORD_REQUIRED), Some(pw)) if !tried_password => {
                    tried_password = true;
                    let mut p = vec![u8::try_from(pw.len()).unwrap_or(0)];
                    p.extend_from_slice(pw.as_bytes());
                    let raw = self
                        .transport
                        .exchange(&encode_request(cmd::CHECK_PASSWORD, &p))?;
                    match decode_areca_reply(&raw) {
                        Ok(Reply::Status(status::OK)) => continue,
                        Ok(Reply::Status(s)) => {
                            return Err(ArecaError::Status {
                                controller: self.transport.target().to_owned(),
                                what: "password check",
                                status: s,
                            });
                        }
                        Ok(Reply::Data(_)) => {
                            return Err(ArecaError::Frame {
                                controller: self.transport.target().to_owned(),
                                detail: FrameError::Empty,
                            });
                        }
                        Err(detail) => {
                            return Err(ArecaError::Frame {
                                controller: self.transport.target().to_owned(),
                                detail,
                            });
                        }
                    }
                }
                _ => return Ok(reply),
            }
        }
    }

    fn data(
        &mut self,
        command: u8,
        payload: &[u8],
        what: &'static str,
    ) -> Result<Option<Vec<u8>>, ArecaError> {
        match self.command(command, payload)? {
            Reply::Data(d) => Ok(Some(d)),
            // "No such set/volume/drive" means an empty slot.
            Reply::Status(
                status::NO_RAID
                | status::NO_VOLUME
                | status::NO_DRIVE
                | status::RAID_INVALID
                | status::VOLUME_INVALID,
            ) => Ok(None),
            Reply::Status(s) => Err(ArecaError::Status {
                controller: self.transport.target().to_owned(),
                what,
                status: s,
            }),
        }
    }

    /// Controller identity.
    pub fn info(&mut self) -> Result<ControllerInfo, ArecaError> {
        let what = "system info";
        match self.data(cmd::SYSTEM_INFO, &[], what)? {
            Some(d) => decode_sysinfo(&d, self.transport.target()),
            None => Err(ArecaError::Status {
                controller: self.transport.target().to_owned(),
                what,
                status: status::UNSUPPORTED,
            }),
        }
    }

    /// Hardware monitor.
    pub fn hw_monitor(&mut self) -> Result<HwMonitor, ArecaError> {
        let what = "hardware monitor";
        match self.data(cmd::HW_MONITOR, &[], what)? {
            Some(d) => decode_hwmon(&d, self.transport.target()),
            None => Err(ArecaError::Status {
                controller: self.transport.target().to_owned(),
                what,
                status: status::UNSUPPORTED,
            }),
        }
    }

    /// Reads everything: info, RAID sets, volumes, disks. Member disks of a RAID set with
    /// a rebuilding volume are reported rebuilding too (the controller does not say which
    /// member is the rebuild target through these commands).
    pub fn status(&mut self) -> Result<RaidStatus, ArecaError> {
        let controller = self.info()?;
        let target = self.transport.target().to_owned();
        let mut raid_sets = Vec::new();
        for n in 0..controller.max_raid_sets.min(128) {
            if let Some(d) = self.data(cmd::RAID_SET, &[n], "raid set info")?
                && let Some(s) = decode_raidset(n, &d, &target)?
            {
                raid_sets.push(s);
            }
        }
        let mut volumes = Vec::new();
        for n in 0..controller.max_volume_sets.min(128) {
            if let Some(d) = self.data(cmd::VOLUME_SET, &[n], "volume set info")?
                && let Some(v) = decode_volume(n, &d, &target)?
            {
                volumes.push(v);
            }
        }
        let mut disks = Vec::new();
        for n in 0..controller.channels.min(128) {
            if let Some(d) = self.data(cmd::DISK, &[n], "disk info")?
                && let Some(mut disk) = decode_disk(n, &d, &target)?
            {
                if let (DiskRole::Member(set), RaidState::Ok) = (disk.role, disk.state)
                    && let Some(v) = volumes.iter().find(|v| {
                        v.raid_set == set && matches!(v.state, RaidState::Rebuilding { .. })
                    })
                {
                    disk.state = v.state;
                }
                disks.push(disk);
            }
        }
        Ok(RaidStatus {
            controller,
            raid_sets,
            volumes,
            disks,
        })
    }
}

/// Polls one controller, if any: `None` transport means no controller was found.
pub fn report<T: ArecaTransport>(controller: Option<&mut Controller<T>>) -> RaidReport {
    match controller {
        None => RaidReport::Absent,
        Some(c) => match c.status() {
            Ok(s) => RaidReport::Present(s),
            Err(e) => RaidReport::Fault(e),
        },
    }
}

/// Builders of byte-exact firmware structures, for fixtures and the simulator.
pub mod fixture {
    use super::{DISK_LEN, RAIDSET_LEN, SYSINFO_LEN, VOLUME_LEN};

    fn put_str(b: &mut [u8], at: usize, len: usize, s: &str) {
        for (i, c) in s.bytes().take(len).enumerate() {
            b[at + i] = c;
        }
    }

    /// System info of a controller with `channels` ports.
    pub fn sysinfo(model: &str, serial: &str, firmware: &str, channels: u8) -> Vec<u8> {
        let mut b = vec![0u8; SYSINFO_LEN];
        put_str(&mut b, 0, 40, "Areca Technology Corp.");
        put_str(&mut b, 40, 16, serial);
        put_str(&mut b, 56, 16, firmware);
        put_str(&mut b, 72, 16, "V1.44 2008-1-28");
        put_str(&mut b, 104, 8, model);
        b[174] = channels;
        b[177] = 16;
        b[178] = 8;
        b
    }

    /// RAID set info.
    pub fn raidset(name: &str, members: &[u8], fail_mask: u32, volumes: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; RAIDSET_LEN];
        put_str(&mut b, 0, 16, name);
        b[24..28].copy_from_slice(&fail_mask.to_le_bytes());
        for (i, m) in members.iter().take(32).enumerate() {
            b[28 + i] = *m;
        }
        b[60] = u8::try_from(members.len().min(32)).unwrap_or(32);
        b[63] = u8::try_from(volumes.len().min(16)).unwrap_or(16);
        for (i, v) in volumes.iter().take(16).enumerate() {
            b[64 + i] = *v;
        }
        b
    }

    /// Volume set info.
    pub fn volume(
        name: &str,
        blocks: u64,
        level_code: u8,
        raid_set: u8,
        status: u32,
        fail_mask: u32,
        progress: u32,
    ) -> Vec<u8> {
        let mut b = vec![0u8; VOLUME_LEN];
        put_str(&mut b, 0, 16, name);
        b[16..24].copy_from_slice(&blocks.to_le_bytes());
        b[24..28].copy_from_slice(&fail_mask.to_le_bytes());
        b[28..32].copy_from_slice(&128u32.to_le_bytes());
        b[40..44].copy_from_slice(&status.to_le_bytes());
        b[44..48].copy_from_slice(&progress.to_le_bytes());
        b[54] = 2;
        b[55] = level_code;
        b[58] = raid_set;
        b
    }

    /// Disk info.
    pub fn disk(model: &str, serial: &str, blocks: u64, state: u8, raid_set: u8) -> Vec<u8> {
        let mut b = vec![0u8; DISK_LEN];
        put_str(&mut b, 0, 40, model);
        put_str(&mut b, 40, 20, serial);
        put_str(&mut b, 60, 8, "3.AAE");
        b[68..76].copy_from_slice(&blocks.to_le_bytes());
        b[76] = state;
        b[81] = raid_set;
        b
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A system-info request as the driver's tools send it, byte for byte.
    #[test]
    fn request_framing_is_byte_exact() {
        assert_eq!(
            encode_request(cmd::SYSTEM_INFO, &[]),
            [0x5E, 0x01, 0x61, 0x01, 0x00, 0x23, 0x24]
        );
        assert_eq!(
            encode_request(cmd::VOLUME_SET, &[0x02]),
            [0x5E, 0x01, 0x61, 0x02, 0x00, 0x21, 0x02, 0x25]
        );
    }

    #[test]
    fn status_reply_decodes() {
        let ok = [0x5E, 0x01, 0x61, 0x01, 0x00, 0x41, 0x42];
        assert_eq!(decode_areca_reply(&ok), Ok(Reply::Status(0x41)));
        let pw = [0x5E, 0x01, 0x61, 0x01, 0x00, 0x4D, 0x4E];
        assert_eq!(
            decode_areca_reply(&pw),
            Ok(Reply::Status(status::PASSWORD_REQUIRED))
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut f = encode_reply(&fixture::sysinfo("ARC-1220", "Y123", "V1.49", 8));
        let n = f.len();
        f[n - 1] ^= 0xFF;
        assert!(matches!(
            decode_areca_reply(&f),
            Err(FrameError::Checksum { .. })
        ));
        f[n - 1] ^= 0xFF;
        assert!(decode_areca_reply(&f).is_ok());
        assert!(matches!(
            decode_areca_reply(&f[..n - 2]),
            Err(FrameError::Truncated { .. })
        ));
        let mut padded = f.clone();
        padded.push(0);
        assert_eq!(
            decode_areca_reply(&padded),
            Err(FrameError::TrailingBytes { extra: 1 })
        );
        f[0] = 0x5F;
        assert!(matches!(
            decode_areca_reply(&f),
            Err(FrameError::BadHeader(_))
        ));
        assert!(matches!(
            decode_areca_reply(&[0x5E, 0x01, 0x61, 0, 0, 0]),
            Err(FrameError::Empty)
        ));
    }

    #[test]
    fn sysinfo_fields() {
        let i = decode_sysinfo(
            &fixture::sysinfo("ARC-1220", "Y611CAABAR200064", "V1.49 2010-12-02", 8),
            "c",
        )
        .unwrap();
        assert_eq!(i.model, "ARC-1220");
        assert_eq!(i.serial, "Y611CAABAR200064");
        assert_eq!(i.firmware, "V1.49 2010-12-02");
        assert_eq!(i.vendor, "Areca Technology Corp.");
        assert_eq!((i.channels, i.max_volume_sets, i.max_raid_sets), (8, 16, 8));
        assert!(matches!(
            decode_sysinfo(&[0; 100], "c"),
            Err(ArecaError::Layout { len: 100, .. })
        ));
    }

    #[test]
    fn volume_states_normalise() {
        let v = |status, fail, progress| {
            decode_volume(
                0,
                &fixture::volume("ARC-1220-VOL#00", 976_773_168, 1, 0, status, fail, progress),
                "c",
            )
            .unwrap()
            .unwrap()
            .state
        };
        assert_eq!(v(0, 0, 0), RaidState::Ok);
        assert_eq!(v(0, 0b10, 0), RaidState::Degraded);
        assert_eq!(v(0x80, 0, 0), RaidState::Degraded);
        assert_eq!(v(0x08, 0, 473), RaidState::Rebuilding { permille: 473 });
        assert_eq!(v(0x02, 0, 0), RaidState::Failed);
        assert_eq!(v(0x01, 0, 100), RaidState::Ok);
        assert_eq!(v(0x04, 0, 100), RaidState::Degraded);
        assert_eq!(
            RaidState::Rebuilding { permille: 473 }.to_string(),
            "rebuilding 47.3%"
        );
        let vol = decode_volume(3, &fixture::volume("Data", 976_773_168, 3, 1, 0, 0, 0), "c")
            .unwrap()
            .unwrap();
        assert_eq!(
            (vol.number, vol.raid_level, vol.raid_set, vol.name.as_str()),
            (3, 5, 1, "Data")
        );
        assert_eq!(vol.capacity_blocks, 976_773_168);
        assert_eq!(decode_volume(0, &[0; 64], "c").unwrap(), None);
    }

    #[test]
    fn disk_states_normalise() {
        let d = decode_disk(
            1,
            &fixture::disk("ST3500630NS", "9QG1ABCD", 976_773_168, 0x88, 0),
            "c",
        )
        .unwrap()
        .unwrap();
        assert_eq!((d.role, d.state), (DiskRole::Member(0), RaidState::Ok));
        assert_eq!(d.model, "ST3500630NS");
        let f = decode_disk(
            2,
            &fixture::disk("ST3500630NS", "9QG1XXXX", 976_773_168, 0x10, 0),
            "c",
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.state, RaidState::Failed);
        let odd = decode_disk(2, &fixture::disk("x", "y", 1, 0x55, 0), "c")
            .unwrap()
            .unwrap();
        assert_eq!(odd.state, RaidState::Degraded);
        assert_eq!(decode_disk(3, &[0; 128], "c").unwrap(), None);
    }

    #[test]
    fn raidset_and_hwmon() {
        let s = decode_raidset(0, &fixture::raidset("Raid Set # 00", &[0, 1], 0, &[0]), "c")
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.members, s.volumes, s.name.as_str()),
            (vec![0, 1], vec![0], "Raid Set # 00")
        );
        assert_eq!(decode_raidset(1, &[0; 128], "c").unwrap(), None);
        let mut h = vec![2, 3, 2, 2];
        h.extend_from_slice(&2500u16.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        for (n, v) in [(12000u16, 11920u16), (5000, 5040), (3300, 3280)] {
            h.extend_from_slice(&n.to_le_bytes());
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.extend_from_slice(&[41, 38, 0x03, 0]);
        let m = decode_hwmon(&h, "c").unwrap();
        assert_eq!(m.fans_rpm, vec![2500, 0]);
        assert_eq!(m.voltages_mv[0], (12000, 11920));
        assert_eq!(m.temps_c, vec![41, 38]);
        assert_eq!(m.power, 3);
    }

    /// Replies assembled by hand, field by field, from the firmware structures as
    /// OpenBSD's arc(4) declares them (`struct arc_fw_sysinfo`, `arc_fw_raidinfo`,
    /// `arc_fw_volinfo`, `arc_fw_diskinfo`, all packed, little-endian) rather than with
    /// [`fixture`], which shares the decoders' offsets. The expected values are read off
    /// the same layout. `xx*n` stands for n bytes of xx.
    mod literal_replies {
        use super::*;

        fn unhex(s: &str) -> Vec<u8> {
            let mut out = vec![];
            for tok in s.split_whitespace() {
                let (byte, n) = tok.split_once('*').unwrap_or((tok, "1"));
                let byte = u8::from_str_radix(byte, 16).unwrap();
                out.extend(std::iter::repeat_n(byte, n.parse().unwrap()));
            }
            out
        }

        fn body(frame: &str) -> Vec<u8> {
            match decode_areca_reply(&unhex(frame)) {
                Ok(Reply::Data(b)) => b,
                other => panic!("{other:?}"),
            }
        }

        // 0x23 system info: 256 body bytes
        const SYSINFO_REPLY: &str = concat!(
            "5e 01 61 00 01", // header, body length 256
            " 41 72 65 63 61 20 54 65 63 68 6e 6f 6c 6f 67 79 20 43 6f 72", //   0: vendor_name[40]
            " 70 2e 00*18",
            " 59 36 31 31 43 41 41 42 41 52 32 30 30 30 36 34", //  40: serial_number[16], no NUL
            " 56 31 2e 34 39 20 32 30 31 30 2d 31 32 2d 30 32", //  56: firmware_version[16]
            " 56 31 2e 34 34 20 32 30 30 38 2d 31 2d 32 38 00", //  72: boot_version[16]
            " 31 32 32 30 2d 42 00*10",                         //  88: mb_version[16]
            " 41 52 43 2d 31 32 32 30",                         // 104: model_name[8], no NUL
            " c0 a8 01 64 c0 a8 01 64",                         // 112: local_ip[4], current_ip[4]
            " 45 23 01 00",                                     // 120: time_tick
            " f4 01 00 00",                                     // 124: cpu_speed 500
            " 20 00 00 00 20 00*7",                             // 128: icache, dcache, scache
            " 00 01 00 00 4d 01 00 00", // 140: memory_size 256, memory_speed 333
            " 07 00 00 00",             // 148: events
            " 00 1b 4d 00 12 34",       // 152: gsiMacAddress[6]
            " 01 01 00 06 01 02", // 158: gsiDhcp, alarm, channel_usage, max_ata_mode, sdram_ecc, rebuild_priority
            " 05 08 01 00 00 05 08 01 00 00", // 164: comm_a, comm_b
            " 08",                // 174: ide_channels 8
            " 01 00",             // 175: scsi_host_channels, ide_host_channels
            " 10 08",             // 177: max_volume_set 16, max_raid_set 8
            " 01 01",             // 179: ether_port, raid6_engine
            " 00*75",             // 181: reserved[75]
            " 54",                // checksum: bytes from the length on, mod 256
        );
        // 0x20 raid set 1: 272 body bytes
        const RAIDSET_REPLY: &str = concat!(
            "5e 01 61 10 01",                                   // header, body length 272
            " 52 61 69 64 20 53 65 74 20 23 20 30 31 20 20 20", //   0: set_name[16], space padded
            " 60 6c 70 74 00*4",                                //  16: capacity, capacity2
            " 02 00 00 00",                                     //  24: fail_mask: member 1 failed
            " 02 03 04 00*29", //  28: device_array[32]: disks 2, 3, 4
            " 03",             //  60: member_devices 3
            " 00",             //  61: new_member_devices
            " 22",             //  62: raid_state
            " 02",             //  63: volumes 2
            " 01 02 00*14",    //  64: volume_list[16]: volumes 1, 2
            " 00 00 00 01",    //  80: reserved1[3], free_segments
            " 00 00 01 00 00 00 01 00 00 00 01 00*21", //  84: raw_stripes[8]
            " 00*12",          // 116: reserved2[3]
            " 00*112",         // 128: vol_ListX[112]
            " 00*32",          // 240: devEncArray[32]
            " ea",             // checksum: bytes from the length on, mod 256
        );
        // 0x21 volume set 2: 128 body bytes
        const VOLUME_REPLY: &str = concat!(
            "5e 01 61 80 00",                                   // header, body length 128
            " 41 52 43 2d 31 32 32 30 2d 56 4f 4c 23 30 32 00", //   0: set_name[16]
            " 00 a0 c3 18",                                     //  16: capacity: low word
            " 01 00 00 00",                                     //  20: capacity2: high word
            " 00*4",                                            //  24: fail_mask
            " 80 00 00 00",                                     //  28: stripe_size 128
            " 00*8",              //  32: new_fail_mask, new_stripe_size
            " 08 00 00 00",       //  40: volume_status: rebuilding (bit 3)
            " d9 01 00 00",       //  44: progress 47.3 % in 0.1 %
            " 00 00 02 01 01 00", //  48: scsi_attr: channel, target, lun, tagged, cache, speed
            " 03",                //  54: member_disks 3
            " 03",                //  55: raid_level code 3 = RAID 5
            " 00 00",             //  56: new_member_disks, new_raid_level
            " 01",                //  58: raid_set_number 1
            " 00",                //  59: vol_state0
            " 00*4",              //  60: host_speed
            " 00*4",              //  64: vol_state
            " 00*17",             //  68: vol_array[16], num_5060volumes
            " 00*43",             //  85: reserved[43]
            " d4",                // checksum: bytes from the length on, mod 256
        );
        // 0x22 disk 3: 258 body bytes
        const DISK_REPLY: &str = concat!(
            "5e 01 61 02 01",                          // header, body length 258
            " 53 54 33 35 30 30 36 33 30 4e 53 20*29", //   0: model[40], space padded
            " 39 51 47 31 41 42 43 44 00*12",          //  40: serial[20]
            " 33 2e 41 41 45 00 00 00",                //  60: firmware_rev[8]
            " 30 60 38 3a 00*4",                       //  68: capacity 976773168, capacity2
            " 88",                                     //  76: device_state 0x88
            " 04 06 06 00", //  77: pio_mode, current_udma_mode, udma_mode, hot_spare_type
            " 01",          //  81: raid_number 1
            " 00*6",        //  82: scsi_attr
            " 00*170",      //  88: reserved[170]
            " 1b",          // checksum: bytes from the length on, mod 256
        );

        #[test]
        fn system_info() {
            let b = body(SYSINFO_REPLY);
            assert_eq!(b.len(), 256);
            let i = decode_sysinfo(&b, "c").unwrap();
            assert_eq!(
                i,
                ControllerInfo {
                    vendor: "Areca Technology Corp.".into(),
                    model: "ARC-1220".into(),
                    serial: "Y611CAABAR200064".into(),
                    firmware: "V1.49 2010-12-02".into(),
                    channels: 8,
                    max_volume_sets: 16,
                    max_raid_sets: 8,
                }
            );
        }

        #[test]
        fn raid_set() {
            let b = body(RAIDSET_REPLY);
            assert_eq!(b.len(), 272);
            let s = decode_raidset(1, &b, "c").unwrap().unwrap();
            assert_eq!(
                s,
                RaidSet {
                    number: 1,
                    name: "Raid Set # 01".into(),
                    members: vec![2, 3, 4],
                    fail_mask: 0b10,
                    raw_state: 0x22,
                    volumes: vec![1, 2],
                }
            );
        }

        #[test]
        fn volume_set() {
            let b = body(VOLUME_REPLY);
            assert_eq!(b.len(), 128);
            let v = decode_volume(2, &b, "c").unwrap().unwrap();
            assert_eq!(
                v,
                Volume {
                    number: 2,
                    name: "ARC-1220-VOL#02".into(),
                    // capacity2 = 1, capacity = 0x18C3A000.
                    capacity_blocks: 4_710_440_960,
                    raid_level: 5,
                    member_disks: 3,
                    raid_set: 1,
                    raw_status: 0x08,
                    state: RaidState::Rebuilding { permille: 473 },
                }
            );
            // The same volume, not rebuilding but with member 0 failed: degraded.
            let mut b = b;
            b[40] = 0x00;
            b[24] = 0x01;
            let v = decode_volume(2, &b, "c").unwrap().unwrap();
            assert_eq!(v.state, RaidState::Degraded);
            // Failed outranks everything.
            b[40] = 0x02 | 0x08;
            let v = decode_volume(2, &b, "c").unwrap().unwrap();
            assert_eq!(v.state, RaidState::Failed);
        }

        #[test]
        fn disk() {
            let b = body(DISK_REPLY);
            assert_eq!(b.len(), 258);
            let d = decode_disk(3, &b, "c").unwrap().unwrap();
            assert_eq!(
                d,
                Disk {
                    number: 3,
                    model: "ST3500630NS".into(),
                    serial: "9QG1ABCD".into(),
                    firmware: "3.AAE".into(),
                    capacity_blocks: 976_773_168,
                    raw_state: 0x88,
                    // device_state 0x88 is a RAID set member; raid_number says which set.
                    role: DiskRole::Member(1),
                    state: RaidState::Ok,
                }
            );
        }

        #[test]
        fn one_changed_byte_fails_the_checksum() {
            for frame in [SYSINFO_REPLY, RAIDSET_REPLY, VOLUME_REPLY, DISK_REPLY] {
                let mut f = unhex(frame);
                f[5 + 40] ^= 0x01;
                assert!(
                    matches!(decode_areca_reply(&f), Err(FrameError::Checksum { .. })),
                    "{frame}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_areca_reply(&bytes);
            let _ = decode_sysinfo(&bytes, "c");
            let _ = decode_raidset(0, &bytes, "c");
            let _ = decode_volume(0, &bytes, "c");
            let _ = decode_disk(0, &bytes, "c");
            let _ = decode_hwmon(&bytes, "c");
        }

        #[test]
        fn framed_replies_round_trip(body in proptest::collection::vec(any::<u8>(), 2..400)) {
            prop_assert_eq!(decode_areca_reply(&encode_reply(&body)), Ok(Reply::Data(body)));
        }
    }
}
