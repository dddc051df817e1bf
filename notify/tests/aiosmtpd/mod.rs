//! Python's aiosmtpd (Debian package `python3-aiosmtpd`) as a real SMTP server on
//! 127.0.0.1, storing what it receives in a Maildir. Shared by the SMTP tests of
//! `tandem-notify` and the e-mail alert tests of `tandem-runtime`.

#![allow(
    dead_code,
    clippy::expect_used,
    reason = "test support shared by several targets, each using part of it"
)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The interpreter the Debian package installs its module for.
const PYTHON: &str = "/usr/bin/python3";

pub fn require_aiosmtpd() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "aiosmtpd is missing: apt-get install -y --no-install-recommends python3-aiosmtpd"
    );
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A running aiosmtpd; killed by its PID when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    pub fn start(port: u16, maildir: &Path) -> Self {
        Self::start_with(port, maildir, &[])
    }

    pub fn start_with(port: u16, maildir: &Path, extra: &[&Path]) -> Self {
        let mut cmd = Command::new(PYTHON);
        cmd.args(["-m", "aiosmtpd", "-n"]);
        if let [cert, key] = extra {
            cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
        }
        let child = cmd
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let server = Self { child };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on port {port} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Child::kill signals exactly this process id.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every message the server stored, as text.
pub fn received(maildir: &Path) -> Vec<String> {
    let new = maildir.join("new");
    let Ok(rd) = std::fs::read_dir(&new) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // Python's Maildir names a message `SECONDS.MMICROSECONDSPPID…`, the
    // microseconds not padded: in arrival order by those two numbers, not by name.
    files.sort_by_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut parts = name.splitn(2, ".M");
        let secs: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let micros: u64 = parts
            .next()
            .map(|r| {
                r.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        (secs, micros, name)
    });
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read received message"))
        .collect()
}
