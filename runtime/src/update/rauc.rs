//! The update engine, RAUC, driven through its command line the way an operator
//! would: `rauc info` (checks the bundle's signature against the keyring baked into
//! the system, and reads its manifest), `rauc install` (writes the inactive slot and
//! makes it the one GRUB tries next), `rauc status` (slots, what booted) and
//! `rauc status mark-good|mark-bad|mark-active`.
//!
//! RAUC itself runs as a service on the system bus (init starts `dbus-daemon` and
//! `rauc service`); these commands are its clients.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

/// Where the node's RAUC is.
#[derive(Debug, Clone)]
pub struct Rauc {
    /// The `rauc` program.
    pub program: PathBuf,
    /// A system configuration other than `/etc/rauc/system.conf` (tests).
    pub conf: Option<PathBuf>,
    /// A keyring other than the system configuration's (tests).
    pub keyring: Option<PathBuf>,
    /// A system bus other than the system's, where the RAUC service is (tests).
    pub bus: Option<String>,
}

impl Default for Rauc {
    fn default() -> Self {
        Rauc {
            program: PathBuf::from("/usr/bin/rauc"),
            conf: None,
            keyring: None,
            bus: None,
        }
    }
}

/// What went wrong talking to RAUC.
#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    /// The program could not be started.
    #[error("starting {program}: {source}")]
    Start {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// RAUC said no; its own words.
    #[error("{0}")]
    Refused(String),
    /// RAUC answered something this node cannot read.
    #[error("reading rauc's answer to `{what}`: {why}")]
    Answer {
        /// The command.
        what: &'static str,
        /// Why.
        why: String,
    },
}

/// A bundle's manifest as `rauc info` reads it (after checking its signature).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BundleInfo {
    /// The systems it is for.
    pub compatible: String,
    /// Its version.
    pub version: Option<String>,
    /// The vendor's description (the changelog's first lines).
    #[serde(default)]
    pub description: Option<String>,
    /// The build it came from.
    #[serde(default)]
    pub build: Option<String>,
}

/// `rauc status` in short.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// What the system is (must equal every bundle's `compatible`).
    pub compatible: String,
    /// The boot name of the slot that booted (`A` or `B`).
    pub booted: String,
    /// The slot the boot loader starts next (`rootfs.0`/`rootfs.1`).
    pub primary: Option<String>,
    /// The system slots.
    pub slots: Vec<Slot>,
}

/// One system slot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slot {
    /// RAUC's name (`rootfs.0`).
    pub name: String,
    /// The boot loader's name (`A`).
    pub bootname: String,
    /// Its block device.
    pub device: String,
    /// `booted`, `inactive`, `active`.
    pub state: String,
    /// `good` or `bad` as the boot loader has it.
    pub boot_status: String,
    /// The version of the bundle last installed into it, if RAUC installed one.
    pub version: Option<String>,
    /// When (RAUC's time stamp).
    pub installed: Option<String>,
}

impl Status {
    /// The slot that booted.
    #[must_use]
    pub fn booted_slot(&self) -> Option<&Slot> {
        self.slots.iter().find(|s| s.bootname == self.booted)
    }

    /// The other slot.
    #[must_use]
    pub fn other_slot(&self) -> Option<&Slot> {
        self.slots.iter().find(|s| s.bootname != self.booted)
    }
}

/// Install progress as RAUC prints it: per cent and step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// 0–100.
    pub percent: u8,
    /// The step (`Checking bundle`, `Copying image to rootfs.1`, ...).
    pub step: String,
}

impl Rauc {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        if let Some(conf) = &self.conf {
            c.arg(format!("--conf={}", conf.display()));
        }
        if let Some(k) = &self.keyring {
            c.arg(format!("--keyring={}", k.display()));
        }
        if let Some(bus) = &self.bus {
            c.env("DBUS_SYSTEM_BUS_ADDRESS", bus);
        }
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, what: &'static str, args: &[&str]) -> Result<String, RaucError> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|source| RaucError::Start {
                program: self.program.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(RaucError::Refused(refusal(
                what,
                &String::from_utf8_lossy(&out.stderr),
                &String::from_utf8_lossy(&out.stdout),
            )));
        }
        String::from_utf8(out.stdout).map_err(|_| RaucError::Answer {
            what,
            why: "not UTF-8".into(),
        })
    }

    /// Checks `bundle`'s signature and reads its manifest. Nothing is written.
    ///
    /// # Errors
    /// RAUC refused the bundle (its words: bad signature, unknown signer, not a
    /// bundle, truncated), or could not be run.
    pub fn info(&self, bundle: &Path) -> Result<BundleInfo, RaucError> {
        let path = bundle.to_string_lossy();
        let out = self.run("rauc info", &["info", "--output-format=json", &path])?;
        parse_info(&out)
    }

    /// The slots and what booted.
    ///
    /// # Errors
    /// RAUC could not tell (its service is not running, the configuration is wrong).
    pub fn status(&self) -> Result<Status, RaucError> {
        let out = self.run(
            "rauc status",
            &["status", "--detailed", "--output-format=json"],
        )?;
        parse_status(&out)
    }

    /// `rauc status mark-good|mark-bad|mark-active booted|other`.
    ///
    /// # Errors
    /// RAUC refused (its words) or could not be run.
    pub fn mark(&self, how: Mark, which: &str) -> Result<(), RaucError> {
        let verb = match how {
            Mark::Good => "mark-good",
            Mark::Bad => "mark-bad",
            Mark::Active => "mark-active",
        };
        self.run("rauc status mark", &["status", verb, which])
            .map(|_| ())
    }

    /// Installs `bundle` into the inactive slot, calling `progress` on each step RAUC
    /// reports.
    ///
    /// # Errors
    /// RAUC refused or failed (its last error, e.g. a signature or compatible
    /// mismatch, a slot too small, a bundle whose data does not match its hash tree).
    pub fn install(
        &self,
        bundle: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), RaucError> {
        let mut child = self
            .command()
            .arg("install")
            .arg(bundle)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RaucError::Start {
                program: self.program.display().to_string(),
                source,
            })?;
        let stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut e) = stderr {
                let _ = std::io::Read::read_to_string(&mut e, &mut s);
            }
            s
        });
        let mut last_error = None;
        let mut lines = Vec::new();
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(p) = progress_line(&line) {
                    progress(p);
                } else if let Some(e) = line.trim().strip_prefix("LastError:") {
                    last_error = Some(e.trim().to_owned());
                } else {
                    lines.push(line);
                }
            }
        }
        let status = child.wait().map_err(|source| RaucError::Start {
            program: self.program.display().to_string(),
            source,
        })?;
        let stderr = err_reader.join().unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(RaucError::Refused(last_error.unwrap_or_else(|| {
            refusal("rauc install", &stderr, &lines.join("\n"))
        })))
    }
}

/// How [`Rauc::mark`] marks a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Committed: the boot loader keeps starting it.
    Good,
    /// Not to be started.
    Bad,
    /// The one the boot loader starts next.
    Active,
}

/// RAUC's own words for a refusal: its last error line, without its log prefixes.
fn refusal(what: &str, stderr: &str, stdout: &str) -> String {
    let words: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("rauc-Message:") && !l.starts_with('('))
        .collect();
    match words.last() {
        Some(l) => (*l).to_owned(),
        None => format!("{what} failed without saying why"),
    }
}

/// `" 40% Checking bundle done."` → 40, "Checking bundle done.".
fn progress_line(line: &str) -> Option<Progress> {
    let (pct, step) = line.trim_start().split_once("% ")?;
    let percent = pct.parse::<u8>().ok().filter(|p| *p <= 100)?;
    Some(Progress {
        percent,
        step: step.trim().to_owned(),
    })
}

/// `rauc info --output-format=json`.
///
/// # Errors
/// Not the JSON RAUC writes.
pub fn parse_info(text: &str) -> Result<BundleInfo, RaucError> {
    serde_json::from_str(text).map_err(|e| RaucError::Answer {
        what: "rauc info",
        why: e.to_string(),
    })
}

#[derive(Deserialize)]
struct RawStatus {
    compatible: String,
    booted: Option<String>,
    boot_primary: Option<String>,
    slots: Vec<std::collections::BTreeMap<String, RawSlot>>,
}

#[derive(Deserialize)]
struct RawSlot {
    class: String,
    device: String,
    bootname: Option<String>,
    state: String,
    boot_status: Option<String>,
    slot_status: Option<RawSlotStatus>,
}

#[derive(Deserialize)]
struct RawSlotStatus {
    bundle: Option<RawBundle>,
    installed: Option<RawInstalled>,
}

#[derive(Deserialize)]
struct RawBundle {
    version: Option<String>,
}

#[derive(Deserialize)]
struct RawInstalled {
    timestamp: Option<String>,
}

/// `rauc status --detailed --output-format=json`; only the boot slots (class
/// `rootfs`).
///
/// # Errors
/// Not the JSON RAUC writes, or no booted slot named.
pub fn parse_status(text: &str) -> Result<Status, RaucError> {
    let bad = |why: String| RaucError::Answer {
        what: "rauc status",
        why,
    };
    let raw: RawStatus = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let booted = raw
        .booted
        .ok_or_else(|| bad("it names no booted slot".into()))?;
    let mut slots: Vec<Slot> = raw
        .slots
        .into_iter()
        .flat_map(std::collections::BTreeMap::into_iter)
        .filter(|(_, s)| s.class == "rootfs")
        .map(|(name, s)| {
            let st = s.slot_status;
            Slot {
                name,
                bootname: s.bootname.unwrap_or_default(),
                device: s.device,
                state: s.state,
                boot_status: s.boot_status.unwrap_or_default(),
                version: st
                    .as_ref()
                    .and_then(|x| x.bundle.as_ref())
                    .and_then(|b| b.version.clone()),
                installed: st.and_then(|x| x.installed).and_then(|i| i.timestamp),
            }
        })
        .collect();
    slots.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Status {
        compatible: raw.compatible,
        booted,
        primary: raw.boot_primary,
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rauc status --detailed --output-format=json` of RAUC 1.8 after the slot B was
    /// written (grub back-end).
    const STATUS: &str = r#"{"compatible":"tandem-sr2500","variant":"","booted":"A","boot_primary":"rootfs.1","slots":[{"rootfs.1":{"class":"rootfs","device":"/dev/sda4","type":"raw","bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"good","slot_status":{"bundle":{"compatible":"tandem-sr2500","version":"0.2.0+test","description":"test","build":null,"hash":"ab"},"checksum":{"sha256":"49","size":3145728},"installed":{"timestamp":"2026-12-07T02:50:00Z","count":1},"activated":{"timestamp":"2026-12-07T02:50:01Z","count":1},"status":"ok"}}},{"rootfs.0":{"class":"rootfs","device":"/dev/sda3","type":"raw","bootname":"A","state":"booted","parent":null,"mountpoint":null,"boot_status":"good","slot_status":{"bundle":{"compatible":null}}}}]}"#;

    #[test]
    fn status_names_the_slots_and_the_installed_version() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.booted, "A");
        assert_eq!(s.primary.as_deref(), Some("rootfs.1"));
        assert_eq!(s.booted_slot().unwrap().device, "/dev/sda3");
        let other = s.other_slot().unwrap();
        assert_eq!(other.bootname, "B");
        assert_eq!(other.version.as_deref(), Some("0.2.0+test"));
        assert_eq!(other.installed.as_deref(), Some("2026-12-07T02:50:00Z"));
        assert_eq!(s.booted_slot().unwrap().version, None);
    }

    #[test]
    fn status_without_a_booted_slot_is_refused() {
        let t = STATUS.replace(r#""booted":"A""#, r#""booted":null"#);
        assert!(
            parse_status(&t)
                .unwrap_err()
                .to_string()
                .contains("no booted slot")
        );
        assert!(parse_status("{").is_err());
    }

    #[test]
    fn progress_lines_are_read() {
        assert_eq!(
            progress_line(" 40% Checking bundle done."),
            Some(Progress {
                percent: 40,
                step: "Checking bundle done.".into()
            })
        );
        assert_eq!(progress_line("installing"), None);
        assert_eq!(progress_line("400% x"), None);
    }

    #[test]
    fn the_refusal_is_raucs_last_line_without_log_prefixes() {
        let stderr = "rauc-Message: 02:49:10.396: Reading bundle: /tmp/x\nFailed to verify bundle signature: signature verification failed: certificate verify error\n";
        assert_eq!(
            refusal("rauc info", stderr, ""),
            "Failed to verify bundle signature: signature verification failed: certificate verify error"
        );
        assert_eq!(
            refusal("rauc info", "", ""),
            "rauc info failed without saying why"
        );
    }
}
