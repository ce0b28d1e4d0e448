//! KubeEdge's `dataConverter`: take bytes `startIndex` to `endIndex` of the value (in that
//! order: a start above the end reads them backwards, i.e. a little-endian number), read them as
//! one unsigned integer, shift it left or right, then apply `orderOfOperations` (Add, Subtract,
//! Multiply, Divide) in order.
//!
//! KubeEdge's two Bluetooth mappers concatenate the bytes' *decimal* digits and parse that
//! string (base 16 in one, base 10 in the other), which gives the intended number only when
//! every byte is below 10; this is the intended meaning: the selected bytes, most significant
//! first. The CC2650 sample (`startIndex: 1, endIndex: 0, shiftRight: 2`, × 0.03125) is the
//! SensorTag's little-endian 14-bit temperature in °C.

use std::fmt;

/// One step of `orderOfOperations`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operation {
    /// `Add`.
    Add(f64),
    /// `Subtract`.
    Subtract(f64),
    /// `Multiply`.
    Multiply(f64),
    /// `Divide` (never by 0: checked when configured).
    Divide(f64),
}

impl Operation {
    /// The operation named `kind` (any case) with `value`.
    pub fn new(kind: &str, value: f64) -> Result<Operation, String> {
        if !value.is_finite() {
            return Err(format!("operationValue {value} is not a finite number"));
        }
        match kind.to_ascii_lowercase().as_str() {
            "add" => Ok(Operation::Add(value)),
            "subtract" => Ok(Operation::Subtract(value)),
            "multiply" => Ok(Operation::Multiply(value)),
            "divide" if value == 0.0 => Err("Divide by 0".into()),
            "divide" => Ok(Operation::Divide(value)),
            other => Err(format!(
                "operationType {other:?} is not Add, Subtract, Multiply or Divide"
            )),
        }
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Operation::Add(v) => x + v,
            Operation::Subtract(v) => x - v,
            Operation::Multiply(v) => x * v,
            Operation::Divide(v) => x / v,
        }
    }
}

/// Which way the integer is shifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shift {
    /// No shift.
    #[default]
    None,
    /// `shiftLeft` bits.
    Left(u32),
    /// `shiftRight` bits.
    Right(u32),
}

/// A validated `dataConverter`.
#[derive(Debug, Clone, PartialEq)]
pub struct Converter {
    /// The first byte read.
    pub start: usize,
    /// The last byte read (may be below `start`: then the bytes are read backwards).
    pub end: usize,
    /// The shift of the integer.
    pub shift: Shift,
    /// The arithmetic, in order.
    pub operations: Vec<Operation>,
}

/// Most bytes one converter reads (a 64-bit integer).
pub const MAX_BYTES: usize = 8;

impl Converter {
    /// Checks the byte range and the shift.
    pub fn new(
        start: usize,
        end: usize,
        shift: Shift,
        operations: Vec<Operation>,
    ) -> Result<Converter, String> {
        let count = start.abs_diff(end) + 1;
        if count > MAX_BYTES {
            return Err(format!(
                "startIndex {start} to endIndex {end} is {count} bytes; at most {MAX_BYTES} make one integer"
            ));
        }
        match shift {
            Shift::Left(n) | Shift::Right(n) if n >= 64 => {
                return Err(format!("a shift of {n} bits clears a 64-bit integer"));
            }
            _ => {}
        }
        Ok(Converter {
            start,
            end,
            shift,
            operations,
        })
    }

    /// The number of bytes the value must have at least.
    pub fn needs(&self) -> usize {
        self.start.max(self.end) + 1
    }

    /// Converts a characteristic value.
    pub fn convert(&self, value: &[u8]) -> Result<f64, String> {
        if value.len() < self.needs() {
            return Err(format!(
                "the value has {} byte(s); dataConverter reads index {}",
                value.len(),
                self.needs() - 1
            ));
        }
        let indices: Vec<usize> = if self.start <= self.end {
            (self.start..=self.end).collect()
        } else {
            (self.end..=self.start).rev().collect()
        };
        let raw = indices
            .iter()
            .fold(0u64, |acc, &i| (acc << 8) | u64::from(value[i]));
        let shifted = match self.shift {
            Shift::None => raw,
            Shift::Left(n) => raw << n,
            Shift::Right(n) => raw >> n,
        };
        Ok(self
            .operations
            .iter()
            .fold(shifted as f64, |x, op| op.apply(x)))
    }
}

impl fmt::Display for Converter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}..={}", self.start, self.end)?;
        match self.shift {
            Shift::None => {}
            Shift::Left(n) => write!(f, " << {n}")?,
            Shift::Right(n) => write!(f, " >> {n}")?,
        }
        for op in &self.operations {
            match op {
                Operation::Add(v) => write!(f, " + {v}")?,
                Operation::Subtract(v) => write!(f, " - {v}")?,
                Operation::Multiply(v) => write!(f, " × {v}")?,
                Operation::Divide(v) => write!(f, " ÷ {v}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc2650() -> Converter {
        Converter::new(
            1,
            0,
            Shift::Right(2),
            vec![Operation::new("Multiply", 0.03125).expect("valid")],
        )
        .expect("valid")
    }

    #[test]
    fn the_cc2650_temperature() {
        // The SensorTag's IR sensor: a 14-bit value, little-endian, in its upper bits.
        // 25.5 °C = 816 (× 0.03125) = 0x0330, << 2 = 0x0CC0 → bytes [0xC0, 0x0C, …].
        let value = [0xC0, 0x0C, 0x00, 0x00];
        assert_eq!(cc2650().convert(&value), Ok(25.5));
        // Bytes above 9 matter (KubeEdge's digit concatenation would misread these).
        let value = [0x5C, 0x0B];
        assert_eq!(
            cc2650().convert(&value),
            Ok(f64::from(0x0B5Cu32 >> 2) * 0.03125)
        );
    }

    #[test]
    fn forward_range_shift_left_and_operations_in_order() {
        let converter = Converter::new(
            0,
            1,
            Shift::Left(1),
            vec![
                Operation::new("add", 2.0).expect("valid"),
                Operation::new("DIVIDE", 4.0).expect("valid"),
                Operation::new("Subtract", 0.5).expect("valid"),
            ],
        )
        .expect("valid");
        // 0x0102 = 258, << 1 = 516, + 2 = 518, / 4 = 129.5, - 0.5 = 129.
        assert_eq!(converter.convert(&[0x01, 0x02, 0xFF]), Ok(129.0));
        assert_eq!(converter.to_string(), "bytes 0..=1 << 1 + 2 ÷ 4 - 0.5");
    }

    #[test]
    fn the_default_reads_byte_0() {
        let converter = Converter::new(0, 0, Shift::None, Vec::new()).expect("valid");
        assert_eq!(converter.convert(&[7, 9]), Ok(7.0));
    }

    #[test]
    fn short_values_and_bad_settings_are_errors() {
        assert_eq!(
            cc2650().convert(&[1]),
            Err("the value has 1 byte(s); dataConverter reads index 1".into())
        );
        assert!(Converter::new(0, 8, Shift::None, Vec::new()).is_err());
        assert!(Converter::new(0, 1, Shift::Right(64), Vec::new()).is_err());
        assert_eq!(
            Operation::new("Divide", 0.0),
            Err("Divide by 0".to_string())
        );
        assert!(Operation::new("Modulo", 2.0).is_err());
        assert!(Operation::new("Add", f64::NAN).is_err());
    }
}
