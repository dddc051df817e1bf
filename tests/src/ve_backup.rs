//! The release catalogue's VE backup scenario: a backup of VE 101 made on the
//! active node while the client writes, the active node's power lost, and the
//! backup restored on the other node to a new VE: every record acknowledged
//! before the backup began is in the restored VE.

use std::time::Instant;

use crate::failover::{Ctx, pair_scenario};
use crate::install::MIN;
use crate::pair::other;
use crate::scenario::Scenario;

/// The VE number the backup is restored to.
const RESTORED: &str = "150";

/// The VE backup scenarios.
#[must_use]
pub fn scenarios() -> Vec<Scenario> {
    vec![pair_scenario(
        "ve-backup-restore",
        "`tandem ve backup 101` on the active node while the client writes (the VE frozen only while its files are read), then the active node's power lost: on the other node the backup, on the replicated data area, is restored to VE 150 with every record acknowledged before the backup began; a damaged copy of it is refused with nothing written",
        ve_backup_restore,
    )]
}

fn ve_backup_restore(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    c.wait_passive_in_sync(p, 5 * MIN);
    let before = c.client.acked_records();
    assert!(!before.is_empty(), "the client wrote nothing yet");
    let t = Instant::now();
    let (ok, out) = c.pair.ssh(a, "tandem ve backup 101");
    assert!(ok, "tandem ve backup 101 on node{}: {out}", a + 1);
    c.run
        .figure("backup of VE 101 (CLI)", t.elapsed().as_secs_f64(), "s");
    let file = out
        .lines()
        .find_map(|l| l.strip_prefix("backup ")?.split(':').next())
        .unwrap_or_else(|| panic!("no backup file named: {out}"));
    // Named by its path; the other node lists and restores it by name.
    let file = file.rsplit('/').next().unwrap_or(file).to_owned();
    let frozen_ms = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("the VE was frozen for ")?
                .strip_suffix(" ms")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("the running VE was not frozen: {out}"));
    c.run.figure("VE 101 frozen for", frozen_ms, "ms");
    // The client goes on while the backup is on its way to the other node.
    c.client.wait_acked(5, MIN);

    let t = Instant::now();
    c.pair.power_loss(a);
    let s = c.wait_active(p, t, 3 * MIN);
    c.run.figure("power loss → the other node active", s, "s");
    c.client.wait_acked(5, MIN);

    // The backup came over with the data area.
    let (ok, list) = c.pair.ssh(p, "tandem ve backups");
    assert!(
        ok && list.contains(&file),
        "node{} lists no {file}: {list}",
        p + 1
    );
    // A damaged copy is refused before anything is written.
    let (ok, out) = c.pair.ssh(
        p,
        &format!(
            "cp /vz/backups/ve/{file} /tmp/damaged && printf 'XXXXXXXX' | dd of=/tmp/damaged bs=1 seek=4096 conv=notrunc 2>/dev/null && tandem ve restore /tmp/damaged --to {RESTORED}"
        ),
    );
    assert!(!ok, "a damaged backup was restored: {out}");
    let (_, exists) = c.pair.ssh(
        p,
        &format!("test -e /vz/private/{RESTORED} && echo exists || echo absent"),
    );
    assert_eq!(exists.trim(), "absent", "the refused restore wrote: {out}");
    assert!(out.contains("nothing was written"), "the refusal: {out}");
    eprintln!("  a damaged copy: {}", out.trim());

    let t = Instant::now();
    let (ok, out) = c
        .pair
        .ssh(p, &format!("tandem ve restore {file} --to {RESTORED}"));
    assert!(ok, "restore on node{}: {out}", p + 1);
    c.run.figure(
        "restore to a new VE on the other node",
        t.elapsed().as_secs_f64(),
        "s",
    );
    assert!(
        out.contains(&format!("VE {RESTORED} restored from")) && out.contains(&file),
        "{out}"
    );
    let (ok, log) = c
        .pair
        .ssh(p, &format!("cat /vz/private/{RESTORED}/var/data/log"));
    assert!(ok, "the restored VE's records: {log}");
    let have: std::collections::HashSet<&str> = log.lines().collect();
    let missing: Vec<&String> = before
        .iter()
        .filter(|r| !have.contains(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing in the restored VE: {missing:?}"
    );
    c.run.figure(
        "records acknowledged before the backup, all restored",
        before.len() as f64,
        "count",
    );
    let (ok, out) = c.pair.ssh(p, &format!("tandem ve destroy {RESTORED}"));
    assert!(ok, "removing VE {RESTORED}: {out}");

    c.pair.power_on(a);
    c.wait_passive_in_sync(a, 5 * MIN);
}
