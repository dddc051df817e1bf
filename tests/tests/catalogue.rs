//! The release catalogue's representative subset, run by `cargo xtask test`
//! (the whole catalogue: `cargo xtask scenarios --all`): the pair installed
//! from the DVD and activated through its consoles (the catalogue's base),
//! then the power loss of the active node with the client's workload
//! running — takeover, no acknowledged write lost, never two active nodes,
//! the alert mailed, the node rejoining passive in sync — and the rolling
//! update of the pair to a second version of this tree.
//!
//! These tests need the image and root; `cargo xtask test` runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tandem_tests::figure;
use tandem_tests::scenario::{Outcome, run_one};

/// One scenario at a time: two pairs of QEMU machines at once on this
/// machine's cores would measure each other (as `cargo xtask scenarios` runs
/// them, one after the other).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_scenario(name: &str) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = tandem_tests::catalogue::all()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("the catalogue has no scenario {name}"));
    let record = run_one(&s);
    for f in &record.figures {
        figure(&format!("{name}: {} {:.1} {}", f.key, f.value, f.unit));
    }
    if let Some(d) = record.downtime_s {
        figure(&format!(
            "{name}: service downtime seen by the client {d:.1} s"
        ));
    }
    assert_eq!(
        record.outcome,
        Outcome::Passed,
        "{:#?}\nalerts: {:?}",
        record.log_tails,
        record.alerts
    );
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn catalogue_power_loss_of_the_active_node() {
    run_scenario("power-off-active");
}

#[test]
#[ignore = "needs the install image, an update bundle, QEMU and root: run `cargo xtask test`"]
fn catalogue_rolling_update_of_the_pair() {
    run_scenario("update-rolling");
}
