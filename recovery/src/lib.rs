//! The node's consoles: the web console (HTTPS) and the local console screen on the
//! node's display and serial port.
//!
//! The web console has two modes: recovery (an unconfigured node: upload the cluster
//! configuration archive and activate it, R3.3–R3.5) and cluster (the management pages
//! of R9). Every page is in German and English ([`i18n`]).
//!
//! Privilege separation ([`helper`]): `tandem-web serve` binds its ports and reads its
//! TLS key as root, then forks. The child drops to the unprivileged `tandem-web` user
//! (uid/gid 101, provided by the system image) before it reads a single request and
//! serves HTTP; the root parent executes only a closed set of typed calls (check or
//! stage an archive, start and follow the activation job, check the management
//! password, read the configured values without secrets, list this node's VEs, export
//! the archive, signal init to restart or power off the node, list the OS templates,
//! start and follow the installation of VE 101 in the background, back up the OS
//! template cache, change settings on both nodes). Cluster
//! state and the switchover go to clusterd's control socket, which admits the
//! `tandem-web` group when clusterd runs with `--control-group 101`.
//!
//! Not done yet: updates, and the other node's kernel and management version on the
//! Home page. The backup of the template cache runs inside its call:
//! while it copies, other calls to the privileged side wait.

pub mod admin;
pub mod banner;
pub mod change;
pub mod cluster;
pub mod console;
pub mod helper;
pub mod i18n;
pub mod job;
pub mod recovery_pages;
pub mod tls;
pub mod web;
