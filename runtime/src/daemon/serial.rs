//! The serial heartbeat cable: a blocking port with a reader thread, which offers
//! frames and line noise to the bounded input queue, and a writer thread fed by a
//! small queue of its own.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tandem_core::PathId;
use tandem_proto::SerialDeframer;

use super::clock::realtime_thread;
use super::hub::EventHub;
use super::inputs::{Heard, Inputs};

/// Frames queued for the serial writer before new ones are dropped (a frozen cable
/// must not block the loop).
const SERIAL_QUEUE: usize = 4;

/// Opens the serial port 8N1 and starts its reader and writer threads. Returns the
/// writer's queue. Trouble on the port is a `transport` event, published by the
/// thread that meets it.
///
/// # Errors
/// The device cannot be opened or a thread cannot start.
pub(super) fn start(
    device: &Path,
    baud: u32,
    inputs: Inputs,
    hub: Arc<EventHub>,
) -> anyhow::Result<std::sync::mpsc::SyncSender<[u8; tandem_proto::FRAME_LEN]>> {
    let dev = device.display().to_string();
    let port = serialport::new(dev.clone(), baud)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(Duration::from_millis(500))
        .open_native()
        .with_context(|| format!("opening serial heartbeat device {dev} at {baud} baud"))?;
    let writer = port
        .try_clone_native()
        .with_context(|| format!("duplicating serial device {dev}"))?;
    let (wtx, wrx) = std::sync::mpsc::sync_channel::<[u8; tandem_proto::FRAME_LEN]>(SERIAL_QUEUE);
    let (wdev, whub) = (dev.clone(), Arc::clone(&hub));
    std::thread::Builder::new()
        .name("serial-tx".into())
        .spawn(move || write_frames(writer, &wrx, &wdev, &whub))
        .context("starting serial writer thread")?;
    std::thread::Builder::new()
        .name("serial-rx".into())
        .spawn(move || read_frames(port, &dev, &inputs, &hub))
        .context("starting serial reader thread")?;
    Ok(wtx)
}

/// Writes each queued frame until the loop drops the queue.
fn write_frames(
    mut writer: serialport::TTYPort,
    frames: &std::sync::mpsc::Receiver<[u8; tandem_proto::FRAME_LEN]>,
    dev: &str,
    hub: &EventHub,
) {
    // As the loop's thread (which already reported a failure).
    let _ = realtime_thread();
    let mut buf = [0u8; tandem_proto::SERIAL_BUF_LEN];
    let mut failing = false;
    while let Ok(frame) = frames.recv() {
        let Some(bytes) = tandem_proto::encode_serial(&frame, &mut buf) else {
            continue;
        };
        match writer.write_all(bytes) {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    hub.publish("transport", format!("serial write on {dev} failed: {e}"));
                }
                failing = true;
            }
        }
    }
}

/// Offers every frame and every piece of line noise read to the loop until the loop
/// has ended.
fn read_frames(mut reader: serialport::TTYPort, dev: &str, inputs: &Inputs, hub: &EventHub) {
    let _ = realtime_thread();
    let mut d = SerialDeframer::new();
    let mut buf = [0u8; 256];
    let mut failing = false;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                // End of file or hang-up: the other end is gone. Wait instead of
                // spinning; data resumes when the cable does.
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(n) => {
                failing = false;
                for &b in &buf[..n] {
                    let msg = match d.push(b) {
                        Some(Ok(frame)) => Heard::Frame {
                            path: PathId::Serial,
                            bytes: frame.to_vec(),
                        },
                        Some(Err(_)) => Heard::Noise(PathId::Serial),
                        None => continue,
                    };
                    if !inputs.offer(msg) {
                        return;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if inputs.is_closed() {
                    return;
                }
            }
            Err(e) => {
                if inputs.is_closed() {
                    return;
                }
                if !failing {
                    hub.publish("transport", format!("serial read on {dev} failed: {e}"));
                }
                failing = true;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
