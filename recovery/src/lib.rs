//! The node's consoles: the web console (HTTPS) and the local console screen on the
//! node's display and serial port.
//!
//! The web console has two modes: recovery (an unconfigured node: upload the cluster
//! configuration archive and activate it, R3.3–R3.5) and cluster (the management pages
//! of R9). Every page is in German and English ([`i18n`]).
//!
//! Privilege: `tandem-web serve` binds its ports and reads its TLS key as root, then
//! drops to the unprivileged `tandem-web` user (uid/gid 101, provided by the system
//! image) before it reads a single request. It holds no privileged helper of its own:
//! everything it shows or changes is a typed request to clusterd's control API
//! (`tandem_api`), carrying the token of the session clusterd opened at login; clusterd
//! checks it on every request, counts failed logins, and ends sessions. The web process
//! parses HTTP, forms and uploads and renders pages; it never sees a password hash or
//! the cluster's keys (it does hold the HTTPS key in memory: it terminates TLS).
//!
//! The local console screen ([`console`]) runs as root on the node's terminals and asks
//! clusterd the same way (as root, without a session).
//!
//! Not done yet: updates.

pub mod app;
pub mod banner;
pub mod cluster;
pub mod console;
pub mod i18n;
pub mod listen;
pub mod login;
pub mod page;
pub mod recovery_pages;
pub mod refusal;
pub mod tls;
pub mod visit;
pub mod web;
