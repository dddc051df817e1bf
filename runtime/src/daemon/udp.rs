//! The heartbeat's UDP sockets (crossover and external LAN): one reader task each,
//! offering what arrives to the bounded input queue.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tandem_core::PathId;
use tokio::net::UdpSocket;

use super::inputs::{Heard, Inputs};
use crate::settings::Settings;

/// A path's socket and where the peer listens on it.
pub(super) struct Udp {
    pub(super) sock: Arc<UdpSocket>,
    pub(super) peer: SocketAddrV4,
}

/// Binds the socket of each configured UDP path and starts its reader. Indexed by
/// [`PathId::index`].
///
/// # Errors
/// A socket that cannot be bound, with its path and address.
pub(super) async fn start(
    settings: &Settings,
    inputs: &Inputs,
) -> anyhow::Result<[Option<Udp>; 3]> {
    let mut udp: [Option<Udp>; 3] = [None, None, None];
    for (path, cfg) in [
        (PathId::Internal, settings.internal),
        (PathId::External, settings.external),
    ] {
        let Some(cfg) = cfg else { continue };
        let sock = UdpSocket::bind(SocketAddrV4::new(cfg.local, settings.udp_port))
            .await
            .with_context(|| {
                format!(
                    "binding {} heartbeat socket {}:{}",
                    path.name(),
                    cfg.local,
                    settings.udp_port
                )
            })?;
        let sock = Arc::new(sock);
        tokio::spawn(read(Arc::clone(&sock), path, inputs.clone()));
        udp[path.index()] = Some(Udp {
            sock,
            peer: SocketAddrV4::new(cfg.peer, settings.udp_port),
        });
    }
    Ok(udp)
}

/// Offers every datagram on `sock` to the loop until the loop has ended.
async fn read(sock: Arc<UdpSocket>, path: PathId, inputs: Inputs) {
    // Larger than any frame so oversized datagrams are seen as such.
    let mut buf = vec![0u8; 2048];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, _)) => {
                let bytes = buf[..n].to_vec();
                if !inputs.offer(Heard::Frame { path, bytes }) {
                    return;
                }
            }
            // ICMP errors from a peer that is down surface here; keep going.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
