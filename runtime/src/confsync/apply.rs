//! A change made on this node: the other node first, then this one, then clusterd.

use tandem_config::{ApplianceConfig, NodeId, Store};

use super::frame::{Outcome, SyncKey};
use super::peer::{OFFER_TIMEOUT, OfferError, offer};
use super::peer_endpoint;
use super::rules::{AcceptError, Accepted, Changes, Refusal, accept, judge};

/// What [`apply`] did.
#[derive(Debug)]
pub struct Applied {
    /// The revision now committed here.
    pub revision: u64,
    /// What changed.
    pub changes: Changes,
    /// The other node committed it too (false with `this_node_only`).
    pub peer: bool,
    /// Things the operator should know (clusterd not reached, durability doubts).
    pub notes: Vec<String>,
}

/// Why [`apply`] changed nothing (or, for [`ApplyError::Local`], nothing here).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The new configuration is not valid; every problem with its field.
    #[error("the new configuration is not valid:\n{0}")]
    Invalid(tandem_config::ConfigError),
    /// This node's store has no configuration or cannot be read.
    #[error("this node's configuration: {0}")]
    Store(String),
    /// Refused by the rule for a running cluster.
    #[error("{0}")]
    Refused(Refusal),
    /// The other node cannot be reached; nothing changed anywhere.
    #[error(
        "{source}. Nothing was changed. Check that the other node runs and the crossover cable; \
         if the other node is down, make the change on this node only: the other node takes it \
         when it is back"
    )]
    PeerUnreachable {
        /// The cause.
        #[source]
        source: OfferError,
    },
    /// The other node refused; nothing changed anywhere.
    #[error("the other node refused the change: {0}. Nothing was changed")]
    PeerRefused(String),
    /// The other node already has a newer configuration.
    #[error(
        "the other node already has revision {0}, newer than the configuration this change was \
         made on. Nothing was changed; this node takes the newer one in a moment: reload the page \
         and make the change again"
    )]
    PeerNewer(u64),
    /// The other node committed the change but this node could not.
    #[error(
        "the other node took revision {revision}, but this node could not: {reason}. The other \
         node offers it to this node again while the two differ"
    )]
    Local {
        /// The revision the other node has now.
        revision: u64,
        /// Why this node could not commit.
        reason: String,
    },
}

/// Makes `text` the cluster's configuration: checks it, has the other node commit it
/// (unless `this_node_only`), commits it here and has clusterd put it in effect
/// (`reload`). The other node goes first so that a refusal there changes nothing.
///
/// # Errors
/// See [`ApplyError`]; in every case but [`ApplyError::Local`] nothing changed on
/// either node.
pub fn apply(
    store: &Store,
    me: NodeId,
    text: &str,
    this_node_only: bool,
    reload: &dyn Fn() -> Result<(), String>,
) -> Result<Applied, ApplyError> {
    let new = ApplianceConfig::from_toml(text).map_err(ApplyError::Invalid)?;
    let old = store
        .current()
        .map_err(|e| ApplyError::Store(crate::error_chain(&e)))?
        .ok_or_else(|| ApplyError::Store("no configuration is committed on this node".into()))?;
    judge(&old, &new).map_err(ApplyError::Refused)?;
    let text = new.to_toml();
    let mut peer = false;
    if !this_node_only {
        let key = SyncKey::derive(old.heartbeat.auth_key.as_bytes());
        let outcome = offer(&key, me, peer_endpoint(&old, me), &text, OFFER_TIMEOUT)
            .map_err(|source| ApplyError::PeerUnreachable { source })?;
        match outcome {
            Outcome::Accepted { .. } | Outcome::NotNewer { same: true, .. } => peer = true,
            Outcome::NotNewer { have, .. } => return Err(ApplyError::PeerNewer(have)),
            Outcome::Refused { reason } => return Err(ApplyError::PeerRefused(reason)),
        }
    }
    let accepted = accept(store, &text).or_else(|e| match e {
        // The other node offered it here in the meantime (it differed from this one).
        AcceptError::Refused(Refusal::NotNewer { same: true, .. }) => Ok(Accepted {
            changes: Changes::between(&old, &new),
            config: new.clone(),
            warning: None,
        }),
        e => Err(e),
    });
    let accepted = accepted.map_err(|e| {
        if peer {
            ApplyError::Local {
                revision: new.cluster.revision,
                reason: e.to_string(),
            }
        } else {
            match e {
                AcceptError::Refused(r) => ApplyError::Refused(r),
                other => ApplyError::Store(other.to_string()),
            }
        }
    })?;
    let mut notes: Vec<String> = accepted.warning.into_iter().collect();
    if let Err(e) = reload() {
        notes.push(format!(
            "the cluster daemon did not take the change now ({e}); it takes it when it starts again"
        ));
    }
    Ok(Applied {
        revision: accepted.config.cluster.revision,
        changes: accepted.changes,
        peer,
        notes,
    })
}
