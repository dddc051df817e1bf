//! The arcmsr driver's message-unit files in sysfs:
//! `/sys/class/scsi_host/hostN/{mu_write,mu_read,mu_clear}`.
//!
//! A write to `mu_clear` empties both queues; a write of a framed request to `mu_write`
//! queues it (a return of 0 means the previous message is still moving: retry); reads of
//! `mu_read` return whatever part of the reply has arrived, up to 1032 bytes at a time.
//! All three need CAP_SYS_ADMIN.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ArecaError, ArecaTransport, MAX_MESSAGE, frame_len};

/// Where SCSI hosts live.
pub const SCSI_HOST_CLASS: &str = "/sys/class/scsi_host";

/// One controller's message unit.
#[derive(Debug)]
pub struct SysfsMu {
    dir: PathBuf,
    name: String,
    timeout: Duration,
}

impl SysfsMu {
    /// Finds the first SCSI host under `class_dir` that has the message-unit files.
    /// `Ok(None)` when there is none: no Areca controller, which is not an error.
    pub fn discover(class_dir: &Path) -> Result<Option<Self>, ArecaError> {
        let entries = match std::fs::read_dir(class_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ArecaError::Io {
                    path: class_dir.display().to_string(),
                    what: "listing scsi hosts",
                    source,
                });
            }
        };
        let mut hosts: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                ["mu_write", "mu_read", "mu_clear"]
                    .iter()
                    .all(|f| p.join(f).exists())
            })
            .collect();
        hosts.sort();
        Ok(hosts.into_iter().next().map(|dir| Self::at(&dir)))
    }

    /// The message unit of the host directory `dir`.
    pub fn at(dir: &Path) -> Self {
        Self {
            name: dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            dir: dir.to_owned(),
            timeout: Duration::from_secs(3),
        }
    }

    /// Sets how long to wait for a complete reply.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn io(&self, file: &str, what: &'static str) -> impl FnOnce(std::io::Error) -> ArecaError {
        let path = self.dir.join(file).display().to_string();
        move |source| ArecaError::Io { path, what, source }
    }

    fn write_file(
        &self,
        file: &str,
        bytes: &[u8],
        what: &'static str,
    ) -> Result<usize, ArecaError> {
        let mut f = OpenOptions::new()
            .write(true)
            .open(self.dir.join(file))
            .map_err(self.io(file, what))?;
        f.write(bytes).map_err(self.io(file, what))
    }
}

impl ArecaTransport for SysfsMu {
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, ArecaError> {
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = Instant::now() + self.timeout;
        self.write_file("mu_clear", &[1], "clearing the message queues")?;
        // The driver takes the whole message or nothing (0 = busy, retry).
        while self.write_file("mu_write", request, "writing a request")? == 0 {
            if Instant::now() >= deadline {
                return Err(ArecaError::Timeout {
                    controller: self.name.clone(),
                    timeout_ms,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut reply = Vec::new();
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let n = OpenOptions::new()
                .read(true)
                .open(self.dir.join("mu_read"))
                .and_then(|mut f| f.read(&mut buf))
                .map_err(self.io("mu_read", "reading a reply"))?;
            reply.extend_from_slice(&buf[..n]);
            // Skip anything before a frame header (left-overs of an aborted exchange).
            if let Some(start) = reply.windows(3).position(|w| w == super::HEADER) {
                reply.drain(..start);
            }
            if let Some(len) = frame_len(&reply)
                && reply.len() >= len
            {
                reply.truncate(len);
                return Ok(reply);
            }
            if reply.len() > MAX_MESSAGE * 4 || Instant::now() >= deadline {
                return Err(ArecaError::Timeout {
                    controller: self.name.clone(),
                    timeout_ms,
                });
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn target(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::areca::{Controller, RaidReport, encode_reply, fixture, report};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tandem-areca-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn no_controller_is_absent_not_an_error() {
        let d = tmp("absent");
        std::fs::create_dir_all(d.join("host0")).unwrap();
        std::fs::write(d.join("host0/proc_name"), "ahci\n").unwrap();
        assert!(SysfsMu::discover(&d).unwrap().is_none());
        assert!(SysfsMu::discover(&d.join("missing")).unwrap().is_none());
        assert!(matches!(report::<SysfsMu>(None), RaidReport::Absent));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn exchanges_through_message_unit_files() {
        let d = tmp("mu");
        let host = d.join("host3");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("mu_write"), b"").unwrap();
        std::fs::write(host.join("mu_clear"), b"").unwrap();
        // The "controller" has already put a reply in the read queue, after some junk.
        let body = fixture::sysinfo("ARC-1210", "Y123", "V1.49", 4);
        let mut queued = vec![0xAA, 0xBB];
        queued.extend_from_slice(&encode_reply(&body));
        std::fs::write(host.join("mu_read"), &queued).unwrap();
        let mu = SysfsMu::discover(&d).unwrap().expect("host3 found");
        assert_eq!(mu.target(), "host3");
        let mut c = Controller::new(mu, None);
        let info = c.info().unwrap();
        assert_eq!(info.model, "ARC-1210");
        assert_eq!(
            std::fs::read(host.join("mu_write")).unwrap(),
            [0x5E, 0x01, 0x61, 0x01, 0x00, 0x23, 0x24]
        );

        // A controller that never answers is a timeout on that controller.
        std::fs::write(host.join("mu_read"), b"").unwrap();
        c.transport_mut().set_timeout(Duration::from_millis(50));
        let err = c.info().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(err.to_string().contains("host3"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
