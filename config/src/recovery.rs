//! Facts of the recovery network: the state of a freshly installed, unconfigured node.
//!
//! The image, the installer and the web console take these from here so that they agree.
//! These are product constants, not configuration: an unconfigured node has no
//! configuration to read them from.

use std::net::Ipv4Addr;

use crate::types::{Ipv4Net, NodeId};

/// The recovery network, 192.168.100.0/24 (no gateway, no DNS).
pub const NETWORK: Ipv4Net = Ipv4Net::from_parts(Ipv4Addr::new(192, 168, 100, 0), 24);

/// Prefix length of the recovery network.
pub const PREFIX: u8 = 24;

/// Node 1's recovery address, 192.168.100.101.
pub const NODE1: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 101);

/// Node 2's recovery address, 192.168.100.102.
pub const NODE2: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 102);

/// The operator's laptop on the red cable, 192.168.100.100.
pub const LAPTOP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 100);

/// The web console user while unconfigured.
pub const ADMIN_USER: &str = "admin";

/// The factory password of [`ADMIN_USER`], valid only while the node is unconfigured.
pub const FACTORY_PASSWORD: &str = "relation";

/// The recovery address of a node.
#[must_use]
pub const fn address(node: NodeId) -> Ipv4Addr {
    match node {
        NodeId::Node1 => NODE1,
        NodeId::Node2 => NODE2,
    }
}

/// The recovery address of a node with its prefix (`192.168.100.101/24`).
#[must_use]
pub const fn interface_address(node: NodeId) -> Ipv4Net {
    Ipv4Net::from_parts(address(node), PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_in_the_network() {
        for n in NodeId::ALL {
            assert!(NETWORK.contains(address(n)));
            assert_eq!(
                interface_address(n).to_string(),
                format!("{}/24", address(n))
            );
        }
        assert!(NETWORK.contains(LAPTOP));
    }
}
