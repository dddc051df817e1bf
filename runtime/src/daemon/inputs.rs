//! What the node hears from outside (heartbeat frames, serial line noise, ping
//! replies) on its way to the loop: one bounded queue per source, offered to without
//! waiting.
//!
//! The readers (the serial reader thread, one task per UDP socket, the ICMP reader)
//! never wait for the loop: when their queue is full the input is dropped and counted
//! for its source. A flood of datagrams then costs at most [`FRAME_QUEUE`] queued
//! inputs of memory per source, and a heartbeat dropped is what a flooded link means
//! anyway (the core judges each path by what it hears in time). Each source has its
//! own queue so that a flood on the LAN cannot crowd the crossover's and the serial
//! cable's heartbeats out: the loop takes from the sources in turn ([`Heards`]). The
//! counts are in the status (`dropped`), and [`report_drops`] says when dropping
//! starts and when it has stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tandem_api::DroppedJson;
use tandem_core::PathId;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::hub::EventHub;

/// Heard inputs of one source queued for the loop before new ones are dropped. The
/// fastest heartbeat (keepalive 100 ms) brings 10 frames a second on a path, and the
/// ping nodes a reply each per interval: 32 holds three seconds of what a healthy
/// peer sends, so a loop that pauses (an fsync, a slow control request) loses
/// nothing, while a flood occupies at most 32 inputs of at most 2 KiB each per source.
pub(super) const FRAME_QUEUE: usize = 32;

/// How often the drop counters are looked at for [`report_drops`].
const DROP_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Checks without a new drop before dropping is reported as stopped: a flood that
/// comes and goes gives one start and one stop line, not one of each every second.
const QUIET_CHECKS: u32 = 5;

/// Something heard from outside, for the core.
#[derive(Debug)]
pub(super) enum Heard {
    Frame { path: PathId, bytes: Vec<u8> },
    Noise(PathId),
    PingReply(usize),
}

/// Where heard inputs come from; each has its own drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Serial,
    Internal,
    External,
    Ping,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Serial,
        Source::Internal,
        Source::External,
        Source::Ping,
    ];

    fn name(self) -> &'static str {
        match self {
            Source::Serial => "serial",
            Source::Internal => "internal",
            Source::External => "external",
            Source::Ping => "ping",
        }
    }

    fn of(path: PathId) -> Source {
        match path {
            PathId::Serial => Source::Serial,
            PathId::Internal => Source::Internal,
            PathId::External => Source::External,
        }
    }
}

impl Heard {
    fn source(&self) -> Source {
        match self {
            Heard::Frame { path, .. } | Heard::Noise(path) => Source::of(*path),
            Heard::PingReply(_) => Source::Ping,
        }
    }
}

/// The sending side of the queues with their drop counters; cloned into every reader.
#[derive(Clone)]
pub(super) struct Inputs {
    tx: [mpsc::Sender<Heard>; 4],
    dropped: Arc<[AtomicU64; 4]>,
    /// Wakes [`report_drops`] at a drop: it sleeps while nothing is dropped.
    drop_seen: Arc<tokio::sync::Notify>,
}

/// The receiving side of the queues, for the loop.
pub(super) struct Heards {
    rx: [mpsc::Receiver<Heard>; 4],
}

impl Heards {
    /// The next heard input, from whichever source has one (a source picked at random
    /// among those that have: none is starved by another's flood); `None` once every
    /// reader and [`Inputs`] is gone.
    pub(super) async fn recv(&mut self) -> Option<Heard> {
        let [serial, internal, external, ping] = &mut self.rx;
        tokio::select! {
            Some(h) = serial.recv() => Some(h),
            Some(h) = internal.recv() => Some(h),
            Some(h) = external.recv() => Some(h),
            Some(h) = ping.recv() => Some(h),
            else => None,
        }
    }
}

impl Inputs {
    /// Queues of `capacity` inputs per source and their receiving side.
    pub(super) fn new(capacity: usize) -> (Inputs, Heards) {
        let (mut tx, mut rx) = (Vec::new(), Vec::new());
        for _ in Source::ALL {
            let (t, r) = mpsc::channel(capacity);
            tx.push(t);
            rx.push(r);
        }
        let (Ok(tx), Ok(rx)) = (tx.try_into(), rx.try_into()) else {
            unreachable!("one queue per source")
        };
        let dropped = Arc::new([const { AtomicU64::new(0) }; 4]);
        let drop_seen = Arc::new(tokio::sync::Notify::new());
        (
            Inputs {
                tx,
                dropped,
                drop_seen,
            },
            Heards { rx },
        )
    }

    /// Queues `heard` without waiting; a full queue drops it and counts the drop.
    /// `false` once the loop has ended (the reader can stop).
    pub(super) fn offer(&self, heard: Heard) -> bool {
        match self.tx[heard.source() as usize].try_send(heard) {
            Ok(()) => true,
            Err(TrySendError::Full(h)) => {
                self.dropped[h.source() as usize].fetch_add(1, Ordering::Relaxed);
                self.drop_seen.notify_one();
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// The loop has ended.
    pub(super) fn is_closed(&self) -> bool {
        self.tx.iter().all(mpsc::Sender::is_closed)
    }

    /// Inputs dropped so far, per source.
    pub(super) fn dropped(&self) -> DroppedJson {
        let n = |s: Source| self.dropped[s as usize].load(Ordering::Relaxed);
        DroppedJson {
            serial: n(Source::Serial),
            internal: n(Source::Internal),
            external: n(Source::External),
            ping: n(Source::Ping),
        }
    }
}

/// Turns successive readings of the drop counters into a line when dropping starts
/// and one when it has stopped for [`QUIET_CHECKS`] readings.
#[derive(Debug, Default)]
struct DropReport {
    last: [u64; 4],
    /// Readings without a new drop since dropping started; `None` while not dropping.
    quiet: Option<u32>,
}

fn counts(d: DroppedJson) -> [u64; 4] {
    [d.serial, d.internal, d.external, d.ping]
}

fn list(counts: [u64; 4]) -> String {
    Source::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{} {n}", s.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl DropReport {
    fn check(&mut self, now: DroppedJson) -> Option<String> {
        let now = counts(now);
        let new: [u64; 4] = std::array::from_fn(|i| now[i].saturating_sub(self.last[i]));
        self.last = now;
        let dropping = new.iter().any(|n| *n > 0);
        match (self.quiet, dropping) {
            (None, true) => {
                self.quiet = Some(0);
                Some(format!(
                    "input queue full: heard frames arrive faster than clusterd takes them and are dropped ({})",
                    list(new)
                ))
            }
            (Some(_), true) => {
                self.quiet = Some(0);
                None
            }
            (Some(q), false) if q + 1 >= QUIET_CHECKS => {
                self.quiet = None;
                Some(format!(
                    "input queue no longer full; dropped since clusterd started: {}",
                    list(now)
                ))
            }
            (Some(q), false) => {
                self.quiet = Some(q + 1);
                None
            }
            (None, false) => None,
        }
    }
}

/// Publishes an `input_dropped` event when inputs start being dropped and when that
/// has stopped; at most one line each [`DROP_CHECK_EVERY`]. While nothing is dropped
/// it sleeps until the first drop wakes it (no periodic wake-up at idle). Ends with
/// the loop.
pub(super) async fn report_drops(inputs: Inputs, hub: Arc<EventHub>) {
    let mut report = DropReport::default();
    while !inputs.is_closed() {
        if report.quiet.is_none() {
            tokio::select! {
                () = inputs.drop_seen.notified() => {}
                () = inputs.tx[0].closed() => return,
            }
        }
        tokio::time::sleep(DROP_CHECK_EVERY).await;
        if let Some(text) = report.check(inputs.dropped()) {
            hub.publish("input_dropped", text);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        reason = "test: a failed unwrap is a failed test"
    )]

    use super::*;

    fn frame(path: PathId) -> Heard {
        Heard::Frame {
            path,
            bytes: vec![0; 104],
        }
    }

    fn now(heards: &mut Heards) -> Option<Heard> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(10), heards.recv())
                .await
                .ok()
                .flatten()
        })
    }

    #[test]
    fn a_full_queue_drops_without_waiting_and_counts_per_source() {
        let (inputs, mut heards) = Inputs::new(4);
        for _ in 0..1000 {
            assert!(inputs.offer(frame(PathId::External)));
        }
        for _ in 0..6 {
            assert!(inputs.offer(Heard::Noise(PathId::Serial)));
        }
        assert!(inputs.offer(Heard::PingReply(0)));
        assert_eq!(
            inputs.dropped(),
            DroppedJson {
                serial: 2,
                internal: 0,
                external: 996,
                ping: 0
            }
        );
        // Only what fits was kept; taking makes room again.
        let mut kept = [0; 4];
        while let Some(h) = now(&mut heards) {
            kept[h.source() as usize] += 1;
        }
        assert_eq!(kept, [4, 0, 4, 1]);
        assert!(inputs.offer(frame(PathId::External)));
        assert_eq!(now(&mut heards).unwrap().source(), Source::External);
        assert_eq!(inputs.dropped().external, 996);
    }

    #[test]
    fn a_flood_on_the_lan_leaves_room_for_the_crossovers_frames() {
        let (inputs, mut heards) = Inputs::new(FRAME_QUEUE);
        for _ in 0..10 * FRAME_QUEUE {
            inputs.offer(frame(PathId::External));
        }
        assert!(inputs.offer(frame(PathId::Internal)));
        assert_eq!(inputs.dropped().internal, 0);
        // The loop reaches the crossover's frame long before it has emptied the
        // flooded queue (the source is picked at random among those that have one).
        let found =
            (0..=FRAME_QUEUE).any(|_| now(&mut heards).unwrap().source() == Source::Internal);
        assert!(found);
    }

    #[test]
    fn offering_to_an_ended_loop_says_so_and_counts_nothing() {
        let (inputs, heards) = Inputs::new(4);
        drop(heards);
        assert!(inputs.is_closed());
        assert!(!inputs.offer(frame(PathId::Serial)));
        assert_eq!(inputs.dropped(), DroppedJson::default());
    }

    #[test]
    fn a_reader_thread_is_never_blocked_by_a_loop_that_does_not_take() {
        let (inputs, _heards) = Inputs::new(FRAME_QUEUE);
        let t = std::thread::spawn(move || {
            for _ in 0..100_000 {
                assert!(inputs.offer(frame(PathId::Serial)));
            }
            inputs.dropped()
        });
        let d = t.join().unwrap();
        assert_eq!(d.serial, 100_000 - FRAME_QUEUE as u64);
    }

    #[test]
    fn dropping_is_reported_once_when_it_starts_and_once_when_it_stopped() {
        let mut r = DropReport::default();
        let at = |external| DroppedJson {
            external,
            ..DroppedJson::default()
        };
        assert_eq!(r.check(at(0)), None);
        let start = r.check(at(30)).unwrap();
        assert!(start.contains("dropped (external 30)"), "{start}");
        // Still dropping, then a short pause and more: no new lines.
        assert_eq!(r.check(at(90)), None);
        assert_eq!(r.check(at(90)), None);
        assert_eq!(r.check(at(95)), None);
        for _ in 1..QUIET_CHECKS {
            assert_eq!(r.check(at(95)), None);
        }
        let stop = r.check(at(95)).unwrap();
        assert!(
            stop.contains("since clusterd started: external 95"),
            "{stop}"
        );
        assert_eq!(r.check(at(95)), None);
        // A new flood is a new start.
        assert!(r.check(at(96)).unwrap().contains("(external 1)"));
    }
}
