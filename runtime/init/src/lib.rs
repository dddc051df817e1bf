//! PID 1 of a node.
//!
//! At boot it mounts the kernel filesystems, loads the drivers the present
//! hardware asks for (coldplug from `modalias`), and then either runs the
//! installer (kernel command line `tandem.install=node1|node2`) or starts the
//! node: mounts the configuration partition and reads the node identity.
//!
//! - Unconfigured (no committed configuration): recovery mode. The recovery
//!   address on the first port, the web console and the console screens,
//!   restarted when they exit. When an activation commits a configuration,
//!   init waits until the web page has shown the new address (see
//!   [`activated`]), stops these services and becomes a member.
//! - Configured: member mode. `tandem node-up` sets the host name, the
//!   external address with default route and DNS, and the crossover address;
//!   then clusterd (with replication), the web console on the external address
//!   and the console screens run supervised. If the network cannot be brought
//!   up, the node says why and stays in recovery mode so that it can be
//!   repaired over the red cable.
//!
//! In both modes it runs the system bus (`dbus-daemon`) and RAUC's service, which
//! installs update bundles (see [`update`]).
//!
//! Nothing here needs a shell or a service manager: the node has neither.

pub mod activated;
pub mod entropy;
pub mod modalias;
pub mod root;
pub mod sysfs;
pub mod trial;
pub mod update;

/// What the kernel command line asks of init.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boot {
    /// `tandem.install=node1|node2`: run the installer.
    pub install: Option<String>,
    /// `tandem.slot=a|b`: which system slot booted.
    pub slot: Option<String>,
    /// `tandem.consoles=tty1,ttyS0`: the terminals that get a console screen
    /// (default both), e.g. when a serial port is wired to something else.
    pub consoles: Option<Vec<String>>,
}

/// The terminals that get a console screen unless the kernel command line
/// says otherwise.
pub const DEFAULT_CONSOLES: [&str; 2] = ["/dev/tty1", "/dev/ttyS0"];

impl Boot {
    /// The console terminals as device paths.
    #[must_use]
    pub fn console_paths(&self) -> Vec<String> {
        match &self.consoles {
            Some(c) => c.iter().map(|t| format!("/dev/{t}")).collect(),
            None => DEFAULT_CONSOLES.iter().map(|t| (*t).to_owned()).collect(),
        }
    }
}

impl Boot {
    /// Parses `/proc/cmdline`.
    pub fn parse(cmdline: &str) -> Self {
        let mut b = Self::default();
        for w in cmdline.split_whitespace() {
            if let Some(v) = w.strip_prefix("tandem.install=") {
                b.install = Some(v.to_owned());
            } else if let Some(v) = w.strip_prefix("tandem.slot=") {
                b.slot = Some(v.to_owned());
            } else if let Some(v) = w.strip_prefix("tandem.consoles=") {
                // Terminal names only: no paths, nothing outside /dev.
                b.consoles = Some(
                    v.split(',')
                        .filter(|t| !t.is_empty() && t.bytes().all(|c| c.is_ascii_alphanumeric()))
                        .map(str::to_owned)
                        .collect(),
                );
            }
        }
        b
    }
}

/// The recovery address of a node (R2.3): node1 .101, node2 .102 on
/// 192.168.100.0/24.
pub fn recovery_address(node: &str) -> Option<&'static str> {
    match node {
        "node1" => Some("192.168.100.101"),
        "node2" => Some("192.168.100.102"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_modes() {
        assert_eq!(
            Boot::parse("tandem.install=node1 quiet").install.as_deref(),
            Some("node1")
        );
        assert_eq!(Boot::parse("tandem.slot=a").slot.as_deref(), Some("a"));
        assert_eq!(recovery_address("node2"), Some("192.168.100.102"));
        assert_eq!(Boot::parse("quiet").console_paths(), DEFAULT_CONSOLES);
        assert_eq!(
            Boot::parse("tandem.consoles=tty1,../sda,").console_paths(),
            ["/dev/tty1"]
        );
        assert_eq!(recovery_address("node3"), None);
    }
}
