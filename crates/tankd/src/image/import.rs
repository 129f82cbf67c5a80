//! Import of OCI image-layout archives (a tar of `oci-layout`,
//! `index.json`, `blobs/sha256/…`), so images can be loaded with no
//! registry at all. Blobs stream straight into the content store, each
//! verified against its name; nothing of the archive is trusted (layers
//! are then unpacked through the same diff_id check as pulled ones).

use std::io::Read;

use super::content::ContentStore;
use super::digest::Digest;
use super::error::ImageError;
use super::manifest::{self, Parsed};
use super::platform::Platform;
use super::pull::Resolved;
use super::reference;

/// Annotations naming an image in a layout's index, best first.
const NAME_ANNOTATIONS: &[&str] = &[
    "io.containerd.image.name",
    "org.opencontainers.image.ref.name",
];
const MAX_INDEX_BYTES: u64 = 4 << 20;

/// Reads the archive: stores every blob (verified), returns `index.json`.
pub fn read_archive<R: Read>(archive: R, content: &ContentStore) -> Result<Vec<u8>, ImageError> {
    let mut tar = tar::Archive::new(archive);
    let mut index = None;
    let mut layout_seen = false;
    let entries = tar
        .entries()
        .map_err(|e| ImageError::Import(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| ImageError::Import(format!("reading the archive: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| ImageError::Import(e.to_string()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        match path.as_str() {
            "index.json" => {
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(MAX_INDEX_BYTES)
                    .read_to_end(&mut bytes)
                    .map_err(|e| ImageError::Import(format!("index.json: {e}")))?;
                index = Some(bytes);
            }
            "oci-layout" => layout_seen = true,
            _ => {
                let Some(hex) = path.strip_prefix("blobs/sha256/") else {
                    continue;
                };
                let digest = Digest::parse(&format!("sha256:{hex}"))
                    .map_err(|_| ImageError::Import(format!("{path}: not a sha256 blob name")))?;
                if content.contains(&digest) {
                    continue;
                }
                let size = entry.header().size().ok();
                let mut ingest = content.ingest(&digest, size)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = entry
                        .read(&mut buf)
                        .map_err(|e| ImageError::Import(format!("{path}: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    ingest.write(&buf[..n])?;
                }
                ingest.commit()?;
            }
        }
    }
    if !layout_seen {
        return Err(ImageError::Import(
            "not an OCI image layout (no oci-layout file)".to_owned(),
        ));
    }
    index.ok_or_else(|| ImageError::Import("the archive has no index.json".to_owned()))
}

/// The named images of a layout's `index.json`, each resolved to the
/// manifest for `host` from the content store.
pub fn resolve(
    index_json: &[u8],
    host: &Platform,
    content: &ContentStore,
) -> Result<Vec<(String, Resolved)>, ImageError> {
    let Parsed::Index(entries) = manifest::parse("index.json", index_json)? else {
        return Err(ImageError::Import(
            "index.json is not an image index".to_owned(),
        ));
    };
    let mut images = Vec::new();
    for entry in &entries {
        let annotations = entry.annotations.clone().unwrap_or_default();
        let Some(name) = NAME_ANNOTATIONS.iter().find_map(|k| annotations.get(*k)) else {
            log::warn!("import: skipping unnamed manifest {}", entry.digest);
            continue;
        };
        let name = reference::normalize(name).map_err(|e| {
            ImageError::Import(format!(
                "index.json names {name:?}, which is not a full image reference: {e}"
            ))
        })?;
        let digest = entry.digest()?;
        let bytes = content
            .read(&digest)
            .map_err(|_| ImageError::Import(format!("{name}: manifest {digest} is missing")))?;
        let resolved = match manifest::parse(&format!("manifest {digest}"), &bytes)? {
            Parsed::Manifest(manifest) => Resolved {
                manifest_digest: digest,
                manifest,
            },
            Parsed::Index(platforms) => {
                let chosen = manifest::choose(&name, host, &platforms)?;
                let digest = chosen.digest()?;
                let bytes = content.read(&digest).map_err(|_| {
                    ImageError::Import(format!("{name}: manifest {digest} is missing"))
                })?;
                match manifest::parse(&format!("manifest {digest}"), &bytes)? {
                    Parsed::Manifest(manifest) => Resolved {
                        manifest_digest: digest,
                        manifest,
                    },
                    Parsed::Index(_) => {
                        return Err(ImageError::Import(format!("{name}: nested index")))
                    }
                }
            }
        };
        images.push((name, resolved));
    }
    Ok(images)
}
