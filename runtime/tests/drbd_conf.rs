//! The resource file clusterd writes is read by the real `drbdadm` (8.4 back-end of
//! drbd-utils) the way a node runs it: `drbdadm -d up` prints the `drbdsetup` calls it
//! would make, which must carry the configured addresses, secret and policies.

use std::process::Command;

use tandem_config::{ApplianceConfig, SplitBrainPolicy};
use tandem_runtime::drbd::{Tuning, render_resource};

const DRBDADM: &str = "/lib/drbd/drbdadm-84";

/// Runs `drbdadm -c FILE ARGS` as host `host` (DRBD picks its `on` section by the host
/// name), in a UTS namespace of its own so the machine's name is untouched.
fn drbdadm(conf: &str, host: &str, args: &str) -> (bool, String) {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tandem-drbd-conf-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("r0.res");
    std::fs::write(&file, conf).expect("write resource file");
    let out = Command::new("unshare")
        .args(["-u", "sh", "-c"])
        .arg(format!(
            "hostname {host} && {DRBDADM} -c {} {args} 2>&1",
            file.display()
        ))
        .output()
        .expect("unshare runs (needs root: run `cargo xtask test`)");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn config(policy: SplitBrainPolicy) -> ApplianceConfig {
    let mut cfg = ApplianceConfig::from_toml(include_str!("../../config/tests/cases/minimal.toml"))
        .expect("golden configuration is valid");
    cfg.replication.split_brain = policy;
    cfg
}

#[test]
fn drbdadm_accepts_the_resource_on_both_nodes() {
    let tuning = Tuning {
        ping_int_s: 2,
        ping_timeout_ds: 10,
        connect_int_s: 2,
    };
    for (policy, sb1) in [
        (SplitBrainPolicy::Disconnect, "--after-sb-1pri=disconnect"),
        (
            SplitBrainPolicy::DiscardZeroChanges,
            "--after-sb-1pri=consensus",
        ),
        (
            SplitBrainPolicy::DiscardSecondary,
            "--after-sb-1pri=discard-secondary",
        ),
    ] {
        let cfg = config(policy);
        let text = render_resource(&cfg, tuning);
        for (host, me, peer) in [
            ("alpha", "192.168.255.1", "192.168.255.2"),
            ("beta", "192.168.255.2", "192.168.255.1"),
        ] {
            let (ok, out) = drbdadm(&text, host, "-d up r0");
            assert!(ok, "drbdadm refused the resource as {host}:\n{out}\n{text}");
            let connect = out
                .lines()
                .find(|l| l.contains(" connect r0 "))
                .unwrap_or_else(|| panic!("no connect call:\n{out}"));
            assert!(
                connect.contains(&format!("ipv4:{me}:7788 ipv4:{peer}:7788")),
                "{connect}"
            );
            assert!(connect.contains("--protocol=C"), "{connect}");
            assert!(connect.contains("--ping-int=2"), "{connect}");
            assert!(connect.contains(sb1), "{connect}");
            assert!(
                connect.contains(&format!(
                    "--shared-secret={}",
                    cfg.replication.shared_secret.expose()
                )),
                "{connect}"
            );
            assert!(out.contains("--fencing=resource-only"), "{out}");
        }
    }
}

#[test]
fn drbdadm_rejects_a_host_that_is_not_in_the_cluster() {
    let text = render_resource(&config(SplitBrainPolicy::Disconnect), Tuning::default());
    let (ok, out) = drbdadm(&text, "gamma", "-d up r0");
    assert!(!ok, "{out}");
    assert!(out.contains("not defined in your config"), "{out}");
}

#[test]
fn the_agents_file_with_its_global_section_is_accepted() {
    let cfg = config(SplitBrainPolicy::Disconnect);
    let dir = std::env::temp_dir().join(format!("tandem-drbd-agent-{}", std::process::id()));
    let agent = tandem_runtime::replication::Replication::new(&cfg, &dir);
    agent
        .write_config(&cfg, Tuning::default())
        .expect("writes the file");
    let text = std::fs::read_to_string(&agent.conf).expect("written");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        text.starts_with("global {\n    usage-count no;\n}\n"),
        "{text}"
    );
    let (ok, out) = drbdadm(&text, "alpha", "-d create-md r0");
    assert!(ok, "{out}");
    assert!(
        out.contains("drbdmeta 0 v08 /dev/disk/by-partlabel/data internal create-md"),
        "{out}"
    );
}
