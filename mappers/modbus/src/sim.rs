//! Our own Modbus simulator: a TCP or RTU server (tokio-modbus server side) over an in-memory
//! datastore of units, each with coils, discrete inputs, holding and input registers. Used by
//! the `modbus-sim` binary, examples, tests and benchmarks.
//!
//! Only the configured addresses exist: reading or writing outside them answers exception 2
//! (illegal data address), as a real device does. A unit that is not configured, or that a test
//! has [muted](Simulator::mute), never answers (a dead slave). Every request is counted, so a
//! test can verify how many requests a mapper sends.
//!
//! ```yaml
//! # registers file (YAML or JSON)
//! units:
//!   - unit: 1
//!     holdingRegisters: { size: 200, values: { 0: [100, 101, 102] } }
//!     inputRegisters: { size: 10 }
//!     coils: { size: 16, values: { 3: [true, false, 1] } }
//!     discreteInputs: { size: 16 }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::{Ready, ready};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio_modbus::server::tcp::accept_tcp_connection;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_serial::SerialStream;

use crate::table::Table;

/// The registers file: which units exist and what they hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// The units (slaves) the simulator answers for.
    pub units: Vec<UnitConfig>,
}

/// One unit of the registers file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnitConfig {
    /// The unit (slave) id.
    pub unit: u8,
    /// Coils (read/write bits).
    #[serde(default)]
    pub coils: TableConfig,
    /// Discrete inputs (read-only bits).
    #[serde(default)]
    pub discrete_inputs: TableConfig,
    /// Holding registers.
    #[serde(default)]
    pub holding_registers: TableConfig,
    /// Input registers.
    #[serde(default)]
    pub input_registers: TableConfig,
}

/// One table of a unit: addresses `0..size`, zero unless `values` says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// How many addresses exist (0–65536).
    #[serde(default)]
    pub size: u32,
    /// Initial values: first address → consecutive values (numbers, or booleans for bits).
    #[serde(default)]
    pub values: BTreeMap<u16, Vec<Json>>,
}

/// Why a registers file or a control command is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The file does not parse.
    #[error("{0}")]
    Parse(String),
    /// A value or address is invalid.
    #[error("unit {unit}, {table}: {message}")]
    Invalid {
        /// The unit.
        unit: u8,
        /// The table.
        table: Table,
        /// What is wrong.
        message: String,
    },
    /// A unit id appears twice.
    #[error("unit {0} is configured twice")]
    DuplicateUnit(u8),
    /// A control command names a unit that is not configured.
    #[error("unit {0} is not configured")]
    NoSuchUnit(u8),
}

impl SimConfig {
    /// Parses a registers file (YAML or JSON).
    pub fn parse(text: &str) -> Result<SimConfig, SimError> {
        serde_saphyr::from_str(text).map_err(|e| SimError::Parse(e.to_string()))
    }

    /// Units `ids`, each with every table of `size` addresses, all zero.
    pub fn uniform(ids: impl IntoIterator<Item = u8>, size: u32) -> SimConfig {
        let table = TableConfig {
            size,
            values: BTreeMap::new(),
        };
        SimConfig {
            units: ids
                .into_iter()
                .map(|unit| UnitConfig {
                    unit,
                    coils: table.clone(),
                    discrete_inputs: table.clone(),
                    holding_registers: table.clone(),
                    input_registers: table.clone(),
                })
                .collect(),
        }
    }
}

/// Requests the simulator received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Every request, answered or not.
    pub requests: u64,
    /// Requests per unit id.
    pub by_unit: BTreeMap<u8, u64>,
    /// Requests per function code.
    pub by_function: BTreeMap<u8, u64>,
}

impl SimStats {
    /// The stats as one line of JSON (the `stats` control command's answer).
    pub fn to_json(&self) -> Json {
        serde_json::json!({
            "requests": self.requests,
            "by_unit": self.by_unit.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "by_function": self.by_function.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        })
    }
}

#[derive(Debug, Default)]
struct Unit {
    coils: Vec<bool>,
    discrete_inputs: Vec<bool>,
    holding_registers: Vec<u16>,
    input_registers: Vec<u16>,
}

#[derive(Debug, Default)]
struct State {
    units: BTreeMap<u8, Unit>,
    muted: BTreeSet<u8>,
    stats: SimStats,
}

/// The simulated devices; cheap to clone (shared state), and a tokio-modbus server service.
#[derive(Debug, Clone, Default)]
pub struct Simulator {
    state: Arc<Mutex<State>>,
}

impl Simulator {
    /// A simulator with the units of `config`.
    pub fn new(config: &SimConfig) -> Result<Simulator, SimError> {
        let mut units = BTreeMap::new();
        for unit_config in &config.units {
            let unit = Unit {
                coils: bits(unit_config.unit, Table::Coils, &unit_config.coils)?,
                discrete_inputs: bits(
                    unit_config.unit,
                    Table::DiscreteInputs,
                    &unit_config.discrete_inputs,
                )?,
                holding_registers: words(
                    unit_config.unit,
                    Table::HoldingRegisters,
                    &unit_config.holding_registers,
                )?,
                input_registers: words(
                    unit_config.unit,
                    Table::InputRegisters,
                    &unit_config.input_registers,
                )?,
            };
            if units.insert(unit_config.unit, unit).is_some() {
                return Err(SimError::DuplicateUnit(unit_config.unit));
            }
        }
        Ok(Simulator {
            state: Arc::new(Mutex::new(State {
                units,
                ..State::default()
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the plain data inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Requests received so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Forgets the requests received so far.
    pub fn reset_stats(&self) {
        self.lock().stats = SimStats::default();
    }

    /// Makes a unit stop answering (`true`) or answer again (`false`).
    pub fn mute(&self, unit: u8, muted: bool) {
        let mut state = self.lock();
        if muted {
            state.muted.insert(unit);
        } else {
            state.muted.remove(&unit);
        }
    }

    /// Reads registers (`Table::HoldingRegisters`, `Table::InputRegisters`) or bits (as 0/1)
    /// directly from the datastore.
    pub fn get(
        &self,
        unit: u8,
        table: Table,
        address: u16,
        count: u16,
    ) -> Result<Vec<u16>, SimError> {
        let state = self.lock();
        let data = state.units.get(&unit).ok_or(SimError::NoSuchUnit(unit))?;
        let invalid = |message: String| SimError::Invalid {
            unit,
            table,
            message,
        };
        let range = range(address, count, data.len(table)).map_err(|_| {
            invalid(format!(
                "{address}+{count} is outside 0..{}",
                data.len(table)
            ))
        })?;
        Ok(match table {
            Table::Coils => data.coils[range].iter().map(|b| u16::from(*b)).collect(),
            Table::DiscreteInputs => data.discrete_inputs[range]
                .iter()
                .map(|b| u16::from(*b))
                .collect(),
            Table::HoldingRegisters => data.holding_registers[range].to_vec(),
            Table::InputRegisters => data.input_registers[range].to_vec(),
        })
    }

    /// Writes registers or bits (non-zero = on) directly into the datastore, as the device
    /// itself would (any table, including the read-only ones).
    pub fn set(
        &self,
        unit: u8,
        table: Table,
        address: u16,
        values: &[u16],
    ) -> Result<(), SimError> {
        let mut state = self.lock();
        let data = state
            .units
            .get_mut(&unit)
            .ok_or(SimError::NoSuchUnit(unit))?;
        let len = data.len(table);
        let count = u16::try_from(values.len()).unwrap_or(u16::MAX);
        let range = range(address, count, len).map_err(|_| SimError::Invalid {
            unit,
            table,
            message: format!("{address}+{} is outside 0..{len}", values.len()),
        })?;
        match table {
            Table::Coils => set_bits(&mut data.coils[range], values),
            Table::DiscreteInputs => set_bits(&mut data.discrete_inputs[range], values),
            Table::HoldingRegisters => data.holding_registers[range].copy_from_slice(values),
            Table::InputRegisters => data.input_registers[range].copy_from_slice(values),
        }
        Ok(())
    }

    /// Answers one request: `None` when the unit does not answer.
    pub fn answer(&self, request: &SlaveRequest<'_>) -> Option<Result<Response, ExceptionCode>> {
        let mut state = self.lock();
        state.stats.requests += 1;
        *state.stats.by_unit.entry(request.slave).or_default() += 1;
        *state
            .stats
            .by_function
            .entry(request.request.function_code().value())
            .or_default() += 1;
        if state.muted.contains(&request.slave) {
            return None;
        }
        let unit = state.units.get_mut(&request.slave)?;
        Some(unit.apply(&request.request))
    }
}

impl Simulator {
    /// Runs one control command and returns its one-line JSON answer. Commands: `stats`,
    /// `reset`, `mute UNIT`, `unmute UNIT`, `get UNIT TABLE ADDRESS COUNT`,
    /// `set UNIT TABLE ADDRESS VALUE…` (tables by any name [`Table::parse`] accepts).
    pub fn control(&self, line: &str) -> Json {
        match self.control_inner(line) {
            Ok(answer) => answer,
            Err(message) => serde_json::json!({ "error": message }),
        }
    }

    fn control_inner(&self, line: &str) -> Result<Json, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |index: usize, what: &str| -> Result<u16, String> {
            let word = words.get(index).ok_or_else(|| format!("missing {what}"))?;
            word.parse()
                .map_err(|_| format!("{what} {word:?} is not a number"))
        };
        let unit = |index: usize| -> Result<u8, String> {
            u8::try_from(number(index, "unit")?).map_err(|_| "unit is more than 255".to_owned())
        };
        let table = |index: usize| -> Result<Table, String> {
            let word = words.get(index).ok_or("missing table")?;
            Table::parse(word).ok_or_else(|| format!("{word:?} is not a table"))
        };
        let ok = serde_json::json!({ "ok": true });
        match words.first().copied() {
            Some("stats") => Ok(self.stats().to_json()),
            Some("reset") => {
                self.reset_stats();
                Ok(ok)
            }
            Some("mute") => {
                self.mute(unit(1)?, true);
                Ok(ok)
            }
            Some("unmute") => {
                self.mute(unit(1)?, false);
                Ok(ok)
            }
            Some("get") => {
                let values = self
                    .get(
                        unit(1)?,
                        table(2)?,
                        number(3, "address")?,
                        number(4, "count")?,
                    )
                    .map_err(|e| e.to_string())?;
                Ok(serde_json::json!({ "values": values }))
            }
            Some("set") => {
                let values = (4..words.len())
                    .map(|i| number(i, "value"))
                    .collect::<Result<Vec<u16>, String>>()?;
                if values.is_empty() {
                    return Err("missing values".into());
                }
                self.set(unit(1)?, table(2)?, number(3, "address")?, &values)
                    .map_err(|e| e.to_string())?;
                Ok(ok)
            }
            Some(other) => Err(format!(
                "unknown command {other:?} (stats, reset, mute, unmute, get, set)"
            )),
            None => Err("empty command".into()),
        }
    }
}

/// Serves Modbus TCP on `listener` until the future is dropped.
pub async fn serve_tcp(listener: TcpListener, sim: Simulator) -> io::Result<()> {
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream, peer| {
        let sim = sim.clone();
        async move { accept_tcp_connection(stream, peer, |_| Ok(Some(sim.clone()))) }
    };
    server
        .serve(&on_connected, |err| {
            tracing::debug!(error = %err, "modbus-sim: connection ended with an error");
        })
        .await
}

/// Serves Modbus RTU on an open serial line until the line fails or the future is dropped.
pub async fn serve_rtu(serial: SerialStream, sim: Simulator) -> io::Result<()> {
    tokio_modbus::server::rtu::Server::new(serial)
        .serve_forever(sim)
        .await
}

impl tokio_modbus::server::Service for Simulator {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        ready(match self.answer(&request) {
            None => Ok(None),
            Some(result) => result.map(Some),
        })
    }
}

impl Unit {
    fn len(&self, table: Table) -> usize {
        match table {
            Table::Coils => self.coils.len(),
            Table::DiscreteInputs => self.discrete_inputs.len(),
            Table::HoldingRegisters => self.holding_registers.len(),
            Table::InputRegisters => self.input_registers.len(),
        }
    }

    fn apply(&mut self, request: &Request<'_>) -> Result<Response, ExceptionCode> {
        use tokio_modbus::Request as R;
        match request {
            R::ReadCoils(address, count) => {
                let range = read_range(*address, *count, Table::Coils, self.coils.len())?;
                Ok(Response::ReadCoils(self.coils[range].to_vec()))
            }
            R::ReadDiscreteInputs(address, count) => {
                let range = read_range(
                    *address,
                    *count,
                    Table::DiscreteInputs,
                    self.discrete_inputs.len(),
                )?;
                Ok(Response::ReadDiscreteInputs(
                    self.discrete_inputs[range].to_vec(),
                ))
            }
            R::ReadHoldingRegisters(address, count) => {
                let range = read_range(
                    *address,
                    *count,
                    Table::HoldingRegisters,
                    self.holding_registers.len(),
                )?;
                Ok(Response::ReadHoldingRegisters(
                    self.holding_registers[range].to_vec(),
                ))
            }
            R::ReadInputRegisters(address, count) => {
                let range = read_range(
                    *address,
                    *count,
                    Table::InputRegisters,
                    self.input_registers.len(),
                )?;
                Ok(Response::ReadInputRegisters(
                    self.input_registers[range].to_vec(),
                ))
            }
            R::WriteSingleCoil(address, on) => {
                let range = range(*address, 1, self.coils.len())?;
                self.coils[range].fill(*on);
                Ok(Response::WriteSingleCoil(*address, *on))
            }
            R::WriteMultipleCoils(address, coils) => {
                let count = quantity(coils.len(), Table::Coils.max_write())?;
                let range = range(*address, count, self.coils.len())?;
                self.coils[range].copy_from_slice(coils);
                Ok(Response::WriteMultipleCoils(*address, count))
            }
            R::WriteSingleRegister(address, word) => {
                let range = range(*address, 1, self.holding_registers.len())?;
                self.holding_registers[range].fill(*word);
                Ok(Response::WriteSingleRegister(*address, *word))
            }
            R::WriteMultipleRegisters(address, words) => {
                let count = quantity(words.len(), Table::HoldingRegisters.max_write())?;
                let range = range(*address, count, self.holding_registers.len())?;
                self.holding_registers[range].copy_from_slice(words);
                Ok(Response::WriteMultipleRegisters(*address, count))
            }
            R::MaskWriteRegister(address, and_mask, or_mask) => {
                let range = range(*address, 1, self.holding_registers.len())?;
                let slot = &mut self.holding_registers[range.start];
                *slot = (*slot & and_mask) | (or_mask & !and_mask);
                Ok(Response::MaskWriteRegister(*address, *and_mask, *or_mask))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

/// The index range of `count` items at `address` in a table of `len` items.
fn range(address: u16, count: u16, len: usize) -> Result<std::ops::Range<usize>, ExceptionCode> {
    let start = usize::from(address);
    let end = start + usize::from(count);
    if end <= len {
        Ok(start..end)
    } else {
        Err(ExceptionCode::IllegalDataAddress)
    }
}

fn read_range(
    address: u16,
    count: u16,
    table: Table,
    len: usize,
) -> Result<std::ops::Range<usize>, ExceptionCode> {
    if count == 0 || count > table.max_read() {
        return Err(ExceptionCode::IllegalDataValue);
    }
    range(address, count, len)
}

fn quantity(len: usize, max: u16) -> Result<u16, ExceptionCode> {
    match u16::try_from(len) {
        Ok(count) if (1..=max).contains(&count) => Ok(count),
        _ => Err(ExceptionCode::IllegalDataValue),
    }
}

fn set_bits(slots: &mut [bool], values: &[u16]) {
    for (slot, value) in slots.iter_mut().zip(values) {
        *slot = *value != 0;
    }
}

fn table_size(unit: u8, table: Table, config: &TableConfig) -> Result<usize, SimError> {
    if config.size > 65_536 {
        return Err(SimError::Invalid {
            unit,
            table,
            message: format!("size {} is more than 65536 addresses", config.size),
        });
    }
    Ok(config.size as usize)
}

/// Every (address, value) of a table's `values`, checked against its size.
fn initial_values(
    unit: u8,
    table: Table,
    config: &TableConfig,
) -> Result<Vec<(usize, &Json)>, SimError> {
    let size = table_size(unit, table, config)?;
    let mut out = Vec::new();
    for (start, values) in &config.values {
        for (i, value) in values.iter().enumerate() {
            let address = usize::from(*start) + i;
            if address >= size {
                return Err(SimError::Invalid {
                    unit,
                    table,
                    message: format!("value at address {address} is outside size {size}"),
                });
            }
            out.push((address, value));
        }
    }
    Ok(out)
}

fn bits(unit: u8, table: Table, config: &TableConfig) -> Result<Vec<bool>, SimError> {
    let mut data = vec![false; table_size(unit, table, config)?];
    for (address, value) in initial_values(unit, table, config)? {
        data[address] = match value {
            Json::Bool(on) => *on,
            Json::Number(n) if n.as_u64() == Some(0) => false,
            Json::Number(n) if n.as_u64() == Some(1) => true,
            other => {
                return Err(SimError::Invalid {
                    unit,
                    table,
                    message: format!("{other} at address {address} is not a bit (true/false/0/1)"),
                });
            }
        };
    }
    Ok(data)
}

fn words(unit: u8, table: Table, config: &TableConfig) -> Result<Vec<u16>, SimError> {
    let mut data = vec![0; table_size(unit, table, config)?];
    for (address, value) in initial_values(unit, table, config)? {
        // Negative numbers are stored as their 16-bit two's complement.
        data[address] = match value.as_i64() {
            Some(n) if (0..=0xFFFF).contains(&n) => n as u16,
            Some(n) if (-0x8000..0).contains(&n) => n as i16 as u16,
            _ => {
                return Err(SimError::Invalid {
                    unit,
                    table,
                    message: format!("{value} at address {address} is not a 16-bit register"),
                });
            }
        };
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    const REGISTERS: &str = r#"
units:
  - unit: 1
    holdingRegisters: { size: 10, values: { 0: [100, 101, -1] } }
    inputRegisters: { size: 4, values: { 3: [7] } }
    coils: { size: 8, values: { 2: [true, 0, 1] } }
    discreteInputs: { size: 2 }
"#;

    fn request(slave: u8, request: Request<'static>) -> SlaveRequest<'static> {
        SlaveRequest { slave, request }
    }

    fn sim() -> Simulator {
        Simulator::new(&SimConfig::parse(REGISTERS).expect("parses")).expect("valid")
    }

    #[test]
    fn reads_configured_values_and_refuses_other_addresses() {
        let sim = sim();
        assert_eq!(
            sim.answer(&request(1, Request::ReadHoldingRegisters(0, 3))),
            Some(Ok(Response::ReadHoldingRegisters(vec![100, 101, 0xFFFF])))
        );
        assert_eq!(
            sim.answer(&request(1, Request::ReadInputRegisters(3, 1))),
            Some(Ok(Response::ReadInputRegisters(vec![7])))
        );
        assert_eq!(
            sim.answer(&request(1, Request::ReadCoils(1, 4))),
            Some(Ok(Response::ReadCoils(vec![false, true, false, true])))
        );
        assert_eq!(
            sim.answer(&request(1, Request::ReadHoldingRegisters(8, 3))),
            Some(Err(ExceptionCode::IllegalDataAddress))
        );
        assert_eq!(
            sim.answer(&request(1, Request::ReadHoldingRegisters(0, 126))),
            Some(Err(ExceptionCode::IllegalDataValue))
        );
        assert_eq!(
            sim.answer(&request(1, Request::ReportServerId)),
            Some(Err(ExceptionCode::IllegalFunction))
        );
    }

    #[test]
    fn writes_land_in_the_datastore() {
        let sim = sim();
        let writes = [
            Request::WriteSingleCoil(0, true),
            Request::WriteMultipleCoils(5, Cow::Owned(vec![true, true])),
            Request::WriteSingleRegister(4, 4242),
            Request::WriteMultipleRegisters(6, Cow::Owned(vec![1, 2])),
            Request::MaskWriteRegister(0, 0xFF00, 0x0005),
        ];
        for write in writes {
            assert!(matches!(sim.answer(&request(1, write)), Some(Ok(_))));
        }
        assert_eq!(sim.get(1, Table::Coils, 0, 1), Ok(vec![1]));
        assert_eq!(sim.get(1, Table::Coils, 5, 2), Ok(vec![1, 1]));
        assert_eq!(
            sim.get(1, Table::HoldingRegisters, 4, 4),
            Ok(vec![4242, 0, 1, 2])
        );
        // 100 = 0x0064: high byte kept, low byte from the OR mask.
        assert_eq!(sim.get(1, Table::HoldingRegisters, 0, 1), Ok(vec![0x0005]));
        assert_eq!(
            sim.answer(&request(1, Request::WriteSingleRegister(10, 1))),
            Some(Err(ExceptionCode::IllegalDataAddress))
        );
    }

    #[test]
    fn unknown_and_muted_units_never_answer_but_are_counted() {
        let sim = sim();
        assert_eq!(
            sim.answer(&request(2, Request::ReadHoldingRegisters(0, 1))),
            None
        );
        sim.mute(1, true);
        assert_eq!(
            sim.answer(&request(1, Request::ReadHoldingRegisters(0, 1))),
            None
        );
        sim.mute(1, false);
        assert!(
            sim.answer(&request(1, Request::ReadHoldingRegisters(0, 1)))
                .is_some()
        );
        let stats = sim.stats();
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.by_unit, BTreeMap::from([(1, 2), (2, 1)]));
        assert_eq!(stats.by_function, BTreeMap::from([(3, 3)]));
        assert_eq!(
            stats.to_json().to_string(),
            r#"{"by_function":{"3":3},"by_unit":{"1":2,"2":1},"requests":3}"#
        );
        sim.reset_stats();
        assert_eq!(sim.stats(), SimStats::default());
    }

    #[test]
    fn direct_access_for_tests() {
        let sim = sim();
        sim.set(1, Table::InputRegisters, 0, &[9, 8])
            .expect("inside");
        assert_eq!(sim.get(1, Table::InputRegisters, 0, 2), Ok(vec![9, 8]));
        sim.set(1, Table::DiscreteInputs, 0, &[1, 0])
            .expect("inside");
        assert_eq!(sim.get(1, Table::DiscreteInputs, 0, 2), Ok(vec![1, 0]));
        assert_eq!(sim.get(9, Table::Coils, 0, 1), Err(SimError::NoSuchUnit(9)));
        assert!(sim.set(1, Table::InputRegisters, 3, &[1, 2]).is_err());
    }

    #[test]
    fn bad_registers_files_are_clear_errors() {
        let cases = [
            (
                "units: [{unit: 1, holdingRegisters: {size: 2, values: {1: [1, 2]}}}]",
                "unit 1, holding registers: value at address 2 is outside size 2",
            ),
            (
                "units: [{unit: 1, holdingRegisters: {size: 2, values: {0: [70000]}}}]",
                "unit 1, holding registers: 70000 at address 0 is not a 16-bit register",
            ),
            (
                "units: [{unit: 1, coils: {size: 2, values: {0: [2]}}}]",
                "unit 1, coils: 2 at address 0 is not a bit",
            ),
            (
                "units: [{unit: 1, coils: {size: 70000}}]",
                "size 70000 is more than 65536",
            ),
            (
                "units: [{unit: 1}, {unit: 1}]",
                "unit 1 is configured twice",
            ),
        ];
        for (text, expected) in cases {
            let err = SimConfig::parse(text)
                .and_then(|config| Simulator::new(&config))
                .expect_err(text);
            assert!(err.to_string().contains(expected), "{err}");
        }
        assert!(SimConfig::parse("units: [{unit: 1, holding: {size: 1}}]").is_err());
    }

    #[test]
    fn control_commands_answer_one_json_line() {
        let sim = sim();
        assert_eq!(
            sim.control("get 1 holding 0 2").to_string(),
            r#"{"values":[100,101]}"#
        );
        assert_eq!(
            sim.control("set 1 input 0 5 6").to_string(),
            r#"{"ok":true}"#
        );
        assert_eq!(
            sim.control("get 1 InputRegister 0 2").to_string(),
            r#"{"values":[5,6]}"#
        );
        assert_eq!(sim.control("mute 1").to_string(), r#"{"ok":true}"#);
        assert_eq!(sim.answer(&request(1, Request::ReadCoils(0, 1))), None);
        assert_eq!(sim.control("unmute 1").to_string(), r#"{"ok":true}"#);
        assert_eq!(sim.control("stats")["requests"], 1);
        assert_eq!(sim.control("reset").to_string(), r#"{"ok":true}"#);
        assert_eq!(sim.control("stats")["requests"], 0);
        for (bad, expected) in [
            ("", "empty command"),
            ("jump", "unknown command"),
            ("get 1 holding", "missing address"),
            ("get 1 tank 0 1", "is not a table"),
            ("set 1 holding 0", "missing values"),
            ("set 1 holding 0 x", "value \"x\" is not a number"),
            ("mute 300", "unit is more than 255"),
            ("get 7 holding 0 1", "unit 7 is not configured"),
            ("get 1 holding 9 2", "outside"),
        ] {
            let answer = sim.control(bad);
            let message = answer["error"].as_str().unwrap_or_default();
            assert!(message.contains(expected), "{bad:?}: {answer}");
        }
    }

    #[tokio::test]
    async fn serves_tcp_to_a_tokio_modbus_client() {
        use tokio_modbus::client::{Reader, Writer};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sim = sim();
        let server = tokio::spawn(serve_tcp(listener, sim.clone()));
        let mut client = tokio_modbus::client::tcp::connect_slave(addr, tokio_modbus::Slave(1))
            .await
            .expect("connect");
        assert_eq!(
            client.read_holding_registers(0, 2).await.expect("io"),
            Ok(vec![100, 101])
        );
        client
            .write_single_register(9, 7)
            .await
            .expect("io")
            .expect("ok");
        assert_eq!(sim.get(1, Table::HoldingRegisters, 9, 1), Ok(vec![7]));
        assert_eq!(
            client.read_holding_registers(9, 2).await.expect("io"),
            Err(ExceptionCode::IllegalDataAddress)
        );
        server.abort();
    }

    #[tokio::test]
    async fn serves_rtu_on_a_serial_line() {
        use tokio_modbus::client::Reader;
        let (ours, theirs) = SerialStream::pair().expect("pty pair");
        let sim = sim();
        let server = tokio::spawn(serve_rtu(theirs, sim.clone()));
        let mut client = tokio_modbus::client::rtu::attach_slave(ours, tokio_modbus::Slave(1));
        assert_eq!(
            client.read_coils(2, 3).await.expect("io"),
            Ok(vec![true, false, true])
        );
        assert_eq!(sim.stats().requests, 1);
        server.abort();
    }

    #[test]
    fn uniform_units() {
        let sim = Simulator::new(&SimConfig::uniform([1, 2], 100)).expect("valid");
        assert_eq!(sim.get(2, Table::HoldingRegisters, 99, 1), Ok(vec![0]));
        assert!(sim.get(2, Table::HoldingRegisters, 100, 1).is_err());
    }
}
