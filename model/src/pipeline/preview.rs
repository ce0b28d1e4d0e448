//! Offline preview: runs a pipeline over recorded samples and shows what would be reported
//! (`edgetwin pipeline test`).
//!
//! Samples come as CSV, one `timestamp_ms,value` row per sample, timestamps not decreasing. A
//! header row is optional, blank lines and lines starting with `#` are skipped, and a value may be
//! double-quoted (with `""` for a quote inside). The runtime's timer is simulated: before each
//! sample, and after the last one until nothing is held any more, [`Pipeline::tick`] runs at each
//! [`Pipeline::next_deadline`], exactly as the mapper runtime does.

use std::fmt::Write as _;

use super::engine::{Outcome, Pipeline, Sample};
use super::error::PipelineError;
use super::literal;
use super::spec::StepKind;
use crate::value::{PropertyType, Value};

/// A bad CSV row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Parses `timestamp_ms,value` rows. With `value_type`, values are parsed as that DeviceModel
/// type; without, a value is an int, float or boolean when it reads as one (unless quoted), else
/// a string.
pub fn parse_samples(csv: &str, value_type: Option<PropertyType>) -> Result<Vec<Sample>, CsvError> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut first_row = true;
    for (index, raw_line) in csv.lines().enumerate() {
        let line = index + 1;
        let fail = |message: String| CsvError { line, message };
        let text = raw_line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let fields = split_fields(text).map_err(fail)?;
        let [timestamp, value] = fields.as_slice() else {
            return Err(fail(format!(
                "expected 2 fields (timestamp_ms,value), found {}",
                fields.len()
            )));
        };
        let is_header = first_row && timestamp.text.trim().parse::<u64>().is_err();
        first_row = false;
        if is_header {
            continue;
        }
        let at_ms: u64 = timestamp.text.trim().parse().map_err(|_| {
            fail(format!(
                "timestamp {:?} is not a whole, non-negative number of milliseconds",
                timestamp.text
            ))
        })?;
        if let Some(previous) = samples.last().filter(|s| s.at_ms > at_ms) {
            return Err(fail(format!(
                "timestamp {at_ms} is earlier than the previous row's {}; rows must be in time order",
                previous.at_ms
            )));
        }
        let value = match value_type {
            Some(property_type) => property_type
                .parse(&value.text)
                .map_err(|e| fail(e.to_string()))?,
            None if value.quoted => Value::String(value.text.clone()),
            None => literal::infer(&value.text),
        };
        samples.push(Sample::new(value, at_ms));
    }
    Ok(samples)
}

struct Field {
    text: String,
    quoted: bool,
}

/// Splits one CSV line into fields (RFC 4180 quoting, no line breaks inside quotes).
fn split_fields(line: &str) -> Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut text = String::new();
        let quoted = chars.next_if_eq(&'"').is_some();
        if quoted {
            loop {
                match chars.next() {
                    Some('"') if chars.next_if_eq(&'"').is_some() => text.push('"'),
                    Some('"') => break,
                    Some(c) => text.push(c),
                    None => return Err("a quoted value is not closed".to_owned()),
                }
            }
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            if chars.peek().is_some_and(|c| *c != ',') {
                return Err("unexpected text after a closing quote".to_owned());
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                text.push(c);
            }
            text.truncate(text.trim_end().len());
        }
        fields.push(Field { text, quoted });
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

/// One line of a preview: a sample, or a timer tick that released something.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewRow {
    /// The sample's time, or the tick's.
    pub at_ms: u64,
    /// The sample's value; `None` for a timer tick.
    pub input: Option<Value>,
    /// What the pipeline made of it.
    pub result: Result<Outcome, PipelineError>,
}

/// Runs `samples` through `pipeline`, ticking its timer as the runtime would, and returns one row
/// per sample plus one per tick that released something.
pub fn run(pipeline: &mut Pipeline, samples: Vec<Sample>) -> Vec<PreviewRow> {
    let mut rows = Vec::with_capacity(samples.len());
    for sample in samples {
        tick_until(pipeline, Some(sample.at_ms), &mut rows);
        let at_ms = sample.at_ms;
        let input = Some(sample.value.clone());
        let result = pipeline.process(sample);
        rows.push(PreviewRow {
            at_ms,
            input,
            result,
        });
    }
    tick_until(pipeline, None, &mut rows);
    rows
}

/// Ticks at every deadline up to `until` (all of them with `None`).
fn tick_until(pipeline: &mut Pipeline, until: Option<u64>, rows: &mut Vec<PreviewRow>) {
    while let Some(deadline) = pipeline
        .next_deadline()
        .filter(|d| until.is_none_or(|u| *d <= u))
    {
        let result = pipeline.tick(deadline).transpose();
        let stuck = result.is_none() && pipeline.next_deadline() == Some(deadline);
        if let Some(result) = result {
            rows.push(PreviewRow {
                at_ms: deadline,
                input: None,
                result,
            });
        }
        // A tick at a deadline always consumes what was due; this guards the loop regardless.
        if stuck {
            break;
        }
    }
}

/// How a row's output and note read.
fn describe(row: &PreviewRow) -> (String, String) {
    match &row.result {
        Ok(Outcome::Report {
            value,
            released_by: None,
        }) => (value.to_wire(), "reported".to_owned()),
        Ok(Outcome::Report {
            value,
            released_by: Some(step),
        }) => (value.to_wire(), format!("reported, released by {step}")),
        Ok(Outcome::Suppressed { by }) => {
            let verb = match by.kind {
                StepKind::Window | StepKind::RateLimit => "held",
                _ => "suppressed",
            };
            ("-".to_owned(), format!("{verb} by {by}"))
        }
        Err(error) => ("-".to_owned(), format!("error: {error}")),
    }
}

fn input_text(row: &PreviewRow) -> String {
    row.input
        .as_ref()
        .map_or_else(|| "(timer)".to_owned(), Value::to_wire)
}

/// The rows as a table for people, with a summary line.
pub fn render_table(rows: &[PreviewRow]) -> String {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|row| {
            let (output, note) = describe(row);
            [row.at_ms.to_string(), input_text(row), output, note]
        })
        .collect();
    let header = ["time_ms", "input", "output", "note"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line = format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&summary(rows));
    out.push('\n');
    out
}

/// The rows as CSV (`time_ms,input,output,note`; timer rows have an empty input).
pub fn render_csv(rows: &[PreviewRow]) -> String {
    let mut out = String::from("time_ms,input,output,note\n");
    for row in rows {
        let (output, note) = describe(row);
        let input = row.input.as_ref().map(Value::to_wire).unwrap_or_default();
        let output = if row
            .result
            .as_ref()
            .is_ok_and(|o| matches!(o, Outcome::Report { .. }))
        {
            output
        } else {
            String::new()
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{}",
            row.at_ms,
            csv_field(&input),
            csv_field(&output),
            csv_field(&note)
        );
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) || text != text.trim() {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// E.g. `6 samples: 2 reported, 3 suppressed or held, 1 refused; 1 released by a timer`.
fn summary(rows: &[PreviewRow]) -> String {
    let samples = rows.iter().filter(|r| r.input.is_some());
    let (mut reported, mut kept, mut refused) = (0, 0, 0);
    for row in samples.clone() {
        match row.result {
            Ok(Outcome::Report { .. }) => reported += 1,
            Ok(Outcome::Suppressed { .. }) => kept += 1,
            Err(_) => refused += 1,
        }
    }
    let timer = rows
        .iter()
        .filter(|r| r.input.is_none() && matches!(r.result, Ok(Outcome::Report { .. })))
        .count();
    format!(
        "{} samples: {reported} reported, {kept} suppressed or held, {refused} refused; \
         {timer} released by a timer",
        samples.count()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::PipelineSpec;

    fn pipeline(yaml: &str) -> Pipeline {
        let spec: PipelineSpec = serde_saphyr::from_str(yaml).expect("valid YAML");
        Pipeline::build(&spec).expect("valid pipeline")
    }

    #[test]
    fn parses_rows_with_an_optional_header_comments_and_quotes() {
        let csv = "timestamp_ms,value\n# a comment\n\n0,21\n100, 21.5 \n200,\"ON, really\"\r\n300,true\n400,\"7\"\n";
        let samples = parse_samples(csv, None).expect("valid CSV");
        let values: Vec<_> = samples.iter().map(|s| (s.at_ms, s.value.clone())).collect();
        assert_eq!(
            values,
            vec![
                (0, Value::Int(21)),
                (100, Value::Float(21.5)),
                (200, Value::String("ON, really".into())),
                (300, Value::Boolean(true)),
                (400, Value::String("7".into())),
            ]
        );
        let no_header = parse_samples("5,1\n", None).expect("valid CSV");
        assert_eq!(no_header, vec![Sample::new(Value::Int(1), 5)]);
        let quote = parse_samples("5,\"say \"\"hi\"\"\"\n", None).expect("valid CSV");
        assert_eq!(quote[0].value, Value::String("say \"hi\"".into()));
    }

    #[test]
    fn a_value_type_parses_values_as_that_type() {
        let samples = parse_samples("0,1\n1,2.5\n", Some(PropertyType::Float)).expect("floats");
        assert_eq!(samples[0].value, Value::Float(1.0));
        let error = parse_samples("0,1\n1,ON\n", Some(PropertyType::Int)).expect_err("not an int");
        assert_eq!(error.line, 2);
        assert!(error.message.contains("\"ON\""), "{error}");
    }

    #[test]
    fn bad_rows_are_refused_with_their_line_number() {
        for (csv, line, message) in [
            (
                "0,1\n1\n",
                2,
                "expected 2 fields (timestamp_ms,value), found 1",
            ),
            (
                "0,1,2\n",
                1,
                "expected 2 fields (timestamp_ms,value), found 3",
            ),
            (
                "t,v\nabc,1\n",
                2,
                "timestamp \"abc\" is not a whole, non-negative number of milliseconds",
            ),
            (
                "0,1\n-5,1\n",
                2,
                "timestamp \"-5\" is not a whole, non-negative number of milliseconds",
            ),
            (
                "10,1\n\n5,1\n",
                3,
                "timestamp 5 is earlier than the previous row's 10; rows must be in time order",
            ),
            ("0,\"open\n", 1, "a quoted value is not closed"),
            ("0,\"a\"b\n", 1, "unexpected text after a closing quote"),
        ] {
            let error = parse_samples(csv, None).expect_err(csv);
            assert_eq!(
                (error.line, error.message.as_str()),
                (line, message),
                "{csv:?}"
            );
        }
    }

    #[test]
    fn run_interleaves_timer_releases_and_drains_them_at_the_end() {
        let mut p = pipeline("- rateLimit: {minInterval: 1s}\n");
        let samples = parse_samples("0,1\n100,2\n1500,3\n1600,4\n", None).expect("valid CSV");
        let rows = run(&mut p, samples);
        let described: Vec<(u64, String, String, String)> = rows
            .iter()
            .map(|r| {
                let (output, note) = describe(r);
                (r.at_ms, input_text(r), output, note)
            })
            .collect();
        let row = |t: u64, i: &str, o: &str, n: &str| (t, i.to_owned(), o.to_owned(), n.to_owned());
        let released = "reported, released by pipeline[0] (rateLimit)";
        let held = "held by pipeline[0] (rateLimit)";
        assert_eq!(
            described,
            vec![
                row(0, "1", "1", "reported"),
                row(100, "2", "-", held),
                row(1_000, "(timer)", "2", released),
                row(1_500, "3", "-", held),
                row(1_600, "4", "-", held),
                row(2_000, "(timer)", "4", released),
            ]
        );
    }

    #[test]
    fn renders_a_table_with_a_summary_and_csv_with_quoting() {
        let mut p = pipeline("- map: {\"0\": \"OFF\", \"1\": \"ON, bright\"}\n- deadband: {}\n");
        let samples = parse_samples("0,1\n10,1\n20,2\n", None).expect("valid CSV");
        let rows = run(&mut p, samples);
        let table = render_table(&rows);
        assert_eq!(
            table,
            "time_ms  input  output      note\n\
             \x20     0  1      ON, bright  reported\n\
             \x20    10  1      -           suppressed by pipeline[1] (deadband)\n\
             \x20    20  2      -           error: pipeline[0] (map): no entry for \"2\" (the map's keys are 0, 1)\n\
             3 samples: 1 reported, 1 suppressed or held, 1 refused; 0 released by a timer\n"
        );
        let csv = render_csv(&rows);
        assert_eq!(
            csv,
            "time_ms,input,output,note\n\
             0,1,\"ON, bright\",reported\n\
             10,1,,suppressed by pipeline[1] (deadband)\n\
             20,2,,\"error: pipeline[0] (map): no entry for \"\"2\"\" (the map's keys are 0, 1)\"\n"
        );
    }
}
