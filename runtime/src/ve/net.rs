//! A VE's network: a routed veth pair, as OpenVZ's venet did it.
//!
//! The VE sees `eth0` with its address as a /32 and a default route out of `eth0`
//! (made there as `eth0` by the kernel, no device moves between namespaces);
//! the node keeps the host end `ve<ID>h` without an address, routes the VE's address
//! to it, answers ARP for it on the uplink (a proxy neighbour entry: the address
//! appears on the LAN with the node's MAC; answered at once, `proxy_delay` 0, as
//! the VE's own ARP on the host end) and announces it with gratuitous ARP. The
//! node keeps reaching the VE, the VE reaches the LAN through the node, and on
//! takeover the address moves with the VE like a service address.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;

use futures_util::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::net::{self, NetlinkError};

/// The VE's end of its veth pair, inside the VE.
const GUEST_NAME: &str = "eth0";

/// Names of a VE's veth ends.
#[must_use]
pub fn link_names(id: u32) -> (String, String) {
    (format!("ve{id}h"), format!("ve{id}g"))
}

/// A VE network step failed.
#[derive(Debug, thiserror::Error)]
pub enum VeNetError {
    /// A netlink request failed.
    #[error("network of VE {id}: {what}")]
    Netlink {
        /// VE number.
        id: u32,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: NetlinkError,
    },
    /// Entering the VE's network namespace or setting a kernel switch failed.
    #[error("network of VE {id}: {what}")]
    Io {
        /// VE number.
        id: u32,
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Sending the gratuitous ARP failed.
    #[error("network of VE {id}: announcing {address} on {uplink}")]
    Arp {
        /// VE number.
        id: u32,
        /// The address.
        address: Ipv4Addr,
        /// The uplink.
        uplink: String,
        /// The cause.
        #[source]
        source: net::ArpError,
    },
}

fn handle() -> Result<rtnetlink::Handle, NetlinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
    tokio::spawn(conn);
    Ok(handle)
}

fn req(what: &'static str) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    move |source| NetlinkError::Request { what, source }
}

async fn index_of(h: &rtnetlink::Handle, name: &str) -> Result<Option<u32>, NetlinkError> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => Ok(None),
        Err(source) => Err(NetlinkError::Request {
            what: "get link",
            source,
        }),
    }
}

/// The index of a link that must exist.
async fn require_index(
    h: &rtnetlink::Handle,
    name: &str,
    id: u32,
    what: &'static str,
) -> Result<u32, VeNetError> {
    index_of(h, name)
        .await
        .map_err(|source| VeNetError::Netlink { id, what, source })?
        .ok_or_else(|| VeNetError::Netlink {
            id,
            what,
            source: NetlinkError::NoSuchInterface {
                name: name.to_owned(),
            },
        })
}

/// Removes the link `name` (with a veth pair, both ends) when it exists. A pair
/// that goes meanwhile is fine: the kernel removes it with the namespace of the
/// VE's end once the VE's last process has ended.
async fn delete_link(h: &rtnetlink::Handle, name: &str) -> Result<(), NetlinkError> {
    if let Some(i) = index_of(h, name).await? {
        match h.link().del(i).execute().await {
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -enodev() => {}
            r => r.map_err(req("delete veth"))?,
        }
    }
    Ok(())
}

/// `ENODEV`, the kernel's answer for a link that is not there (any more).
fn enodev() -> i32 {
    rustix::io::Errno::NODEV.raw_os_error()
}

/// Connects the network namespace of process `pid` (the VE's first process) to the
/// node: veth pair, routes, proxy ARP on `uplink`, gratuitous ARP.
///
/// # Errors
/// Any netlink step failing; what was set up stays for [`detach`] to remove.
pub async fn attach(
    id: u32,
    pid: u32,
    addresses: &[Ipv4Addr],
    uplink: &str,
) -> Result<(), VeNetError> {
    let nl = |what: &'static str| move |source| VeNetError::Netlink { id, what, source };
    let (host, _) = link_names(id);
    let h = handle().map_err(nl("opening netlink"))?;
    // A host end left from a VE that died is removed first.
    delete_link(&h, &host)
        .await
        .map_err(nl("removing a stale host end"))?;
    // The VE end is made inside the VE's namespace, named eth0 there: moving a
    // device between namespaces waits for the kernel's RCU grace periods.
    let guest_end = LinkMessageBuilder::<LinkUnspec>::new()
        .name(GUEST_NAME.to_owned())
        .setns_by_pid(pid)
        .build();
    h.link()
        .add(
            LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                .name(host.clone())
                .up()
                .set_info_data(InfoData::Veth(InfoVeth::Peer(guest_end)))
                .build(),
        )
        .execute()
        .await
        .map_err(req("add veth"))
        .map_err(nl("creating the veth pair into the VE"))?;
    let host_index = require_index(&h, &host, id, "looking up the host end").await?;
    let sysctl = |path: String, value: &str| {
        std::fs::write(&path, value).map_err(|source| VeNetError::Io {
            id,
            what: format!("setting {path} to {value}"),
            source,
        })
    };
    sysctl(format!("/proc/sys/net/ipv4/conf/{host}/proxy_arp"), "1")?;
    // Proxy ARP answers at once: the kernel's default holds each answer back up to
    // 0.8 s (proxy_delay) for a real owner of the address to answer first, and
    // there is none. Here the answers to the VE, whose first packet to anyone
    // after its start waits for one; on the uplink those to the LAN.
    sysctl(format!("/proc/sys/net/ipv4/neigh/{host}/proxy_delay"), "0")?;
    sysctl(
        format!("/proc/sys/net/ipv4/neigh/{uplink}/proxy_delay"),
        "0",
    )?;
    sysctl("/proc/sys/net/ipv4/ip_forward".to_owned(), "1")?;
    let up = net::link_info(uplink)
        .await
        .map_err(nl("looking up the uplink"))?;
    for a in addresses {
        h.route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(*a, 32)
                    .output_interface(host_index)
                    .build(),
            )
            .replace()
            .execute()
            .await
            .map_err(req("add route"))
            .map_err(nl("routing the VE's address"))?;
        h.neighbours()
            .add(up.index, IpAddr::V4(*a))
            .flags(NeighbourFlags::Proxy)
            .replace()
            .execute()
            .await
            .map_err(req("add proxy neighbour"))
            .map_err(nl("answering ARP for the VE's address on the uplink"))?;
    }
    inside(id, pid, addresses.to_vec()).await?;
    for a in addresses {
        net::send_gratuitous_arp(up.index, up.mac, *a).map_err(|source| VeNetError::Arp {
            id,
            address: *a,
            uplink: uplink.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Configures the VE's side from a thread that joined its network namespace.
async fn inside(id: u32, pid: u32, addresses: Vec<Ipv4Addr>) -> Result<(), VeNetError> {
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&ns_path).map_err(|source| VeNetError::Io {
        id,
        what: format!("opening {ns_path}"),
        source,
    })?;
    let job = std::thread::spawn(move || -> Result<(), VeNetError> {
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| VeNetError::Io {
            id,
            what: "entering the VE's network namespace".into(),
            source: e.into(),
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| VeNetError::Io {
                id,
                what: "starting the netlink runtime".into(),
                source,
            })?;
        rt.block_on(configure_guest(id, &addresses))
    });
    tokio::task::spawn_blocking(move || job.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| {
            Err(VeNetError::Io {
                id,
                what: "configuring the VE's side".into(),
                source: std::io::Error::other("the configuring thread failed"),
            })
        })
}

async fn configure_guest(id: u32, addresses: &[Ipv4Addr]) -> Result<(), VeNetError> {
    let nl = |what: &'static str| move |source| VeNetError::Netlink { id, what, source };
    let h = handle().map_err(nl("opening netlink in the VE"))?;
    if let Some(lo) = index_of(&h, "lo").await.map_err(nl("looking up lo"))? {
        h.link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(req("lo up"))
            .map_err(nl("bringing lo up in the VE"))?;
    }
    let idx = require_index(&h, GUEST_NAME, id, "looking up the VE's eth0").await?;
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(req("link up"))
        .map_err(nl("bringing eth0 up"))?;
    for a in addresses {
        h.address()
            .add(idx, IpAddr::V4(*a), 32)
            .execute()
            .await
            .map_err(req("add address"))
            .map_err(nl("adding the VE's address"))?;
    }
    h.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .output_interface(idx)
                .scope(netlink_packet_route::route::RouteScope::Link)
                .build(),
        )
        .execute()
        .await
        .map_err(req("add default route"))
        .map_err(nl("adding the VE's default route"))
}

/// Removes what [`attach`] set up on the node (the VE's side goes with its
/// namespace). Missing pieces are fine.
///
/// # Errors
/// A netlink request the kernel refuses for another reason than "not there".
pub async fn detach(id: u32, addresses: &[Ipv4Addr], uplink: &str) -> Result<(), VeNetError> {
    let nl = |what: &'static str| move |source| VeNetError::Netlink { id, what, source };
    let (host, _) = link_names(id);
    let h = handle().map_err(nl("opening netlink"))?;
    if let Ok(up) = net::link_info(uplink).await {
        for a in addresses {
            let mut msg = netlink_packet_route::neighbour::NeighbourMessage::default();
            msg.header.family = netlink_packet_route::AddressFamily::Inet;
            msg.header.ifindex = up.index;
            msg.header.flags = NeighbourFlags::Proxy;
            msg.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(*a)));
            // Absent already (ENOENT) is what we want.
            let _ = h.neighbours().del(msg).execute().await;
        }
    }
    delete_link(&h, &host)
        .await
        .map_err(nl("removing the veth pair"))
}
