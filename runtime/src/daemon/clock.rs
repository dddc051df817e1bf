//! Time for the loop: real-time priority for its thread, the core's clock and the
//! timerfd that wakes the loop at the core's next deadline.

use tandem_core::Instant;

/// Real-time scheduling for the calling thread (`SCHED_FIFO` at the lowest priority):
/// on a node busy with its VEs, heartbeats still go out and deadlines are still
/// noticed on time, as no normal process can delay them. Threads and programs it
/// starts run as usual (`SCHED_RESET_ON_FORK`). Needs `CAP_SYS_NICE`.
pub(crate) fn realtime_thread() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the
    // calling thread.
    let r = unsafe {
        libc::sched_setscheduler(
            0,
            libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK,
            &raw const param,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The core's clock: CLOCK_MONOTONIC in microseconds since clusterd started.
pub(super) struct Clock {
    base_ns: u64,
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

impl Clock {
    pub(super) fn start() -> Clock {
        Clock {
            base_ns: monotonic_ns(),
        }
    }

    pub(super) fn now(&self) -> Instant {
        Instant::from_micros(monotonic_ns().saturating_sub(self.base_ns) / 1000)
    }

    /// `at` on CLOCK_MONOTONIC, for an absolute timer.
    fn timespec(&self, at: Instant) -> rustix::time::Timespec {
        let ns = self
            .base_ns
            .saturating_add(at.as_micros().saturating_mul(1000));
        rustix::time::Timespec {
            tv_sec: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
            tv_nsec: i64::try_from(ns % 1_000_000_000).unwrap_or(0),
        }
    }
}

/// The loop's timer: a timerfd on CLOCK_MONOTONIC, armed at the core's next deadline
/// to the microsecond (tokio's timers round up to whole milliseconds, and its poll
/// waits in milliseconds again), and re-armed only when that deadline moves.
pub(super) struct Timer {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    armed: Option<Instant>,
}

impl Timer {
    pub(super) fn new() -> std::io::Result<Timer> {
        use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Timer {
            fd: crate::net::register_readable(fd)?,
            armed: None,
        })
    }

    pub(super) fn arm(&mut self, clock: &Clock, at: Instant) {
        use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
        if self.armed == Some(at) {
            return;
        }
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: clock.timespec(at),
        };
        // An absolute time in the past expires at once, which is what a due deadline
        // needs; the call itself cannot fail on a valid timerfd and value.
        if timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::ABSTIME, &spec).is_ok() {
            self.armed = Some(at);
        }
    }

    /// Until the armed deadline has passed.
    pub(super) async fn expired(&mut self) {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                // Not reachable with a registered timerfd; never spin on it.
                return std::future::pending().await;
            };
            let mut count = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut count) {
                Ok(_) => {
                    // Read: nothing more until the next expiry, which the kernel
                    // reports afresh.
                    ready.clear_ready();
                    self.armed = None;
                    return;
                }
                Err(_) => ready.clear_ready(),
            }
        }
    }
}
