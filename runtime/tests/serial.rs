//! clusterd on a pty as its only heartbeat path, with the test playing the peer on the
//! other end of the "cable": frames in both directions, line noise, oversized chunks,
//! frames signed with the wrong key, and frames of an older run of the peer replayed
//! after clusterd restarted. No network traffic at all.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use tandem_api::Client;
use tandem_proto::{
    ClusterKey, Frame, NodeId, PathId, ResourceState, Role, SERIAL_BUF_LEN, SerialDeframer, encode,
    encode_serial,
};

const KEY: &[u8] = b"serial test cluster key";

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// The test's peer, echoing clusterd's generation `yours` as a real peer does once it
/// has heard it.
fn frame(seq: u64, yours: u64) -> Frame {
    frame_of(7, seq, yours)
}

/// A frame of the peer's run `generation`.
fn frame_of(generation: u64, seq: u64, yours: u64) -> Frame {
    Frame {
        sender: NodeId::Node2,
        path: PathId::Serial,
        role: Role::Active,
        resources: ResourceState::Running,
        data_good: true,
        want_switchover: false,
        handover: false,
        ping_total: 0,
        ping_reach: 0,
        generation,
        sequence: seq,
        your_generation: yours,
        config_digest: [0; 32],
    }
}

#[test]
fn serial_path_frames_noise_and_forgeries() {
    let dir = std::env::temp_dir().join(format!("tdm-serial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), KEY).unwrap();
    let sock = dir.join("control.sock");
    let (_d, mut master) = start(&dir, &dir.join("state"), &sock);
    // clusterd's own heartbeats arrive on our end of the cable, COBS-framed.
    let key = ClusterKey::new(KEY).unwrap();
    let mut d = SerialDeframer::new();
    let mut heard = None;
    let start = Instant::now();
    let mut buf = [0u8; 512];
    while heard.is_none() && start.elapsed() < Duration::from_secs(3) {
        let n = master.read(&mut buf).unwrap_or(0);
        for &b in &buf[..n] {
            if let Some(Ok(p)) = d.push(b) {
                heard = Some(tandem_proto::decode(&key, p).unwrap());
            }
        }
    }
    let heard = heard.expect("a heartbeat from clusterd on the serial line");
    assert_eq!(heard.sender, NodeId::Node1);
    assert_eq!(heard.path, PathId::Serial);

    // The peer: valid frames interleaved with line noise, an overlong run, and a frame
    // under another key.
    let other = ClusterKey::new(b"some other key").unwrap();
    let mut out = [0u8; SERIAL_BUF_LEN];
    for seq in 1..=10u64 {
        master.write_all(b"\x13\x37noise\xff\xfe").unwrap();
        if seq == 5 {
            master.write_all(&[0x55; 400]).unwrap();
        }
        if seq == 6 {
            let forged = encode(&other, &frame(1000, heard.generation));
            master
                .write_all(encode_serial(&forged, &mut out).unwrap())
                .unwrap();
        }
        let f = encode(&key, &frame(seq, heard.generation));
        master
            .write_all(encode_serial(&f, &mut out).unwrap())
            .unwrap();
        master.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // Keep draining clusterd's frames so its writes never block.
        let _ = master.read(&mut buf);
    }
    let mut c = Client::connect(&sock).unwrap();
    let st = c.status().unwrap();
    let serial = st.paths.iter().find(|p| p.path == "serial").unwrap();
    assert_ne!(serial.state, "down", "{st:?}");
    assert!(st.peer.alive);
    assert!(st.counters.accepted >= 10, "{:?}", st.counters);
    assert!(st.counters.line_noise >= 10, "{:?}", st.counters);
    assert!(st.counters.bad_mac >= 1, "{:?}", st.counters);
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("internal heartbeat path disabled")),
        "{:?}",
        st.warnings
    );
    // The peer says it is active: node1 stays passive.
    assert_eq!(st.role, "passive", "{st:?}");

    // A control client that never sends a newline gets a clear error after 16 KiB
    // and its connection is closed: clusterd does not buffer the rest.
    let mut raw = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Fits in the socket buffer, so the write completes before clusterd closes.
    raw.write_all(&vec![b'x'; 64 * 1024]).unwrap();
    let mut reader = std::io::BufReader::new(raw);
    let mut reply = String::new();
    std::io::BufRead::read_line(&mut reader, &mut reply).unwrap();
    let r: tandem_api::wire::ReplyLine = serde_json::from_str(&reply).unwrap();
    assert_eq!(
        r.reply.refusal().map(ToString::to_string).as_deref(),
        Some("request longer than 16384 bytes")
    );
    // Then end of stream (or a reset: the unread rest of the line was dropped).
    let mut rest = Vec::new();
    assert!(reader.read_to_end(&mut rest).map_or(true, |n| n == 0));
    let st = c.status().unwrap();
    assert_eq!(st.counters.bad_requests, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// clusterd on a fresh pty with state directory `state`; the test's end of the cable.
fn start(
    dir: &std::path::Path,
    state: &std::path::Path,
    sock: &std::path::Path,
) -> (Daemon, TTYPort) {
    let (mut master, slave) = TTYPort::pair().unwrap();
    let tty = slave.name().unwrap();
    master.set_timeout(Duration::from_millis(50)).unwrap();
    let d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_clusterd"))
            .args(["--node", "node1", "--key-file"])
            .arg(dir.join("key"))
            .arg("--state-dir")
            .arg(state)
            .arg("--control")
            .arg(sock)
            .args(["--serial", &tty, "--baud", "38400"])
            .args(["--keepalive-ms", "200", "--deadtime-ms", "1000"])
            .args(["--warntime-ms", "500", "--initdead-ms", "2000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("control socket", Duration::from_secs(10), || {
        Client::connect(sock).is_ok()
    });
    drop(slave);
    (d, master)
}

/// Sends `frames` down the cable, draining clusterd's own frames meanwhile.
fn send(master: &mut TTYPort, frames: &[[u8; tandem_proto::FRAME_LEN]]) {
    let mut out = [0u8; SERIAL_BUF_LEN];
    let mut buf = [0u8; 512];
    for f in frames {
        master
            .write_all(encode_serial(f, &mut out).unwrap())
            .unwrap();
        master.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let _ = master.read(&mut buf);
    }
}

#[test]
fn a_replay_of_an_older_peer_run_after_a_restart_is_refused() {
    let dir = std::env::temp_dir().join(format!("tdm-serial-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), KEY).unwrap();
    let (state, sock) = (dir.join("state"), dir.join("control.sock"));
    let key = ClusterKey::new(KEY).unwrap();

    // The peer's run 7, captured by an attacker on the way; then the peer restarts
    // (run 8), and clusterd keeps that.
    let captured: Vec<_> = (1..=12).map(|s| encode(&key, &frame_of(7, s, 0))).collect();
    {
        let (_d, mut master) = start(&dir, &state, &sock);
        send(&mut master, &captured[..3]);
        send(&mut master, &[encode(&key, &frame_of(8, 1, 0))]);
        wait_until("the peer's run kept", Duration::from_secs(5), || {
            std::fs::read_to_string(state.join("peer-generation")).is_ok_and(|g| g == "8\n")
        });
    }

    // clusterd restarts; the captured frames of run 7 are replayed: every one is
    // refused, none counts as the peer heard.
    let (_d, mut master) = start(&dir, &state, &sock);
    send(&mut master, &captured);
    let st = Client::connect(&sock).unwrap().status().unwrap();
    assert_eq!(st.counters.accepted, 0, "{:?}", st.counters);
    assert!(st.counters.replayed >= 12, "{:?}", st.counters);
    assert!(!st.peer.alive, "{st:?}");
    // The peer's current run is heard.
    send(&mut master, &[encode(&key, &frame_of(8, 2, 0))]);
    let st = Client::connect(&sock).unwrap().status().unwrap();
    assert_eq!(st.counters.accepted, 1, "{:?}", st.counters);
    assert!(st.peer.alive, "{st:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
