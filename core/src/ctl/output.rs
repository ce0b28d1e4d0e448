//! How `edgetwin ctl` prints objects: kubectl-style tables, ages, summaries, JSON and YAML.

use std::io::Write;

use jiff::Timestamp;
use serde::Serialize;

use super::CtlError;
use crate::cloud::registry::Kind;
use edgetwin_model::devices::{Device, DeviceModel, GROUP, Time};

/// `-o` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The default table.
    Table,
    /// The table with more columns (desired/reported summaries).
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// `kind.group/name` per object.
    Name,
}

impl std::str::FromStr for Format {
    type Err = CtlError;

    fn from_str(text: &str) -> Result<Self, CtlError> {
        match text {
            "" => Ok(Format::Table),
            "wide" => Ok(Format::Wide),
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            "name" => Ok(Format::Name),
            other => Err(CtlError::Usage(format!(
                "unable to match a printer suitable for the output format {other:?}, allowed formats are: json, name, wide, yaml"
            ))),
        }
    }
}

/// A table printed like kubectl's: columns padded to their widest cell plus three spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: Vec<&'static str>) -> Self {
        Self {
            headers,
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per header; empty cells print as `<none>`).
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the header and the rows.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let cells = |row: &[String]| -> Vec<String> {
            row.iter()
                .map(|c| {
                    if c.is_empty() {
                        "<none>".to_owned()
                    } else {
                        c.clone()
                    }
                })
                .collect()
        };
        let rows: Vec<Vec<String>> = self.rows.iter().map(|r| cells(r)).collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&rows) {
            writeln!(out, "{}", padded(row, &widths))?;
        }
        Ok(())
    }
}

/// One row with each cell padded to `widths` plus three spaces, the last unpadded.
pub fn padded(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        line.push_str(cell);
        if i + 1 < row.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count()) + 3;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line
}

/// `device.devices.kubeedge.io` or `devicemodel.devices.kubeedge.io`, as kubectl names a kind.
pub fn kind_name(kind: Kind) -> String {
    format!("{}.{GROUP}", kind.as_str().to_lowercase())
}

/// An object's age like kubectl prints it: `45s`, `3m20s`, `5h`, `2d3h`, `400d`, `2y10d`.
pub fn age(created: Option<&Time>, now: Timestamp) -> String {
    let Some(created) = created else {
        return "<unknown>".into();
    };
    let seconds = now.as_second().saturating_sub(created.0.as_second()).max(0);
    human_duration(seconds)
}

/// kubectl's `HumanDuration`, for whole seconds.
pub fn human_duration(seconds: i64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        let (years, d) = (days / 365, days % 365);
        if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        }
    } else {
        format!("{}y", days / 365)
    }
}

/// `red=ON,green=OFF`: the desired values of a Device's properties, in spec order.
pub fn desired_summary(device: &Device) -> String {
    device
        .spec
        .properties
        .iter()
        .filter_map(|p| Some(format!("{}={}", p.name, p.desired.as_ref()?.value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `red=ON,green=OFF`: the reported values of a Device's twins.
pub fn reported_summary(device: &Device) -> String {
    device
        .status
        .iter()
        .flat_map(|s| &s.twins)
        .filter_map(|t| {
            Some(format!(
                "{}={}",
                t.property_name,
                t.reported.as_ref()?.value
            ))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The device table: NAME NODE MODEL PROTOCOL STATE AGE, `NAMESPACE` first for all namespaces,
/// `DESIRED` and `REPORTED` summaries when wide.
pub fn device_table(devices: &[Device], all_namespaces: bool, wide: bool, now: Timestamp) -> Table {
    let mut headers = Vec::new();
    if all_namespaces {
        headers.push("NAMESPACE");
    }
    headers.extend(["NAME", "NODE", "MODEL", "PROTOCOL", "STATE", "AGE"]);
    if wide {
        headers.extend(["DESIRED", "REPORTED"]);
    }
    let mut table = Table::new(headers);
    for device in devices {
        let mut row = Vec::new();
        if all_namespaces {
            row.push(device.namespace().to_owned());
        }
        row.extend([
            device.name().to_owned(),
            device.node_name().unwrap_or_default().to_owned(),
            device.model_name().unwrap_or_default().to_owned(),
            device.protocol_name().unwrap_or_default().to_owned(),
            device
                .status
                .as_ref()
                .and_then(|s| s.state.clone())
                .unwrap_or_default(),
            age(device.metadata.creation_timestamp.as_ref(), now),
        ]);
        if wide {
            row.push(desired_summary(device));
            row.push(reported_summary(device));
        }
        table.push(row);
    }
    table
}

/// The model table: NAME PROTOCOL PROPERTIES AGE, with the property names and types when wide.
pub fn model_table(
    models: &[DeviceModel],
    all_namespaces: bool,
    wide: bool,
    now: Timestamp,
) -> Table {
    let mut headers = Vec::new();
    if all_namespaces {
        headers.push("NAMESPACE");
    }
    headers.extend(["NAME", "PROTOCOL", "PROPERTIES", "AGE"]);
    if wide {
        headers.push("TYPES");
    }
    let mut table = Table::new(headers);
    for model in models {
        let mut row = Vec::new();
        if all_namespaces {
            row.push(model.namespace().to_owned());
        }
        row.extend([
            model.name().to_owned(),
            model.spec.protocol.clone().unwrap_or_default(),
            model.spec.properties.len().to_string(),
            age(model.metadata.creation_timestamp.as_ref(), now),
        ]);
        if wide {
            row.push(
                model
                    .spec
                    .properties
                    .iter()
                    .map(|p| {
                        format!(
                            "{}:{}",
                            p.name,
                            format!("{:?}", p.property_type).to_uppercase()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        table.push(row);
    }
    table
}

/// Writes objects as JSON or YAML: one object as itself, several as a kubectl `List`.
pub fn write_serialized<T: Serialize>(
    objects: &[T],
    single: bool,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let value = if single && objects.len() == 1 {
        serde_json::to_value(&objects[0])
    } else {
        serde_json::to_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": ""},
            "items": objects,
        }))
    }
    .map_err(|e| CtlError::Encode(e.to_string()))?;
    match format {
        Format::Yaml => {
            let text =
                serde_saphyr::to_string(&value).map_err(|e| CtlError::Encode(e.to_string()))?;
            out.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
        }
        _ => {
            let text = serde_json::to_string_pretty(&value)
                .map_err(|e| CtlError::Encode(e.to_string()))?;
            writeln!(out, "{text}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (240, "4m"),
            (1200, "20m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (50 * 3600, "2d2h"),
            (30 * 86_400, "30d"),
            (3 * 365 * 86_400 + 2 * 86_400, "3y2d"),
            (9 * 365 * 86_400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(seconds), expected, "{seconds}");
        }
        assert_eq!(age(None, Timestamp::UNIX_EPOCH), "<unknown>");
    }

    #[test]
    fn tables_pad_columns_and_mark_empty_cells() {
        let mut table = Table::new(vec!["NAME", "STATE"]);
        table.push(vec!["traffic-light".into(), "online".into()]);
        table.push(vec!["x".into(), String::new()]);
        let mut out = Vec::new();
        table.write(&mut out).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "NAME            STATE\ntraffic-light   online\nx               <none>\n"
        );
    }

    #[test]
    fn unknown_formats_are_usage_errors() {
        assert_eq!("wide".parse::<Format>().ok(), Some(Format::Wide));
        let err = "xml".parse::<Format>().expect_err("unknown");
        assert!(err.to_string().contains("\"xml\""), "{err}");
    }
}
