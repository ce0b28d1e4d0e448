//! Go `encoding/json` key matching for serde: struct fields match case-insensitively.
//!
//! Go matches a JSON key to a struct field by exact name first and then case-insensitively, so
//! KubeEdge accepts `"State"` for `state` (its DMI server even emits it). Serde matches exactly.
//! [`GoCase`] wraps any serde [`Deserializer`] and, whenever a type asks for a **struct** (serde's
//! `deserialize_struct`, which carries the list of field names), renames each key that is not a
//! field name to the field it matches case-insensitively. Keys of **maps** (`deserialize_map`: twin
//! property names, attributes, metadata extras) pass through untouched, so user data is never
//! case-folded. The wrapping is recursive: every nested value is decoded through [`GoCase`] too.
//!
//! Like Go, and unlike serde, a struct is never read from a JSON array.
//!
//! Folding is ASCII-only; Go also folds the Kelvin sign and the long s, which no KubeEdge producer
//! uses in a key. Types that must decode the same way under plain serde (they carry their own
//! folding) use [`go_field_name`] directly.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// The field a JSON key selects, Go style: an exact field name wins, then the first field that
/// matches ignoring ASCII case. `None` means the key is unknown.
pub(crate) fn go_field_name(key: &str, fields: &[&'static str]) -> Option<&'static str> {
    fields
        .iter()
        .copied()
        .find(|field| *field == key)
        .or_else(|| {
            fields
                .iter()
                .copied()
                .find(|field| field.eq_ignore_ascii_case(key))
        })
}

/// A deserializer that decodes struct keys the way Go's `encoding/json` does (see the module docs).
pub(crate) struct GoCase<D>(pub(crate) D);

/// Forwards `deserialize_*` methods that take only a visitor.
macro_rules! forward_deserialize {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Wrap::plain(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for GoCase<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Wrap::plain(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_newtype_struct(name, Wrap::plain(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap::plain(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_tuple_struct(name, len, Wrap::plain(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_struct(name, fields, Wrap::for_struct(visitor, fields))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_enum(name, variants, Wrap::plain(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Wraps a visitor so that everything nested is decoded through [`GoCase`]; `struct_fields` is set
/// when the visitor decodes a struct, whose keys are then matched Go style.
struct Wrap<V> {
    visitor: V,
    struct_fields: Option<&'static [&'static str]>,
}

impl<V> Wrap<V> {
    fn plain(visitor: V) -> Self {
        Wrap {
            visitor,
            struct_fields: None,
        }
    }

    fn for_struct(visitor: V, fields: &'static [&'static str]) -> Self {
        Wrap {
            visitor,
            struct_fields: Some(fields),
        }
    }
}

/// Forwards `visit_*` methods that take one plain value.
macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, value: $ty) -> Result<Self::Value, E> {
            self.visitor.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(formatter)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.visitor.visit_some(GoCase(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        self.visitor.visit_newtype_struct(GoCase(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        // Serde would fill a struct from an array by position; Go rejects that.
        if self.struct_fields.is_some() {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        self.visitor.visit_seq(WrapSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_map(WrapMap {
            map,
            struct_fields: self.struct_fields,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_enum(WrapEnum(data))
    }
}

/// Decodes a value through [`GoCase`].
struct WrapSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for WrapSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(GoCase(deserializer))
    }
}

struct WrapSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for WrapSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(WrapSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct WrapMap<A> {
    map: A,
    struct_fields: Option<&'static [&'static str]>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WrapMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.struct_fields {
            Some(fields) => self.map.next_key_seed(FieldKey { seed, fields }),
            None => self.map.next_key_seed(WrapSeed(seed)),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(WrapSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// Reads a struct key and hands the matching field name (or the key itself, when unknown) on.
struct FieldKey<K> {
    seed: K,
    fields: &'static [&'static str],
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for FieldKey<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for FieldKey<K> {
    type Value = K::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<K::Value, E> {
        match go_field_name(key, self.fields) {
            Some(field) => self.seed.deserialize(field.into_deserializer()),
            None => self.seed.deserialize(key.into_deserializer()),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<K::Value, E> {
        match go_field_name(key, self.fields) {
            Some(field) => self.seed.deserialize(field.into_deserializer()),
            None => self
                .seed
                .deserialize(de::value::BorrowedStrDeserializer::new(key)),
        }
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<K::Value, E> {
        match go_field_name(&key, self.fields) {
            Some(field) => self.seed.deserialize(field.into_deserializer()),
            None => self.seed.deserialize(key.into_deserializer()),
        }
    }
}

struct WrapEnum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for WrapEnum<A> {
    type Error = A::Error;
    type Variant = WrapVariant<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(seed)?;
        Ok((value, WrapVariant(variant)))
    }
}

struct WrapVariant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for WrapVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.0.newtype_variant_seed(WrapSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap::plain(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0
            .struct_variant(fields, Wrap::for_struct(visitor, fields))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    fn go_decode<T: for<'de> Deserialize<'de>>(json: &str) -> T {
        let mut de = serde_json::Deserializer::from_str(json);
        T::deserialize(GoCase(&mut de)).expect("decodes")
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(default)]
    struct Inner {
        event_id: String,
        last_online: Option<String>,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(default)]
    struct Outer {
        state: String,
        inner: Option<Inner>,
        list: Vec<Inner>,
        by_name: BTreeMap<String, Inner>,
    }

    #[test]
    fn exact_match_is_preferred_over_case_insensitive() {
        assert_eq!(go_field_name("state", &["State", "state"]), Some("state"));
        assert_eq!(go_field_name("STATE", &["state"]), Some("state"));
        assert_eq!(go_field_name("stat", &["state"]), None);
    }

    #[test]
    fn struct_keys_fold_at_every_depth_but_map_keys_do_not() {
        let got: Outer = go_decode(
            r#"{"STATE":"online",
                "Inner":{"Event_ID":"e1","LAST_online":"now"},
                "List":[{"EVENT_ID":"e2"}],
                "By_Name":{"Red":{"Event_Id":"e3"},"red":{"event_id":"e4"}}}"#,
        );
        assert_eq!(got.state, "online");
        assert_eq!(
            got.inner,
            Some(Inner {
                event_id: "e1".into(),
                last_online: Some("now".into())
            })
        );
        assert_eq!(got.list[0].event_id, "e2");
        let names: Vec<_> = got.by_name.keys().map(String::as_str).collect();
        assert_eq!(names, ["Red", "red"], "map keys are user data");
        assert_eq!(got.by_name["Red"].event_id, "e3");
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let got: Inner = go_decode(r#"{"event_id":"e","Power_Status":"ON","nested":{"a":[1]}}"#);
        assert_eq!(got.event_id, "e");
    }

    #[test]
    fn a_struct_is_not_read_from_an_array() {
        let mut de = serde_json::Deserializer::from_str(r#"["e", "now"]"#);
        let error = Inner::deserialize(GoCase(&mut de)).expect_err("arrays are not structs");
        assert!(
            error.to_string().contains("expected struct Inner"),
            "{error}"
        );
        let list: Vec<String> = go_decode(r#"["arrays", "still work"]"#);
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn folding_works_over_a_json_value_too() {
        let value = serde_json::json!({"Event_Id": "from-value"});
        let got = Inner::deserialize(GoCase(&value)).expect("decodes");
        assert_eq!(got.event_id, "from-value");
    }

    #[test]
    fn enums_and_tuples_pass_through() {
        #[derive(Debug, PartialEq, Deserialize)]
        enum Shape {
            Unit,
            Point(i32, i32),
            Named { label: String },
        }
        let shapes: Vec<Shape> = go_decode(r#"["Unit",{"Point":[1,2]},{"Named":{"LABEL":"x"}}]"#);
        assert_eq!(
            shapes,
            [
                Shape::Unit,
                Shape::Point(1, 2),
                Shape::Named { label: "x".into() }
            ]
        );
    }
}
