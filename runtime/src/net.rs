//! Kernel networking the daemon needs beyond UDP: interface addresses through
//! rtnetlink, gratuitous ARP through an `AF_PACKET` socket (packet(7)), and ICMP echo
//! to ping nodes through a raw socket (raw(7), icmp(7)).

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;
use rustix::net::addr::{SocketAddrArg, SocketAddrLen, SocketAddrOpaque};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, eth, ipproto};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A netlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Could not open the netlink socket.
    #[error("cannot open rtnetlink socket")]
    Open(#[source] std::io::Error),
    /// No interface of that name.
    #[error("no interface named {name}")]
    NoSuchInterface {
        /// Name asked for.
        name: String,
    },
    /// The interface has no Ethernet address.
    #[error("interface {name} has no ethernet address")]
    NoMac {
        /// Interface.
        name: String,
    },
    /// The kernel refused the request.
    #[error("netlink request {what} failed")]
    Request {
        /// What was asked.
        what: &'static str,
        /// Kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
}

/// Sending a gratuitous ARP failed.
#[derive(Debug, thiserror::Error)]
pub enum ArpError {
    /// Could not open the packet socket.
    #[error("cannot open packet socket")]
    Socket(#[source] rustix::io::Errno),
    /// The kernel refused the frame.
    #[error("cannot send arp frame")]
    Send(#[source] rustix::io::Errno),
}

/// Index and Ethernet address of an interface.
#[derive(Debug, Clone, Copy)]
pub struct LinkInfo {
    /// ifindex.
    pub index: u32,
    /// MAC address.
    pub mac: [u8; 6],
}

fn connection() -> Result<rtnetlink::Handle, NetlinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Looks up an interface by name.
///
/// # Errors
/// [`NetlinkError`] naming what failed.
pub async fn link_info(name: &str) -> Result<LinkInfo, NetlinkError> {
    let handle = connection()?;
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    let msg = match links.try_next().await {
        Ok(Some(m)) => m,
        // The kernel answers ENODEV for an unknown name.
        Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => {
            return Err(NetlinkError::NoSuchInterface {
                name: name.to_string(),
            });
        }
        Err(source) => {
            return Err(NetlinkError::Request {
                what: "get link",
                source,
            });
        }
    };
    let mac = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
            _ => None,
        })
        .ok_or_else(|| NetlinkError::NoMac {
            name: name.to_string(),
        })?;
    Ok(LinkInfo {
        index: msg.header.index,
        mac,
    })
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;

/// Adds `addr/prefix` to interface `index`; present already is fine.
///
/// # Errors
/// [`NetlinkError::Request`] when the kernel refuses.
pub async fn add_address(index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
    let handle = connection()?;
    match handle
        .address()
        .add(index, IpAddr::V4(addr), prefix)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, EEXIST) => Ok(()),
        Err(source) => Err(NetlinkError::Request {
            what: "add address",
            source,
        }),
    }
}

/// Removes `addr/prefix` from interface `index`; absent already is fine.
///
/// # Errors
/// [`NetlinkError::Request`] when the kernel refuses.
pub async fn del_address(index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
    let handle = connection()?;
    let mut found = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(IpAddr::V4(addr))
        .set_prefix_length_filter(prefix)
        .execute();
    let mut msgs = Vec::new();
    loop {
        match found.try_next().await {
            Ok(Some(m)) => msgs.push(m),
            Ok(None) => break,
            Err(source) => {
                return Err(NetlinkError::Request {
                    what: "list addresses",
                    source,
                });
            }
        }
    }
    for m in msgs {
        match handle.address().del(m).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, EADDRNOTAVAIL) => {}
            Err(source) => {
                return Err(NetlinkError::Request {
                    what: "delete address",
                    source,
                });
            }
        }
    }
    Ok(())
}

/// `struct sockaddr_ll` of packet(7).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct SockaddrLl {
    family: u16,
    protocol: u16,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    halen: u8,
    addr: [u8; 8],
}

const SOCKADDR_LL_LEN: SocketAddrLen = 20;
const _: () = assert!(size_of::<SockaddrLl>() == SOCKADDR_LL_LEN as usize);

#[derive(Debug)]
struct LinkAddr(SockaddrLl);

// SAFETY: `with_sockaddr` hands `f` a pointer to a live, fully initialised
// `sockaddr_ll` (repr(C), no padding: 2+2+4+2+1+1+8 bytes) and its exact size, valid
// for the duration of the call, which is what the trait requires.
unsafe impl SocketAddrArg for LinkAddr {
    unsafe fn with_sockaddr<R>(
        &self,
        f: impl FnOnce(*const SocketAddrOpaque, SocketAddrLen) -> R,
    ) -> R {
        f(ptr::from_ref(&self.0).cast(), SOCKADDR_LL_LEN)
    }
}

const ETH_P_ARP: u16 = 0x0806;
const AF_PACKET: u16 = 17;

/// The 28-byte ARP request announcing `ip` at `mac` (sender and target IP equal, as
/// RFC 5227 section 3 recommends for announcements).
#[must_use]
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    // Target hardware address stays zero.
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// Broadcasts one gratuitous ARP for `ip` from `mac` on interface `ifindex`.
///
/// # Errors
/// [`ArpError`] when the packet socket cannot be opened or the frame not sent.
pub fn send_gratuitous_arp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), ArpError> {
    let fd = rustix::net::socket(AddressFamily::PACKET, SocketType::DGRAM, Some(eth::ARP))
        .map_err(ArpError::Socket)?;
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&[0xff; 6]);
    let dest = LinkAddr(SockaddrLl {
        family: AF_PACKET,
        protocol: ETH_P_ARP.to_be(),
        ifindex: i32::try_from(ifindex).unwrap_or(i32::MAX),
        hatype: 0,
        pkttype: 0,
        halen: 6,
        addr,
    });
    let sent = rustix::net::sendto(&fd, &gratuitous_arp(mac, ip), SendFlags::empty(), &dest)
        .map(drop)
        .map_err(ArpError::Send);
    close_later(fd);
    sent
}

/// Closes a packet socket without waiting for it: the kernel releases a packet
/// socket only after an RCU grace period (`synchronize_net`), milliseconds on a
/// host and far more on an emulated node, which the sender of an announcement (a
/// takeover step, clusterd's loop) need not wait for. Inline when no thread can be
/// started.
fn close_later(fd: OwnedFd) {
    let _ = std::thread::Builder::new()
        .name("arp-close".to_owned())
        .spawn(move || drop(fd));
}

fn icmp_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let hi = u32::from(c[0]) << 8;
        let lo = c.get(1).map_or(0, |b| u32::from(*b));
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

/// Registers `fd` with the current tokio runtime, to wait until it is readable.
///
/// # Errors
/// No runtime, or the kernel refused the registration.
pub(crate) fn register_readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes `fd` over, so the descriptor stays open and refers to
    // the same file description until the AsyncFd drops, and `OwnedFd::as_raw_fd`
    // always returns that descriptor.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// ICMP echo to ping nodes over one raw socket; replies are read on the daemon's
/// runtime as the socket becomes readable and reported as the ping node's index.
#[derive(Debug)]
pub struct Pinger {
    fd: Arc<AsyncFd<OwnedFd>>,
    targets: Vec<Ipv4Addr>,
    ident: u16,
    seq: u16,
}

impl Pinger {
    /// Opens the raw socket and starts the receiving task on the current tokio
    /// runtime, which calls `reply` with the index of each answering ping node until
    /// `reply` returns false. Nothing runs between replies: the task sleeps until the
    /// kernel has one.
    ///
    /// # Errors
    /// The socket error (needs `CAP_NET_RAW`), or no tokio runtime to register it with.
    pub fn start(
        targets: Vec<Ipv4Addr>,
        reply: impl Fn(usize) -> bool + Send + 'static,
    ) -> std::io::Result<Pinger> {
        let fd = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::RAW,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            Some(ipproto::ICMP),
        )?;
        let fd = Arc::new(register_readable(fd)?);
        let ident = u16::try_from(std::process::id() & 0xffff).unwrap_or(0);
        let rfd = Arc::clone(&fd);
        let t = targets.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok(mut ready) = rfd.readable().await else {
                    return;
                };
                loop {
                    let n = match rustix::net::recvfrom(
                        rfd.get_ref(),
                        &mut buf[..],
                        RecvFlags::empty(),
                    ) {
                        Ok((_, n, _)) => n,
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(rustix::io::Errno::AGAIN) => {
                            ready.clear_ready();
                            break;
                        }
                        Err(_) => {
                            ready.clear_ready();
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            break;
                        }
                    };
                    if let Some(i) = parse_echo_reply(&buf[..n.min(buf.len())], ident, &t)
                        && !reply(i)
                    {
                        return;
                    }
                }
            }
        });
        Ok(Pinger {
            fd,
            targets,
            ident,
            seq: 0,
        })
    }

    /// Sends one echo request to ping node `index`. Errors (no route while a link is
    /// down) only mean no reply will come, which is what the core measures.
    pub fn send(&mut self, index: usize) {
        let Some(&target) = self.targets.get(index) else {
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        let mut p = [0u8; 16];
        p[0] = 8; // echo request
        p[4..6].copy_from_slice(&self.ident.to_be_bytes());
        p[6..8].copy_from_slice(&self.seq.to_be_bytes());
        p[8..16].copy_from_slice(b"tandem\0\0");
        let c = icmp_checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
        let _ = rustix::net::sendto(
            self.fd.get_ref(),
            &p,
            SendFlags::DONTWAIT,
            &SocketAddrV4::new(target, 0),
        );
    }
}

/// Parses an IPv4 packet holding an ICMP echo reply with our identifier and returns
/// the index of the ping node that sent it.
fn parse_echo_reply(pkt: &[u8], ident: u16, targets: &[Ipv4Addr]) -> Option<usize> {
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    let icmp = pkt.get(ihl..)?;
    if *icmp.first()? != 0 || icmp.get(4..6)? != ident.to_be_bytes() {
        return None;
    }
    let src: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
    let src = Ipv4Addr::from(src);
    targets.iter().position(|t| *t == src)
}

/// Sets interface `index` administratively up.
///
/// # Errors
/// [`NetlinkError::Request`] when the kernel refuses.
pub async fn set_up(index: u32) -> Result<(), NetlinkError> {
    let handle = connection()?;
    handle
        .link()
        .set(rtnetlink::LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|source| NetlinkError::Request {
            what: "set link up",
            source,
        })
}

/// Sets the default route through `gateway` (replacing one that exists).
///
/// # Errors
/// [`NetlinkError::Request`] when the kernel refuses (e.g. the gateway is not on a
/// directly connected network).
pub async fn set_default_route(gateway: Ipv4Addr) -> Result<(), NetlinkError> {
    let handle = connection()?;
    let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(|source| NetlinkError::Request {
            what: "set default route",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_announcement_layout() {
        let p = gratuitous_arp([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(&p[0..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[14..18], &[10, 1, 2, 3]);
        assert_eq!(&p[24..28], &[10, 1, 2, 3]);
    }

    #[test]
    fn icmp_checksum_verifies_to_zero() {
        let mut p = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8];
        let c = icmp_checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(icmp_checksum(&p), 0);
    }

    #[test]
    fn echo_reply_parsing_ignores_others() {
        let t = [Ipv4Addr::new(10, 0, 0, 9)];
        let mut pkt = [0u8; 28];
        pkt[0] = 0x45;
        pkt[12..16].copy_from_slice(&[10, 0, 0, 9]);
        pkt[24..26].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(parse_echo_reply(&pkt, 7, &t), Some(0));
        assert_eq!(parse_echo_reply(&pkt, 8, &t), None);
        pkt[20] = 8;
        assert_eq!(parse_echo_reply(&pkt, 7, &t), None);
        assert_eq!(parse_echo_reply(&pkt[..10], 7, &t), None);
    }
}
