//! Typed MQTT topics of KubeEdge's DeviceTwin, plus edgetwin's device spec topic.
//!
//! | topic | direction | payload |
//! |---|---|---|
//! | `$hw/events/device/{id}/twin/update` | mapper → agent | [`DeviceTwinUpdate`] |
//! | `$hw/events/device/{id}/twin/update/result` | agent → mapper | [`TwinReply`] |
//! | `$hw/events/device/{id}/twin/update/delta` | agent → mapper | [`DeviceTwinDelta`] |
//! | `$hw/events/device/{id}/twin/update/document` | agent → apps | [`DeviceTwinDocument`] |
//! | `$hw/events/device/{id}/twin/get` | mapper → agent | [`BaseMessage`] |
//! | `$hw/events/device/{id}/twin/get/result` | agent → mapper | [`TwinReply`] |
//! | `$hw/events/device/{id}/twin/cloud_updated` | apps → agent | [`DeviceTwinUpdate`] |
//! | `$hw/events/device/{id}/state/update` | mapper → agent | [`DeviceUpdate`] |
//! | `$hw/events/device/{id}/state/update/result` | agent → mapper | [`DeviceMsg`] |
//! | `$hw/events/node/{node}/membership/get` | mapper → agent | [`BaseMessage`] |
//! | `$hw/events/node/{node}/membership/get/result` | agent → mapper | [`MembershipGetResult`] |
//! | `$hw/events/node/{node}/membership/updated` | agent → mapper | [`MembershipUpdate`] |
//! | `$ke/events/device/{id}/data/update` | mapper → apps | [`DeviceData`] |
//! | `edgetwin/v1/node/{node}/device/{namespace}/{name}/spec` | agent → mapper (retained) | device spec |
//!
//! A device `{id}` is `{name}` (KubeEdge ≤ 1.16) or `{namespace}/{name}` (≥ 1.17). Both parse without
//! ambiguity: Kubernetes names contain no `/`, and no event suffix is another suffix with one more
//! level in front, so `…/device/a/twin/update` is the device `a` while `…/device/a/b/twin/update` is
//! `b` in namespace `a` — even for devices named `twin` or `state`.
//!
//! [`DeviceTwinUpdate`]: super::payload::DeviceTwinUpdate
//! [`TwinReply`]: super::payload::TwinReply
//! [`DeviceTwinDelta`]: super::payload::DeviceTwinDelta
//! [`DeviceTwinDocument`]: super::payload::DeviceTwinDocument
//! [`BaseMessage`]: super::payload::BaseMessage
//! [`DeviceUpdate`]: super::payload::DeviceUpdate
//! [`DeviceMsg`]: super::payload::DeviceMsg
//! [`MembershipGetResult`]: super::payload::MembershipGetResult
//! [`MembershipUpdate`]: super::payload::MembershipUpdate
//! [`DeviceData`]: super::payload::DeviceData

use std::fmt;
use std::str::FromStr;

/// Prefix of the KubeEdge device topics.
pub const DEVICE_PREFIX: &str = "$hw/events/device";
/// Prefix of the KubeEdge node topics.
pub const NODE_PREFIX: &str = "$hw/events/node";
/// Prefix of the KubeEdge telemetry topic.
pub const DATA_PREFIX: &str = "$ke/events/device";
/// Prefix of edgetwin's own topics.
pub const EDGETWIN_NODE_PREFIX: &str = "edgetwin/v1/node";

/// What is wrong with a topic level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelProblem {
    /// The level is empty (`a//b`, a leading or trailing `/`).
    Empty,
    /// The level contains the separator `/`.
    Separator,
    /// The level contains an MQTT wildcard, `+` or `#`.
    Wildcard,
    /// The level contains U+0000, which MQTT forbids in topics.
    Nul,
    /// The level contains another control character (a line break would forge log lines; no
    /// Kubernetes name or node name has one).
    Control,
}

impl fmt::Display for LevelProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LevelProblem::Empty => "is empty",
            LevelProblem::Separator => "contains the level separator `/`",
            LevelProblem::Wildcard => "contains an MQTT wildcard (`+` or `#`)",
            LevelProblem::Nul => "contains a NUL character",
            LevelProblem::Control => "contains a control character",
        })
    }
}

/// A string that cannot be a topic level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic level {level:?} {problem}")]
pub struct LevelError {
    /// The offending text.
    pub level: String,
    /// What is wrong with it.
    pub problem: LevelProblem,
}

/// Why a string is not a known topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic does not start with a known prefix.
    #[error("topic `{}` is not a KubeEdge DeviceTwin or edgetwin topic", .topic.escape_debug())]
    UnknownPrefix {
        /// The topic.
        topic: String,
    },
    /// A level is empty or contains a wildcard or NUL.
    #[error("topic `{}`: {error}", .topic.escape_debug())]
    InvalidLevel {
        /// The topic.
        topic: String,
        /// The offending level.
        #[source]
        error: LevelError,
    },
    /// The prefix is known but the topic does not end in a known event.
    #[error("topic `{}` does not end in a known event", .topic.escape_debug())]
    UnknownEvent {
        /// The topic.
        topic: String,
    },
    /// The event is known but the number of id levels before it is wrong.
    #[error(
        "topic `{}` has {found} id levels before the event, expected {expected}",
        .topic.escape_debug()
    )]
    IdLevels {
        /// The topic.
        topic: String,
        /// How many levels were found.
        found: usize,
        /// What was expected, e.g. "1 ({name}) or 2 ({namespace}/{name})".
        expected: &'static str,
    },
}

/// One topic level used as an identifier (a device name, a namespace, a node name): not empty,
/// and without `/`, `+`, `#` or NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicLevel(String);

impl TopicLevel {
    /// Checks `level` and wraps it.
    pub fn new(level: impl Into<String>) -> Result<Self, LevelError> {
        let level = level.into();
        match level_problem(&level) {
            Some(problem) => Err(LevelError { level, problem }),
            None => Ok(TopicLevel(level)),
        }
    }

    /// The level as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TopicLevel {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for TopicLevel {
    type Error = LevelError;

    fn try_from(level: &str) -> Result<Self, LevelError> {
        TopicLevel::new(level)
    }
}

impl TryFrom<String> for TopicLevel {
    type Error = LevelError;

    fn try_from(level: String) -> Result<Self, LevelError> {
        TopicLevel::new(level)
    }
}

fn level_problem(level: &str) -> Option<LevelProblem> {
    if level.is_empty() {
        Some(LevelProblem::Empty)
    } else if level.contains('/') {
        Some(LevelProblem::Separator)
    } else if level.contains(['+', '#']) {
        Some(LevelProblem::Wildcard)
    } else if level.contains('\0') {
        Some(LevelProblem::Nul)
    } else if level.contains(char::is_control) {
        Some(LevelProblem::Control)
    } else {
        None
    }
}

/// A device id in a topic: `{name}` or `{namespace}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    namespace: Option<TopicLevel>,
    name: TopicLevel,
}

impl DeviceId {
    /// An id from checked levels.
    pub fn new(namespace: Option<TopicLevel>, name: TopicLevel) -> Self {
        DeviceId { namespace, name }
    }

    /// The KubeEdge ≤ 1.16 form, `{name}`.
    pub fn named(name: &str) -> Result<Self, LevelError> {
        Ok(DeviceId::new(None, TopicLevel::new(name)?))
    }

    /// The KubeEdge ≥ 1.17 form, `{namespace}/{name}`.
    pub fn namespaced(namespace: &str, name: &str) -> Result<Self, LevelError> {
        Ok(DeviceId::new(
            Some(TopicLevel::new(namespace)?),
            TopicLevel::new(name)?,
        ))
    }

    /// Parses `name` or `namespace/name` (as membership payloads carry the id).
    pub fn parse(id: &str) -> Result<Self, LevelError> {
        match id.split_once('/') {
            Some((namespace, name)) => DeviceId::namespaced(namespace, name),
            None => DeviceId::named(id),
        }
    }

    /// The namespace, in the `{namespace}/{name}` form.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_ref().map(TopicLevel::as_str)
    }

    /// The device name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// Who publishes a topic and who consumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Published by mappers or applications, consumed by the edge agent.
    ToAgent,
    /// Published by the edge agent.
    FromAgent,
    /// Published by mappers for other applications; the edge agent ignores it.
    MapperToApps,
}

/// The event part of a `$hw/events/device/{id}/…` topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceEvent {
    /// `twin/update`: a mapper reports values.
    TwinUpdate,
    /// `twin/update/result`: the agent answers a `twin/update`.
    TwinUpdateResult,
    /// `twin/update/delta`: desired values that differ from reported ones.
    TwinUpdateDelta,
    /// `twin/update/document`: before/after of changed properties.
    TwinUpdateDocument,
    /// `twin/get`: a mapper asks for the twin.
    TwinGet,
    /// `twin/get/result`: the agent answers a `twin/get`.
    TwinGetResult,
    /// `twin/cloud_updated`: desired values set at the edge (KubeEdge accepts it over MQTT).
    TwinCloudUpdated,
    /// `state/update`: a mapper reports the device's connection state.
    StateUpdate,
    /// `state/update/result`: the agent answers a `state/update`.
    StateUpdateResult,
}

impl DeviceEvent {
    /// Every device event.
    pub const ALL: [DeviceEvent; 9] = [
        DeviceEvent::TwinUpdate,
        DeviceEvent::TwinUpdateResult,
        DeviceEvent::TwinUpdateDelta,
        DeviceEvent::TwinUpdateDocument,
        DeviceEvent::TwinGet,
        DeviceEvent::TwinGetResult,
        DeviceEvent::TwinCloudUpdated,
        DeviceEvent::StateUpdate,
        DeviceEvent::StateUpdateResult,
    ];

    /// The topic levels after the device id.
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            DeviceEvent::TwinUpdate => &["twin", "update"],
            DeviceEvent::TwinUpdateResult => &["twin", "update", "result"],
            DeviceEvent::TwinUpdateDelta => &["twin", "update", "delta"],
            DeviceEvent::TwinUpdateDocument => &["twin", "update", "document"],
            DeviceEvent::TwinGet => &["twin", "get"],
            DeviceEvent::TwinGetResult => &["twin", "get", "result"],
            DeviceEvent::TwinCloudUpdated => &["twin", "cloud_updated"],
            DeviceEvent::StateUpdate => &["state", "update"],
            DeviceEvent::StateUpdateResult => &["state", "update", "result"],
        }
    }

    /// Who publishes the event.
    pub fn direction(self) -> Direction {
        match self {
            DeviceEvent::TwinUpdate
            | DeviceEvent::TwinGet
            | DeviceEvent::TwinCloudUpdated
            | DeviceEvent::StateUpdate => Direction::ToAgent,
            DeviceEvent::TwinUpdateResult
            | DeviceEvent::TwinUpdateDelta
            | DeviceEvent::TwinUpdateDocument
            | DeviceEvent::TwinGetResult
            | DeviceEvent::StateUpdateResult => Direction::FromAgent,
        }
    }

    /// The two subscription filters for this event on every device: `{name}` and
    /// `{namespace}/{name}` form.
    pub fn any_device_filters(self) -> [String; 2] {
        let suffix = self.levels().join("/");
        [
            format!("{DEVICE_PREFIX}/+/{suffix}"),
            format!("{DEVICE_PREFIX}/+/+/{suffix}"),
        ]
    }
}

/// The event part of a `$hw/events/node/{node}/…` topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeEvent {
    /// `membership/get`: a mapper asks for the node's devices.
    MembershipGet,
    /// `membership/get/result`: the agent answers a `membership/get`.
    MembershipGetResult,
    /// `membership/updated`: devices were added to or removed from the node.
    MembershipUpdated,
}

impl NodeEvent {
    /// Every node event.
    pub const ALL: [NodeEvent; 3] = [
        NodeEvent::MembershipGet,
        NodeEvent::MembershipGetResult,
        NodeEvent::MembershipUpdated,
    ];

    /// The topic levels after the node name.
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            NodeEvent::MembershipGet => &["membership", "get"],
            NodeEvent::MembershipGetResult => &["membership", "get", "result"],
            NodeEvent::MembershipUpdated => &["membership", "updated"],
        }
    }

    /// Who publishes the event.
    pub fn direction(self) -> Direction {
        match self {
            NodeEvent::MembershipGet => Direction::ToAgent,
            NodeEvent::MembershipGetResult | NodeEvent::MembershipUpdated => Direction::FromAgent,
        }
    }
}

/// A parsed topic. `Display` formats it back; [`Topic::parse`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `$hw/events/device/{id}/{event}`.
    Device {
        /// The device.
        id: DeviceId,
        /// What happens.
        event: DeviceEvent,
    },
    /// `$hw/events/node/{node}/{event}`.
    Node {
        /// The edge node.
        node: TopicLevel,
        /// What happens.
        event: NodeEvent,
    },
    /// `$ke/events/device/{id}/data/update`.
    DataUpdate {
        /// The device.
        id: DeviceId,
    },
    /// `edgetwin/v1/node/{node}/device/{namespace}/{name}/spec`: the device spec the agent
    /// publishes, retained, for the node's mappers.
    DeviceSpec {
        /// The edge node.
        node: TopicLevel,
        /// The device's namespace.
        namespace: TopicLevel,
        /// The device name.
        name: TopicLevel,
    },
}

const DATA_EVENT: &[&str] = &["data", "update"];
const DEVICE_ID_LEVELS: &str = "1 ({name}) or 2 ({namespace}/{name})";

/// Parses the levels after a topic's prefix.
type ParseRest = fn(&str, &[&str]) -> Result<Topic, TopicError>;

impl Topic {
    /// Parses a topic; anything that is not exactly one of the known topics is an error.
    pub fn parse(topic: &str) -> Result<Topic, TopicError> {
        let levels: Vec<&str> = topic.split('/').collect();
        // The same prefixes as the `*_PREFIX` constants; the format → parse property test keeps
        // the two in step.
        let (rest, parse_rest): (_, ParseRest) = match levels.as_slice() {
            ["$hw", "events", "device", rest @ ..] => (rest, parse_device),
            ["$hw", "events", "node", rest @ ..] => (rest, parse_node),
            ["$ke", "events", "device", rest @ ..] => (rest, parse_data),
            ["edgetwin", "v1", "node", rest @ ..] => (rest, parse_spec),
            _ => {
                return Err(TopicError::UnknownPrefix {
                    topic: topic.to_owned(),
                });
            }
        };
        for level in rest {
            if let Some(problem) = level_problem(level) {
                return Err(TopicError::InvalidLevel {
                    topic: topic.to_owned(),
                    error: LevelError {
                        level: (*level).to_owned(),
                        problem,
                    },
                });
            }
        }
        parse_rest(topic, rest)
    }

    /// Who publishes this topic.
    pub fn direction(&self) -> Direction {
        match self {
            Topic::Device { event, .. } => event.direction(),
            Topic::Node { event, .. } => event.direction(),
            Topic::DataUpdate { .. } => Direction::MapperToApps,
            Topic::DeviceSpec { .. } => Direction::FromAgent,
        }
    }
}

/// Splits `rest` into the id levels and the event whose levels end it.
fn split_event<'r, 't, E: Copy>(
    topic: &str,
    rest: &'r [&'t str],
    events: &[E],
    levels_of: fn(E) -> &'static [&'static str],
) -> Result<(&'r [&'t str], E), TopicError> {
    let event = events
        .iter()
        .copied()
        .find(|event| rest.ends_with(levels_of(*event)))
        .ok_or_else(|| TopicError::UnknownEvent {
            topic: topic.to_owned(),
        })?;
    Ok((&rest[..rest.len() - levels_of(event).len()], event))
}

/// A device id from levels that have already been checked.
fn device_id(topic: &str, levels: &[&str]) -> Result<DeviceId, TopicError> {
    let level = |text: &str| TopicLevel(text.to_owned());
    match levels {
        [name] => Ok(DeviceId::new(None, level(name))),
        [namespace, name] => Ok(DeviceId::new(Some(level(namespace)), level(name))),
        _ => Err(TopicError::IdLevels {
            topic: topic.to_owned(),
            found: levels.len(),
            expected: DEVICE_ID_LEVELS,
        }),
    }
}

fn parse_device(topic: &str, rest: &[&str]) -> Result<Topic, TopicError> {
    let (id, event) = split_event(topic, rest, &DeviceEvent::ALL, DeviceEvent::levels)?;
    Ok(Topic::Device {
        id: device_id(topic, id)?,
        event,
    })
}

fn parse_node(topic: &str, rest: &[&str]) -> Result<Topic, TopicError> {
    let (node, event) = split_event(topic, rest, &NodeEvent::ALL, NodeEvent::levels)?;
    match node {
        [node] => Ok(Topic::Node {
            node: TopicLevel((*node).to_owned()),
            event,
        }),
        _ => Err(TopicError::IdLevels {
            topic: topic.to_owned(),
            found: node.len(),
            expected: "1 ({node})",
        }),
    }
}

fn parse_data(topic: &str, rest: &[&str]) -> Result<Topic, TopicError> {
    let (id, ()) = split_event(topic, rest, &[()], |()| DATA_EVENT)?;
    Ok(Topic::DataUpdate {
        id: device_id(topic, id)?,
    })
}

fn parse_spec(topic: &str, rest: &[&str]) -> Result<Topic, TopicError> {
    match rest {
        [node, "device", namespace, name, "spec"] => Ok(Topic::DeviceSpec {
            node: TopicLevel((*node).to_owned()),
            namespace: TopicLevel((*namespace).to_owned()),
            name: TopicLevel((*name).to_owned()),
        }),
        [_, "device", .., "spec"] => Err(TopicError::IdLevels {
            topic: topic.to_owned(),
            found: rest.len() - 3,
            expected: "2 ({namespace}/{name})",
        }),
        _ => Err(TopicError::UnknownEvent {
            topic: topic.to_owned(),
        }),
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Device { id, event } => {
                write!(f, "{DEVICE_PREFIX}/{id}")?;
                write_levels(f, event.levels())
            }
            Topic::Node { node, event } => {
                write!(f, "{NODE_PREFIX}/{node}")?;
                write_levels(f, event.levels())
            }
            Topic::DataUpdate { id } => {
                write!(f, "{DATA_PREFIX}/{id}")?;
                write_levels(f, DATA_EVENT)
            }
            Topic::DeviceSpec {
                node,
                namespace,
                name,
            } => write!(
                f,
                "{EDGETWIN_NODE_PREFIX}/{node}/device/{namespace}/{name}/spec"
            ),
        }
    }
}

/// `/level` for each of `levels` (no joined string on the way: topics are written per message).
fn write_levels(f: &mut fmt::Formatter<'_>, levels: &[&str]) -> fmt::Result {
    levels.iter().try_for_each(|level| write!(f, "/{level}"))
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(topic: &str) -> Result<Self, TopicError> {
        Topic::parse(topic)
    }
}

/// The filters the edge agent of `node` subscribes to: every device event a mapper or application
/// publishes, in both id forms, and `membership/get` for this node.
pub fn agent_subscriptions(node: &TopicLevel) -> Vec<String> {
    let device_filters = DeviceEvent::ALL
        .into_iter()
        .filter(|event| event.direction() == Direction::ToAgent)
        .flat_map(DeviceEvent::any_device_filters);
    let node_topics = NodeEvent::ALL
        .into_iter()
        .filter(|event| event.direction() == Direction::ToAgent)
        .map(|event| {
            Topic::Node {
                node: node.clone(),
                event,
            }
            .to_string()
        });
    device_filters.chain(node_topics).collect()
}

/// The filter for every device spec published for `node`.
pub fn spec_filter(node: &TopicLevel) -> String {
    format!("{EDGETWIN_NODE_PREFIX}/{node}/device/+/+/spec")
}

/// Whether an MQTT subscription filter matches a topic name (MQTT 3.1.1 §4.7: `+` is one level,
/// a trailing `#` is any number of levels including none, and a filter starting with a wildcard
/// does not match topics starting with `$`).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for filter_level in filter.split('/') {
        match filter_level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// Whether every topic that `filter` matches is also matched by `grant` (both MQTT filters): a
/// subscription to `filter` stays within what `grant` allows. `a/+/c` is within `a/#` and `a/+/+`
/// but not within `a/b/c`; `#` is within `#` only; `$`-topics are never within a filter that
/// starts with a wildcard.
pub fn filter_covers(grant: &str, filter: &str) -> bool {
    let wildcard_start = |f: &str| f.starts_with(['+', '#']);
    if filter.starts_with('$') && wildcard_start(grant) {
        return false;
    }
    let mut grant_levels = grant.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        match (grant_levels.next(), filter_levels.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(g), Some(f)) if g == f && f != "+" => {}
            (Some(_), Some(_)) => return false,
            (None, None) => return true,
            // `a/#` also matches `a`.
            (Some(g), None) => return g == "#",
            (None, Some(_)) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn a_filter_is_covered_only_by_grants_that_match_everything_it_matches() {
        for (grant, filter) in [
            ("#", "#"),
            ("#", "a/+/c"),
            ("a/#", "a"),
            ("a/#", "a/b/#"),
            ("a/+/c", "a/b/c"),
            ("a/+/+", "a/+/c"),
            (
                "$hw/events/device/#",
                "$hw/events/device/+/+/twin/update/delta",
            ),
            (
                "e/v1/node/n1/device/+/+/spec",
                "e/v1/node/n1/device/+/+/spec",
            ),
        ] {
            assert!(super::filter_covers(grant, filter), "{grant} ⊇ {filter}");
        }
        for (grant, filter) in [
            ("a/b/c", "a/+/c"),
            ("a/+", "a/#"),
            ("a/+/c", "a/b"),
            ("a", "a/b"),
            ("#", "$hw/events/device/x/twin/update"),
            ("+/events/#", "$hw/events/#"),
            ("$hw/events/device/#", "#"),
            (
                "e/v1/node/n1/device/+/+/spec",
                "e/v1/node/+/device/+/+/spec",
            ),
        ] {
            assert!(!super::filter_covers(grant, filter), "{grant} ⊉ {filter}");
        }
    }

    use super::*;

    fn parse(topic: &str) -> Topic {
        Topic::parse(topic).expect("parses")
    }

    fn level(text: &str) -> TopicLevel {
        TopicLevel::new(text).expect("valid level")
    }

    #[test]
    fn every_kubeedge_topic_parses_in_both_id_forms() {
        for event in DeviceEvent::ALL {
            let suffix = event.levels().join("/");
            let named = parse(&format!("$hw/events/device/lamp/{suffix}"));
            assert_eq!(
                named,
                Topic::Device {
                    id: DeviceId::named("lamp").expect("id"),
                    event
                }
            );
            let namespaced = parse(&format!("$hw/events/device/default/lamp/{suffix}"));
            assert_eq!(
                namespaced,
                Topic::Device {
                    id: DeviceId::namespaced("default", "lamp").expect("id"),
                    event
                }
            );
        }
        assert_eq!(
            parse("$hw/events/node/edge-node1/membership/get/result"),
            Topic::Node {
                node: level("edge-node1"),
                event: NodeEvent::MembershipGetResult
            }
        );
        assert_eq!(
            parse("$ke/events/device/ns/meter/data/update"),
            Topic::DataUpdate {
                id: DeviceId::namespaced("ns", "meter").expect("id")
            }
        );
        assert_eq!(
            parse("edgetwin/v1/node/n1/device/default/lamp/spec"),
            Topic::DeviceSpec {
                node: level("n1"),
                namespace: level("default"),
                name: level("lamp")
            }
        );
    }

    #[test]
    fn one_or_two_id_levels_are_told_apart_even_for_names_like_events() {
        let cases = [
            ("$hw/events/device/a/twin/update", None, "a"),
            ("$hw/events/device/a/b/twin/update", Some("a"), "b"),
            // Devices named like event levels, in both forms.
            ("$hw/events/device/twin/twin/update/result", None, "twin"),
            (
                "$hw/events/device/state/twin/state/update",
                Some("state"),
                "twin",
            ),
            ("$hw/events/device/update/twin/get", None, "update"),
            (
                "$hw/events/device/twin/update/twin/get/result",
                Some("twin"),
                "update",
            ),
        ];
        for (topic, namespace, name) in cases {
            let Topic::Device { id, .. } = parse(topic) else {
                panic!("not a device topic: {topic}");
            };
            assert_eq!((id.namespace(), id.name()), (namespace, name), "{topic}");
        }
    }

    #[test]
    fn no_event_suffix_is_another_with_a_level_in_front() {
        // This is what makes the two id forms unambiguous.
        let suffixes: Vec<&[&str]> = DeviceEvent::ALL.iter().map(|e| e.levels()).collect();
        for suffix in &suffixes {
            for other in &suffixes {
                if suffix.len() == other.len() + 1 {
                    assert!(!suffix.ends_with(other), "{suffix:?} ends with {other:?}");
                }
            }
        }
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let error = |topic: &str| Topic::parse(topic).expect_err("must fail");
        assert!(matches!(
            error("$hw/events/gadget/a/twin/update"),
            TopicError::UnknownPrefix { .. }
        ));
        assert!(matches!(
            error("hw/events/device/a/twin/update"),
            TopicError::UnknownPrefix { .. }
        ));
        assert_eq!(
            error("$hw/events/device//twin/update"),
            TopicError::InvalidLevel {
                topic: "$hw/events/device//twin/update".into(),
                error: LevelError {
                    level: String::new(),
                    problem: LevelProblem::Empty
                }
            }
        );
        assert!(matches!(
            error("$hw/events/device/a/twin/update/"),
            TopicError::InvalidLevel {
                error: LevelError {
                    problem: LevelProblem::Empty,
                    ..
                },
                ..
            }
        ));
        for wildcard in [
            "$hw/events/device/+/twin/update",
            "$hw/events/device/a#/twin/get",
        ] {
            assert!(
                matches!(
                    error(wildcard),
                    TopicError::InvalidLevel {
                        error: LevelError {
                            problem: LevelProblem::Wildcard,
                            ..
                        },
                        ..
                    }
                ),
                "{wildcard}"
            );
        }
        assert!(matches!(
            error("$hw/events/node/+/membership/get"),
            TopicError::InvalidLevel { .. }
        ));
        assert!(matches!(
            error("$hw/events/device/a\0/twin/get"),
            TopicError::InvalidLevel {
                error: LevelError {
                    problem: LevelProblem::Nul,
                    ..
                },
                ..
            }
        ));
        // A line break in a level would forge log lines: refused, and the error shows it escaped.
        let forged = error("$hw/events/device/x\nERROR forged line/twin/update");
        assert!(
            matches!(
                &forged,
                TopicError::InvalidLevel {
                    error: LevelError {
                        problem: LevelProblem::Control,
                        ..
                    },
                    ..
                }
            ),
            "{forged}"
        );
        let message = forged.to_string();
        assert!(
            !message.contains('\n') && message.contains("x\\nERROR"),
            "{message}"
        );
        for unknown in [
            "$hw/events/device/a/twin/upgrade",
            "$hw/events/device/a/twin",
            "$hw/events/device",
            "$hw/events/node/n/membership",
            "$ke/events/device/a/data/get",
            "edgetwin/v1/node/n/device/ns/a/status",
        ] {
            assert!(
                matches!(error(unknown), TopicError::UnknownEvent { .. }),
                "{unknown}"
            );
        }
        assert_eq!(
            error("$hw/events/device/a/b/c/twin/update"),
            TopicError::IdLevels {
                topic: "$hw/events/device/a/b/c/twin/update".into(),
                found: 3,
                expected: DEVICE_ID_LEVELS
            }
        );
        assert!(matches!(
            error("$hw/events/device/twin/update"),
            TopicError::IdLevels { found: 0, .. }
        ));
        assert!(matches!(
            error("$hw/events/node/a/b/membership/updated"),
            TopicError::IdLevels { found: 2, .. }
        ));
        assert!(matches!(
            error("edgetwin/v1/node/n/device/lamp/spec"),
            TopicError::IdLevels { found: 1, .. }
        ));
        assert_eq!(
            error("$hw/events/device/a/b/c/twin/update").to_string(),
            "topic `$hw/events/device/a/b/c/twin/update` has 3 id levels before the event, \
             expected 1 ({name}) or 2 ({namespace}/{name})"
        );
    }

    #[test]
    fn levels_and_ids_are_checked_on_construction() {
        assert_eq!(
            TopicLevel::new("a+b").expect_err("wildcard").problem,
            LevelProblem::Wildcard
        );
        assert_eq!(
            TopicLevel::new("").expect_err("empty").to_string(),
            "topic level \"\" is empty"
        );
        assert_eq!(
            DeviceId::parse("ns/a/b").expect_err("name with /").problem,
            LevelProblem::Separator
        );
        let id = DeviceId::parse("ns/lamp").expect("id");
        assert_eq!((id.namespace(), id.name()), (Some("ns"), "lamp"));
        assert_eq!(id.to_string(), "ns/lamp");
        assert_eq!(DeviceId::parse("lamp").expect("id").namespace(), None);
    }

    #[test]
    fn filter_matching_follows_mqtt() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(filter_matches("a/+/c", "a//c"));
        assert!(!filter_matches("a/+/c", "a/b/c/d"));
        assert!(!filter_matches("a/+", "a"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(filter_matches("#", "a/b"));
        assert!(!filter_matches("#", "$hw/events/device/a/twin/update"));
        assert!(!filter_matches(
            "+/events/device/a/twin/update",
            "$hw/events/device/a/twin/update"
        ));
        assert!(filter_matches("$hw/#", "$hw/events/device/a/twin/update"));
    }

    fn sample_ids() -> Vec<DeviceId> {
        ["lamp", "twin", "state", "update", "result"]
            .into_iter()
            .flat_map(|name| {
                [
                    DeviceId::named(name).expect("id"),
                    DeviceId::namespaced("twin", name).expect("id"),
                ]
            })
            .collect()
    }

    #[test]
    fn agent_subscriptions_catch_every_inbound_topic_and_none_of_its_own() {
        let node = level("edge-node1");
        let filters = agent_subscriptions(&node);
        let subscribed = |topic: &Topic| {
            let topic = topic.to_string();
            filters.iter().any(|filter| filter_matches(filter, &topic))
        };
        let mut topics: Vec<Topic> = sample_ids()
            .into_iter()
            .flat_map(|id| {
                let data = Topic::DataUpdate { id: id.clone() };
                DeviceEvent::ALL
                    .into_iter()
                    .map(move |event| Topic::Device {
                        id: id.clone(),
                        event,
                    })
                    .chain([data])
            })
            .collect();
        for event in NodeEvent::ALL {
            topics.push(Topic::Node {
                node: node.clone(),
                event,
            });
        }
        topics.push(Topic::DeviceSpec {
            node: node.clone(),
            namespace: level("twin"),
            name: level("twin"),
        });
        for topic in &topics {
            assert_eq!(
                subscribed(topic),
                topic.direction() == Direction::ToAgent,
                "{topic}"
            );
        }
        let other_node = Topic::Node {
            node: level("edge-node2"),
            event: NodeEvent::MembershipGet,
        };
        assert!(!subscribed(&other_node));
    }

    #[test]
    fn spec_filter_matches_the_nodes_specs_only() {
        let spec = |node: &str| {
            Topic::DeviceSpec {
                node: level(node),
                namespace: level("default"),
                name: level("lamp"),
            }
            .to_string()
        };
        let filter = spec_filter(&level("n1"));
        assert!(filter_matches(&filter, &spec("n1")));
        assert!(!filter_matches(&filter, &spec("n2")));
    }

    fn any_level() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "twin",
                "state",
                "update",
                "result",
                "get",
                "delta",
                "document",
                "cloud_updated",
                "data",
                "membership",
                "updated",
                "device",
                "node",
                "spec",
                "events",
                "$hw",
                "v1",
            ])
            .prop_map(str::to_owned),
            "[a-z0-9]([a-z0-9.-]{0,14}[a-z0-9])?",
            "[^/+#\\p{Cc}]{1,12}",
        ]
    }

    fn any_device_id() -> impl Strategy<Value = DeviceId> {
        (proptest::option::of(any_level()), any_level()).prop_map(|(namespace, name)| {
            DeviceId::new(namespace.map(TopicLevel), TopicLevel(name))
        })
    }

    fn any_topic() -> impl Strategy<Value = Topic> {
        prop_oneof![
            (
                any_device_id(),
                prop::sample::select(DeviceEvent::ALL.to_vec())
            )
                .prop_map(|(id, event)| Topic::Device { id, event }),
            (any_level(), prop::sample::select(NodeEvent::ALL.to_vec())).prop_map(
                |(node, event)| Topic::Node {
                    node: TopicLevel(node),
                    event
                }
            ),
            any_device_id().prop_map(|id| Topic::DataUpdate { id }),
            (any_level(), any_level(), any_level()).prop_map(|(node, namespace, name)| {
                Topic::DeviceSpec {
                    node: TopicLevel(node),
                    namespace: TopicLevel(namespace),
                    name: TopicLevel(name),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(topic in any_topic()) {
            prop_assert_eq!(Topic::parse(&topic.to_string()), Ok(topic));
        }

        #[test]
        fn parse_then_format_is_identity(levels in prop::collection::vec(any_level(), 3..9)) {
            for prefix in ["$hw/events/device", "$hw/events/node", "$ke/events/device", "edgetwin/v1/node"] {
                let text = format!("{prefix}/{}", levels.join("/"));
                if let Ok(topic) = Topic::parse(&text) {
                    prop_assert_eq!(topic.to_string(), text);
                }
            }
        }

        #[test]
        fn parse_never_panics(text in ".{0,80}") {
            let _ = Topic::parse(&text);
        }
    }
}
