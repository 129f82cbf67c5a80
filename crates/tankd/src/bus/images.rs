//! The image methods of `org.tank.Manager`, and the mapping of image errors
//! to D-Bus errors. Owns the translation between bus calls and
//! [`crate::image::Images`]; decides nothing about images itself.

use std::collections::{BTreeMap, HashSet};

use crate::image::{ImageError, ImageRecord};
use crate::store::Store;
use tank_api::spec::Image;

use super::error::BusError;
use super::text::BusText;

impl From<ImageError> for BusError {
    fn from(err: ImageError) -> Self {
        let message = err.to_string();
        match err {
            ImageError::NotFound(_) => BusError::NotFound(message),
            ImageError::InUse { .. } => BusError::InUse(message),
            ImageError::InvalidReference { .. } | ImageError::InvalidDigest(_) => {
                BusError::InvalidArgument(message)
            }
            ImageError::Import(_) => BusError::ImportFailed(message),
            ImageError::Io { .. } => BusError::Failed(message),
            _ => BusError::ImagePull(message),
        }
    }
}

/// Normalized image reference → names of the declared pods using it.
pub fn images_in_use(store: &Store) -> Result<BTreeMap<String, Vec<String>>, BusError> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in store.list()? {
        for container in &record.spec.containers {
            if let Image::Reference(reference) = &container.image {
                // Stored specs were validated; a reference the image parser
                // rejects cannot be pulled, so it keeps nothing alive.
                if let Ok(normalized) = crate::image::reference::normalize(reference) {
                    let pods = users.entry(normalized).or_default();
                    if !pods.contains(&record.spec.name) {
                        pods.push(record.spec.name.clone());
                    }
                }
            }
        }
    }
    Ok(users)
}

pub fn in_use_set(store: &Store) -> Result<HashSet<String>, BusError> {
    Ok(images_in_use(store)?.into_keys().collect())
}

/// One row of `ListImages`: (reference, manifest digest, platform, bytes,
/// created µs). The platform is the registry's text, NULs and all.
pub type ImageRow = (BusText, BusText, BusText, u64, u64);

pub fn list_row(record: &ImageRecord) -> ImageRow {
    (
        record.reference.as_str().into(),
        record.manifest_digest.to_string().into(),
        record.platform.to_string().into(),
        record.size,
        record.created_ms * 1000,
    )
}
