//! The way to clusterd's rolling-update task ([`tandem_core::rolling`] decides,
//! clusterd's task acts): the request that starts one, and the handle the control
//! server asks through.

use tandem_api::{Refusal, Reply};
use tokio::sync::{mpsc, oneshot};

use super::record::RollingRecord;

/// What the task is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Start a rolling update (the operator's request).
    Start {
        /// The bundle on this node.
        file: String,
        /// Move the services back to this node at the end.
        switch_back: bool,
        /// Accept a bundle older than the running system.
        force_downgrade: bool,
    },
    /// Go on with the rolling update this node led before clusterd started again.
    Resume(RollingRecord),
}

/// The way to the task.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: Option<mpsc::Sender<(Call, oneshot::Sender<Reply>)>>,
}

impl Handle {
    /// A handle to the task that reads `tx`.
    #[must_use]
    pub fn new(tx: mpsc::Sender<(Call, oneshot::Sender<Reply>)>) -> Handle {
        Handle { tx: Some(tx) }
    }

    /// A handle to no task: every call is refused (a clusterd without a configuration).
    #[must_use]
    pub fn none() -> Handle {
        Handle { tx: None }
    }

    /// The task's answer to `call`.
    pub async fn call(&self, call: Call) -> Reply {
        let refused = |t: &str| Reply::Refused(Refusal::Failed(t.to_owned()));
        let Some(tx) = &self.tx else {
            return refused(
                "this clusterd runs without a cluster configuration: no rolling update",
            );
        };
        let (otx, orx) = oneshot::channel();
        if tx.send((call, otx)).await.is_err() {
            return refused("the rolling-update task has ended: restart clusterd");
        }
        orx.await
            .unwrap_or_else(|_| refused("the rolling-update task has ended: restart clusterd"))
    }
}
