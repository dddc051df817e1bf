//! The watch over running VEs with the real crun: a VE's first process killed from
//! outside is noticed through its pidfd and the VE restarted after the backoff, with
//! the alerts of R8.2; repeated crashes give up; a stop by the operator or a release
//! is never answered by a restart; a failing TCP health check restarts the VE, a
//! passing one does not.
//!
//! Runs as root (crun). Needs Debian packages crun and busybox-static.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crun_rig;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crun_rig::CrunRig;
use tandem_core::ve_health::{RestartPolicy, StopCause};
use tandem_runtime::ve::health::{VeEvent, VeSupervisor};

/// Short delays, so that the test runs in seconds: 300 ms doubling to 1.2 s, three
/// restarts within a minute, two failed checks.
const POLICY: RestartPolicy = RestartPolicy {
    first_delay: Duration::from_millis(300),
    max_delay: Duration::from_millis(1200),
    give_up_after: 3,
    window: Duration::from_secs(60),
    check_failures: 2,
};

type Events = Arc<Mutex<Vec<(Instant, VeEvent)>>>;

fn supervisor(rig: &CrunRig) -> (VeSupervisor, Events) {
    let sup = VeSupervisor::new(rig.ves.clone(), POLICY);
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    sup.run(Arc::new(move |e| {
        eprintln!("event {}: {}", e.kind, e.text);
        sink.lock().unwrap().push((Instant::now(), e));
    }));
    (sup, events)
}

fn kinds(events: &Events) -> Vec<&'static str> {
    events.lock().unwrap().iter().map(|(_, e)| e.kind).collect()
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

fn kill_init(rig: &CrunRig, id: u32) -> (i32, Instant) {
    let pid = rig.init_pid(id).expect("the VE runs");
    // SAFETY: kill(2) of a pid this test's crun started.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(r, 0, "kill {pid}: {}", std::io::Error::last_os_error());
    (pid, Instant::now())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_crashed_ve_is_restarted_with_backoff_then_given_up() {
    let rig = CrunRig::new();
    rig.create(61, "");
    runtime().block_on(async {
        let (sup, events) = supervisor(&rig);
        sup.start(61).await.unwrap();
        let mut latencies = Vec::new();
        for n in 1..=3u32 {
            let before = events.lock().unwrap().len();
            let (old, killed) = kill_init(&rig, 61);
            wait_for(
                &format!("restart {n} of VE 61"),
                Duration::from_secs(15),
                || events.lock().unwrap().len() >= before + 2,
            )
            .await;
            let ev = events.lock().unwrap()[before..].to_vec();
            assert_eq!(ev[0].1.kind, "ve_crashed", "{ev:?}");
            assert!(
                ev[0].1.text.contains(&format!("pid {old}")),
                "{}",
                ev[0].1.text
            );
            assert_eq!(ev[1].1.kind, "ve_restarted", "{ev:?}");
            let noticed = ev[0].0 - killed;
            let back = ev[1].0 - killed;
            let delay = POLICY.delay(n);
            assert!(
                back >= delay,
                "restart {n} after {back:?}, before its delay {delay:?}"
            );
            assert!(
                noticed < Duration::from_millis(500),
                "the crash was noticed after {noticed:?}"
            );
            let new = rig.init_pid(61).expect("runs again");
            assert_ne!(new, old);
            eprintln!(
                "crash {n}: noticed after {noticed:?}, running again after {back:?} (delay {delay:?}, start {:?})",
                back - delay
            );
            latencies.push(back - delay);
        }
        assert_eq!(sup.views()[0].state, "running");
        // The fourth crash within the window: given up.
        kill_init(&rig, 61);
        wait_for("giving up", Duration::from_secs(5), || {
            kinds(&events).last() == Some(&"ve_gave_up")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!rig.ves.is_running(61), "restarted after giving up");
        assert_eq!(kinds(&events).last(), Some(&"ve_gave_up"));
        assert_eq!(sup.views()[0].state, "given up after 4 crashes");
        let text = events.lock().unwrap().last().unwrap().1.text.clone();
        assert!(text.contains("tandem ve start 61"), "{text}");
        // The operator starts it again: watched afresh, no restart announced.
        let before = events.lock().unwrap().len();
        sup.start(61).await.unwrap();
        assert_eq!(sup.views()[0].state, "running");
        assert_eq!(sup.views()[0].crashes, 0);
        kill_init(&rig, 61);
        wait_for("the next restart", Duration::from_secs(5), || {
            kinds(&events).last() == Some(&"ve_restarted")
        })
        .await;
        let ev: Vec<String> = events.lock().unwrap()[before..]
            .iter()
            .map(|(_, e)| e.text.clone())
            .collect();
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(ev[0].contains("restarting it in 0.3 s (crash 1 "), "{ev:?}");
        eprintln!("start time of a restart (after its delay): {latencies:?}");
    });
}

#[test]
fn stops_by_the_operator_or_a_release_are_not_restarted() {
    let rig = CrunRig::new();
    rig.create(62, "");
    rig.create(63, "");
    runtime().block_on(async {
        let (sup, events) = supervisor(&rig);
        sup.start(62).await.unwrap();
        sup.start(63).await.unwrap();
        sup.stop(62, Duration::from_secs(5), StopCause::Operator)
            .await
            .unwrap();
        sup.stop(63, Duration::from_secs(5), StopCause::Release)
            .await
            .unwrap();
        // Longer than any restart delay.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!rig.ves.is_running(62) && !rig.ves.is_running(63));
        let ev: Vec<(u32, &str)> = events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| (e.id, e.kind))
            .collect();
        assert_eq!(ev, [(62, "ve_stopped")]);
        let states: Vec<String> = sup.views().into_iter().map(|v| v.state).collect();
        assert_eq!(states, ["stopped", "stopped"]);
    });
}

#[test]
fn a_failing_health_check_restarts_the_ve_and_a_passing_one_does_not() {
    let rig = CrunRig::new();
    // The built-in template's web server listens on port 80 (serving /index.html),
    // nothing on 81.
    rig.create(64, "HEALTHCHECK=\"tcp:80\"\nHEALTHCHECK_INTERVAL=\"1\"\n");
    rig.create(65, "HEALTHCHECK=\"tcp:81\"\nHEALTHCHECK_INTERVAL=\"1\"\n");
    rig.create(66, "HEALTHCHECK=\"http:80/\"\nHEALTHCHECK_INTERVAL=\"1\"\n");
    rig.create(
        67,
        "HEALTHCHECK=\"http:80/missing\"\nHEALTHCHECK_INTERVAL=\"1\"\n",
    );
    let unhealthy = [65, 67];
    runtime().block_on(async {
        let (sup, events) = supervisor(&rig);
        for id in 64..=67 {
            sup.start(id).await.unwrap();
        }
        let old: Vec<i32> = unhealthy
            .iter()
            .map(|i| rig.init_pid(*i).unwrap())
            .collect();
        // Two failed checks (1 s apart), then a stop and a start 300 ms later.
        wait_for(
            "the unhealthy VEs restarted",
            Duration::from_secs(15),
            || {
                let ev = events.lock().unwrap();
                unhealthy.iter().all(|i| {
                    ev.iter()
                        .any(|(_, e)| e.id == *i && e.kind == "ve_restarted")
                })
            },
        )
        .await;
        let ev = events.lock().unwrap().clone();
        let crashed = |id: u32| {
            ev.iter()
                .find(|(_, e)| e.kind == "ve_crashed" && e.id == id)
                .unwrap()
                .1
                .text
                .clone()
        };
        let tcp = crashed(65);
        assert!(
            tcp.contains("health check failed 2 times") && tcp.contains("tcp:81"),
            "{tcp}"
        );
        let http = crashed(67);
        assert!(
            http.contains("health check failed 2 times")
                && http.contains("http:80/missing: answered 404"),
            "{http}"
        );
        for (id, old) in unhealthy.iter().zip(old) {
            assert_ne!(rig.init_pid(*id), Some(old), "VE {id} not restarted");
        }
        assert!(
            ev.iter().all(|(_, e)| unhealthy.contains(&e.id)),
            "a healthy VE had events: {ev:?}"
        );
        for id in unhealthy {
            sup.stop(id, Duration::from_secs(5), StopCause::Operator)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            events
                .lock()
                .unwrap()
                .iter()
                .all(|(_, e)| unhealthy.contains(&e.id)),
            "a healthy VE was restarted"
        );
        assert!(rig.ves.is_running(64) && rig.ves.is_running(66));
        for id in [64, 66] {
            sup.stop(id, Duration::from_secs(5), StopCause::Operator)
                .await
                .unwrap();
        }
    });
}

/// A tmpfs mounted on `path` for the test (the data area the control service asks
/// for); unmounted when dropped.
struct DataArea(std::path::PathBuf);

impl DataArea {
    fn mount(path: &std::path::Path) -> DataArea {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tandem-test"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        DataArea(path.to_owned())
    }
}

impl Drop for DataArea {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The operator's road: `VeStart`, `VeStop` and `VeRestart` requests to the control
/// service, which start and stop through the watch.
#[test]
fn the_operators_requests_go_through_the_watch() {
    use tandem_api::wire::RequestLine;
    use tandem_api::{API_VERSION, Reply, Request};
    use tandem_runtime::admin::Admin;
    use tandem_runtime::control::{ClusterLink, Handled, Service};

    let rig = CrunRig::new();
    rig.create(67, "");
    let data = DataArea::mount(&rig.dir.path().join("data"));
    runtime().block_on(async {
        let (sup, events) = supervisor(&rig);
        let mut admin = Admin::new(
            rig.dir.path().join("store"),
            tandem_config::NodeId::Node1,
            "sim".parse().unwrap(),
        );
        admin.ve.data_mount.clone_from(&data.0);
        admin.ve_health = Some(sup.clone());
        let link = ClusterLink {
            ask: Arc::new(|_| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(Reply::Done);
                rx
            }),
            ..ClusterLink::ended("node1")
        };
        let service = Arc::new(Service::new(admin, Some(link)));
        let ask = |request: Request| {
            let service = Arc::clone(&service);
            async move {
                let line = RequestLine {
                    version: API_VERSION,
                    token: None,
                    payload: 0,
                    request,
                };
                match service.handle(0, line, Vec::new()).await {
                    Handled::One(r, _) => r,
                    Handled::Events { .. } => panic!("an event stream"),
                }
            }
        };
        assert_eq!(ask(Request::VeStart { id: 67 }).await, Reply::Done);
        assert!(rig.ves.is_running(67));
        // Started through the request: watched, so a crash is restarted.
        kill_init(&rig, 67);
        wait_for("the restart", Duration::from_secs(5), || {
            kinds(&events).contains(&"ve_restarted")
        })
        .await;
        let old = rig.init_pid(67).unwrap();
        assert_eq!(ask(Request::VeRestart { id: 67 }).await, Reply::Done);
        assert_ne!(rig.init_pid(67), Some(old), "not restarted");
        assert_eq!(
            ask(Request::VeStop {
                id: 67,
                grace_secs: Some(5)
            })
            .await,
            Reply::Done
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !rig.ves.is_running(67),
            "restarted after the operator's stop"
        );
        assert_eq!(kinds(&events), ["ve_crashed", "ve_restarted", "ve_stopped"]);
        assert_eq!(sup.views()[0].state, "stopped");
        // A VE that does not exist: refused with its number.
        match ask(Request::VeStart { id: 68 }).await {
            Reply::Refused(r) => assert!(r.to_string().contains("VE 68"), "{r}"),
            other => panic!("{other:?}"),
        }
    });
    drop(data);
}

/// The chain's step: a takeover starts the `ONBOOT="yes"` VEs watched (a crash is
/// restarted), a release (failover, switchover) stops them and nothing restarts them,
/// also not a VE waiting for its restart at that moment.
#[test]
fn the_chain_starts_watched_ves_and_its_release_is_not_restarted() {
    use tandem_runtime::resources::Resource as _;
    use tandem_runtime::ve::manager::OnbootVes;

    let rig = CrunRig::new();
    rig.create(68, "ONBOOT=\"yes\"\n");
    rig.create(69, "ONBOOT=\"yes\"\n");
    rig.create(70, "ONBOOT=\"no\"\n");
    runtime().block_on(async {
        let (sup, events) = supervisor(&rig);
        let mut step =
            OnbootVes::new(rig.ves.clone(), 1, Duration::from_millis(10)).watched_by(sup.clone());
        step.acquire().await.unwrap();
        assert!(rig.ves.is_running(68) && rig.ves.is_running(69));
        assert!(!rig.ves.is_running(70));
        kill_init(&rig, 68);
        wait_for("the restart of VE 68", Duration::from_secs(5), || {
            kinds(&events).contains(&"ve_restarted")
        })
        .await;
        // VE 69 crashes just before the release: its restart is pending (300 ms).
        kill_init(&rig, 69);
        wait_for("the crash of VE 69", Duration::from_secs(5), || {
            events.lock().unwrap().iter().any(|(_, e)| e.id == 69)
        })
        .await;
        step.release().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !rig.ves.is_running(68) && !rig.ves.is_running(69),
            "a VE runs after the release"
        );
        let ev: Vec<(u32, &str)> = events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| (e.id, e.kind))
            .collect();
        assert_eq!(
            ev,
            [(68, "ve_crashed"), (68, "ve_restarted"), (69, "ve_crashed")]
        );
        let states: Vec<String> = sup.views().into_iter().map(|v| v.state).collect();
        assert_eq!(states, ["stopped", "stopped"]);
    });
}

/// `VeSet` (what `tandem ve set` and `vzctl set --save` send to clusterd): the whole
/// file is checked before it is replaced; a refused change leaves it as it was.
#[test]
fn a_settings_change_is_checked_whole_and_a_refused_one_changes_nothing() {
    use tandem_runtime::admin::ve::VeSite;

    let rig = CrunRig::new();
    rig.create(69, "ONBOOT=\"no\"\n");
    let data = DataArea::mount(&rig.dir.path().join("data"));
    let site = VeSite::at(
        &data.0,
        rig.ves.layout.conf_dir.clone(),
        std::path::PathBuf::from("/bin/false"),
    );
    let (cfg, _) =
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
    let file = rig.ves.layout.conf_dir.join("ve-69.conf");
    let set = |pairs: &[(&str, &str)]| {
        let changes: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        site.set(&cfg, 69, &changes)
    };
    set(&[("ONBOOT", "yes"), ("HOSTNAME", "web2"), ("NUMPROC", "512")]).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("ONBOOT=\"yes\"")
            && text.contains("HOSTNAME=\"web2\"")
            && text.contains("NUMPROC=\"512\""),
        "{text}"
    );
    let e = set(&[("HOSTNAME", "web3"), ("NUMPROC", "abc")]).unwrap_err();
    assert!(e.to_string().contains("NUMPROC"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "changed");
    let e = site
        .set(&cfg, 70, &[("ONBOOT".to_owned(), "yes".to_owned())])
        .unwrap_err();
    assert!(e.to_string().contains("70"), "{e}");
    drop(data);
}
