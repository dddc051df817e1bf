//! The VEs of a release stopped with the real crun, as the chain's VE step stops them
//! on a node (failover, switchover, the switchover of a rolling update): three VEs
//! whose first process takes about a second to end on SIGTERM, watched by the
//! supervisor. Each round starts them, waits until each one's TERM handler is set,
//! then times the step's release and counts its crun commands; the last line gives
//! the median (`TANDEM_VE_STOP_ROUNDS` sets the rounds, 1 by default):
//!
//! ```text
//! TANDEM_VE_STOP_ROUNDS=5 cargo test -p tandem-runtime --test ve_stop -- --nocapture
//! ```
//!
//! A VE that cannot be stopped is reported by its number, the others are still
//! stopped, and the chain keeps the data area under it.
//!
//! Runs as root (crun). Needs Debian packages crun and busybox-static.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crun_rig;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crun_rig::CrunRig;
use tandem_core::ve_health::RestartPolicy;
use tandem_runtime::resources::{Chain, Resource as _, SimKnobs, SimResource};
use tandem_runtime::ve::health::VeSupervisor;
use tandem_runtime::ve::manager::OnbootVes;

/// A first process that ends a second after SIGTERM, as a service that writes out
/// its state does; it says that its handler is set with `/tmp/ready`.
const SLOW_INIT: &str = "#!/bin/busybox sh\ntrap '/bin/busybox sleep 1; exit 0' TERM\n/bin/busybox touch /tmp/ready\nwhile :; do /bin/busybox sleep 3600 & wait $!; done\n";

fn policy() -> RestartPolicy {
    RestartPolicy {
        first_delay: Duration::from_secs(60),
        max_delay: Duration::from_secs(60),
        give_up_after: 1,
        window: Duration::from_secs(60),
        check_failures: 3,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// VEs `ids` from the built-in template with [`SLOW_INIT`] as their first process.
fn slow_ves(ids: &[u32]) -> CrunRig {
    let rig = CrunRig::new();
    for &id in ids {
        rig.create(id, "ONBOOT=\"yes\"\n");
        // Written over the template's init: it keeps the VE's owner and mode.
        std::fs::write(rig.private(id).join("sbin/init"), SLOW_INIT).unwrap();
    }
    rig
}

fn ready_marker(rig: &CrunRig, id: u32) -> PathBuf {
    rig.private(id).join("tmp/ready")
}

/// Starts the VEs `ids` through the step and waits until each one's TERM handler
/// is set, so that a stop is answered by the handler and not by the grace period.
async fn start(rig: &CrunRig, step: &mut OnbootVes, ids: &[u32]) {
    for &id in ids {
        let _ = std::fs::remove_file(ready_marker(rig, id));
    }
    step.acquire().await.unwrap();
    let limit = Instant::now() + Duration::from_secs(10);
    for &id in ids {
        while !ready_marker(rig, id).exists() {
            assert!(
                Instant::now() < limit,
                "VE {id} did not set its TERM handler"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn assert_gone(rig: &CrunRig, id: u32) {
    assert!(!rig.ves.is_running(id), "VE {id} runs");
    assert!(
        !rig.crun(&["state", &format!("ve{id}")]).status.success(),
        "crun still knows VE {id}"
    );
}

#[test]
fn the_ves_of_a_release_stop() {
    let rounds: usize = std::env::var("TANDEM_VE_STOP_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let ids = [61, 62, 63];
    let rig = slow_ves(&ids);
    runtime().block_on(async {
        let sup = VeSupervisor::new(rig.ves.clone(), policy());
        sup.run(Arc::new(|e| {
            eprintln!("event {}: {}", e.kind, e.text)
        }));
        let mut step =
            OnbootVes::new(rig.ves.clone(), 1, Duration::from_millis(10)).watched_by(sup.clone());
        let mut released = Vec::new();
        for round in 1..=rounds {
            start(&rig, &mut step, &ids).await;
            rig.take_crun_calls();
            let t = Instant::now();
            step.release().await.unwrap();
            let gone = t.elapsed();
            let calls = rig.take_crun_calls();
            println!(
                "round {round}: {} VEs, each 1 s to end on SIGTERM, released in {} ms; {} crun commands: {}",
                ids.len(),
                gone.as_millis(),
                calls.len(),
                calls.join(" ")
            );
            for id in ids {
                assert_gone(&rig, id);
            }
            released.push(gone);
        }
        released.sort();
        println!(
            "median of {rounds}: {} VEs released in {} ms",
            ids.len(),
            released[released.len() / 2].as_millis()
        );
        let states: Vec<(u32, String)> = sup.views().into_iter().map(|v| (v.id, v.state)).collect();
        assert_eq!(
            states,
            ids.iter().map(|id| (*id, "stopped".to_owned())).collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_ve_that_cannot_be_stopped_is_named_the_others_stop_and_the_data_area_stays() {
    let ids = [91, 92, 93];
    let rig = slow_ves(&ids);
    runtime().block_on(async {
        let sup = VeSupervisor::new(rig.ves.clone(), policy());
        sup.run(Arc::new(|e| eprintln!("event {}: {}", e.kind, e.text)));
        let mut step =
            OnbootVes::new(rig.ves.clone(), 1, Duration::from_millis(10)).watched_by(sup.clone());
        start(&rig, &mut step, &ids).await;
        // The chain's data area, below the VEs.
        let data = Arc::new(SimKnobs::default());
        data.held.store(true, Ordering::SeqCst);
        let mut chain = Chain::new();
        chain.push(Box::new(SimResource {
            name: "filesystem on /vz".to_owned(),
            delay: Duration::ZERO,
            knobs: Arc::clone(&data),
        }));
        chain.push(Box::new(step));
        // VE 92's file has gone bad while it ran: its stop cannot read it.
        let conf = rig.ves.layout.conf_dir.join("ve-92.conf");
        std::fs::write(&conf, "NUMPROC=\"lots\"\n").unwrap();
        let e = chain.release().await.unwrap_err();
        let text = tandem_runtime::error_chain(&e);
        assert!(
            text.starts_with("step 2 of 2 (VEs with ONBOOT=yes): VE 92 did not stop: "),
            "{text}"
        );
        assert!(text.contains("NUMPROC"), "{text}");
        assert!(!text.contains("VE 91") && !text.contains("VE 93"), "{text}");
        for id in [91, 93] {
            assert_gone(&rig, id);
        }
        assert!(rig.ves.is_running(92), "VE 92 was stopped after all");
        assert!(
            data.held.load(Ordering::SeqCst),
            "the data area was released under a running VE"
        );
        // Mended, the next release stops it, then the data area goes.
        std::fs::write(&conf, "ONBOOT=\"yes\"\n").unwrap();
        chain.release().await.unwrap();
        assert_gone(&rig, 92);
        assert!(!data.held.load(Ordering::SeqCst));
    });
}
