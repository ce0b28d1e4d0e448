//! [`JsonField`]: a key that may be missing, `null`, or hold a value.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A map, slice or pointer field that Go writes **without** `omitempty`: Go emits `null` for nil,
/// some producers leave the key out, and KubeEdge treats a nil twin map differently from an empty
/// one. Keeping the three cases apart makes round trips exact.
///
/// Use it with `#[serde(skip_serializing_if = "JsonField::is_missing")]` (and a container
/// `#[serde(default)]`) so that a missing key stays missing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum JsonField<T> {
    /// The key was absent; it is left out on output.
    #[default]
    Missing,
    /// The key was `null` (Go's nil).
    Null,
    /// The key held a value.
    Value(T),
}

impl<T> JsonField<T> {
    /// True when the key was absent.
    pub fn is_missing(&self) -> bool {
        matches!(self, JsonField::Missing)
    }

    /// The value, if there is one (`Missing` and `Null` both give `None`).
    pub fn value(&self) -> Option<&T> {
        match self {
            JsonField::Value(value) => Some(value),
            JsonField::Missing | JsonField::Null => None,
        }
    }

    /// The value for in-place changes, if there is one.
    pub fn value_mut(&mut self) -> Option<&mut T> {
        match self {
            JsonField::Value(value) => Some(value),
            JsonField::Missing | JsonField::Null => None,
        }
    }

    /// Consumes the field and returns the value, if there is one.
    pub fn into_value(self) -> Option<T> {
        match self {
            JsonField::Value(value) => Some(value),
            JsonField::Missing | JsonField::Null => None,
        }
    }
}

impl<T> From<T> for JsonField<T> {
    fn from(value: T) -> Self {
        JsonField::Value(value)
    }
}

impl<T> From<Option<T>> for JsonField<T> {
    /// `None` becomes `Null`, as Go writes a nil field.
    fn from(value: Option<T>) -> Self {
        value.map_or(JsonField::Null, JsonField::Value)
    }
}

impl<T: Serialize> Serialize for JsonField<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonField::Value(value) => value.serialize(serializer),
            JsonField::Missing | JsonField::Null => serializer.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonField<T> {
    /// Only called when the key is present; an absent key is the container default, `Missing`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(deserializer).map(JsonField::from)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Holder {
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        list: JsonField<Vec<u8>>,
    }

    fn round_trip(json: &str) -> (Holder, String) {
        let holder: Holder = serde_json::from_str(json).expect("decodes");
        let out = serde_json::to_string(&holder).expect("encodes");
        (holder, out)
    }

    #[test]
    fn missing_null_and_value_round_trip_exactly() {
        let (holder, out) = round_trip("{}");
        assert_eq!(holder.list, JsonField::Missing);
        assert_eq!(out, "{}");

        let (holder, out) = round_trip(r#"{"list":null}"#);
        assert_eq!(holder.list, JsonField::Null);
        assert_eq!(out, r#"{"list":null}"#);

        let (holder, out) = round_trip(r#"{"list":[]}"#);
        assert_eq!(holder.list, JsonField::Value(vec![]));
        assert_eq!(out, r#"{"list":[]}"#);
    }

    #[test]
    fn accessors_treat_missing_and_null_as_no_value() {
        assert_eq!(JsonField::<u8>::Missing.value(), None);
        assert_eq!(JsonField::<u8>::Null.into_value(), None);
        let mut field = JsonField::from(7u8);
        if let Some(value) = field.value_mut() {
            *value += 1;
        }
        assert_eq!(field.value(), Some(&8));
        assert_eq!(JsonField::<u8>::from(None), JsonField::Null);
    }
}
