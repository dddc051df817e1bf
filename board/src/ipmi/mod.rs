//! IPMI: the transport trait, its implementations and the commands above it.
//!
//! Layers, bottom up:
//! - [`IpmiTransport`]: send one request, get one response (completion code + data).
//!   Implementations: [`linux::DevIpmi`] (`/dev/ipmi0`), [`lan::LanSession`] (RMCP+,
//!   cipher suite 3) and [`sim::SimBmc`] (scripted, with fault knobs).
//! - [`sdr`]: pure decoding of sensor data records and the reading conversion.
//! - [`sensor`]: pure decoding of Get Sensor Reading / Get Sensor Thresholds replies into
//!   health states.
//! - [`bmc::Bmc`]: the commands (SDR repository walk with its cache, sensor sweep, SEL,
//!   chassis identify and power) over any transport.

pub mod bmc;
pub mod lan;
pub mod linux;
pub mod sdr;
pub mod sensor;
pub mod sim;

use std::fmt;

use crate::ErrorKind;

/// Network function codes used by this crate (IPMI 2.0 table 5-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetFn(pub u8);

impl NetFn {
    /// Chassis requests.
    pub const CHASSIS: Self = Self(0x00);
    /// Sensor/event requests.
    pub const SENSOR_EVENT: Self = Self(0x04);
    /// Application requests.
    pub const APP: Self = Self(0x06);
    /// Storage (SDR, SEL, FRU) requests.
    pub const STORAGE: Self = Self(0x0A);
}

/// One IPMI request addressed to the BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Network function (request form, even).
    pub netfn: NetFn,
    /// Logical unit on the BMC (0–3).
    pub lun: u8,
    /// Command code.
    pub cmd: u8,
    /// Request data.
    pub data: &'a [u8],
}

impl<'a> Request<'a> {
    /// A request to LUN 0.
    pub fn new(netfn: NetFn, cmd: u8, data: &'a [u8]) -> Self {
        Self {
            netfn,
            lun: 0,
            cmd,
            data,
        }
    }
}

/// One IPMI response: completion code and the data after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Completion code; 0x00 is success.
    pub cc: u8,
    /// Response data after the completion code.
    pub data: Vec<u8>,
}

impl Response {
    /// The data if the completion code is success, else a [`IpmiError::Completion`] naming
    /// `what` was asked of `target`.
    pub fn ok(self, target: &str, what: &'static str) -> Result<Vec<u8>, IpmiError> {
        if self.cc == 0 {
            Ok(self.data)
        } else {
            Err(IpmiError::Completion {
                target: target.to_owned(),
                what,
                cc: CompletionCode(self.cc),
            })
        }
    }
}

/// An IPMI completion code, printed with its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletionCode(pub u8);

impl CompletionCode {
    /// Node busy.
    pub const BUSY: u8 = 0xC0;
    /// Timeout while processing the command.
    pub const TIMEOUT: u8 = 0xC3;
    /// Reservation cancelled or invalid.
    pub const RESERVATION_CANCELLED: u8 = 0xC5;
    /// Request data truncated.
    pub const TRUNCATED: u8 = 0xC6;
    /// Cannot return the number of requested bytes.
    pub const CANNOT_RETURN_BYTES: u8 = 0xCA;
    /// Requested sensor, data or record not present.
    pub const NOT_PRESENT: u8 = 0xCB;

    fn meaning(self) -> &'static str {
        match self.0 {
            0x00 => "success",
            0xC0 => "node busy",
            0xC1 => "invalid command",
            0xC2 => "command invalid for given lun",
            0xC3 => "timeout while processing command",
            0xC4 => "out of space",
            0xC5 => "reservation cancelled or invalid",
            0xC6 => "request data truncated",
            0xC7 => "request data length invalid",
            0xC8 => "request data field length limit exceeded",
            0xC9 => "parameter out of range",
            0xCA => "cannot return number of requested data bytes",
            0xCB => "requested sensor, data, or record not present",
            0xCC => "invalid data field in request",
            0xCD => "command illegal for specified sensor or record type",
            0xCE => "command response could not be provided",
            0xCF => "cannot execute duplicated request",
            0xD0 => "sdr repository in update mode",
            0xD1 => "device in firmware update mode",
            0xD2 => "bmc initialization in progress",
            0xD3 => "destination unavailable",
            0xD4 => "insufficient privilege level",
            0xD5 => "command not supported in present state",
            0xFF => "unspecified error",
            _ => "device-specific or unknown code",
        }
    }
}

impl fmt::Display for CompletionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.meaning())
    }
}

/// Errors of IPMI transports and commands.
#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    /// The BMC did not answer in time.
    #[error("no answer from {target} within {timeout_ms} ms")]
    Timeout {
        /// Which BMC (device path or address).
        target: String,
        /// How long we waited in total.
        timeout_ms: u64,
    },
    /// The operating system refused an operation.
    #[error("i/o error on {target} while {what}")]
    Io {
        /// Which BMC (device path or address).
        target: String,
        /// What we were doing.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The BMC answered with a non-zero completion code.
    #[error("{target} refused {what} with completion code {cc}")]
    Completion {
        /// Which BMC.
        target: String,
        /// The command that failed.
        what: &'static str,
        /// The completion code.
        cc: CompletionCode,
    },
    /// The BMC's reply does not follow the protocol.
    #[error("malformed reply from {target} to {what}: {detail}")]
    Protocol {
        /// Which BMC.
        target: String,
        /// The command whose reply was malformed.
        what: &'static str,
        /// What exactly was wrong.
        detail: String,
    },
    /// RMCP+ session establishment failed (authentication, cipher suite, status code).
    #[error("session with {target} not established: {detail}")]
    Session {
        /// Which BMC.
        target: String,
        /// What failed.
        detail: String,
    },
    /// A sensor data record could not be decoded.
    #[error("sdr record {record_id:#06x} from {target} is invalid")]
    Record {
        /// Which BMC.
        target: String,
        /// The record id.
        record_id: u16,
        /// The decoding error.
        #[source]
        source: sdr::SdrError,
    },
}

impl IpmiError {
    /// The coarse class of this error, for decisions (retry, fail over, report absent).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Timeout { .. } => ErrorKind::Timeout,
            // No device node, or a node without a driver behind it (ENXIO, ENODEV).
            Self::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound
                    || matches!(source.raw_os_error(), Some(6 | 19)) =>
            {
                ErrorKind::NotPresent
            }
            Self::Io { .. } => ErrorKind::Io,
            Self::Completion { cc, .. } => match cc.0 {
                0xC0 | 0xD0 | 0xD1 | 0xD2 => ErrorKind::Busy,
                0xC3 => ErrorKind::Timeout,
                0xCB => ErrorKind::NotPresent,
                _ => ErrorKind::Protocol,
            },
            Self::Protocol { .. } | Self::Session { .. } | Self::Record { .. } => {
                ErrorKind::Protocol
            }
        }
    }
}

/// Sends IPMI requests to one BMC and returns its responses.
///
/// Implementations handle addressing, sequence numbers, retries and timeouts; a call
/// either returns the BMC's response (whatever its completion code) or an error saying
/// why no response arrived. Calls are strictly one at a time.
pub trait IpmiTransport: fmt::Debug + Send {
    /// Sends `req` and waits for its response.
    fn send(&mut self, req: &Request<'_>) -> Result<Response, IpmiError>;

    /// A short name of the BMC for messages (`/dev/ipmi0`, `127.0.0.1:623`).
    fn target(&self) -> &str;
}

impl<T: IpmiTransport + ?Sized> IpmiTransport for Box<T> {
    fn send(&mut self, req: &Request<'_>) -> Result<Response, IpmiError> {
        (**self).send(req)
    }
    fn target(&self) -> &str {
        (**self).target()
    }
}

/// Two's-complement checksum used by IPMB-style message framing.
pub(crate) fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}
