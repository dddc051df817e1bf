//! chrony, the NTP client of the node: its configuration file from the cluster's time
//! servers, and what `chronyc -c tracking` says (offset, synchronised or not).
//!
//! The parser takes outside input (chronyc's output) and never panics on it.

use std::fmt::Write as _;
use std::path::Path;

/// Why a chrony configuration was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChronyConfError {
    /// No server to ask.
    #[error("no time server given")]
    NoServers,
    /// A name chrony's configuration cannot carry safely.
    #[error("time server {0:?} is not a host name or address")]
    BadServer(String),
    /// A path with characters chrony's configuration cannot carry.
    #[error("run directory {0:?} is not a plain path")]
    BadPath(String),
}

/// The files chronyd keeps: drift file, pid file, command socket.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '/'))
}

/// chronyd's configuration: each of `servers` (names or addresses) with `iburst` (a
/// first synchronisation within seconds), the clock stepped when it is more than a
/// second off in the first three updates and slewed after, the hardware clock kept in
/// step by the kernel, and its files in `state_dir` (drift) and `run_dir` (pid file,
/// command socket; no UDP command port). chronyd uses the command socket only when
/// `run_dir` is closed to others (mode 0700 or 0750).
///
/// # Errors
/// No servers, or a server or directory that is not a plain name or path.
pub fn chrony_conf(
    servers: &[&str],
    state_dir: &Path,
    run_dir: &Path,
) -> Result<String, ChronyConfError> {
    if servers.is_empty() {
        return Err(ChronyConfError::NoServers);
    }
    let dir = |p: &Path| {
        let s = p.to_string_lossy().into_owned();
        if plain(&s) {
            Ok(s)
        } else {
            Err(ChronyConfError::BadPath(s))
        }
    };
    let (state, run) = (dir(state_dir)?, dir(run_dir)?);
    let mut out = String::from("# Written by tandem from the configuration's time servers.\n");
    for s in servers {
        if !plain(s) || s.contains('/') || s.starts_with('-') {
            return Err(ChronyConfError::BadServer((*s).to_owned()));
        }
        let _ = writeln!(out, "server {s} iburst");
    }
    let _ = write!(
        out,
        "makestep 1.0 3\nrtcsync\ndriftfile {state}/chrony.drift\npidfile {run}/chronyd.pid\ncmdport 0\nbindcmdaddress {run}/chronyd.sock\n"
    );
    Ok(out)
}

/// What `chronyc -c tracking` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracking {
    /// The source's reference ID (hex, as chrony prints it).
    pub reference_id: String,
    /// The source's name or address.
    pub reference: String,
    /// NTP stratum of this node.
    pub stratum: u8,
    /// How far the system clock is ahead of NTP time, in seconds (negative: behind).
    pub offset_secs: f64,
    /// Root dispersion plus half the root delay: the bound of the clock's error.
    pub error_bound_secs: f64,
    /// chrony's leap status: `Normal`, `Insert second`, `Delete second` or
    /// `Not synchronised`.
    pub leap_status: String,
}

impl Tracking {
    /// Whether the clock is synchronised to a time source.
    #[must_use]
    pub fn synchronised(&self) -> bool {
        self.leap_status != "Not synchronised" && self.stratum > 0 && self.stratum < 16
    }
}

/// Why chronyc's output was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackingError {
    /// Not the 14 comma-separated fields of `chronyc -c tracking`.
    #[error("chronyc tracking: expected 14 comma-separated fields, got {0}")]
    Fields(usize),
    /// A field that should be a number is not.
    #[error("chronyc tracking: field {field} is {value:?}, not a number")]
    Number {
        /// Which field.
        field: &'static str,
        /// What it was.
        value: String,
    },
}

fn number<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, TrackingError> {
    value.trim().parse().map_err(|_| TrackingError::Number {
        field,
        value: value.to_owned(),
    })
}

/// Parses the first line of `chronyc -c tracking`.
///
/// # Errors
/// The line does not have chrony's 14 fields, or a number field is not one.
pub fn parse_tracking(text: &str) -> Result<Tracking, TrackingError> {
    let line = text.lines().next().unwrap_or("");
    let f: Vec<&str> = line.split(',').collect();
    if f.len() != 14 {
        return Err(TrackingError::Fields(f.len()));
    }
    let finite = |field, v: &str| {
        let x: f64 = number(field, v)?;
        if x.is_finite() {
            Ok(x)
        } else {
            Err(TrackingError::Number {
                field,
                value: v.to_owned(),
            })
        }
    };
    // chrony prints the correction to apply: positive when the clock is slow.
    let correction = finite("system time", f[4])?;
    let root_delay = finite("root delay", f[10])?;
    let root_dispersion = finite("root dispersion", f[11])?;
    Ok(Tracking {
        reference_id: f[0].to_owned(),
        reference: f[1].to_owned(),
        stratum: number("stratum", f[2])?,
        offset_secs: -correction,
        error_bound_secs: root_dispersion + root_delay / 2.0,
        leap_status: f[13].trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNCED: &str = include_str!("../tests/fixtures/chronyc-tracking-synced.csv");
    const UNSYNCED: &str = include_str!("../tests/fixtures/chronyc-tracking-unsynced.csv");

    #[test]
    fn synced_fixture() {
        let t = parse_tracking(SYNCED).expect("fixture parses");
        assert!(t.synchronised(), "{t:?}");
        assert_eq!(t.reference, "10.79.0.1");
        assert_eq!(t.stratum, 9);
        assert_eq!(t.leap_status, "Normal");
        assert!(t.offset_secs.abs() < 0.1, "{t:?}");
    }

    #[test]
    fn unsynced_fixture() {
        let t = parse_tracking(UNSYNCED).expect("fixture parses");
        assert!(!t.synchronised(), "{t:?}");
        assert_eq!(t.leap_status, "Not synchronised");
    }

    #[test]
    fn slow_clock_has_a_negative_offset() {
        let t = parse_tracking(
            "0A4F0001,10.79.0.1,3,1796613000.0,0.250000000,0,0,0,0,0,0.002,0.001,64.0,Normal",
        )
        .expect("parses");
        assert!((t.offset_secs + 0.25).abs() < 1e-9, "{t:?}");
        assert!((t.error_bound_secs - 0.002).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn garbage_is_refused_with_what_was_wrong() {
        assert_eq!(parse_tracking(""), Err(TrackingError::Fields(1)));
        assert_eq!(
            parse_tracking("506 Cannot talk to daemon"),
            Err(TrackingError::Fields(1))
        );
        let e = parse_tracking("0,x,s,0,0,0,0,0,0,0,0,0,0,Normal").expect_err("bad stratum");
        assert!(e.to_string().contains("stratum"), "{e}");
        let e = parse_tracking("0,x,1,0,NaN,0,0,0,0,0,0,0,0,Normal").expect_err("NaN");
        assert!(e.to_string().contains("system time"), "{e}");
    }

    #[test]
    fn configuration_names_each_server_and_refuses_injection() {
        let c = chrony_conf(
            &["ntp1.example.net", "192.0.2.123"],
            Path::new("/config/chrony"),
            Path::new("/run/chrony"),
        )
        .expect("conf");
        assert!(
            c.contains("server ntp1.example.net iburst\nserver 192.0.2.123 iburst\n"),
            "{c}"
        );
        assert!(c.contains("bindcmdaddress /run/chrony/chronyd.sock"), "{c}");
        assert!(c.contains("driftfile /config/chrony/chrony.drift"), "{c}");
        assert_eq!(
            chrony_conf(&[], Path::new("/a"), Path::new("/b")),
            Err(ChronyConfError::NoServers)
        );
        for bad in ["ntp.example.net\nallow all", "a b", "", "-x"] {
            assert!(
                matches!(
                    chrony_conf(&[bad], Path::new("/a"), Path::new("/b")),
                    Err(ChronyConfError::BadServer(_))
                ),
                "{bad:?}"
            );
        }
    }
}
