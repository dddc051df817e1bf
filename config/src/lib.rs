//! The cluster configuration of a tandem appliance: one schema for both nodes, its
//! validation, the configuration archive that carries it between nodes, and the store of
//! the applied configuration on the node's config partition.
//!
//! What it does:
//! - [`ApplianceConfig`] is the only schema (TOML, kebab-case, unknown fields refused) and
//!   the only place defaults live. Values are validated newtypes ([`types`]); cross-field
//!   rules are in [`ApplianceConfig::validate`]. Every problem is reported with its dotted
//!   path (`network.node2.address: "10.0.0.300" is not an IPv4 address`): all the fields
//!   that do not fit the schema (bad values, unknown or missing fields, wrong types) are
//!   collected in one pass ([`load::from_table`]), and the cross-field rules run, all of
//!   them, once every field fits. Schema versions are migrated forward by
//!   [`load::migrate`].
//! - [`archive`]: export and strict in-memory reading of `tkcluster_2500_*.tar[.age]`
//!   (manifest with SHA-256 of every member, secrets in their own members, age passphrase
//!   encryption by default). Every refusal names the member and the field.
//! - [`store`]: [`Store`] (stage, commit, keep the previous configuration; each write is
//!   temporary file + fsync + rename + directory fsync) and [`import_archive`], which checks
//!   an archive completely before writing anything, refuses another cluster's archive,
//!   refuses to commit over a different staged configuration, and holds the store's lock
//!   for the whole import. A failed import leaves `config.toml` byte-identical.
//! - [`init`]: a new cluster's configuration with fresh keys, rendered as commented TOML;
//!   [`secrets`]: argon2id password hashes, ed25519 SSH keys, the console's TLS certificate.
//! - [`cli`]: the `config` subcommands of `tandem` (also the `tandem-config` binary).
//! - [`recovery`]: the product constants of the recovery network.
//!
//! What it does not do: it applies nothing to the running system (addresses, services,
//! key files); the node runtime reads the committed configuration and does that. It does
//! not talk to the peer node.
//!
//! Limitations: the TLS certificate is parsed as X.509 and matched against its key, but
//! its validity period and chain are not checked (the console's certificate is usually
//! self-signed, and a configuration must not become invalid with time); schema version 1 is
//! the only version so far, so the migration table is empty.

pub mod archive;
pub mod cli;
pub mod init;
pub mod load;
pub mod recovery;
pub mod schema;
pub mod secrets;
pub mod store;
pub mod types;
pub mod validate;

pub use archive::{ArchiveError, ArchiveProblem, ExportOptions, ProblemKind, export, read_archive};
pub use load::ConfigError;
pub use schema::*;
pub use store::{
    ImportError, ImportMode, ImportOptions, ImportReport, OsFs, Store, StoreError, StoreFs,
    UpdateError, import_archive,
};
pub use types::{
    Baud, ClusterId, ClusterKey, Credential, CryptHash, DevicePath, DomainName, DrbdResource,
    EmailAddress, HostPort, Hostname, HttpUrl, Ipv4, Ipv4Net, Millis, Netmask, NodeId,
    PasswordHash, Port, Rate, RemoteDir, Secret, SshPrivateKey, SshPublicKey, TimeOfDay,
    TlsCertificate, TlsPrivateKey, UserName,
};
pub use validate::ValidationError;
