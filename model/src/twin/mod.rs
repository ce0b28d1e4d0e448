//! The twin engine: KubeEdge's DeviceTwin semantics as a pure state machine (no I/O, no clock,
//! no async). The edge agent owns the state, calls one operation per inbound message, persists
//! what [`Effects::changed`] names and publishes what the [`Effects`] carry.
//!
//! # State
//!
//! A [`DeviceTwin`] maps property names to [`PropertyTwin`]s: a desired half (`expected` on the
//! wire) and a reported half (`actual`), each an optional [`TwinHalf`] (value string and the
//! millisecond timestamp at which the edge accepted it) with its own [`TwinVersion`]
//! `{cloud, edge}`. `cloud` is the cloud's revision of the half (the cloud picks it, e.g. the
//! Device's resourceVersion); `edge` counts the edge's writes of the half. A deleted property
//! stays as a tombstone (both halves empty, versions kept) so that an older update cannot bring
//! it back.
//!
//! # Operations and what they emit
//!
//! | operation | result | document | delta | cloud-bound sync |
//! |---|---|---|---|---|
//! | [`DeviceTwin::edge_update`] (mapper `twin/update`) | changed properties, or `{code, reason}` | changed properties | if changed and some desired ≠ reported | the changed halves with versions |
//! | [`DeviceTwin::get`] (mapper `twin/get`) | — (returns the `get/result`) | — | — | — |
//! | [`DeviceTwin::cloud_update`] (`twin/cloud_updated`) | — | changed properties | if changed and some desired ≠ reported | refused halves, and halves where the cloud overrode an edge write |
//! | [`DeviceTwin::add_device`] | — | `last: null` for each twin | desired values without a report | as `cloud_update` |
//! | [`DeviceTwin::remove_device`] | — | — | — | — |
//!
//! Membership operations also fill [`Effects::membership`] (`membership/updated`).
//! [`DeviceTwin::summary`] gives the versions of every property for the cloud's reconcile, and
//! [`DeviceTwin::delta`] the current delta (e.g. to repeat it to a mapper that reconnects).
//!
//! # Versions
//!
//! * An **edge write** of a half (mapper `expected` or `actual`, or a `null` that deletes the
//!   property) adds one to that half's `edge` counter and is synced to the cloud with the new
//!   version. Edge writes are never refused for their version.
//! * A **cloud write** of a half carries the version the cloud assigns, `{c, e}` where `e` is
//!   the latest edge counter the cloud has seen. Against the half's current `{C, E}`:
//!   1. `c < C`: an older revision (stale or reordered) → refused.
//!   2. `e ≥ E`: the cloud has seen every edge write → accepted; the half becomes `{c, e}`.
//!   3. `c = C`, `e < E`: the revision the edge already applied, sent again after the edge wrote
//!      the half → refused.
//!   4. `c > C`, `e < E`: a new cloud revision crossed an edge write → a **conflict**, resolved
//!      by the policy below for the desired half; for the reported half the edge's reading
//!      stays (the device is the authority on what it reports).
//!
//!   A value without a version, or with a negative counter, is refused. Every accepted version
//!   dominates the previous one, so versions never go backwards; the cloud revision with the
//!   highest `c` ends up in the twin whatever order the cloud's messages arrive in.
//! * A refused half is never dropped silently: it is listed in [`Effects::rejections`] and the
//!   edge's current value and version of it go back in the cloud-bound sync. A cloud that adopts
//!   that version (`e = E`, and `c ≥ C`) and sends again is accepted by rule 2.
//!
//! # Conflict policy for desired values
//!
//! [`ConflictPolicy`] is per device (in [`TwinContext`]); it only matters in case 4 for the
//! desired half:
//!
//! * [`ConflictPolicy::CloudWins`] (default): the cloud's value replaces the edge-written one.
//!   The half becomes `{c, E}`: the cloud's revision, and the edge counter the edge already had
//!   (it never goes back). The sync sends the result back so the cloud learns `E` and its next
//!   write is not a conflict. The edge-written value survives only until the cloud's next new
//!   revision of that property.
//! * [`ConflictPolicy::EdgeWins`]: the edge-written value stays and the cloud's write is refused;
//!   the sync carries the edge's value and `{C, E}`. The cloud may adopt the edge's value, or
//!   override it knowingly by sending again with `e = E` (rule 2). Neither side is stuck: every
//!   refusal tells the cloud exactly which version is accepted.
//!
//! What the cloud does with a sync (its side of the contract): it records each half's edge
//! counter `E` and sends its next write of that half with `e = E`. An edge-written desired value
//! arrives with the cloud revision `C` the edge had: if that is still the cloud's latest revision,
//! the edge's value is the newest desired value and the cloud adopts it; if the cloud has a newer
//! revision, the two writes crossed and the policy above decides at the edge (`CloudWins`: the
//! cloud's value lands when its write arrives, nothing to do; `EdgeWins`: the cloud's write is
//! refused, and the cloud adopts the edge's value or resends its own with `e = E`).
//!
//! A cloud **delete** (`metadata.type: "deleted"`) is judged per half that carries a version:
//! the desired half as above, the reported half only by rule 1 (a later reading does not outrank
//! the cloud's decision to remove the property). A refused half refuses the whole delete.
//!
//! # Better than KubeEdge
//!
//! 1. Compare before acting: a value equal to the stored one (by type: `1.0` equals `1` for a
//!    float) bumps no version, writes nothing, and emits no document, delta or sync; an edge
//!    update of only such values gets a result with an empty twin map.
//! 2. Values are checked against the property type (from the model's [`PropertySchema`] when
//!    known, else the twin's `metadata.type`) on both halves; desired values also against the
//!    model's bounds and `ReadOnly`. Any UTF-8 up to [`TwinContext::max_value_bytes`] (default
//!    64 KiB) is accepted: there is no KubeEdge character set rule. Refusals answer KubeEdge's
//!    `{code: 400, reason}` with KubeEdge's reason text first.
//! 3. Stale, reordered and crossing updates follow the documented rules above; edge updates are
//!    atomic (one refused property refuses the update and changes nothing).
//!
//! `docs/compatibility.md` lists every place where the wire behaviour differs from edgecore.

mod cloud_update;
mod context;
mod edge_update;
mod effects;
mod error;
mod membership;
mod render;
mod schema;
mod state;
mod version;
mod write;

#[cfg(test)]
mod kubeedge_replay;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testkit;

pub use context::{EdgeDesired, TwinContext};
pub use edge_update::EdgeUndo;
pub use effects::Effects;
pub use error::{RejectReason, Rejection, TwinError, get_device_not_found};
pub use render::DeltaView;
pub use schema::{DeviceSchema, PropertySchema, type_from_name};
pub use state::{
    DeviceTwin, Half, PropertySummary, PropertyTwin, TwinHalf, TwinVersion, same_value,
};
pub use version::ConflictPolicy;
