//! Property tests of the engine's guarantees, over random sequences of edge and cloud
//! operations on a few int properties, under both conflict policies.

use proptest::prelude::*;

use crate::value::PropertyType;
use crate::wire::payload::{DeviceTwinUpdate, Metadata, MsgTwin, TwinReply};

use super::testkit::{update, value, wire_version};
use super::{ConflictPolicy, DeviceTwin, Effects, Half, RejectReason, TwinContext, same_value};

const NAMES: [&str; 3] = ["a", "b", "c"];
/// Int values; `"01"` equals `"1"` by type.
const VALUES: [&str; 4] = ["0", "1", "01", "2"];

/// One operation on the twin.
#[derive(Debug, Clone)]
enum Op {
    Report {
        name: usize,
        value: usize,
    },
    Desire {
        name: usize,
        value: usize,
    },
    EdgeDelete {
        name: usize,
    },
    CloudWrite {
        name: usize,
        half: Half,
        value: usize,
        cloud: u64,
        edge: u64,
    },
    CloudDelete {
        name: usize,
        cloud: u64,
        edge: u64,
    },
}

fn an_op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let val = 0..VALUES.len();
    let half = prop_oneof![Just(Half::Desired), Just(Half::Reported)];
    prop_oneof![
        3 => (name.clone(), val.clone()).prop_map(|(name, value)| Op::Report { name, value }),
        2 => (name.clone(), val.clone()).prop_map(|(name, value)| Op::Desire { name, value }),
        1 => name.clone().prop_map(|name| Op::EdgeDelete { name }),
        3 => (name.clone(), half, val, 0..6u64, 0..4u64).prop_map(
            |(name, half, value, cloud, edge)| Op::CloudWrite { name, half, value, cloud, edge }
        ),
        1 => (name, 0..6u64, 0..4u64)
            .prop_map(|(name, cloud, edge)| Op::CloudDelete { name, cloud, edge }),
    ]
}

fn a_policy() -> impl Strategy<Value = ConflictPolicy> {
    prop_oneof![
        Just(ConflictPolicy::CloudWins),
        Just(ConflictPolicy::EdgeWins)
    ]
}

/// An int-typed entry with one half set.
fn int_entry(half: Half, v: &str) -> MsgTwin {
    let mut msg = MsgTwin {
        metadata: Some(Metadata::of_type("int")),
        ..MsgTwin::default()
    };
    match half {
        Half::Desired => msg.expected = Some(value(v)),
        Half::Reported => msg.actual = Some(value(v)),
    }
    msg
}

/// The cloud's write of `half` of `name` at `{cloud, edge}`.
fn cloud_write(name: &str, half: Half, v: &str, cloud: u64, edge: u64) -> DeviceTwinUpdate {
    let version = Some(wire_version(cloud as i64, edge as i64));
    let mut msg = int_entry(half, v);
    match half {
        Half::Desired => msg.expected_version = version,
        Half::Reported => msg.actual_version = version,
    }
    update("cloud", vec![(name, Some(msg))])
}

fn cloud_delete(name: &str, cloud: u64, edge: u64) -> DeviceTwinUpdate {
    let msg = MsgTwin {
        metadata: Some(Metadata::of_type("deleted")),
        expected_version: Some(wire_version(cloud as i64, edge as i64)),
        ..MsgTwin::default()
    };
    update("cloud", vec![(name, Some(msg))])
}

fn apply(twin: &mut DeviceTwin, op: &Op, ctx: &TwinContext<'_>) -> Effects {
    match *op {
        Op::Report { name, value } => {
            let request = update(
                "r",
                vec![(NAMES[name], Some(int_entry(Half::Reported, VALUES[value])))],
            );
            twin.edge_update(ctx, &request)
        }
        Op::Desire { name, value } => {
            let request = update(
                "d",
                vec![(NAMES[name], Some(int_entry(Half::Desired, VALUES[value])))],
            );
            twin.edge_update(ctx, &request)
        }
        Op::EdgeDelete { name } => twin.edge_update(ctx, &update("x", vec![(NAMES[name], None)])),
        Op::CloudWrite {
            name,
            half,
            value,
            cloud,
            edge,
        } => twin.cloud_update(
            ctx,
            &cloud_write(NAMES[name], half, VALUES[value], cloud, edge),
        ),
        Op::CloudDelete { name, cloud, edge } => {
            twin.cloud_update(ctx, &cloud_delete(NAMES[name], cloud, edge))
        }
    }
}

/// The twin after `ops`, each at its own time.
fn run(ops: &[Op], policy: ConflictPolicy) -> DeviceTwin {
    let mut twin = DeviceTwin::new();
    for (i, op) in ops.iter().enumerate() {
        apply(
            &mut twin,
            op,
            &TwinContext::new(i as i64).with_policy(policy),
        );
    }
    twin
}

/// One message the edge receives in the convergence test.
#[derive(Debug, Clone)]
enum Delivery {
    /// The cloud's message with this index in the history.
    Cloud(usize),
    /// A mapper report of this value (it touches only the reported half).
    Report(usize),
}

/// The cloud's history of property "a" (message `i` is revision `i + 1` and deletes the
/// property or writes a desired value), and its delivery: every message at least once, some
/// twice, shuffled, with mapper reports in between.
fn a_shuffled_cloud_history() -> impl Strategy<Value = (Vec<(bool, usize)>, Vec<Delivery>)> {
    prop::collection::vec((any::<bool>(), 0..VALUES.len()), 1..8).prop_flat_map(|history| {
        let n = history.len();
        let resent = prop::collection::vec(0..n, 0..n);
        let reports = prop::collection::vec(0..VALUES.len(), 0..4);
        (resent, reports).prop_flat_map(move |(resent, reports)| {
            let deliveries: Vec<Delivery> = (0..n)
                .chain(resent)
                .map(Delivery::Cloud)
                .chain(reports.into_iter().map(Delivery::Report))
                .collect();
            (Just(history.clone()), Just(deliveries).prop_shuffle())
        })
    })
}

/// Message `i` of a cloud history.
fn history_message(history: &[(bool, usize)], i: usize) -> DeviceTwinUpdate {
    let (delete, v) = history[i];
    let cloud = i as u64 + 1;
    if delete {
        cloud_delete("a", cloud, 0)
    } else {
        cloud_write("a", Half::Desired, VALUES[v], cloud, 0)
    }
}

fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(an_op(), 0..max)
}

proptest! {
    #[test]
    fn versions_never_go_backwards(ops in ops(40), policy in a_policy()) {
        let mut twin = DeviceTwin::new();
        for (i, op) in ops.iter().enumerate() {
            let before = twin.summary();
            apply(&mut twin, op, &TwinContext::new(i as i64).with_policy(policy));
            let after = twin.summary();
            for (name, old) in &before {
                let new = after.get(name);
                prop_assert!(new.is_some(), "{name} vanished after {op:?}");
                let new = new.copied().unwrap_or(*old);
                prop_assert!(new.desired_version.dominates(old.desired_version), "{op:?}: {old:?} -> {new:?}");
                prop_assert!(new.reported_version.dominates(old.reported_version), "{op:?}: {old:?} -> {new:?}");
            }
        }
    }

    #[test]
    fn cloud_syncs_in_any_order_converge_to_the_highest_version(
        (history, deliveries) in a_shuffled_cloud_history(),
        policy in a_policy(),
    ) {
        let mut twin = DeviceTwin::new();
        for (i, delivery) in deliveries.iter().enumerate() {
            let ctx = TwinContext::new(i as i64).with_policy(policy);
            match *delivery {
                Delivery::Cloud(m) => {
                    twin.cloud_update(&ctx, &history_message(&history, m));
                }
                Delivery::Report(v) => {
                    let request = update("r", vec![("a", Some(int_entry(Half::Reported, VALUES[v])))]);
                    twin.edge_update(&ctx, &request);
                }
            }
        }
        let last = history.len() - 1;
        let a = &twin.properties["a"];
        prop_assert_eq!(a.desired_version, super::TwinVersion::new(last as u64 + 1, 0));
        let (deleted, v) = history[last];
        match (&a.desired, deleted) {
            (None, true) => {}
            (Some(desired), false) => prop_assert!(same_value(PropertyType::Int, &desired.value, VALUES[v])),
            (other, _) => prop_assert!(false, "desired {other:?}, highest revision deletes: {deleted}"),
        }
    }

    #[test]
    fn replaying_a_message_is_harmless(prefix in ops(25), op in an_op(), policy in a_policy()) {
        let mut twin = run(&prefix, policy);
        apply(&mut twin, &op, &TwinContext::new(100).with_policy(policy));
        let once = twin.clone();
        let again = apply(&mut twin, &op, &TwinContext::new(200).with_policy(policy));
        prop_assert_eq!(&twin, &once);
        prop_assert!(again.changed.is_empty());
        prop_assert!(again.document.is_none());
        prop_assert!(again.delta.is_none());
        if let Some(TwinReply::Ok(result)) = &again.result {
            prop_assert!(result.twin.value().is_none_or(|t| t.is_empty()), "{result:?}");
        }
    }

    #[test]
    fn an_unchanged_report_emits_no_delta_and_no_sync(
        prefix in ops(25),
        name in 0..NAMES.len(),
        value in 0..VALUES.len(),
        policy in a_policy(),
    ) {
        let mut twin = run(&prefix, policy);
        let ctx = TwinContext::new(100).with_policy(policy);
        apply(&mut twin, &Op::Report { name, value }, &ctx);
        let before = twin.clone();
        // The same reading, possibly spelled differently ("01" for "1").
        let same = match VALUES[value] { "1" => 2, "01" => 1, _ => value };
        let effects = apply(&mut twin, &Op::Report { name, value: same }, &TwinContext::new(200).with_policy(policy));
        prop_assert_eq!(&twin, &before);
        prop_assert!(effects.delta.is_none());
        prop_assert!(effects.sync.is_none());
        prop_assert!(effects.document.is_none());
        prop_assert!(effects.changed.is_empty());
        let answered_empty = matches!(&effects.result, Some(TwinReply::Ok(r)) if r.twin.value().is_some_and(|t| t.is_empty()));
        prop_assert!(answered_empty, "{:?}", effects.result);
    }

    #[test]
    fn a_delta_is_emitted_iff_something_changed_and_a_desired_value_waits(
        prefix in ops(25), op in an_op(), policy in a_policy(),
    ) {
        let mut twin = run(&prefix, policy);
        let effects = apply(&mut twin, &op, &TwinContext::new(100).with_policy(policy));
        let pending = twin.pending_desired();
        match (&effects.document, &effects.delta) {
            (None, delta) => prop_assert!(delta.is_none()),
            (Some(_), None) => prop_assert!(pending.is_empty(), "{pending:?}"),
            (Some(_), Some(delta)) => {
                let waiting = delta.delta.value().cloned().unwrap_or_default();
                let expected: std::collections::BTreeMap<String, String> = pending
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                prop_assert!(!expected.is_empty());
                prop_assert_eq!(waiting, expected);
            }
        }
    }

    #[test]
    fn the_delta_view_writes_the_deltas_json(
        prefix in ops(25), op in an_op(), policy in a_policy(),
    ) {
        let mut twin = run(&prefix, policy);
        let ctx = TwinContext::new(100).with_policy(policy).with_event_id("e-1");
        apply(&mut twin, &op, &ctx);
        let built = serde_json::to_string(&twin.delta(&ctx)).expect("JSON");
        let view = serde_json::to_string(&twin.delta_view(&ctx)).expect("JSON");
        prop_assert_eq!(view, built);
        // The service's context leaves the delta to the view; nothing else changes.
        let mut other = run(&prefix, policy);
        let without = apply(&mut other, &op, &ctx.without_delta());
        let mut same = run(&prefix, policy);
        let with = apply(&mut same, &op, &ctx);
        prop_assert!(without.delta.is_none());
        prop_assert_eq!(Effects { delta: None, ..with.clone() }, without);
        prop_assert_eq!(with.delta.is_some(), with.document.is_some() && twin.delta_view(&ctx).is_some());
    }

    #[test]
    fn the_document_shows_the_state_before_and_after(
        prefix in ops(25), op in an_op(), policy in a_policy(),
    ) {
        let mut twin = run(&prefix, policy);
        let before = twin.clone();
        let effects = apply(&mut twin, &op, &TwinContext::new(100).with_policy(policy));
        let docs = effects.document.as_ref().and_then(|d| d.twin.value().cloned()).unwrap_or_default();
        for (name, doc) in docs {
            let doc = doc.unwrap_or_default();
            let last = before.properties.get(&name).and_then(|p| p.snapshot());
            let current = twin.properties.get(&name).and_then(|p| p.snapshot());
            prop_assert_eq!(doc.last.value().cloned(), last);
            prop_assert_eq!(doc.current.value().cloned(), current);
        }
        for name in &effects.changed {
            prop_assert_ne!(before.properties.get(name), twin.properties.get(name));
        }
    }

    #[test]
    fn a_refused_cloud_write_is_accepted_once_the_cloud_adopts_the_reply(
        prefix in ops(25),
        name in 0..NAMES.len(),
        half in prop_oneof![Just(Half::Desired), Just(Half::Reported)],
        value in 0..VALUES.len(),
        cloud in 0..6u64,
        edge in 0..4u64,
        policy in a_policy(),
    ) {
        let mut twin = run(&prefix, policy);
        let ctx = TwinContext::new(100).with_policy(policy);
        let effects = twin.cloud_update(&ctx, &cloud_write(NAMES[name], half, VALUES[value], cloud, edge));
        let version_refusal = effects.rejections.iter().any(|r| matches!(
            r.reason,
            RejectReason::StaleCloudVersion { .. } | RejectReason::StaleEdgeVersion { .. } | RejectReason::EdgeWins { .. }
        ));
        prop_assume!(version_refusal);
        let reply = effects.sync.as_ref().and_then(|s| s.twin.value()).and_then(|t| t.get(NAMES[name]).cloned().flatten());
        prop_assert!(reply.is_some(), "a refusal always sends the edge's state back");
        let reply = reply.unwrap_or_default();
        let known = match half { Half::Desired => reply.expected_version, Half::Reported => reply.actual_version };
        prop_assert!(known.is_some(), "the reply carries the refused half's version: {reply:?}");
        let known = known.unwrap_or_default();
        // The cloud adopts the edge counter and writes a new revision.
        let retry_cloud = (cloud as i64).max(known.cloud) as u64 + 1;
        let retry = cloud_write(NAMES[name], half, VALUES[value], retry_cloud, known.edge as u64);
        let retried = twin.cloud_update(&ctx, &retry);
        prop_assert!(retried.rejections.is_empty(), "{:?}", retried.rejections);
        let property = &twin.properties[NAMES[name]];
        let stored = property.half(half).map(|h| h.value.clone());
        prop_assert!(stored.is_some_and(|s| same_value(PropertyType::Int, &s, VALUES[value])));
    }
}
