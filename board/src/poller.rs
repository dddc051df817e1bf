//! Sans-IO debouncer: sensor sweeps and RAID polls in, status-change events and poll
//! deadlines out.
//!
//! The shell calls [`SensorPoller::handle`] with the current monotonic time and the
//! result of one sweep, then drains [`SensorPoller::poll_output`] until it returns
//! [`PollerOutput::PollAt`], the time of the next sweep. A change of health must be seen
//! in `confirm_samples` consecutive sweeps before it is reported, so a single glitch is
//! never reported. While a change awaits confirmation the next sweep comes after
//! `confirm_delay`; regular sweeps come early by the time the confirming re-reads take
//! ([`SensorPoller::sweep_period`]), so a change is reported at most one `interval` after
//! the sweep before it (plus the time the sweeps themselves take).

use std::collections::{BTreeMap, VecDeque};

use crate::areca::{RaidReport, RaidState};
use crate::ipmi::bmc::Sweep;
use crate::ipmi::sdr::SensorKey;
use crate::ipmi::sensor::{Health, Value};
use crate::{ErrorKind, Millis};

/// Poller settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollerConfig {
    /// The longest time from a sweep to the event for a change that sweep just missed
    /// (default 30 s). Regular sweeps run a little more often, see
    /// [`SensorPoller::sweep_period`].
    pub interval: Millis,
    /// Time between sweeps while a change awaits confirmation (default 2 s); shortened
    /// so that all confirming re-reads together take at most half the interval.
    pub confirm_delay: Millis,
    /// Consecutive sweeps that must agree before a change is reported (default 2, min 1).
    pub confirm_samples: u8,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            interval: Millis(30_000),
            confirm_delay: Millis(2_000),
            confirm_samples: 2,
        }
    }
}

/// What a status refers to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// One sensor.
    Sensor(SensorKey),
    /// A sensor data record that could not be read or decoded and names no sensor, by
    /// record id.
    SdrRecord(u16),
    /// The BMC as a whole (reachability).
    Bmc,
    /// The RAID controller as a whole (readability).
    RaidController,
    /// One RAID volume, by number.
    RaidVolume(u8),
    /// One physical disk on the RAID controller, by slot.
    RaidDisk(u8),
}

/// A confirmed change of health.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    /// When it was confirmed.
    pub at: Millis,
    /// What changed.
    pub subject: Subject,
    /// Sensor name (or "bmc", or "sdr record 0xNNNN").
    pub name: String,
    /// Previous health; `None` at the first sweep.
    pub from: Option<Health>,
    /// New health.
    pub to: Health,
    /// The reading that confirmed it, if any.
    pub value: Option<Value>,
    /// Why a sensor or the BMC is unavailable, if it is.
    pub detail: Option<String>,
}

/// Inputs to the poller.
#[derive(Debug)]
pub enum PollerInput<'a> {
    /// A sweep completed (possibly with per-sensor faults).
    Sweep(&'a Sweep),
    /// A RAID poll completed. `Absent` produces nothing: no controller is not a problem.
    Raid(&'a RaidReport),
    /// The sweep failed as a whole: the BMC did not answer or its repository is unreadable.
    SweepFailed {
        /// The error's class.
        kind: ErrorKind,
        /// The error's message chain.
        detail: String,
    },
}

/// Outputs of the poller.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum PollerOutput {
    /// A confirmed status change.
    Event(StatusEvent),
    /// Sweep again at this time. Always the last output after a `handle`.
    PollAt(Millis),
}

/// One subject's health as seen in one sweep: subject, name, health, value, detail.
type Observation = (Subject, String, Health, Option<Value>, Option<String>);

#[derive(Debug)]
struct Track {
    name: String,
    confirmed: Option<Health>,
    candidate: Option<(Health, u8)>,
}

/// The debouncer. See the module documentation for the call order.
#[derive(Debug)]
pub struct SensorPoller {
    config: PollerConfig,
    period: Millis,
    tracks: BTreeMap<Subject, Track>,
    out: VecDeque<PollerOutput>,
}

impl SensorPoller {
    /// A poller with no history; the first sweep's non-ok states are reported at once.
    pub fn new(config: PollerConfig) -> Self {
        let confirm_samples = config.confirm_samples.max(1);
        let rereads = u64::from(confirm_samples - 1);
        let confirm_delay = match rereads {
            0 => config.confirm_delay,
            n => Millis(config.confirm_delay.0.min(config.interval.0 / 2 / n)),
        };
        // A change first seen at a regular sweep is confirmed `rereads` short delays
        // later; starting regular sweeps that much earlier keeps the whole within one
        // interval.
        let period = Millis(config.interval.0 - rereads * confirm_delay.0);
        Self {
            config: PollerConfig {
                interval: config.interval,
                confirm_delay,
                confirm_samples,
            },
            period,
            tracks: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The settings in effect (the confirm delay possibly shortened).
    pub fn config(&self) -> PollerConfig {
        self.config
    }

    /// Time between regular sweeps: the interval less the confirming re-reads.
    pub fn sweep_period(&self) -> Millis {
        self.period
    }

    /// The first poll is due at once.
    pub fn start(&mut self, now: Millis) {
        self.out.push_back(PollerOutput::PollAt(now));
    }

    /// Feeds one sweep's outcome at time `now`. Drain [`Self::poll_output`] afterwards.
    pub fn handle(&mut self, now: Millis, input: PollerInput<'_>) {
        self.out.retain(|o| !matches!(o, PollerOutput::PollAt(_)));
        let mut observed: Vec<Observation> = Vec::new();
        match input {
            PollerInput::Sweep(sweep) => {
                observed.push((Subject::Bmc, "bmc".into(), Health::Ok, None, None));
                for r in &sweep.readings {
                    observed.push((
                        Subject::Sensor(r.key),
                        r.name.clone(),
                        r.health,
                        Some(r.value),
                        None,
                    ));
                }
                for f in &sweep.faults {
                    observed.push((
                        Subject::Sensor(f.key),
                        f.name.clone(),
                        Health::Unavailable,
                        None,
                        Some(error_chain(&f.error)),
                    ));
                }
                // A record that cannot be read may hide a sensor: that is a fault, under
                // the sensor's key when the record names one that is not read otherwise.
                for f in &sweep.record_faults {
                    let subject = match f.key.map(Subject::Sensor) {
                        Some(s) if !observed.iter().any(|o| o.0 == s) => s,
                        _ => Subject::SdrRecord(f.record_id),
                    };
                    if observed.iter().any(|o| o.0 == subject) {
                        continue;
                    }
                    observed.push((
                        subject,
                        f.label(),
                        Health::Unavailable,
                        None,
                        Some(error_chain(&*f.error)),
                    ));
                }
                for (subject, track) in &self.tracks {
                    if observed.iter().any(|o| &o.0 == subject) {
                        continue;
                    }
                    match subject {
                        // A sensor that vanished from the repository is not silently "ok".
                        Subject::Sensor(_) => observed.push((
                            subject.clone(),
                            track.name.clone(),
                            Health::Unavailable,
                            None,
                            Some("sensor no longer in the sdr repository".into()),
                        )),
                        // A bad record that was replaced or removed is no longer a fault.
                        Subject::SdrRecord(_) => observed.push((
                            subject.clone(),
                            track.name.clone(),
                            Health::Ok,
                            None,
                            Some("record readable or removed".into()),
                        )),
                        _ => {}
                    }
                }
            }
            PollerInput::Raid(RaidReport::Absent) => {}
            PollerInput::Raid(RaidReport::Fault(e)) => {
                observed.push((
                    Subject::RaidController,
                    "raid controller".into(),
                    Health::Unavailable,
                    None,
                    Some(error_chain(e)),
                ));
            }
            PollerInput::Raid(RaidReport::Present(status)) => {
                observed.push((
                    Subject::RaidController,
                    "raid controller".into(),
                    Health::Ok,
                    None,
                    None,
                ));
                for v in &status.volumes {
                    observed.push((
                        Subject::RaidVolume(v.number),
                        format!("volume {}", v.name),
                        raid_health(v.state),
                        None,
                        Some(v.state.to_string()),
                    ));
                }
                for d in &status.disks {
                    observed.push((
                        Subject::RaidDisk(d.number),
                        format!("disk {} {}", d.number, d.model),
                        raid_health(d.state),
                        None,
                        Some(d.state.to_string()),
                    ));
                }
                for (subject, track) in &self.tracks {
                    if matches!(subject, Subject::RaidVolume(_) | Subject::RaidDisk(_))
                        && !observed.iter().any(|o| &o.0 == subject)
                    {
                        observed.push((
                            subject.clone(),
                            track.name.clone(),
                            Health::Unavailable,
                            None,
                            Some("no longer reported by the controller".into()),
                        ));
                    }
                }
            }
            PollerInput::SweepFailed { kind, detail } => {
                observed.push((
                    Subject::Bmc,
                    "bmc".into(),
                    Health::Unavailable,
                    None,
                    Some(format!("{kind}: {detail}")),
                ));
            }
        }
        for (subject, name, health, value, detail) in observed {
            let confirm = self.config.confirm_samples;
            let track = self.tracks.entry(subject.clone()).or_insert(Track {
                name: name.clone(),
                confirmed: None,
                candidate: None,
            });
            if track.confirmed.is_none() {
                track.confirmed = Some(health);
                if health != Health::Ok {
                    self.out.push_back(PollerOutput::Event(StatusEvent {
                        at: now,
                        subject,
                        name,
                        from: None,
                        to: health,
                        value,
                        detail,
                    }));
                }
                continue;
            }
            if track.confirmed == Some(health) {
                track.candidate = None;
                continue;
            }
            let count = match track.candidate {
                Some((h, n)) if h == health => n.saturating_add(1),
                _ => 1,
            };
            if count >= confirm {
                let from = track.confirmed;
                track.confirmed = Some(health);
                track.candidate = None;
                self.out.push_back(PollerOutput::Event(StatusEvent {
                    at: now,
                    subject,
                    name,
                    from,
                    to: health,
                    value,
                    detail,
                }));
            } else {
                track.candidate = Some((health, count));
            }
        }
        // Any change awaiting confirmation (from this input or another) asks for a quick
        // re-read.
        let pending = self.tracks.values().any(|t| t.candidate.is_some());
        let delay = if pending {
            self.config.confirm_delay
        } else {
            self.period
        };
        self.out.push_back(PollerOutput::PollAt(now.plus(delay)));
    }

    /// Next output; `None` once the queue is drained.
    pub fn poll_output(&mut self) -> Option<PollerOutput> {
        self.out.pop_front()
    }

    /// The confirmed health of every subject seen, for status displays.
    pub fn status(&self) -> impl Iterator<Item = (&Subject, &str, Option<Health>)> {
        self.tracks
            .iter()
            .map(|(s, t)| (s, t.name.as_str(), t.confirmed))
    }

    /// Subjects confirmed ok whose last sweeps saw them otherwise, awaiting confirmation:
    /// subject, name and the health seen. Not yet events, but not "all good" either.
    pub fn pending(&self) -> impl Iterator<Item = (&Subject, &str, Health)> {
        self.tracks
            .iter()
            .filter_map(|(s, t)| match (t.confirmed, t.candidate) {
                (Some(Health::Ok), Some((h, _))) if h != Health::Ok => {
                    Some((s, t.name.as_str(), h))
                }
                _ => None,
            })
    }
}

/// Rebuilding restores redundancy but has none yet: a warning, like degraded.
fn raid_health(state: RaidState) -> Health {
    match state {
        RaidState::Ok => Health::Ok,
        RaidState::Degraded | RaidState::Rebuilding { .. } => Health::Warning,
        RaidState::Failed => Health::Critical,
    }
}

/// An error and its causes on one line (`a: b: c`), by anyhow's walk of the chain.
#[must_use]
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    anyhow::Chain::new(e)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::bmc::Bmc;
    use crate::ipmi::sdr::{RecordBuilder, SensorType};
    use crate::ipmi::sim::SimBmc;

    fn sim() -> SimBmc {
        let mut sim = SimBmc::new();
        sim.add_record(
            RecordBuilder::full(0x20, SensorType::FAN, 18, "Fan 1")
                .factors(60, 0, 0, 0)
                .build(),
        );
        sim.add_record(
            RecordBuilder::compact(0x40, SensorType::POWER_SUPPLY, 0x6F, "PS1 Status").build(),
        );
        sim.set_reading(0x20, 100, 0);
        sim.set_reading(0x40, 0, 0x01);
        sim
    }

    fn drain(p: &mut SensorPoller) -> (Vec<StatusEvent>, Millis) {
        let mut events = vec![];
        loop {
            match p.poll_output() {
                Some(PollerOutput::Event(e)) => events.push(e),
                Some(PollerOutput::PollAt(t)) => return (events, t),
                None => panic!("no PollAt"),
            }
        }
    }

    fn step(
        p: &mut SensorPoller,
        bmc: &mut Bmc<SimBmc>,
        now: Millis,
    ) -> (Vec<StatusEvent>, Millis) {
        match bmc.sweep() {
            Ok(s) => p.handle(now, PollerInput::Sweep(&s)),
            Err(e) => p.handle(
                now,
                PollerInput::SweepFailed {
                    kind: e.kind(),
                    detail: e.to_string(),
                },
            ),
        }
        drain(p)
    }

    #[test]
    fn change_is_confirmed_before_reported_within_one_interval() {
        let config = PollerConfig::default();
        let mut p = SensorPoller::new(config);
        assert_eq!(p.sweep_period(), Millis(28_000));
        let mut bmc = Bmc::new(sim());
        p.start(Millis(0));
        assert_eq!(p.poll_output(), Some(PollerOutput::PollAt(Millis(0))));
        let (ev, next) = step(&mut p, &mut bmc, Millis(0));
        assert!(ev.is_empty());
        assert_eq!(next, Millis(28_000));
        // PSU fails right after that sweep, the worst case: the first sighting at the
        // next sweep schedules a quick re-read, no event yet.
        bmc.transport_mut().set_reading(0x40, 0, 0x03);
        let (ev, next) = step(&mut p, &mut bmc, next);
        assert!(ev.is_empty());
        assert_eq!(p.pending().count(), 1);
        assert_eq!(next, Millis(30_000));
        let (ev, next) = step(&mut p, &mut bmc, next);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].name, "PS1 Status");
        assert_eq!((ev[0].from, ev[0].to), (Some(Health::Ok), Health::Critical));
        assert!(ev[0].at <= config.interval, "{:?}", ev[0].at);
        assert_eq!(p.pending().count(), 0);
        assert_eq!(next, Millis(58_000));
    }

    #[test]
    fn confirmation_fits_in_short_intervals() {
        for (interval, samples, delay, period) in [
            (1_000, 2, 500, 500),
            (500, 2, 250, 250),
            (100, 2, 50, 50),
            (1_000, 3, 250, 500),
            (30_000, 3, 2_000, 26_000),
            (1_000, 1, 2_000, 1_000),
        ] {
            let p = SensorPoller::new(PollerConfig {
                interval: Millis(interval),
                confirm_delay: Millis(2_000),
                confirm_samples: samples,
            });
            assert_eq!(
                (p.config().confirm_delay, p.sweep_period()),
                (Millis(delay), Millis(period)),
                "interval {interval} samples {samples}"
            );
            // The worst case: missed by one regular sweep, then all the re-reads.
            let rereads = u64::from(samples - 1);
            assert!(period + rereads * p.config().confirm_delay.0 <= interval);
        }
    }

    #[test]
    fn glitch_is_not_reported() {
        let mut p = SensorPoller::new(PollerConfig::default());
        let mut bmc = Bmc::new(sim());
        step(&mut p, &mut bmc, Millis(0));
        bmc.transport_mut().set_reading(0x20, 1, 0x03);
        let (ev, next) = step(&mut p, &mut bmc, Millis(30_000));
        assert!(ev.is_empty());
        bmc.transport_mut().set_reading(0x20, 100, 0);
        let (ev, next) = step(&mut p, &mut bmc, next);
        assert!(ev.is_empty());
        assert_eq!(next, Millis(60_000));
    }

    #[test]
    fn unreachable_bmc_is_an_event_not_all_good() {
        let mut p = SensorPoller::new(PollerConfig {
            confirm_samples: 1,
            ..PollerConfig::default()
        });
        let mut bmc = Bmc::new(sim());
        step(&mut p, &mut bmc, Millis(0));
        bmc.transport_mut().set_unresponsive(true);
        let (ev, _) = step(&mut p, &mut bmc, Millis(30_000));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].subject, Subject::Bmc);
        assert_eq!(ev[0].to, Health::Unavailable);
        assert!(ev[0].detail.as_deref().unwrap().contains("timeout"));
        bmc.transport_mut().set_unresponsive(false);
        let (ev, _) = step(&mut p, &mut bmc, Millis(60_000));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].to, Health::Ok);
    }

    #[test]
    fn raid_changes_are_debounced_too() {
        use crate::areca::sim::SimRaid;
        use crate::areca::{Controller, report};
        let mut p = SensorPoller::new(PollerConfig::default());
        let mut c = Controller::new(SimRaid::new(), None);
        p.handle(Millis(0), PollerInput::Raid(&report(Some(&mut c))));
        assert!(drain(&mut p).0.is_empty());
        c.transport_mut().set_disk(1, Some(0x10));
        c.transport_mut().set_volume(0, 0b10, 0);
        p.handle(Millis(30_000), PollerInput::Raid(&report(Some(&mut c))));
        let (ev, next) = drain(&mut p);
        assert!(ev.is_empty());
        assert_eq!(next, Millis(32_000));
        assert_eq!(p.pending().count(), 2);
        p.handle(next, PollerInput::Raid(&report(Some(&mut c))));
        let (ev, _) = drain(&mut p);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(
            ev.iter()
                .any(|e| e.subject == Subject::RaidVolume(0) && e.to == Health::Warning)
        );
        assert!(
            ev.iter()
                .any(|e| e.subject == Subject::RaidDisk(1) && e.to == Health::Critical)
        );
        // A controller that stops answering is reported, never "all good".
        c.transport_mut().corrupt_checksum(true);
        p.handle(Millis(62_000), PollerInput::Raid(&report(Some(&mut c))));
        p.handle(Millis(64_000), PollerInput::Raid(&report(Some(&mut c))));
        let (ev, _) = drain(&mut p);
        assert!(
            ev.iter()
                .any(|e| e.subject == Subject::RaidController && e.to == Health::Unavailable),
            "{ev:?}"
        );
        // No controller at all: nothing to report.
        let mut q = SensorPoller::new(PollerConfig::default());
        q.handle(Millis(0), PollerInput::Raid(&RaidReport::Absent));
        assert_eq!(drain(&mut q), (vec![], Millis(28_000)));
    }

    #[test]
    fn first_sweep_reports_bad_states_and_faults() {
        let mut p = SensorPoller::new(PollerConfig::default());
        let mut s = sim();
        s.set_reading(0x40, 0, 0x00);
        s.fail_command(crate::ipmi::NetFn::SENSOR_EVENT, 0x2D, 0xC3, 1);
        let mut bmc = Bmc::new(s);
        let (ev, _) = step(&mut p, &mut bmc, Millis(0));
        assert_eq!(ev.len(), 2, "{ev:?}");
        let fan = ev.iter().find(|e| e.name == "Fan 1").unwrap();
        assert_eq!(fan.to, Health::Unavailable);
        assert!(fan.detail.as_deref().unwrap().contains("0xc3"), "{fan:?}");
        let psu = ev.iter().find(|e| e.name == "PS1 Status").unwrap();
        assert_eq!(psu.to, Health::Warning);
    }

    #[test]
    fn unreadable_records_are_faults_not_missing_sensors() {
        let mut p = SensorPoller::new(PollerConfig::default());
        let mut s = sim();
        // A third record whose linearization is nonsense, and one owned elsewhere.
        s.add_record(
            RecordBuilder::full(0x21, SensorType::FAN, 18, "Fan 2")
                .linearization(0x42)
                .build(),
        );
        s.add_record(
            RecordBuilder::full(0x05, SensorType::TEMPERATURE, 1, "HSC Temp")
                .owner(0x2C)
                .build(),
        );
        let mut bmc = Bmc::new(s);
        let (ev, _) = step(&mut p, &mut bmc, Millis(0));
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].name, "Fan 2");
        assert_eq!(ev[0].to, Health::Unavailable);
        assert!(
            matches!(ev[0].subject, Subject::Sensor(k) if k.number == 0x21),
            "{ev:?}"
        );
        assert!(
            ev[0].detail.as_deref().unwrap().contains("linearization"),
            "{ev:?}"
        );

        // A sensor that was fine and whose record turns unreadable: one event, for the
        // sensor, not a silent disappearance.
        let mut p = SensorPoller::new(PollerConfig {
            confirm_samples: 1,
            ..PollerConfig::default()
        });
        let mut bmc = Bmc::new(sim());
        step(&mut p, &mut bmc, Millis(0));
        bmc.transport_mut().corrupt_record(0, 3);
        bmc.transport_mut().add_record(
            RecordBuilder::compact(0x41, SensorType::POWER_SUPPLY, 0x6F, "PS2").build(),
        );
        bmc.transport_mut().set_reading(0x41, 0, 0x01);
        let (ev, _) = step(&mut p, &mut bmc, Millis(28_000));
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].name, "Fan 1");
        assert_eq!(ev[0].to, Health::Unavailable);
        assert!(
            ev[0].detail.as_deref().unwrap().contains("record 0x0000"),
            "{ev:?}"
        );
        // The record is fixed: the fault clears.
        bmc.transport_mut().corrupt_record(0, 0);
        bmc.transport_mut().set_reading(0x41, 0, 0x01);
        bmc.invalidate_cache();
        let (ev, _) = step(&mut p, &mut bmc, Millis(56_000));
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!((ev[0].name.as_str(), ev[0].to), ("Fan 1", Health::Ok));
    }
}
