//! A VE as an OCI runtime bundle: the `config.json` crun runs, with the VE file's
//! limits translated to cgroup v2.
//!
//! | vz parameter | cgroup v2 |
//! |---|---|
//! | `NUMPROC` limit | `pids.max` |
//! | `PHYSPAGES` / `PRIVVMPAGES` limit (the smaller) | `memory.max` |
//! | `SWAPPAGES` limit | `memory.swap.max` |
//! | `VMGUARPAGES` barrier | `memory.low` |
//! | `OOMGUARPAGES` barrier | `memory.min` |
//! | `CPUUNITS` (vz default 1000) | `cpu.weight` (cgroup default 100), proportional |
//! | `CPULIMIT` percent of one CPU, else `CPUS` | `cpu.max` |
//! | `NUMFILE` | `RLIMIT_NOFILE` |
//!
//! `DISKSPACE` and `DISKINODES` are not enforced (the data area has no per-VE quota);
//! they are reported with the beancounter-only parameters.
//!
//! Containment: the VE's root user has [`DEFAULT_CAPABILITIES`] (Docker's default set
//! without `CAP_NET_RAW`, `CAP_MKNOD` and `CAP_SETFCAP`) plus what the file's
//! `CAPABILITY` grants of those three, `noNewPrivileges` (no set-user-ID program or
//! file capability raises them), the seccomp filter of [`super::seccomp`], its own
//! PID, IPC, UTS, mount, cgroup and network namespaces, and no device but the few
//! crun creates (null, zero, full, random, urandom, tty), and a user namespace of its
//! own (its IDs 0..65535 are the node's range of [`super::idmap`]).

use std::path::Path;

use serde_json::{Value, json};

use super::conf::{PAGE, VeFile};

/// The capabilities of a VE's root user: Docker's default set without `CAP_NET_RAW`
/// (raw sockets: forged packets on the node's LAN), `CAP_MKNOD` and `CAP_SETFCAP`; a
/// VE file grants those back with `CAPABILITY`.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_AUDIT_WRITE",
];

/// The capabilities of VE `ve`: the default set and those its file grants.
#[must_use]
pub fn capabilities(ve: &VeFile) -> Vec<String> {
    DEFAULT_CAPABILITIES
        .iter()
        .map(|c| (*c).to_owned())
        .chain(ve.capabilities.iter().cloned())
        .collect()
}

/// The CFS period used for `cpu.max`, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// What the bundle needs beyond the VE file.
#[derive(Debug, Clone)]
pub struct BundleSpec<'a> {
    /// VE number.
    pub id: u32,
    /// The VE's root filesystem (absolute).
    pub rootfs: &'a Path,
    /// The program started as the VE's first process, with its arguments.
    pub args: &'a [String],
    /// Host name inside the VE.
    pub hostname: &'a str,
    /// A network namespace prepared by the node (`/run/netns/ve<ID>`), or `None` for
    /// a fresh, empty one.
    pub netns: Option<&'a Path>,
    /// The node's user and group ID the VE's 0 maps to ([`super::idmap::id_base`]).
    pub id_base: u32,
}

/// cgroup path of a VE, below the node's own cgroup tree.
#[must_use]
pub fn cgroup_path(id: u32) -> String {
    format!("/tandem.slice/ve-{id}")
}

/// `cpu.weight` for vz's `CPUUNITS`: 1000 (vz's default) is 100 (cgroup's default).
#[must_use]
pub fn cpu_weight(cpuunits: u64) -> u64 {
    (cpuunits / 10).clamp(1, 10_000)
}

/// The OCI runtime configuration of a VE.
#[must_use]
pub fn config_json(ve: &VeFile, spec: &BundleSpec<'_>) -> Value {
    let mut memory = serde_json::Map::new();
    let max_pages = [ve.physpages.limit, ve.privvmpages.limit]
        .into_iter()
        .flatten()
        .min();
    let max_bytes = max_pages.map(|p| p.saturating_mul(PAGE));
    if let Some(b) = max_bytes {
        memory.insert("limit".into(), json!(b));
        // OCI's swap is memory plus swap.
        if let Some(s) = ve.swappages.limit {
            memory.insert(
                "swap".into(),
                json!(b.saturating_add(s.saturating_mul(PAGE))),
            );
        }
    }
    if let Some(g) = ve.vmguarpages.barrier.filter(|g| *g > 0) {
        memory.insert("reservation".into(), json!(g.saturating_mul(PAGE)));
    }
    let mut unified = serde_json::Map::new();
    if let Some(g) = ve.oomguarpages.barrier.filter(|g| *g > 0) {
        unified.insert(
            "memory.min".into(),
            json!(g.saturating_mul(PAGE).to_string()),
        );
    }
    unified.insert(
        "cpu.weight".into(),
        json!(cpu_weight(ve.cpuunits.unwrap_or(1000)).to_string()),
    );
    let quota = match (ve.cpulimit, ve.cpus) {
        (Some(pct), _) if pct > 0 => Some(pct * CPU_PERIOD_US / 100),
        (_, Some(n)) => Some(n * CPU_PERIOD_US),
        _ => None,
    };
    let mut resources = serde_json::Map::new();
    resources.insert(
        "devices".into(),
        json!([{ "allow": false, "access": "rwm" }]),
    );
    if !memory.is_empty() {
        resources.insert("memory".into(), Value::Object(memory));
    }
    if let Some(q) = quota {
        resources.insert("cpu".into(), json!({ "quota": q, "period": CPU_PERIOD_US }));
    }
    if let Some(p) = ve.numproc.limit {
        resources.insert("pids".into(), json!({ "limit": p }));
    }
    resources.insert("unified".into(), Value::Object(unified));

    let mut rlimits = Vec::new();
    if let Some(l) = ve.numfile.limit {
        rlimits.push(json!({
            "type": "RLIMIT_NOFILE",
            "hard": l,
            "soft": ve.numfile.barrier.unwrap_or(l),
        }));
    }
    let mut namespaces = vec![
        json!({"type": "user"}),
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    namespaces.push(match spec.netns {
        Some(p) => json!({"type": "network", "path": p}),
        None => json!({"type": "network"}),
    });
    let caps = capabilities(ve);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": spec.args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=tandem"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "rlimits": rlimits,
            "noNewPrivileges": true
        },
        "root": { "path": spec.rootfs, "readonly": false },
        "hostname": spec.hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]}
        ],
        "linux": {
            "uidMappings": [{ "containerID": 0, "hostID": spec.id_base, "size": super::idmap::RANGE }],
            "gidMappings": [{ "containerID": 0, "hostID": spec.id_base, "size": super::idmap::RANGE }],
            "cgroupsPath": cgroup_path(spec.id),
            "resources": resources,
            "namespaces": namespaces,
            "seccomp": super::seccomp::profile(),
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn spec<'a>(rootfs: &'a Path, args: &'a [String]) -> BundleSpec<'a> {
        BundleSpec {
            id: 101,
            rootfs,
            args,
            hostname: "web",
            netns: None,
            id_base: 7_000_000,
        }
    }

    #[test]
    fn limits_become_cgroup_v2_settings() {
        let ve = VeFile::parse(
            "NUMPROC=\"64\"\nPHYSPAGES=\"0:256M\"\nPRIVVMPAGES=\"1G\"\nSWAPPAGES=\"0:64M\"\nVMGUARPAGES=\"128M:unlimited\"\nOOMGUARPAGES=\"32M:unlimited\"\nCPUUNITS=\"2000\"\nCPULIMIT=\"50\"\nNUMFILE=\"512:1024\"\n",
        )
        .expect("parses");
        let root = PathBuf::from("/vz/root/101");
        let args = vec!["/sbin/init".to_owned()];
        let c = config_json(&ve, &spec(&root, &args));
        let r = &c["linux"]["resources"];
        assert_eq!(r["pids"]["limit"], 64);
        assert_eq!(r["memory"]["limit"], 256u64 << 20);
        assert_eq!(r["memory"]["swap"], (256u64 + 64) << 20);
        assert_eq!(r["memory"]["reservation"], 128u64 << 20);
        assert_eq!(r["unified"]["memory.min"], (32u64 << 20).to_string());
        assert_eq!(r["unified"]["cpu.weight"], "200");
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(c["process"]["rlimits"][0]["hard"], 1024);
        assert_eq!(c["process"]["rlimits"][0]["soft"], 512);
        assert_eq!(c["linux"]["cgroupsPath"], "/tandem.slice/ve-101");
        assert_eq!(c["hostname"], "web");
        assert_eq!(c["root"]["path"], "/vz/root/101");
    }

    #[test]
    fn unlimited_sample_sets_no_hard_limits() {
        let mended = super::super::conf::tests::TKUNLIMITED
            .replace("CPUUNITS=\"500000\n", "CPUUNITS=\"500000\"\n");
        let ve = VeFile::parse(&mended).expect("parses");
        let root = PathBuf::from("/r");
        let args = vec!["/sbin/init".to_owned()];
        let c = config_json(&ve, &spec(&root, &args));
        let r = &c["linux"]["resources"];
        assert!(r.get("memory").is_some_and(|m| m.get("limit").is_none()));
        assert!(r.get("cpu").is_none());
        assert_eq!(r["pids"]["limit"], 32567);
        assert_eq!(r["unified"]["cpu.weight"], "10000");
        assert_eq!(c["process"]["rlimits"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn containment_is_in_the_configuration() {
        let root = PathBuf::from("/r");
        let args = vec!["/sbin/init".to_owned()];
        let c = config_json(&VeFile::default(), &spec(&root, &args));
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(c["linux"]["namespaces"][0]["type"], "user");
        assert_eq!(c["linux"]["uidMappings"][0]["hostID"], 7_000_000);
        assert_eq!(c["linux"]["gidMappings"][0]["size"], 65_536);
        let caps = c["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("a list");
        for gone in ["CAP_NET_RAW", "CAP_MKNOD", "CAP_SETFCAP", "CAP_SYS_ADMIN"] {
            assert!(!caps.iter().any(|c| c == gone), "{gone} granted");
        }
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        assert_eq!(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        let ve = VeFile::parse("CAPABILITY=\"net_raw:on\"\n").expect("parses");
        let c = config_json(&ve, &spec(&root, &args));
        for set in ["bounding", "effective", "permitted"] {
            assert!(
                c["process"]["capabilities"][set]
                    .as_array()
                    .expect("a list")
                    .iter()
                    .any(|c| c == "CAP_NET_RAW"),
                "{set}"
            );
        }
    }

    #[test]
    fn cpus_cap_cpu_time_when_there_is_no_percent_limit() {
        let ve = VeFile::parse("CPUS=\"2\"\nCPULIMIT=\"0\"\n").expect("parses");
        let root = PathBuf::from("/r");
        let args = vec!["/bin/sh".to_owned()];
        let c = config_json(&ve, &spec(&root, &args));
        assert_eq!(c["linux"]["resources"]["cpu"]["quota"], 200_000);
    }
}
