//! Signed A/B updates on an installed node (RAUC, GRUB's boot selection):
//! the pair boots from the install image, the passive node gets the bundle of
//! a second version of this tree (see `tandem_tests::update`).
//!
//! These tests need the image, the bundle and root; `cargo xtask test` runs
//! them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use tandem_tests::failover::base_dir;
use tandem_tests::pair::{self, Pair, other};
use tandem_tests::update::{bundle_under_test, bundle_version, update_node};
use tandem_tests::{Scratch, figure};

const MIN: std::time::Duration = std::time::Duration::from_secs(60);

#[test]
#[ignore = "needs the install image, an update bundle, QEMU and root: run `cargo xtask test`"]
fn a_signed_bundle_is_tried_kept_when_healthy_and_rolled_back_and_a_forged_one_is_refused() {
    let bundle = bundle_under_test();
    let version = bundle_version(&bundle);
    let base = pair::base(&base_dir());
    if base.made_in_s > 0.0 {
        figure(&format!(
            "update: pair base made (install, activate, VE 101) in {:.0} s",
            base.made_in_s
        ));
    }
    let dir = Scratch::new("update-");
    let t = Instant::now();
    let pair = Pair::boot(&base, &dir.0);
    let active = pair.wait_formed(5 * MIN);
    figure(&format!(
        "update: pair booted and formed in {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    // The passive node: its restarts move no service.
    update_node(&pair, other(active), &bundle, &version);
    drop(pair);
}
