//! The answering side: the other node's offers and questions on the crossover link.

use std::sync::Arc;
use std::time::Duration;

use tandem_config::Store;

use super::frame::{FrameError, HEADER_LEN, Message, Outcome, body_len, open, seal};
use super::rules::{Accepted, answer};
use super::{SyncSetup, local_facts};

/// Longest time a connection may take to deliver its offer or question, from its
/// first byte to its last: the other node sends a frame at once, on a direct cable.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest time the answer may take to leave.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; one more is closed at once.
pub const MAX_CONNECTIONS: usize = 4;

/// Answers the other node's offers and questions on `listener` until the task is
/// dropped; `committed` hears of every configuration committed, `report` of every
/// refused or incomplete exchange. Up to [`MAX_CONNECTIONS`] connections are served at
/// once, each with [`HANDSHAKE_TIMEOUT`] to deliver its frame: a connection that sends
/// nothing (or a peer that stalls) holds no other one up. Two offers at once are
/// committed one after the other by the store's lock.
pub async fn serve(
    listener: tokio::net::TcpListener,
    setup: SyncSetup,
    committed: impl Fn(Accepted) + Send + Sync + 'static,
    report: impl Fn(String) + Send + Sync + 'static,
) {
    let (committed, report) = (Arc::new(committed), Arc::new(report));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            report(format!(
                "configuration exchange with {from}: {MAX_CONNECTIONS} connections are open already; closed"
            ));
            continue;
        };
        let (setup, committed, report) =
            (setup.clone(), Arc::clone(&committed), Arc::clone(&report));
        tokio::spawn(async move {
            match receive(stream, &setup).await {
                Ok(Some(a)) => committed(a),
                Ok(None) => {}
                Err(e) => report(format!("configuration exchange with {from} refused: {e}")),
            }
            drop(slot);
        });
    }
}

/// Reads one offer, answers it and returns what was committed.
async fn receive(
    mut stream: tokio::net::TcpStream,
    setup: &SyncSetup,
) -> Result<Option<Accepted>, FrameError> {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut header = [0u8; HEADER_LEN];
        stream
            .read_exact(&mut header)
            .await
            .map_err(|e| FrameError::Message(format!("reading: {e}")))?;
        let mut body = vec![0u8; body_len(&header)?];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| FrameError::Message(format!("reading: {e}")))?;
        Ok::<_, FrameError>(body)
    };
    let body = tokio::time::timeout(HANDSHAKE_TIMEOUT, read)
        .await
        .map_err(|_| {
            FrameError::Message(format!(
                "no complete frame within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ))
        })??;
    let peer = setup.node.peer();
    let (challenge, config) = match open(&setup.key, peer, b'O', &body) {
        Ok(Message::Offer { challenge, config }) => (challenge, config),
        Ok(_) => return Err(FrameError::Message("not an offer".into())),
        Err(offer_error) => match open(&setup.key, peer, b'D', &body) {
            Ok(Message::Describe { challenge }) => {
                let dir = setup.store.clone();
                let node = setup.node;
                let facts = tokio::task::spawn_blocking(move || {
                    let cfg = Store::open(&dir)
                        .ok()
                        .and_then(|s| s.current().ok().flatten());
                    local_facts(node, cfg.as_ref())
                })
                .await
                .map_err(|e| FrameError::Message(e.to_string()))?;
                let answer = seal(&setup.key, setup.node, &Message::Facts { challenge, facts });
                send(&mut stream, &answer).await;
                return Ok(None);
            }
            _ => return Err(offer_error),
        },
    };
    let dir = setup.store.clone();
    let (outcome, accepted) = tokio::task::spawn_blocking(move || match Store::open(&dir) {
        Ok(store) => answer(&store, &config),
        Err(e) => (
            Outcome::Refused {
                reason: format!(
                    "this node's configuration store: {}",
                    crate::error_chain(&e)
                ),
            },
            None,
        ),
    })
    .await
    .map_err(|e| FrameError::Message(e.to_string()))?;
    let reply = seal(
        &setup.key,
        setup.node,
        &Message::Reply { challenge, outcome },
    );
    // The change is committed whether or not the answer arrives: report it anyway.
    send(&mut stream, &reply).await;
    Ok(accepted)
}

/// Sends an answer, giving up after [`ANSWER_TIMEOUT`] (the asker then reports that
/// the other node does not answer).
async fn send(stream: &mut tokio::net::TcpStream, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, stream.write_all(bytes)).await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    use tandem_config::{ApplianceConfig, NodeId};

    use super::super::frame::SyncKey;
    use super::super::peer::{OfferError, describe, offer};

    fn store_with(c: &ApplianceConfig) -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        s.stage(c).unwrap();
        s.commit().unwrap();
        (d, s)
    }

    fn cfg() -> ApplianceConfig {
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
            .unwrap()
            .0
    }

    #[test]
    fn an_offer_over_tcp_is_answered_by_the_peer() {
        let old = cfg();
        let (_d, store) = store_with(&old);
        let key = SyncKey::derive(old.heartbeat.auth_key.as_bytes());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server_key = key.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut h = [0u8; HEADER_LEN];
            s.read_exact(&mut h).unwrap();
            let mut body = vec![0u8; body_len(&h).unwrap()];
            s.read_exact(&mut body).unwrap();
            let Message::Offer { challenge, config } =
                open(&server_key, NodeId::Node1, b'O', &body).unwrap()
            else {
                panic!("not an offer")
            };
            let (outcome, _) = answer(&store, &config);
            let reply = Message::Reply { challenge, outcome };
            s.write_all(&seal(&server_key, NodeId::Node2, &reply))
                .unwrap();
            store
        });
        let mut new = old.clone();
        new.cluster.revision += 1;
        new.notification.addresses = vec!["ops@example.com".parse().unwrap()];
        new.notification.relay_host = Some("mail.example.com".parse().unwrap());
        let outcome = offer(
            &key,
            NodeId::Node1,
            addr,
            &new.to_toml(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            outcome,
            Outcome::Accepted {
                revision: new.cluster.revision
            }
        );
        let store = server.join().unwrap();
        assert_eq!(store.current().unwrap().unwrap(), new);

        // Nobody listening: a clear error naming the address.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let e = offer(&key, NodeId::Node1, dead_addr, "x", Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains(&dead_addr.to_string()), "{e}");
    }

    #[test]
    fn the_daemons_side_answers_offers_and_questions() {
        let old = cfg();
        let (_d, store) = store_with(&old);
        let key = SyncKey::derive(old.heartbeat.auth_key.as_bytes());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let setup = SyncSetup {
            store: store.dir().to_owned(),
            node: NodeId::Node2,
            key: key.clone(),
            listen: addr,
            peer: addr,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = std::sync::Arc::clone(&reports);
        rt.spawn(serve(
            listener,
            setup,
            move |a| {
                let _ = tx.send(a);
            },
            move |t| r.lock().unwrap().push(t),
        ));
        let ask = |f: Box<dyn FnOnce() -> Result<String, OfferError> + Send>| {
            rt.block_on(async { tokio::task::spawn_blocking(f).await.unwrap() })
        };
        // A connection that never sends a byte holds nothing up, and is closed after
        // the handshake time.
        let mut silent = std::net::TcpStream::connect(addr).unwrap();
        silent
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT * 3))
            .unwrap();
        let k = key.clone();
        let t0 = std::time::Instant::now();
        let facts = ask(Box::new(move || {
            describe(&k, NodeId::Node1, addr, Duration::from_secs(10)).map(|f| format!("{f:?}"))
        }))
        .unwrap();
        assert!(t0.elapsed() < HANDSHAKE_TIMEOUT, "{:?}", t0.elapsed());
        let closed = rt.block_on(async {
            tokio::task::spawn_blocking(move || {
                let t = std::time::Instant::now();
                let n = silent.read(&mut [0u8; 8]).unwrap_or(0);
                (n, t.elapsed())
            })
            .await
            .unwrap()
        });
        assert_eq!(closed.0, 0, "closed by the node");
        assert!(closed.1 < HANDSHAKE_TIMEOUT * 2, "{closed:?}");
        assert!(
            reports
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.contains("no complete frame within 3 s")),
            "{:?}",
            reports.lock().unwrap()
        );
        assert!(facts.contains("node: \"node2\""), "{facts}");
        assert!(
            facts.contains(&format!("revision: {}", old.cluster.revision)),
            "{facts}"
        );
        assert!(facts.contains(env!("CARGO_PKG_VERSION")), "{facts}");

        let mut new = old.clone();
        new.cluster.revision += 1;
        new.notification.addresses = vec!["ops@example.com".parse().unwrap()];
        new.notification.relay_host = Some("mail.example.com".parse().unwrap());
        let (k, text) = (key.clone(), new.to_toml());
        let outcome = ask(Box::new(move || {
            offer(&k, NodeId::Node1, addr, &text, Duration::from_secs(10)).map(|o| format!("{o:?}"))
        }))
        .unwrap();
        assert!(outcome.starts_with("Accepted"), "{outcome}");
        let accepted = rt.block_on(rx.recv()).unwrap();
        assert_eq!(accepted.config, new);

        // A question sealed as if from node2 itself (a reflected frame) is refused.
        let k = key.clone();
        let e = ask(Box::new(move || {
            describe(&k, NodeId::Node2, addr, Duration::from_secs(10)).map(|f| format!("{f:?}"))
        }))
        .unwrap_err();
        assert!(matches!(e, OfferError::Unreachable { .. }), "{e}");
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
        assert!(
            reports
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.contains("not authentic")),
            "{:?}",
            reports.lock().unwrap()
        );
    }
}
