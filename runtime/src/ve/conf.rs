//! Per-VE configuration files in the vz format (`ve-<id>.conf`, `KEY="VALUE"` lines),
//! as the manual's samples (e.g. "tkunlimited") are written.
//!
//! [`VeFile::parse`] reads the file and lists every problem with its line; the result
//! holds the limits in units ([`Limit`] of pages, KiB, percent) that [`super::oci`]
//! translates to cgroup v2. Parameters of the old kernel's user beancounters that have
//! no cgroup v2 counterpart (socket buffers, dentry cache, …) are accepted so that the
//! manual's samples load, and are listed in [`VeFile::not_enforced`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// The value vz used for "no limit" (2^63 - 1).
pub const UNLIMITED: u64 = i64::MAX as u64;

/// Bytes of one page in the vz page-counted parameters.
pub const PAGE: u64 = 4096;

/// A barrier/limit pair. `None` is "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    /// Soft limit (barrier, guarantee).
    pub barrier: Option<u64>,
    /// Hard limit.
    pub limit: Option<u64>,
}

/// A problem in a VE file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeFileError {
    /// 1-based line, 0 for the file as a whole.
    pub line: usize,
    /// The parameter, when known.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for VeFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, &self.key) {
            (0, Some(k)) => write!(f, "{k}: {}", self.message),
            (0, None) => f.write_str(&self.message),
            (l, Some(k)) => write!(f, "line {l}: {k}: {}", self.message),
            (l, None) => write!(f, "line {l}: {}", self.message),
        }
    }
}

/// A parsed `ve-<id>.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VeFile {
    /// Processes (`NUMPROC`, hard limit used).
    pub numproc: Limit,
    /// Resident memory in pages (`PHYSPAGES`).
    pub physpages: Limit,
    /// Swap in pages (`SWAPPAGES`).
    pub swappages: Limit,
    /// Private virtual memory in pages (`PRIVVMPAGES`).
    pub privvmpages: Limit,
    /// Guaranteed memory in pages (`VMGUARPAGES` barrier).
    pub vmguarpages: Limit,
    /// Memory protected from the OOM killer in pages (`OOMGUARPAGES` barrier).
    pub oomguarpages: Limit,
    /// Open files (`NUMFILE`).
    pub numfile: Limit,
    /// CPU weight, 8..=500000 (`CPUUNITS`, vz default 1000).
    pub cpuunits: Option<u64>,
    /// CPU limit in percent of one CPU, 0 = none (`CPULIMIT`).
    pub cpulimit: Option<u64>,
    /// CPUs the VE may use (`CPUS`).
    pub cpus: Option<u64>,
    /// Disk space in KiB (`DISKSPACE`).
    pub diskspace: Limit,
    /// Inodes (`DISKINODES`).
    pub diskinodes: Limit,
    /// Started when the node becomes active (`ONBOOT`).
    pub onboot: bool,
    /// Host name (`HOSTNAME`).
    pub hostname: Option<String>,
    /// Addresses (`IP_ADDRESS`).
    pub ip_addresses: Vec<Ipv4Addr>,
    /// Name servers (`NAMESERVER`).
    pub nameservers: Vec<Ipv4Addr>,
    /// DNS search domains (`SEARCHDOMAIN`).
    pub searchdomains: Vec<String>,
    /// OS template (`OSTEMPLATE`).
    pub ostemplate: Option<String>,
    /// Capabilities granted beyond the default set (`CAPABILITY="net_raw:on"`), as
    /// `CAP_` names, in [`GRANTABLE`] order.
    pub capabilities: Vec<String>,
    /// The health check clusterd runs while the VE runs (`HEALTHCHECK="tcp:PORT"`).
    pub health_check: Option<HealthCheck>,
    /// Seconds between health checks (`HEALTHCHECK_INTERVAL`, default
    /// [`DEFAULT_CHECK_INTERVAL`]).
    pub health_check_interval: Option<u64>,
    /// Parameters accepted but without a cgroup v2 counterpart, in file order.
    pub not_enforced: Vec<String>,
    /// Every `KEY="VALUE"` of the file, as written (for `tandem ve set` to rewrite).
    pub raw: BTreeMap<String, String>,
}

/// Capabilities a VE file may grant beyond the default set (`CAPABILITY`): the ones
/// Docker's default set has and a VE lacks unless it asks.
pub const GRANTABLE: &[&str] = &["CAP_NET_RAW", "CAP_MKNOD", "CAP_SETFCAP"];

/// Seconds between health checks when `HEALTHCHECK_INTERVAL` is not set.
pub const DEFAULT_CHECK_INTERVAL: u64 = 10;

/// A health check of a running VE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// A TCP connection to the VE's first address on this port is accepted.
    Tcp(u16),
    /// An HTTP `GET` of `path` on this port answers with a status below 400.
    Http {
        /// The port.
        port: u16,
        /// The path asked for (starts with `/`).
        path: String,
    },
}

impl std::fmt::Display for HealthCheck {
    /// As the VE file writes it: `tcp:80`, `http:80/health`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthCheck::Tcp(p) => write!(f, "tcp:{p}"),
            HealthCheck::Http { port, path } => write!(f, "http:{port}{path}"),
        }
    }
}

impl VeFile {
    /// Seconds between health checks.
    #[must_use]
    pub fn check_interval(&self) -> u64 {
        self.health_check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL)
    }
}

/// Parameters of the old user beancounters that load but are not enforced.
const UBC_ONLY: &[&str] = &[
    "KMEMSIZE",
    "LOCKEDPAGES",
    "SHMPAGES",
    "NUMTCPSOCK",
    "NUMFLOCK",
    "NUMPTY",
    "NUMSIGINFO",
    "TCPSNDBUF",
    "TCPRCVBUF",
    "OTHERSOCKBUF",
    "DGRAMRCVBUF",
    "NUMOTHERSOCK",
    "DCACHESIZE",
    "NUMIPTENT",
    "AVNUMPROC",
    "QUOTATIME",
    "QUOTAUGIDLIMIT",
];

/// Descriptive parameters that carry no limit.
const INFORMATIONAL: &[&str] = &[
    "VERSION",
    "CLASSID",
    "OFFLINE_MANAGEMENT",
    "ORIGIN_SAMPLE",
    "DESCRIPTION",
    "NAME",
    "VE_ROOT",
    "VE_PRIVATE",
];

impl VeFile {
    /// Parses a VE file, returning every problem found.
    ///
    /// # Errors
    /// Each malformed line, unknown parameter or bad value, with its line number.
    pub fn parse(text: &str) -> Result<VeFile, Vec<VeFileError>> {
        let mut ve = VeFile::default();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |key: Option<&str>, message: String| VeFileError {
                line: line_no,
                key: key.map(str::to_owned),
                message,
            };
            let Some((key, value)) = line.split_once('=') else {
                errors.push(err(None, "expected KEY=\"VALUE\"".into()));
                continue;
            };
            let key = key.trim();
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                errors.push(err(
                    None,
                    format!("{key:?} is not a parameter name (capital letters, digits, _)"),
                ));
                continue;
            }
            let value = match unquote(value.trim()) {
                Ok(v) => v,
                Err(m) => {
                    errors.push(err(Some(key), m));
                    continue;
                }
            };
            if ve.raw.insert(key.to_owned(), value.to_owned()).is_some() {
                errors.push(err(Some(key), "is set twice".into()));
                continue;
            }
            if let Err(m) = ve.apply(key, value) {
                errors.push(err(Some(key), m));
            }
        }
        if errors.is_empty() {
            Ok(ve)
        } else {
            Err(errors)
        }
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "NUMPROC" => self.numproc = limit(value, 1)?,
            "PHYSPAGES" => self.physpages = limit(value, PAGE)?,
            "SWAPPAGES" => self.swappages = limit(value, PAGE)?,
            "PRIVVMPAGES" => self.privvmpages = limit(value, PAGE)?,
            "VMGUARPAGES" => self.vmguarpages = limit(value, PAGE)?,
            "OOMGUARPAGES" => self.oomguarpages = limit(value, PAGE)?,
            "NUMFILE" => self.numfile = limit(value, 1)?,
            "DISKSPACE" => self.diskspace = limit(value, 1024)?,
            "DISKINODES" => self.diskinodes = limit(value, 1)?,
            "CPUUNITS" => {
                let n = number(value)?;
                if !(8..=500_000).contains(&n) {
                    return Err(format!("{n} is out of range (expected 8 to 500000)"));
                }
                self.cpuunits = Some(n);
            }
            "CPULIMIT" => {
                let n = number(value.trim_end_matches('%'))?;
                if n > 100 * 4096 {
                    return Err(format!("{n} is out of range (percent of one CPU)"));
                }
                self.cpulimit = Some(n);
            }
            "CPUS" => {
                let n = number(value)?;
                if n == 0 || n > 4096 {
                    return Err(format!("{n} is out of range (expected 1 to 4096)"));
                }
                self.cpus = Some(n);
            }
            "ONBOOT" => {
                self.onboot = match value {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(format!("{value:?} is not yes or no")),
                }
            }
            "HOSTNAME" => {
                let h: tandem_config::Hostname = value.parse()?;
                self.hostname = Some(h.as_str().to_owned());
            }
            "IP_ADDRESS" => self.ip_addresses = addresses(value)?,
            "NAMESERVER" => self.nameservers = addresses(value)?,
            "SEARCHDOMAIN" => {
                self.searchdomains = value.split_whitespace().map(str::to_owned).collect();
            }
            "OSTEMPLATE" => {
                let name = value.trim_start_matches('.');
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    || name.contains("..")
                {
                    return Err(format!("{value:?} is not a template name"));
                }
                self.ostemplate = Some(name.to_owned());
            }
            "CAPABILITY" => self.capabilities = capabilities(value)?,
            "HEALTHCHECK" => self.health_check = Some(health_check(value)?),
            "HEALTHCHECK_INTERVAL" => {
                let n = number(value.trim_end_matches('s'))?;
                if !(1..=3600).contains(&n) {
                    return Err(format!("{n} is out of range (expected 1 to 3600 seconds)"));
                }
                self.health_check_interval = Some(n);
            }
            k if UBC_ONLY.contains(&k) => {
                // Checked for form so that typos in values still show.
                limit(value, 1)?;
                self.not_enforced.push(k.to_owned());
            }
            k if INFORMATIONAL.contains(&k) => {}
            _ => return Err("unknown parameter".into()),
        }
        Ok(())
    }
}

/// `"value"` or `value` → value.
fn unquote(v: &str) -> Result<&str, String> {
    match v.strip_prefix('"') {
        Some(rest) => {
            let inner = rest
                .strip_suffix('"')
                .ok_or_else(|| format!("value {v} starts with a quote but has no closing quote"))?;
            if inner.contains('"') {
                return Err(format!("value {v} has a quote inside"));
            }
            Ok(inner)
        }
        None if v.contains(['"', ' ']) => Err(format!(
            "value {v} must be one word or enclosed in double quotes"
        )),
        None => Ok(v),
    }
}

fn number(v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("{v:?} is not a whole number"))
}

/// `N`, `BARRIER:LIMIT`, each a count in `unit`-sized units or with a K/M/G/T byte
/// suffix; 2^63-1 or `unlimited` means no limit.
fn limit(v: &str, unit: u64) -> Result<Limit, String> {
    let one = |s: &str| -> Result<Option<u64>, String> {
        if s == "unlimited" {
            return Ok(None);
        }
        let (digits, mult) = match s.as_bytes().last() {
            Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
            Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
            Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
            Some(b'T' | b't') => (&s[..s.len() - 1], 1 << 40),
            _ => (s, 0),
        };
        let n: u64 = digits.parse().map_err(|_| {
            format!("{v:?} is not a limit (expected N or BARRIER:LIMIT, e.g. \"256M:512M\")")
        })?;
        if mult == 0 {
            return match n {
                UNLIMITED => Ok(None),
                n if n > UNLIMITED => Err(format!(
                    "{n} is above {UNLIMITED}, which already means unlimited"
                )),
                n => Ok(Some(n)),
            };
        }
        let bytes = n
            .checked_mul(mult)
            .ok_or_else(|| format!("{v:?} is too large"))?;
        Ok(Some(bytes.div_ceil(unit)))
    };
    match v.split_once(':') {
        Some((b, l)) => {
            let (barrier, limit) = (one(b)?, one(l)?);
            if let (Some(b), Some(l)) = (barrier, limit)
                && b > l
            {
                return Err(format!("barrier {b} is above limit {l}"));
            }
            Ok(Limit { barrier, limit })
        }
        None => {
            let n = one(v)?;
            Ok(Limit {
                barrier: n,
                limit: n,
            })
        }
    }
}

/// vz's `name:on|off` list, e.g. `"net_raw:on mknod:on"`; only [`GRANTABLE`] names.
fn capabilities(v: &str) -> Result<Vec<String>, String> {
    let grantable = || {
        GRANTABLE
            .iter()
            .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut on = Vec::new();
    for item in v.split_whitespace() {
        let (name, state) = item
            .split_once(':')
            .ok_or_else(|| format!("{item:?} is not NAME:on or NAME:off (e.g. \"net_raw:on\")"))?;
        let cap = format!(
            "CAP_{}",
            name.trim_start_matches("CAP_")
                .trim_start_matches("cap_")
                .to_ascii_uppercase()
        );
        if !GRANTABLE.contains(&cap.as_str()) {
            return Err(format!(
                "{name:?} cannot be granted to a VE (grantable: {})",
                grantable()
            ));
        }
        match state {
            "on" => on.push(cap),
            "off" => on.retain(|c| *c != cap),
            _ => return Err(format!("{item:?}: {state:?} is not on or off")),
        }
    }
    let mut ordered: Vec<String> = GRANTABLE
        .iter()
        .filter(|g| on.iter().any(|c| c == *g))
        .map(|g| (*g).to_owned())
        .collect();
    ordered.dedup();
    Ok(ordered)
}

/// `tcp:PORT`, or `http:PORT` / `http:PORT/PATH`.
fn health_check(v: &str) -> Result<HealthCheck, String> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{p:?} is not a TCP port (1 to 65535)")),
    };
    if let Some(p) = v.strip_prefix("tcp:") {
        return port(p).map(HealthCheck::Tcp);
    }
    if let Some(rest) = v.strip_prefix("http:") {
        let (p, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let port = port(p)?;
        if path.len() > 200 || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{path:?} is not an HTTP path (printable characters without spaces, at most 200)"
            ));
        }
        return Ok(HealthCheck::Http {
            port,
            path: path.to_owned(),
        });
    }
    Err(format!(
        "{v:?} is not a health check (expected tcp:PORT or http:PORT/PATH, e.g. \"tcp:80\" or \"http:80/health\")"
    ))
}

fn addresses(v: &str) -> Result<Vec<Ipv4Addr>, String> {
    v.split_whitespace()
        .map(|a| {
            a.parse()
                .map_err(|_| format!("{a:?} is not an IPv4 address"))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The manual's "tkunlimited" sample as printed, including its unclosed quote.
    pub(crate) const TKUNLIMITED: &str = include_str!("testdata/ve-vps.tkunlimited.conf-sample");

    #[test]
    fn the_manuals_sample_loads_once_its_typo_is_mended() {
        let errs = VeFile::parse(TKUNLIMITED).expect_err("the printed sample has a typo");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].to_string(),
            "line 40: CPUUNITS: value \"500000 starts with a quote but has no closing quote"
        );
        let mended = TKUNLIMITED.replace("CPUUNITS=\"500000\n", "CPUUNITS=\"500000\"\n");
        let ve = VeFile::parse(&mended).expect("mended sample loads");
        assert_eq!(ve.numproc.limit, Some(32567));
        assert_eq!(
            ve.physpages,
            Limit {
                barrier: Some(0),
                limit: None
            }
        );
        assert_eq!(ve.vmguarpages.barrier, Some(135_168));
        assert_eq!(ve.cpuunits, Some(500_000));
        assert_eq!(ve.cpulimit, Some(0));
        assert_eq!(ve.diskspace.limit, Some(4_294_967_295));
        assert!(ve.onboot);
        assert_eq!(ve.ostemplate.as_deref(), Some("centos-4-x86_64"));
        assert!(ve.not_enforced.contains(&"KMEMSIZE".to_owned()));
    }

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let text = "NUMPROC=\"abc\"\nFOO=\"1\"\nONBOOT=\"maybe\"\nIP_ADDRESS=\"10.0.0.300\"\nPHYSPAGES=\"512:256\"\nnot a line\nHOSTNAME=\"ok\"\nHOSTNAME=\"again\"\n";
        let errs = VeFile::parse(text).expect_err("refused");
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "line 1: NUMPROC: \"abc\" is not a limit (expected N or BARRIER:LIMIT, e.g. \"256M:512M\")",
                "line 2: FOO: unknown parameter",
                "line 3: ONBOOT: \"maybe\" is not yes or no",
                "line 4: IP_ADDRESS: \"10.0.0.300\" is not an IPv4 address",
                "line 5: PHYSPAGES: barrier 512 is above limit 256",
                "line 6: expected KEY=\"VALUE\"",
                "line 8: HOSTNAME: is set twice",
            ]
        );
    }

    #[test]
    fn byte_suffixes_become_pages() {
        let ve = VeFile::parse("PHYSPAGES=\"0:512M\"\nSWAPPAGES=\"1G\"\nNUMPROC=\"unlimited\"\n")
            .expect("parses");
        assert_eq!(ve.physpages.limit, Some(131_072));
        assert_eq!(ve.swappages.limit, Some(262_144));
        assert_eq!(ve.numproc.limit, None);
    }

    #[test]
    fn capabilities_and_health_checks_are_checked() {
        let ve = VeFile::parse(
            "CAPABILITY=\"mknod:on net_raw:on setfcap:on setfcap:off\"\nHEALTHCHECK=\"tcp:8080\"\nHEALTHCHECK_INTERVAL=\"5\"\n",
        )
        .expect("parses");
        assert_eq!(ve.capabilities, ["CAP_NET_RAW", "CAP_MKNOD"]);
        assert_eq!(ve.health_check, Some(HealthCheck::Tcp(8080)));
        assert_eq!(ve.check_interval(), 5);
        assert_eq!(VeFile::default().check_interval(), DEFAULT_CHECK_INTERVAL);
        for (text, want) in [
            (
                "http:80",
                HealthCheck::Http {
                    port: 80,
                    path: "/".into(),
                },
            ),
            (
                "http:8080/health?full=1",
                HealthCheck::Http {
                    port: 8080,
                    path: "/health?full=1".into(),
                },
            ),
        ] {
            let ve = VeFile::parse(&format!("HEALTHCHECK=\"{text}\"\n")).expect("parses");
            assert_eq!(ve.health_check.as_ref(), Some(&want));
            let shown = want.to_string();
            assert_eq!(shown, if text == "http:80" { "http:80/" } else { text });
        }
        let text = "CAPABILITY=\"sys_admin:on\"\nHEALTHCHECK=\"udp:80\"\nHEALTHCHECK_INTERVAL=\"0\"\nCAPABILITY2=\"x\"\n";
        let shown: Vec<String> = VeFile::parse(text)
            .expect_err("refused")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "line 1: CAPABILITY: \"sys_admin\" cannot be granted to a VE (grantable: net_raw, mknod, setfcap)",
                "line 2: HEALTHCHECK: \"udp:80\" is not a health check (expected tcp:PORT or http:PORT/PATH, e.g. \"tcp:80\" or \"http:80/health\")",
                "line 3: HEALTHCHECK_INTERVAL: 0 is out of range (expected 1 to 3600 seconds)",
                "line 4: CAPABILITY2: unknown parameter",
            ]
        );
        for bad in [
            "HEALTHCHECK=\"tcp:0\"",
            "HEALTHCHECK=\"tcp:70000\"",
            "HEALTHCHECK=\"http:0/\"",
            "HEALTHCHECK=\"http:80/a b\"",
            "HEALTHCHECK=\"http:x/\"",
            "CAPABILITY=\"net_raw\"",
            "CAPABILITY=\"net_raw:yes\"",
        ] {
            assert!(VeFile::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn hostile_values_are_refused() {
        for bad in [
            "OSTEMPLATE=\"../../etc\"",
            "HOSTNAME=\"a b\"",
            "HOSTNAME=\"-x\"",
            "CPUUNITS=\"0\"",
            "CPUS=\"0\"",
            "NUMPROC=\"99999999999999999999999\"",
            "PHYSPAGES=\"18446744073709551615T\"",
            "IP_ADDRESS=1.2.3.4 5.6.7.8",
            "lower=\"x\"",
        ] {
            assert!(VeFile::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
