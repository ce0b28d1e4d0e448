//! The safety interlock: rules over a device's GPIO properties, checked before every write.
//!
//! Rules are declared in `protocolConfigData.interlock` of the DeviceModel, so that every
//! instance of the model inherits them (an instance's `protocol.configData.interlock` would
//! replace the list: keep it in the model). Two forms:
//!
//! ```yaml
//! interlock:
//!   - never: {red: "ON", green: "ON"}        # these values never all at once
//!     reason: red and green are never both on
//!   - mutuallyExclusive: [red, yellow, green] # at most one of them ON
//! ```
//!
//! A write is checked against the *current* levels of the other properties of the rule (read
//! from the lines, inputs included) with the written value in place of its property's; a write
//! that would break a rule is refused and nothing reaches the pin. When a level cannot be read
//! the write is refused too: the interlock fails closed.
//!
//! The interlock guards writes. It cannot stop an input from changing on its own, and it is no
//! substitute for a hardware interlock where people could get hurt.

use std::collections::BTreeSet;
use std::fmt;

use crate::config::{InterlockRule, on_off};

/// A rule over property indexes (the device's points), ready to check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// These (point, level) pairs never all hold at once.
    Never(Vec<(usize, bool)>),
    /// At most one of these points is active.
    AtMostOne(Vec<usize>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    condition: Condition,
    reason: String,
}

/// A device's interlock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interlock {
    rules: Vec<Rule>,
    /// Property names by point index, for messages.
    names: Vec<String>,
}

/// A write the interlock refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interlock refused {property}={value}: {reason}{}", if state.is_empty() { String::new() } else { format!(" ({state})") })]
pub struct Refusal {
    /// The property written.
    pub property: String,
    /// The refused value (`ON`/`OFF`).
    pub value: &'static str,
    /// The rule's reason.
    pub reason: String,
    /// The current levels that make the write unsafe, e.g. `red is ON` (empty when the value
    /// itself is forbidden).
    pub state: String,
}

impl Interlock {
    /// Compiles declared rules against the device's property names (in point order). The
    /// error names the rule (`interlock[1].never`) and what is wrong with it.
    pub fn compile(rules: &[InterlockRule], names: &[String]) -> Result<Interlock, String> {
        let index_of = |at: &str, name: &str| {
            names.iter().position(|n| n == name).ok_or_else(|| {
                format!(
                    "{at}: {name:?} is not a GPIO property of the device (it has {})",
                    names.join(", ")
                )
            })
        };
        let mut compiled = Vec::with_capacity(rules.len());
        for (n, rule) in rules.iter().enumerate() {
            let at = format!("interlock[{n}]");
            let condition = match (&rule.never, &rule.mutually_exclusive) {
                (Some(never), None) => {
                    let at = format!("{at}.never");
                    if never.is_empty() {
                        return Err(format!("{at}: name at least one property"));
                    }
                    let pairs = never
                        .iter()
                        .map(|(name, level)| Ok((index_of(&at, name)?, level.0)))
                        .collect::<Result<Vec<_>, String>>()?;
                    Condition::Never(pairs)
                }
                (None, Some(exclusive)) => {
                    let at = format!("{at}.mutuallyExclusive");
                    let mut seen = BTreeSet::new();
                    let mut points = Vec::with_capacity(exclusive.len());
                    for name in exclusive {
                        if !seen.insert(name) {
                            return Err(format!("{at}: {name:?} is listed twice"));
                        }
                        points.push(index_of(&at, name)?);
                    }
                    if points.len() < 2 {
                        return Err(format!("{at}: name at least two properties"));
                    }
                    Condition::AtMostOne(points)
                }
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{at}: give either never or mutuallyExclusive, not both"
                    ));
                }
                (None, None) => {
                    return Err(format!("{at}: give never or mutuallyExclusive"));
                }
            };
            let reason = rule
                .reason
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| default_reason(&condition, names));
            compiled.push(Rule { condition, reason });
        }
        Ok(Interlock {
            rules: compiled,
            names: names.to_vec(),
        })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks writing `active` to point `point`; `level` reads another point's current level.
    /// Only the points of rules that involve `point` are read.
    pub fn check<E>(
        &self,
        point: usize,
        active: bool,
        mut level: impl FnMut(usize) -> Result<bool, E>,
    ) -> Result<Result<(), Refusal>, E> {
        let mut current = |p: usize| -> Result<Option<bool>, E> {
            if p == point {
                Ok(Some(active))
            } else {
                level(p).map(Some)
            }
        };
        for rule in &self.rules {
            if !rule.involves(point) {
                continue;
            }
            if let Some(state) = rule.broken(point, &mut current)? {
                return Ok(Err(Refusal {
                    property: self.name(point),
                    value: on_off(active),
                    reason: rule.reason.clone(),
                    state: self.describe(&state),
                }));
            }
        }
        Ok(Ok(()))
    }

    /// Checks a whole state where some levels may be unknown (`None`); rules with an unknown
    /// member are not judged. Used for the initial levels of outputs.
    pub fn check_state(&self, level: impl Fn(usize) -> Option<bool>) -> Result<(), String> {
        for rule in &self.rules {
            let mut lookup = |p: usize| Ok::<_, ()>(level(p));
            if let Ok(Some(state)) = rule.broken(usize::MAX, &mut lookup) {
                return Err(format!("{} ({})", rule.reason, self.describe(&state)));
            }
        }
        Ok(())
    }

    fn name(&self, point: usize) -> String {
        self.names.get(point).cloned().unwrap_or_default()
    }

    /// `red is ON, green is ON`.
    fn describe(&self, state: &[(usize, bool)]) -> String {
        state
            .iter()
            .map(|(p, active)| format!("{} is {}", self.name(*p), on_off(*active)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Rule {
    fn involves(&self, point: usize) -> bool {
        match &self.condition {
            Condition::Never(pairs) => pairs.iter().any(|(p, _)| *p == point),
            Condition::AtMostOne(points) => points.contains(&point),
        }
    }

    /// If the state read through `level` breaks the rule *with* the written point's new level,
    /// the levels of the other points that break it. A write that moves its point out of the
    /// forbidden state is never refused. An unknown level (`None`) means the rule is not
    /// judged.
    fn broken<E>(
        &self,
        written: usize,
        level: &mut impl FnMut(usize) -> Result<Option<bool>, E>,
    ) -> Result<Option<Vec<(usize, bool)>>, E> {
        match &self.condition {
            Condition::Never(pairs) => {
                // The written point first: a write away from the forbidden value reads nothing.
                if let Some(&(_, forbidden)) = pairs.iter().find(|(p, _)| *p == written)
                    && level(written)? != Some(forbidden)
                {
                    return Ok(None);
                }
                let mut state = Vec::new();
                for &(p, forbidden) in pairs {
                    match level(p)? {
                        Some(actual) if actual == forbidden => {
                            if p != written {
                                state.push((p, actual));
                            }
                        }
                        _ => return Ok(None),
                    }
                }
                Ok(Some(state))
            }
            Condition::AtMostOne(points) => {
                // Switching a member off never adds to the count, even in a broken state.
                if points.contains(&written) && level(written)? != Some(true) {
                    return Ok(None);
                }
                let mut on = Vec::new();
                for &p in points {
                    match level(p)? {
                        Some(true) => on.push(p),
                        Some(false) => {}
                        None => return Ok(None),
                    }
                }
                if on.len() < 2 {
                    return Ok(None);
                }
                Ok(Some(
                    on.into_iter()
                        .filter(|&p| p != written)
                        .map(|p| (p, true))
                        .collect(),
                ))
            }
        }
    }
}

fn default_reason(condition: &Condition, names: &[String]) -> String {
    let name = |p: &usize| names.get(*p).cloned().unwrap_or_default();
    match condition {
        Condition::Never(pairs) => {
            let state: Vec<String> = pairs
                .iter()
                .map(|(p, level)| format!("{}={}", name(p), on_off(*level)))
                .collect();
            format!("never {}", state.join(" and "))
        }
        Condition::AtMostOne(points) => {
            let list: Vec<String> = points.iter().map(name).collect();
            format!("at most one of {} is ON", list.join(", "))
        }
    }
}

impl fmt::Display for Interlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<&str> = self.rules.iter().map(|r| r.reason.as_str()).collect();
        f.write_str(&reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    use super::*;
    use crate::config::Switch;

    fn names() -> Vec<String> {
        ["red", "yellow", "green", "door"]
            .map(String::from)
            .to_vec()
    }

    fn never(pairs: &[(&str, bool)], reason: Option<&str>) -> InterlockRule {
        InterlockRule {
            never: Some(
                pairs
                    .iter()
                    .map(|(n, l)| (n.to_string(), Switch(*l)))
                    .collect::<BTreeMap<_, _>>(),
            ),
            mutually_exclusive: None,
            reason: reason.map(String::from),
        }
    }

    fn exclusive(list: &[&str]) -> InterlockRule {
        InterlockRule {
            never: None,
            mutually_exclusive: Some(list.iter().map(|s| s.to_string()).collect()),
            reason: None,
        }
    }

    /// Checks a write against fixed levels (red, yellow, green, door).
    fn check(
        interlock: &Interlock,
        point: usize,
        active: bool,
        levels: [bool; 4],
    ) -> Result<(), Refusal> {
        interlock
            .check(point, active, |p| Ok::<_, Infallible>(levels[p]))
            .unwrap_or_else(|never| match never {})
    }

    #[test]
    fn never_refuses_the_forbidden_combination_only() {
        let interlock = Interlock::compile(
            &[never(
                &[("red", true), ("green", true)],
                Some("red and green never both on"),
            )],
            &names(),
        )
        .expect("valid");
        let refusal = check(&interlock, 2, true, [true, false, false, false])
            .expect_err("green ON while red is ON");
        assert_eq!(
            refusal.to_string(),
            "interlock refused green=ON: red and green never both on (red is ON)"
        );
        assert!(check(&interlock, 2, true, [false, false, false, false]).is_ok());
        assert!(
            check(&interlock, 0, false, [true, false, true, false]).is_ok(),
            "turning red off is always allowed, even from a broken state"
        );
        assert!(
            check(&interlock, 1, true, [true, false, true, false]).is_ok(),
            "yellow is not in the rule"
        );
    }

    #[test]
    fn mutually_exclusive_allows_one_on() {
        let interlock =
            Interlock::compile(&[exclusive(&["red", "yellow", "green"])], &names()).expect("valid");
        assert!(check(&interlock, 1, true, [false, false, false, false]).is_ok());
        let refusal =
            check(&interlock, 1, true, [false, false, true, false]).expect_err("green is on");
        assert_eq!(refusal.reason, "at most one of red, yellow, green is ON");
        assert_eq!(refusal.state, "green is ON");
        assert!(
            check(&interlock, 1, true, [false, true, false, false]).is_ok(),
            "already on"
        );
        assert!(check(&interlock, 0, false, [true, true, true, false]).is_ok());
    }

    #[test]
    fn rules_may_involve_inputs_and_off_values() {
        let interlock = Interlock::compile(
            &[never(
                &[("door", true), ("red", false)],
                Some("red stays on while the door is open"),
            )],
            &names(),
        )
        .expect("valid");
        let refusal =
            check(&interlock, 0, false, [true, false, false, true]).expect_err("door open");
        assert_eq!(refusal.value, "OFF");
        assert_eq!(refusal.state, "door is ON");
        assert!(check(&interlock, 0, false, [true, false, false, false]).is_ok());
    }

    #[test]
    fn only_the_rules_members_are_read_and_read_errors_fail_closed() {
        let interlock =
            Interlock::compile(&[never(&[("red", true), ("green", true)], None)], &names())
                .expect("valid");
        let mut read = Vec::new();
        let result = interlock.check(2, true, |p| {
            read.push(p);
            Ok::<_, Infallible>(false)
        });
        assert!(matches!(result, Ok(Ok(()))));
        assert_eq!(read, vec![0], "only red was read");
        let failed = interlock.check(2, true, |_| Err("line gone"));
        assert_eq!(
            failed,
            Err("line gone"),
            "an unreadable level refuses the write"
        );
        assert!(
            interlock
                .check(1, true, |_| Err("never read"))
                .is_ok_and(|r| r.is_ok())
        );
    }

    #[test]
    fn a_single_property_rule_forbids_a_value_outright() {
        let interlock = Interlock::compile(
            &[never(&[("yellow", true)], Some("yellow is broken"))],
            &names(),
        )
        .expect("valid");
        let refusal = check(&interlock, 1, true, [false; 4]).expect_err("forbidden");
        assert_eq!(
            refusal.to_string(),
            "interlock refused yellow=ON: yellow is broken"
        );
    }

    #[test]
    fn default_reasons_describe_the_rule() {
        let interlock = Interlock::compile(
            &[never(&[("red", true), ("green", true)], Some("  "))],
            &names(),
        )
        .expect("valid");
        assert_eq!(interlock.to_string(), "never green=ON and red=ON");
        assert!(!interlock.is_empty());
        assert!(Interlock::default().is_empty());
    }

    #[test]
    fn declaration_mistakes_name_the_rule_and_the_problem() {
        let cases = [
            (
                never(&[("red", true), ("blue", true)], None),
                "interlock[0].never: \"blue\" is not a GPIO property of the device (it has red, yellow, green, door)",
            ),
            (
                never(&[], None),
                "interlock[0].never: name at least one property",
            ),
            (
                exclusive(&["red"]),
                "interlock[0].mutuallyExclusive: name at least two properties",
            ),
            (
                exclusive(&["red", "red"]),
                "interlock[0].mutuallyExclusive: \"red\" is listed twice",
            ),
            (
                InterlockRule::default(),
                "interlock[0]: give never or mutuallyExclusive",
            ),
            (
                InterlockRule {
                    mutually_exclusive: Some(vec!["red".into(), "green".into()]),
                    ..never(&[("red", true)], None)
                },
                "interlock[0]: give either never or mutuallyExclusive, not both",
            ),
        ];
        for (rule, expected) in cases {
            assert_eq!(
                Interlock::compile(&[rule], &names()),
                Err(expected.to_owned())
            );
        }
    }

    #[test]
    fn a_whole_state_is_judged_where_known() {
        let interlock =
            Interlock::compile(&[exclusive(&["red", "green"])], &names()).expect("valid");
        let both_on = interlock.check_state(|p| Some(p == 0 || p == 2));
        assert_eq!(
            both_on,
            Err("at most one of red, green is ON (red is ON, green is ON)".into())
        );
        assert!(interlock.check_state(|p| Some(p == 0)).is_ok());
        assert!(
            interlock.check_state(|p| (p == 0).then_some(true)).is_ok(),
            "green unknown"
        );
    }
}
