//! `map: {"0": "OFF", "1": "ON"}` — replaces raw values by labels on read, and labels by raw values
//! on write.
//!
//! * A key matches a value when it is the value's wire form (`"true"`, `"ON"`), or when both are
//!   numbers and equal (`"1"` matches the int 1 and the float 1.0). Keys that match the same
//!   number (`"1"` and `"1.0"`) are refused when the pipeline is built.
//! * A value no key matches is an error: a map declares the property's vocabulary, and passing an
//!   unknown raw value through would report something of another type. The runtime logs the error
//!   and reports nothing for that sample.
//! * A label is reported exactly as written. It becomes an int, float or boolean when its text is
//!   exactly that value's wire form (`"1"`, `"0.5"`, `"true"`), so numeric steps can follow;
//!   otherwise it is a string (`"OFF"`, `"007"`).
//! * On write, the desired value is matched against the labels the same way; the key found is
//!   handed on as an int, float or boolean when it reads as one, else as a string. A label shared
//!   by several keys cannot be written (which key would be meant?) and is refused.

use std::collections::BTreeSet;

use crate::pipeline::error::Problem;
use crate::pipeline::literal;
use crate::pipeline::number::as_number;
use crate::pipeline::spec::MapSpec;
use crate::value::Value;

#[derive(Debug, Clone)]
pub(crate) struct MapStep {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    key: Term,
    label: Term,
    /// The key as a typed value, for the write path.
    raw: Value,
    /// The label as a typed value, for the read path.
    reported: Value,
}

/// A key or a label: its text and, when it reads as one, its number.
#[derive(Debug, Clone)]
struct Term {
    text: String,
    number: Option<f64>,
}

impl Term {
    fn new(text: &str) -> Self {
        Term {
            text: text.to_owned(),
            number: text.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        }
    }

    fn matches(&self, value: &Value) -> bool {
        if let (Some(a), Some(b)) = (self.number, as_number(value)) {
            return a == b;
        }
        self.text == value.to_wire()
    }
}

impl MapStep {
    pub(crate) fn new(spec: &MapSpec) -> Result<Self, Problem> {
        if spec.0.is_empty() {
            return Err(Problem::config("map", "needs at least one entry"));
        }
        let entries: Vec<Entry> = spec
            .0
            .iter()
            .map(|(key, label)| Entry {
                key: Term::new(key),
                label: Term::new(label),
                raw: literal::infer(key),
                reported: literal::infer_exact(label),
            })
            .collect();
        for (i, a) in entries.iter().enumerate() {
            if let Some(b) = entries[i + 1..]
                .iter()
                .find(|b| a.key.number.is_some() && a.key.number == b.key.number)
            {
                return Err(Problem::config(
                    "map",
                    format!(
                        "keys {:?} and {:?} are the same number; keep one",
                        a.key.text, b.key.text
                    ),
                ));
            }
        }
        Ok(MapStep { entries })
    }

    pub(crate) fn read(&self, value: &Value) -> Result<Value, Problem> {
        self.entries
            .iter()
            .find(|e| e.key.matches(value))
            .map(|e| e.reported.clone())
            .ok_or_else(|| Problem::Unmapped {
                value: value.to_wire(),
                keys: self.list(|e| &e.key),
            })
    }

    pub(crate) fn write(&self, desired: &Value) -> Result<Value, Problem> {
        let found: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.label.matches(desired))
            .collect();
        match found.as_slice() {
            [entry] => Ok(entry.raw.clone()),
            [] => Err(Problem::NoInverse {
                value: desired.to_wire(),
                labels: self.list(|e| &e.label),
            }),
            several => Err(Problem::AmbiguousInverse {
                value: desired.to_wire(),
                keys: several
                    .iter()
                    .map(|e| e.key.text.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn list(&self, term: impl Fn(&Entry) -> &Term) -> String {
        let texts: BTreeSet<&str> = self.entries.iter().map(|e| term(e).text.as_str()).collect();
        texts.into_iter().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn map(entries: &[(&str, &str)]) -> Result<MapStep, Problem> {
        MapStep::new(&MapSpec(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ))
    }

    fn on_off() -> MapStep {
        map(&[("0", "OFF"), ("1", "ON")]).expect("valid map")
    }

    #[test]
    fn reads_numbers_of_any_numeric_type_and_booleans_by_wire_form() {
        let m = on_off();
        assert_eq!(m.read(&Value::Int(1)), Ok(Value::String("ON".into())));
        assert_eq!(m.read(&Value::Float(0.0)), Ok(Value::String("OFF".into())));
        let b = map(&[("true", "open"), ("false", "closed")]).expect("valid map");
        assert_eq!(
            b.read(&Value::Boolean(false)),
            Ok(Value::String("closed".into()))
        );
        let s = map(&[("fault", "3")]).expect("valid map");
        assert_eq!(s.read(&Value::String("fault".into())), Ok(Value::Int(3)));
    }

    #[test]
    fn unmapped_values_are_an_error_naming_the_keys() {
        let error = on_off().read(&Value::Int(2)).expect_err("unmapped");
        assert_eq!(
            error.to_string(),
            "no entry for \"2\" (the map's keys are 0, 1)"
        );
        // A string "1" is not the number 1: strings match by text only.
        let error = on_off()
            .read(&Value::String("1.0".into()))
            .expect_err("text differs");
        assert!(matches!(error, Problem::Unmapped { .. }));
    }

    #[test]
    fn labels_keep_their_exact_text() {
        let m =
            map(&[("1", "007"), ("2", "0.50"), ("3", "1.5"), ("4", "true")]).expect("valid map");
        assert_eq!(m.read(&Value::Int(1)), Ok(Value::String("007".into())));
        assert_eq!(m.read(&Value::Int(2)), Ok(Value::String("0.50".into())));
        assert_eq!(m.read(&Value::Int(3)), Ok(Value::Float(1.5)));
        assert_eq!(m.read(&Value::Int(4)), Ok(Value::Boolean(true)));
    }

    #[test]
    fn write_maps_labels_back_to_typed_raw_values() {
        assert_eq!(
            on_off().write(&Value::String("ON".into())),
            Ok(Value::Int(1))
        );
        let b = map(&[("true", "open"), ("false", "closed")]).expect("valid map");
        assert_eq!(
            b.write(&Value::String("open".into())),
            Ok(Value::Boolean(true))
        );
        let f = map(&[("0.5", "half"), ("raw", "r")]).expect("valid map");
        assert_eq!(
            f.write(&Value::String("half".into())),
            Ok(Value::Float(0.5))
        );
        assert_eq!(
            f.write(&Value::String("r".into())),
            Ok(Value::String("raw".into()))
        );
        // Numeric labels match numerically on write too.
        let n = map(&[("10", "1"), ("20", "2")]).expect("valid map");
        assert_eq!(n.write(&Value::Float(2.0)), Ok(Value::Int(20)));
    }

    #[test]
    fn write_refuses_unknown_and_shared_labels() {
        let error = on_off()
            .write(&Value::String("DIM".into()))
            .expect_err("unknown label");
        assert_eq!(
            error.to_string(),
            "no entry maps to \"DIM\" (the map's labels are OFF, ON)"
        );
        let shared = map(&[("0", "OFF"), ("2", "OFF"), ("1", "ON")])
            .expect("many-to-one is fine for reading");
        assert_eq!(shared.read(&Value::Int(2)), Ok(Value::String("OFF".into())));
        let error = shared
            .write(&Value::String("OFF".into()))
            .expect_err("ambiguous");
        assert_eq!(
            error.to_string(),
            "\"OFF\" is the label of several keys (0, 2), so it cannot be written"
        );
    }

    #[test]
    fn keys_that_are_the_same_number_and_empty_maps_are_config_errors() {
        let error = map(&[("1", "a"), ("1.0", "b")]).expect_err("same number");
        assert!(
            error
                .to_string()
                .contains("keys \"1\" and \"1.0\" are the same number"),
            "{error}"
        );
        assert!(map(&[]).is_err());
    }
}
