//! The image index under `<data_dir>/images`: one JSON record per image
//! reference (reference → manifest digest → config and layer chain).
//!
//! Owns the records only; the blobs and layers they point to belong to the
//! content and layer stores. Records are written atomically (temp file,
//! fsync, rename), so a crash leaves either the old or the new record.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::ImageError;
use super::platform::Platform;
use super::runconfig::ImageConfig;

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the blob as stored (compressed).
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Digest of the uncompressed tar (from the image config).
    pub diff_id: Digest,
    /// Identity of the unpacked directory: this layer on top of its parents.
    pub chain_id: Digest,
}

/// An image Tank has: what a container of it starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized reference (`docker.io/library/busybox:1.36`).
    pub reference: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub platform: Platform,
    /// Bottom layer first.
    pub layers: Vec<LayerRecord>,
    /// The runtime parts of the image config.
    pub config: ImageConfig,
    /// Bytes of the layer blobs.
    pub size: u64,
    /// When the record was written (ms since the Unix epoch).
    pub created_ms: u64,
}

pub struct ImageIndex {
    root: PathBuf,
}

impl ImageIndex {
    pub fn open(root: &Path) -> Result<ImageIndex, ImageError> {
        std::fs::create_dir_all(root).map_err(|e| ImageError::io(root, e))?;
        Ok(ImageIndex {
            root: root.to_owned(),
        })
    }

    fn path(&self, reference: &str) -> PathBuf {
        self.root
            .join(format!("{}.json", Digest::of(reference.as_bytes()).hex()))
    }

    pub fn get(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let path = self.path(reference);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ImageError::malformed(path.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io(&path, e)),
        }
    }

    pub fn put(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let path = self.path(&record.reference);
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(record).expect("an image record serializes");
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.root)?.sync_all()
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ImageError::io(&path, e)
        })
    }

    /// Removes the record of `reference`; returns it if there was one.
    pub fn remove(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let record = self.get(reference)?;
        if record.is_some() {
            let path = self.path(reference);
            std::fs::remove_file(&path).map_err(|e| ImageError::io(&path, e))?;
        }
        Ok(record)
    }

    /// Every record, ordered by reference. Unreadable records are skipped
    /// with a warning (they are rewritten by the next pull).
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| ImageError::io(&self.root, e))?;
        let mut records = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<ImageRecord>(&b).map_err(|e| e.to_string()))
            {
                Ok(record) => records.push(record),
                Err(e) => log::warn!("skipping image record {}: {e}", path.display()),
            }
        }
        records.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(records)
    }
}
