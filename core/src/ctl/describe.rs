//! `edgetwin ctl describe device NAME`: the Device in prose — per property the desired value,
//! what the mapper has seen and reported, and where the actuation stands — then its events.

use std::io::{self, Write};

use jiff::Timestamp;

use super::output::{Table, human_duration};
use crate::cloud::registry::embedded::api::EventRecord;
use edgetwin_model::devices::{Device, DeviceModel, PropertyCondition, TwinProperty};

/// The column where values start.
const VALUE_COLUMN: usize = 22;

/// Writes `label:` indented and padded to [`VALUE_COLUMN`], then the value (`<none>` when
/// empty).
fn field(out: &mut dyn Write, indent: usize, label: &str, value: &str) -> io::Result<()> {
    let value = if value.is_empty() { "<none>" } else { value };
    let label = format!("{label}:");
    let width = VALUE_COLUMN.saturating_sub(indent).max(label.len() + 1);
    writeln!(out, "{:indent$}{label:<width$}{value}", "")
}

fn ago(at: Timestamp, now: Timestamp) -> String {
    human_duration(now.as_second().saturating_sub(at.as_second()).max(0))
}

/// `ON`, plus when the value was reported if its metadata says (KubeEdge writes
/// `metadata.timestamp` in milliseconds since the epoch).
fn twin_value(value: Option<&TwinProperty>, now: Timestamp) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let at = value
        .metadata
        .get("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|ms| Timestamp::from_millisecond(ms).ok());
    match at {
        Some(at) => format!("{} (at {at}, {} ago)", value.value, ago(at, now)),
        None => value.value.clone(),
    }
}

fn condition(
    out: &mut dyn Write,
    condition: Option<&PropertyCondition>,
    now: Timestamp,
) -> io::Result<()> {
    let Some(c) = condition else {
        return field(out, 4, "Condition", "");
    };
    let mut line = format!(
        "{:?} since {} ({} ago)",
        c.kind,
        c.last_transition_time,
        ago(c.last_transition_time, now)
    );
    if let Some(generation) = c.observed_generation {
        line.push_str(&format!(", generation {generation}"));
    }
    field(out, 4, "Condition", &line)?;
    if let Some(reason) = &c.reason {
        field(out, 6, "Reason", reason)?;
    }
    if let Some(message) = &c.message {
        field(out, 6, "Message", message)?;
    }
    Ok(())
}

/// Writes the description of a Device and its events.
pub fn device(
    device: &Device,
    events: &[EventRecord],
    now: Timestamp,
    out: &mut dyn Write,
) -> io::Result<()> {
    let meta = &device.metadata;
    let status = device.status.clone().unwrap_or_default();
    let labels = meta
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    field(out, 0, "Name", device.name())?;
    field(out, 0, "Namespace", device.namespace())?;
    field(out, 0, "Labels", &labels)?;
    field(out, 0, "Model", device.model_name().unwrap_or_default())?;
    field(out, 0, "Node", device.node_name().unwrap_or_default())?;
    field(
        out,
        0,
        "Protocol",
        device.protocol_name().unwrap_or_default(),
    )?;
    field(out, 0, "State", status.state.as_deref().unwrap_or_default())?;
    field(
        out,
        0,
        "Last Online",
        status.last_online_time.as_deref().unwrap_or_default(),
    )?;
    let generation = match (meta.generation, status.observed_generation) {
        (Some(g), Some(o)) => format!("{g} (status observes {o})"),
        (Some(g), None) => format!("{g} (not observed yet)"),
        (None, _) => String::new(),
    };
    field(out, 0, "Generation", &generation)?;
    field(
        out,
        0,
        "Resource Version",
        meta.resource_version.as_deref().unwrap_or_default(),
    )?;
    let created = meta
        .creation_timestamp
        .as_ref()
        .map(|t| format!("{} ({} ago)", t.0, ago(t.0, now)))
        .unwrap_or_default();
    field(out, 0, "Created", &created)?;

    // Spec properties in order, then twins the spec no longer has.
    let mut names: Vec<&str> = device
        .spec
        .properties
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for twin in &status.twins {
        if !names.contains(&twin.property_name.as_str()) {
            names.push(&twin.property_name);
        }
    }
    if names.is_empty() {
        field(out, 0, "Properties", "")?;
    } else {
        writeln!(out, "Properties:")?;
    }
    for name in names {
        writeln!(out, "  {name}:")?;
        let desired = device.property(name).and_then(|p| p.desired.as_ref());
        let twin = status.twin(name);
        field(
            out,
            4,
            "Desired",
            &desired.map(|d| d.value.clone()).unwrap_or_default(),
        )?;
        field(
            out,
            4,
            "Observed Desired",
            &twin_value(twin.and_then(|t| t.observed_desired.as_ref()), now),
        )?;
        field(
            out,
            4,
            "Reported",
            &twin_value(twin.and_then(|t| t.reported.as_ref()), now),
        )?;
        condition(out, twin.and_then(|t| t.condition.as_ref()), now)?;
    }

    if events.is_empty() {
        return field(out, 0, "Events", "");
    }
    writeln!(out, "Events:")?;
    let mut table = Table::new(vec!["TYPE", "REASON", "AGE", "COUNT", "MESSAGE"]);
    for event in events {
        let age = if event.count > 1 {
            format!(
                "{} (x{} over {})",
                ago(event.last_timestamp, now),
                event.count,
                ago(event.first_timestamp, now)
            )
        } else {
            ago(event.last_timestamp, now)
        };
        table.push(vec![
            event.kind.clone(),
            event.reason.clone(),
            age,
            event.count.to_string(),
            event.message.clone(),
        ]);
    }
    let mut text = Vec::new();
    table.write(&mut text)?;
    for line in String::from_utf8_lossy(&text).lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// Writes the description of a DeviceModel: its properties with type, access, limits and unit.
pub fn device_model(model: &DeviceModel, now: Timestamp, out: &mut dyn Write) -> io::Result<()> {
    field(out, 0, "Name", model.name())?;
    field(out, 0, "Namespace", model.namespace())?;
    field(
        out,
        0,
        "Protocol",
        model.spec.protocol.as_deref().unwrap_or_default(),
    )?;
    let generation = model
        .metadata
        .generation
        .map(|g| g.to_string())
        .unwrap_or_default();
    field(out, 0, "Generation", &generation)?;
    let created = model
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| format!("{} ({} ago)", t.0, ago(t.0, now)))
        .unwrap_or_default();
    field(out, 0, "Created", &created)?;
    if model.spec.properties.is_empty() {
        return field(out, 0, "Properties", "");
    }
    writeln!(out, "Properties:")?;
    let mut table = Table::new(vec!["NAME", "TYPE", "ACCESS", "MINIMUM", "MAXIMUM", "UNIT"]);
    for p in &model.spec.properties {
        table.push(vec![
            p.name.clone(),
            format!("{:?}", p.property_type).to_uppercase(),
            format!("{:?}", p.access_mode()),
            p.minimum.clone().unwrap_or_default(),
            p.maximum.clone().unwrap_or_default(),
            p.unit.clone().unwrap_or_default(),
        ]);
    }
    let mut text = Vec::new();
    table.write(&mut text)?;
    for line in String::from_utf8_lossy(&text).lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::registry::embedded::testkit;
    use edgetwin_model::devices::{ConditionType, DeviceStatus, Time, Twin};

    #[test]
    fn a_device_is_described_per_property_with_conditions_and_events() {
        let now: Timestamp = "2025-01-01T00:10:00Z".parse().expect("time");
        let mut device = testkit::device();
        device.metadata.generation = Some(2);
        device.metadata.resource_version = Some("7".into());
        device.metadata.creation_timestamp = Some(Time::from(
            "2025-01-01T00:00:00Z".parse::<Timestamp>().expect("time"),
        ));
        let mut reported = TwinProperty::new("OFF");
        reported
            .metadata
            .insert("timestamp".into(), "1735690170000".into());
        device.status = Some(DeviceStatus {
            twins: vec![Twin {
                reported: Some(reported),
                observed_desired: Some(TwinProperty::new("ON")),
                condition: Some(PropertyCondition {
                    reason: Some("WriteTimeout".into()),
                    message: Some("no answer from line 17".into()),
                    observed_generation: Some(2),
                    ..PropertyCondition::new(
                        ConditionType::Failed,
                        "2025-01-01T00:09:30Z".parse().expect("time"),
                    )
                }),
                ..Twin::new("red")
            }],
            state: Some("online".into()),
            observed_generation: Some(2),
            ..DeviceStatus::default()
        });
        let events = [EventRecord {
            kind: "Warning".into(),
            reason: "ActuationFailed".into(),
            message: "red: no answer from line 17".into(),
            count: 3,
            first_timestamp: "2025-01-01T00:05:00Z".parse().expect("time"),
            last_timestamp: "2025-01-01T00:09:30Z".parse().expect("time"),
        }];
        let mut out = Vec::new();
        super::device(&device, &events, now, &mut out).expect("writes");
        let text = String::from_utf8(out).expect("utf-8");
        let expected = "\
Name:                 traffic-light
Namespace:            default
Labels:               site=lab
Model:                traffic-light-model
Node:                 pi-1
Protocol:             gpio
State:                online
Last Online:          <none>
Generation:           2 (status observes 2)
Resource Version:     7
Created:              2025-01-01T00:00:00Z (10m ago)
Properties:
  red:
    Desired:          OFF
    Observed Desired: ON
    Reported:         OFF (at 2025-01-01T00:09:30Z, 30s ago)
    Condition:        Failed since 2025-01-01T00:09:30Z (30s ago), generation 2
      Reason:         WriteTimeout
      Message:        no answer from line 17
  amber:
    Desired:          OFF
    Observed Desired: <none>
    Reported:         <none>
    Condition:        <none>
  green:
    Desired:          ON
    Observed Desired: <none>
    Reported:         <none>
    Condition:        <none>
  brightness:
    Desired:          100
    Observed Desired: <none>
    Reported:         <none>
    Condition:        <none>
  cycles:
    Desired:          <none>
    Observed Desired: <none>
    Reported:         <none>
    Condition:        <none>
Events:
  TYPE      REASON            AGE                COUNT   MESSAGE
  Warning   ActuationFailed   30s (x3 over 5m)   3       red: no answer from line 17
";
        assert_eq!(text, expected, "\n{text}");
    }
}
