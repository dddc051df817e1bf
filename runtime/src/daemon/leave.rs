//! What clusterd does on its way out, after the loop: release what it holds and leave
//! the replication cleanly.

use tandem_core::Role;

use super::core_loop::Shell;

impl Shell {
    /// Releases the resources this node holds (or was acquiring), leaves the
    /// replication, removes the control socket.
    pub(super) async fn leave(&self) {
        let role = self.core.role();
        if role.holds_resources() || role == Role::Acquiring {
            self.hub
                .publish("shutdown", "releasing resources before exit".into());
            if let Err(e) = self.chain.lock().await.release().await {
                self.hub.publish("resource_error", crate::error_chain(&e));
            }
        }
        if let Some(repl) = self.settings.replication.clone() {
            // Leave the replication cleanly: the other node's DRBD then sees this copy
            // disconnected (and outdated) on purpose, not a lost link, so it neither
            // suspends writes for its fence-peer handler nor has this node powered off.
            // DRBD refuses while the device is in use (a release that failed): it stays.
            match tokio::task::spawn_blocking(move || repl.down()).await {
                Ok(Ok(())) => self.hub.publish(
                    "replication",
                    "left the replication cleanly (this node's copy is outdated until it resynchronises)".into(),
                ),
                Ok(Err(e)) => self.hub.publish(
                    "warning",
                    format!("leaving the replication: {}", crate::error_chain(&e)),
                ),
                Err(_) => {}
            }
        }
        let _ = std::fs::remove_file(&self.settings.control);
        self.hub.publish("stopped", "clusterd stopped".into());
    }
}
