//! The cluster configuration of a tandem appliance: one schema for both nodes, its
//! validation, and the configuration archive that carries it between nodes.
//!
//! What it does:
//! - [`ApplianceConfig`] is the only schema (TOML, kebab-case, unknown fields refused) and
//!   the only place defaults live. Values are validated newtypes ([`types`]); cross-field
//!   rules are in [`ApplianceConfig::validate`], which returns every problem with its
//!   dotted path (`network.node2.address: "10.0.0.300" is not an IPv4 address`).
//! - Schema versions with forward migrations ([`load::migrate`]).
//! - [`recovery`]: the product constants of the recovery network.
//!
//! What it does not do: it applies nothing to the running system (addresses, services);
//! the node runtime reads the committed configuration and does that.
//!
//! Limitations: parsing stops at the first field that does not fit the schema (the cross-
//! field rules then report everything at once); the TLS certificate is checked for PEM/DER
//! shape, not parsed as X.509, and not matched against its key.

pub mod init;
pub mod load;
pub mod recovery;
pub mod schema;
pub mod secrets;
pub mod types;
pub mod validate;

pub use load::ConfigError;
pub use schema::*;
pub use types::{
    Baud, ClusterId, ClusterKey, Credential, DevicePath, DomainName, DrbdResource, EmailAddress,
    HostPort, Hostname, HttpUrl, Ipv4, Ipv4Net, Millis, Netmask, NodeId, PasswordHash, Port, Rate,
    Secret, SshPrivateKey, TlsCertificate, TlsPrivateKey, UserName,
};
pub use validate::ValidationError;
