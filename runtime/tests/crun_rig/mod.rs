//! VEs under the real crun for the integration tests: a scratch data area (VE files,
//! root filesystems from the built-in template, bundles) and a crun of the test's own
//! (its state in the scratch directory, so no other crun user on the machine sees
//! these VEs). Everything it started is killed and removed when it drops.
//!
//! cgroups: on a node `/sys/fs/cgroup` is cgroup v2 and crun sets each VE's limits
//! there. A test machine may mount the hybrid layout (v1 controllers, an empty v2
//! tree at `/sys/fs/cgroup/unified`), which crun refuses; there the rig's crun runs
//! in a mount namespace whose `/sys/fs/cgroup` is the v2 tree, with
//! `--cgroup-manager=disabled`. Namespaces, capabilities, `noNewPrivileges` and the
//! seccomp filter — what these tests check — are the same either way; the limits
//! are checked by the unit tests of the OCI configuration.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness shared by several targets: a failed unwrap is a failed run"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use tandem_runtime::ve::manager::{Layout, MINIMAL_TEMPLATE, Ves};

/// The environment variable that makes a test binary copied into a VE run its probe.
pub const PROBE_ENV: &str = "TANDEM_VE_PROBE";

pub struct CrunRig {
    pub dir: tempfile::TempDir,
    pub ves: Ves,
    wrapper: PathBuf,
    created: Mutex<Vec<u32>>,
}

fn need(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "the VE tests need {path}: install the Debian package {package} (apt-get install -y {package})"
    );
}

impl CrunRig {
    /// A rig with nothing in it yet. Needs root, crun and busybox.
    pub fn new() -> CrunRig {
        assert!(
            rustix::process::geteuid().is_root(),
            "the VE tests run crun and need root (cargo xtask test runs them as root)"
        );
        need("/usr/bin/crun", "crun");
        need("/bin/busybox", "busybox-static");
        need("/usr/bin/unshare", "util-linux");
        let dir = tempfile::Builder::new()
            .prefix("tandem-crun-")
            .tempdir()
            .unwrap();
        let state = dir.path().join("crun-state");
        std::fs::create_dir_all(&state).unwrap();
        let wrapper = dir.path().join("crun");
        let calls = dir.path().join("crun-calls");
        let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
        let script = if hybrid {
            format!(
                "#!/bin/sh\necho \"$1\" >> {}\nexec unshare -m sh -c 'mount --make-rprivate / && mount --bind /sys/fs/cgroup/unified /sys/fs/cgroup && exec /usr/bin/crun --cgroup-manager=disabled --root {} \"$@\"' crun \"$@\"\n",
                calls.display(),
                state.display()
            )
        } else {
            format!(
                "#!/bin/sh\necho \"$1\" >> {}\nexec /usr/bin/crun --root {} \"$@\"\n",
                calls.display(),
                state.display()
            )
        };
        std::fs::write(&wrapper, script).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        let ves = Ves {
            layout: Layout {
                conf_dir: d.join("ves"),
                private_dir: d.join("private"),
                template_dir: d.join("template"),
                run_dir: d.join("run"),
                crun: wrapper.clone(),
                busybox: PathBuf::from("/bin/busybox"),
                uplinks: Vec::new(),
            },
        };
        CrunRig {
            dir,
            ves,
            wrapper,
            created: Mutex::new(Vec::new()),
        }
    }

    /// Creates VE `id` from the built-in template with the VE file `conf`.
    pub fn create(&self, id: u32, conf: &str) {
        self.create_at(id, conf, &[]);
    }

    /// Creates VE `id` from the built-in template with the VE file `conf` and the
    /// addresses `ips`.
    pub fn create_at(&self, id: u32, conf: &str, ips: &[std::net::Ipv4Addr]) {
        self.ves
            .create(id, MINIMAL_TEMPLATE, conf, &format!("ve{id}"), ips)
            .unwrap();
        self.created.lock().unwrap().push(id);
    }

    /// The crun commands run since the rig was made or the last call of this (the
    /// first argument of each, in order), and forgets them.
    pub fn take_crun_calls(&self) -> Vec<String> {
        let path = self.dir.path().join("crun-calls");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        text.lines().map(str::to_owned).collect()
    }

    pub fn private(&self, id: u32) -> PathBuf {
        self.ves.layout.private_dir.join(id.to_string())
    }

    /// Runs the rig's crun.
    pub fn crun(&self, args: &[&str]) -> Output {
        Command::new(&self.wrapper)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The pid of VE `id`'s first process (in the node's pid namespace).
    pub fn init_pid(&self, id: u32) -> Option<i32> {
        let out = self.crun(&["state", &format!("ve{id}")]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let pid = v.get("pid")?.as_i64()?;
        (v.get("status")?.as_str()? == "running" && pid > 0).then(|| i32::try_from(pid).ok())?
    }

    /// Copies this test binary and the shared libraries it needs into VE `id`'s root
    /// as `/probe`, so that it can run inside the VE.
    pub fn install_probe(&self, id: u32) {
        let root = self.private(id);
        let exe = std::env::current_exe().unwrap();
        let ldd = Command::new("ldd").arg(&exe).output().unwrap();
        assert!(ldd.status.success(), "ldd {}", exe.display());
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let path = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from);
            if let Some(p) = path {
                let dst = root.join(p.strip_prefix("/").unwrap());
                std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
                std::fs::copy(&p, &dst).unwrap();
            }
        }
        std::fs::copy(&exe, root.join("probe")).unwrap();
    }

    /// Runs the probe test `name` of this binary inside VE `id` as its root user; its
    /// standard output.
    pub fn run_probe(&self, id: u32, name: &str, env: &[(&str, String)]) -> String {
        let mut args = vec![
            "exec".to_owned(),
            // As `tandem ve exec` enters a VE.
            "--no-new-privs".to_owned(),
            "--env".to_owned(),
            format!("{PROBE_ENV}=1"),
        ];
        for (k, v) in env {
            args.push("--env".to_owned());
            args.push(format!("{k}={v}"));
        }
        args.extend([
            format!("ve{id}"),
            "/probe".to_owned(),
            "--exact".to_owned(),
            name.to_owned(),
            "--nocapture".to_owned(),
            "--test-threads=1".to_owned(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.crun(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "the probe in VE {id} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for CrunRig {
    fn drop(&mut self) {
        for id in self.created.lock().unwrap().iter() {
            let name = format!("ve{id}");
            let _ = self.crun(&["kill", "-a", &name, "KILL"]);
            let _ = self.crun(&["delete", "-f", &name]);
        }
    }
}
