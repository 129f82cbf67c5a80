//! Hand-written serde where the derives fall short:
//!
//! - the string-or-object fields `network` and `image`: `#[serde(untagged)]`
//!   would accept the same documents but reports every mistake as "data did
//!   not match any variant"; these visitors keep serde's precise messages
//!   (and, through `serde_path_to_error`, the field path);
//! - `VolumeSource`, written as a plain `{"host": ...}` map (`serde_norway`
//!   would write the derived enum as a YAML tag, `!host /etc/api`);
//! - the limit counts, so that negative numbers get the spec's message;
//! - `Seccomp`, a string whose values are spelled like Kubernetes' profile
//!   names (`runtime/default`), not like Rust identifiers.
//! - [`Object`]: a struct written as a JSON object and nothing else. serde's
//!   derive also takes a sequence of the fields' values for a struct, so
//!   `"limits": []` would be the default limits and `"mounts": [["data",
//!   "/data"]]` a mount; every struct-typed field is read through it.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Unexpected, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{validate, Image, Network, NicNetwork, Seccomp, VolumeSource};

impl Serialize for Network {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Network::None => serializer.serialize_str("none"),
            Network::Host => serializer.serialize_str("host"),
            Network::Nics(nics) => nics.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NetworkVisitor;

        impl<'de> Visitor<'de> for NetworkVisitor {
            type Value = Network;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""none", "host" or a {"nics": [...]} object"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Network, E> {
                match v {
                    "none" => Ok(Network::None),
                    "host" => Ok(Network::Host),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Network, A::Error> {
                NicNetwork::deserialize(MapAccessDeserializer::new(map)).map(Network::Nics)
            }
        }

        deserializer.deserialize_any(NetworkVisitor)
    }
}

/// The object form of [`Image`]: `{"rootfs": "/abs/path"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RootfsImage {
    rootfs: PathBuf,
}

impl Serialize for Image {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Image::Reference(reference) => serializer.serialize_str(reference),
            Image::Rootfs(path) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("rootfs", path)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Image {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ImageVisitor;

        impl<'de> Visitor<'de> for ImageVisitor {
            type Value = Image;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an image reference or a {"rootfs": "/abs/path"} object"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Image, E> {
                Ok(Image::Reference(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Image, A::Error> {
                let RootfsImage { rootfs } =
                    RootfsImage::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Image::Rootfs(rootfs))
            }
        }

        deserializer.deserialize_any(ImageVisitor)
    }
}

impl Serialize for VolumeSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            VolumeSource::Host(path) => map.serialize_entry("host", path)?,
        }
        map.end()
    }
}

/// A limit count: any JSON integer that fits a `u64`, so that a negative
/// number gets the same "must be a positive number of …" message as zero
/// (which validation rejects) instead of serde's "expected u64".
struct Count {
    unit: &'static str,
}

impl Visitor<'_> for Count {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a positive number of {}", self.unit)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(validate::not_positive(self.unit)))
    }
}

pub(super) fn memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_u64(Count {
        unit: validate::BYTES,
    })
    .map(Some)
}

pub(super) fn pids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_u64(Count {
        unit: validate::PROCESSES,
    })
    .map(Some)
}

pub(super) fn microseconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_u64(Count {
        unit: validate::MICROSECONDS,
    })
}

impl Serialize for Seccomp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Seccomp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeccompVisitor;

        impl Visitor<'_> for SeccompVisitor {
            type Value = Seccomp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""runtime/default" or "unconfined""#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seccomp, E> {
                [Seccomp::RuntimeDefault, Seccomp::Unconfined]
                    .into_iter()
                    .find(|s| s.as_str() == v)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_str(SeccompVisitor)
    }
}

/// A `T` that must be written as a JSON object (a map): any other form,
/// a sequence above all, is "invalid type: …, expected a JSON object".
pub(super) struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// A struct-typed field: an object.
pub(super) fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Object::deserialize(d).map(|o| o.0)
}

/// An optional struct-typed field: an object or null.
pub(super) fn optional_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Object<T>>::deserialize(d).map(|o| o.map(|o| o.0))
}

/// A list of structs: each an object.
pub(super) fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Vec::<Object<T>>::deserialize(d).map(|v| v.into_iter().map(|o| o.0).collect())
}
