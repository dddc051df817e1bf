//! The node's SSH server with the real OpenSSH in network namespaces (see `lab`): the
//! generated `sshd_config`, host key and authorized keys of `tandem_runtime::sshd`,
//! `/usr/sbin/sshd` started in node1's namespace, and the `ssh` client from the admin
//! host and from an outsider on the external LAN.
//!
//! Runs as root (namespaces; sshd). Needs Debian packages iproute2, openssh-server and
//! openssh-client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lab::*;
use tandem_config::NodeId;
use tandem_runtime::sshd;

const SSHD: &str = "/usr/sbin/sshd";
const SSH: &str = "/usr/bin/ssh";

/// sshd in a namespace; killed by its PID when dropped (`ip netns exec` execs sshd).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "operator@lab", "-f"])
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

struct Client<'a> {
    dir: &'a Path,
    known_hosts: PathBuf,
}

impl Client<'_> {
    /// `ssh` from namespace `ns` to node1 as root, running `command`.
    fn run(&self, ns: &str, key: Option<&Path>, extra: &[&str], command: &str) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, SSH, "-F", "/dev/null"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
            ]);
        if let Some(k) = key {
            c.arg("-i").arg(k);
        }
        let askpass = self.dir.join("askpass.sh");
        c.args(extra)
            .arg(format!("root@{NODE1_EXT}"))
            .arg(command)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", "none")
            .stdin(Stdio::null());
        c.output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn key_login_from_an_admin_network_runs_a_command_and_nothing_else_gets_in() {
    need_tool(SSHD, "openssh-server");
    need_tool(SSH, "openssh-client");
    // sshd's StrictModes refuses key files beneath a world-writable directory (/tmp).
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = work.path().join("ssh");
    let lab = Lab::new(work.path());

    let operator = keygen(&work.path().join("operator"));
    let stranger = keygen(&work.path().join("stranger"));
    let mut cfg = config();
    cfg.access.root_authorized_keys = vec![operator.parse().unwrap()];
    let ext = cfg.network.node1.address.addr();
    let files = sshd::files(&cfg, NodeId::Node1, &[ext], &dir);
    sshd::write(&dir, &files).unwrap();

    // The privilege separation directory of Debian's sshd (its check asks for it too).
    std::fs::create_dir_all("/run/sshd").unwrap();
    // The real sshd accepts the generated configuration.
    let t = Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(dir.join(sshd::CONFIG))
        .output()
        .unwrap();
    assert!(t.status.success(), "sshd -t: {}", text(&t.stderr));

    let log = std::fs::File::create(work.path().join("sshd.log")).unwrap();
    let _server = Server(
        Command::new("ip")
            .args(["netns", "exec", &lab.node1, SSHD, "-D", "-e", "-f"])
            .arg(dir.join(sshd::CONFIG))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while !tcp_reaches(&lab.admin, NODE1_EXT, 22) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "sshd did not listen: {}",
            std::fs::read_to_string(work.path().join("sshd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The client knows node1 by the host key of the configuration archive only.
    let known_hosts = work.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("{NODE1_EXT} {}\n", cfg.keys.ssh_host_node1.public_key()),
    )
    .unwrap();
    // A password "typed" by the askpass helper, should the server ask for one.
    let askpass = work.path().join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\necho not-the-password\n").unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let client = Client {
        dir: work.path(),
        known_hosts,
    };
    let op_key = work.path().join("operator");
    let stranger_key = work.path().join("stranger");

    // 1. The listed key from the admin network: logged in, the command runs.
    let t = Instant::now();
    let out = client.run(
        &lab.admin,
        Some(&op_key),
        &["-o", "BatchMode=yes"],
        "echo logged-in-as-$(id -un) $((6 * 7))",
    );
    assert!(
        out.status.success(),
        "login refused: {}\nsshd: {}",
        text(&out.stderr),
        std::fs::read_to_string(work.path().join("sshd.log")).unwrap_or_default()
    );
    assert_eq!(text(&out.stdout).trim(), "logged-in-as-root 42");
    eprintln!("key login and command: {:?}", t.elapsed());

    // 2. A password login: the server offers public keys only.
    let out = client.run(
        &lab.admin,
        None,
        &[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
        ],
        "true",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("Permission denied (publickey)."), "{err}");

    // 3. A key that is not listed.
    let out = client.run(
        &lab.admin,
        Some(&stranger_key),
        &["-o", "BatchMode=yes"],
        "true",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Permission denied (publickey)."),
        "{}",
        text(&out.stderr)
    );

    // 4. The listed key from outside the admin networks (AllowUsers).
    let out = client.run(
        &lab.outsider,
        Some(&op_key),
        &["-o", "BatchMode=yes"],
        "true",
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );

    // 5. A configuration change: the stranger's key replaces the operator's; sshd
    //    reads the new files on SIGHUP.
    cfg.access.root_authorized_keys = vec![stranger.parse().unwrap()];
    let files = sshd::files(&cfg, NodeId::Node1, &[ext], &dir);
    sshd::write(&dir, &files).unwrap();
    assert!(sshd::reload(&dir).unwrap(), "sshd's pid file");
    let t0 = Instant::now();
    loop {
        let out = client.run(
            &lab.admin,
            Some(&stranger_key),
            &["-o", "BatchMode=yes"],
            "echo again",
        );
        if out.status.success() {
            assert_eq!(text(&out.stdout).trim(), "again");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = client.run(&lab.admin, Some(&op_key), &["-o", "BatchMode=yes"], "true");
    assert!(!out.status.success(), "the removed key still logs in");
}

/// sshd in node1's namespace and in a mount namespace of its own, in which `shadow`
/// is bind-mounted over `/etc/shadow`: the sshd reads the file made by the code under
/// test, and the build host's `/etc/shadow` is never touched.
fn sshd_with_shadow(lab: &Lab, config: &Path, shadow: &Path, log: &Path) -> Server {
    let log = std::fs::File::create(log).unwrap();
    Server(
        Command::new("ip")
            .args(["netns", "exec", &lab.node1])
            .args(["unshare", "--mount", "--propagation", "private", "--"])
            .args([
                "/bin/sh",
                "-c",
                "mount --bind \"$1\" /etc/shadow && exec \"$2\" -D -e -f \"$3\"",
                "sh",
            ])
            .arg(shadow)
            .arg(SSHD)
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn set_askpass(dir: &Path, password: &str) {
    let askpass = dir.join("askpass.sh");
    std::fs::write(
        &askpass,
        format!("#!/bin/sh\nprintf '%s\\n' '{password}'\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

const PASSWORD_ONLY: [&str; 6] = [
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "PreferredAuthentications=password",
    "-o",
    "NumberOfPasswordPrompts=1",
];

#[test]
fn password_login_with_the_nodes_shadow_line_only_while_it_is_switched_on() {
    need_tool(SSHD, "openssh-server");
    need_tool(SSH, "openssh-client");
    need_tool("/usr/bin/unshare", "util-linux");
    let host_shadow = std::fs::read("/etc/shadow").unwrap();
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = work.path().join("ssh");
    let lab = Lab::new(work.path());
    let sshd_log = work.path().join("sshd.log");
    let log = || std::fs::read_to_string(&sshd_log).unwrap_or_default();

    let operator = keygen(&work.path().join("operator"));
    let password = "correct horse 7 battery";
    let mut cfg = config();
    cfg.access.root_authorized_keys = vec![operator.parse().unwrap()];
    cfg.access.password_login = true;
    cfg.passwords.root_node1_crypt =
        Some(tandem_config::secrets::crypt_password(password).unwrap());
    cfg.validate().unwrap();
    let ext = cfg.network.node1.address.addr();
    sshd::write(&dir, &sshd::files(&cfg, NodeId::Node1, &[ext], &dir)).unwrap();
    // root's line as the node writes it at node-up.
    let shadow = work.path().join("shadow");
    sshd::write_shadow(&shadow, &cfg, NodeId::Node1).unwrap();

    std::fs::create_dir_all("/run/sshd").unwrap();
    let t = Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(dir.join(sshd::CONFIG))
        .output()
        .unwrap();
    assert!(t.status.success(), "sshd -t: {}", text(&t.stderr));
    let _server = sshd_with_shadow(&lab, &dir.join(sshd::CONFIG), &shadow, &sshd_log);
    let t0 = Instant::now();
    while !tcp_reaches(&lab.admin, NODE1_EXT, 22) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "sshd did not listen: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let known_hosts = work.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("{NODE1_EXT} {}\n", cfg.keys.ssh_host_node1.public_key()),
    )
    .unwrap();
    let client = Client {
        dir: work.path(),
        known_hosts,
    };

    // 1. The right password: logged in, the command runs.
    set_askpass(work.path(), password);
    let out = client.run(
        &lab.admin,
        None,
        &PASSWORD_ONLY,
        "echo logged-in-as-$(id -un) $((6 * 7))",
    );
    assert!(
        out.status.success(),
        "password login refused: {}\nsshd: {}",
        text(&out.stderr),
        log()
    );
    assert_eq!(text(&out.stdout).trim(), "logged-in-as-root 42");

    // 2. A wrong password: refused.
    set_askpass(work.path(), "correct horse 7 battery!");
    let out = client.run(&lab.admin, None, &PASSWORD_ONLY, "echo in");
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("Permission denied (publickey,password)."),
        "{err}"
    );

    // 3. The root line does not lock the account: the key still logs in.
    let out = client.run(
        &lab.admin,
        Some(&work.path().join("operator")),
        &["-o", "BatchMode=yes"],
        "echo by-key",
    );
    assert!(
        out.status.success(),
        "{}\nsshd: {}",
        text(&out.stderr),
        log()
    );
    assert_eq!(text(&out.stdout).trim(), "by-key");

    // 4. Password login switched off (sshd reads its files again on SIGHUP), the
    //    shadow file unchanged: the right password is refused, the server offers keys
    //    only.
    cfg.access.password_login = false;
    sshd::write(&dir, &sshd::files(&cfg, NodeId::Node1, &[ext], &dir)).unwrap();
    assert!(sshd::reload(&dir).unwrap(), "sshd's pid file");
    set_askpass(work.path(), password);
    let t0 = Instant::now();
    loop {
        let out = client.run(&lab.admin, None, &PASSWORD_ONLY, "echo in");
        let err = text(&out.stderr);
        if err.contains("Permission denied (publickey).") {
            assert!(!out.status.success());
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "password login still possible: {}{err}",
            text(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // 5. And what the node writes while it is off: no password matches root's line.
    sshd::write_shadow(&shadow, &cfg, NodeId::Node1).unwrap();
    let line = std::fs::read_to_string(&shadow).unwrap();
    assert!(line.starts_with("root:*:"), "{line}");

    assert_eq!(
        std::fs::read("/etc/shadow").unwrap(),
        host_shadow,
        "the build host's /etc/shadow changed"
    );
}
