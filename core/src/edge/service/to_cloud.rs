//! The twin syncs the edge queues for the cloud (one outbox entry per property, see
//! `crate::edge::store::outbox`).
//!
//! - [`queue_sync`]: the engine's sync of what the edge wrote, as KubeEdge's `twin/edge_updated`
//!   carries it (the halves that changed, with their versions).
//! - [`queue_accepted`]: the echo of desired values the edge accepted from the cloud. The twin
//!   engine (like KubeEdge) does not sync them; the echo carries every half the property holds,
//!   with its version, and the cloud reads its `expected` half as `observedDesired`: the
//!   property's condition becomes Applied. It holds the whole property, so when it replaces an
//!   unsent reading of the same property nothing is lost. The echo is best effort: with the
//!   outbox full it is left out (the read-back still verifies the value), so it never makes a
//!   cloud change fail.

use std::collections::BTreeSet;

use crate::edge::devices::DeviceEntry;
use crate::edge::store::{NewEntry, OutboxKind, Scope, StoreError};
use edgetwin_model::twin::{Effects, Half, PropertyTwin};
use edgetwin_model::wire::payload::MsgTwin;

/// Queues the engine's cloud-bound sync of `effects`.
pub(super) fn queue_sync(
    scope: &mut Scope<'_>,
    entry: &DeviceEntry,
    effects: &Effects,
    now_ms: i64,
) -> Result<(), StoreError> {
    let sync = effects.sync.as_ref().and_then(|sync| sync.twin.value());
    for (name, twin) in sync.into_iter().flatten() {
        queue(scope, entry, name, twin, now_ms)?;
    }
    Ok(())
}

/// Queues the echo of the desired values a cloud update (or a new device) set: every changed
/// property that holds a desired value the engine did not refuse and that the sync of `effects`
/// does not already carry.
pub(super) fn queue_accepted(
    scope: &mut Scope<'_>,
    entry: &DeviceEntry,
    effects: &Effects,
    now_ms: i64,
) -> Result<(), StoreError> {
    let synced: BTreeSet<&String> = effects
        .sync
        .as_ref()
        .and_then(|sync| sync.twin.value())
        .map(|twins| twins.keys().collect())
        .unwrap_or_default();
    let refused: BTreeSet<&str> = effects
        .rejections
        .iter()
        .filter(|rejection| rejection.half != Some(Half::Reported))
        .map(|rejection| rejection.property.as_str())
        .collect();
    for name in &effects.changed {
        if synced.contains(name) || refused.contains(name.as_str()) {
            continue;
        }
        let Some(property) = entry.twin.property(name) else {
            continue;
        };
        if property.desired.is_none() {
            continue;
        }
        match queue(scope, entry, name, &held(property), now_ms) {
            Ok(()) => {}
            Err(StoreError::OutboxFull { capacity }) => {
                tracing::debug!(device = %entry.key, property = %name, capacity, "outbox full: echo of the desired value left out");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The halves a live property holds, with their versions; `None` for a tombstone.
fn held(property: &PropertyTwin) -> Option<MsgTwin> {
    let mut twin = property.snapshot()?;
    if twin.expected.is_some() {
        twin.expected_version = Some(property.desired_version.to_wire());
    }
    if twin.actual.is_some() {
        twin.actual_version = Some(property.reported_version.to_wire());
    }
    Some(twin)
}

fn queue(
    scope: &mut Scope<'_>,
    entry: &DeviceEntry,
    name: &str,
    twin: &Option<MsgTwin>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let payload = serde_json::to_string(twin).map_err(|source| StoreError::Encode {
        what: "outbox twin",
        source,
    })?;
    scope.queue(NewEntry {
        kind: OutboxKind::Twin,
        device: &entry.key,
        property: Some(name),
        payload: &payload,
        now_ms,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetwin_model::twin::{TwinHalf, TwinVersion};
    use edgetwin_model::value::PropertyType;
    use edgetwin_model::wire::payload::TwinValue;

    fn property() -> PropertyTwin {
        let mut twin = PropertyTwin::new(PropertyType::String, false);
        twin.desired = Some(TwinHalf {
            value: "on".into(),
            timestamp_ms: 1,
        });
        twin.desired_version = TwinVersion::new(4, 0);
        twin.reported = Some(TwinHalf {
            value: "off".into(),
            timestamp_ms: 2,
        });
        twin.reported_version = TwinVersion::new(0, 7);
        twin
    }

    #[test]
    fn the_echo_holds_both_halves_with_their_versions() {
        let twin = held(&property()).expect("live");
        assert_eq!(twin.expected, Some(TwinValue::at("on".to_owned(), 1)));
        assert_eq!(
            twin.expected_version,
            Some(TwinVersion::new(4, 0).to_wire())
        );
        assert_eq!(twin.actual, Some(TwinValue::at("off".to_owned(), 2)));
        assert_eq!(twin.actual_version, Some(TwinVersion::new(0, 7).to_wire()));
    }

    #[test]
    fn a_tombstone_holds_nothing() {
        let mut gone = property();
        gone.deleted = true;
        assert_eq!(held(&gone), None);
    }
}
