//! Unpacked layers under `<data_dir>/layers/<chain-id hex>/`, each an
//! overlayfs lower directory shared by every image that has the layer.
//!
//! Owns the layer directories: a layer is unpacked once into a temporary
//! sibling, flushed to disk, then renamed into place, so a directory under
//! its final name is always complete. Leftovers of a crash (temporaries)
//! are removed at open. Never mounts anything.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::Digest;
use super::error::ImageError;
use super::unpack::{unpack_layer, Compression};

const TMP_PREFIX: &str = ".tmp-";

pub struct LayerStore {
    root: PathBuf,
    counter: AtomicU64,
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<LayerStore, ImageError> {
        std::fs::create_dir_all(root).map_err(|e| ImageError::io(root, e))?;
        let store = LayerStore {
            root: root.to_owned(),
            counter: AtomicU64::new(0),
        };
        for entry in std::fs::read_dir(root).map_err(|e| ImageError::io(root, e))? {
            let Ok(entry) = entry else { continue };
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                log::info!("removing interrupted unpack {}", entry.path().display());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(store)
    }

    /// The directory of the layer whose chain id is `chain_id`.
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex())
    }

    pub fn contains(&self, chain_id: &Digest) -> bool {
        self.path(chain_id).is_dir()
    }

    /// Unpacks the blob at `blob` (of `media_type`) as layer `chain_id`,
    /// unless it is there already. Blocking: run it off the async workers.
    pub fn unpack(
        &self,
        chain_id: &Digest,
        blob: &Path,
        media_type: &str,
    ) -> Result<(), ImageError> {
        let target = self.path(chain_id);
        if target.is_dir() {
            return Ok(());
        }
        let layer_error = |message: String| ImageError::Unpack {
            digest: chain_id.to_string(),
            message,
        };
        let compression =
            Compression::from_media_type(media_type).map_err(|e| layer_error(e.to_string()))?;
        let tmp = self.root.join(format!(
            "{TMP_PREFIX}{}-{}-{}",
            chain_id.hex(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        // A layer without a `./` entry leaves the root's mode to us.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| ImageError::io(&tmp, e))?;
        let result = (|| {
            let file = std::fs::File::open(blob).map_err(|e| ImageError::io(blob, e))?;
            unpack_layer(BufReader::with_capacity(1 << 20, file), compression, &tmp)
                .map_err(|e| layer_error(e.to_string()))?;
            // Durable before it becomes visible under its final name.
            let dir = std::fs::File::open(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
            nix::unistd::syncfs(&dir).map_err(|e| ImageError::io(&tmp, e.into()))?;
            match std::fs::rename(&tmp, &target) {
                Ok(()) => Ok(()),
                // Someone else finished the same layer first.
                Err(_) if target.is_dir() => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    Ok(())
                }
                Err(e) => Err(ImageError::io(&target, e)),
            }
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Removes one layer directory; returns whether it existed.
    pub fn remove(&self, chain_id: &Digest) -> Result<bool, ImageError> {
        let path = self.path(chain_id);
        if !path.exists() {
            return Ok(false);
        }
        std::fs::remove_dir_all(&path).map_err(|e| ImageError::io(&path, e))?;
        Ok(true)
    }

    /// Chain ids of every complete layer.
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        Digest::named_in(&self.root)
    }
}
