//! The shape of a serde type, found by deserializing it from a `Deserializer` that offers every
//! field: each `Option` is `Some`, each sequence has one element and each map one entry (key
//! `""`). Serialized back to JSON this gives a template of the type: every field present, every
//! nested message expanded, and an element template for each list and map.

use std::fmt;

use serde::Serialize;
use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};
use serde_json::Value;

/// Nesting beyond this gets `None`, empty lists and empty maps, so recursive types end.
const MAX_DEPTH: usize = 24;

/// The JSON template of `T` (see the module docs).
pub fn template<T: DeserializeOwned + Serialize>() -> anyhow::Result<Value> {
    let value = T::deserialize(Probe { depth: 0 }).map_err(|e| anyhow::anyhow!("{}", e.0))?;
    Ok(serde_json::to_value(value)?)
}

/// Whether a template object stands for a map (its one entry has the key `""`; no struct
/// field is named `""`) rather than a message.
pub fn is_map_template(template: &serde_json::Map<String, Value>) -> bool {
    template.contains_key("")
}

#[derive(Debug)]
pub struct ProbeError(String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ProbeError(msg.to_string())
    }
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    depth: usize,
}

impl Probe {
    fn deeper(self) -> Option<Probe> {
        (self.depth < MAX_DEPTH).then_some(Probe {
            depth: self.depth + 1,
        })
    }
}

impl<'de> Deserializer<'de> for Probe {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_unit()
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_bool(false)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_i64(0)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_i64(0)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_i64(0)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_i64(0)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_u64(0)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_u64(0)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_u64(0)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_u64(0)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_f64(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_f64(0.0)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_char(' ')
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_str("")
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_str("")
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_bytes(&[])
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_bytes(&[])
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        match self.deeper() {
            Some(probe) => v.visit_some(probe),
            None => v.visit_none(),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, ProbeError> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, ProbeError> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_seq(Elements {
            probe: self.deeper(),
            left: 1,
        })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, ProbeError> {
        v.visit_seq(Elements {
            probe: Some(self),
            left: len,
        })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_tuple(len, v)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_map(Entry {
            probe: self.deeper(),
            value_next: false,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ProbeError> {
        v.visit_map(Fields {
            probe: self,
            fields,
            next: 0,
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ProbeError> {
        v.visit_enum(FirstVariant {
            probe: self,
            variants,
        })
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        v.visit_unit()
    }
}

/// A sequence of `left` probed elements (none once too deep).
struct Elements {
    probe: Option<Probe>,
    left: usize,
}

impl<'de> SeqAccess<'de> for Elements {
    type Error = ProbeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        match self.probe {
            Some(probe) if self.left > 0 => {
                self.left -= 1;
                seed.deserialize(probe).map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// A map with one probed entry (none once too deep).
struct Entry {
    probe: Option<Probe>,
    value_next: bool,
}

impl<'de> MapAccess<'de> for Entry {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        match self.probe {
            Some(probe) if !self.value_next => {
                self.value_next = true;
                seed.deserialize(probe).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        let probe = self
            .probe
            .take()
            .ok_or_else(|| ProbeError("no map value".into()))?;
        seed.deserialize(probe)
    }
}

/// A struct's fields, each named and probed.
struct Fields {
    probe: Probe,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        let Some(name) = self.fields.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let key: StrDeserializer<'_, ProbeError> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        seed.deserialize(self.probe)
    }
}

/// An enum probed as its first variant.
struct FirstVariant {
    probe: Probe,
    variants: &'static [&'static str],
}

impl<'de> EnumAccess<'de> for FirstVariant {
    type Error = ProbeError;
    type Variant = Probe;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Probe), ProbeError> {
        let name = self
            .variants
            .first()
            .ok_or_else(|| ProbeError("an enum without variants".into()))?;
        let key: StrDeserializer<'_, ProbeError> = name.into_deserializer();
        Ok((seed.deserialize(key)?, self.probe))
    }
}

impl<'de> VariantAccess<'de> for Probe {
    type Error = ProbeError;

    fn unit_variant(self) -> Result<(), ProbeError> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, ProbeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, ProbeError> {
        self.deserialize_tuple(len, v)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_struct("", fields, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};

    #[test]
    fn pod_template_expands_every_message() {
        let t = template::<PodSandboxConfig>().expect("template");
        assert_eq!(t.pointer("/metadata/name"), Some(&Value::from("")));
        assert_eq!(t.pointer("/metadata/attempt"), Some(&Value::from(0)));
        assert_eq!(
            t.pointer("/linux/security_context/namespace_options/network"),
            Some(&Value::from(0))
        );
        assert_eq!(t.pointer("/labels/"), Some(&Value::from("")));
        assert_eq!(
            t.pointer("/port_mappings/0/container_port"),
            Some(&Value::from(0))
        );
        let labels = t.get("labels").and_then(Value::as_object).expect("map");
        assert!(is_map_template(labels));
        let metadata = t.get("metadata").and_then(Value::as_object).expect("msg");
        assert!(!is_map_template(metadata));
    }

    #[test]
    fn container_template() {
        let t = template::<ContainerConfig>().expect("template");
        assert_eq!(t.pointer("/image/image"), Some(&Value::from("")));
        assert_eq!(t.pointer("/command/0"), Some(&Value::from("")));
        assert_eq!(t.pointer("/envs/0/key"), Some(&Value::from("")));
        assert_eq!(
            t.pointer("/linux/security_context/seccomp/profile_type"),
            Some(&Value::from(0))
        );
    }
}
