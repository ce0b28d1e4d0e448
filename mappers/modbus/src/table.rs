//! The four Modbus data tables and the protocol's per-request limits.

use std::fmt;

/// One of the four Modbus data tables (KubeEdge calls them "registers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Read/write single bits (function codes 1, 5, 15). KubeEdge: `CoilRegister`.
    Coils,
    /// Read-only single bits (function code 2). KubeEdge: `DiscreteInputRegister`.
    DiscreteInputs,
    /// Read/write 16-bit registers (function codes 3, 6, 16). KubeEdge: `HoldingRegister`.
    HoldingRegisters,
    /// Read-only 16-bit registers (function code 4). KubeEdge: `InputRegister`.
    InputRegisters,
}

/// Most registers one read request may ask for (Modbus spec, function codes 3 and 4).
pub const MAX_READ_REGISTERS: u16 = 125;
/// Most bits one read request may ask for (Modbus spec, function codes 1 and 2).
pub const MAX_READ_BITS: u16 = 2000;
/// Most registers one write request may carry (function code 16).
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// Most coils one write request may carry (function code 15).
pub const MAX_WRITE_BITS: u16 = 1968;

impl Table {
    /// Every table, in function-code order.
    pub const ALL: [Table; 4] = [
        Table::Coils,
        Table::DiscreteInputs,
        Table::HoldingRegisters,
        Table::InputRegisters,
    ];

    /// Whether the table holds bits (coils, discrete inputs) rather than 16-bit registers.
    pub fn holds_bits(self) -> bool {
        matches!(self, Table::Coils | Table::DiscreteInputs)
    }

    /// Whether the protocol lets a client write this table.
    pub fn writable(self) -> bool {
        matches!(self, Table::Coils | Table::HoldingRegisters)
    }

    /// The protocol's limit on how many items one read request may ask for.
    pub fn max_read(self) -> u16 {
        if self.holds_bits() {
            MAX_READ_BITS
        } else {
            MAX_READ_REGISTERS
        }
    }

    /// The protocol's limit on how many items one write request may carry.
    pub fn max_write(self) -> u16 {
        if self.holds_bits() {
            MAX_WRITE_BITS
        } else {
            MAX_WRITE_REGISTERS
        }
    }

    /// The KubeEdge name of the table (`CoilRegister`, …), as written in visitor configs.
    pub fn kubeedge_name(self) -> &'static str {
        match self {
            Table::Coils => "CoilRegister",
            Table::DiscreteInputs => "DiscreteInputRegister",
            Table::HoldingRegisters => "HoldingRegister",
            Table::InputRegisters => "InputRegister",
        }
    }

    /// Parses a table name: KubeEdge's (`HoldingRegister`) or a short one (`holding`, `coils`,
    /// `discrete_input`, …), ignoring case, `_`, `-` and spaces.
    pub fn parse(name: &str) -> Option<Table> {
        match normalize(name).as_str() {
            "coilregister" | "coil" | "coils" => Some(Table::Coils),
            "discreteinputregister" | "discreteinput" | "discreteinputs" | "discrete" => {
                Some(Table::DiscreteInputs)
            }
            "holdingregister" | "holdingregisters" | "holding" => Some(Table::HoldingRegisters),
            "inputregister" | "inputregisters" | "input" => Some(Table::InputRegisters),
            _ => None,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Coils => "coils",
            Table::DiscreteInputs => "discrete inputs",
            Table::HoldingRegisters => "holding registers",
            Table::InputRegisters => "input registers",
        })
    }
}

/// Lower-cases a name and drops `_`, `-` and spaces, so that `Holding_Register`,
/// `holding-register` and `HoldingRegister` compare equal.
pub(crate) fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeedge_and_short_names_parse_to_the_same_table() {
        for table in Table::ALL {
            assert_eq!(Table::parse(table.kubeedge_name()), Some(table));
        }
        assert_eq!(Table::parse("holding"), Some(Table::HoldingRegisters));
        assert_eq!(
            Table::parse("Holding_Register"),
            Some(Table::HoldingRegisters)
        );
        assert_eq!(Table::parse("coils"), Some(Table::Coils));
        assert_eq!(Table::parse("discrete-input"), Some(Table::DiscreteInputs));
        assert_eq!(Table::parse("INPUT"), Some(Table::InputRegisters));
        assert_eq!(Table::parse("register"), None);
        assert_eq!(Table::parse(""), None);
    }

    #[test]
    fn limits_follow_the_modbus_spec() {
        assert_eq!(Table::HoldingRegisters.max_read(), 125);
        assert_eq!(Table::InputRegisters.max_read(), 125);
        assert_eq!(Table::Coils.max_read(), 2000);
        assert_eq!(Table::DiscreteInputs.max_read(), 2000);
        assert_eq!(Table::HoldingRegisters.max_write(), 123);
        assert_eq!(Table::Coils.max_write(), 1968);
        assert!(Table::Coils.writable() && Table::HoldingRegisters.writable());
        assert!(!Table::DiscreteInputs.writable() && !Table::InputRegisters.writable());
    }
}
