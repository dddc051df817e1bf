//! clusterd on a pty as its only heartbeat path, with the test playing the peer on the
//! other end of the "cable": frames in both directions, line noise, oversized chunks,
//! and frames signed with the wrong key. No network traffic at all.

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
    Frame {
        sender: NodeId::Node2,
        path: PathId::Serial,
        role: Role::Passive,
        resources: ResourceState::Stopped,
        data_good: true,
        want_switchover: false,
        handover: false,
        ping_total: 0,
        ping_reach: 0,
        generation: 7,
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
    let (mut master, slave) = TTYPort::pair().unwrap();
    let tty = slave.name().unwrap();
    master.set_timeout(Duration::from_millis(100)).unwrap();
    let sock = dir.join("control.sock");
    let _d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_clusterd"))
            .args(["--node", "node1", "--key-file"])
            .arg(dir.join("key"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--control")
            .arg(&sock)
            .args(["--serial", &tty, "--baud", "38400"])
            .args(["--keepalive-ms", "200", "--deadtime-ms", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("control socket", Duration::from_secs(10), || {
        Client::connect(&sock).is_ok()
    });
    drop(slave);

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
    // node1 was started without --data-good and the peer says its data is good: the
    // start-up rule elects the peer, so node1 stays passive.
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
