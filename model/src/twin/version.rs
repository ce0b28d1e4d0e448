//! The version rule for cloud writes and the conflict policy for desired values.

use serde::{Deserialize, Serialize};

use super::error::RejectReason;
use super::state::TwinVersion;

/// What happens when the cloud writes a desired value without having seen the edge's latest
/// write of it (a mapper or local app wrote `expected` on the edge, and the cloud changed the
/// property before it received that write). See the module documentation for the full rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConflictPolicy {
    /// The cloud's new revision replaces the edge-written value. The edge keeps its own counter
    /// (`{cloud: new, edge: unchanged}`) and tells the cloud so in the cloud-bound sync.
    #[default]
    CloudWins,
    /// The edge-written value stays. The cloud's update is rejected with the edge's current value
    /// and version; a retry that carries that edge counter is accepted.
    EdgeWins,
}

/// How a conflict on one half is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnConflict {
    /// Take the cloud's value, keep the edge counter.
    TakeCloud,
    /// Keep the edge's value, reject the cloud's.
    KeepEdge,
}

impl From<ConflictPolicy> for OnConflict {
    fn from(policy: ConflictPolicy) -> Self {
        match policy {
            ConflictPolicy::CloudWins => OnConflict::TakeCloud,
            ConflictPolicy::EdgeWins => OnConflict::KeepEdge,
        }
    }
}

/// A cloud write the version rule lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Accepted {
    /// The half's version after the write.
    pub version: TwinVersion,
    /// The write replaced an edge write the cloud had not seen (the cloud must learn the edge
    /// counter from the sync).
    pub overrode_edge: bool,
}

/// Judges a cloud write carrying `incoming` against the half's `current` version.
///
/// 1. `incoming.cloud < current.cloud`: an older cloud revision → rejected (stale / reordered).
/// 2. `incoming.edge >= current.edge`: the cloud has seen every edge write → accepted, the half
///    takes `incoming` (KubeEdge's rule).
/// 3. `incoming.cloud == current.cloud`: the revision the edge already has, sent again after the
///    edge overwrote it → rejected.
/// 4. Otherwise a new cloud revision crossed an edge write: `on_conflict` decides.
///
/// An accepted version dominates `current`, so versions never go backwards.
pub(super) fn judge(
    current: TwinVersion,
    incoming: TwinVersion,
    on_conflict: OnConflict,
) -> Result<Accepted, RejectReason> {
    if incoming.cloud < current.cloud {
        return Err(RejectReason::StaleCloudVersion { current, incoming });
    }
    if incoming.edge >= current.edge {
        return Ok(Accepted {
            version: incoming,
            overrode_edge: false,
        });
    }
    if incoming.cloud == current.cloud {
        return Err(RejectReason::StaleEdgeVersion { current, incoming });
    }
    match on_conflict {
        OnConflict::TakeCloud => Ok(Accepted {
            version: TwinVersion::new(incoming.cloud, current.edge),
            overrode_edge: true,
        }),
        OnConflict::KeepEdge => Err(RejectReason::EdgeWins { current, incoming }),
    }
}

/// Judges a cloud delete's version for the reported half: only an older cloud revision
/// (`incoming.cloud < current.cloud`) refuses it, since readings the edge took after the
/// cloud's view do not outrank the cloud's decision to remove the property. The half keeps the
/// higher edge counter.
pub(super) fn judge_reading_removal(
    current: TwinVersion,
    incoming: TwinVersion,
) -> Result<Accepted, RejectReason> {
    if incoming.cloud < current.cloud {
        return Err(RejectReason::StaleCloudVersion { current, incoming });
    }
    Ok(Accepted {
        version: TwinVersion::new(incoming.cloud, incoming.edge.max(current.edge)),
        overrode_edge: incoming.edge < current.edge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(cloud: u64, edge: u64) -> TwinVersion {
        TwinVersion::new(cloud, edge)
    }

    #[test]
    fn an_older_cloud_revision_is_stale_whatever_the_policy() {
        for on_conflict in [OnConflict::TakeCloud, OnConflict::KeepEdge] {
            assert!(matches!(
                judge(v(5, 0), v(4, 9), on_conflict),
                Err(RejectReason::StaleCloudVersion { .. })
            ));
        }
    }

    #[test]
    fn an_informed_write_is_accepted_with_its_own_version() {
        for on_conflict in [OnConflict::TakeCloud, OnConflict::KeepEdge] {
            assert_eq!(
                judge(v(5, 2), v(6, 2), on_conflict),
                Ok(Accepted {
                    version: v(6, 2),
                    overrode_edge: false
                })
            );
            assert_eq!(
                judge(v(5, 2), v(5, 2), on_conflict),
                Ok(Accepted {
                    version: v(5, 2),
                    overrode_edge: false
                })
            );
        }
    }

    #[test]
    fn the_same_revision_sent_again_after_an_edge_write_is_stale() {
        for on_conflict in [OnConflict::TakeCloud, OnConflict::KeepEdge] {
            assert!(matches!(
                judge(v(5, 1), v(5, 0), on_conflict),
                Err(RejectReason::StaleEdgeVersion { .. })
            ));
        }
    }

    #[test]
    fn a_crossing_write_follows_the_policy() {
        assert_eq!(
            judge(v(5, 3), v(6, 1), OnConflict::TakeCloud),
            Ok(Accepted {
                version: v(6, 3),
                overrode_edge: true
            })
        );
        assert!(matches!(
            judge(v(5, 3), v(6, 1), OnConflict::KeepEdge),
            Err(RejectReason::EdgeWins { .. })
        ));
    }

    #[test]
    fn removing_readings_only_refuses_an_older_cloud_revision() {
        assert!(judge_reading_removal(v(5, 0), v(4, 9)).is_err());
        assert_eq!(
            judge_reading_removal(v(5, 3), v(5, 0)),
            Ok(Accepted {
                version: v(5, 3),
                overrode_edge: true
            })
        );
        assert_eq!(
            judge_reading_removal(v(5, 3), v(6, 4)),
            Ok(Accepted {
                version: v(6, 4),
                overrode_edge: false
            })
        );
    }

    #[test]
    fn policy_names_are_camel_case_in_config() {
        assert_eq!(
            serde_json::to_string(&ConflictPolicy::EdgeWins).expect("serialises"),
            r#""edgeWins""#
        );
        assert_eq!(ConflictPolicy::default(), ConflictPolicy::CloudWins);
    }
}
