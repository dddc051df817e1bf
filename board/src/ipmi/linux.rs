//! In-band IPMI through the Linux `ipmi_devintf` character device (`/dev/ipmi0`).
//!
//! ABI (x86_64, `include/uapi/linux/ipmi.h`): `IPMICTL_SEND_COMMAND` takes a
//! `struct ipmi_req` (40 bytes), `IPMICTL_RECEIVE_MSG_TRUNC` a `struct ipmi_recv`
//! (48 bytes); both point at a `struct ipmi_msg` (16 bytes) and an address buffer. Replies
//! are matched by `msgid`; the kernel itself retries and answers 0xC3 when the BMC stays
//! silent. See ipmi(4) and the kernel's `Documentation/driver-api/ipmi.rst`.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::ioctl::{Updater, ioctl};

use super::{IpmiError, IpmiTransport, Request, Response};

/// Where udev and devfs-era setups put the first IPMI device.
pub const DEVICE_PATHS: [&str; 3] = ["/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0"];

const IPMICTL_SEND_COMMAND: rustix::ioctl::Opcode = 0x8028_690d;
const IPMICTL_RECEIVE_MSG_TRUNC: rustix::ioctl::Opcode = 0xc030_690b;
const IPMI_SYSTEM_INTERFACE_ADDR_TYPE: i32 = 0x0c;
const IPMI_BMC_CHANNEL: i16 = 0xf;
/// `recv_type` of a response to our own command.
const IPMI_RESPONSE_RECV_TYPE: i32 = 1;

#[repr(C)]
#[derive(Debug)]
struct IpmiMsg {
    netfn: u8,
    cmd: u8,
    data_len: u16,
    data: *mut u8,
}

#[repr(C)]
#[derive(Debug)]
struct IpmiReq {
    addr: *mut u8,
    addr_len: u32,
    msgid: i64,
    msg: IpmiMsg,
}

#[repr(C)]
#[derive(Debug)]
struct IpmiRecv {
    recv_type: i32,
    addr: *mut u8,
    addr_len: u32,
    msgid: i64,
    msg: IpmiMsg,
}

/// `struct ipmi_system_interface_addr`.
#[repr(C)]
#[derive(Debug)]
struct SystemInterfaceAddr {
    addr_type: i32,
    channel: i16,
    lun: u8,
}

const _: () = assert!(std::mem::size_of::<IpmiReq>() == 40);
const _: () = assert!(std::mem::size_of::<IpmiRecv>() == 48);
const _: () = assert!(std::mem::size_of::<IpmiMsg>() == 16);

/// The in-band BMC interface.
#[derive(Debug)]
pub struct DevIpmi {
    file: File,
    path: PathBuf,
    target: String,
    msgid: i64,
    timeout: Duration,
}

impl DevIpmi {
    /// Opens the device (normally `/dev/ipmi0`). A missing device is
    /// [`crate::ErrorKind::NotPresent`].
    pub fn open(path: &Path) -> Result<Self, IpmiError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| IpmiError::Io {
                target: path.display().to_string(),
                what: "opening the ipmi device",
                source,
            })?;
        Ok(Self {
            file,
            path: path.to_owned(),
            target: path.display().to_string(),
            msgid: 0,
            // The kernel gives up after 4 × 2 s itself; wait a little longer than that.
            timeout: Duration::from_secs(10),
        })
    }

    /// Opens the first device node that exists among `candidates` (normally
    /// [`DEVICE_PATHS`]). `Ok(None)` when none exists: the machine has no BMC or the
    /// driver is not loaded, which callers report as absent rather than as an error.
    pub fn discover(candidates: &[&Path]) -> Result<Option<Self>, IpmiError> {
        for path in candidates {
            match Self::open(path) {
                Ok(d) => return Ok(Some(d)),
                Err(e) if e.kind() == crate::ErrorKind::NotPresent => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// [`DevIpmi::discover`] over [`DEVICE_PATHS`].
    pub fn discover_default() -> Result<Option<Self>, IpmiError> {
        let paths: Vec<&Path> = DEVICE_PATHS.iter().map(Path::new).collect();
        Self::discover(&paths)
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, what: &'static str, e: rustix::io::Errno) -> IpmiError {
        IpmiError::Io {
            target: self.target.clone(),
            what,
            source: e.into(),
        }
    }
}

impl IpmiTransport for DevIpmi {
    fn send(&mut self, req: &Request<'_>) -> Result<Response, IpmiError> {
        self.msgid = self.msgid.wrapping_add(1);
        let mut addr = SystemInterfaceAddr {
            addr_type: IPMI_SYSTEM_INTERFACE_ADDR_TYPE,
            channel: IPMI_BMC_CHANNEL,
            lun: req.lun & 3,
        };
        let mut data = req.data.to_vec();
        let mut ireq = IpmiReq {
            addr: (&raw mut addr).cast::<u8>(),
            addr_len: u32::try_from(std::mem::size_of::<SystemInterfaceAddr>()).unwrap_or(0),
            msgid: self.msgid,
            msg: IpmiMsg {
                netfn: req.netfn.0,
                cmd: req.cmd,
                data_len: u16::try_from(data.len()).map_err(|_| IpmiError::Protocol {
                    target: self.target.clone(),
                    what: "sending",
                    detail: format!("request of {} bytes is too long", data.len()),
                })?,
                data: data.as_mut_ptr(),
            },
        };
        // SAFETY: IPMICTL_SEND_COMMAND reads a `struct ipmi_req` whose layout `IpmiReq`
        // matches (size asserted above); its pointers refer to `addr` and `data`, which
        // outlive the call, with lengths that match their buffers.
        unsafe {
            ioctl(
                self.file.as_fd(),
                Updater::<IPMICTL_SEND_COMMAND, IpmiReq>::new(&mut ireq),
            )
        }
        .map_err(|e| self.io("sending a command (IPMICTL_SEND_COMMAND)", e))?;

        let deadline = Instant::now() + self.timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(IpmiError::Timeout {
                    target: self.target.clone(),
                    timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                });
            }
            let left = rustix::event::Timespec::try_from(deadline - now).unwrap_or(
                rustix::event::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                },
            );
            let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
            match poll(&mut fds, Some(&left)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(self.io("waiting for a reply (poll)", e)),
            }
            // A 40-byte buffer holds any address type the kernel may report.
            let mut raddr = [0u8; 40];
            let mut rdata = [0u8; 272];
            let mut recv = IpmiRecv {
                recv_type: 0,
                addr: raddr.as_mut_ptr(),
                addr_len: 40,
                msgid: 0,
                msg: IpmiMsg {
                    netfn: 0,
                    cmd: 0,
                    data_len: 272,
                    data: rdata.as_mut_ptr(),
                },
            };
            // SAFETY: IPMICTL_RECEIVE_MSG_TRUNC fills a `struct ipmi_recv` (layout matched
            // by `IpmiRecv`) and writes at most `addr_len` bytes to `raddr` and `data_len`
            // bytes to `rdata`; both buffers live until after the call.
            let r = unsafe {
                ioctl(
                    self.file.as_fd(),
                    Updater::<IPMICTL_RECEIVE_MSG_TRUNC, IpmiRecv>::new(&mut recv),
                )
            };
            match r {
                // EMSGSIZE: delivered, but truncated to our buffer; still usable.
                Ok(()) | Err(rustix::io::Errno::MSGSIZE) => {}
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(self.io("receiving a reply (IPMICTL_RECEIVE_MSG_TRUNC)", e)),
            }
            if recv.recv_type != IPMI_RESPONSE_RECV_TYPE || recv.msgid != self.msgid {
                // An event or a late reply to an earlier, timed-out request.
                continue;
            }
            let n = usize::from(recv.msg.data_len).min(rdata.len());
            if n == 0 {
                return Err(IpmiError::Protocol {
                    target: self.target.clone(),
                    what: "receiving",
                    detail: "reply without completion code".into(),
                });
            }
            return Ok(Response {
                cc: rdata[0],
                data: rdata[1..n].to_vec(),
            });
        }
    }

    fn target(&self) -> &str {
        &self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn discover_without_devices_is_none() {
        let none = DevIpmi::discover(&[
            Path::new("/nonexistent/ipmi0"),
            Path::new("/nonexistent/ipmi/0"),
        ])
        .unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn missing_device_is_not_present() {
        let err = DevIpmi::open(Path::new("/nonexistent/ipmi0")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotPresent);
        assert!(err.to_string().contains("/nonexistent/ipmi0"));
    }
}
