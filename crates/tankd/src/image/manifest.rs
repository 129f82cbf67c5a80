//! OCI/Docker manifests and indexes: the few fields Tank reads, parsed
//! leniently (Docker schema 2 and OCI share the shape), and the choice of
//! the host's manifest from an index.

use serde::Deserialize;

use super::digest::Digest;
use super::error::ImageError;
use super::platform::{self, Platform};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Every manifest media type Tank accepts from a registry.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<std::collections::HashMap<String, String>>,
}

impl Descriptor {
    pub fn digest(&self) -> Result<Digest, ImageError> {
        Digest::parse(&self.digest)
    }
}

/// A manifest or an index (exactly one of `manifests`, `config` is set).
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image manifest: a config and its layers.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// What a manifest document turned out to be.
pub enum Parsed {
    Index(Vec<Descriptor>),
    Manifest(Manifest),
}

pub fn parse(what: &str, bytes: &[u8]) -> Result<Parsed, ImageError> {
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| ImageError::malformed(what, e))?;
    match (doc.manifests, doc.config) {
        (Some(manifests), None) => Ok(Parsed::Index(manifests)),
        (None, Some(config)) => Ok(Parsed::Manifest(Manifest {
            config,
            layers: doc.layers,
        })),
        _ => Err(ImageError::malformed(
            what,
            format!(
                "neither an image index nor an image manifest (media type {:?})",
                doc.media_type.unwrap_or_default()
            ),
        )),
    }
}

/// Chooses the entry of an index for `host`; the error lists what there is.
pub fn choose<'a>(
    reference: &str,
    host: &Platform,
    entries: &'a [Descriptor],
) -> Result<&'a Descriptor, ImageError> {
    let image_entries: Vec<&Descriptor> = entries.iter().filter(|d| d.platform.is_some()).collect();
    let platforms: Vec<Platform> = image_entries
        .iter()
        .map(|d| d.platform.clone().expect("filtered"))
        .collect();
    match platform::select(host, &platforms) {
        Some(i) => Ok(image_entries[i]),
        None => Err(ImageError::NoMatchingPlatform {
            reference: reference.to_owned(),
            wanted: host.to_string(),
            available: if platforms.is_empty() {
                "none".to_owned()
            } else {
                platforms
                    .iter()
                    .map(Platform::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn index_choice_names_the_platforms() {
        let index = format!(
            r#"{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", "manifests": [
            {{"mediaType": "{OCI_MANIFEST}", "digest": "{D}", "size": 1, "platform": {{"os": "linux", "architecture": "arm64", "variant": "v8"}}}},
            {{"mediaType": "{OCI_MANIFEST}", "digest": "{D}", "size": 1, "platform": {{"os": "linux", "architecture": "arm", "variant": "v7"}}}}]}}"#
        );
        let Parsed::Index(entries) = parse("index", index.as_bytes()).unwrap() else {
            panic!("an index")
        };
        let host = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let err = choose("x", &host, &entries).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x: no image for linux/amd64 (available: linux/arm64/v8, linux/arm/v7)"
        );
    }

    #[test]
    fn manifest_and_garbage() {
        let manifest = format!(
            r#"{{"schemaVersion": 2, "config": {{"mediaType": "c", "digest": "{D}", "size": 2}},
               "layers": [{{"mediaType": "l", "digest": "{D}", "size": 3}}]}}"#
        );
        let Parsed::Manifest(m) = parse("m", manifest.as_bytes()).unwrap() else {
            panic!("a manifest")
        };
        assert_eq!(m.layers.len(), 1);
        assert!(parse("m", b"{}").is_err());
        assert!(parse("m", b"[").is_err());
    }
}
