//! Sending one Modbus request and getting its answer: over TCP (one connection per device,
//! reconnected after a drop) or over an RTU line shared with other devices ([`crate::bus`]).
//! Every request has a timeout ([`crate::exchange`]); errors say what failed, and Modbus
//! exception codes become errors that name the exception, the request and the unit.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::{Request, Response, Slave};

use crate::bus::Line;
use crate::exchange::{TransportError, exchange};
use crate::table::Table;

/// The read request for `count` items of `table` at `start`.
pub fn read_request(table: Table, start: u16, count: u16) -> Request<'static> {
    match table {
        Table::Coils => Request::ReadCoils(start, count),
        Table::DiscreteInputs => Request::ReadDiscreteInputs(start, count),
        Table::HoldingRegisters => Request::ReadHoldingRegisters(start, count),
        Table::InputRegisters => Request::ReadInputRegisters(start, count),
    }
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadData {
    /// Registers.
    Words(Vec<u16>),
    /// Coils or discrete inputs.
    Bits(Vec<bool>),
}

impl ReadData {
    /// The items of a read response; `None` for any other response.
    pub fn from_response(response: Response) -> Option<ReadData> {
        match response {
            Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => {
                Some(ReadData::Bits(bits))
            }
            Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
                Some(ReadData::Words(words))
            }
            _ => None,
        }
    }

    /// How many items.
    pub fn len(&self) -> usize {
        match self {
            ReadData::Words(words) => words.len(),
            ReadData::Bits(bits) => bits.len(),
        }
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How one device is reached.
#[derive(Debug)]
pub enum Link {
    /// Its own TCP connection.
    Tcp(TcpLink),
    /// A unit on a shared serial line.
    Rtu(RtuLink),
}

impl Link {
    /// Sends one request and waits (at most the timeout) for its answer.
    pub async fn call(&mut self, request: Request<'static>) -> Result<Response, TransportError> {
        match self {
            Link::Tcp(link) => link.call(request).await,
            Link::Rtu(link) => link.call(request).await,
        }
    }

    /// The unit (slave) id.
    pub fn unit(&self) -> u8 {
        match self {
            Link::Tcp(link) => link.unit,
            Link::Rtu(link) => link.unit,
        }
    }

    /// `tcp://host:port` or the serial device path, for messages.
    pub fn name(&self) -> String {
        match self {
            Link::Tcp(link) => format!("tcp://{}:{}", link.host, link.port),
            Link::Rtu(link) => link.line.name().to_owned(),
        }
    }

    /// Closes the link (the TCP connection; an RTU line closes when its last device leaves).
    pub async fn close(&mut self) {
        if let Link::Tcp(link) = self
            && let Some(mut ctx) = link.ctx.take()
        {
            let _ = ctx.disconnect().await;
        }
    }
}

/// A Modbus TCP connection to one device, opened on first use and after any failure.
pub struct TcpLink {
    host: String,
    port: u16,
    unit: u8,
    timeout: Duration,
    ctx: Option<Context>,
    /// Set while a request is outstanding: if the caller dropped the request midway, the
    /// connection may still deliver its answer later, so it is not reused.
    in_flight: bool,
}

impl fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpLink")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("unit", &self.unit)
            .field("connected", &self.ctx.is_some())
            .finish()
    }
}

impl TcpLink {
    /// A link to `host:port`, unit `unit`; nothing is opened yet.
    pub fn new(host: String, port: u16, unit: u8, timeout: Duration) -> TcpLink {
        TcpLink {
            host,
            port,
            unit,
            timeout,
            ctx: None,
            in_flight: false,
        }
    }

    /// Opens the connection if it is not open.
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        if self.in_flight {
            self.ctx = None;
            self.in_flight = false;
        }
        if self.ctx.is_some() {
            return Ok(());
        }
        let open = async {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(err) => last = err,
                }
            }
            Err(last)
        };
        let stream = timeout(self.timeout, open)
            .await
            .map_err(|_| TransportError::Timeout(self.timeout))?
            .map_err(TransportError::Io)?;
        self.ctx = Some(tokio_modbus::client::tcp::attach_slave(
            stream,
            Slave(self.unit),
        ));
        tracing::debug!(host = %self.host, port = self.port, "modbus tcp connected");
        Ok(())
    }

    async fn call(&mut self, request: Request<'static>) -> Result<Response, TransportError> {
        self.connect().await?;
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(TransportError::Io(io::ErrorKind::NotConnected.into()));
        };
        self.in_flight = true;
        let result = exchange(ctx, request, self.timeout).await;
        self.in_flight = false;
        if matches!(
            result,
            Err(TransportError::Timeout(_) | TransportError::Io(_) | TransportError::Protocol(_))
        ) {
            // A late answer must not be taken for the next request's: start over.
            self.ctx = None;
        }
        result
    }
}

/// A unit on a shared RTU line.
#[derive(Debug)]
pub struct RtuLink {
    line: Arc<Line>,
    unit: u8,
    timeout: Duration,
}

impl RtuLink {
    /// Unit `unit` on `line`.
    pub fn new(line: Arc<Line>, unit: u8, timeout: Duration) -> RtuLink {
        RtuLink {
            line,
            unit,
            timeout,
        }
    }

    async fn call(&mut self, request: Request<'static>) -> Result<Response, TransportError> {
        let mut port = self.line.lock().await;
        port.call(self.unit, request, self.timeout).await
    }
}

/// An owned write-multiple-coils request.
pub fn write_coils(address: u16, coils: Vec<bool>) -> Request<'static> {
    Request::WriteMultipleCoils(address, Cow::Owned(coils))
}

/// An owned write-multiple-registers request.
pub fn write_registers(address: u16, words: Vec<u16>) -> Request<'static> {
    Request::WriteMultipleRegisters(address, Cow::Owned(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_responses_carry_their_items() {
        assert_eq!(
            ReadData::from_response(Response::ReadInputRegisters(vec![1, 2])),
            Some(ReadData::Words(vec![1, 2]))
        );
        assert_eq!(
            ReadData::from_response(Response::ReadDiscreteInputs(vec![true])).map(|d| d.len()),
            Some(1)
        );
        assert_eq!(
            ReadData::from_response(Response::WriteSingleCoil(1, true)),
            None
        );
    }

    #[tokio::test]
    async fn a_tcp_link_reconnects_after_the_server_drops_it() {
        use crate::sim::{SimConfig, Simulator, serve_tcp};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sim = Simulator::new(&SimConfig::uniform([1], 10)).expect("sim");
        let server = tokio::spawn(serve_tcp(listener, sim.clone()));
        let mut link = TcpLink::new("127.0.0.1".into(), port, 1, Duration::from_secs(2));
        let read = read_request(Table::HoldingRegisters, 0, 2);
        assert_eq!(
            link.call(read.clone()).await.expect("answer"),
            Response::ReadHoldingRegisters(vec![0, 0])
        );
        // The server goes away (all its connections with it) and comes back on the same port.
        server.abort();
        let _ = server.await;
        let down = link.call(read.clone()).await.expect_err("server is down");
        assert!(matches!(down, TransportError::Io(_)), "{down}");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind");
        let server = tokio::spawn(serve_tcp(listener, sim));
        assert!(link.call(read).await.is_ok());
        server.abort();
    }

    #[tokio::test]
    async fn a_silent_unit_times_out() {
        use crate::sim::{SimConfig, Simulator, serve_tcp};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sim = Simulator::new(&SimConfig::uniform([1], 10)).expect("sim");
        let server = tokio::spawn(serve_tcp(listener, sim));
        let mut link = TcpLink::new("127.0.0.1".into(), port, 2, Duration::from_millis(100));
        let err = link
            .call(read_request(Table::Coils, 0, 1))
            .await
            .expect_err("unit 2 does not exist");
        assert!(matches!(err, TransportError::Timeout(_)), "{err}");
        server.abort();
    }
}
