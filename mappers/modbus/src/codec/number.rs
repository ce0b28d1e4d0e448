//! Raw device values ⇄ registers and bits, for every data type.
//!
//! A [`Raw`] is what the device holds, before scale and offset: a bit, an integer (kept as
//! `i128` so that every `int64` and `uint64` is exact), a float, text or bytes.

use std::fmt;

use super::CodecError;
use super::order::ByteOrder;

/// How a property's registers (or bits) encode its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Coils or discrete inputs: one bit (a boolean), or several read as an unsigned bit mask
    /// whose bit `i` is the item at `offset + i`.
    Bits,
    /// Bit `n` (0 = least significant) of one register.
    Bit(u8),
    /// Signed 16-bit integer, one register.
    Int16,
    /// Unsigned 16-bit integer, one register.
    Uint16,
    /// Signed 32-bit integer, two registers.
    Int32,
    /// Unsigned 32-bit integer, two registers.
    Uint32,
    /// Signed 64-bit integer, four registers.
    Int64,
    /// Unsigned 64-bit integer, four registers.
    Uint64,
    /// IEEE 754 single precision, two registers.
    Float32,
    /// IEEE 754 double precision, four registers.
    Float64,
    /// UTF-8 text, two bytes per register, padded with NUL bytes.
    String,
    /// Raw bytes, two per register.
    Bytes,
}

impl DataType {
    /// The registers a value of this type always takes, when fixed by the type.
    pub fn fixed_registers(self) -> Option<u16> {
        match self {
            DataType::Bit(_) | DataType::Int16 | DataType::Uint16 => Some(1),
            DataType::Int32 | DataType::Uint32 | DataType::Float32 => Some(2),
            DataType::Int64 | DataType::Uint64 | DataType::Float64 => Some(4),
            DataType::Bits | DataType::String | DataType::Bytes => None,
        }
    }

    /// The signed type of the same width (two's complement); other types are unchanged.
    pub fn signed(self) -> DataType {
        match self {
            DataType::Uint16 => DataType::Int16,
            DataType::Uint32 => DataType::Int32,
            DataType::Uint64 => DataType::Int64,
            other => other,
        }
    }

    /// Whether values of this type are numbers (scale and offset apply).
    pub fn is_numeric(self) -> bool {
        !matches!(self, DataType::String | DataType::Bytes)
    }

    /// The inclusive integer range of this type, for integer types.
    fn int_range(self) -> Option<(i128, i128)> {
        match self {
            DataType::Bit(_) => Some((0, 1)),
            DataType::Int16 => Some((i16::MIN.into(), i16::MAX.into())),
            DataType::Uint16 => Some((0, u16::MAX.into())),
            DataType::Int32 => Some((i32::MIN.into(), i32::MAX.into())),
            DataType::Uint32 => Some((0, u32::MAX.into())),
            DataType::Int64 => Some((i64::MIN.into(), i64::MAX.into())),
            DataType::Uint64 => Some((0, u64::MAX.into())),
            _ => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bits => f.write_str("bits"),
            DataType::Bit(n) => write!(f, "bit {n}"),
            DataType::Int16 => f.write_str("int16"),
            DataType::Uint16 => f.write_str("uint16"),
            DataType::Int32 => f.write_str("int32"),
            DataType::Uint32 => f.write_str("uint32"),
            DataType::Int64 => f.write_str("int64"),
            DataType::Uint64 => f.write_str("uint64"),
            DataType::Float32 => f.write_str("float32"),
            DataType::Float64 => f.write_str("float64"),
            DataType::String => f.write_str("string"),
            DataType::Bytes => f.write_str("bytes"),
        }
    }
}

/// A value as the device holds it, before scale and offset.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    /// One bit.
    Bool(bool),
    /// Any integer up to 64 bits, signed or not.
    Int(i128),
    /// A float (a `float32` is widened to the `f64` with the same shortest decimal form).
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Bool(b) => write!(f, "{b}"),
            Raw::Int(i) => write!(f, "{i}"),
            Raw::Float(x) => write!(f, "{x}"),
            Raw::Text(s) => write!(f, "{s:?}"),
            Raw::Bytes(b) => write!(f, "{} bytes", b.len()),
        }
    }
}

/// Decodes the registers of one value. `words` must hold exactly the value's registers.
pub fn decode_registers(
    words: &[u16],
    data_type: DataType,
    order: ByteOrder,
) -> Result<Raw, CodecError> {
    if let Some(fixed) = data_type.fixed_registers()
        && words.len() != usize::from(fixed)
    {
        return Err(CodecError::Length {
            expected: usize::from(fixed),
            got: words.len(),
        });
    }
    let bytes = order.bytes_from_words(words);
    let raw = match data_type {
        DataType::Bits => {
            return Err(CodecError::Mismatch(
                "bits are read from coils or discrete inputs, not registers".into(),
            ));
        }
        DataType::Bit(n) => {
            let word = u16::from_be_bytes([bytes[0], bytes[1]]);
            Raw::Bool(word >> n & 1 == 1)
        }
        DataType::Int16 => Raw::Int(i16::from_be_bytes(array(&bytes)).into()),
        DataType::Uint16 => Raw::Int(u16::from_be_bytes(array(&bytes)).into()),
        DataType::Int32 => Raw::Int(i32::from_be_bytes(array(&bytes)).into()),
        DataType::Uint32 => Raw::Int(u32::from_be_bytes(array(&bytes)).into()),
        DataType::Int64 => Raw::Int(i64::from_be_bytes(array(&bytes)).into()),
        DataType::Uint64 => Raw::Int(u64::from_be_bytes(array(&bytes)).into()),
        DataType::Float32 => Raw::Float(widen(f32::from_be_bytes(array(&bytes)))),
        DataType::Float64 => Raw::Float(f64::from_be_bytes(array(&bytes))),
        DataType::String => {
            let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            let text = String::from_utf8(bytes[..end].to_vec())
                .map_err(|e| CodecError::NotUtf8(e.utf8_error().to_string()))?;
            Raw::Text(text)
        }
        DataType::Bytes => Raw::Bytes(bytes),
    };
    Ok(raw)
}

/// Encodes a value into `registers` registers (the value's own count for fixed-size types).
///
/// A [`DataType::Bit`] needs the register's other bits: use [`encode_bit`] instead.
pub fn encode_registers(
    raw: &Raw,
    data_type: DataType,
    order: ByteOrder,
    registers: u16,
) -> Result<Vec<u16>, CodecError> {
    let capacity = usize::from(registers) * 2;
    let bytes: Vec<u8> = match data_type {
        DataType::Bits | DataType::Bit(_) => {
            return Err(CodecError::Mismatch(format!(
                "{data_type} is written bit by bit, not as whole registers"
            )));
        }
        DataType::Int16 => (int_in_range(raw, data_type)? as i16)
            .to_be_bytes()
            .to_vec(),
        DataType::Uint16 => (int_in_range(raw, data_type)? as u16)
            .to_be_bytes()
            .to_vec(),
        DataType::Int32 => (int_in_range(raw, data_type)? as i32)
            .to_be_bytes()
            .to_vec(),
        DataType::Uint32 => (int_in_range(raw, data_type)? as u32)
            .to_be_bytes()
            .to_vec(),
        DataType::Int64 => (int_in_range(raw, data_type)? as i64)
            .to_be_bytes()
            .to_vec(),
        DataType::Uint64 => (int_in_range(raw, data_type)? as u64)
            .to_be_bytes()
            .to_vec(),
        DataType::Float32 => narrow(float_of(raw, data_type)?)?.to_be_bytes().to_vec(),
        DataType::Float64 => float_of(raw, data_type)?.to_be_bytes().to_vec(),
        DataType::String | DataType::Bytes => {
            let bytes = match raw {
                Raw::Text(text) => text.as_bytes().to_vec(),
                Raw::Bytes(bytes) => bytes.clone(),
                other => other.to_string().into_bytes(),
            };
            if bytes.len() > capacity {
                return Err(CodecError::TooLong {
                    len: bytes.len(),
                    registers,
                });
            }
            let mut padded = bytes;
            padded.resize(capacity, 0);
            padded
        }
    };
    if bytes.len() != capacity {
        return Err(CodecError::Length {
            expected: usize::from(registers),
            got: bytes.len() / 2,
        });
    }
    Ok(order.words_from_bytes(&bytes))
}

/// Sets or clears bit `n` of `current` (a register as read, in device byte order).
pub fn encode_bit(current: u16, n: u8, raw: &Raw, order: ByteOrder) -> Result<u16, CodecError> {
    let on = int_in_range(raw, DataType::Bit(n))? == 1;
    let value = if order.swaps_bytes() {
        current.swap_bytes()
    } else {
        current
    };
    let mask = 1u16 << n;
    let updated = if on { value | mask } else { value & !mask };
    Ok(if order.swaps_bytes() {
        updated.swap_bytes()
    } else {
        updated
    })
}

/// Decodes coils or discrete inputs: one item is a boolean, several are an unsigned bit mask
/// (item `i` is bit `i`).
pub fn decode_bits(bits: &[bool]) -> Result<Raw, CodecError> {
    match bits {
        [] => Err(CodecError::Length {
            expected: 1,
            got: 0,
        }),
        [one] => Ok(Raw::Bool(*one)),
        many if many.len() > 64 => Err(CodecError::Length {
            expected: 64,
            got: many.len(),
        }),
        many => Ok(Raw::Int(
            many.iter()
                .enumerate()
                .filter(|(_, on)| **on)
                .fold(0i128, |mask, (i, _)| mask | 1 << i),
        )),
    }
}

/// Encodes a value into `count` coils (a boolean or 0/1 for one, a bit mask for several).
pub fn encode_bits(raw: &Raw, count: u16) -> Result<Vec<bool>, CodecError> {
    if count == 0 || count > 64 {
        return Err(CodecError::Length {
            expected: 64,
            got: usize::from(count),
        });
    }
    let max = (1i128 << count) - 1;
    let mask = match raw {
        Raw::Bool(b) => i128::from(*b),
        other => integer_of(other)?,
    };
    if !(0..=max).contains(&mask) {
        return Err(CodecError::OutOfRange {
            value: mask.to_string(),
            target: if count == 1 {
                "one coil (0 or 1)".to_owned()
            } else {
                format!("a mask of {count} coils (0..={max})")
            },
        });
    }
    Ok((0..count).map(|i| mask >> i & 1 == 1).collect())
}

/// The integer a raw value stands for; floats are rounded to the nearest integer.
fn integer_of(raw: &Raw) -> Result<i128, CodecError> {
    match raw {
        Raw::Bool(b) => Ok(i128::from(*b)),
        Raw::Int(i) => Ok(*i),
        Raw::Float(x) if x.is_finite() => {
            let rounded = x.round();
            // Beyond ±2^127 no target type can hold it anyway.
            if rounded.abs() < 1.7e38 {
                Ok(rounded as i128)
            } else {
                Err(CodecError::OutOfRange {
                    value: x.to_string(),
                    target: "any integer type".into(),
                })
            }
        }
        Raw::Float(x) => Err(CodecError::NotFinite(x.to_string())),
        Raw::Text(text) => Err(CodecError::NotANumber(text.clone())),
        Raw::Bytes(_) => Err(CodecError::Mismatch("bytes are not a number".into())),
    }
}

fn int_in_range(raw: &Raw, data_type: DataType) -> Result<i128, CodecError> {
    let value = integer_of(raw)?;
    let (min, max) = data_type.int_range().unwrap_or((i128::MIN, i128::MAX));
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(CodecError::OutOfRange {
            value: value.to_string(),
            target: format!("{data_type} ({min}..={max})"),
        })
    }
}

fn float_of(raw: &Raw, data_type: DataType) -> Result<f64, CodecError> {
    let value = match raw {
        Raw::Bool(b) => f64::from(u8::from(*b)),
        Raw::Int(i) => *i as f64,
        Raw::Float(x) => *x,
        Raw::Text(text) => return Err(CodecError::NotANumber(text.clone())),
        Raw::Bytes(_) => {
            return Err(CodecError::Mismatch(format!(
                "bytes cannot be written as {data_type}"
            )));
        }
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(CodecError::NotFinite(value.to_string()))
    }
}

/// An `f64` as `f32`, refusing values that overflow to infinity.
fn narrow(value: f64) -> Result<f32, CodecError> {
    let narrowed = value as f32;
    if narrowed.is_finite() {
        Ok(narrowed)
    } else {
        Err(CodecError::OutOfRange {
            value: value.to_string(),
            target: "float32".into(),
        })
    }
}

/// Widens an `f32` to the `f64` with the same shortest decimal representation, so that a
/// register holding `21.1f32` reads as `21.1`, not `21.100000381469727`.
fn widen(value: f32) -> f64 {
    if value.is_finite() {
        value.to_string().parse().unwrap_or(f64::from(value))
    } else {
        f64::from(value)
    }
}

/// The first `N` bytes as an array (callers checked the length).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const FIXED: [DataType; 8] = [
        DataType::Int16,
        DataType::Uint16,
        DataType::Int32,
        DataType::Uint32,
        DataType::Int64,
        DataType::Uint64,
        DataType::Float32,
        DataType::Float64,
    ];

    fn encode(raw: Raw, data_type: DataType, order: ByteOrder) -> Vec<u16> {
        let registers = data_type.fixed_registers().expect("fixed size");
        encode_registers(&raw, data_type, order, registers).expect("encodes")
    }

    #[test]
    fn known_register_images() {
        use ByteOrder::*;
        // 21.5f32 = 0x41AC0000.
        assert_eq!(
            encode(Raw::Float(21.5), DataType::Float32, Abcd),
            [0x41AC, 0]
        );
        assert_eq!(
            encode(Raw::Float(21.5), DataType::Float32, Cdab),
            [0, 0x41AC]
        );
        assert_eq!(
            encode(Raw::Float(21.5), DataType::Float32, Badc),
            [0xAC41, 0]
        );
        assert_eq!(
            encode(Raw::Float(21.5), DataType::Float32, Dcba),
            [0, 0xAC41]
        );
        assert_eq!(
            encode(Raw::Int(-2), DataType::Int32, Abcd),
            [0xFFFF, 0xFFFE]
        );
        assert_eq!(encode(Raw::Int(-2), DataType::Int16, Abcd), [0xFFFE]);
        assert_eq!(encode(Raw::Int(-2), DataType::Int16, Badc), [0xFEFF]);
        assert_eq!(
            encode(Raw::Int(0x0102_0304_0506_0708), DataType::Uint64, Cdab),
            [0x0708, 0x0506, 0x0304, 0x0102]
        );
        // 1.0f64 = 0x3FF0000000000000.
        assert_eq!(
            encode(Raw::Float(1.0), DataType::Float64, Abcd),
            [0x3FF0, 0, 0, 0]
        );
        assert_eq!(
            decode_registers(&[0, 0, 0, 0xF03F], DataType::Float64, Dcba),
            Ok(Raw::Float(1.0))
        );
        assert_eq!(
            decode_registers(&[0xFFFF], DataType::Int16, Abcd),
            Ok(Raw::Int(-1))
        );
        assert_eq!(
            decode_registers(&[0xFFFF], DataType::Uint16, Abcd),
            Ok(Raw::Int(65535))
        );
        assert_eq!(
            decode_registers(&[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], DataType::Uint64, Abcd),
            Ok(Raw::Int(u64::MAX.into()))
        );
    }

    #[test]
    fn float32_reads_as_its_shortest_decimal() {
        let words = encode(Raw::Float(21.1), DataType::Float32, ByteOrder::Abcd);
        assert_eq!(
            decode_registers(&words, DataType::Float32, ByteOrder::Abcd),
            Ok(Raw::Float(21.1))
        );
    }

    #[test]
    fn strings_are_nul_padded_and_trimmed() {
        let words = encode_registers(
            &Raw::Text("pump".into()),
            DataType::String,
            ByteOrder::Abcd,
            3,
        )
        .expect("fits");
        assert_eq!(words, [0x7075, 0x6D70, 0x0000]);
        assert_eq!(
            decode_registers(&words, DataType::String, ByteOrder::Abcd),
            Ok(Raw::Text("pump".into()))
        );
        let swapped = encode_registers(
            &Raw::Text("pump".into()),
            DataType::String,
            ByteOrder::Badc,
            2,
        )
        .expect("fits");
        assert_eq!(swapped, [0x7570, 0x706D]);
        assert_eq!(
            encode_registers(
                &Raw::Text("pumps".into()),
                DataType::String,
                ByteOrder::Abcd,
                2
            ),
            Err(CodecError::TooLong {
                len: 5,
                registers: 2
            })
        );
        assert!(matches!(
            decode_registers(&[0xFFFE], DataType::String, ByteOrder::Abcd),
            Err(CodecError::NotUtf8(_))
        ));
    }

    #[test]
    fn bytes_keep_every_byte() {
        let raw = Raw::Bytes(vec![0, 1, 2, 0]);
        let words = encode_registers(&raw, DataType::Bytes, ByteOrder::Abcd, 2).expect("fits");
        assert_eq!(words, [0x0001, 0x0200]);
        assert_eq!(
            decode_registers(&words, DataType::Bytes, ByteOrder::Abcd),
            Ok(raw)
        );
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_range() {
        let err = encode_registers(&Raw::Int(70_000), DataType::Uint16, ByteOrder::Abcd, 1)
            .expect_err("too big");
        assert_eq!(
            err.to_string(),
            "the value 70000 does not fit uint16 (0..=65535)"
        );
        assert!(encode_registers(&Raw::Int(-1), DataType::Uint32, ByteOrder::Abcd, 2).is_err());
        assert!(
            encode_registers(&Raw::Float(1e39), DataType::Float32, ByteOrder::Abcd, 2).is_err()
        );
        assert!(
            encode_registers(&Raw::Float(f64::NAN), DataType::Int16, ByteOrder::Abcd, 1).is_err()
        );
        assert!(
            encode_registers(&Raw::Text("x".into()), DataType::Int16, ByteOrder::Abcd, 1).is_err()
        );
    }

    #[test]
    fn floats_written_to_integers_round_to_nearest() {
        assert_eq!(
            encode(Raw::Float(229.99999), DataType::Uint16, ByteOrder::Abcd),
            [230]
        );
        assert_eq!(
            encode(Raw::Float(-2.5), DataType::Int16, ByteOrder::Abcd),
            [0xFFFD]
        );
    }

    #[test]
    fn a_bit_of_a_register() {
        assert_eq!(
            decode_registers(&[0b1000], DataType::Bit(3), ByteOrder::Abcd),
            Ok(Raw::Bool(true))
        );
        assert_eq!(
            decode_registers(&[0b1000], DataType::Bit(2), ByteOrder::Abcd),
            Ok(Raw::Bool(false))
        );
        assert_eq!(
            decode_registers(&[0x8000], DataType::Bit(15), ByteOrder::Abcd),
            Ok(Raw::Bool(true))
        );
        // Byte-swapped devices: bit 0 of the value lives in the register's high byte.
        assert_eq!(
            decode_registers(&[0x0100], DataType::Bit(0), ByteOrder::Badc),
            Ok(Raw::Bool(true))
        );
        assert_eq!(
            encode_bit(0xF0F0, 0, &Raw::Bool(true), ByteOrder::Abcd),
            Ok(0xF0F1)
        );
        assert_eq!(
            encode_bit(0xF0F0, 4, &Raw::Bool(false), ByteOrder::Abcd),
            Ok(0xF0E0)
        );
        assert_eq!(encode_bit(0, 0, &Raw::Int(1), ByteOrder::Badc), Ok(0x0100));
        assert!(encode_bit(0, 0, &Raw::Int(2), ByteOrder::Abcd).is_err());
    }

    #[test]
    fn coils_are_a_bool_or_a_mask() {
        assert_eq!(decode_bits(&[true]), Ok(Raw::Bool(true)));
        assert_eq!(decode_bits(&[true, false, true]), Ok(Raw::Int(0b101)));
        assert!(decode_bits(&[]).is_err());
        assert_eq!(encode_bits(&Raw::Bool(true), 1), Ok(vec![true]));
        assert_eq!(encode_bits(&Raw::Int(0), 1), Ok(vec![false]));
        assert_eq!(
            encode_bits(&Raw::Int(0b110), 3),
            Ok(vec![false, true, true])
        );
        let err = encode_bits(&Raw::Int(2), 1).expect_err("not 0/1");
        assert_eq!(
            err.to_string(),
            "the value 2 does not fit one coil (0 or 1)"
        );
        assert!(encode_bits(&Raw::Int(8), 3).is_err());
        assert!(encode_bits(&Raw::Int(-1), 3).is_err());
    }

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        assert_eq!(
            decode_registers(&[1], DataType::Int32, ByteOrder::Abcd),
            Err(CodecError::Length {
                expected: 2,
                got: 1
            })
        );
        assert!(decode_registers(&[1], DataType::Bits, ByteOrder::Abcd).is_err());
        assert!(encode_registers(&Raw::Int(1), DataType::Int32, ByteOrder::Abcd, 1).is_err());
    }

    fn int_strategy(data_type: DataType) -> BoxedStrategy<i128> {
        let (min, max) = data_type.int_range().expect("integer type");
        (min..=max).boxed()
    }

    proptest! {
        #[test]
        fn integers_round_trip_in_every_order(
            (data_type, value) in proptest::sample::select(FIXED[..6].to_vec())
                .prop_flat_map(|data_type| (Just(data_type), int_strategy(data_type))),
            order in proptest::sample::select(ByteOrder::ALL.to_vec()),
        ) {
            let words = encode(Raw::Int(value), data_type, order);
            prop_assert_eq!(decode_registers(&words, data_type, order), Ok(Raw::Int(value)));
        }

        #[test]
        fn every_i64_and_u64_is_exact(signed in any::<i64>(), unsigned in any::<u64>(),
                                      order in proptest::sample::select(ByteOrder::ALL.to_vec())) {
            let words = encode(Raw::Int(signed.into()), DataType::Int64, order);
            prop_assert_eq!(decode_registers(&words, DataType::Int64, order), Ok(Raw::Int(signed.into())));
            let words = encode(Raw::Int(unsigned.into()), DataType::Uint64, order);
            prop_assert_eq!(decode_registers(&words, DataType::Uint64, order), Ok(Raw::Int(unsigned.into())));
        }

        #[test]
        fn floats_round_trip_in_every_order(single in any::<f32>().prop_filter("finite", |x| x.is_finite()),
                                            double in any::<f64>().prop_filter("finite", |x| x.is_finite()),
                                            order in proptest::sample::select(ByteOrder::ALL.to_vec())) {
            let words = encode(Raw::Float(double), DataType::Float64, order);
            prop_assert_eq!(decode_registers(&words, DataType::Float64, order), Ok(Raw::Float(double)));
            let words = encode(Raw::Float(widen(single)), DataType::Float32, order);
            let back = decode_registers(&words, DataType::Float32, order);
            prop_assert_eq!(back, Ok(Raw::Float(widen(single))));
            // The register image is exactly the f32's bits.
            let bytes = order.bytes_from_words(&words);
            prop_assert_eq!(f32::from_be_bytes(array(&bytes)).to_bits(), single.to_bits());
        }

        #[test]
        fn strings_round_trip(text in "[a-zA-Z0-9 äöü€]{0,12}", spare in 0u16..3,
                              order in proptest::sample::select(ByteOrder::ALL.to_vec())) {
            let registers = (text.len() as u16).div_ceil(2) + spare;
            let words = encode_registers(&Raw::Text(text.clone()), DataType::String, order, registers)
                .expect("fits");
            prop_assert_eq!(words.len(), usize::from(registers));
            prop_assert_eq!(decode_registers(&words, DataType::String, order), Ok(Raw::Text(text)));
        }

        #[test]
        fn bit_masks_round_trip(count in 1u16..=64, seed in any::<u64>()) {
            let mask = if count == 64 { seed } else { seed & ((1u64 << count) - 1) };
            let bits = encode_bits(&Raw::Int(mask.into()), count).expect("fits");
            prop_assert_eq!(bits.len(), usize::from(count));
            let back = decode_bits(&bits).expect("decodes");
            let expected = if count == 1 { Raw::Bool(mask == 1) } else { Raw::Int(mask.into()) };
            prop_assert_eq!(back, expected);
        }

        #[test]
        fn setting_a_bit_changes_only_that_bit(word in any::<u16>(), n in 0u8..16, on in any::<bool>(),
                                               order in proptest::sample::select(ByteOrder::ALL.to_vec())) {
            let updated = encode_bit(word, n, &Raw::Bool(on), order).expect("0/1");
            prop_assert_eq!(decode_registers(&[updated], DataType::Bit(n), order), Ok(Raw::Bool(on)));
            for other in (0..16).filter(|b| *b != n) {
                prop_assert_eq!(
                    decode_registers(&[updated], DataType::Bit(other), order),
                    decode_registers(&[word], DataType::Bit(other), order)
                );
            }
        }
    }
}
