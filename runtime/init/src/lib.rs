//! PID 1 of a node.
//!
//! At boot it mounts the kernel filesystems, loads the drivers the present
//! hardware asks for (coldplug from `modalias`), and then either runs the
//! installer (kernel command line `tandem.install=node1|node2`) or starts the
//! node: mounts the configuration partition, reads the node identity, brings
//! up the recovery network on the first NIC, and supervises the web console
//! and the console screens, restarting what exits.
//!
//! Not done here: the cluster daemon's start (it joins when a configuration
//! is active), and anything that needs a shell or a service manager — the
//! node has neither.

pub mod modalias;
pub mod root;
pub mod sysfs;

/// What the kernel command line asks of init.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boot {
    /// `tandem.install=node1|node2`: run the installer.
    pub install: Option<String>,
    /// `tandem.slot=a|b`: which system slot booted.
    pub slot: Option<String>,
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
        assert_eq!(recovery_address("node3"), None);
    }
}
