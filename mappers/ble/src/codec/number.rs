//! Numbers in characteristic values: integers of 1 to 8 bytes in either byte order, IEEE 754
//! floats, and the IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit) that health and
//! environment sensors use (a decimal mantissa and a base-10 exponent).

use std::fmt;

/// The order of the bytes of a multi-byte number. GATT values are little-endian unless a
/// profile says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ByteOrder {
    /// Least significant byte first (the Bluetooth convention).
    #[default]
    Little,
    /// Most significant byte first.
    Big,
}

impl ByteOrder {
    /// Parses `little`/`big` (also `LE`, `BE`, `littleEndian`, `bigEndian`), any case.
    pub fn parse(text: &str) -> Option<ByteOrder> {
        match text.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "little" | "le" | "littleendian" => Some(ByteOrder::Little),
            "big" | "be" | "bigendian" => Some(ByteOrder::Big),
            _ => None,
        }
    }
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ByteOrder::Little => "little",
            ByteOrder::Big => "big",
        })
    }
}

/// Why bytes are not a number of the expected kind, or a number does not fit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NumberError {
    /// An IEEE 11073 special value: the sensor has no valid reading.
    #[error("the device reports {0} instead of a value")]
    Special(&'static str),
    /// The number does not fit the encoding.
    #[error("{value} does not fit {encoding}")]
    OutOfRange {
        /// The number, as given.
        value: String,
        /// The encoding, e.g. `uint8`.
        encoding: &'static str,
    },
    /// Not a finite number.
    #[error("{0} is not a finite number")]
    NotFinite(f64),
}

/// The unsigned integer in `bytes` (1 to 8 of them).
pub fn read_unsigned(bytes: &[u8], order: ByteOrder) -> u64 {
    let fold = |acc: u64, b: &u8| (acc << 8) | u64::from(*b);
    match order {
        ByteOrder::Big => bytes.iter().fold(0, fold),
        ByteOrder::Little => bytes.iter().rev().fold(0, fold),
    }
}

/// The two's-complement signed integer in `bytes` (1 to 8 of them).
pub fn read_signed(bytes: &[u8], order: ByteOrder) -> i64 {
    let bits = 8 * bytes.len() as u32;
    let raw = read_unsigned(bytes, order);
    if bits >= 64 {
        return raw as i64;
    }
    // Sign-extend from `bits`.
    let shift = 64 - bits;
    ((raw << shift) as i64) >> shift
}

/// `value` as `width` bytes (1 to 8); the caller checked the range.
pub fn write_unsigned(value: u64, width: usize, order: ByteOrder) -> Vec<u8> {
    let little: Vec<u8> = (0..width).map(|i| (value >> (8 * i)) as u8).collect();
    match order {
        ByteOrder::Little => little,
        ByteOrder::Big => little.into_iter().rev().collect(),
    }
}

/// The range of an integer of `width` bytes.
pub fn unsigned_max(width: usize) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    }
}

/// The range of a signed integer of `width` bytes.
pub fn signed_range(width: usize) -> (i64, i64) {
    if width >= 8 {
        (i64::MIN, i64::MAX)
    } else {
        let half = 1i64 << (8 * width - 1);
        (-half, half - 1)
    }
}

/// IEEE 11073-20601 SFLOAT: a 4-bit exponent over a 12-bit mantissa, both signed.
pub const SFLOAT: Ieee11073 = Ieee11073 {
    name: "sfloat",
    mantissa_bits: 12,
    exponent_bits: 4,
};

/// IEEE 11073-20601 FLOAT: an 8-bit exponent over a 24-bit mantissa, both signed.
pub const MEDFLOAT32: Ieee11073 = Ieee11073 {
    name: "medfloat32",
    mantissa_bits: 24,
    exponent_bits: 8,
};

/// One of the two IEEE 11073 decimal floats: value = mantissa × 10^exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ieee11073 {
    name: &'static str,
    mantissa_bits: u32,
    exponent_bits: u32,
}

impl Ieee11073 {
    /// Its size in bytes.
    pub fn width(self) -> usize {
        ((self.mantissa_bits + self.exponent_bits) / 8) as usize
    }

    /// The mantissas the standard reserves: NaN, NRes, +INF, reserved, −INF (as raw,
    /// unsigned mantissa fields with exponent 0).
    fn special(self, mantissa_field: u64) -> Option<&'static str> {
        let max = (1u64 << (self.mantissa_bits - 1)) - 1; // 0x7FF for SFLOAT
        match mantissa_field {
            m if m == max => Some("NaN (not a number)"),
            m if m == max + 1 => Some("NRes (not at this resolution)"),
            m if m == max - 1 => Some("+INFINITY"),
            m if m == max + 2 => Some("a reserved value"),
            m if m == max + 3 => Some("-INFINITY"),
            _ => None,
        }
    }

    /// Decodes the value; the special values are errors.
    pub fn decode(self, bytes: &[u8], order: ByteOrder) -> Result<f64, NumberError> {
        let raw = read_unsigned(bytes, order);
        let mantissa_field = raw & ((1u64 << self.mantissa_bits) - 1);
        let exponent_field = raw >> self.mantissa_bits;
        if exponent_field == 0
            && let Some(name) = self.special(mantissa_field)
        {
            return Err(NumberError::Special(name));
        }
        let mantissa = sign_extend(mantissa_field, self.mantissa_bits);
        let exponent = sign_extend(exponent_field, self.exponent_bits);
        Ok(scale10(mantissa as f64, exponent as i32))
    }

    /// Encodes `value` with the most precise exponent whose mantissa fits; a value that needs
    /// more digits than the mantissa has is rounded.
    pub fn encode(self, value: f64, order: ByteOrder) -> Result<Vec<u8>, NumberError> {
        if !value.is_finite() {
            return Err(NumberError::NotFinite(value));
        }
        let mantissa_max = (1i64 << (self.mantissa_bits - 1)) - 4; // below the specials
        let mantissa_min = -mantissa_max;
        let exponent_max = (1i32 << (self.exponent_bits - 1)) - 1;
        let exponent_min = -(1i32 << (self.exponent_bits - 1));
        let fits = |m: f64| m >= mantissa_min as f64 && m <= mantissa_max as f64;
        // The smallest exponent (most precise) whose mantissa fits; exact if any is.
        let mut chosen = None;
        for exponent in exponent_min..=exponent_max {
            let mantissa = scale10(value, -exponent).round();
            if fits(mantissa) {
                chosen = Some((mantissa as i64, exponent));
                break;
            }
        }
        let Some((mantissa, exponent)) = chosen else {
            return Err(NumberError::OutOfRange {
                value: value.to_string(),
                encoding: self.name,
            });
        };
        let mantissa_field = (mantissa as u64) & ((1u64 << self.mantissa_bits) - 1);
        let exponent_field = (exponent as i64 as u64) & ((1u64 << self.exponent_bits) - 1);
        let raw = (exponent_field << self.mantissa_bits) | mantissa_field;
        Ok(write_unsigned(raw, self.width(), order))
    }
}

fn sign_extend(field: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((field << shift) as i64) >> shift
}

/// `value × 10^exponent`, dividing for negative exponents (21.5 stays 21.5, not 21.500000000000004).
fn scale10(value: f64, exponent: i32) -> f64 {
    if exponent >= 0 {
        value * 10f64.powi(exponent)
    } else {
        value / 10f64.powi(-exponent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_in_both_orders() {
        assert_eq!(read_unsigned(&[0x34, 0x12], ByteOrder::Little), 0x1234);
        assert_eq!(read_unsigned(&[0x12, 0x34], ByteOrder::Big), 0x1234);
        assert_eq!(read_signed(&[0xFE, 0xFF], ByteOrder::Little), -2);
        assert_eq!(
            read_signed(&[0xFF, 0xFF, 0x7F], ByteOrder::Big),
            0xFFFF7F - 0x1000000
        );
        assert_eq!(read_signed(&[0x80], ByteOrder::Little), -128);
        assert_eq!(read_signed(&[0xFF; 8], ByteOrder::Little), -1);
        assert_eq!(
            write_unsigned(0x123456, 3, ByteOrder::Little),
            [0x56, 0x34, 0x12]
        );
        assert_eq!(write_unsigned(0x1234, 2, ByteOrder::Big), [0x12, 0x34]);
        assert_eq!(
            write_unsigned((-2i64) as u64, 2, ByteOrder::Little),
            [0xFE, 0xFF]
        );
        assert_eq!(unsigned_max(1), 255);
        assert_eq!(unsigned_max(8), u64::MAX);
        assert_eq!(signed_range(2), (-32768, 32767));
        assert_eq!(signed_range(8), (i64::MIN, i64::MAX));
    }

    #[test]
    fn sfloat_decodes_what_health_sensors_send() {
        // 36.4 °C as a thermometer sends it: mantissa 364, exponent -1 → 0xF16C.
        assert_eq!(SFLOAT.decode(&[0x6C, 0xF1], ByteOrder::Little), Ok(36.4));
        // 120 mmHg: mantissa 120, exponent 0.
        assert_eq!(SFLOAT.decode(&[0x78, 0x00], ByteOrder::Little), Ok(120.0));
        // Negative mantissa: -5 × 10^-1.
        assert_eq!(SFLOAT.decode(&[0xFB, 0xFF], ByteOrder::Little), Ok(-0.5));
        // Positive exponent: 3 × 10^2.
        assert_eq!(SFLOAT.decode(&[0x03, 0x20], ByteOrder::Little), Ok(300.0));
        for (raw, name) in [
            (0x07FFu16, "NaN"),
            (0x0800, "NRes"),
            (0x07FE, "+INFINITY"),
            (0x0802, "-INFINITY"),
            (0x0801, "reserved"),
        ] {
            let err = SFLOAT
                .decode(&raw.to_le_bytes(), ByteOrder::Little)
                .expect_err("special");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn medfloat32_decodes() {
        // 21.5 as mantissa 215, exponent -1: 0xFF0000D7.
        assert_eq!(
            MEDFLOAT32.decode(&[0xD7, 0x00, 0x00, 0xFF], ByteOrder::Little),
            Ok(21.5)
        );
        assert_eq!(
            MEDFLOAT32.decode(&[0xFF, 0xFF, 0xFF, 0x00], ByteOrder::Little),
            Ok(-1.0)
        );
        assert!(
            MEDFLOAT32
                .decode(&[0xFF, 0xFF, 0x7F, 0x00], ByteOrder::Little)
                .is_err()
        );
    }

    #[test]
    fn ieee11073_round_trips_and_picks_the_precise_exponent() {
        for value in [0.0, 36.4, -0.5, 120.0, 300.0, 2047.0 - 4.0, 0.001, -12.25] {
            let bytes = SFLOAT.encode(value, ByteOrder::Little).expect("fits");
            let back = SFLOAT.decode(&bytes, ByteOrder::Little).expect("decodes");
            assert!(
                (back - value).abs() <= value.abs() * 1e-9,
                "{value} → {back}"
            );
        }
        assert_eq!(SFLOAT.encode(36.4, ByteOrder::Little), Ok(vec![0x6C, 0xF1]));
        // Too many digits: rounded to what the mantissa holds.
        let rounded = SFLOAT.encode(1.23456, ByteOrder::Little).expect("fits");
        assert_eq!(SFLOAT.decode(&rounded, ByteOrder::Little), Ok(1.235));
        // Beyond 2043 × 10^7.
        assert!(SFLOAT.encode(1e12, ByteOrder::Little).is_err());
        assert!(SFLOAT.encode(f64::NAN, ByteOrder::Little).is_err());
        for value in [21.5, -1.0, 1013.25, 123456.7] {
            let bytes = MEDFLOAT32.encode(value, ByteOrder::Big).expect("fits");
            assert_eq!(MEDFLOAT32.decode(&bytes, ByteOrder::Big), Ok(value));
        }
    }

    #[test]
    fn byte_order_names() {
        assert_eq!(ByteOrder::parse("LE"), Some(ByteOrder::Little));
        assert_eq!(ByteOrder::parse("big-endian"), Some(ByteOrder::Big));
        assert_eq!(ByteOrder::parse("bigEndian"), Some(ByteOrder::Big));
        assert_eq!(ByteOrder::parse("middle"), None);
    }
}
