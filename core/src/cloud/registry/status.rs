//! How a status patch merges into a Device's status.
//!
//! A JSON merge patch would replace `status.twins` as a whole, so a writer reporting property A
//! would erase what another wrote for property B. Instead, a patch is itself a [`DeviceStatus`]
//! in which *only the fields that are set* change the stored status:
//! - `twins` merge by `propertyName`: a twin in the patch updates the stored twin of the same
//!   property field by field (`reported`, `observedDesired`, `condition` each replace the stored
//!   value when set and keep it when absent; `clearCondition`, which only a patch carries,
//!   removes the stored condition); a twin for a new property is appended;
//! - `state`, `lastOnlineTime`, `reportToCloud`, `reportCycle`, `observedGeneration` replace the
//!   stored value when set.
//!
//! Nothing else is ever removed by a patch. The same function folds several pending patches into one
//! (`merge(&mut pending, &next)`), which is how a caller coalesces status writes.

use edgetwin_model::devices::{DeviceStatus, Twin};

/// Merges `patch` into `status` (see the [module docs](self)). Returns whether anything changed.
pub fn merge(status: &mut DeviceStatus, patch: &DeviceStatus) -> bool {
    let before = status.clone();
    for twin in &patch.twins {
        merge_twin(status.twin_mut(&twin.property_name), twin);
    }
    replace_if_set(&mut status.state, &patch.state);
    replace_if_set(&mut status.last_online_time, &patch.last_online_time);
    replace_if_set(&mut status.report_to_cloud, &patch.report_to_cloud);
    replace_if_set(&mut status.report_cycle, &patch.report_cycle);
    replace_if_set(&mut status.observed_generation, &patch.observed_generation);
    *status != before
}

fn merge_twin(twin: &mut Twin, patch: &Twin) {
    replace_if_set(&mut twin.reported, &patch.reported);
    replace_if_set(&mut twin.observed_desired, &patch.observed_desired);
    if patch.clear_condition {
        twin.condition = None;
        // Kept when folding patches: the folded patch must still clear what is stored.
        twin.clear_condition = true;
    }
    replace_if_set(&mut twin.condition, &patch.condition);
}

fn replace_if_set<T: Clone>(field: &mut Option<T>, patch: &Option<T>) {
    if let Some(value) = patch {
        *field = Some(value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetwin_model::devices::{ConditionType, PropertyCondition, TwinProperty};

    fn reported(property: &str, value: &str) -> Twin {
        Twin {
            reported: Some(TwinProperty::new(value)),
            ..Twin::new(property)
        }
    }

    #[test]
    fn twins_merge_by_property_name_and_field_by_field() {
        let mut status = DeviceStatus {
            twins: vec![reported("red", "OFF"), reported("green", "ON")],
            state: Some("online".into()),
            ..DeviceStatus::default()
        };
        let failed = PropertyCondition::new(ConditionType::Failed, jiff::Timestamp::UNIX_EPOCH);
        let patch = DeviceStatus {
            twins: vec![
                Twin {
                    condition: Some(failed.clone()),
                    ..Twin::new("green")
                },
                reported("amber", "OFF"),
            ],
            observed_generation: Some(4),
            ..DeviceStatus::default()
        };
        assert!(merge(&mut status, &patch));
        assert_eq!(status.twins.len(), 3);
        assert_eq!(status.twin("red"), Some(&reported("red", "OFF")));
        let green = status.twin("green").expect("green kept");
        assert_eq!(green.reported, Some(TwinProperty::new("ON")), "kept");
        assert_eq!(green.condition, Some(failed), "added");
        assert_eq!(status.twin("amber"), Some(&reported("amber", "OFF")));
        assert_eq!(status.state.as_deref(), Some("online"), "unset fields keep");
        assert_eq!(status.observed_generation, Some(4));
    }

    #[test]
    fn a_cleared_condition_is_removed_and_a_later_one_kept_when_folded() {
        let failed = PropertyCondition::new(ConditionType::ReadFailed, jiff::Timestamp::UNIX_EPOCH);
        let mut status = DeviceStatus {
            twins: vec![Twin {
                condition: Some(failed.clone()),
                ..reported("hum", "40")
            }],
            ..DeviceStatus::default()
        };
        let clear = DeviceStatus {
            twins: vec![Twin {
                clear_condition: true,
                ..Twin::new("hum")
            }],
            ..DeviceStatus::default()
        };
        let mut folded = clear.clone();
        merge(
            &mut folded,
            &DeviceStatus {
                twins: vec![Twin {
                    condition: Some(failed.clone()),
                    ..Twin::new("hum")
                }],
                ..DeviceStatus::default()
            },
        );
        let mut again = status.clone();
        merge(&mut again, &folded);
        assert_eq!(
            again.twin("hum").and_then(|t| t.condition.clone()),
            Some(failed)
        );

        assert!(merge(&mut status, &clear));
        let hum = status.twin("hum").expect("kept");
        assert_eq!(hum.condition, None);
        assert_eq!(hum.reported, Some(TwinProperty::new("40")), "kept");
        let json = serde_json::to_value(&status).expect("serialises");
        assert!(!json.to_string().contains("clear"), "{json}");
    }

    #[test]
    fn an_empty_or_repeated_patch_changes_nothing() {
        let mut status = DeviceStatus {
            twins: vec![reported("red", "ON")],
            ..DeviceStatus::default()
        };
        assert!(!merge(&mut status, &DeviceStatus::default()));
        let patch = DeviceStatus {
            twins: vec![reported("red", "ON")],
            ..DeviceStatus::default()
        };
        assert!(!merge(&mut status, &patch));
    }

    #[test]
    fn folding_patches_keeps_the_latest_value_of_each_field() {
        let mut pending = DeviceStatus::default();
        for value in ["1", "2", "3"] {
            merge(
                &mut pending,
                &DeviceStatus {
                    twins: vec![reported("count", value)],
                    ..DeviceStatus::default()
                },
            );
        }
        merge(
            &mut pending,
            &DeviceStatus {
                state: Some("online".into()),
                ..DeviceStatus::default()
            },
        );
        assert_eq!(pending.twins, vec![reported("count", "3")]);
        assert_eq!(pending.state.as_deref(), Some("online"));
    }
}
