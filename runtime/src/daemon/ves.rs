//! The VEs' health in clusterd's events and e-mail: the watch over the VEs
//! ([`crate::ve::health::VeSupervisor`]) reports to the hub, as R8.2 asks.

use std::sync::Arc;

use super::hub::EventHub;
use crate::admin::Admin;
use crate::alerts::Alert;

/// Starts the watch over the VEs of `admin`, if it has one, with its alerts going to
/// `hub` (event feed and e-mail).
pub(super) fn connect(admin: &Admin, hub: &Arc<EventHub>) {
    let Some(sup) = &admin.ve_health else {
        return;
    };
    let hub = Arc::clone(hub);
    sup.run(Arc::new(move |e| {
        hub.alert(
            e.kind,
            e.text,
            &Alert::Ve {
                id: e.id,
                old: e.old.to_owned(),
                new: e.new.to_owned(),
            },
        );
    }));
}
