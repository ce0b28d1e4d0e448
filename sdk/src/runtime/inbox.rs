//! What the supervisor hands to a device task: desired values (coalesced), resync requests and
//! the stop signal.
//!
//! Desired values are merged, not queued: a storm of 1,000 deltas leaves one pending value per
//! property (the last), so the device task writes each property at most once per wake-up and
//! memory does not grow with the storm.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// The mailbox of one device task.
#[derive(Debug, Default)]
pub struct DeviceInbox {
    desired: Mutex<BTreeMap<String, String>>,
    twin_received: AtomicBool,
    resync: AtomicBool,
    stop: AtomicBool,
    wake: Notify,
}

/// What a device task took from its inbox.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Desired values (wire strings) by property, the latest of each.
    pub desired: BTreeMap<String, String>,
    /// A `twin/get/result` arrived since the last take.
    pub twin_received: bool,
    /// The MQTT connection was re-established: ask for the twin again and re-report everything.
    pub resync: bool,
}

impl DeviceInbox {
    /// Merges desired values; `from_twin_get` marks a `twin/get/result` (full twin) as received.
    pub fn merge_desired(
        &self,
        values: impl IntoIterator<Item = (String, String)>,
        from_twin_get: bool,
    ) {
        self.lock().extend(values);
        if from_twin_get {
            self.twin_received.store(true, Ordering::Release);
        }
        self.wake.notify_one();
    }

    /// Asks the task to resync (after an MQTT reconnect).
    pub fn resync(&self) {
        self.resync.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Asks the task to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether the task was asked to stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Takes everything pending.
    pub fn take(&self) -> Taken {
        Taken {
            desired: std::mem::take(&mut *self.lock()),
            twin_received: self.twin_received.swap(false, Ordering::AcqRel),
            resync: self.resync.swap(false, Ordering::AcqRel),
        }
    }

    /// Waits until something is put in the inbox (returns at once if something was put since
    /// the last wait).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A map of owned strings is valid whatever a panicking holder was doing.
        self.desired
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_storm_of_deltas_coalesces_to_the_last_value_per_property() {
        let inbox = DeviceInbox::default();
        for n in 0..1000 {
            inbox.merge_desired([("level".to_owned(), n.to_string())], false);
        }
        inbox.merge_desired([("mode".to_owned(), "auto".to_owned())], true);
        // The notifications left one permit: this returns at once.
        inbox.changed().await;
        let taken = inbox.take();
        assert_eq!(
            taken.desired,
            BTreeMap::from([
                ("level".to_owned(), "999".to_owned()),
                ("mode".to_owned(), "auto".to_owned())
            ])
        );
        assert!(taken.twin_received);
        assert!(!taken.resync);
        assert_eq!(inbox.take(), Taken::default());
    }

    #[tokio::test]
    async fn resync_and_stop_wake_the_task() {
        let inbox = std::sync::Arc::new(DeviceInbox::default());
        let waiter = {
            let inbox = std::sync::Arc::clone(&inbox);
            tokio::spawn(async move {
                inbox.changed().await;
                inbox.take().resync
            })
        };
        inbox.resync();
        assert!(waiter.await.expect("woken"));
        assert!(!inbox.stopping());
        inbox.stop();
        assert!(inbox.stopping());
    }
}
