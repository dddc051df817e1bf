//! The remote-support tunnel (R10) with the real OpenSSH on both ends, in the netns
//! rig of `rig`: clusterd of node1 (its configuration's `[support]` names a support
//! server in the LAN namespace), node1's own sshd (the files of
//! `tandem_runtime::sshd`, which then also listens on the loopback address), and a
//! real sshd as the vendor's support server, which admits the node's support key and
//! lets it forward a port. Switched on through clusterd (the request the console and
//! `tandem support on` send), the support engineer on the support server logs in to
//! node1's shell through the allocated port; the tunnel comes back by itself when the
//! support server restarts; switched off, the port is gone.
//!
//! Runs as root (namespaces; sshd). Needs Debian packages iproute2, socat,
//! openssh-server and openssh-client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

mod rig;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rig::{PING_NODE, Rig, config_text, need_tool, wait_until};
use tandem_api::{Client, Reply, Request, SupportView};
use tandem_config::schema::SupportConfig;
use tandem_config::{ApplianceConfig, NodeId};
use tandem_runtime::sshd;

const SSHD: &str = "/usr/sbin/sshd";
const SSH: &str = "/usr/bin/ssh";
/// The support server's port on the LAN namespace's address.
const SUPPORT_PORT: u16 = 2222;

/// sshd in a namespace; killed by its PID when dropped (`ip netns exec` execs sshd).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // The sessions' processes too (sshd forks one per connection, which outlives
        // the listener): a restart of the server ends its connections.
        for pid in descendants(self.0.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The processes below `pid` (all started by it or its children).
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        out.extend(descendants(c));
        out.push(c);
    }
    out
}

fn keygen(path: &Path, comment: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

fn start_sshd(ns: &str, config: &Path, log: &Path) -> Server {
    let t = Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        t.status.success(),
        "sshd -t {}: {}",
        config.display(),
        String::from_utf8_lossy(&t.stderr)
    );
    Server(
        Command::new("ip")
            .args(["netns", "exec", ns, SSHD, "-D", "-e", "-f"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// The vendor's support server: admits `client_key` for root and lets it forward a
/// port (on its own loopback address, as OpenSSH does by default).
fn support_server_config(dir: &Path, client_key: &str) -> PathBuf {
    std::fs::write(dir.join("authorized_keys"), format!("{client_key}\n")).unwrap();
    let c = format!(
        "ListenAddress {PING_NODE}:{SUPPORT_PORT}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nAllowUsers root\nPermitRootLogin prohibit-password\n\
         AuthenticationMethods publickey\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         UsePAM no\nAllowTcpForwarding remote\nGatewayPorts no\nX11Forwarding no\nPermitTTY no\n\
         ClientAliveInterval 5\nClientAliveCountMax 2\n",
        d = dir.display()
    );
    let path = dir.join("sshd_config");
    std::fs::write(&path, c).unwrap();
    path
}

fn support(client: &mut Client, request: &Request) -> SupportView {
    match client.call(request).unwrap() {
        Reply::Support(v) => v,
        other => panic!("{request:?}: {other:?}"),
    }
}

/// The support engineer on the support server: `ssh` to the forwarded `port`.
fn through_tunnel(ns: &str, port: u16, key: &Path, known: &Path, command: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, SSH, "-F", "/dev/null", "-p"])
        .arg(port.to_string())
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "root@127.0.0.1",
            command,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_support_engineer_reaches_the_nodes_shell_only_while_the_tunnel_is_on() {
    need_tool(SSHD, "openssh-server");
    need_tool(SSH, "openssh-client");
    let mut rig = Rig::new();
    // sshd's StrictModes refuses key files beneath a world-writable directory (/tmp).
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (node_dir, vendor_dir) = (work.path().join("node1-ssh"), work.path().join("vendor"));
    std::fs::create_dir_all(&vendor_dir).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();

    let operator = keygen(&work.path().join("engineer"), "engineer@vendor");
    let vendor_host_key = keygen(&vendor_dir.join("host_key"), "root@support");
    let mut cfg = ApplianceConfig::from_toml(&config_text()).unwrap();
    cfg.access.root_authorized_keys = vec![operator.parse().unwrap()];
    cfg.support = Some(SupportConfig {
        host: format!("{PING_NODE}:{SUPPORT_PORT}").parse().unwrap(),
        user: "root".parse().unwrap(),
        host_key: None,
        max_hours: 2,
    });
    let without_key = rig.dir.join("support-no-key.toml");
    std::fs::write(&without_key, cfg.to_toml()).unwrap();
    if let Some(s) = &mut cfg.support {
        s.host_key = Some(vendor_host_key.parse().unwrap());
    }
    let config = rig.dir.join("support.toml");
    std::fs::write(&config, cfg.to_toml()).unwrap();

    // node1's sshd, from the node's own files: with a support server configured it
    // also listens on loopback, where the tunnel arrives.
    let ext = cfg.network.node1.address.addr();
    sshd::write(
        &node_dir,
        &sshd::files(&cfg, NodeId::Node1, &[ext], &node_dir),
    )
    .unwrap();
    let _node_sshd = start_sshd(
        &rig.nodes[0].ns,
        &node_dir.join(sshd::CONFIG),
        &work.path().join("node1-sshd.log"),
    );
    let vendor_config = support_server_config(&vendor_dir, &cfg.keys.support_ssh.public_key());
    let vendor_log = work.path().join("vendor-sshd.log");
    let mut vendor = Some(start_sshd(&rig.lan, &vendor_config, &vendor_log));

    // Without the support server's host key: refused, nothing starts.
    let support_dir = rig.dir.join("support");
    let dir_arg = support_dir.to_string_lossy().into_owned();
    rig.start_with_args(0, &without_key, &["--support-dir", &dir_arg]);
    let mut c = Client::connect(&rig.nodes[0].control).unwrap();
    let refused = c.call(&Request::SupportOn { hours: None }).unwrap();
    let text = format!("{:?}", refused.refusal());
    assert!(text.contains("support.host-key"), "{text}");
    let v = support(&mut c, &Request::SupportStatus);
    assert!(!v.on && v.unavailable.is_some(), "{v:?}");
    rig.kill(0);

    rig.start_with_args(0, &config, &["--support-dir", &dir_arg]);
    let mut c = Client::connect(&rig.nodes[0].control).unwrap();
    let v = support(&mut c, &Request::SupportStatus);
    assert_eq!(
        (v.on, v.server.as_deref(), v.unavailable.as_deref()),
        (
            false,
            Some(format!("root@{PING_NODE}:{SUPPORT_PORT}").as_str()),
            None
        )
    );
    assert_eq!(
        v.client_key.as_deref(),
        Some(cfg.keys.support_ssh.public_key().as_str())
    );
    // Beyond support.max-hours: refused.
    let r = c.call(&Request::SupportOn { hours: Some(3) }).unwrap();
    assert!(
        format!("{:?}", r.refusal()).contains("between 1 and 2 hours"),
        "{r:?}"
    );
    assert!(!support(&mut c, &Request::SupportStatus).on);

    // On (as `tandem support on` asks): the tunnel comes up with a port. Who asked is
    // this test, root: "on the node", or the SSH login it runs in.
    let me = tandem_runtime::control::origin::Origin::of_process(
        i32::try_from(std::process::id()).unwrap(),
    )
    .root();
    let on = support(&mut c, &Request::SupportOn { hours: Some(1) });
    assert!(on.on && on.by.as_deref() == Some(me.as_str()), "{on:?}");
    assert_eq!(on.until.unwrap() - on.since.unwrap(), 3600);
    let mut port = 0;
    let took = wait_until("the tunnel's port", Duration::from_secs(20), || {
        port = support(&mut c, &Request::SupportStatus).port.unwrap_or(0);
        port != 0
    });
    eprintln!("switched on -> tunnel up: {took:?}");

    // The engineer, on the support server, reaches node1's shell through it (node1's
    // host key from the archive; node1's external address proves whose shell it is).
    let known = work.path().join("known_hosts");
    let node_key = cfg.keys.ssh_host_node1.public_key();
    let engineer = work.path().join("engineer");
    let login = |port: u16| {
        std::fs::write(&known, format!("[127.0.0.1]:{port} {node_key}\n")).unwrap();
        through_tunnel(
            &rig.lan,
            port,
            &engineer,
            &known,
            "ip -4 -o addr show dev ext",
        )
    };
    let out = login(port);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&ext.to_string()),
        "login through the tunnel: {:?}\nnode1 sshd: {}\nsupport sshd: {}",
        out,
        std::fs::read_to_string(work.path().join("node1-sshd.log")).unwrap_or_default(),
        std::fs::read_to_string(&vendor_log).unwrap_or_default()
    );

    // The support server restarts: the tunnel goes down and comes back by itself.
    drop(vendor.take());
    wait_until("the tunnel down", Duration::from_secs(30), || {
        support(&mut c, &Request::SupportStatus).port.is_none()
    });
    let down = support(&mut c, &Request::SupportStatus);
    assert!(down.on && down.last_error.is_some(), "{down:?}");
    vendor = Some(start_sshd(&rig.lan, &vendor_config, &vendor_log));
    let took = wait_until("the tunnel back", Duration::from_secs(40), || {
        port = support(&mut c, &Request::SupportStatus).port.unwrap_or(0);
        port != 0
    });
    eprintln!("support server back -> tunnel up again: {took:?}");
    assert!(login(port).status.success());

    // Off: the port is gone, the engineer no longer gets in.
    let off = support(&mut c, &Request::SupportOff);
    assert!(!off.on && off.port.is_none(), "{off:?}");
    wait_until("the port closed", Duration::from_secs(10), || {
        !login(port).status.success()
    });
    // The CLI asks the same of clusterd.
    let cli = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--control")
        .arg(&rig.nodes[0].control)
        .args(["support", "status"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success()
            && shown.contains("tunnel:     off")
            && shown.contains(&format!("server:     root@{PING_NODE}:{SUPPORT_PORT}")),
        "{cli:?}"
    );
    let again = c.call(&Request::SupportOff).unwrap();
    assert!(
        format!("{:?}", again.refusal()).contains("off already"),
        "{again:?}"
    );
    // root in an SSH login (sshd sets SSH_CONNECTION): clusterd reads where it came
    // from in the environment of the process that asks, not in the request.
    let from_ssh = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .env("SSH_CONNECTION", "198.51.100.9 50022 192.0.2.11 22")
            .arg("--control")
            .arg(&rig.nodes[0].control)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tandem {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    from_ssh(&["support", "on", "--hours", "1"]);
    let shown = from_ssh(&["support", "status"]);
    assert!(shown.contains("root (SSH from 198.51.100.9)"), "{shown}");
    from_ssh(&["support", "off"]);
    let events = rig.events(0);
    let said = |what: &str| {
        events
            .iter()
            .any(|(k, t)| k == "support" && t.contains(what))
    };
    assert!(
        said(&format!("remote support switched on by {me}"))
            && said("support tunnel up: port")
            && said("support tunnel down:")
            && said(&format!("remote support switched off by {me}"))
            && said("remote support switched on by root (SSH from 198.51.100.9)")
            && said("remote support switched off by root (SSH from 198.51.100.9)"),
        "{events:#?}"
    );

    // The tunnel ends with clusterd: on again, then clusterd killed (SIGKILL, as a
    // crash): its ssh gets the parent-death signal and the port goes.
    support(&mut c, &Request::SupportOn { hours: Some(1) });
    wait_until("the tunnel's port again", Duration::from_secs(20), || {
        port = support(&mut c, &Request::SupportStatus).port.unwrap_or(0);
        port != 0
    });
    assert!(login(port).status.success());
    let clusterd = rig.pid(0).to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &clusterd])
            .status()
            .unwrap()
            .success()
    );
    wait_until(
        "the port closed with clusterd",
        Duration::from_secs(10),
        || !login(port).status.success(),
    );
    drop(vendor);
}
