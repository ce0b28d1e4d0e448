//! The SDK driver: Modbus devices as edgetwin sessions.
//!
//! [`ModbusDriver`] validates a device's configuration into [`DeviceSettings`] and one
//! [`Field`] per property, and opens a [`ModbusSession`]: a TCP connection of its own, or a
//! unit on a shared RTU line. `connect` asks the unit one small question (reads one item of its
//! first property) so that a dead slave fails to connect instead of looking online.
//!
//! A batched read is planned once per set of points ([`crate::plan`]) and replayed every
//! cycle. A read stops at the first timeout: the unit is silent, so the rest of the cycle's
//! requests fail at once instead of each holding the line for another timeout. When the device
//! refuses a merged request with "illegal data address" or "illegal data value" (a bridged hole
//! it does not map, or a quantity it does not support), the request is split into one request
//! per property, for this cycle and from then on, so that each property gets its own answer.

use std::collections::HashMap;

use edgetwin_sdk::Value;
use edgetwin_sdk::{DeviceConfig, DeviceId, Driver, DriverError, Point, PointId, Session};
use tokio_modbus::{ExceptionCode, Request, Response};

use crate::bus::Lines;
use crate::codec::{Field, Items, Write};
use crate::config::{ConfigError, DeviceSettings, LinkSettings, ProtocolConfig, VisitorConfig};
use crate::exchange::{TransportError, describe};
use crate::plan::{PlanLimits, ReadRequest, Span, plan};
use crate::table::{MAX_WRITE_REGISTERS, Table};
use crate::transport::{
    Link, ReadData, RtuLink, TcpLink, read_request, write_coils, write_registers,
};

/// The Modbus protocol driver. One value serves every Modbus device of a mapper; devices on the
/// same serial port share its line.
#[derive(Debug, Default)]
pub struct ModbusDriver {
    lines: Lines,
}

impl ModbusDriver {
    /// A driver with no line open yet.
    pub fn new() -> ModbusDriver {
        ModbusDriver::default()
    }
}

type Config = DeviceConfig<ProtocolConfig, VisitorConfig>;

/// A device's configuration, validated.
struct Resolved {
    settings: DeviceSettings,
    fields: HashMap<PointId, Field>,
}

impl Resolved {
    fn new(device: &Config) -> Result<Resolved, DriverError> {
        let settings = device.protocol.settings().map_err(|e| protocol_error(&e))?;
        let fields = device
            .points
            .iter()
            .map(|point| {
                point
                    .visitor
                    .field(point.ty, &point.limits, &settings.limits)
                    .map(|field| (point.id, field))
                    .map_err(|e| visitor_error(&point.property, &e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Resolved { settings, fields })
    }
}

fn protocol_error(err: &ConfigError) -> DriverError {
    DriverError::Config(format!("protocol.configData.{err}"))
}

fn visitor_error(property: &str, err: &ConfigError) -> DriverError {
    DriverError::Config(format!("property {property}: visitors.configData.{err}"))
}

impl Driver for ModbusDriver {
    const PROTOCOL: &'static str = "modbus";
    type ProtocolConfig = ProtocolConfig;
    type VisitorConfig = VisitorConfig;
    type Session = ModbusSession;

    fn validate(&self, device: &Config) -> Result<(), DriverError> {
        Resolved::new(device)?;
        for key in device.protocol.unknown_keys() {
            tracing::warn!(device = %device.id, key, "unknown key in protocol.configData, ignored");
        }
        for point in &device.points {
            for key in point.visitor.unknown_keys() {
                tracing::warn!(
                    device = %device.id,
                    property = %point.property,
                    key,
                    "unknown key in visitors.configData, ignored"
                );
            }
        }
        Ok(())
    }

    async fn connect(&self, device: &Config) -> Result<ModbusSession, DriverError> {
        let Resolved { settings, fields } = Resolved::new(device)?;
        let link = match &settings.link {
            LinkSettings::Tcp { host, port } => Link::Tcp(TcpLink::new(
                host.clone(),
                *port,
                settings.unit,
                settings.timeout,
            )),
            LinkSettings::Rtu(serial) => Link::Rtu(RtuLink::new(
                self.lines.attach(serial)?,
                settings.unit,
                settings.timeout,
            )),
        };
        let mut session = ModbusSession {
            device: device.id.clone(),
            link,
            retries: settings.retries,
            limits: settings.limits,
            fields,
            plans: HashMap::new(),
            requests: 0,
        };
        let first = device
            .points
            .iter()
            .filter_map(|p| session.fields.get(&p.id))
            .next()
            .cloned();
        if let Some(first) = first {
            session.probe(&first).await?;
        }
        tracing::info!(device = %device.id, link = %session.link.name(), unit = session.link.unit(), "modbus device answered");
        Ok(session)
    }
}

/// An open Modbus device.
#[derive(Debug)]
pub struct ModbusSession {
    device: DeviceId,
    link: Link,
    retries: u32,
    limits: PlanLimits,
    fields: HashMap<PointId, Field>,
    /// Read plans by the exact list of points read together (the runtime reads the same
    /// groups every cycle).
    plans: HashMap<Vec<PointId>, Vec<ReadRequest>>,
    requests: u64,
}

impl ModbusSession {
    /// Requests sent so far (each retry counts).
    pub fn requests_sent(&self) -> u64 {
        self.requests
    }

    /// Asks the unit one small question: any answer, even an exception, means it is there.
    /// Silence is a transient error (the runtime retries with backoff), not a timeout of a
    /// read, so its message names the unit and the line.
    async fn probe(&mut self, field: &Field) -> Result<(), DriverError> {
        let request = read_request(field.table, field.address, 1);
        match self.send(request.clone()).await {
            Ok(_) => Ok(()),
            Err(TransportError::Exception(code)) if !is_unreachable(code) => {
                tracing::debug!(device = %self.device, exception = ?code, "probe answered with an exception: the unit is there");
                Ok(())
            }
            // The device state shows this reason: say which unit stayed silent where.
            Err(TransportError::Timeout(after)) => Err(DriverError::Io(format!(
                "unit {} on {} did not answer within {after:?} ({})",
                self.link.unit(),
                self.link.name(),
                describe(&request)
            ))),
            Err(err) => Err(self.driver_error(err, &request)),
        }
    }

    /// Sends a request, again after transport failures (up to the configured retries).
    async fn send(&mut self, request: Request<'static>) -> Result<Response, TransportError> {
        let mut attempt = 0;
        loop {
            self.requests += 1;
            match self.link.call(request.clone()).await {
                Err(err) if err.retryable() && attempt < self.retries => {
                    attempt += 1;
                    tracing::debug!(device = %self.device, request = %describe(&request), error = %err, attempt, "retrying");
                }
                result => return result,
            }
        }
    }

    /// Sends a request; failures become the SDK's errors.
    async fn call(&mut self, request: Request<'static>) -> Result<Response, DriverError> {
        match self.send(request.clone()).await {
            Ok(response) => Ok(response),
            Err(err) => Err(self.driver_error(err, &request)),
        }
    }

    fn driver_error(&self, err: TransportError, request: &Request<'_>) -> DriverError {
        err.into_driver_error(&self.link.name(), self.link.unit(), request)
    }

    /// Runs one read request; a response shorter than asked is a protocol error.
    async fn read_items(&mut self, request: &ReadRequest) -> Result<ReadData, TransportError> {
        let response = self.send(request_of(request)).await?;
        match ReadData::from_response(response) {
            Some(data) if data.len() >= usize::from(request.count) => Ok(data),
            Some(data) => Err(TransportError::Protocol(format!(
                "{} items for a read of {}",
                data.len(),
                request.count
            ))),
            None => Err(TransportError::Protocol(
                "a response that is not a read".into(),
            )),
        }
    }

    /// Runs one planned read and records its results. Returns the exception when the device
    /// refused a merged read (several members) in a way that splitting may fix. After a
    /// timeout the unit is `silent` and every later request of the cycle fails at once.
    async fn run_read(
        &mut self,
        request: &ReadRequest,
        spans: &[Span],
        outcome: &mut Outcome<'_>,
        silent: &mut Option<DriverError>,
    ) -> Option<ExceptionCode> {
        if let Some(err) = silent {
            outcome.fail(&request.members, err);
            return None;
        }
        match self.read_items(request).await {
            Ok(data) => outcome.decode(request, spans, &data),
            Err(TransportError::Exception(code))
                if refused_range(code) && request.members.len() > 1 =>
            {
                return Some(code);
            }
            Err(err) => {
                let timed_out = matches!(err, TransportError::Timeout(_));
                let err = self.driver_error(err, &request_of(request));
                if timed_out {
                    tracing::debug!(device = %self.device, error = %err, "unit silent; the rest of this cycle is skipped");
                    *silent = Some(err.clone());
                }
                outcome.fail(&request.members, &err);
            }
        }
        None
    }

    fn field(&self, id: PointId) -> Result<&Field, DriverError> {
        self.fields
            .get(&id)
            .ok_or_else(|| DriverError::Unsupported(format!("point {} is not configured", id.0)))
    }

    /// The plan for this list of points, made on first use.
    fn plan_for(&mut self, ids: &[PointId], spans: &[Span]) -> Vec<ReadRequest> {
        if let Some(cached) = self.plans.get(ids) {
            return cached.clone();
        }
        let planned = plan(spans, &self.limits);
        tracing::debug!(
            device = %self.device,
            points = ids.len(),
            requests = planned.len(),
            "read plan"
        );
        self.plans.insert(ids.to_vec(), planned.clone());
        planned
    }
}

/// The Modbus request of a planned read.
fn request_of(read: &ReadRequest) -> Request<'static> {
    read_request(read.table, read.start, read.count)
}

/// Exceptions that mean the unit behind a gateway did not answer.
fn is_unreachable(code: ExceptionCode) -> bool {
    matches!(
        code,
        ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice
    )
}

/// Exceptions after which a merged read is worth splitting per property.
fn refused_range(code: ExceptionCode) -> bool {
    matches!(
        code,
        ExceptionCode::IllegalDataAddress | ExceptionCode::IllegalDataValue
    )
}

/// The results of one read cycle, filled request by request.
struct Outcome<'a> {
    points: &'a [&'a Point<VisitorConfig>],
    fields: Vec<Option<Field>>,
    results: Vec<Option<Result<Value, DriverError>>>,
}

impl Outcome<'_> {
    fn fail(&mut self, members: &[usize], err: &DriverError) {
        for &member in members {
            self.results[member] = Some(Err(err.clone()));
        }
    }

    fn decode(&mut self, request: &ReadRequest, spans: &[Span], data: &ReadData) {
        for &member in &request.members {
            let Some(field) = &self.fields[member] else {
                continue;
            };
            let span = &spans[member];
            let items = match data {
                ReadData::Words(words) => request.items_of(span, words).map(Items::Registers),
                ReadData::Bits(bits) => request.items_of(span, bits).map(Items::Bits),
            };
            let result = match items {
                Some(items) => field.decode(items).map_err(|err| {
                    DriverError::Rejected(format!(
                        "{} {}..{} as {}: {err}",
                        field.table,
                        field.address,
                        span.end(),
                        field.data_type
                    ))
                }),
                None => Err(DriverError::Io("the response is too short".into())),
            };
            self.results[member] = Some(result);
        }
    }
}

impl Session for ModbusSession {
    type Visitor = VisitorConfig;

    async fn read(&mut self, points: &[&Point<VisitorConfig>]) -> Vec<Result<Value, DriverError>> {
        let ids: Vec<PointId> = points.iter().map(|p| p.id).collect();
        let mut outcome = Outcome {
            points,
            fields: ids.iter().map(|id| self.fields.get(id).cloned()).collect(),
            results: vec![None; points.len()],
        };
        // Unknown points get an error and an empty span that the planner reads with the rest.
        let spans: Vec<Span> = outcome
            .fields
            .iter()
            .map(|field| match field {
                Some(f) => Span {
                    table: f.table,
                    start: f.address,
                    count: f.count,
                },
                None => Span {
                    table: Table::HoldingRegisters,
                    start: 0,
                    count: 1,
                },
            })
            .collect();
        let planned = self.plan_for(&ids, &spans);
        let mut replanned: Option<Vec<ReadRequest>> = None;
        let mut silent: Option<DriverError> = None;
        for request in &planned {
            let Some(code) = self
                .run_read(request, &spans, &mut outcome, &mut silent)
                .await
            else {
                continue;
            };
            tracing::info!(
                device = %self.device,
                request = %describe(&request_of(request)),
                exception = ?code,
                "the device refused a merged read; reading these properties one by one"
            );
            let singles = request.split(&spans);
            for single in &singles {
                // One member each: never refused as a merged read.
                self.run_read(single, &spans, &mut outcome, &mut silent)
                    .await;
            }
            let mut next = replanned.take().unwrap_or_else(|| planned.clone());
            if let Some(at) = next.iter().position(|r| r == request) {
                next.splice(at..=at, singles);
            }
            replanned = Some(next);
        }
        if let Some(next) = replanned {
            self.plans.insert(ids, next);
        }
        let unknown = |i: usize| {
            DriverError::Unsupported(format!(
                "property {} has no Modbus field",
                outcome.points[i].property
            ))
        };
        outcome
            .results
            .iter()
            .enumerate()
            .map(|(i, result)| result.clone().unwrap_or_else(|| Err(unknown(i))))
            .collect()
    }

    async fn write(
        &mut self,
        point: &Point<VisitorConfig>,
        value: &Value,
    ) -> Result<(), DriverError> {
        let field = self.field(point.id)?.clone();
        if !field.table.writable() {
            return Err(DriverError::Unsupported(format!(
                "{}: {} are read-only in Modbus",
                point.property, field.table
            )));
        }
        let write = field.encode(value).map_err(|err| {
            DriverError::Rejected(format!("{}: cannot write {value}: {err}", point.property))
        })?;
        let request = match write {
            Write::SingleCoil { address, on } => Request::WriteSingleCoil(address, on),
            Write::MultipleCoils { address, coils } => write_coils(address, coils),
            Write::SingleRegister { address, word } => Request::WriteSingleRegister(address, word),
            Write::MultipleRegisters { address, words } => {
                if words.len() > usize::from(MAX_WRITE_REGISTERS) {
                    return Err(DriverError::Rejected(format!(
                        "{}: {} registers are more than one write may carry ({MAX_WRITE_REGISTERS})",
                        point.property,
                        words.len()
                    )));
                }
                write_registers(address, words)
            }
            Write::RegisterBit { address, on } => {
                let current = match self
                    .call(read_request(Table::HoldingRegisters, address, 1))
                    .await?
                {
                    Response::ReadHoldingRegisters(words) if words.len() == 1 => words[0],
                    _ => {
                        return Err(DriverError::Io(format!(
                            "unexpected answer reading holding register {address}"
                        )));
                    }
                };
                let updated = field.with_bit(current, on);
                if updated == current {
                    return Ok(());
                }
                Request::WriteSingleRegister(address, updated)
            }
        };
        self.call(request).await.map(|_| ())
    }

    async fn disconnect(mut self) {
        self.link.close().await;
    }
}

#[cfg(test)]
mod tests;
