//! The node's consoles: the web console (HTTPS, recovery mode now; the
//! management pages of R9 come with the cluster engine) and the local
//! console screen on the node's display and serial port.
//!
//! The web process binds its ports as root, then drops to the unprivileged
//! `tandem-web` user before it reads a single request.
//!
//! Not done yet: importing the uploaded archive, German pages, management
//! mode.

pub mod admin;
pub mod banner;
pub mod console;
pub mod tls;
pub mod web;
