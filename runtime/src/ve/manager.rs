//! VEs on a node: create from an OS template, set parameters, start and stop under
//! crun with the limits of their `ve-<ID>.conf` and a routed network, list, enter,
//! destroy.
//!
//! Layout ([`Layout::node`]): VE files in `/etc/tandem/ves` (one of the R5.2 links,
//! so they live in the data area and follow the active node), root filesystems in
//! `/vz/private/<ID>`, OS templates in `/vz/template/<NAME>.tar[.gz|.xz|.zst]`, OCI bundles
//! in `/run/tandem/ve/<ID>`. The template `tandem-minimal` is built in: the node's
//! own busybox with a web server, enough for a first service without a download.
//!
//! Every operation checks before it changes anything, and undoes its own partial
//! work when a later step fails: a VE whose network cannot be set up is not left
//! half-started, a template that cannot be unpacked leaves no private area behind.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::conf::{VeFile, VeFileError};
use super::net::{self as venet, VeNetError};
use super::oci::{self, BundleSpec};

/// The built-in OS template.
pub use tandem_api::MINIMAL_TEMPLATE;

/// Whether `name` is a template name `tandem ve create --template` takes that names
/// no path: letters, digits, `.`, `_`, `-`, `+`, not starting with a dot, at most 100.
#[must_use]
pub fn template_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// The template files in `dir`: `(NAME, file name)` of every regular file
/// `NAME.tar`, `NAME.tar.gz`, `NAME.tar.xz` or `NAME.tar.zst` with a
/// [`template_name_ok`] name, by name and then in that order of suffixes (the first
/// of a name is the one `create` unpacks). A missing directory has none.
///
/// # Errors
/// The directory exists but cannot be read.
pub fn template_files(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    use super::template::Compression;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<(String, Compression, String)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_owned();
            let (stem, c) = Compression::of_name(&file)?;
            template_name_ok(stem).then(|| (stem.to_owned(), c, file.clone()))
        })
        .collect();
    let rank = |c: Compression| Compression::ALL.iter().position(|a| *a == c);
    files.sort_by(|a, b| a.0.cmp(&b.0).then(rank(a.1).cmp(&rank(b.1))));
    Ok(files.into_iter().map(|(n, _, f)| (n, f)).collect())
}

/// Where things are on a node (tests point them elsewhere).
#[derive(Debug, Clone)]
pub struct Layout {
    /// VE files (`ve-<ID>.conf`).
    pub conf_dir: PathBuf,
    /// Root filesystems (`<ID>/`).
    pub private_dir: PathBuf,
    /// OS templates (`<NAME>.tar`, `.tar.gz`, `.tar.xz`, `.tar.zst`).
    pub template_dir: PathBuf,
    /// OCI bundles.
    pub run_dir: PathBuf,
    /// The OCI runtime.
    pub crun: PathBuf,
    /// The busybox the built-in template copies.
    pub busybox: PathBuf,
    /// Interfaces VE addresses are routed on: (network, prefix, interface); the
    /// first that contains an address wins, the last is the default.
    pub uplinks: Vec<(Ipv4Addr, u8, String)>,
}

impl Layout {
    /// The node's layout with the given uplinks.
    #[must_use]
    pub fn node(uplinks: Vec<(Ipv4Addr, u8, String)>) -> Layout {
        Layout {
            conf_dir: PathBuf::from("/etc/tandem/ves"),
            private_dir: PathBuf::from("/vz/private"),
            template_dir: PathBuf::from("/vz/template"),
            run_dir: PathBuf::from("/run/tandem/ve"),
            crun: PathBuf::from("/usr/bin/crun"),
            busybox: PathBuf::from("/bin/busybox"),
            uplinks,
        }
    }

    /// The node's layout with its VE addresses routed on `int` when they are in the
    /// cluster's crossover network (VE 1), on `ext` otherwise.
    #[must_use]
    pub fn for_cluster(
        cfg: Option<&tandem_config::ApplianceConfig>,
        ext: String,
        int: String,
    ) -> Layout {
        let mut uplinks = Vec::new();
        if let Some(cfg) = cfg {
            // Both nodes' crossover addresses are in the same network.
            let net = cfg.network.internal_net(tandem_config::NodeId::Node1);
            uplinks.push((net.network(), net.prefix(), int));
        }
        uplinks.push((Ipv4Addr::UNSPECIFIED, 0, ext));
        Layout::node(uplinks)
    }

    fn conf(&self, id: u32) -> PathBuf {
        self.conf_dir.join(format!("ve-{id}.conf"))
    }

    fn private(&self, id: u32) -> PathBuf {
        self.private_dir.join(id.to_string())
    }

    fn bundle(&self, id: u32) -> PathBuf {
        self.run_dir.join(id.to_string())
    }

    /// The interface a VE's addresses are routed on; `None` for a VE without any.
    pub(crate) fn uplink_of(&self, ve: &VeFile) -> Option<String> {
        let first = ve.ip_addresses.first()?;
        Some(self.uplink_for(*first).unwrap_or("eth0").to_owned())
    }

    fn uplink_for(&self, a: Ipv4Addr) -> Option<&str> {
        self.uplinks
            .iter()
            .find(|(net, prefix, _)| in_net(a, *net, *prefix))
            .or(self.uplinks.last())
            .map(|(_, _, i)| i.as_str())
    }
}

fn in_net(a: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(a) & mask == u32::from(net) & mask
}

/// What went wrong with a VE; each says which VE and what to do.
#[derive(Debug, thiserror::Error)]
pub enum VeError {
    /// No such VE.
    #[error("VE {0} does not exist (tandem ve list shows the VEs)")]
    Unknown(u32),
    /// The VE exists already.
    #[error("VE {0} exists already")]
    Exists(u32),
    /// A user name or password that cannot be set.
    #[error("{0}; nothing was changed")]
    Password(String),
    /// The VE number is not usable.
    #[error("{0} is not a VE number (1 to 2147483647)")]
    BadId(String),
    /// The VE file has problems.
    #[error("{path}: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    File {
        /// The VE file.
        path: PathBuf,
        /// Every problem.
        problems: Vec<VeFileError>,
    },
    /// The template is missing.
    #[error("no OS template {name} in {dir} (available: {available})")]
    NoTemplate {
        /// Asked for.
        name: String,
        /// Where templates live.
        dir: PathBuf,
        /// What is there.
        available: String,
    },
    /// The VE runs and the operation needs it stopped.
    #[error("VE {0} is running; stop it first (tandem ve stop {0})")]
    Running(u32),
    /// The VE's number has no user ID range of its own.
    #[error(
        "VE {0} cannot start: VEs above {max} have no user IDs of their own (restore it to a lower ID: tandem ve restore FILE --to ID)",
        max = super::idmap::MAX_ID
    )]
    NoIdRange(u32),
    /// The VE is stopped and the operation needs it running.
    #[error("VE {0} is not running (tandem ve start {0})")]
    NotRunning(u32),
    /// crun failed.
    #[error("crun {args} failed for VE {id}: {detail}")]
    Runtime {
        /// VE number.
        id: u32,
        /// The arguments.
        args: String,
        /// crun's last line.
        detail: String,
    },
    /// VEs that the chain's step started together and that did not start, each
    /// with its number and why (the others it started were stopped again).
    #[error("{}", .0.iter().map(|(id, e)| format!("VE {id} did not start: {}", crate::error_chain(e))).collect::<Vec<_>>().join("; "))]
    NotStarted(Vec<(u32, VeError)>),
    /// VEs that the chain's release stopped together and that did not stop, each
    /// with its number and why (the others were still stopped).
    #[error("{}", .0.iter().map(|(id, e)| format!("VE {id} did not stop: {}", crate::error_chain(e))).collect::<Vec<_>>().join("; "))]
    NotStopped(Vec<(u32, VeError)>),
    /// The task stopping a VE ended without an answer (it panicked).
    #[error("the task stopping VE {id} ended abnormally: {detail}")]
    Task {
        /// VE number.
        id: u32,
        /// What the runtime said.
        detail: String,
    },
    /// The VE's network.
    #[error(transparent)]
    Net(#[from] VeNetError),
    /// A file operation.
    #[error("{op} {path}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VeError {
    let path = path.to_owned();
    move |source| VeError::Io { op, path, source }
}

/// A VE number from the command line.
///
/// # Errors
/// Not a number in 1..=i32::MAX.
pub fn parse_id(s: &str) -> Result<u32, VeError> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=0x7fff_ffff).contains(n))
        .ok_or_else(|| VeError::BadId(s.to_owned()))
}

/// One row of `tandem ve list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VeRow {
    /// VE number.
    pub id: u32,
    /// Processes (cgroup `pids.current`), 0 when stopped.
    pub nproc: u64,
    /// `running` or `stopped`.
    pub status: String,
    /// Addresses.
    pub ip: Vec<Ipv4Addr>,
    /// Host name.
    pub hostname: String,
}

/// Formats rows like vzlist: `VEID NPROC STATUS IP_ADDR HOSTNAME`.
#[must_use]
pub fn format_list(rows: &[VeRow]) -> String {
    let mut out = format!(
        "{:>6} {:>6} {:<8} {:<15} {}\n",
        "VEID", "NPROC", "STATUS", "IP_ADDR", "HOSTNAME"
    );
    for r in rows {
        let ip = if r.ip.is_empty() {
            "-".to_owned()
        } else {
            r.ip.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let nproc = if r.status == "running" {
            r.nproc.to_string()
        } else {
            "-".to_owned()
        };
        out.push_str(&format!(
            "{:>6} {:>6} {:<8} {:<15} {}\n",
            r.id,
            nproc,
            r.status,
            ip,
            if r.hostname.is_empty() {
                "-"
            } else {
                &r.hostname
            }
        ));
    }
    out
}

/// The VEs of a node.
#[derive(Debug, Clone)]
pub struct Ves {
    /// Where things are.
    pub layout: Layout,
}

impl Ves {
    /// Reads and checks a VE's file.
    ///
    /// # Errors
    /// The VE does not exist or its file has problems.
    pub fn file(&self, id: u32) -> Result<VeFile, VeError> {
        let path = self.layout.conf(id);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(VeError::Unknown(id)),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        VeFile::parse(&text).map_err(|problems| VeError::File { path, problems })
    }

    /// The numbers of all VEs, ascending.
    ///
    /// # Errors
    /// The VE directory cannot be read.
    pub fn ids(&self) -> Result<Vec<u32>, VeError> {
        let dir = &self.layout.conf_dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("reading", dir)(e)),
        };
        let mut ids: Vec<u32> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("ve-")?
                    .strip_suffix(".conf")?
                    .parse()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Creates VE `id` from `template` with the limits of `sample` (a VE file text,
    /// e.g. the tkunlimited sample) and the given host name and addresses.
    ///
    /// # Errors
    /// The VE exists, the template is missing or unreadable, or the resulting file
    /// has problems; nothing is left behind.
    pub fn create(
        &self,
        id: u32,
        template: &str,
        sample: &str,
        hostname: &str,
        ips: &[Ipv4Addr],
    ) -> Result<(), VeError> {
        let conf = self.layout.conf(id);
        let private = self.layout.private(id);
        if conf.exists() || private.exists() {
            return Err(VeError::Exists(id));
        }
        let mut text = set_keys(
            sample,
            &[
                ("HOSTNAME", hostname.to_owned()),
                (
                    "IP_ADDRESS",
                    ips.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                ("OSTEMPLATE", template.to_owned()),
            ],
        );
        if !text.ends_with('\n') {
            text.push('\n');
        }
        VeFile::parse(&text).map_err(|problems| VeError::File {
            path: conf.clone(),
            problems,
        })?;
        let partial = self.layout.private_dir.join(format!("{id}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(io("creating", &partial))?;
        let unpacked = if template == MINIMAL_TEMPLATE {
            minimal_rootfs(&partial, &self.layout.busybox)
        } else {
            self.unpack_template(template, &partial)
        };
        if let Err(e) = unpacked {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &private).map_err(io("moving into place", &private))?;
        if let Err(e) = write_atomic(&conf, text.as_bytes()) {
            let _ = std::fs::remove_dir_all(&private);
            return Err(e);
        }
        super::idmap::shift_ahead(&self.layout.private_dir, id);
        Ok(())
    }

    fn unpack_template(&self, name: &str, dst: &Path) -> Result<(), VeError> {
        let dir = &self.layout.template_dir;
        let files = template_files(dir).map_err(io("reading", dir))?;
        let Some((_, file)) = files.iter().find(|(n, _)| n == name) else {
            let mut available: Vec<String> = files.into_iter().map(|(n, _)| n).collect();
            available.push(MINIMAL_TEMPLATE.to_owned());
            available.sort();
            available.dedup();
            return Err(VeError::NoTemplate {
                name: name.to_owned(),
                dir: dir.clone(),
                available: available.join(", "),
            });
        };
        let path = dir.join(file);
        let compression = super::template::Compression::of_name(file)
            .map_or(super::template::Compression::None, |(_, c)| c);
        let f = std::fs::File::open(&path).map_err(io("opening", &path))?;
        let reader = compression
            .decoder(std::io::BufReader::new(f))
            .map_err(io("reading template", &path))?;
        let mut ar = tar::Archive::new(reader);
        ar.set_preserve_permissions(true);
        ar.set_preserve_ownerships(true);
        ar.set_unpack_xattrs(false);
        let entries = ar.entries().map_err(io("reading template", &path))?;
        for entry in entries {
            let mut entry = entry.map_err(io("reading template", &path))?;
            // unpack_in refuses members that would land outside the root.
            let inside = entry
                .unpack_in(dst)
                .map_err(io("unpacking template", &path))?;
            if !inside {
                return Err(VeError::Io {
                    op: "unpacking template (a member points outside the root)",
                    path,
                    source: std::io::Error::from(std::io::ErrorKind::InvalidData),
                });
            }
        }
        Ok(())
    }

    /// Sets parameters (`KEY`, `VALUE`) in a VE's file; the new file is checked as
    /// a whole before it replaces the old one.
    ///
    /// # Errors
    /// The VE does not exist or the new file has problems (the old stays).
    pub fn set(&self, id: u32, changes: &[(String, String)]) -> Result<(), VeError> {
        let path = self.layout.conf(id);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(VeError::Unknown(id)),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        let pairs: Vec<(&str, String)> = changes
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let new = set_keys(&text, &pairs);
        VeFile::parse(&new).map_err(|problems| VeError::File {
            path: path.clone(),
            problems,
        })?;
        write_atomic(&path, new.as_bytes())
    }

    /// The crun state of a VE: `None` when crun does not know it.
    fn state(&self, id: u32) -> Option<(String, u32)> {
        let out = Command::new(&self.layout.crun)
            .args(["state", &container(id)])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        parse_state(&out.stdout)
    }

    /// What crun prints for `args`, without holding up the caller's runtime; `None`
    /// when it cannot be run or fails.
    async fn crun_stdout(&self, args: &[&str]) -> Option<Vec<u8>> {
        let out = tokio::process::Command::new(&self.layout.crun)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    /// [`Ves::state`] without holding up the caller's runtime.
    async fn state_async(&self, id: u32) -> Option<(String, u32)> {
        parse_state(&self.crun_stdout(&["state", &container(id)]).await?)
    }

    /// What crun knows of every VE, as [`Ves::state`] says it of one: one `crun
    /// list` for all of them; `None` when crun cannot list them.
    async fn listed(&self) -> Option<BTreeMap<u32, (String, u32)>> {
        parse_list(&self.crun_stdout(&["list", "--format", "json"]).await?)
    }

    /// The pid (in the node's pid namespace) of a running VE's first process.
    #[must_use]
    pub fn init_pid(&self, id: u32) -> Option<u32> {
        match self.state(id) {
            Some((s, pid)) if s == "running" && pid > 0 => Some(pid),
            _ => None,
        }
    }

    /// True when the VE's processes run.
    #[must_use]
    pub fn is_running(&self, id: u32) -> bool {
        matches!(self.state(id), Some((s, _)) if s == "running")
    }

    /// Runs crun with `args` for VE `id` without holding up the caller's runtime
    /// (clusterd's loop keeps answering heartbeats, other VEs start meanwhile).
    async fn crun(&self, id: u32, args: &[&str]) -> Result<(), VeError> {
        let out = tokio::process::Command::new(&self.layout.crun)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| VeError::Runtime {
                id,
                args: args.join(" "),
                detail: format!("cannot run {}: {e}", self.layout.crun.display()),
            })?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr);
        Err(VeError::Runtime {
            id,
            args: args.join(" "),
            detail: crate::last_line(&text),
        })
    }

    /// Starts a VE: writes its bundle, creates the container, attaches its network,
    /// then lets its first process run. On failure everything is taken down again.
    ///
    /// # Errors
    /// The VE is unknown, running, has a bad file or no root, or a step fails.
    pub async fn start(&self, id: u32) -> Result<(), VeError> {
        let plan = self.plan_start(id, None).await?;
        self.launch(plan).await.map(drop)
    }

    /// The checks of [`Ves::start`] that change nothing: the VE's file, its root
    /// filesystem, its user IDs, and that crun does not run it: `known`, crun's
    /// state of it when the caller asked already (`Some(None)`: crun does not know
    /// it), else one `crun state`.
    ///
    /// # Errors
    /// [`VeError::Running`] when it runs; the VE is unknown, has a bad file, no
    /// root or no user ID range.
    pub(crate) async fn plan_start(
        &self,
        id: u32,
        known: Option<CrunState>,
    ) -> Result<StartPlan, VeError> {
        let ve = self.file(id)?;
        let private = self.layout.private(id);
        if !private.is_dir() {
            return Err(VeError::Io {
                op: "finding the root filesystem",
                path: private,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let id_base = super::idmap::id_base(id).ok_or(VeError::NoIdRange(id))?;
        let state = match known {
            Some(s) => s,
            None => self.state_async(id).await,
        };
        let leftover = match state {
            Some((s, _)) if s == "running" => return Err(VeError::Running(id)),
            Some(_) => true,
            None => false,
        };
        Ok(StartPlan {
            id,
            ve,
            id_base,
            leftover,
        })
    }

    /// Starts the VE of `plan`; the pid (in the node's pid namespace) of its first
    /// process. Three crun commands: `create` (which writes the pid), `start`, and
    /// `delete` only for what an earlier run left.
    ///
    /// # Errors
    /// A step fails; everything is taken down again.
    pub(crate) async fn launch(&self, plan: StartPlan) -> Result<u32, VeError> {
        let StartPlan {
            id,
            ve,
            id_base,
            leftover,
        } = plan;
        let private = self.layout.private(id);
        if leftover {
            self.crun(id, &["delete", "-f", &container(id)]).await?;
        }
        super::idmap::ensure_owned(&self.layout.private_dir, id, id_base)
            .map_err(io("giving the VE's user IDs to the files of", &private))?;
        let bundle = self.layout.bundle(id);
        std::fs::create_dir_all(&bundle).map_err(io("creating", &bundle))?;
        let args = vec!["/sbin/init".to_owned()];
        let hostname = ve.hostname.clone().unwrap_or_else(|| format!("ve{id}"));
        let spec = oci::config_json(
            &ve,
            &BundleSpec {
                id,
                rootfs: &private,
                args: &args,
                hostname: &hostname,
                netns: None,
                id_base,
            },
        );
        write_atomic(&bundle.join("config.json"), spec.to_string().as_bytes())?;
        let log = bundle.join("console.log");
        let pid_file = bundle.join("pid");
        let _ = std::fs::remove_file(&pid_file);
        let out = std::fs::File::create(&log).map_err(io("creating", &log))?;
        let err = out.try_clone().map_err(io("opening", &log))?;
        let status = tokio::process::Command::new(&self.layout.crun)
            .arg("create")
            .arg("--bundle")
            .arg(&bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(container(id))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .await
            .map_err(|e| VeError::Runtime {
                id,
                args: "create".into(),
                detail: e.to_string(),
            })?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(VeError::Runtime {
                id,
                args: "create".into(),
                detail: crate::last_line(&text),
            });
        }
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|p| *p > 0);
        let Some(pid) = pid else {
            let _ = self.crun(id, &["delete", "-f", &container(id)]).await;
            return Err(VeError::Runtime {
                id,
                args: "create".into(),
                detail: format!(
                    "the created VE has no process ({} holds no pid)",
                    pid_file.display()
                ),
            });
        };
        let uplink = self.layout.uplink_of(&ve);
        let attached = match &uplink {
            Some(up) => venet::attach(id, pid, &ve.ip_addresses, up)
                .await
                .map_err(VeError::from),
            None => Ok(()),
        };
        let started = match attached {
            Ok(()) => self.crun(id, &["start", &container(id)]).await,
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            if let Some(up) = &uplink {
                let _ = venet::detach(id, &ve.ip_addresses, up).await;
            }
            let _ = self.crun(id, &["delete", "-f", &container(id)]).await;
            return Err(e);
        }
        Ok(pid)
    }

    /// Stops a VE: SIGTERM to its first process, SIGKILL after `grace`, then removes
    /// the container and its network. Stopping a stopped VE changes nothing.
    ///
    /// # Errors
    /// The VE is unknown or crun fails.
    pub async fn stop(&self, id: u32, grace: Duration) -> Result<(), VeError> {
        let ve = self.file(id)?;
        if let Some((status, pid)) = self.state_async(id).await {
            if status == "running" {
                // The end of the first process is waited for through its pidfd: the
                // kernel says when, no crun command asks again and again.
                let ended = match pidfd(pid) {
                    Some(fd) => {
                        let _ =
                            rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::TERM);
                        tokio::time::timeout(grace, wait_exit(fd)).await.is_ok()
                    }
                    // Gone already.
                    None => true,
                };
                if !ended {
                    let _ = self.crun(id, &["kill", "-a", &container(id), "KILL"]).await;
                }
            }
            self.crun(id, &["delete", "-f", &container(id)]).await?;
        }
        if let Some(up) = self.layout.uplink_of(&ve) {
            venet::detach(id, &ve.ip_addresses, &up).await?;
        }
        Ok(())
    }

    /// All VEs with their state.
    ///
    /// # Errors
    /// The VE directory cannot be read.
    pub fn list(&self) -> Result<Vec<VeRow>, VeError> {
        let mut rows = Vec::new();
        for id in self.ids()? {
            let (ip, hostname) = match self.file(id) {
                Ok(f) => (f.ip_addresses, f.hostname.unwrap_or_default()),
                Err(_) => (Vec::new(), "(bad VE file)".to_owned()),
            };
            let running = self.is_running(id);
            let nproc = if running {
                std::fs::read_to_string(format!(
                    "/sys/fs/cgroup{}/pids.current",
                    oci::cgroup_path(id)
                ))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
            } else {
                0
            };
            rows.push(VeRow {
                id,
                nproc,
                status: if running { "running" } else { "stopped" }.to_owned(),
                ip,
                hostname,
            });
        }
        Ok(rows)
    }

    /// Runs a program inside a running VE with the caller's terminal; returns its
    /// exit code.
    ///
    /// # Errors
    /// The VE is not running or crun cannot run.
    pub fn exec(&self, id: u32, args: &[String], tty: bool) -> Result<i32, VeError> {
        self.file(id)?;
        if !self.is_running(id) {
            return Err(VeError::NotRunning(id));
        }
        let mut cmd = Command::new(&self.layout.crun);
        // crun exec takes the capabilities and the seccomp filter from the VE's
        // configuration but not its noNewPrivileges.
        cmd.args(["exec", "--no-new-privs"]);
        if tty {
            cmd.arg("-t");
        }
        let status = cmd
            .arg(container(id))
            .args(args)
            .status()
            .map_err(|e| VeError::Runtime {
                id,
                args: "exec".into(),
                detail: e.to_string(),
            })?;
        Ok(status.code().unwrap_or(-1))
    }

    /// Sets `user`'s password in a VE (R6.3): a SHA-512 crypt hash (`$6$`,
    /// which every Linux system reads) in the VE's `/etc/shadow`, replaced
    /// atomically. The VE's files are opened beneath its root only
    /// (`openat2` with `RESOLVE_IN_ROOT`, no symlink followed at the end), so
    /// nothing a VE's root user links there can make the node write outside
    /// it. Running or stopped alike.
    ///
    /// # Errors
    /// The VE is unknown, the user name or password cannot be used, the user
    /// has no line in the VE's `/etc/shadow`, or the file cannot be replaced.
    pub fn set_password(&self, id: u32, user: &str, password: &str) -> Result<(), VeError> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        use std::io::{Read as _, Write as _};
        let bad = |what: &str| VeError::Password(what.to_owned());
        if user.is_empty()
            || user.len() > 32
            || !user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(bad(
                "the user name may have letters, digits, '_', '-' and '.' only (at most 32)",
            ));
        }
        if password.is_empty() || password.len() > 256 {
            return Err(bad("the password must have 1 to 256 characters"));
        }
        if password.chars().any(char::is_control) {
            return Err(bad("the password may not contain control characters"));
        }
        self.file(id)?;
        let root = self.layout.private(id);
        let shadow_path = root.join("etc/shadow");
        let fail = |what: &'static str| {
            let p = shadow_path.clone();
            move |e: rustix::io::Errno| io(what, &p)(std::io::Error::from(e))
        };
        let root_fd = rustix::fs::open(
            &root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail("opening the root of"))?;
        let etc = rustix::fs::openat2(
            &root_fd,
            "etc",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
        .map_err(fail("opening the directory of"))?;
        let old = rustix::fs::openat2(
            &etc,
            "shadow",
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
        )
        .map_err(fail("opening"))?;
        let stat = rustix::fs::fstat(&old).map_err(fail("reading"))?;
        let mut text = String::new();
        std::fs::File::from(old)
            .read_to_string(&mut text)
            .map_err(io("reading", &shadow_path))?;
        let hash = tandem_config::secrets::crypt_password(password)
            .map_err(|e| bad(&format!("hashing the password: {e}")))?;
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400);
        let new = shadow_with(&text, user, hash.as_str(), days).ok_or_else(|| {
            bad(&format!(
                "the VE has no user {user} (no line for it in /etc/shadow)"
            ))
        })?;
        let tmp = ".shadow.tandem-new";
        let _ = rustix::fs::unlinkat(&etc, tmp, rustix::fs::AtFlags::empty());
        let fd = rustix::fs::openat2(
            &etc,
            tmp,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(stat.st_mode & 0o7777),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
        )
        .map_err(fail("creating the new"))?;
        let written = rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(stat.st_uid)),
            Some(rustix::fs::Gid::from_raw(stat.st_gid)),
        )
        .map_err(fail("keeping the owner of"))
        .and_then(|()| {
            let mut f = std::fs::File::from(fd);
            f.write_all(new.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io("writing", &shadow_path))
        })
        .and_then(|()| rustix::fs::renameat(&etc, tmp, &etc, "shadow").map_err(fail("replacing")));
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&etc, tmp, rustix::fs::AtFlags::empty());
        }
        written
    }

    /// Removes a stopped VE: its root filesystem and its file.
    ///
    /// # Errors
    /// The VE is unknown or running, or removing fails.
    pub fn destroy(&self, id: u32) -> Result<(), VeError> {
        let conf = self.layout.conf(id);
        if !conf.exists() {
            return Err(VeError::Unknown(id));
        }
        if self.is_running(id) {
            return Err(VeError::Running(id));
        }
        let private = self.layout.private(id);
        // Rename first: an interrupted removal leaves a name no VE uses.
        let doomed = self.layout.private_dir.join(format!("{id}.destroyed"));
        if private.exists() {
            std::fs::rename(&private, &doomed).map_err(io("moving aside", &private))?;
        }
        std::fs::remove_file(&conf).map_err(io("removing", &conf))?;
        if doomed.exists() {
            std::fs::remove_dir_all(&doomed).map_err(io("removing", &doomed))?;
        }
        let _ = std::fs::remove_dir_all(self.layout.bundle(id));
        let _ = std::fs::remove_file(super::idmap::marker(&self.layout.private_dir, id));
        Ok(())
    }
}

/// The chain step that starts the VEs marked `ONBOOT="yes"` on takeover, all at
/// once, and stops every running VE on release, all at once too. When some do not
/// start, those that did are stopped again and the step fails naming each one that
/// did not ([`VeError::NotStarted`]); when some do not stop, the others are still
/// stopped and the step fails naming each one that did not ([`VeError::NotStopped`]),
/// after every stop has ended. The addresses of the running VEs are announced by
/// gratuitous ARP `garp_count` times, `garp_gap` apart, after the takeover and on each
/// [`crate::resources::Resource::announce`] (the peer back after every path was lost,
/// a split brain resolved): one ARP at VE start may be missed by a router.
#[derive(Debug)]
pub struct OnbootVes {
    /// The VEs.
    pub ves: Ves,
    /// Gratuitous ARPs per announcement.
    pub garp_count: u32,
    /// Gap between them.
    pub garp_gap: Duration,
    /// The watch the VEs are started and stopped through, when clusterd has one.
    pub health: Option<super::health::VeSupervisor>,
    repeats: Option<crate::resources::Repeats>,
}

impl OnbootVes {
    /// The step for `ves`, announcing `garp_count` times `garp_gap` apart.
    #[must_use]
    pub fn new(ves: Ves, garp_count: u32, garp_gap: Duration) -> OnbootVes {
        OnbootVes {
            ves,
            garp_count,
            garp_gap,
            health: None,
            repeats: None,
        }
    }

    /// Starts and stops the VEs through `health`, which watches them while they run.
    #[must_use]
    pub fn watched_by(mut self, health: super::health::VeSupervisor) -> OnbootVes {
        self.health = Some(health);
        self
    }

    /// The addresses of the VEs `running` (else of those crun runs) with the uplink
    /// they are announced on.
    async fn served(
        &self,
        running: Option<&[u32]>,
    ) -> Result<Vec<(crate::net::LinkInfo, Ipv4Addr)>, VeError> {
        let mut out = Vec::new();
        let running: Vec<u32> = match running {
            Some(r) => r.to_vec(),
            None => self
                .ves
                .listed()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, (s, _))| s == "running")
                .map(|(id, _)| id)
                .collect(),
        };
        for id in self.ves.ids()? {
            if !running.contains(&id) {
                continue;
            }
            let f = self.ves.file(id)?;
            let Some(up) = self.ves.layout.uplink_of(&f) else {
                continue;
            };
            let link = crate::net::link_info(&up).await.map_err(|source| {
                VeError::Net(VeNetError::Netlink {
                    id,
                    what: "looking up the uplink",
                    source,
                })
            })?;
            out.extend(f.ip_addresses.iter().map(|a| (link, *a)));
        }
        Ok(out)
    }

    /// One gratuitous ARP for every address of the VEs `running` (else of those crun
    /// runs) now, the rest in the background.
    async fn announce_all(
        &mut self,
        running: Option<&[u32]>,
    ) -> Result<(), crate::resources::ResourceError> {
        if let Some(r) = self.repeats.take() {
            r.cancel().await;
        }
        let served = self.served(running).await?;
        let send = move || {
            served
                .iter()
                .all(|(l, a)| crate::net::send_gratuitous_arp(l.index, l.mac, *a).is_ok())
        };
        send();
        self.repeats = Some(crate::resources::Repeats::spawn(
            self.garp_count,
            self.garp_gap,
            send,
        ));
        Ok(())
    }
}

impl crate::resources::Resource for OnbootVes {
    fn name(&self) -> String {
        "VEs with ONBOOT=yes".to_owned()
    }

    fn acquire(
        &mut self,
    ) -> crate::resources::BoxFuture<'_, Result<(), crate::resources::ResourceError>> {
        Box::pin(async move {
            let ves = &self.ves;
            let health = self.health.clone();
            let mut onboot = Vec::new();
            for id in ves.ids()? {
                if ves.file(id)?.onboot {
                    onboot.push(id);
                }
            }
            // One crun command tells the state of all (not one per VE), then all
            // start at once: each VE's crun commands and network set-up overlap the
            // others' instead of waiting for them.
            let listed = ves.listed().await;
            let mut jobs = tokio::task::JoinSet::new();
            for id in onboot {
                let (ves, health) = (ves.clone(), health.clone());
                let known = listed.as_ref().map(|l| l.get(&id).cloned());
                jobs.spawn(
                    async move { (id, start_onboot(&ves, health.as_ref(), id, known).await) },
                );
            }
            let mut started = Vec::new();
            let mut running = Vec::new();
            let mut failed = Vec::new();
            let mut broken = None;
            while let Some(done) = jobs.join_next().await {
                match done {
                    Ok((id, Ok(true))) => started.push(id),
                    Ok((id, Ok(false))) => running.push(id),
                    Ok((id, Err(e))) => failed.push((id, e)),
                    Err(e) => broken = Some(e.to_string()),
                }
            }
            if failed.is_empty() && broken.is_none() {
                running.extend(&started);
                return self.announce_all(Some(&running)).await;
            }
            let _ = stop_all(ves, health.as_ref(), &started, None).await;
            if failed.is_empty() {
                return Err(crate::resources::ResourceError::Task(
                    broken.unwrap_or_default(),
                ));
            }
            failed.sort_by_key(|(id, _)| *id);
            Err(VeError::NotStarted(failed).into())
        })
    }

    fn announce(
        &mut self,
    ) -> crate::resources::BoxFuture<'_, Result<(), crate::resources::ResourceError>> {
        Box::pin(self.announce_all(None))
    }

    /// A VE that did not stop still runs from the data area: `/vz`, the links into
    /// it and the replication stay up.
    fn failed_release_holds_earlier(&self) -> bool {
        true
    }

    fn release(
        &mut self,
    ) -> crate::resources::BoxFuture<'_, Result<(), crate::resources::ResourceError>> {
        Box::pin(async move {
            // Silence the announcements before the addresses go.
            if let Some(r) = self.repeats.take() {
                r.cancel().await;
            }
            let ves = &self.ves;
            let ids = ves.ids()?;
            // A watched VE is stopped whatever crun says of it; one crun command
            // tells which of the others run (not one per VE). Then all stop at once:
            // the release waits for the slowest VE, not for the sum of them.
            let health = self.health.as_ref();
            let listed = if ids.iter().all(|id| health.is_some_and(|h| h.watches(*id))) {
                None
            } else {
                ves.listed().await
            };
            let failed = stop_all(ves, health, &ids, listed.as_ref()).await;
            if failed.is_empty() {
                Ok(())
            } else {
                Err(VeError::NotStopped(failed).into())
            }
        })
    }
}

/// Starts VE `id` for the chain, through `health` when there is one: `true` when it
/// was started now, `false` when it was still running from before clusterd started
/// again (watched from now on).
async fn start_onboot(
    ves: &Ves,
    health: Option<&super::health::VeSupervisor>,
    id: u32,
    known: Option<CrunState>,
) -> Result<bool, VeError> {
    let pid = known
        .clone()
        .flatten()
        .map(|(_, pid)| pid)
        .filter(|p| *p > 0);
    let result = match health {
        Some(h) => h.start_known(id, known).await,
        None => match ves.plan_start(id, known).await {
            Ok(plan) => ves.launch(plan).await.map(drop),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => Ok(true),
        Err(VeError::Running(_)) => {
            if let Some(h) = health {
                h.adopt_pid(id, pid);
            }
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Stops the VEs `ids` at once as the services are released (or a takeover is
/// undone), each as [`stop_for_release`] does, and returns when every stop has ended:
/// nothing below the VEs in the chain is taken down while one of them is still being
/// stopped. `listed` is what one `crun list` said of all VEs, when the caller asked.
/// The VEs that did not stop, by number, each with why.
async fn stop_all(
    ves: &Ves,
    health: Option<&super::health::VeSupervisor>,
    ids: &[u32],
    listed: Option<&BTreeMap<u32, (String, u32)>>,
) -> Vec<(u32, VeError)> {
    let mut jobs = tokio::task::JoinSet::new();
    let mut tasks = BTreeMap::new();
    for &id in ids {
        let (ves, health) = (ves.clone(), health.cloned());
        let known = listed.map(|l| l.get(&id).cloned());
        let task =
            jobs.spawn(async move { stop_for_release(&ves, health.as_ref(), id, known).await });
        tasks.insert(task.id(), id);
    }
    let mut failed = Vec::new();
    while let Some(done) = jobs.join_next_with_id().await {
        match done {
            Ok((_, Ok(()))) => {}
            Ok((task, Err(e))) => failed.extend(tasks.get(&task).map(|id| (*id, e))),
            Err(e) => failed.extend(tasks.get(&e.id()).map(|id| {
                (
                    *id,
                    VeError::Task {
                        id: *id,
                        detail: e.to_string(),
                    },
                )
            })),
        }
    }
    failed.sort_by_key(|(id, _)| *id);
    failed
}

/// Stops VE `id` as the services are released (failover, switchover, shutdown):
/// through `health` so that it is not restarted (also a VE waiting for its restart:
/// it must not come back), else directly when it runs. `known` is crun's state of it
/// when the caller asked already (`Some(None)`: crun does not know it).
async fn stop_for_release(
    ves: &Ves,
    health: Option<&super::health::VeSupervisor>,
    id: u32,
    known: Option<CrunState>,
) -> Result<(), VeError> {
    let grace = Duration::from_secs(10);
    let stop = health.is_some_and(|h| h.watches(id))
        || match known {
            Some(state) => state,
            None => ves.state_async(id).await,
        }
        .is_some_and(|(s, _)| s == "running");
    match health {
        _ if !stop => Ok(()),
        Some(h) => {
            h.stop(id, grace, tandem_core::ve_health::StopCause::Release)
                .await
        }
        None => ves.stop(id, grace).await,
    }
}

fn container(id: u32) -> String {
    format!("ve{id}")
}

/// What [`Ves::plan_start`] found: the VE's file and whether crun still knows an
/// earlier run of it (to be deleted first).
#[derive(Debug)]
pub(crate) struct StartPlan {
    id: u32,
    ve: VeFile,
    id_base: u32,
    leftover: bool,
}

/// The status and pid of `crun state`'s answer.
fn parse_state(json: &[u8]) -> Option<(String, u32)> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let status = v.get("status")?.as_str()?.to_owned();
    let pid = v
        .get("pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0);
    Some((status, pid))
}

/// A VE's state as crun reports it (status and the pid of its first process), `None`
/// when crun does not know the VE.
pub(crate) type CrunState = Option<(String, u32)>;

/// The VEs (by number) of `crun list --format json`'s answer with their status and
/// first process's pid; containers that are no VE are left out. `None` for an
/// answer that is no list.
fn parse_list(json: &[u8]) -> Option<BTreeMap<u32, (String, u32)>> {
    let Ok(serde_json::Value::Array(all)) = serde_json::from_slice(json) else {
        return None;
    };
    Some(
        all.iter()
            .filter_map(|c| {
                let id = c.get("id")?.as_str()?.strip_prefix("ve")?.parse().ok()?;
                let status = c.get("status")?.as_str()?.to_owned();
                let pid = c
                    .get("pid")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0);
                Some((id, (status, pid)))
            })
            .collect(),
    )
}

/// A pidfd of process `pid`; `None` when it has ended.
pub(crate) fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Waits until the process of `fd` (a pidfd) has ended.
pub(crate) async fn wait_exit(fd: std::os::fd::OwnedFd) -> std::io::Result<()> {
    let afd = crate::net::register_readable(fd)?;
    let _ready = afd.readable().await?;
    Ok(())
}

/// Replaces (or appends) `KEY="VALUE"` lines, keeping everything else as written.
#[must_use]
pub fn set_keys(text: &str, pairs: &[(&str, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (key, value) in pairs {
        let line = format!("{key}=\"{value}\"");
        let prefix = format!("{key}=");
        match lines
            .iter_mut()
            .find(|l| l.trim_start().starts_with(&prefix))
        {
            Some(l) => *l = line,
            None => lines.push(line),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), VeError> {
    crate::write_atomic(path, data, 0o644).map_err(io("writing", path))
}

/// The built-in template: busybox, an init that starts a web server on port 80
/// serving `/var/www`, and two CGI programs: `append?TEXT` adds a line to
/// `/var/data/log` and answers only after it is on disk (fsync), `read` returns
/// the file.
/// `/etc/shadow` with `user`'s hash and last-change day replaced; `None`
/// when the user has no line.
fn shadow_with(text: &str, user: &str, hash: &str, days: u64) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(text.len() + hash.len());
    for line in text.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 3 && fields[0] == user && !found {
            found = true;
            let day = days.to_string();
            fields[1] = hash;
            fields[2] = &day;
            out.push_str(&fields.join(":"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    found.then_some(out)
}

fn minimal_rootfs(root: &Path, busybox: &Path) -> Result<(), VeError> {
    use std::os::unix::fs::PermissionsExt as _;
    for d in [
        "bin",
        "sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "root",
        "var/www/cgi-bin",
        "var/data",
    ] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
    }
    let bb = root.join("bin/busybox");
    std::fs::copy(busybox, &bb).map_err(io("copying", busybox))?;
    let files: &[(&str, &str, u32)] = &[
        (
            "sbin/init",
            // The VE's PID 1: the kernel delivers it only signals it handles,
            // so it ends the web server on TERM itself (a stop takes no grace
            // period), its handler set first so that a stop right after the
            // start is not lost. The applets' links are made at the first start
            // only.
            "#!/bin/busybox sh\ntrap 'kill $p 2>/dev/null; exit 0' TERM INT\n[ -e /bin/httpd ] || /bin/busybox --install -s /bin\nexport PATH=/bin\nhttpd -f -p 80 -h /var/www &\np=$!\nwait $p\n",
            0o755,
        ),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
        ("etc/group", "root:x:0:\n", 0o644),
        // Locked until `tandem ve passwd` sets a password.
        ("etc/shadow", "root:!:20000:0:99999:7:::\n", 0o600),
        ("var/www/index.html", "tandem VE\n", 0o644),
        (
            "var/www/cgi-bin/append",
            "#!/bin/sh\necho \"$QUERY_STRING\" >> /var/data/log && sync /var/data/log && sync /var/data && printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\n",
            0o755,
        ),
        (
            "var/www/cgi-bin/read",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\ncat /var/data/log 2>/dev/null\n",
            0o755,
        ),
    ];
    for (p, text, mode) in files {
        let path = root.join(p);
        std::fs::write(&path, text).map_err(io("writing", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
            .map_err(io("setting the mode of", &path))?;
    }
    std::os::unix::fs::symlink("busybox", root.join("bin/sh"))
        .map_err(io("linking", &root.join("bin/sh")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(d: &Path) -> Layout {
        Layout {
            conf_dir: d.join("etc"),
            private_dir: d.join("private"),
            template_dir: d.join("template"),
            run_dir: d.join("run"),
            crun: PathBuf::from("/nonexistent/crun"),
            busybox: std::env::current_exe().expect("own path"),
            uplinks: vec![
                (Ipv4Addr::new(192, 168, 255, 0), 24, "eth1".into()),
                (Ipv4Addr::new(0, 0, 0, 0), 0, "eth0".into()),
            ],
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tandem-ve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn create_set_destroy_and_refusals() {
        let d = scratch("life");
        let ves = Ves { layout: layout(&d) };
        let ip = [Ipv4Addr::new(10, 0, 0, 50)];
        ves.create(
            101,
            MINIMAL_TEMPLATE,
            "NUMPROC=\"64\"\nONBOOT=\"yes\"\n",
            "web",
            &ip,
        )
        .expect("created");
        assert!(matches!(
            ves.create(101, MINIMAL_TEMPLATE, "", "web", &ip),
            Err(VeError::Exists(101))
        ));
        let f = ves.file(101).expect("readable");
        assert_eq!(f.hostname.as_deref(), Some("web"));
        assert_eq!(f.ip_addresses, ip);
        assert_eq!(f.numproc.limit, Some(64));
        assert!(d.join("private/101/var/www/cgi-bin/append").is_file());
        if rustix::process::geteuid().is_root() {
            // Given the VE's user IDs now, not at its first start.
            use std::os::unix::fs::MetadataExt as _;
            let base = super::super::idmap::id_base(101).expect("a range");
            let m = std::fs::symlink_metadata(d.join("private/101/bin/sh")).expect("stat");
            assert_eq!((m.uid(), m.gid()), (base, base));
            assert!(super::super::idmap::marker(&d.join("private"), 101).is_file());
        }

        ves.set(101, &[("HOSTNAME".into(), "shop".into())])
            .expect("set");
        assert_eq!(ves.file(101).expect("ok").hostname.as_deref(), Some("shop"));
        let before = std::fs::read(d.join("etc/ve-101.conf")).expect("read");
        let e = ves
            .set(101, &[("NUMPROC".into(), "lots".into())])
            .expect_err("bad value");
        assert!(e.to_string().contains("NUMPROC"), "{e}");
        assert_eq!(
            std::fs::read(d.join("etc/ve-101.conf")).expect("read"),
            before
        );

        let e = ves
            .create(102, "centos-9", "", "x", &[])
            .expect_err("no template");
        assert!(
            e.to_string().contains("no OS template centos-9")
                && e.to_string().contains(MINIMAL_TEMPLATE),
            "{e}"
        );
        assert!(!d.join("private/102").exists() && !d.join("private/102.partial").exists());
        let e = ves
            .create(103, MINIMAL_TEMPLATE, "CPUUNITS=\"1\"\n", "x", &[])
            .expect_err("bad sample");
        assert!(e.to_string().contains("CPUUNITS"), "{e}");
        assert!(!d.join("private/103").exists());

        let rows = ves.list().expect("list");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "stopped");
        let table = format_list(&rows);
        assert!(
            table.starts_with("  VEID  NPROC STATUS   IP_ADDR         HOSTNAME\n"),
            "{table}"
        );
        assert!(
            table.contains("   101      - stopped  10.0.0.50       shop"),
            "{table}"
        );

        ves.destroy(101).expect("destroyed");
        assert!(matches!(ves.destroy(101), Err(VeError::Unknown(101))));
        assert!(!d.join("private/101").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn templates_cannot_escape_the_root() {
        let d = scratch("escape");
        let ves = Ves { layout: layout(&d) };
        std::fs::create_dir_all(d.join("template")).expect("mkdir");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "etc", "/tmp").expect("link");
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        b.append_data(&mut h, "etc/owned", &b"evil"[..])
            .expect("member");
        std::fs::write(d.join("template/evil.tar"), b.into_inner().expect("tar")).expect("write");
        let e = ves.create(104, "evil", "", "x", &[]).expect_err("refused");
        assert!(e.to_string().contains("template"), "{e}");
        assert!(!std::path::Path::new("/tmp/owned").exists());
        assert!(!d.join("private/104").exists() && !d.join("etc/ve-104.conf").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn shadow_lines_are_replaced_for_the_user_only() {
        let t = "root:!:20000:0:99999:7:::\nweb:*:20000:0:99999:7:::\n";
        let n = shadow_with(t, "web", "$6$salt$hash", 20500).unwrap();
        assert_eq!(
            n,
            "root:!:20000:0:99999:7:::\nweb:$6$salt$hash:20500:0:99999:7:::\n"
        );
        assert_eq!(shadow_with(t, "nobody", "$6$x", 1), None);
    }

    #[test]
    fn a_password_goes_into_the_ves_shadow_and_never_through_a_link() {
        let d = std::env::temp_dir().join(format!("tandem-ve-pw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let ves = Ves {
            layout: Layout {
                conf_dir: d.join("conf"),
                private_dir: d.join("private"),
                template_dir: d.join("template"),
                run_dir: d.join("run"),
                crun: PathBuf::from("/nonexistent/crun"),
                busybox: PathBuf::from("/nonexistent/busybox"),
                uplinks: Vec::new(),
            },
        };
        std::fs::create_dir_all(d.join("conf")).unwrap();
        std::fs::write(d.join("conf/ve-7.conf"), "HOSTNAME=\"x\"\n").unwrap();
        let etc = d.join("private/7/etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("shadow"), "root:!:1:0:99999:7:::\n").unwrap();
        ves.set_password(7, "root", "good password").unwrap();
        let text = std::fs::read_to_string(etc.join("shadow")).unwrap();
        let hash = text.split(':').nth(1).unwrap();
        assert!(hash.starts_with("$6$"), "{text}");
        assert!(sha_crypt::sha512_check("good password", hash).is_ok());
        assert!(matches!(
            ves.set_password(7, "nobody", "good password"),
            Err(VeError::Password(_))
        ));
        assert!(matches!(
            ves.set_password(7, "root", "line\nbreak"),
            Err(VeError::Password(_))
        ));
        assert!(matches!(
            ves.set_password(8, "root", "good password"),
            Err(VeError::Unknown(8))
        ));
        // A VE's root user points its shadow at a file of the node: refused,
        // the node's file untouched.
        let outside = d.join("node-file");
        std::fs::write(&outside, "root:keep:1:0:99999:7:::\n").unwrap();
        std::fs::remove_file(etc.join("shadow")).unwrap();
        std::os::unix::fs::symlink(&outside, etc.join("shadow")).unwrap();
        assert!(ves.set_password(7, "root", "good password").is_err());
        assert_eq!(
            std::fs::read_to_string(&outside).unwrap(),
            "root:keep:1:0:99999:7:::\n"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn crun_list_gives_the_running_ves_with_their_pids() {
        // As crun 1.8 answers `crun list --format json`.
        let json = br#"[
{"id": "ve101", "pid": 4242, "status": "running", "bundle": "/run/tandem/ve/101", "created": "2026-12-07T11:50:01.000000Z", "owner": "root"},
{"id": "ve1", "pid": 0, "status": "stopped", "bundle": "/run/tandem/ve/1", "created": "2026-12-07T11:50:01.000000Z", "owner": "root"},
{"id": "ve7", "pid": 4300, "status": "created", "bundle": "/run/tandem/ve/7", "created": "2026-12-07T11:50:01.000000Z", "owner": "root"},
{"id": "builder", "pid": 4400, "status": "running", "bundle": "/tmp/b", "created": "2026-12-07T11:50:01.000000Z", "owner": "root"}
]"#;
        let listed = parse_list(json).expect("a list");
        assert_eq!(
            listed.into_iter().collect::<Vec<_>>(),
            [
                (1, ("stopped".to_owned(), 0)),
                (7, ("created".to_owned(), 4300)),
                (101, ("running".to_owned(), 4242))
            ]
        );
        assert_eq!(parse_list(b"[\n\n]"), Some(BTreeMap::new()));
        assert_eq!(parse_list(b"no json"), None);
        assert_eq!(
            parse_state(br#"{"ociVersion": "1.0.0", "id": "ve1", "pid": 77, "status": "running"}"#),
            Some(("running".to_owned(), 77))
        );
    }

    #[test]
    fn uplink_follows_the_address() {
        let l = layout(Path::new("/x"));
        assert_eq!(l.uplink_for(Ipv4Addr::new(192, 168, 255, 3)), Some("eth1"));
        assert_eq!(l.uplink_for(Ipv4Addr::new(10, 1, 2, 3)), Some("eth0"));
        assert_eq!(parse_id("101").expect("ok"), 101);
        assert!(parse_id("0").is_err() && parse_id("x").is_err());
    }
}
