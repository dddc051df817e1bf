//! Sensor data records (IPMI 2.0 section 43): pure decoding and reading conversion.
//!
//! [`decode_sdr`] takes one whole record (5-byte header + body) and never panics; records
//! other than full (type 0x01) and compact (type 0x02) sensor records decode to
//! [`Sdr::Other`]. Conversion follows section 36.3:
//! `y = L[(M * x + B * 10^Bexp) * 10^Rexp]`.

use std::fmt;

/// Length of the common SDR header (record id, version, type, body length).
pub const HEADER_LEN: usize = 5;

/// Errors decoding one sensor data record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdrError {
    /// Fewer bytes than the header or the record type requires.
    #[error("record truncated: {len} bytes, need at least {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes required.
        need: usize,
    },
    /// The body length in the header disagrees with the bytes present.
    #[error("record length field says {declared} body bytes but {actual} are present")]
    LengthMismatch {
        /// Body length from the header.
        declared: usize,
        /// Body bytes present.
        actual: usize,
    },
    /// A field holds a value the specification does not allow.
    #[error("invalid {field} value {value:#04x}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// The offending value.
        value: u8,
    },
}

/// Identifies a sensor on the IPMB: owner, LUN and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SensorKey {
    /// Sensor owner's slave address (0x20 for the BMC).
    pub owner: u8,
    /// Owner LUN.
    pub lun: u8,
    /// Sensor number.
    pub number: u8,
}

impl fmt::Display for SensorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}/{}/{:#04x}", self.owner, self.lun, self.number)
    }
}

/// Sensor type codes used by this crate (IPMI 2.0 table 42-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SensorType(pub u8);

impl SensorType {
    /// Temperature.
    pub const TEMPERATURE: Self = Self(0x01);
    /// Voltage.
    pub const VOLTAGE: Self = Self(0x02);
    /// Current.
    pub const CURRENT: Self = Self(0x03);
    /// Fan.
    pub const FAN: Self = Self(0x04);
    /// Power supply.
    pub const POWER_SUPPLY: Self = Self(0x08);
    /// Power unit.
    pub const POWER_UNIT: Self = Self(0x09);
    /// Watchdog 2.
    pub const WATCHDOG: Self = Self(0x23);
}

/// Units of a converted analog reading (base unit codes, IPMI 2.0 table 43-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Unit code 0.
    Unspecified,
    /// Code 1.
    Celsius,
    /// Code 4.
    Volts,
    /// Code 5.
    Amps,
    /// Code 6.
    Watts,
    /// Code 18.
    Rpm,
    /// Any other code, kept raw.
    Other(u8),
}

impl Unit {
    /// From the SDR base-unit code.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Unspecified,
            1 => Self::Celsius,
            4 => Self::Volts,
            5 => Self::Amps,
            6 => Self::Watts,
            18 => Self::Rpm,
            c => Self::Other(c),
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unspecified => f.write_str("unspecified"),
            Self::Celsius => f.write_str("degrees C"),
            Self::Volts => f.write_str("Volts"),
            Self::Amps => f.write_str("Amps"),
            Self::Watts => f.write_str("Watts"),
            Self::Rpm => f.write_str("RPM"),
            Self::Other(c) => write!(f, "unit {c}"),
        }
    }
}

/// How raw reading bytes are to be interpreted (SDR byte 21 bits 7:6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalogFormat {
    /// Unsigned byte.
    Unsigned,
    /// One's complement signed byte.
    OnesComplement,
    /// Two's complement signed byte.
    TwosComplement,
    /// The sensor has no analog reading.
    None,
}

/// Linearisation function `L` (SDR byte 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linearization {
    /// L(x) = x.
    Linear,
    /// Natural logarithm.
    Ln,
    /// Base-10 logarithm.
    Log10,
    /// Base-2 logarithm.
    Log2,
    /// e^x.
    Exp,
    /// 10^x.
    Exp10,
    /// 2^x.
    Exp2,
    /// 1/x.
    Inverse,
    /// x².
    Square,
    /// x³.
    Cube,
    /// √x.
    Sqrt,
    /// ∛x.
    CubeRoot,
    /// Non-linear (0x70–0x7F): factors come from Get Sensor Reading Factors; this crate
    /// applies the record's factors as if linear, as ipmitool does.
    NonLinear(u8),
}

impl Linearization {
    fn from_code(code: u8) -> Result<Self, SdrError> {
        Ok(match code & 0x7F {
            0 => Self::Linear,
            1 => Self::Ln,
            2 => Self::Log10,
            3 => Self::Log2,
            4 => Self::Exp,
            5 => Self::Exp10,
            6 => Self::Exp2,
            7 => Self::Inverse,
            8 => Self::Square,
            9 => Self::Cube,
            10 => Self::Sqrt,
            11 => Self::CubeRoot,
            c @ 0x70..=0x7F => Self::NonLinear(c),
            _ => {
                return Err(SdrError::InvalidField {
                    field: "linearization",
                    value: code,
                });
            }
        })
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Self::Linear | Self::NonLinear(_) => x,
            Self::Ln => x.ln(),
            Self::Log10 => x.log10(),
            Self::Log2 => x.log2(),
            Self::Exp => x.exp(),
            Self::Exp10 => 10f64.powf(x),
            Self::Exp2 => x.exp2(),
            Self::Inverse => 1.0 / x,
            Self::Square => x * x,
            Self::Cube => x * x * x,
            Self::Sqrt => x.sqrt(),
            Self::CubeRoot => x.cbrt(),
        }
    }
}

/// Conversion factors of a full sensor record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    /// Raw byte interpretation.
    pub format: AnalogFormat,
    /// Linearisation.
    pub linearization: Linearization,
    /// Multiplier M (10-bit signed).
    pub m: i16,
    /// Offset B (10-bit signed).
    pub b: i16,
    /// B exponent (4-bit signed).
    pub b_exp: i8,
    /// Result exponent (4-bit signed).
    pub r_exp: i8,
}

impl Conversion {
    /// Converts a raw reading byte to a value in the record's unit, or `None` when the
    /// sensor has no analog format or the result is not a finite number.
    pub fn convert(&self, raw: u8) -> Option<f64> {
        let x: f64 = match self.format {
            AnalogFormat::Unsigned => f64::from(raw),
            AnalogFormat::TwosComplement => f64::from(raw.cast_signed()),
            // One's complement: 0xFF is -0 and 0x80 is -127.
            AnalogFormat::OnesComplement => {
                if raw & 0x80 == 0 {
                    f64::from(raw)
                } else {
                    -f64::from(!raw & 0x7F)
                }
            }
            AnalogFormat::None => return None,
        };
        let y = (f64::from(self.m) * x + f64::from(self.b) * 10f64.powi(i32::from(self.b_exp)))
            * 10f64.powi(i32::from(self.r_exp));
        let v = self.linearization.apply(y);
        v.is_finite().then_some(v)
    }
}

/// Which thresholds a sensor supports reading (bit 0 LNC … bit 5 UNR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThresholdMask(pub u8);

/// A full (type 0x01) or compact (type 0x02) sensor record, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorRecord {
    /// Record id in the repository.
    pub record_id: u16,
    /// Owner, LUN and number.
    pub key: SensorKey,
    /// Entity id and instance.
    pub entity: (u8, u8),
    /// Sensor type.
    pub sensor_type: SensorType,
    /// Event/reading type code (0x01 threshold, 0x02–0x0C generic, 0x6F sensor-specific).
    pub reading_type: u8,
    /// Unit of converted readings.
    pub unit: Unit,
    /// Conversion factors; `None` for compact records and sensors without analog readings.
    pub conversion: Option<Conversion>,
    /// Thresholds the sensor says are readable.
    pub readable_thresholds: ThresholdMask,
    /// Threshold access support from the capabilities byte (0 none, 1 readable,
    /// 2 readable/settable, 3 fixed).
    pub threshold_access: u8,
    /// Thresholds as stored in the record (full records only; UNR, UCR, UNC, LNR, LCR,
    /// LNC raw bytes).
    pub sdr_thresholds: Option<[u8; 6]>,
    /// Sensor id string (ASCII or Latin-1; other encodings are shown as hex).
    pub name: String,
}

impl SensorRecord {
    /// True for threshold-based sensors (event/reading type 0x01).
    pub fn is_threshold(&self) -> bool {
        self.reading_type == 0x01
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Sdr {
    /// A full or compact sensor record.
    Sensor(SensorRecord),
    /// Any other record type (kept for completeness; not interpreted).
    Other {
        /// Record id.
        record_id: u16,
        /// Record type.
        record_type: u8,
    },
}

/// Decodes one whole record (header + body).
///
/// The header's body length must match the bytes given exactly: a BMC that pads or
/// truncates records is reported, not guessed around.
pub fn decode_sdr(bytes: &[u8]) -> Result<Sdr, SdrError> {
    if bytes.len() < HEADER_LEN {
        return Err(SdrError::Truncated {
            len: bytes.len(),
            need: HEADER_LEN,
        });
    }
    let record_id = u16::from_le_bytes([bytes[0], bytes[1]]);
    let record_type = bytes[3];
    let declared = usize::from(bytes[4]);
    let actual = bytes.len() - HEADER_LEN;
    if declared != actual {
        return Err(SdrError::LengthMismatch { declared, actual });
    }
    match record_type {
        0x01 => decode_sensor(bytes, record_id, true).map(Sdr::Sensor),
        0x02 => decode_sensor(bytes, record_id, false).map(Sdr::Sensor),
        _ => Ok(Sdr::Other {
            record_id,
            record_type,
        }),
    }
}

/// Best-effort look at a sensor record that could not be read or decoded in full: its
/// key, if the bytes reach it, and its name, if the id string is complete. Other record
/// types give nothing.
pub fn peek_sensor(bytes: &[u8]) -> (Option<SensorKey>, Option<String>) {
    let id_at = match bytes.get(3) {
        Some(0x01) => 47,
        Some(0x02) => 31,
        _ => return (None, None),
    };
    let key = match bytes.get(5..8) {
        Some(k) => SensorKey {
            owner: k[0],
            lun: k[1] & 0x03,
            number: k[2],
        },
        None => return (None, None),
    };
    let name = bytes
        .get(id_at)
        .and_then(|t| decode_id_string(*t, &bytes[id_at + 1..]).ok())
        .filter(|n| !n.is_empty());
    (Some(key), name)
}

fn decode_sensor(b: &[u8], record_id: u16, full: bool) -> Result<SensorRecord, SdrError> {
    // Offset of the id string type/length byte.
    let id_at = if full { 47 } else { 31 };
    if b.len() <= id_at {
        return Err(SdrError::Truncated {
            len: b.len(),
            need: id_at + 1,
        });
    }
    let key = SensorKey {
        owner: b[5],
        lun: b[6] & 0x03,
        number: b[7],
    };
    let reading_type = b[13];
    let units1 = b[20];
    let unit = Unit::from_code(b[21]);
    let threshold_access = (b[11] >> 2) & 0x03;
    let readable_thresholds = if reading_type == 0x01 {
        ThresholdMask(b[18] & 0x3F)
    } else {
        ThresholdMask(0)
    };
    let (conversion, sdr_thresholds) = if full {
        let format = match units1 >> 6 {
            0 => AnalogFormat::Unsigned,
            1 => AnalogFormat::OnesComplement,
            2 => AnalogFormat::TwosComplement,
            _ => AnalogFormat::None,
        };
        let linearization = Linearization::from_code(b[23])?;
        let m = sign_extend_10(u16::from(b[24]) | (u16::from(b[25] >> 6) << 8));
        let bb = sign_extend_10(u16::from(b[26]) | (u16::from(b[27] >> 6) << 8));
        let r_exp = sign_extend_4(b[29] >> 4);
        let b_exp = sign_extend_4(b[29] & 0x0F);
        let conv = (format != AnalogFormat::None).then_some(Conversion {
            format,
            linearization,
            m,
            b: bb,
            b_exp,
            r_exp,
        });
        (conv, Some([b[36], b[37], b[38], b[39], b[40], b[41]]))
    } else {
        (None, None)
    };
    let name = decode_id_string(b[id_at], &b[id_at + 1..])?;
    Ok(SensorRecord {
        record_id,
        key,
        entity: (b[8], b[9]),
        sensor_type: SensorType(b[12]),
        reading_type,
        unit,
        conversion,
        readable_thresholds,
        threshold_access,
        sdr_thresholds,
        name,
    })
}

fn decode_id_string(type_len: u8, rest: &[u8]) -> Result<String, SdrError> {
    let len = usize::from(type_len & 0x1F);
    if rest.len() < len {
        return Err(SdrError::Truncated {
            len: rest.len(),
            need: len,
        });
    }
    let s = &rest[..len];
    Ok(match type_len >> 6 {
        // 8-bit ASCII + Latin-1: stop at a NUL pad, as ipmitool does.
        3 => s
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| char::from(*c))
            .collect(),
        // Unicode, BCD plus and 6-bit packed are rare in sensor names; keep them readable.
        _ => s.iter().map(|c| format!("{c:02x}")).collect(),
    })
}

fn sign_extend_10(v: u16) -> i16 {
    let v = v & 0x03FF;
    if v & 0x0200 != 0 {
        (v | 0xFC00).cast_signed()
    } else {
        v.cast_signed()
    }
}

fn sign_extend_4(v: u8) -> i8 {
    let v = v & 0x0F;
    if v & 0x08 != 0 {
        (v | 0xF0).cast_signed()
    } else {
        v.cast_signed()
    }
}

/// Builds full and compact sensor records byte by byte (for tests, simulators and rigs).
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    bytes: Vec<u8>,
    full: bool,
}

impl RecordBuilder {
    /// A full threshold sensor record owned by the BMC (0x20), linear, unsigned, M=1 B=0,
    /// all six thresholds readable and settable.
    pub fn full(number: u8, sensor_type: SensorType, unit_code: u8, name: &str) -> Self {
        let mut b = vec![
            0,
            0,
            0x51,
            0x01,
            0, // header
            0x20,
            0,
            number, // key
            0x07,
            1, // entity: system board
            0x7F,
            0x68, // init, capabilities: auto re-arm, thresholds readable/settable
            sensor_type.0,
            0x01, // threshold based
            0x95,
            0x0A,
            0x95,
            0x0A,
            0x3F,
            0x3F, // masks
            0x00,
            unit_code,
            0x00, // units
            0x00, // linear
            1,
            0,
            0,
            0,
            0,
            0x00, // M=1, B=0, exps 0
            0x01,
            0,
            0,
            0,
            0xFF,
            0, // flags, nominal, normal max/min, sensor max/min
            0,
            0,
            0,
            0,
            0,
            0, // thresholds UNR..LNC
            0,
            0, // hysteresis
            0,
            0,
            0, // reserved, OEM
        ];
        push_name(&mut b, name);
        Self {
            bytes: b,
            full: true,
        }
    }

    /// A compact discrete sensor record owned by the BMC.
    pub fn compact(number: u8, sensor_type: SensorType, reading_type: u8, name: &str) -> Self {
        let mut b = vec![
            0,
            0,
            0x51,
            0x02,
            0,
            0x20,
            0,
            number,
            0x0A,
            1,
            0x7F,
            0x40,
            sensor_type.0,
            reading_type,
            0xFF,
            0x7F,
            0xFF,
            0x7F,
            0xFF,
            0x7F,
            0xC0,
            0,
            0,
            0,
            0x01,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        push_name(&mut b, name);
        Self {
            bytes: b,
            full: false,
        }
    }

    /// Sets M, B, B exponent, R exponent (full records).
    #[must_use]
    pub fn factors(mut self, m: i16, b: i16, b_exp: i8, r_exp: i8) -> Self {
        if self.full {
            let m = m.cast_unsigned() & 0x03FF;
            let bb = b.cast_unsigned() & 0x03FF;
            self.bytes[24] = m.to_le_bytes()[0];
            self.bytes[25] = (self.bytes[25] & 0x3F) | ((m >> 8).to_le_bytes()[0] << 6);
            self.bytes[26] = bb.to_le_bytes()[0];
            self.bytes[27] = (self.bytes[27] & 0x3F) | ((bb >> 8).to_le_bytes()[0] << 6);
            self.bytes[29] = ((r_exp.cast_unsigned() & 0x0F) << 4) | (b_exp.cast_unsigned() & 0x0F);
        }
        self
    }

    /// Sets the analog data format bits (0 unsigned, 1 one's, 2 two's complement, 3 none).
    #[must_use]
    pub fn format(mut self, code: u8) -> Self {
        self.bytes[20] = (self.bytes[20] & 0x3F) | ((code & 0x03) << 6);
        self
    }

    /// Sets the linearisation code (full records).
    #[must_use]
    pub fn linearization(mut self, code: u8) -> Self {
        if self.full {
            self.bytes[23] = code;
        }
        self
    }

    /// Sets raw thresholds UNR, UCR, UNC, LNR, LCR, LNC (full records) and which are
    /// readable (bit 0 LNC … bit 5 UNR).
    #[must_use]
    pub fn thresholds(mut self, raw: [u8; 6], readable: u8) -> Self {
        if self.full {
            self.bytes[36..42].copy_from_slice(&raw);
            self.bytes[18] = readable & 0x3F;
            self.bytes[19] = readable & 0x3F;
        }
        self
    }

    /// Sets the owner's slave address (default 0x20, the BMC).
    #[must_use]
    pub fn owner(mut self, addr: u8) -> Self {
        self.bytes[5] = addr;
        self
    }

    /// Sets the entity id and instance.
    #[must_use]
    pub fn entity(mut self, id: u8, instance: u8) -> Self {
        self.bytes[8] = id;
        self.bytes[9] = instance;
        self
    }

    /// The record bytes with the body length filled in.
    pub fn build(mut self) -> Vec<u8> {
        self.bytes[4] = u8::try_from(self.bytes.len() - HEADER_LEN).unwrap_or(u8::MAX);
        self.bytes
    }
}

fn push_name(b: &mut Vec<u8>, name: &str) {
    let name: Vec<u8> = name.bytes().filter(u8::is_ascii).take(16).collect();
    b.push(0xC0 | u8::try_from(name.len()).unwrap_or(16));
    b.extend_from_slice(&name);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sensor(bytes: &[u8]) -> SensorRecord {
        match decode_sdr(bytes).unwrap() {
            Sdr::Sensor(s) => s,
            other => panic!("not a sensor: {other:?}"),
        }
    }

    #[test]
    fn decodes_full_record_fields() {
        let bytes = RecordBuilder::full(0x30, SensorType::TEMPERATURE, 1, "CPU Temp")
            .thresholds([95, 85, 75, 0, 5, 10], 0x3F)
            .entity(0x03, 1)
            .build();
        let s = sensor(&bytes);
        assert_eq!(
            s.key,
            SensorKey {
                owner: 0x20,
                lun: 0,
                number: 0x30
            }
        );
        assert_eq!(s.name, "CPU Temp");
        assert_eq!(s.unit, Unit::Celsius);
        assert_eq!(s.entity, (3, 1));
        assert!(s.is_threshold());
        assert_eq!(s.sdr_thresholds, Some([95, 85, 75, 0, 5, 10]));
        assert_eq!(s.conversion.unwrap().convert(45), Some(45.0));
    }

    #[test]
    fn converts_voltage_with_exponents() {
        // 12 V rail: M = 63, B = 0, Rexp = -3 -> raw 190 = 11.970 V.
        let c = sensor(
            &RecordBuilder::full(1, SensorType::VOLTAGE, 4, "12V")
                .factors(63, 0, 0, -3)
                .build(),
        )
        .conversion
        .unwrap();
        assert!((c.convert(190).unwrap() - 11.97).abs() < 1e-9);
        // B with exponent: M = 2, B = 5, Bexp = 1, Rexp = -1 -> (2*10 + 50)/10 = 7.
        let c = sensor(
            &RecordBuilder::full(1, SensorType::VOLTAGE, 4, "x")
                .factors(2, 5, 1, -1)
                .build(),
        )
        .conversion
        .unwrap();
        assert!((c.convert(10).unwrap() - 7.0).abs() < 1e-9);
    }

    #[test]
    fn negative_factors_sign_extend() {
        // M = -2 (10-bit 0x3FE), B = -300.
        let c = sensor(
            &RecordBuilder::full(1, SensorType::TEMPERATURE, 1, "x")
                .factors(-2, -300, 0, 0)
                .build(),
        )
        .conversion
        .unwrap();
        assert_eq!((c.m, c.b), (-2, -300));
        assert_eq!(c.convert(10), Some(-320.0));
    }

    #[test]
    fn signed_formats() {
        let twos = sensor(
            &RecordBuilder::full(1, SensorType::TEMPERATURE, 1, "x")
                .format(2)
                .build(),
        )
        .conversion
        .unwrap();
        assert_eq!(twos.convert(0xF6), Some(-10.0));
        assert_eq!(twos.convert(0x7F), Some(127.0));
        let ones = sensor(
            &RecordBuilder::full(1, SensorType::TEMPERATURE, 1, "x")
                .format(1)
                .build(),
        )
        .conversion
        .unwrap();
        assert_eq!(ones.convert(0xF5), Some(-10.0));
        assert_eq!(ones.convert(0xFF), Some(0.0));
        let none = sensor(
            &RecordBuilder::full(1, SensorType::TEMPERATURE, 1, "x")
                .format(3)
                .build(),
        );
        assert!(none.conversion.is_none());
    }

    #[test]
    fn linearizations() {
        let conv = |code: u8, raw: u8| {
            sensor(
                &RecordBuilder::full(1, SensorType::FAN, 18, "x")
                    .linearization(code)
                    .build(),
            )
            .conversion
            .unwrap()
            .convert(raw)
        };
        assert_eq!(conv(7, 4), Some(0.25));
        assert_eq!(conv(8, 12), Some(144.0));
        assert_eq!(conv(10, 81), Some(9.0));
        assert_eq!(conv(6, 10), Some(1024.0));
        assert!((conv(2, 100).unwrap() - 2.0).abs() < 1e-12);
        // 1/0 is not a reading.
        assert_eq!(conv(7, 0), None);
        // Reserved codes are rejected, not guessed.
        let bad = RecordBuilder::full(1, SensorType::FAN, 18, "x")
            .linearization(0x20)
            .build();
        assert_eq!(
            decode_sdr(&bad),
            Err(SdrError::InvalidField {
                field: "linearization",
                value: 0x20
            })
        );
    }

    #[test]
    fn compact_record() {
        let s = sensor(
            &RecordBuilder::compact(0x50, SensorType::POWER_SUPPLY, 0x6F, "PS1 Status").build(),
        );
        assert_eq!(s.name, "PS1 Status");
        assert_eq!(s.sensor_type, SensorType::POWER_SUPPLY);
        assert_eq!(s.reading_type, 0x6F);
        assert!(s.conversion.is_none());
    }

    #[test]
    fn truncated_and_padded_records_are_errors() {
        let bytes = RecordBuilder::full(1, SensorType::FAN, 18, "Fan 1").build();
        assert!(matches!(
            decode_sdr(&bytes[..bytes.len() - 1]),
            Err(SdrError::LengthMismatch { .. })
        ));
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(
            decode_sdr(&padded),
            Err(SdrError::LengthMismatch { .. })
        ));
        // Header claims a short body: the id string cannot be reached.
        let mut short = bytes[..30].to_vec();
        short[4] = 25;
        assert!(matches!(
            decode_sdr(&short),
            Err(SdrError::Truncated { .. })
        ));
        assert!(matches!(
            decode_sdr(&[1, 2]),
            Err(SdrError::Truncated { .. })
        ));
    }

    #[test]
    fn other_record_types_pass_through() {
        let rec = [0x05, 0x00, 0x51, 0x12, 0x02, 0xAA, 0xBB];
        assert_eq!(
            decode_sdr(&rec),
            Ok(Sdr::Other {
                record_id: 5,
                record_type: 0x12
            })
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_sdr(&bytes);
        }

        #[test]
        fn decode_never_panics_on_plausible_headers(
            ty in 1u8..=2, body in proptest::collection::vec(any::<u8>(), 0..70), raw in any::<u8>()
        ) {
            let mut bytes = vec![0, 0, 0x51, ty, u8::try_from(body.len()).unwrap()];
            bytes.extend_from_slice(&body);
            if let Ok(Sdr::Sensor(s)) = decode_sdr(&bytes)
                && let Some(c) = s.conversion {
                    let _ = c.convert(raw);
            }
        }
    }
}
