//! Registers ⇄ property values, for every data type, byte and word order, scale and offset.
//! Pure: no I/O.
//!
//! A [`Field`] says where a property lives (table, address, count) and how its items encode its
//! value; [`Field::decode`] turns what a read returned into a [`Value`] and [`Field::encode`]
//! turns a desired value into the write to send.

mod number;
mod order;
mod value;

use edgetwin_sdk::{PropertyType, Value};

pub use self::number::{
    DataType, Raw, decode_bits, decode_registers, encode_bit, encode_bits, encode_registers,
};
pub use self::order::ByteOrder;
pub use self::value::{Transform, to_raw, to_value};
use crate::table::Table;

/// Why a value could not be decoded from, or encoded into, registers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The number of registers or bits does not match the data type.
    #[error("expected {expected} registers or bits, got {got}")]
    Length {
        /// What the data type needs.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// The value does not fit the target type.
    #[error("the value {value} does not fit {target}")]
    OutOfRange {
        /// The value.
        value: String,
        /// The type and its range.
        target: String,
    },
    /// NaN or infinity where a finite number is needed.
    #[error("{0} is not a finite number")]
    NotFinite(String),
    /// A string that does not parse as a number.
    #[error("{0:?} is not a number")]
    NotANumber(String),
    /// Text registers that do not hold UTF-8.
    #[error("the registers do not hold UTF-8 text ({0})")]
    NotUtf8(String),
    /// Text or bytes longer than the registers can hold.
    #[error("{len} bytes do not fit {registers} registers ({} bytes)", usize::from(*registers) * 2)]
    TooLong {
        /// Bytes to write.
        len: usize,
        /// Registers available.
        registers: u16,
    },
    /// A value kind that cannot go where it was asked to.
    #[error("{0}")]
    Mismatch(String),
}

/// Where a property lives on the device and how its registers or bits encode its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The table.
    pub table: Table,
    /// The first register or bit (0-based protocol address).
    pub address: u16,
    /// How many registers or bits the value takes.
    pub count: u16,
    /// How the items encode the raw value.
    pub data_type: DataType,
    /// Byte and word order of multi-byte values.
    pub order: ByteOrder,
    /// Scale and offset between the raw value and the property value.
    pub transform: Transform,
    /// The DeviceModel type of the property.
    pub ty: PropertyType,
}

/// The items a read returned for one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Items<'a> {
    /// Holding or input registers.
    Registers(&'a [u16]),
    /// Coils or discrete inputs.
    Bits(&'a [bool]),
}

/// The request that writes a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Function code 5.
    SingleCoil {
        /// Address.
        address: u16,
        /// On or off.
        on: bool,
    },
    /// Function code 15.
    MultipleCoils {
        /// First address.
        address: u16,
        /// The coils.
        coils: Vec<bool>,
    },
    /// Function code 6.
    SingleRegister {
        /// Address.
        address: u16,
        /// The register.
        word: u16,
    },
    /// Function code 16.
    MultipleRegisters {
        /// First address.
        address: u16,
        /// The registers.
        words: Vec<u16>,
    },
    /// One bit of a holding register: read the register, change the bit ([`Field::with_bit`]),
    /// write it back with function code 6.
    RegisterBit {
        /// Address.
        address: u16,
        /// Set or clear.
        on: bool,
    },
}

impl Field {
    /// Decodes what a read returned for this field (exactly its `count` items).
    pub fn decode(&self, items: Items<'_>) -> Result<Value, CodecError> {
        let raw = match items {
            Items::Bits(bits) => {
                self.check_len(bits.len())?;
                decode_bits(bits)?
            }
            Items::Registers(words) => {
                self.check_len(words.len())?;
                decode_registers(words, self.data_type, self.order)?
            }
        };
        to_value(raw, self.transform, self.ty)
    }

    /// The write that sets this field to `value`.
    pub fn encode(&self, value: &Value) -> Result<Write, CodecError> {
        let raw = to_raw(value, self.transform, self.data_type)?;
        if self.table.holds_bits() {
            let coils = encode_bits(&raw, self.count)?;
            return Ok(if let [on] = coils[..] {
                Write::SingleCoil {
                    address: self.address,
                    on,
                }
            } else {
                Write::MultipleCoils {
                    address: self.address,
                    coils,
                }
            });
        }
        if let DataType::Bit(n) = self.data_type {
            // Validates the value (0 or 1) now, before any request is sent.
            let on = encode_bit(0, n, &raw, ByteOrder::Abcd)? != 0;
            return Ok(Write::RegisterBit {
                address: self.address,
                on,
            });
        }
        let words = encode_registers(&raw, self.data_type, self.order, self.count)?;
        Ok(match words.as_slice() {
            [word] => Write::SingleRegister {
                address: self.address,
                word: *word,
            },
            _ => Write::MultipleRegisters {
                address: self.address,
                words,
            },
        })
    }

    /// The register `current` with this field's bit set to `on` (for [`Write::RegisterBit`]).
    pub fn with_bit(&self, current: u16, on: bool) -> u16 {
        match self.data_type {
            DataType::Bit(n) => {
                encode_bit(current, n, &Raw::Bool(on), self.order).unwrap_or(current)
            }
            _ => current,
        }
    }

    fn check_len(&self, len: usize) -> Result<(), CodecError> {
        if len == usize::from(self.count) {
            Ok(())
        } else {
            Err(CodecError::Length {
                expected: usize::from(self.count),
                got: len,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(table: Table, count: u16, data_type: DataType, ty: PropertyType) -> Field {
        Field {
            table,
            address: 10,
            count,
            data_type,
            order: ByteOrder::Abcd,
            transform: Transform::IDENTITY,
            ty,
        }
    }

    #[test]
    fn coils_write_single_or_multiple() {
        let one = field(Table::Coils, 1, DataType::Bits, PropertyType::Boolean);
        assert_eq!(
            one.encode(&Value::Boolean(true)),
            Ok(Write::SingleCoil {
                address: 10,
                on: true
            })
        );
        assert_eq!(one.decode(Items::Bits(&[true])), Ok(Value::Boolean(true)));
        let mask = field(Table::Coils, 4, DataType::Bits, PropertyType::Int);
        assert_eq!(
            mask.encode(&Value::Int(0b1001)),
            Ok(Write::MultipleCoils {
                address: 10,
                coils: vec![true, false, false, true]
            })
        );
        assert_eq!(
            mask.decode(Items::Bits(&[true, false, false, true])),
            Ok(Value::Int(9))
        );
    }

    #[test]
    fn registers_write_single_or_multiple() {
        let short = field(
            Table::HoldingRegisters,
            1,
            DataType::Int16,
            PropertyType::Int,
        );
        assert_eq!(
            short.encode(&Value::Int(-1)),
            Ok(Write::SingleRegister {
                address: 10,
                word: 0xFFFF
            })
        );
        let float = field(
            Table::HoldingRegisters,
            2,
            DataType::Float32,
            PropertyType::Float,
        );
        assert_eq!(
            float.encode(&Value::Float(21.5)),
            Ok(Write::MultipleRegisters {
                address: 10,
                words: vec![0x41AC, 0]
            })
        );
        assert_eq!(
            float.decode(Items::Registers(&[0x41AC, 0])),
            Ok(Value::Float(21.5))
        );
    }

    #[test]
    fn a_register_bit_is_read_modify_write() {
        let bit = field(
            Table::HoldingRegisters,
            1,
            DataType::Bit(2),
            PropertyType::Boolean,
        );
        assert_eq!(
            bit.encode(&Value::Boolean(true)),
            Ok(Write::RegisterBit {
                address: 10,
                on: true
            })
        );
        assert_eq!(bit.with_bit(0b1001, true), 0b1101);
        assert_eq!(bit.with_bit(0b1101, false), 0b1001);
        assert!(bit.encode(&Value::Int(2)).is_err());
        assert_eq!(
            bit.decode(Items::Registers(&[0b100])),
            Ok(Value::Boolean(true))
        );
    }

    #[test]
    fn a_wrong_item_count_is_an_error() {
        let float = field(
            Table::HoldingRegisters,
            2,
            DataType::Float32,
            PropertyType::Float,
        );
        assert_eq!(
            float.decode(Items::Registers(&[1])),
            Err(CodecError::Length {
                expected: 2,
                got: 1
            })
        );
    }
}
