//! Sensor readings: pure decoding of Get Sensor Reading and Get Sensor Thresholds replies
//! against a decoded record, and the health each reading means.

use std::fmt;

use super::sdr::{SensorKey, SensorRecord, SensorType, Unit};

/// How a sensor is doing, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Within limits.
    Ok,
    /// A non-critical threshold is crossed, or a warning state is asserted.
    Warning,
    /// A critical or non-recoverable threshold is crossed, or a failure is asserted.
    Critical,
    /// The sensor could not be read (scanning disabled, reading unavailable, error).
    Unavailable,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Unavailable => "unavailable",
        })
    }
}

/// The worst threshold crossed by a threshold sensor (Get Sensor Reading byte 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThresholdState {
    /// No threshold crossed.
    Ok,
    /// Lower non-critical.
    LowerNonCritical,
    /// Lower critical.
    LowerCritical,
    /// Lower non-recoverable.
    LowerNonRecoverable,
    /// Upper non-critical.
    UpperNonCritical,
    /// Upper critical.
    UpperCritical,
    /// Upper non-recoverable.
    UpperNonRecoverable,
}

impl ThresholdState {
    /// From the comparison-status bits (bit 0 LNC … bit 5 UNR); the most severe wins.
    pub fn from_bits(bits: u8) -> Self {
        if bits & 0x20 != 0 {
            Self::UpperNonRecoverable
        } else if bits & 0x04 != 0 {
            Self::LowerNonRecoverable
        } else if bits & 0x10 != 0 {
            Self::UpperCritical
        } else if bits & 0x02 != 0 {
            Self::LowerCritical
        } else if bits & 0x08 != 0 {
            Self::UpperNonCritical
        } else if bits & 0x01 != 0 {
            Self::LowerNonCritical
        } else {
            Self::Ok
        }
    }

    /// The health this state means.
    pub fn health(self) -> Health {
        match self {
            Self::Ok => Health::Ok,
            Self::LowerNonCritical | Self::UpperNonCritical => Health::Warning,
            _ => Health::Critical,
        }
    }

    /// ipmitool's short status word (`ok`, `nc`, `cr`, `nr`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::LowerNonCritical | Self::UpperNonCritical => "nc",
            Self::LowerCritical | Self::UpperCritical => "cr",
            Self::LowerNonRecoverable | Self::UpperNonRecoverable => "nr",
        }
    }
}

/// Power-supply states (sensor type 0x08, sensor-specific offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PsuState {
    /// Offset 0: presence detected.
    pub present: bool,
    /// Offset 1: power supply failure detected.
    pub failed: bool,
    /// Offset 2: predictive failure.
    pub predictive_failure: bool,
    /// Offset 3: AC lost (or offset 4: AC lost or out of range).
    pub ac_lost: bool,
    /// Offsets 5 and 6: input out of range, or configuration error.
    pub input_or_config_error: bool,
}

impl PsuState {
    /// From the state bits of a type 0x08 sensor-specific sensor.
    pub fn from_bits(bits: u16) -> Self {
        Self {
            present: bits & 0x01 != 0,
            failed: bits & 0x02 != 0,
            predictive_failure: bits & 0x04 != 0,
            ac_lost: bits & 0x18 != 0,
            input_or_config_error: bits & 0x60 != 0,
        }
    }

    /// The health these states mean: a failed or unpowered supply is critical, an absent
    /// one or a predicted failure is a warning (the other supply carries the load).
    pub fn health(self) -> Health {
        if self.failed || self.ac_lost {
            Health::Critical
        } else if !self.present || self.predictive_failure || self.input_or_config_error {
            Health::Warning
        } else {
            Health::Ok
        }
    }
}

/// What one sensor reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A threshold sensor's converted reading.
    Analog {
        /// The value in `unit`.
        value: f64,
        /// Unit.
        unit: Unit,
        /// The raw byte.
        raw: u8,
        /// The worst threshold crossed.
        state: ThresholdState,
    },
    /// A discrete sensor's asserted states (bit n = offset n).
    Discrete {
        /// State bits, offsets 0–14.
        states: u16,
    },
    /// No reading: scanning disabled or reading unavailable.
    Unavailable,
}

/// One sensor's reading with what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorReading {
    /// Which sensor.
    pub key: SensorKey,
    /// Its name from the SDR.
    pub name: String,
    /// Its type.
    pub sensor_type: SensorType,
    /// Event/reading type code.
    pub reading_type: u8,
    /// The value.
    pub value: Value,
    /// The health it means.
    pub health: Health,
}

/// Errors decoding a Get Sensor Reading reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    /// The reply is shorter than the two bytes every reading has.
    #[error("sensor reading reply has {len} data bytes, need at least 2")]
    Truncated {
        /// Data bytes after the completion code.
        len: usize,
    },
    /// An available reading without the state byte: nothing says whether a threshold is
    /// crossed or which states are asserted.
    #[error("sensor reading reply has no state byte")]
    NoStates,
}

/// Decodes the data of a Get Sensor Reading reply (after the completion code).
pub fn decode_reading(record: &SensorRecord, data: &[u8]) -> Result<SensorReading, ReadingError> {
    if data.len() < 2 {
        return Err(ReadingError::Truncated { len: data.len() });
    }
    let raw = data[0];
    let flags = data[1];
    // Bit 5: reading/state unavailable; bit 6 clear: scanning disabled.
    let unavailable = flags & 0x20 != 0 || flags & 0x40 == 0;
    // Byte 3 carries the threshold comparison or the discrete states: without it a
    // reading would pass for "nothing crossed, nothing asserted". Byte 4 (discrete
    // offsets 8-14) is optional.
    let byte3 = match data.get(2) {
        Some(b) => *b,
        None if unavailable => 0,
        None => return Err(ReadingError::NoStates),
    };
    let byte4 = data.get(3).copied().unwrap_or(0) & 0x7F;
    let (value, health) = if unavailable {
        (Value::Unavailable, Health::Unavailable)
    } else if record.is_threshold() {
        let state = ThresholdState::from_bits(byte3 & 0x3F);
        match record.conversion.and_then(|c| c.convert(raw)) {
            Some(value) => (
                Value::Analog {
                    value,
                    unit: record.unit,
                    raw,
                    state,
                },
                state.health(),
            ),
            None => (Value::Unavailable, Health::Unavailable),
        }
    } else {
        let states = u16::from(byte3) | (u16::from(byte4) << 8);
        (
            Value::Discrete { states },
            discrete_health(record.sensor_type, record.reading_type, states),
        )
    };
    Ok(SensorReading {
        key: record.key,
        name: record.name.clone(),
        sensor_type: record.sensor_type,
        reading_type: record.reading_type,
        value,
        health,
    })
}

/// The health of a discrete sensor's states.
///
/// Sensor-specific types known here: power supply (0x08) and power unit (0x09).
/// Generic reading types (IPMI 2.0 table 42-2): 0x03 (state asserted, on fans and
/// temperatures), 0x04 (predictive failure), 0x05 (limit exceeded), 0x07 (severity),
/// 0x08 (presence) and 0x0B (redundancy). Everything else is reported as ok: its states
/// carry no agreed meaning of good or bad.
pub fn discrete_health(sensor_type: SensorType, reading_type: u8, states: u16) -> Health {
    match (sensor_type, reading_type) {
        (SensorType::POWER_SUPPLY, 0x6F) => PsuState::from_bits(states).health(),
        (SensorType::POWER_UNIT, 0x6F) => power_unit_health(states),
        (SensorType::WATCHDOG, _) => Health::Ok,
        // Digital "state asserted" on a fan or temperature sensor means trouble.
        (SensorType::FAN | SensorType::TEMPERATURE, 0x03) if states & 0x02 != 0 => Health::Warning,
        (_, 0x04) if states & 0x02 != 0 => Health::Warning,
        (_, 0x05) if states & 0x02 != 0 => Health::Critical,
        (_, 0x07) => severity_health(states),
        (_, 0x08) if states & 0x01 != 0 => Health::Warning,
        (_, 0x0B) => redundancy_health(states),
        _ => Health::Ok,
    }
}

/// Generic "severity" states (reading type 0x07). Offsets: 0 transition to OK, 1 to
/// non-critical from OK, 2 to critical from less severe, 3 to non-recoverable from less
/// severe, 4 to non-critical from more severe, 5 to critical from non-recoverable, 6 to
/// non-recoverable, 7 monitor, 8 informational.
fn severity_health(states: u16) -> Health {
    // Offsets 2, 3, 5 and 6: critical or non-recoverable, however it was reached.
    if states & 0x006C != 0 {
        Health::Critical
    // Offsets 1 and 4: non-critical; 7: "monitor" asks for attention.
    } else if states & 0x0092 != 0 {
        Health::Warning
    } else {
        // Offset 0 (OK) and 8 (informational).
        Health::Ok
    }
}

/// Generic "redundancy" states (reading type 0x0B). Offsets: 0 fully redundant,
/// 1 redundancy lost, 2 redundancy degraded, 3 non-redundant with sufficient resources
/// (from redundant), 4 the same (from insufficient resources), 5 non-redundant with
/// insufficient resources, 6 redundancy degraded from fully redundant, 7 redundancy
/// degraded from non-redundant.
fn redundancy_health(states: u16) -> Health {
    // Lost redundancy, or too few resources to run at all.
    if states & 0x0022 != 0 {
        Health::Critical
    // Degraded (2, 6, 7) or running without redundancy on sufficient resources (3, 4):
    // still working, like a degraded array.
    } else if states & 0x00DC != 0 {
        Health::Warning
    } else {
        Health::Ok
    }
}

/// Power unit states (sensor type 0x09, sensor-specific). Offsets: 0 power off / power
/// down, 1 power cycle, 2 240VA power down, 3 interlock power down, 4 AC lost / power
/// input lost, 5 soft power control failure, 6 power unit failure, 7 predictive failure.
fn power_unit_health(states: u16) -> Health {
    // Off, shut down, unpowered, failed, or not obeying power control (fencing relies
    // on it).
    if states & 0x007D != 0 {
        Health::Critical
    // A power cycle happened, or a failure is predicted.
    } else if states & 0x0082 != 0 {
        Health::Warning
    } else {
        Health::Ok
    }
}

/// Converted thresholds of a sensor (Get Sensor Thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Thresholds {
    /// Lower non-critical.
    pub lnc: Option<f64>,
    /// Lower critical.
    pub lcr: Option<f64>,
    /// Lower non-recoverable.
    pub lnr: Option<f64>,
    /// Upper non-critical.
    pub unc: Option<f64>,
    /// Upper critical.
    pub ucr: Option<f64>,
    /// Upper non-recoverable.
    pub unr: Option<f64>,
}

/// Decodes the data of a Get Sensor Thresholds reply: a readable mask and six raw values
/// (LNC, LCR, LNR, UNC, UCR, UNR), converted with the record's factors.
pub fn decode_thresholds(record: &SensorRecord, data: &[u8]) -> Result<Thresholds, ReadingError> {
    if data.len() < 7 {
        return Err(ReadingError::Truncated { len: data.len() });
    }
    let mask = data[0];
    let conv = |i: usize| -> Option<f64> {
        if mask & (1 << i) == 0 {
            return None;
        }
        record.conversion.and_then(|c| c.convert(data[1 + i]))
    };
    Ok(Thresholds {
        lnc: conv(0),
        lcr: conv(1),
        lnr: conv(2),
        unc: conv(3),
        ucr: conv(4),
        unr: conv(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::sdr::{RecordBuilder, Sdr, decode_sdr};

    fn record(bytes: Vec<u8>) -> SensorRecord {
        match decode_sdr(&bytes).unwrap() {
            Sdr::Sensor(s) => s,
            Sdr::Other { .. } => panic!("not a sensor"),
        }
    }

    #[test]
    fn threshold_reading_states() {
        let r = record(
            RecordBuilder::full(2, SensorType::FAN, 18, "Fan 1")
                .factors(40, 0, 0, 0)
                .build(),
        );
        let ok = decode_reading(&r, &[150, 0xC0, 0x00]).unwrap();
        assert_eq!(ok.health, Health::Ok);
        assert!(matches!(ok.value, Value::Analog { value, .. } if value == 6000.0));
        // Below lower critical (LNC and LCR bits set): critical.
        let low = decode_reading(&r, &[10, 0xC0, 0x03]).unwrap();
        assert_eq!(low.health, Health::Critical);
        assert!(matches!(
            low.value,
            Value::Analog {
                state: ThresholdState::LowerCritical,
                ..
            }
        ));
        assert_eq!(
            decode_reading(&r, &[10, 0xC0, 0x08]).unwrap().health,
            Health::Warning
        );
        // Unavailable and scanning disabled are never "ok".
        assert_eq!(
            decode_reading(&r, &[0, 0xE0, 0]).unwrap().health,
            Health::Unavailable
        );
        assert_eq!(
            decode_reading(&r, &[0, 0x80, 0]).unwrap().health,
            Health::Unavailable
        );
        assert_eq!(
            decode_reading(&r, &[0]),
            Err(ReadingError::Truncated { len: 1 })
        );
    }

    #[test]
    fn power_supply_states() {
        let r = record(RecordBuilder::compact(0x50, SensorType::POWER_SUPPLY, 0x6F, "PS1").build());
        let h = |b3: u8| decode_reading(&r, &[0, 0xC0, b3]).unwrap().health;
        assert_eq!(h(0x01), Health::Ok);
        assert_eq!(h(0x03), Health::Critical);
        assert_eq!(h(0x09), Health::Critical);
        assert_eq!(h(0x00), Health::Warning);
        assert_eq!(h(0x05), Health::Warning);
        let s = PsuState::from_bits(0x0B);
        assert!(s.present && s.failed && s.ac_lost && !s.predictive_failure);
    }

    #[test]
    fn thresholds_convert() {
        let r = record(
            RecordBuilder::full(2, SensorType::VOLTAGE, 4, "12V")
                .factors(63, 0, 0, -3)
                .build(),
        );
        let t = decode_thresholds(&r, &[0x12, 170, 175, 0, 0, 205, 0]).unwrap();
        assert!((t.lcr.unwrap() - 11.025).abs() < 1e-9);
        assert!((t.ucr.unwrap() - 12.915).abs() < 1e-9);
        assert_eq!(t.lnc, None);
        assert!(decode_thresholds(&r, &[0x12, 1]).is_err());
    }

    #[test]
    fn generic_discrete_health() {
        assert_eq!(
            discrete_health(SensorType(0x07), 0x07, 0x04),
            Health::Critical
        );
        assert_eq!(
            discrete_health(SensorType(0x07), 0x07, 0x02),
            Health::Warning
        );
        assert_eq!(discrete_health(SensorType(0x07), 0x07, 0x01), Health::Ok);
        assert_eq!(
            discrete_health(SensorType::FAN, 0x03, 0x02),
            Health::Warning
        );
        assert_eq!(
            discrete_health(SensorType(0x25), 0x08, 0x01),
            Health::Warning
        );
        assert_eq!(discrete_health(SensorType(0x25), 0x08, 0x02), Health::Ok);
        assert_eq!(
            discrete_health(SensorType(0x0D), 0x04, 0x02),
            Health::Warning
        );
    }

    /// Health of each single asserted offset 0..=8 of a sensor.
    fn by_offset(sensor_type: SensorType, reading_type: u8) -> Vec<Health> {
        (0..=8)
            .map(|o| discrete_health(sensor_type, reading_type, 1 << o))
            .collect()
    }

    #[test]
    fn severity_states() {
        use Health::{Critical as C, Ok as O, Warning as W};
        // OK, NC from OK, CR from less, NR from less, NC from more, CR from NR, NR,
        // monitor, informational.
        assert_eq!(
            by_offset(SensorType(0x07), 0x07),
            [O, W, C, C, W, C, C, W, O]
        );
        // The worst asserted state wins.
        assert_eq!(discrete_health(SensorType(0x07), 0x07, 0x0102), W);
        assert_eq!(discrete_health(SensorType(0x07), 0x07, 0x0021), C);
        assert_eq!(discrete_health(SensorType(0x07), 0x07, 0), O);
    }

    #[test]
    fn redundancy_states() {
        use Health::{Critical as C, Ok as O, Warning as W};
        // Fully redundant, lost, degraded, non-redundant sufficient (from redundant),
        // non-redundant sufficient (from insufficient), non-redundant insufficient,
        // degraded from fully redundant, degraded from non-redundant; offset 8 is unused.
        assert_eq!(
            by_offset(SensorType(0x0B), 0x0B),
            [O, C, W, W, W, C, W, W, O]
        );
        assert_eq!(by_offset(SensorType::POWER_SUPPLY, 0x0B)[5], C);
    }

    #[test]
    fn power_unit_states() {
        use Health::{Critical as C, Ok as O, Warning as W};
        // Power off, power cycle, 240VA power down, interlock power down, AC lost, soft
        // power control failure, power unit failure, predictive failure; 8 is unused.
        assert_eq!(
            by_offset(SensorType::POWER_UNIT, 0x6F),
            [C, W, C, C, C, C, C, W, O]
        );
        assert_eq!(discrete_health(SensorType::POWER_UNIT, 0x6F, 0), O);
        // Through a reading reply too.
        let r = record(
            RecordBuilder::compact(0x60, SensorType::POWER_UNIT, 0x6F, "Power Unit").build(),
        );
        let reading = decode_reading(&r, &[0, 0xC0, 0x10, 0x80]).unwrap();
        assert_eq!(reading.health, Health::Critical);
        assert_eq!(reading.value, Value::Discrete { states: 0x10 });
    }

    #[test]
    fn missing_state_byte_is_that_sensors_error() {
        let fan = record(
            RecordBuilder::full(2, SensorType::FAN, 18, "Fan 1")
                .factors(40, 0, 0, 0)
                .build(),
        );
        let psu =
            record(RecordBuilder::compact(0x50, SensorType::POWER_SUPPLY, 0x6F, "PS1").build());
        for r in [&fan, &psu] {
            assert_eq!(decode_reading(r, &[150, 0xC0]), Err(ReadingError::NoStates));
            // An unavailable reading needs no states: it is already not "ok".
            assert_eq!(
                decode_reading(r, &[0, 0xE0]).unwrap().health,
                Health::Unavailable
            );
        }
        // Byte 4 stays optional.
        assert_eq!(
            decode_reading(&psu, &[0, 0xC0, 0x01]).unwrap().health,
            Health::Ok
        );
    }
}
