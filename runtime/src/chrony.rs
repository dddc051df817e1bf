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

/// NTP's port.
pub const NTP_PORT: u16 = 123;

/// The files chronyd keeps: drift file, pid file, command socket.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '/'))
}

/// chronyd's configuration: each of `servers` (name or address, and a port other than
/// NTP's 123 when given) with `iburst` (a
/// first synchronisation within seconds), the clock stepped when it is more than a
/// second off in the first three updates and slewed after, the hardware clock kept in
/// step by the kernel, and its files in `state_dir` (drift) and `run_dir` (pid file,
/// command socket; no UDP command port). chronyd uses the command socket only when
/// `run_dir` is closed to others (mode 0700 or 0750).
///
/// # Errors
/// No servers, or a server or directory that is not a plain name or path.
pub fn chrony_conf(
    servers: &[(&str, Option<u16>)],
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
    for (s, port) in servers {
        if !plain(s) || s.contains('/') || s.starts_with('-') {
            return Err(ChronyConfError::BadServer((*s).to_owned()));
        }
        match port {
            Some(p) if *p != NTP_PORT => {
                let _ = writeln!(out, "server {s} iburst port {p}");
            }
            _ => {
                let _ = writeln!(out, "server {s} iburst");
            }
        }
    }
    let _ = write!(
        out,
        "makestep 1.0 3\nrtcsync\ndriftfile {state}/chrony.drift\npidfile {run}/{PID_FILE}\ncmdport 0\nbindcmdaddress {run}/{SOCKET}\n"
    );
    Ok(out)
}

/// Where `tandem node-up` writes chronyd's configuration on a node; init starts
/// chronyd when it exists.
pub const NODE_CONF: &str = "/run/tandem/chrony.conf";
/// chronyd's run directory on a node (pid file, command socket, drift file): chronyd
/// makes it itself, owned by its user. The drift is learnt again after a restart of
/// the node (a few minutes; `makestep` steps the clock at once).
pub const NODE_RUN_DIR: &str = "/run/chrony";
/// chronyc.
pub const CHRONYC: &str = "/usr/bin/chronyc";
/// chronyd's pid file in its run directory.
pub const PID_FILE: &str = "chronyd.pid";
/// chronyd's command socket in its run directory.
pub const SOCKET: &str = "chronyd.sock";

/// The time servers of `cfg`, as [`chrony_conf`] takes them.
#[must_use]
pub fn servers(cfg: &tandem_config::ApplianceConfig) -> Vec<(&str, Option<u16>)> {
    cfg.network
        .ntp_servers
        .iter()
        .map(|s| (s.host(), s.port()))
        .collect()
}

/// Writes chronyd's configuration for `cfg` to `path`, or removes `path` when the
/// configuration names no time server; returns the line for the console.
///
/// # Errors
/// The file could not be written or removed, or a server is not a plain name (which
/// the configuration's own checks rule out).
pub fn write_node_conf(
    cfg: &tandem_config::ApplianceConfig,
    path: &Path,
    run_dir: &Path,
) -> std::io::Result<String> {
    let list = servers(cfg);
    if list.is_empty() {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        return Ok(NO_SERVERS.to_owned());
    }
    let text = chrony_conf(&list, run_dir, run_dir)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::write_atomic(path, text.as_bytes(), 0o644)?;
    Ok(format!(
        "time servers {}",
        cfg.network
            .ntp_servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Ends the chronyd whose pid file is in `run_dir` (SIGTERM to that process id, and
/// only when that process is chronyd: a stale pid file may name another program).
/// `Ok(false)` when no chronyd runs there.
///
/// # Errors
/// The pid file holds no process id, or the signal cannot be sent.
pub fn stop(run_dir: &Path) -> std::io::Result<bool> {
    let Some(pid) = crate::read_pid_file(&run_dir.join(PID_FILE))? else {
        return Ok(false);
    };
    let comm =
        std::fs::read_to_string(format!("/proc/{}/comm", pid.as_raw_nonzero())).unwrap_or_default();
    if comm.trim_end() != "chronyd" {
        return Ok(false);
    }
    match rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How clusterd keeps chronyd's configuration current: with every change of the time
/// servers it rewrites the file (as `tandem node-up` does) and ends chronyd, which
/// cannot read its configuration again; init starts it again with the new file, or
/// not at all when the file is gone (no time servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// chronyd's configuration file ([`NODE_CONF`] on a node).
    pub conf: std::path::PathBuf,
    /// chronyd's run directory: its pid file ([`PID_FILE`]) and command socket
    /// ([`SOCKET`]) ([`NODE_RUN_DIR`] on a node).
    pub run_dir: std::path::PathBuf,
}

impl Setup {
    /// Writes (or removes) chronyd's configuration for `cfg` and ends the running
    /// chronyd; a line for the event stream.
    ///
    /// # Errors
    /// The file cannot be written or removed, or chronyd cannot be signalled.
    pub fn refresh(&self, cfg: &tandem_config::ApplianceConfig) -> std::io::Result<String> {
        let line = write_node_conf(cfg, &self.conf, &self.run_dir)?;
        let stopped = stop(&self.run_dir)?;
        Ok(refresh_line(&line, !servers(cfg).is_empty(), stopped))
    }
}

/// The event line of [`Setup::refresh`]: what is configured (`line` of
/// [`write_node_conf`]) and what happens to chronyd.
#[must_use]
pub fn refresh_line(line: &str, any_server: bool, stopped: bool) -> String {
    let what = match (any_server, stopped) {
        (true, true) => "chronyd restarts with them",
        (true, false) => "chronyd starts with them",
        (false, true) => "chronyd stopped",
        (false, false) => "chronyd not running",
    };
    format!("{line} ({what})")
}

/// What the node says when the configuration names no time server.
pub const NO_SERVERS: &str =
    "no time servers configured (network.ntp-servers): the clock is not synchronised";

/// Asks chronyd through its command socket (`chronyc -c -h SOCKET tracking`).
///
/// # Errors
/// chronyc cannot run, or says something that is not a tracking report (chronyd not
/// running, its socket missing): the text says what.
pub fn ask_tracking(chronyc: &Path, socket: &Path) -> Result<Tracking, String> {
    let out = std::process::Command::new(chronyc)
        .arg("-c")
        .arg("-h")
        .arg(socket)
        .arg("tracking")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", chronyc.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = err.lines().next().or(text.lines().next()).unwrap_or("");
        return Err(format!("chronyd does not answer ({})", why.trim()));
    }
    parse_tracking(&text).map_err(|e| e.to_string())
}

impl Tracking {
    /// One line for the status: `synchronised to NAME (stratum N, offset +x ms)` or
    /// `not synchronised (...)`.
    #[must_use]
    pub fn line(&self) -> String {
        if self.synchronised() {
            format!(
                "synchronised to {} (stratum {}, offset {:+.1} ms, error at most {:.1} ms)",
                self.reference,
                self.stratum,
                self.offset_secs * 1000.0,
                self.error_bound_secs * 1000.0
            )
        } else {
            "not synchronised: no time server reached yet".to_owned()
        }
    }
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
    fn the_status_line_says_where_from_or_why_not() {
        let t = parse_tracking(SYNCED).expect("fixture parses");
        let line = t.line();
        assert!(
            line.starts_with("synchronised to 10.79.0.1 (stratum 9, offset "),
            "{line}"
        );
        let t = parse_tracking(UNSYNCED).expect("fixture parses");
        assert!(t.line().starts_with("not synchronised"), "{}", t.line());
    }

    #[test]
    fn the_node_configuration_follows_the_time_servers() {
        let (mut cfg, _) =
            tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
                .expect("a configuration");
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("tandem/chrony.conf");
        let run = Path::new("/run/chrony");
        // None configured: no file, and the console says so.
        assert_eq!(
            write_node_conf(&cfg, &conf, run).expect("written"),
            NO_SERVERS
        );
        assert!(!conf.exists());
        cfg.network.ntp_servers = vec![
            "ntp.example.net".parse().expect("a host"),
            "192.0.2.123:1123".parse().expect("a host"),
        ];
        assert_eq!(
            write_node_conf(&cfg, &conf, run).expect("written"),
            "time servers ntp.example.net, 192.0.2.123:1123"
        );
        let text = std::fs::read_to_string(&conf).expect("the file");
        assert!(
            text.contains("server ntp.example.net iburst\nserver 192.0.2.123 iburst port 1123\n"),
            "{text}"
        );
        assert!(
            text.contains("bindcmdaddress /run/chrony/chronyd.sock"),
            "{text}"
        );
        // Removed again when the servers go.
        cfg.network.ntp_servers.clear();
        write_node_conf(&cfg, &conf, run).expect("removed");
        assert!(!conf.exists());
    }

    #[test]
    fn the_event_line_says_what_happens_to_chronyd() {
        assert_eq!(
            refresh_line("time servers 127.0.0.1", true, true),
            "time servers 127.0.0.1 (chronyd restarts with them)"
        );
        assert_eq!(
            refresh_line("time servers 127.0.0.1", true, false),
            "time servers 127.0.0.1 (chronyd starts with them)"
        );
        assert_eq!(
            refresh_line(NO_SERVERS, false, true),
            format!("{NO_SERVERS} (chronyd stopped)")
        );
        assert_eq!(
            refresh_line(NO_SERVERS, false, false),
            format!("{NO_SERVERS} (chronyd not running)")
        );
    }

    #[test]
    fn refresh_without_a_running_chronyd_writes_and_removes_the_file() {
        let (mut cfg, _) =
            tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
                .expect("a configuration");
        let dir = tempfile::tempdir().expect("tempdir");
        let setup = Setup {
            conf: dir.path().join("chrony.conf"),
            run_dir: dir.path().join("run"),
        };
        cfg.network.ntp_servers = vec!["127.0.0.1".parse().expect("a host")];
        assert_eq!(
            setup.refresh(&cfg).expect("refreshed"),
            "time servers 127.0.0.1 (chronyd starts with them)"
        );
        assert!(setup.conf.exists());
        // A stale pid file naming a process that is not chronyd: left alone.
        std::fs::create_dir_all(&setup.run_dir).expect("run dir");
        std::fs::write(
            setup.run_dir.join(PID_FILE),
            format!("{}\n", std::process::id()),
        )
        .expect("pid file");
        assert!(!stop(&setup.run_dir).expect("not signalled"));
        std::fs::write(setup.run_dir.join(PID_FILE), "garbage\n").expect("pid file");
        assert!(stop(&setup.run_dir).is_err());
        std::fs::remove_file(setup.run_dir.join(PID_FILE)).expect("removed");
        cfg.network.ntp_servers.clear();
        assert_eq!(
            setup.refresh(&cfg).expect("refreshed"),
            format!("{NO_SERVERS} (chronyd not running)")
        );
        assert!(!setup.conf.exists());
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
            &[
                ("ntp1.example.net", None),
                ("192.0.2.123", Some(NTP_PORT)),
                ("192.0.2.124", Some(1123)),
            ],
            Path::new("/config/chrony"),
            Path::new("/run/chrony"),
        )
        .expect("conf");
        assert!(
            c.contains("server ntp1.example.net iburst\nserver 192.0.2.123 iburst\nserver 192.0.2.124 iburst port 1123\n"),
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
                    chrony_conf(&[(bad, None)], Path::new("/a"), Path::new("/b")),
                    Err(ChronyConfError::BadServer(_))
                ),
                "{bad:?}"
            );
        }
    }
}
