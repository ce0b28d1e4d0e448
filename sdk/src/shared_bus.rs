//! A fair shared bus: one request at a time on a transport that several device sessions share
//! (Modbus RTU on one RS-485 line, one BLE adapter, one I²C bus).
//!
//! - **One in flight**: [`SharedBus::lock`] hands out exclusive access to the transport.
//! - **FIFO fairness**: waiting sessions get the bus in the order they asked for it (tokio's
//!   mutex is fair), so a chatty device cannot starve a slow one.
//! - **Per-request timeout**: [`SharedBus::timed`] bounds one request, not the time spent
//!   waiting in the queue, and turns an overrun into [`DriverError::Timeout`].
//! - **Turnaround gap**: an optional quiet time between the end of one request and the start of
//!   the next (Modbus RTU needs 3.5 character times between frames).
//!
//! ```
//! # use std::time::Duration;
//! # use edgetwin_sdk::{SharedBus, DriverError};
//! # async fn demo() -> Result<(), DriverError> {
//! let bus = SharedBus::new(Vec::<u8>::new(), Duration::from_millis(200));
//! let mut line = bus.lock().await; // waits for the sessions queued before us
//! bus.timed(async { line.push(0x01); Ok::<_, DriverError>(()) }).await??;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use crate::driver::DriverError;

/// A transport shared by several sessions. Clone it into each session of the bus.
#[derive(Debug)]
pub struct SharedBus<T> {
    slot: Arc<Mutex<Slot<T>>>,
    timeout: Duration,
    gap: Duration,
}

impl<T> Clone for SharedBus<T> {
    fn clone(&self) -> Self {
        Self {
            slot: Arc::clone(&self.slot),
            timeout: self.timeout,
            gap: self.gap,
        }
    }
}

#[derive(Debug)]
struct Slot<T> {
    transport: T,
    released_at: Option<Instant>,
}

/// Exclusive access to the bus's transport; the next session gets the bus when this is dropped.
#[derive(Debug)]
pub struct BusGuard<'a, T> {
    slot: MutexGuard<'a, Slot<T>>,
}

impl<T> SharedBus<T> {
    /// A bus over `transport` whose requests time out after `timeout`.
    pub fn new(transport: T, timeout: Duration) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Slot {
                transport,
                released_at: None,
            })),
            timeout,
            gap: Duration::ZERO,
        }
    }

    /// Sets the quiet time kept between the end of one request and the start of the next.
    pub fn with_gap(mut self, gap: Duration) -> Self {
        self.gap = gap;
        self
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits for the bus (first come, first served), then for the turnaround gap.
    pub async fn lock(&self) -> BusGuard<'_, T> {
        let slot = self.slot.lock().await;
        if let Some(released) = slot.released_at {
            tokio::time::sleep_until(released + self.gap).await;
        }
        BusGuard { slot }
    }

    /// Runs one request under the bus's timeout.
    pub async fn timed<F: Future>(&self, request: F) -> Result<F::Output, DriverError> {
        tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| DriverError::Timeout(self.timeout))
    }
}

impl<T> Deref for BusGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.slot.transport
    }
}

impl<T> DerefMut for BusGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.slot.transport
    }
}

impl<T> Drop for BusGuard<'_, T> {
    fn drop(&mut self) {
        self.slot.released_at = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_get_the_bus_in_arrival_order_one_at_a_time() {
        let bus = SharedBus::new(Vec::<u32>::new(), Duration::from_secs(5));
        let first = bus.lock().await;
        let mut waiters = Vec::new();
        for session in 0..5u32 {
            let bus = bus.clone();
            waiters.push(tokio::spawn(async move {
                let mut line = bus.lock().await;
                line.push(session);
                // Yield while holding the bus: nobody else may get in meanwhile.
                tokio::task::yield_now().await;
                line.push(session);
            }));
            // Let this waiter enqueue before the next one is spawned.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for waiter in waiters {
            waiter.await.expect("waiter ran");
        }
        let log = bus.lock().await.clone();
        assert_eq!(log, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_times_out_and_frees_the_bus() {
        let bus = SharedBus::new(0u8, Duration::from_millis(100));
        {
            let _line = bus.lock().await;
            let slow = bus.timed(tokio::time::sleep(Duration::from_secs(10))).await;
            assert_eq!(slow, Err(DriverError::Timeout(Duration::from_millis(100))));
        }
        let fast = bus.timed(async { 7 }).await;
        assert_eq!(fast, Ok(7));
        assert_eq!(*bus.lock().await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_turnaround_gap_separates_requests() {
        let bus = SharedBus::new((), Duration::from_secs(1)).with_gap(Duration::from_millis(4));
        drop(bus.lock().await);
        let released = Instant::now();
        drop(bus.lock().await);
        assert!(Instant::now() >= released + Duration::from_millis(4));
    }
}
