//! Test kit for the rig tests: network namespaces the test owns, QEMU
//! virtual machines driven over their serial console, and a small HTTPS
//! client that runs inside a namespace and reports the server certificate.
//!
//! Every address the tests use (192.168.100.x) exists only inside a
//! namespace created here; the host's own namespace is never a target.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod catalogue;
pub mod failover;
pub mod install;
pub mod pair;
pub mod rolling;
pub mod scenario;
pub mod update;
pub mod ve_backup;
pub mod web;

use std::io::{Read, Seek, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The directory `cargo xtask image` filled (from `TANDEM_IMAGE_DIR`).
pub fn image_dir() -> PathBuf {
    let dir = std::env::var("TANDEM_IMAGE_DIR")
        .expect("TANDEM_IMAGE_DIR is not set: run the rig tests with `cargo xtask test`");
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("tandem-install.iso").is_file(),
        "{} holds no tandem-install.iso: run `cargo xtask image`",
        dir.display()
    );
    dir
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique short name for this process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id() % 100_000,
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates a fresh directory under the target dir's tmp.
    pub fn new(name: &str) -> Self {
        let base = std::env::var("CARGO_TARGET_TMPDIR")
            .map_or_else(|_| std::env::temp_dir(), PathBuf::from);
        let dir = base.join(unique(name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the console logs and QEMU's messages of a failed test (a
            // pair's machines have theirs in node1/ and node2/).
            let subdirs = std::fs::read_dir(&self.0)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| (format!("-{}", e.file_name().to_string_lossy()), e.path()));
            for (suffix, dir) in std::iter::once((String::new(), self.0.clone())).chain(subdirs) {
                for f in ["serial.log", "qemu.stderr"] {
                    let from = dir.join(f);
                    if from.exists() {
                        let to = PathBuf::from(format!("{}{suffix}.{f}", self.0.display()));
                        let _ = std::fs::copy(&from, &to);
                        eprintln!("kept {}", to.display());
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name (`ip netns` list).
    pub name: String,
}

impl Netns {
    /// Creates a namespace with loopback up.
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        sh(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.name, "ip"])
            .args(args));
    }

    /// Loads an nftables ruleset (`nft -f`) in the namespace.
    pub fn nft(&self, ruleset: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nft is missing: apt-get install nftables");
        child
            .stdin
            .take()
            .expect("nft's input")
            .write_all(ruleset.as_bytes())
            .expect("writing to nft");
        let out = child.wait_with_output().expect("nft");
        assert!(
            out.status.success(),
            "nft -f in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets a sysctl of the namespace (`net.*` ones are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.name, "sysctl", "-qw"])
            .arg(format!("{key}={value}")));
    }

    /// A tap device in the namespace holding `addr` (CIDR), for a VM's NIC.
    pub fn tap(&self, dev: &str, addr: &str) {
        self.ip(&["tuntap", "add", dev, "mode", "tap"]);
        self.ip(&["addr", "add", addr, "dev", dev]);
        self.ip(&["link", "set", dev, "up"]);
    }

    /// Runs `f` on a thread that has entered the namespace (sockets it makes
    /// live there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap();
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        // The thread's own panic, with its message, not a bare `Any`.
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A QEMU virtual machine under TCG with its first serial port on a unix
/// socket; the test keeps one connection to it for the VM's whole life.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    serial: UnixStream,
    output: Arc<Mutex<Vec<u8>>>,
    /// Where the console output is also logged.
    pub log: PathBuf,
    started: Instant,
    dir: PathBuf,
}

/// How a VM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS.
    Bios,
    /// OVMF (UEFI), with a private copy of its variable store.
    Uefi,
}

impl Vm {
    /// Starts QEMU with `args` (devices, drives), inside `netns` if given.
    ///
    /// The machine has what servers have, not the rig's conveniences: no
    /// random number generator device (add `-device virtio-rng-pci` to
    /// `args` to give it one), one CPU unless `args` holds `-smp`.
    pub fn start(dir: &Path, firmware: Firmware, netns: Option<&Netns>, args: &[String]) -> Self {
        let sock = dir.join("serial.sock");
        let log = dir.join("serial.log");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        cmd.args(["-accel", "tcg", "-cpu", "qemu64", "-m", "768"]);
        if !args.iter().any(|a| a == "-smp") {
            cmd.args(["-smp", "1"]);
        }
        cmd.args([
            "-display",
            "none",
            "-no-user-config",
            "-nodefaults",
            "-vga",
            "std",
        ])
        .arg("-chardev")
        .arg(format!(
            "socket,id=ser0,path={},server=on,wait=on",
            sock.display()
        ))
        .args(["-serial", "chardev:ser0"])
        .arg("-monitor")
        .arg(format!(
            "unix:{},server=on,wait=off",
            dir.join("monitor.sock").display()
        ));
        if firmware == Firmware::Uefi {
            let vars = dir.join("OVMF_VARS.fd");
            std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)
                .expect("OVMF is missing: apt-get install ovmf");
            cmd.arg("-drive")
                .arg("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ));
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("qemu.stderr")).unwrap(),
            ));
        let child = cmd
            .spawn()
            .expect("qemu-system-x86_64 is missing: apt-get install qemu-system-x86");
        let start = Instant::now();
        let serial = loop {
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "QEMU did not open its serial socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = Arc::new(Mutex::new(Vec::new()));
        let (out, mut reader, logp) = (output.clone(), serial.try_clone().unwrap(), log.clone());
        std::thread::spawn(move || {
            let mut logf = std::fs::File::create(logp).unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = logf.write_all(&buf[..n]);
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child,
            serial,
            output,
            log,
            started: Instant::now(),
            dir: dir.to_owned(),
        }
    }

    /// Runs a command on QEMU's human monitor (e.g. `system_reset`, the
    /// reset button) and returns its answer once QEMU has carried it out.
    pub fn monitor(&self, command: &str) -> String {
        self.hmp().run(command)
    }

    /// Whether QEMU has ended (the guest powered off, or it was killed).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Pulls the plug: QEMU is killed at once, the guest gets no chance to
    /// write, flush or say goodbye.
    pub fn power_loss(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A session on QEMU's human monitor that waits for each command's
    /// answer.
    pub fn hmp(&self) -> Hmp {
        Hmp::connect(&self.dir.join("monitor.sock"))
    }

    /// Types `text` on the VM's keyboard (the screen's console, not the
    /// serial port) with HMP `sendkey`, one key at a time as a person types.
    pub fn send_keys(&self, text: &str) {
        let mut hmp = self.hmp();
        for c in text.chars() {
            let key = match c {
                'a'..='z' | '0'..='9' => c.to_string(),
                ' ' => "spc".into(),
                '=' => "equal".into(),
                '-' => "minus".into(),
                '\n' => "ret".into(),
                other => panic!("no key for {other:?}"),
            };
            hmp.run(&format!("sendkey {key}"));
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// The screen (VGA) as it is now, from HMP `screendump`.
    pub fn screen(&self) -> Screen {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(format!("screen-{n}.ppm"));
        let answer = self.hmp().run(&format!("screendump {}", path.display()));
        let data = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("screendump wrote no {}: {e}; {answer}", path.display()));
        Screen::from_ppm(&data).unwrap_or_else(|| panic!("{} is not a PPM", path.display()))
    }

    /// The console output buffer, shared: it outlives the VM (a report
    /// shows its tail after a failure).
    pub fn console(&self) -> Arc<Mutex<Vec<u8>>> {
        self.output.clone()
    }

    /// Everything the console printed so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Seconds since the VM was started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Waits until the console output after byte `from` contains `needle`;
    /// returns the offset just after it. Panics with the console tail.
    pub fn wait_for(&mut self, from: usize, needle: &str, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let text = self.text();
            if let Some(i) = text.get(from..).and_then(|t| t.find(needle)) {
                return from + i + needle.len();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "QEMU exited ({status}) while waiting for {needle:?}; console:\n{}",
                    tail(&text)
                );
            }
            if start.elapsed() > timeout {
                panic!(
                    "no {needle:?} on the console within {timeout:?}; console:\n{}",
                    tail(&text)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `line` and Enter on the serial console.
    pub fn type_line(&mut self, line: &str) {
        // One key at a time, as a person types: firmware consoles drop keys
        // that arrive faster than they poll.
        for b in format!("{line}\r").bytes() {
            self.serial.write_all(&[b]).unwrap();
            std::thread::sleep(Duration::from_millis(60));
        }
    }
}

/// Prints a measured figure on the test's stderr even when the harness
/// captures output (as it does for passing tests), so that `cargo xtask
/// test` shows it.
pub fn figure(text: &str) {
    let _ = writeln!(std::io::stderr(), "figure: {text}");
}

/// A connection to QEMU's human monitor.
#[derive(Debug)]
pub struct Hmp {
    sock: UnixStream,
}

impl Hmp {
    fn connect(path: &Path) -> Self {
        let sock = UnixStream::connect(path).expect("QEMU monitor socket");
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut hmp = Self { sock };
        hmp.until_prompt();
        hmp
    }

    fn until_prompt(&mut self) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"(qemu) ") {
            let n = self.sock.read(&mut buf).expect("reading QEMU's monitor");
            assert!(n > 0, "QEMU's monitor closed");
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Runs one command; returns what the monitor printed (the command's
    /// echo included) once it is ready for the next.
    pub fn run(&mut self, command: &str) -> String {
        self.sock
            .write_all(format!("{command}\n").as_bytes())
            .unwrap();
        self.until_prompt()
    }
}

/// A screen image: RGB pixels, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` RGB triples.
    pub rgb: Vec<u8>,
}

impl Screen {
    /// Parses a binary PPM (`P6`, maxval 255) as QEMU's screendump writes.
    pub fn from_ppm(data: &[u8]) -> Option<Self> {
        // Header: magic, width, height, maxval, separated by whitespace,
        // then exactly one whitespace byte before the pixels.
        let mut fields = Vec::new();
        let mut i = 0;
        while fields.len() < 4 {
            while data.get(i)?.is_ascii_whitespace() {
                i += 1;
            }
            let start = i;
            while !data.get(i)?.is_ascii_whitespace() {
                i += 1;
            }
            fields.push(std::str::from_utf8(&data[start..i]).ok()?);
        }
        let (width, height) = (fields[1].parse().ok()?, fields[2].parse().ok()?);
        if fields[0] != "P6" || fields[3] != "255" {
            return None;
        }
        let rgb = data.get(i + 1..i + 1 + width * height * 3)?.to_vec();
        Some(Self { width, height, rgb })
    }

    /// How many distinct colours it shows (1 for a blank screen).
    pub fn colours(&self) -> usize {
        let mut seen: Vec<&[u8]> = self.rgb.chunks(3).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// How many pixels differ from `other` (all of them when the sizes
    /// differ, as when the console leaves text mode).
    pub fn pixels_changed(&self, other: &Screen) -> usize {
        if (self.width, self.height) != (other.width, other.height) {
            return self.width * self.height;
        }
        self.rgb
            .chunks(3)
            .zip(other.rgb.chunks(3))
            .filter(|(a, b)| a != b)
            .count()
    }
}

/// The last 40 lines of `text`.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a sparse raw disk image of `bytes`.
pub fn raw_disk(path: &Path, bytes: u64) {
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
}

/// Whether nothing was written to a sparse disk image: every data extent
/// of the file (found with `lseek(SEEK_DATA/SEEK_HOLE)`, so that the holes
/// of a many-GiB image cost nothing) reads as zeros. On a file system
/// without hole reporting the whole file is one extent and is read.
pub fn untouched(path: &Path) -> bool {
    use nix::unistd::{Whence, lseek};
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::open(path).unwrap();
    let len = i64::try_from(f.metadata().unwrap().len()).unwrap();
    let fd = f.as_raw_fd();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0i64;
    while pos < len {
        let start = match lseek(fd, pos, Whence::SeekData) {
            Ok(o) => o,
            // No data after `pos`.
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => panic!("SEEK_DATA in {}: {e}", path.display()),
        };
        let end = lseek(fd, start, Whence::SeekHole).unwrap();
        f.seek(std::io::SeekFrom::Start(u64::try_from(start).unwrap()))
            .unwrap();
        let mut left = u64::try_from(end - start).unwrap();
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap();
            f.read_exact(&mut buf[..n]).unwrap();
            if buf[..n].iter().any(|b| *b != 0) {
                return false;
            }
            left -= n as u64;
        }
        pos = end;
    }
    true
}

/// One HTTPS exchange's result.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Raw header block.
    pub headers: String,
    /// Body text.
    pub body: String,
    /// Body bytes, as received (a download).
    pub bytes: Vec<u8>,
    /// SHA-256 fingerprint (`AB:CD:…`) of the server's certificate.
    pub fingerprint: String,
}

impl HttpResponse {
    /// The CSRF token of the page's forms (their hidden `csrf` field).
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let i = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no csrf field in:\n{}", self.body))
            + marker.len();
        self.body[i..i + 64].to_owned()
    }

    /// The `name=value` of the cookie the answer sets.
    pub fn cookie(&self) -> String {
        self.header("set-cookie")
            .expect("a cookie")
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

#[derive(Debug)]
struct RecordCert(Arc<Mutex<Vec<u8>>>, Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for RecordCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        // The test compares the fingerprint with the console's instead of
        // trusting a CA: this is exactly the check the operator makes.
        *self.0.lock().unwrap() = end_entity.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// Sends one HTTP/1.1 request over TLS to `addr` (`ip:port`), from the
/// calling thread's network namespace.
pub fn https(
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let body = form.map(|f| ("application/x-www-form-urlencoded", f.as_bytes()));
    https_body(addr, method, path, cookie, body)
}

/// Multipart form data for an upload: text fields, then one file field.
pub fn multipart(boundary: &str, fields: &[(&str, &str)], file: (&str, &[u8])) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"upload.tar\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            file.0
        )
        .as_bytes(),
    );
    body.extend(file.1);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// As [`https`] with a body of any content type.
pub fn https_body(
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> std::io::Result<HttpResponse> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der = Arc::new(Mutex::new(Vec::new()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordCert(der.clone(), provider)))
        .with_no_client_auth();
    let host = addr.split(':').next().unwrap_or(addr).to_owned();
    let name =
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(std::io::Error::other)?;
    let sock_addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let tcp = std::net::TcpStream::connect_timeout(&sock_addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if let Some((ctype, data)) = body {
        req.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
            data.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some((_, data)) = body {
        bytes.extend_from_slice(data);
    }
    tls.write_all(&bytes)?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rbody) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    use sha2::Digest;
    let fingerprint = sha2::Sha256::digest(&*der.lock().unwrap())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let bytes = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| raw[i + 4..].to_vec())
        .unwrap_or_default();
    Ok(HttpResponse {
        status,
        headers: head.to_owned(),
        body: rbody.to_owned(),
        bytes,
        fingerprint,
    })
}

/// A LAN for two nodes: a namespace with a bridge holding the router and
/// ping node 192.0.2.1/24 (and `extra` addresses, e.g. the red-cable laptop),
/// and the taps `tap0`, `tap1` for the nodes' first ports.
pub fn two_node_lan(extra: &[&str]) -> Netns {
    let lan = Netns::new("lan");
    lan.ip(&["link", "add", "br0", "type", "bridge"]);
    lan.ip(&["link", "set", "br0", "up"]);
    lan.ip(&["addr", "add", "192.0.2.1/24", "dev", "br0"]);
    for a in extra {
        lan.ip(&["addr", "add", a, "dev", "br0"]);
    }
    for tap in ["tap0", "tap1"] {
        lan.ip(&["tuntap", "add", tap, "mode", "tap"]);
        lan.ip(&["link", "set", tap, "master", "br0"]);
        lan.ip(&["link", "set", tap, "up"]);
    }
    lan
}

/// The configuration archive of `cfg` as a rig uploads it: encrypted with
/// `passphrase` (none: plain), a fixed creation time, a light key-derivation cost.
///
/// # Panics
/// When the export fails.
#[must_use]
pub fn rig_archive(cfg: &tandem_config::ApplianceConfig, passphrase: Option<&str>) -> Vec<u8> {
    tandem_config::export(
        cfg,
        &tandem_config::ExportOptions {
            passphrase: passphrase.map(str::to_owned),
            created_unix: 1_767_225_600,
            work_factor: 10,
        },
    )
    .expect("exporting the rig's configuration")
}

/// A new cluster's configuration for the rigs: nodes `alpha` (192.0.2.11)
/// and `beta` (192.0.2.12), VE 101 `web` at 192.0.2.50, and test timings
/// (the manual's 5 s / 60 s would make a failover wait a minute); the VMs
/// have no null-modem cable. Returns it with its initial passwords.
pub fn rig_config(
    name: &str,
) -> (
    tandem_config::ApplianceConfig,
    tandem_config::init::InitialPasswords,
) {
    use tandem_config::init::{InitOptions, new_cluster};
    let (mut cfg, passwords) = new_cluster(&InitOptions {
        cluster_name: name.parse().unwrap(),
        hostnames: ["alpha".parse().unwrap(), "beta".parse().unwrap()],
        ..InitOptions::default()
    })
    .unwrap();
    cfg.heartbeat.keepalive = tandem_config::Millis(500);
    cfg.heartbeat.warntime = tandem_config::Millis(1500);
    cfg.heartbeat.deadtime = tandem_config::Millis(4000);
    cfg.heartbeat.initdead = tandem_config::Millis(8000);
    cfg.heartbeat.serial.enabled = false;
    cfg.ves.ve101 = Some(tandem_config::VeConfig {
        hostname: "web".parse().unwrap(),
        address: tandem_config::Ipv4("192.0.2.50".parse().unwrap()),
        dns_servers: Vec::new(),
        dns_search: Vec::new(),
    });
    cfg.passwords.root_ve101 = Some(tandem_config::secrets::hash_password("ve101-root").unwrap());
    // The rig's LAN, from which the tests reach the consoles (the packet filter lets
    // the web console and SSH be reached from the admin networks only).
    cfg.access.admin_networks = vec!["192.0.2.0/24".parse().unwrap()];
    (cfg, passwords)
}

/// A program standing in for `tandem` as clusterd runs it for the web console's VE 101
/// (`ve create|set|start|passwd`): logs its arguments to `DIR/calls.log`; `ve create`
/// writes the VE file `DIR/ves/ve-101.conf` that the VE list reads; `body` (shell) runs
/// last, e.g. to fail a step.
#[must_use]
pub fn stand_in_tandem(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("tandem.sh");
    let conf = dir.join("ves");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{log}'\n\
             if [ \"$1 $2\" = 've create' ]; then\n\
               mkdir -p '{conf}' && printf 'HOSTNAME=\"%s\"\\nIP_ADDRESS=\"%s\"\\nOSTEMPLATE=\"%s\"\\nONBOOT=\"yes\"\\n' \"$7\" \"$9\" \"$5\" > '{conf}/ve-101.conf'\n\
               echo \"VE 101 created from $5\"\nfi\n{body}\n",
            log = dir.join("calls.log").display(),
            conf = conf.display(),
        ),
    )
    .expect("writing the stand-in for tandem");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
        .expect("making the stand-in runnable");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_screens_compare() {
        let mut a = b"P6\n2 1\n255\n".to_vec();
        a.extend([0, 0, 0, 0, 0, 0]);
        let blank = Screen::from_ppm(&a).unwrap();
        assert_eq!((blank.width, blank.height, blank.colours()), (2, 1, 1));
        let mut b = a.clone();
        let last = b.len() - 1;
        b[last] = 200;
        let text = Screen::from_ppm(&b).unwrap();
        assert_eq!(text.colours(), 2);
        assert_eq!(text.pixels_changed(&blank), 1);
        assert!(Screen::from_ppm(&a[..a.len() - 1]).is_none(), "short");
        assert!(Screen::from_ppm(b"P5\n2 1\n255\n\0\0").is_none());
    }

    #[test]
    fn untouched_looks_at_every_data_extent_of_a_sparse_file() {
        let dir = Scratch::new("sparse-");
        let p = dir.0.join("disk.img");
        raw_disk(&p, 64 << 30);
        assert!(untouched(&p));
        let mut f = std::fs::File::options().write(true).open(&p).unwrap();
        // Zeros written are data extents, but still nothing.
        f.seek(std::io::SeekFrom::Start(3 << 30)).unwrap();
        f.write_all(&[0u8; 8192]).unwrap();
        f.sync_all().unwrap();
        assert!(untouched(&p));
        // One byte far beyond the first MiB.
        f.seek(std::io::SeekFrom::Start((40 << 30) + 12345))
            .unwrap();
        f.write_all(&[1]).unwrap();
        f.sync_all().unwrap();
        assert!(!untouched(&p));
    }
}
