//! The release catalogue's update scenarios: the rolling update of the pair
//! with a bundle from the LAN's update server (`tandem update check`, `tandem
//! update rolling --from-server`) with the client writing — the other node first,
//! one switchover, then the node that led — and the same update stopped by a
//! new system that does not become healthy on the other node (its crossover
//! cable pulled while it installs): that node goes back by itself, the
//! services never move, the leader says why it stopped.

use std::sync::Arc;
use std::time::Instant;

use crate::failover::{Ctx, pair_scenario};
use crate::install::MIN;
use crate::pair::{Node, Pair, other, wait_until};
use crate::scenario::Scenario;
use crate::update::{REMOTE_BUNDLE, bundle_under_test, bundle_version, history, update_status};

/// The update scenarios.
#[must_use]
pub fn scenarios() -> Vec<Scenario> {
    vec![
        pair_scenario(
            "update-rolling",
            "`tandem update check` and `tandem update rolling --from-server --switch-back` on the active node: the new version offered by the LAN's update server, downloaded and checked; the passive node updated first and kept, the services moved by one switchover, then the other node updated and kept, then the services moved back; both run the new version, no write lost",
            update_rolling,
        ),
        pair_scenario(
            "update-rollback",
            "a rolling update whose new system cannot become healthy on the passive node (crossover pulled during its install): it goes back to the previous system by itself, the rolling update stops with the services untouched on the active node",
            update_rollback,
        ),
    ]
}

/// The running system's version of node `n`.
fn version(pair: &Pair, n: Node) -> String {
    let (good, out) = pair.ssh(n, "cat /etc/tandem-version");
    assert!(good, "node{}: {out}", n + 1);
    out.trim().to_owned()
}

/// Node `n`'s version, `None` while it does not answer.
fn version_now(pair: &Pair, n: Node) -> Option<String> {
    let (good, out) = pair.ssh(n, "cat /etc/tandem-version");
    good.then(|| out.trim().to_owned())
}

/// Node `n`'s update history, `None` while it does not answer (it restarts).
fn history_now(pair: &Pair, n: Node) -> Option<Vec<String>> {
    let (good, out) = pair.ssh(n, "tandem update status --json");
    let v: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| good)?;
    Some(
        v["history"]
            .as_array()?
            .iter()
            .filter_map(|e| e["text"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// Copies the bundle under test to node `n`; returns its version.
fn bundle_on(pair: &Pair, n: Node) -> String {
    let bundle = bundle_under_test();
    let (good, out) = pair.copy_to(n, &bundle, REMOTE_BUNDLE);
    assert!(good, "copying the bundle to node{}: {out}", n + 1);
    bundle_version(&bundle)
}

fn update_rolling(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let old = version(c.pair, a);
    assert_eq!(version(c.pair, p), old);
    // Asked on the passive node: refused, nothing starts.
    let to = bundle_on(c.pair, p);
    assert_ne!(to, old, "the bundle holds the running version");
    let (good, out) = c
        .pair
        .ssh(p, &format!("tandem update rolling {REMOTE_BUNDLE}"));
    assert!(
        !good && out.contains("does not run the services"),
        "on the passive node: {out}"
    );
    let _ = c.pair.ssh(p, &format!("rm -f {REMOTE_BUNDLE}"));

    // The bundle comes from the LAN's update server: offered, downloaded and
    // checked on the active node, then the rolling update with it.
    let _server = c.pair.update_server(&bundle_under_test(), &to);
    let (good, out) = c.pair.ssh(a, "tandem update check");
    assert!(
        good && out.contains(&format!("offers {to}")),
        "tandem update check: {out}"
    );
    let alerts = c.pair.smtp.subjects().len();
    let t = Instant::now();
    // It follows the download, then the update until the node it runs on
    // restarts.
    let (_, out) = c
        .pair
        .ssh(a, "tandem update rolling --from-server --switch-back");
    assert!(
        out.contains(&format!("{to} downloaded and checked")),
        "the download: {out}"
    );
    let led_s = t.elapsed().as_secs_f64();
    assert!(
        out.contains(&format!("node{} runs {to}, kept", p + 1))
            || out.contains("the services move"),
        "the rolling update's steps: {out}"
    );
    let done = format!("rolling update to {to} done");
    let end = wait_until("the rolling update done on the leader", 15 * MIN, || {
        history_now(c.pair, a)?
            .into_iter()
            .find(|h| h.starts_with(&done))
    });
    c.run.figure(
        "rolling update: begun → both nodes kept",
        t.elapsed().as_secs_f64(),
        "s",
    );
    c.run.figure(
        "rolling update: the leader's part until it restarted",
        led_s,
        "s",
    );
    assert!(end.contains("the services move back to this node"), "{end}");
    let back = format!("the services moved back to node{}", a + 1);
    wait_until("the services back on the leader", 10 * MIN, || {
        history_now(c.pair, a)?
            .into_iter()
            .find(|h| h.starts_with(&back))
    });
    c.run.figure(
        "rolling update: begun → the services back on the leader",
        t.elapsed().as_secs_f64(),
        "s",
    );
    for n in [a, p] {
        assert_eq!(
            version(c.pair, n),
            to,
            "node{} after the rolling update",
            n + 1
        );
        let st = update_status(c.pair, n);
        assert!(st["pending"].is_null() && st["trial"].is_null(), "{st}");
    }
    assert!(
        history(c.pair, p)
            .iter()
            .any(|h| *h == format!("updated from {old} to {to}")),
        "node{}'s history",
        p + 1
    );
    assert_eq!(c.pair.role(a).as_deref(), Some("active"));
    c.wait_passive_in_sync(p, 5 * MIN);
    c.client.wait_acked(5, MIN);
    c.alert_after(alerts, "update", 3 * MIN);
}

fn update_rollback(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let old = version(c.pair, a);
    let to = bundle_on(c.pair, a);
    let alerts = c.pair.smtp.subjects().len();
    let pair: Arc<Pair> = Arc::clone(c.pair);
    let leader =
        std::thread::spawn(move || pair.ssh(a, &format!("tandem update rolling {REMOTE_BUNDLE}")));
    // The other node installs: its crossover cable is pulled, so its new
    // system never sees the replication connected.
    wait_until("the passive node installing the bundle", 5 * MIN, || {
        let st = update_status(c.pair, p);
        (st["job"]["state"] == "running" || st["pending"].as_str() == Some(to.as_str()))
            .then_some(())
    });
    c.pair.crossover(false);
    let t = Instant::now();
    wait_until("the passive node running the new system", 10 * MIN, || {
        version_now(c.pair, p).filter(|v| *v == to)
    });
    c.run.figure(
        "crossover pulled → the passive node runs the new system",
        t.elapsed().as_secs_f64(),
        "s",
    );
    let t = Instant::now();
    wait_until(
        "the passive node back on the previous system",
        15 * MIN,
        || version_now(c.pair, p).filter(|v| *v == old),
    );
    c.run.figure(
        "new system on trial → back on the previous one",
        t.elapsed().as_secs_f64(),
        "s",
    );
    let failed = format!("update to {to} failed, rolled back to {old}");
    wait_until(
        "the rollback in the passive node's history",
        3 * MIN,
        || history(c.pair, p).contains(&failed).then_some(()),
    );
    assert_eq!(
        c.pair.role(a).as_deref(),
        Some("active"),
        "the services moved"
    );
    c.pair.crossover(true);
    let stopped = format!("rolling update to {to} stopped");
    let why = wait_until("the leader stopping the rolling update", 5 * MIN, || {
        history_now(c.pair, a)?
            .into_iter()
            .find(|h| h.starts_with(&stopped))
    });
    assert!(
        why.contains("went back to its previous system"),
        "the leader's reason: {why}"
    );
    let (good, out) = leader.join().expect("the leader's command");
    assert!(
        !good && out.contains("the rolling update stopped"),
        "tandem update rolling on the leader: {out}"
    );
    assert_eq!(version(c.pair, a), old);
    assert_eq!(c.pair.role(a).as_deref(), Some("active"));
    c.alert_after(alerts, "update", 3 * MIN);
    c.wait_passive_in_sync(p, 5 * MIN);
    c.client.wait_acked(5, MIN);
}
