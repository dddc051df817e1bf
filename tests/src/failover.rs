//! The release catalogue's scenarios on the pair (R11.1): switchover, power
//! loss, resets, path failures, shutdowns. Each boots the pair from the
//! activated base disks, starts the client's write workload against VE 101,
//! injects the fault from outside the guests as it happens on real hardware
//! (QEMU's monitor, link state, the serial cable), asserts what the README's
//! "What happens when …" table says the pair does, and records the service
//! downtime the client saw, acknowledged writes lost, whether two active
//! nodes were ever seen, and the alerts the relay received.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::install::MIN;
use crate::pair::{self, Client, Node, Pair, PrimaryWatch, other, wait_until};
use crate::scenario::{Run, Scenario};
use crate::web::{http_get, text_of};
use crate::{Scratch, image_dir};

/// What a pair scenario gets: the pair with its client running, and the
/// node that was active when it started.
pub struct Ctx<'a> {
    /// The pair.
    pub pair: &'a Arc<Pair>,
    /// The client's workload.
    pub client: &'a Client,
    /// The active node at the start.
    pub active: Node,
    /// The record.
    pub run: &'a mut Run,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// Waits until node `n` is active (its Status page says so); returns the
    /// seconds since `since`.
    pub fn wait_active(&self, n: Node, since: Instant, limit: Duration) -> f64 {
        wait_until(&format!("node{} active", n + 1), limit, || {
            (self.pair.role(n).as_deref() == Some("active")).then_some(())
        });
        since.elapsed().as_secs_f64()
    }

    /// Waits until node `n` is passive with an up-to-date, connected copy.
    pub fn wait_passive_in_sync(&self, n: Node, limit: Duration) {
        wait_until(
            &format!("node{} passive with its copy up to date", n + 1),
            limit,
            || {
                let st = self.pair.status(n)?;
                (st.contains("role of this node passive") && st.contains("UpToDate/UpToDate"))
                    .then_some(())
            },
        );
    }

    /// Asserts that node `n` stays `role` for `d` (nothing moves).
    pub fn stays(&self, n: Node, role: &str, d: Duration) {
        let start = Instant::now();
        while start.elapsed() < d {
            if let Some(r) = self.pair.role(n) {
                assert_eq!(r, role, "node{} changed its role", n + 1);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until an alert containing `what` arrived after the first
    /// `before` ones.
    pub fn alert_after(&self, before: usize, what: &str, limit: Duration) {
        wait_until(&format!("a new alert {what:?}"), limit, || {
            self.pair
                .smtp
                .subjects()
                .iter()
                .skip(before)
                .any(|s| s.contains(what))
                .then_some(())
        });
    }

    /// Records the takeover chain of node `n`'s last takeover, per step.
    pub fn steps(&mut self, n: Node) {
        let steps = wait_until("the takeover's steps in the events", MIN, || {
            let s = self.pair.last_acquire(n);
            (!s.is_empty()).then_some(s)
        });
        self.run.takeover_steps = steps;
    }

    /// Waits until the relay received an alert whose subject contains `what`.
    pub fn alert(&self, what: &str, limit: Duration) {
        wait_until(&format!("an alert {what:?}"), limit, || {
            self.pair
                .smtp
                .subjects()
                .iter()
                .any(|s| s.contains(what))
                .then_some(())
        });
    }
}

/// Where the pair's base disks are kept between runs.
pub fn base_dir() -> PathBuf {
    image_dir()
        .parent()
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("scenarios-base")
}

/// A pair scenario: boots the pair, runs `f` with the client writing, then
/// checks the data and fills the record.
pub fn pair_scenario(name: &str, proves: &str, f: fn(&mut Ctx<'_>)) -> Scenario {
    let name_owned = name.to_owned();
    Scenario::new(name, proves, move |run| {
        let base = pair::base(&base_dir());
        if base.made_in_s > 0.0 {
            run.figure(
                "pair base made (install, activate, VE 101)",
                base.made_in_s,
                "s",
            );
        }
        let dir = Scratch::new(&format!("{name_owned}-"));
        let t = Instant::now();
        let pair = Arc::new(Pair::boot(&base, &dir.0));
        for (m, c) in pair.consoles() {
            run.watch(&m, c);
        }
        let _report = FailureReport {
            pair: pair.clone(),
            into: run.on_failure.clone(),
        };
        let active = pair.wait_formed(5 * MIN);
        run.figure("pair booted and formed", t.elapsed().as_secs_f64(), "s");
        clocks_synchronised(&pair, t, run);
        let watch = PrimaryWatch::start(&pair);
        let client = pair.client(&name_owned);
        client.wait_acked(5, MIN);
        let mut ctx = Ctx {
            pair: &pair,
            client: &client,
            active,
            run,
        };
        f(&mut ctx);
        // Every acknowledged write is there, on whichever node serves now.
        let (acked, lost, gap) = client.finish(&pair.lan);
        vzlist_shows_the_ve(&pair);
        packet_filter_in_effect(&pair);
        root_logs_in_with_its_password(&pair);
        run.figure("writes acknowledged", acked as f64, "count");
        run.downtime_s = Some(gap);
        run.writes_lost = Some(lost);
        run.two_primaries_seen = Some(watch.finish());
        run.alerts = pair.smtp.subjects();
        assert_eq!(lost, 0, "acknowledged writes were lost");
        assert_eq!(
            run.two_primaries_seen,
            Some(false),
            "two active nodes were seen"
        );
        drop(dir);
    })
}

/// The operator's view over SSH: `vzlist -a` on the serving node shows VE 101
/// running.
fn vzlist_shows_the_ve(pair: &Pair) {
    let serving = wait_until("a node serving", MIN, || {
        (0..2).find(|n| pair.role(*n).as_deref() == Some("active"))
    });
    let (ok, out) = pair.ssh(serving, "vzlist -a");
    assert!(
        ok && out.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&"101") && w.get(2) == Some(&"running")
        }),
        "`vzlist -a` on node{}: {out}",
        serving + 1
    );
}

/// `access.password-login`: root logs in over SSH with the node's password (checked
/// by sshd against the SHA-512 crypt hash clusterd put in `/etc/shadow`); a wrong
/// password is refused.
fn root_logs_in_with_its_password(pair: &Pair) {
    for n in 0..2 {
        if pair.role(n).is_none() {
            continue;
        }
        let (ok, out) = pair.ssh_password(n, None, "echo password-login-ok");
        assert!(
            ok && out.contains("password-login-ok"),
            "node{}: root's password login: {out}",
            n + 1
        );
        let (ok, out) = pair.ssh_password(n, Some("not-the-password"), "true");
        assert!(!ok, "node{}: a wrong password logged in: {out}", n + 1);
    }
}

/// Both nodes run with the packet filter clusterd loaded (nft's `inet tandem` table,
/// input dropped unless allowed): everything the scenario did went through it.
fn packet_filter_in_effect(pair: &Pair) {
    for n in 0..2 {
        if pair.role(n).is_none() {
            continue;
        }
        let (ok, out) = pair.ssh(n, "nft list table inet tandem");
        assert!(
            ok && out.contains("policy drop;") && out.contains("set admin"),
            "node{}'s packet filter is not in effect: {out}",
            n + 1
        );
    }
}

/// Both nodes' Status pages say that their clock is synchronised to the LAN's
/// time server (chronyd on the node, `network.ntp-servers`).
fn clocks_synchronised(pair: &Pair, since: Instant, run: &mut Run) {
    let want = format!("synchronised to {}", pair::NTP_ADDR);
    for n in 0..2 {
        wait_until(
            &format!("node{}'s clock synchronised ({want})", n + 1),
            2 * MIN,
            || pair.status(n).filter(|s| s.contains(&want)),
        );
    }
    run.figure(
        "boot → both clocks synchronised to the LAN's time server",
        since.elapsed().as_secs_f64(),
        "s",
    );
}

/// A pair scenario without the client's workload (it destroys the data on
/// purpose).
pub fn bare_pair_scenario(name: &str, proves: &str, f: fn(&Pair, &mut Run)) -> Scenario {
    let name_owned = name.to_owned();
    Scenario::new(name, proves, move |run| {
        let base = pair::base(&base_dir());
        let dir = Scratch::new(&format!("{name_owned}-"));
        let t = Instant::now();
        let pair = Arc::new(Pair::boot(&base, &dir.0));
        for (m, c) in pair.consoles() {
            run.watch(&m, c);
        }
        let _report = FailureReport {
            pair: pair.clone(),
            into: run.on_failure.clone(),
        };
        pair.wait_formed(5 * MIN);
        run.figure("pair booted and formed", t.elapsed().as_secs_f64(), "s");
        let watch = PrimaryWatch::start(&pair);
        f(&pair, run);
        run.two_primaries_seen = Some(watch.finish());
        run.alerts = pair.smtp.subjects();
        assert_eq!(
            run.two_primaries_seen,
            Some(false),
            "two active nodes were seen"
        );
    })
}

/// On a failure (while the scenario unwinds), puts both nodes' Status pages
/// and the mail received into the report.
struct FailureReport {
    pair: Arc<Pair>,
    into: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Drop for FailureReport {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut v = self.into.lock().unwrap_or_else(|e| e.into_inner());
        for n in 0..2 {
            let page = self
                .pair
                .status(n)
                .unwrap_or_else(|| "(the console does not answer)".to_owned());
            v.push((format!("node{}'s Status page", n + 1), page));
        }
        v.push((
            "mail received (subjects)".to_owned(),
            self.pair.smtp.subjects().join("\n"),
        ));
    }
}

/// The pair scenarios of the catalogue.
#[must_use]
pub fn scenarios() -> Vec<Scenario> {
    vec![
        pair_scenario(
            "switchover",
            "switchover from the active node's Maintenance page: the other node takes the services, the first becomes passive in sync; downtime = the switchover",
            switchover,
        ),
        pair_scenario(
            "switchback",
            "two switchovers in a row: the services return to the node that had them; no write lost",
            switchback,
        ),
        pair_scenario(
            "power-off-active",
            "power loss of the active node: the other takes over after the deadtime; back on, the first rejoins passive and resynchronises",
            power_off_active,
        ),
        pair_scenario(
            "power-off-passive",
            "power loss of the passive node: the active one keeps serving without interruption and alerts; back on, the passive rejoins in sync",
            power_off_passive,
        ),
        pair_scenario(
            "reset-active",
            "reset button of the active node: the other takes over; the reset node comes back passive",
            reset_active,
        ),
        pair_scenario(
            "shutdown-active",
            "shutdown of the active node from its Maintenance page: it releases the services in order and the other takes them over",
            shutdown_active,
        ),
        pair_scenario(
            "shutdown-passive",
            "shutdown of the passive node from its Maintenance page: the active one keeps serving",
            shutdown_passive,
        ),
        pair_scenario(
            "reboot-passive",
            "restart of the passive node from its Maintenance page: it comes back passive and in sync; the service never stops",
            reboot_passive,
        ),
        pair_scenario(
            "serial-cut",
            "the serial cable pulled and put back: nothing moves (two paths remain)",
            serial_cut,
        ),
        pair_scenario(
            "crossover-cut",
            "the crossover cable pulled: nothing moves (the LAN and serial paths remain), replication stops; back in, the copies resynchronise",
            crossover_cut,
        ),
        pair_scenario(
            "external-cut-active",
            "the active node's LAN cable pulled: it no longer reaches the ping node, the passive still does: the services move to the passive (ping-node rule)",
            external_cut_active,
        ),
        pair_scenario(
            "external-cut-passive",
            "the passive node's LAN cable pulled: nothing moves",
            external_cut_passive,
        ),
        pair_scenario(
            "disk-fail-active",
            "the active node's disk fails (I/O errors): DRBD detaches it and the node serves through the other node's copy; no write lost; alert",
            disk_fail_active,
        ),
        pair_scenario(
            "disk-fail-passive",
            "the passive node's disk fails: the active node keeps serving; alert",
            disk_fail_passive,
        ),
        pair_scenario(
            "kernel-panic-active",
            "the active node's kernel panics (the BMC's diagnostic interrupt): the other takes over; the panicked node restarts by itself and rejoins passive",
            kernel_panic_active,
        ),
        pair_scenario(
            "time-servers-change",
            "the time servers changed on the active node's Network page: both nodes take the new one at once (chronyd started again with it, no node restart) and their clocks synchronise to it; the old one is asked no more",
            time_servers_change,
        ),
        pair_scenario(
            "config-change-peer-down",
            "a settings change made on this node only while the other is off reaches the other node when it is back",
            config_change_peer_down,
        ),
        pair_scenario(
            "reinstall-passive-fetch",
            "the passive node reinstalled from the DVD and activated with \"fetch data from the other node\": it copies the data and rejoins passive; the service never stops",
            reinstall_passive_fetch,
        ),
        bare_pair_scenario(
            "reinstall-both-destroy",
            "both nodes reinstalled from the DVD, activated with \"destroy\" on node2 and \"fetch\" on node1: a new cluster with an empty data area",
            reinstall_both_destroy,
        ),
        bare_pair_scenario(
            "split-brain-resolve",
            "the operator forces the passive node's stale copy after the active one lost its power (force-primary, fencing first); the old active comes back with writes of its own: a DRBD split brain, announced on both nodes, resolved from the console in favour of the forced node; the victim's writes discarded as announced, the survivor's kept",
            split_brain_resolve,
        ),
        pair_scenario(
            "outdated-reboot",
            "the crossover pulled, so the passive copy goes out of date while the active writes; the passive node is reset, and then the active loses its power: the out-of-date copy is still refused after the reset (DRBD's metadata), the service waits; back on, the old active takes over again with every write",
            outdated_reboot,
        ),
        pair_scenario(
            "clusterd-crash-active",
            "the cluster daemon of the active node killed (SIGKILL, from the operator's SSH login): init restarts it, one node serves, the other is passive in sync; no write lost, never two active",
            clusterd_crash_active,
        ),
        pair_scenario(
            "ve-crash",
            "every process of VE 101 on the active node killed (SIGKILL, from the operator's SSH login): the node alerts the crash, starts the VE again and alerts that; nothing moves to the other node; no acknowledged write lost",
            ve_crash,
        ),
        pair_scenario(
            "two-paths-cut",
            "serial cable and crossover cable pulled: the LAN path alone keeps the pair together, nothing moves",
            two_paths_cut,
        ),
        pair_scenario(
            "all-links-lost",
            "serial, crossover and the LAN's heartbeats lost with both nodes running: fencing decides, node2's fence lands first, node1 is powered off, node2 serves; no acknowledged write lost; back on, node1 rejoins passive and resynchronises",
            all_links_lost,
        ),
        pair_scenario(
            "all-links-lost-node1-active",
            "as all-links-lost with node1 holding the services: its writes are suspended from the moment replication is lost, node2 powers it off and takes over; no acknowledged write lost",
            all_links_lost_node1_active,
        ),
    ]
}

/// Runs a form's page and posts it with its revision field (the settings
/// pages refuse a page older than the committed revision).
fn save_notification(c: &Ctx<'_>, n: Node, addresses: &str, this_node_only: bool) -> String {
    let status = c.pair.get(n, "/notification");
    let marker = "name=\"revision\" value=\"";
    let at = status.find(marker).expect("the revision field") + marker.len();
    let rev: u64 = status[at..]
        .split('"')
        .next()
        .and_then(|r| r.parse().ok())
        .expect("a revision");
    // The relay host stays (recipients without one are refused).
    let mut fields = format!(
        "revision={rev}&addresses={addresses}&relay_host={}%3A{}",
        crate::pair::SMTP_ADDR,
        crate::pair::SMTP_PORT
    );
    if this_node_only {
        fields.push_str("&this_node_only=yes");
    }
    let r = c.pair.post(n, "/notification", "/notification", &fields);
    assert_eq!(r.status, 200, "{}", crate::web::text_of(&r.body));
    crate::web::text_of(&r.body)
}

fn switchover(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let t = Instant::now();
    let r = c
        .pair
        .post(a, "/maintenance", "/maintenance/switchover", "confirm=yes");
    assert!(r.status < 400, "switchover refused: {}", r.status);
    let s = c.wait_active(p, t, 2 * MIN);
    c.run.figure("switchover: the other node active", s, "s");
    c.steps(p);
    c.wait_passive_in_sync(a, 3 * MIN);
    c.client.wait_acked(5, MIN);
    c.alert("switchover", MIN);
}

fn switchback(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    for (from, to) in [(a, p), (p, a)] {
        // The node to take over must be passive with its copy up to date, or the
        // cluster refuses (rightly): each switchover starts from a settled pair.
        c.wait_passive_in_sync(to, 3 * MIN);
        let t = Instant::now();
        let r = c.pair.post(
            from,
            "/maintenance",
            "/maintenance/switchover",
            "confirm=yes",
        );
        assert!(
            r.status < 400,
            "switchover refused: {} {}",
            r.status,
            crate::web::text_of(&r.body)
        );
        c.wait_active(to, t, 2 * MIN);
        c.wait_passive_in_sync(from, 3 * MIN);
        c.client.wait_acked(3, MIN);
    }
}

fn power_off_active(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let t = Instant::now();
    // The plug pulled: QEMU is killed at once.
    c.pair.power_loss(a);
    let s = c.wait_active(p, t, 3 * MIN);
    c.run.figure("power loss → the other node active", s, "s");
    c.steps(p);
    c.client.wait_acked(5, MIN);
    c.alert("failover", 2 * MIN);
    c.pair.power_on(a);
    c.wait_passive_in_sync(a, 5 * MIN);
}

fn power_off_passive(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    c.pair.power_loss(p);
    c.stays(a, "active", Duration::from_secs(15));
    c.client.wait_acked(5, MIN);
    c.alert("peer", 2 * MIN);
    c.pair.power_on(p);
    c.wait_passive_in_sync(p, 5 * MIN);
}

fn reset_active(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let t = Instant::now();
    c.pair.monitor(a, "system_reset");
    let s = c.wait_active(p, t, 3 * MIN);
    c.run.figure("reset → the other node active", s, "s");
    c.steps(p);
    c.client.wait_acked(5, MIN);
    c.wait_passive_in_sync(a, 5 * MIN);
}

fn shutdown_active(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let t = Instant::now();
    let r = c.pair.post(
        a,
        "/maintenance",
        "/maintenance/power",
        "action=poweroff&confirm=yes",
    );
    assert_eq!(r.status, 200, "power-off refused");
    let s = c.wait_active(p, t, 3 * MIN);
    c.run.figure("shutdown → the other node active", s, "s");
    c.steps(p);
    c.client.wait_acked(5, MIN);
}

fn shutdown_passive(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let r = c.pair.post(
        p,
        "/maintenance",
        "/maintenance/power",
        "action=poweroff&confirm=yes",
    );
    assert_eq!(r.status, 200, "power-off refused");
    c.stays(a, "active", Duration::from_secs(20));
    c.client.wait_acked(5, MIN);
}

fn reboot_passive(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let r = c.pair.post(
        p,
        "/maintenance",
        "/maintenance/power",
        "action=reboot&confirm=yes",
    );
    assert_eq!(r.status, 200, "restart refused");
    std::thread::sleep(Duration::from_secs(10));
    c.wait_passive_in_sync(p, 5 * MIN);
    assert_eq!(c.pair.role(a).as_deref(), Some("active"));
}

/// Waits until node `n`'s Status page contains `what`.
fn status_has(pair: &Pair, n: Node, what: &str, limit: Duration) {
    wait_until(&format!("node{} status: {what}", n + 1), limit, || {
        pair.status(n)?.contains(what).then_some(())
    });
}

fn outdated_reboot(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    // The crossover goes; the active node writes on alone, so the passive copy
    // is out of date (DRBD records it in the passive's metadata).
    c.pair.crossover(false);
    status_has(c.pair, p, "Outdated/", 2 * MIN);
    c.client.wait_acked(5, MIN);
    // The reset button on the passive node: nothing in memory survives.
    let t = Instant::now();
    c.pair.monitor(p, "system_reset");
    std::thread::sleep(Duration::from_secs(5));
    status_has(c.pair, p, "role of this node passive", 5 * MIN);
    status_has(c.pair, p, "Outdated/", MIN);
    c.run.figure(
        "reset → the passive node back, its copy still out of date",
        t.elapsed().as_secs_f64(),
        "s",
    );
    c.client.wait_acked(3, MIN);
    // The active node loses its power: the out-of-date copy must not serve.
    c.pair.power_loss(a);
    let t = Instant::now();
    c.stays(p, "passive", Duration::from_secs(30));
    status_has(c.pair, p, "not known good", MIN);
    c.run.figure(
        "power loss → the out-of-date copy still refused",
        t.elapsed().as_secs_f64(),
        "s",
    );
    // The old active comes back with the newest copy and takes over again;
    // the other resynchronises from it.
    c.pair.set_link(p, "nic-xo", true);
    let t = Instant::now();
    c.pair.power_on(a);
    let s = c.wait_active(a, t, 5 * MIN);
    c.run
        .figure("power back on → the newest copy active again", s, "s");
    c.steps(a);
    c.client.wait_acked(5, MIN);
    c.wait_passive_in_sync(p, 5 * MIN);
}

fn clusterd_pid(c: &Ctx<'_>, n: Node) -> Option<String> {
    let (ok, out) = c.pair.ssh(n, "busybox pidof clusterd");
    let pid = out.trim();
    (ok && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then(|| pid.to_owned())
}

fn clusterd_crash_active(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    // From a settled pair: the other node passive with its copy up to date.
    c.wait_passive_in_sync(p, 5 * MIN);
    let alerts_before = c.pair.smtp.subjects().len();
    let before = wait_until("clusterd's PID over SSH", 2 * MIN, || clusterd_pid(c, a));
    let t = Instant::now();
    let (ok, out) = c.pair.ssh(a, &format!("kill -KILL {before}"));
    assert!(ok, "kill over SSH: {out}");
    let after = wait_until("clusterd started again by init", MIN, || {
        clusterd_pid(c, a).filter(|pid| *pid != before)
    });
    c.run.figure(
        "killed → init started clusterd again",
        t.elapsed().as_secs_f64(),
        "s",
    );
    // The pair settles: one node serves, the other is passive and in sync.
    let active = wait_until("one node active, the other passive", 3 * MIN, || {
        match (c.pair.role(a).as_deref(), c.pair.role(p).as_deref()) {
            (Some("active"), Some("passive")) => Some(a),
            (Some("passive"), Some("active")) => Some(p),
            _ => None,
        }
    });
    c.run.figure(
        "killed → settled (services on the node that had them = 1)",
        if active == a { 1.0 } else { 0.0 },
        "yes=1",
    );
    c.client.wait_acked(5, MIN);
    c.wait_passive_in_sync(other(active), 5 * MIN);
    // The other node never tried to take data the restarted one still held.
    let failed: Vec<String> = c
        .pair
        .smtp
        .subjects()
        .into_iter()
        .skip(alerts_before)
        .filter(|s| s.contains(&format!("node{}] resources", p + 1)) || s.contains("fencing"))
        .collect();
    assert!(
        failed.is_empty(),
        "node{} tried a takeover: {failed:?}",
        p + 1
    );
    assert_eq!(
        clusterd_pid(c, a).as_deref(),
        Some(after.as_str()),
        "clusterd restarted again"
    );
}

/// The processes of VE 101 on node `n` (its cgroup's members).
fn ve_pids(c: &Ctx<'_>, n: Node) -> Option<Vec<String>> {
    let (ok, out) = c
        .pair
        .ssh(n, "cat /sys/fs/cgroup/tandem.slice/ve-101/cgroup.procs");
    let pids: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
    (ok && !pids.is_empty() && pids.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())))
        .then_some(pids)
}

fn ve_crash(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    c.wait_passive_in_sync(p, 5 * MIN);
    let before = wait_until("VE 101's processes over SSH", 2 * MIN, || ve_pids(c, a));
    let alerts_before = c.pair.smtp.subjects().len();
    let t = Instant::now();
    // Each process is killed; the kernel ends the rest of the VE's PID namespace as
    // soon as its first process dies, so later ones may be gone already.
    let (ok, out) = c.pair.ssh(
        a,
        &format!(
            "n=0; for p in {}; do kill -KILL $p 2>/dev/null && n=$((n+1)); done; echo killed $n",
            before.join(" ")
        ),
    );
    assert!(
        ok && out.trim().strip_prefix("killed ").is_some_and(|n| n != "0"),
        "kill over SSH: {out}"
    );
    c.alert_after(alerts_before, "VE 101: running -> crashed", MIN);
    c.alert_after(alerts_before, "VE 101: crashed -> running", MIN);
    let after = wait_until("VE 101 running again", MIN, || {
        ve_pids(c, a).filter(|now| now.iter().all(|pid| !before.contains(pid)))
    });
    assert!(!after.is_empty());
    let acked = c.client.acked();
    c.client.wait_acked(5, MIN);
    c.run.figure(
        "killed → the client's writes acknowledged again",
        t.elapsed().as_secs_f64(),
        "s",
    );
    assert!(c.client.acked() > acked);
    // The VE came back where it was: no takeover, no fence.
    c.stays(a, "active", Duration::from_secs(10));
    c.stays(p, "passive", Duration::from_secs(1));
    let moved: Vec<String> = c
        .pair
        .smtp
        .subjects()
        .into_iter()
        .skip(alerts_before)
        .filter(|s| s.contains("failover") || s.contains("fencing") || s.contains("resources"))
        .collect();
    assert!(moved.is_empty(), "the services moved: {moved:?}");
}

fn serial_cut(c: &mut Ctx<'_>) {
    let a = c.active;
    c.pair.cut_serial();
    c.stays(a, "active", Duration::from_secs(20));
    c.stays(other(a), "passive", Duration::from_secs(2));
    c.pair.connect_serial();
    c.client.wait_acked(5, MIN);
}

fn crossover_cut(c: &mut Ctx<'_>) {
    let a = c.active;
    c.pair.crossover(false);
    c.stays(a, "active", Duration::from_secs(20));
    c.stays(other(a), "passive", Duration::from_secs(2));
    c.client.wait_acked(5, MIN);
    c.pair.crossover(true);
    c.wait_passive_in_sync(other(a), 5 * MIN);
}

fn external_cut_active(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let t = Instant::now();
    c.pair.set_link(a, "nic-lan", false);
    let s = c.wait_active(p, t, 3 * MIN);
    c.run
        .figure("LAN cut at the active node → the other active", s, "s");
    c.steps(p);
    c.client.wait_acked(5, MIN);
    c.pair.set_link(a, "nic-lan", true);
    c.wait_passive_in_sync(a, 5 * MIN);
}

fn external_cut_passive(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    c.pair.set_link(p, "nic-lan", false);
    c.stays(a, "active", Duration::from_secs(20));
    c.client.wait_acked(5, MIN);
    c.pair.set_link(p, "nic-lan", true);
    c.wait_passive_in_sync(p, 3 * MIN);
}

fn two_paths_cut(c: &mut Ctx<'_>) {
    let a = c.active;
    c.pair.cut_serial();
    c.pair.crossover(false);
    c.stays(a, "active", Duration::from_secs(20));
    c.client.wait_acked(5, MIN);
    c.pair.crossover(true);
    c.pair.connect_serial();
    c.wait_passive_in_sync(other(a), 5 * MIN);
}

fn all_links_lost_node1_active(c: &mut Ctx<'_>) {
    if c.active != 0 {
        // node1 takes the services first (a switchover from node2's page).
        c.wait_passive_in_sync(0, 3 * MIN);
        let t = Instant::now();
        let r = c
            .pair
            .post(1, "/maintenance", "/maintenance/switchover", "confirm=yes");
        assert!(r.status < 400, "switchover refused: {}", r.status);
        c.wait_active(0, t, 2 * MIN);
        c.wait_passive_in_sync(1, 3 * MIN);
        c.client.wait_acked(3, MIN);
        c.active = 0;
    }
    all_links_lost(c);
}

fn all_links_lost(c: &mut Ctx<'_>) {
    let a = c.active;
    let t = Instant::now();
    // Every heartbeat path at once, both nodes running: the switch drops the
    // heartbeats (the service and the BMCs stay reachable), the serial cable
    // and then the crossover (replication) go.
    c.pair.lan_heartbeat(false);
    c.pair.cut_serial();
    c.pair.crossover(false);
    // Both would fence; node1 waits its tiebreak delay, so node2's lands first.
    wait_until("node1 powered off by node2's fence", 3 * MIN, || {
        c.pair.powered_off(0).then_some(())
    });
    c.run.figure(
        "every path lost → node1 powered off by its BMC",
        t.elapsed().as_secs_f64(),
        "s",
    );
    let s = c.wait_active(1, t, 3 * MIN);
    c.run.figure("every path lost → node2 active", s, "s");
    if a == 0 {
        c.steps(1);
    }
    assert!(
        !c.pair.powered_off(1),
        "node2 must keep running: both nodes were powered off"
    );
    c.client.wait_acked(5, MIN);
    c.alert("fencing", MIN);
    // The paths back, node1 powered on (its new machine's links are up): it
    // rejoins passive and catches up.
    c.pair.lan_heartbeat(true);
    c.pair.set_link(1, "nic-xo", true);
    c.pair.power_on(0);
    c.pair.connect_serial();
    c.wait_passive_in_sync(0, 5 * MIN);
    c.client.wait_acked(3, MIN);
}

fn disk_fail_active(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let before = c.pair.smtp.subjects().len();
    // The disk starts returning I/O errors (its backing is gone).
    c.pair.monitor(a, "drive_del d0");
    // DRBD detaches the failed disk and serves through the other node's copy.
    c.client.wait_acked(20, 2 * MIN);
    c.alert_after(before, "replication", 2 * MIN);
    assert_eq!(c.pair.role(p).as_deref(), Some("passive"));
}

fn disk_fail_passive(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let before = c.pair.smtp.subjects().len();
    c.pair.monitor(p, "drive_del d0");
    c.client.wait_acked(20, 2 * MIN);
    c.alert_after(before, "replication", 2 * MIN);
    c.stays(a, "active", Duration::from_secs(10));
}

fn kernel_panic_active(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let t = Instant::now();
    // The BMC's diagnostic interrupt: the node's kernel panics on it.
    c.pair.monitor(a, "nmi");
    let s = c.wait_active(p, t, 3 * MIN);
    c.run.figure("kernel panic → the other node active", s, "s");
    c.steps(p);
    c.client.wait_acked(5, MIN);
    // The panicked node restarts by itself and rejoins passive.
    c.wait_passive_in_sync(a, 6 * MIN);
}

/// The second time server of the LAN.
const NEW_NTP: &str = "192.0.2.3";

fn time_servers_change(c: &mut Ctx<'_>) {
    let a = c.active;
    let _new = c.pair.time_server(NEW_NTP);
    let page = c.pair.get(a, "/network");
    // As a browser sends the form (the rig's values hold no HTML escapes).
    let encode = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b' ' => "+".to_owned(),
                b if b.is_ascii_alphanumeric() || b"-._".contains(&b) => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect()
    };
    let keep = |f: &str| format!("{f}={}", encode(&crate::web::field_value(&page, f)));
    let mut fields: Vec<String> = [
        "revision",
        "node1_hostname",
        "node1_address",
        "node2_hostname",
        "node2_address",
        "netmask",
        "gateway",
        "ping_nodes",
        "dns_search",
        "dns_server1",
        "dns_server2",
    ]
    .iter()
    .map(|f| keep(f))
    .collect();
    assert_eq!(
        crate::web::field_value(&page, "time_servers"),
        pair::NTP_ADDR,
        "the page shows the time server in use"
    );
    fields.push(format!("time_servers={NEW_NTP}"));
    for (f, on) in [
        ("serial_heartbeat", c.pair.cfg.heartbeat.serial.enabled),
        ("external_heartbeat", c.pair.cfg.heartbeat.external.enabled),
    ] {
        if on {
            fields.push(format!("{f}=yes"));
        }
    }
    let t = Instant::now();
    let r = c.pair.post(a, "/network", "/network", &fields.join("&"));
    let said = crate::web::text_of(&r.body);
    assert_eq!(r.status, 200, "{said}");
    assert!(said.contains("Saved on both nodes"), "{said}");
    // The page's standing note names restarts too; the change's own warning is
    // what must not come.
    assert!(
        !said.contains("starts again: restart the passive node"),
        "the time servers need no restart: {said}"
    );
    let want = format!("synchronised to {NEW_NTP}");
    for n in 0..2 {
        wait_until(
            &format!("node{}'s clock synchronised to the new server", n + 1),
            3 * MIN,
            || c.pair.status(n).filter(|s| s.contains(&want)),
        );
        let (ok, out) = c.pair.ssh(n, "chronyc -n sources");
        assert!(ok, "chronyc on node{}: {out}", n + 1);
        assert!(
            out.contains(NEW_NTP) && !out.contains(pair::NTP_ADDR),
            "node{}'s sources: {out}",
            n + 1
        );
    }
    c.run.figure(
        "time servers saved → both clocks synchronised to the new one",
        t.elapsed().as_secs_f64(),
        "s",
    );
}

fn config_change_peer_down(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    c.pair.power_loss(p);
    std::thread::sleep(Duration::from_secs(10));
    let said = save_notification(c, a, "ops%40example.com%0D%0Anight%40example.com", true);
    assert!(said.contains("Saved on this node only"), "{said}");
    c.pair.power_on(p);
    c.wait_passive_in_sync(p, 5 * MIN);
    wait_until(
        "the changed recipients on the node that was down",
        2 * MIN,
        || {
            c.pair
                .get(p, "/notification")
                .contains("night@example.com")
                .then_some(())
        },
    );
}

fn reinstall_passive_fetch(c: &mut Ctx<'_>) {
    let (a, p) = (c.active, other(c.active));
    let t = Instant::now();
    c.pair.reinstall(p);
    c.run.figure(
        "passive node reinstalled from the DVD",
        t.elapsed().as_secs_f64(),
        "s",
    );
    let t = Instant::now();
    c.pair.activate(p, "fetch", "");
    c.run.figure(
        "activation with a full copy from the other node",
        t.elapsed().as_secs_f64(),
        "s",
    );
    c.wait_passive_in_sync(p, 10 * MIN);
    assert_eq!(c.pair.role(a).as_deref(), Some("active"));
}

/// Scenarios that reinstall both nodes erase the data on purpose: they run
/// without the client.
/// Appends `line` to VE 101's log (the service's data on the replicated area).
fn append(pair: &Pair, line: &str) {
    let path = format!("/cgi-bin/append?{line}");
    let r = pair.lan.run(move || http_get(pair::VE, &path, 2 * MIN));
    assert_eq!(r, "ok\n", "appending {line}");
}

fn split_brain_resolve(pair: &Pair, run: &mut Run) {
    let a = if pair.role(0).as_deref() == Some("active") {
        0
    } else {
        1
    };
    let p = other(a);
    let (an, pn) = (format!("node{}", a + 1), format!("node{}", p + 1));
    let status_has = |n: Node, what: &str, limit: Duration| status_has(pair, n, what, limit);
    // The crossover goes: the passive copy is stale (the active one is heard),
    // and the active node writes on alone.
    pair.crossover(false);
    status_has(p, "stale", 2 * MIN);
    append(pair, "written-by-the-old-active-after-the-cut");
    // The active node loses its power: the passive one does not start from its
    // stale copy.
    pair.power_loss(a);
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(
        pair.role(p).as_deref(),
        Some("passive"),
        "a stale copy was promoted"
    );
    // The operator declares the passive copy the one to start from (typing the
    // cluster's name): it fences the other node, then takes over.
    let t = Instant::now();
    let r = pair.post(
        p,
        "/home",
        "/force-primary",
        &format!("confirm_name={}", pair::CLUSTER),
    );
    assert!(
        r.status < 400,
        "force-primary refused: {}",
        text_of(&r.body)
    );
    wait_until(&format!("{pn} active"), 3 * MIN, || {
        (pair.role(p).as_deref() == Some("active")).then_some(())
    });
    run.figure(
        "force-primary → the forced node active",
        t.elapsed().as_secs_f64(),
        "s",
    );
    append(pair, "written-by-the-survivor");
    // The old active node comes back, the crossover too: both copies changed
    // while apart.
    pair.set_link(p, "nic-xo", true);
    pair.power_on(a);
    pair.connect_serial();
    let t = Instant::now();
    for n in [a, p] {
        status_has(n, "split brain of the replicated data", 5 * MIN);
    }
    run.figure(
        "split brain announced on both nodes",
        t.elapsed().as_secs_f64(),
        "s",
    );
    assert_eq!(pair.role(a).as_deref(), Some("passive"));
    // Resolved from the console, on both nodes: the forced node survives.
    let t = Instant::now();
    for n in [a, p] {
        let r = pair.post(
            n,
            "/home",
            "/split-brain/resolve",
            &format!("survivor={pn}&confirm_name={}", pair::CLUSTER),
        );
        assert!(
            r.status < 400,
            "resolution refused on node{}: {}",
            n + 1,
            text_of(&r.body)
        );
    }
    wait_until(&format!("{an} passive and in sync"), 5 * MIN, || {
        let st = pair.status(a)?;
        (st.contains("role of this node passive") && st.contains("UpToDate/UpToDate")).then_some(())
    });
    run.figure(
        "resolution → the victim in sync",
        t.elapsed().as_secs_f64(),
        "s",
    );
    let log = pair
        .lan
        .run(|| http_get(pair::VE, "/cgi-bin/read", 2 * MIN));
    assert!(log.contains("written-by-the-survivor"), "{log}");
    assert!(
        !log.contains("written-by-the-old-active-after-the-cut"),
        "the victim's write survived: {log}"
    );
    assert!(log.contains("base"), "{log}");
}

fn reinstall_both_destroy(pair: &Pair, run: &mut Run) {
    let t = Instant::now();
    pair.reinstall(0);
    pair.reinstall(1);
    run.figure(
        "both nodes reinstalled from the DVD",
        t.elapsed().as_secs_f64(),
        "s",
    );
    let t = Instant::now();
    pair.activate_both();
    run.figure(
        "activation: node2 destroys, node1 fetches",
        t.elapsed().as_secs_f64(),
        "s",
    );
    let act = wait_until("the cluster formed again", 5 * MIN, || {
        match (pair.role(0).as_deref(), pair.role(1).as_deref()) {
            (Some("active"), Some("passive")) => Some(0),
            (Some("passive"), Some("active")) => Some(1),
            _ => None,
        }
    });
    wait_until("the copies in sync", 10 * MIN, || {
        pair.status(other(act))?
            .contains("UpToDate/UpToDate")
            .then_some(())
    });
    // A new data area: VE 101 is not installed on it.
    let ves = pair.get(act, "/ves");
    assert!(
        !ves.contains("VE 101 runs") && ves.contains("install-ve101"),
        "the new data area still holds VE 101:\n{}",
        crate::web::text_of(&ves)
    );
}
