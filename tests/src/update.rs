//! Signed A/B updates on an installed node of the pair: a RAUC bundle of
//! another version goes into the slot that did not boot, starts once, falls
//! back when it is not marked good, and is committed with `rauc status
//! mark-good`. Refused: a bundle signed by a key the node does not trust or
//! with a changed signature (nothing is written to the other slot), and a
//! bundle with a changed byte in its payload (RAUC checks the payload through
//! dm-verity while it copies it: the other slot is left partly written,
//! marked not bootable, and the boot selection is unchanged).
//!
//! [`update_node`] is the whole check on one node; the pieces are public
//! for the rolling update of the pair.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::install::MIN;
use crate::pair::{Node, Pair, wait_until};
use crate::{Scratch, figure};

/// Where a bundle is copied to on the node (tmpfs).
pub const REMOTE_BUNDLE: &str = "/tmp/update.raucb";

/// The bundle of a second version of this tree (`cargo xtask test` builds it
/// and names it in `TANDEM_UPDATE_BUNDLE`).
#[must_use]
pub fn bundle_under_test() -> PathBuf {
    let path = PathBuf::from(std::env::var("TANDEM_UPDATE_BUNDLE").expect(
        "TANDEM_UPDATE_BUNDLE is not set: run the rig tests with `cargo xtask test` (it builds the bundle with TANDEM_VERSION_SUFFIX=.v2 cargo xtask bundle)",
    ));
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// The version a bundle carries (`rauc info` on the build host, which checks
/// its signature against the keyring next to it only when asked).
#[must_use]
pub fn bundle_version(bundle: &Path) -> String {
    let out = Command::new("rauc")
        .args(["info", "--no-verify", "--output-format=json"])
        .arg(bundle)
        .output()
        .expect("rauc is missing on this host: apt-get install rauc");
    assert!(
        out.status.success(),
        "rauc info {}: {}",
        bundle.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("rauc info's JSON");
    v["version"].as_str().expect("a version").to_owned()
}

/// Runs `command` on node `n` and returns its output; panics with it when
/// the command fails.
fn ok(pair: &Pair, n: Node, command: &str) -> String {
    let (good, out) = pair.ssh(n, command);
    assert!(good, "{command} on node{}: {out}", n + 1);
    out
}

/// `rauc status --detailed --output-format=json` of node `n` (`--detailed`
/// adds each slot's `slot_status`: the installed bundle's version).
pub fn rauc_status(pair: &Pair, n: Node) -> serde_json::Value {
    let out = ok(pair, n, "rauc status --detailed --output-format=json");
    // The JSON is the last line; RAUC may print notes before it.
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("rauc status: {e}: {out}"))
}

/// One slot's object of [`rauc_status`] (`rootfs.0` or `rootfs.1`).
#[must_use]
pub fn slot<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["slots"]
        .as_array()
        .and_then(|slots| slots.iter().find_map(|s| s.get(name)))
        .unwrap_or_else(|| panic!("no slot {name} in {status}"))
}

/// GRUB's boot selection of node `n` (`grub-editenv … list`), as
/// `NAME=VALUE` lines.
pub fn grubenv(pair: &Pair, n: Node) -> String {
    ok(pair, n, "grub-editenv /boot/esp/grub/grubenv list")
}

/// The kernel's boot id of node `n`, `None` while it does not answer.
fn boot_id(pair: &Pair, n: Node) -> Option<String> {
    let (good, out) = pair.ssh(n, "cat /proc/sys/kernel/random/boot_id");
    good.then(|| out.trim().to_owned())
}

/// Restarts node `n` the way an operator does (init stops the services,
/// unmounts, restarts) and waits until it answers SSH again; returns the
/// seconds that took.
pub fn restart(pair: &Pair, n: Node) -> f64 {
    let before = boot_id(pair, n).expect("the node answers before its restart");
    let t = Instant::now();
    // Detached, so that the SSH session ends before the node goes: a
    // restarting node never closes it.
    let _ = pair.ssh(n, "(sleep 1; kill -TERM 1) </dev/null >/dev/null 2>&1 &");
    wait_until("the node restarted and answers SSH", 6 * MIN, || {
        boot_id(pair, n).filter(|id| *id != before)
    });
    t.elapsed().as_secs_f64()
}

/// SHA-256 of the first 8 MiB of `device` on node `n` (RAUC writes a raw
/// slot from its start).
fn head_sum(pair: &Pair, n: Node, device: &str) -> String {
    ok(
        pair,
        n,
        &format!("dd if={device} bs=1M count=8 2>/dev/null | sha256sum"),
    )
}

/// Installs `remote` (a bundle on the node) and expects RAUC to refuse it
/// with the boot selection unchanged (slot B not bootable) and, when
/// `untouched`, nothing written to slot B; returns RAUC's message.
pub fn expect_refused(pair: &Pair, n: Node, remote: &str, what: &str, untouched: bool) -> String {
    let st = rauc_status(pair, n);
    let device = slot(&st, "rootfs.1")["device"]
        .as_str()
        .expect("slot B's device")
        .to_owned();
    let (sum, env) = (head_sum(pair, n, &device), grubenv(pair, n));
    let (good, out) = pair.ssh(n, &format!("tandem update install {remote}"));
    assert!(!good, "the node installed {what}: {out}");
    if untouched {
        assert_eq!(
            head_sum(pair, n, &device),
            sum,
            "{what}: slot B was written"
        );
    }
    let after = grubenv(pair, n);
    assert!(
        after.lines().any(|l| l == "B_OK=0"),
        "{what}: slot B bootable:\n{after}"
    );
    for var in ["ORDER=", "A_OK=", "A_TRY="] {
        let line = |t: &str| t.lines().find(|l| l.starts_with(var)).map(str::to_owned);
        assert_eq!(line(&after), line(&env), "{what}: {var} changed");
    }
    out
}

/// A copy of `bundle` signed by a key of its own (a self-signed certificate
/// made here with openssl), in `dir`.
pub fn foreign_bundle(bundle: &Path, dir: &Path) -> PathBuf {
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("running a host tool");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-nodes", "-days", "3650"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-keyout", "other.key", "-out", "other.pem"])
        .args(["-subj", "/O=not the vendor/CN=other signer"]));
    let out = dir.join("foreign.raucb");
    let _ = std::fs::remove_file(&out);
    run(Command::new("rauc")
        .args(["resign", "--no-verify"])
        .arg(format!("--cert={}", dir.join("other.pem").display()))
        .arg(format!("--key={}", dir.join("other.key").display()))
        .arg(format!("--keyring={}", dir.join("other.pem").display()))
        .arg(bundle)
        .arg(&out));
    out
}

/// What [`update_node`] measured.
#[derive(Debug, Clone, Copy)]
pub struct UpdateFigures {
    /// The bundle's size, bytes.
    pub bundle_bytes: u64,
    /// Copying it to the node over SSH, seconds.
    pub copy_s: f64,
    /// `rauc install` on the node, seconds.
    pub install_s: f64,
    /// Restart into the new slot until SSH answers, seconds.
    pub restart_s: f64,
}

/// The JSON of `tandem update status --json` on node `n`.
pub fn update_status(pair: &Pair, n: Node) -> serde_json::Value {
    let out = ok(pair, n, "tandem update status --json");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("tandem update status: {e}: {out}"))
}

/// Waits until node `n`'s clusterd has committed the slot it runs (GRUB's
/// try of it reset, no trial pending).
fn committed(pair: &Pair, n: Node, slot: &str) {
    wait_until(
        &format!("slot {slot} committed by clusterd"),
        8 * MIN,
        || {
            let env = grubenv(pair, n);
            let st = update_status(pair, n);
            (env.lines().any(|l| l == format!("{slot}_TRY=0")) && st["trial"].is_null())
                .then_some(())
        },
    );
}

/// The texts of node `n`'s update history.
pub fn history(pair: &Pair, n: Node) -> Vec<String> {
    update_status(pair, n)["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|e| e["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The update of the passive node `n` to `bundle` (version `version`) the
/// operator's way, `tandem update install` through clusterd: refusals first
/// (one byte changed in the signature or the payload, another signer), then
/// the install, the restart into the new slot, its trial kept by clusterd
/// once the pair is healthy (and mailed), and the operator's rollback to the
/// previous system.
pub fn update_node(pair: &Pair, n: Node, bundle: &Path, version: &str) -> UpdateFigures {
    let bundle_bytes = std::fs::metadata(bundle).map_or(0, |m| m.len());
    let old_version = ok(pair, n, "cat /etc/tandem-version").trim().to_owned();
    assert_ne!(old_version, version, "the bundle holds the running version");
    // clusterd commits the slot of an ordinary start.
    committed(pair, n, "A");
    let st = rauc_status(pair, n);
    assert_eq!(st["compatible"], "tandem-sr2500", "{st}");
    assert_eq!(st["booted"], "A", "{st}");

    let t = Instant::now();
    let (good, out) = pair.copy_to(n, bundle, REMOTE_BUNDLE);
    assert!(good, "copying the bundle: {out}");
    let copy_s = t.elapsed().as_secs_f64();

    // One byte changed, in the signature (refused before anything is
    // written), then in the middle of the payload; restored after each.
    let data = std::fs::read(bundle).expect("reading the bundle");
    let poke = |at: usize, byte: u8| {
        ok(
            pair,
            n,
            &format!(
                "printf '\\{byte:03o}' | dd of={REMOTE_BUNDLE} bs=1 seek={at} count=1 conv=notrunc 2>/dev/null"
            ),
        );
    };
    // The CMS signature ends the bundle, before its 8-byte size: its last
    // bytes are the signature value.
    for (at, what, untouched) in [
        (
            data.len() - 8 - 10,
            "a bundle with a changed signature",
            true,
        ),
        (
            data.len() / 2,
            "a bundle with a changed payload byte",
            false,
        ),
    ] {
        poke(at, data[at] ^ 0x01);
        let msg = expect_refused(pair, n, REMOTE_BUNDLE, what, untouched);
        figure(&format!("update: {what} is refused: {}", last_line(&msg)));
        poke(at, data[at]);
    }

    // Signed by a key the node does not trust: refused.
    let scratch = Scratch::new("update-foreign-");
    let foreign = foreign_bundle(bundle, &scratch.0);
    let (good, out) = pair.copy_to(n, &foreign, "/tmp/foreign.raucb");
    assert!(good, "copying the foreign bundle: {out}");
    let msg = expect_refused(
        pair,
        n,
        "/tmp/foreign.raucb",
        "a bundle of another signer",
        true,
    );
    figure(&format!(
        "update: a bundle of another signer is refused: {}",
        last_line(&msg)
    ));
    ok(pair, n, "rm -f /tmp/foreign.raucb");

    // The real one: installed, then the node restarts into it by itself.
    let alerts_before = pair.smtp.subjects().len();
    let before = boot_id(pair, n).expect("the node answers");
    let t = Instant::now();
    // The connection may end with the node's restart.
    let (_, out) = pair.ssh(n, &format!("tandem update install {REMOTE_BUNDLE}"));
    let install_s = t.elapsed().as_secs_f64();
    let restart_t = Instant::now();
    wait_until("the node restarted into the new system", 8 * MIN, || {
        boot_id(pair, n).filter(|id| *id != before)
    });
    let restart_s = restart_t.elapsed().as_secs_f64();
    let st = rauc_status(pair, n);
    assert_eq!(st["booted"], "B", "{st}\n{out}");
    let b = slot(&st, "rootfs.1");
    assert_eq!(b["slot_status"]["bundle"]["version"], version, "{st}");
    assert_eq!(ok(pair, n, "cat /etc/tandem-version").trim(), version);
    let cmdline = ok(pair, n, "cat /proc/cmdline");
    assert!(
        cmdline.contains("rauc.slot=B") && cmdline.contains("tandem.slot=b"),
        "{cmdline}"
    );
    // The trial: kept once the pair is healthy, said in the history and by mail.
    let t = Instant::now();
    committed(pair, n, "B");
    figure(&format!(
        "update: the new system kept by clusterd {:.0} s after it answered SSH",
        t.elapsed().as_secs_f64()
    ));
    let want = format!("updated from {old_version} to {version}");
    assert_eq!(history(pair, n).last(), Some(&want));
    wait_until("the update mailed", 3 * MIN, || {
        pair.smtp
            .subjects()
            .iter()
            .skip(alerts_before)
            .any(|s| s.contains("update"))
            .then_some(())
    });
    let st = rauc_status(pair, n);
    assert_eq!(slot(&st, "rootfs.1")["boot_status"], "good", "{st}");
    assert_eq!(st["boot_primary"], "rootfs.1", "{st}");

    // The operator goes back to the previous system.
    let before = boot_id(pair, n).expect("the node answers");
    let (_, out) = pair.ssh(n, "tandem update rollback");
    figure(&format!("update: tandem update rollback: {}", out.trim()));
    wait_until(
        "the node restarted into the previous system",
        8 * MIN,
        || boot_id(pair, n).filter(|id| *id != before),
    );
    let st = rauc_status(pair, n);
    assert_eq!(st["booted"], "A", "rollback: {st}");
    assert_eq!(ok(pair, n, "cat /etc/tandem-version").trim(), old_version);
    committed(pair, n, "A");
    assert!(
        history(pair, n)
            .iter()
            .any(|t| t.starts_with("the operator went back")),
        "the rollback is not in the history"
    );

    let f = UpdateFigures {
        bundle_bytes,
        copy_s,
        install_s,
        restart_s,
    };
    figure(&format!(
        "update: bundle {} MiB, copied in {:.1} s, installed through clusterd in {:.1} s, restarted into B in {:.1} s",
        f.bundle_bytes >> 20,
        f.copy_s,
        f.install_s,
        f.restart_s
    ));
    f
}

/// RAUC's reason in its output (the line naming the error), else the last
/// line.
fn last_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.contains("rror"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim()
}
