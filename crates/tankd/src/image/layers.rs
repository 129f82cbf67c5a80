//! Unpacked layers under `<data_dir>/layers/<chain-id hex>/`, each an
//! overlayfs lower directory shared by every image that has the layer.
//!
//! Owns the layer directories: a layer is unpacked once into a temporary
//! sibling, its uncompressed stream hashed on the way; only if that hash is
//! the diff_id the image config declares is it flushed to disk and renamed
//! into place. So a directory under its final name is always complete and
//! always holds exactly the content its chain id names: a layer cannot
//! claim another image's chain id with other bytes. Leftovers of a crash
//! (temporaries) are removed at open. Never mounts anything.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::Digest;
use super::error::ImageError;
use super::index::LayerRecord;
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

    /// Unpacks `layer` from its blob at `blob` under its chain id, unless it
    /// is there already; [`ImageError::DiffIdMismatch`] (and nothing
    /// stored) if the blob's uncompressed content is not the layer's
    /// diff_id. Blocking: run it off the async workers.
    pub fn unpack(&self, layer: &LayerRecord, blob: &Path) -> Result<(), ImageError> {
        let chain_id = &layer.chain_id;
        let media_type = layer.media_type.as_str();
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
            let stats = unpack_layer(BufReader::with_capacity(1 << 20, file), compression, &tmp)
                .map_err(|e| layer_error(e.to_string()))?;
            if stats.diff_id != layer.diff_id {
                return Err(ImageError::DiffIdMismatch {
                    layer: layer.digest.clone(),
                    expected: layer.diff_id.clone(),
                    actual: stats.diff_id,
                });
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

    /// A one-file layer tar.
    fn layer_tar(content: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        builder.append_data(&mut header, "who", content).unwrap();
        builder.into_inner().unwrap()
    }

    fn record(blob: &[u8], diff_id: &Digest) -> LayerRecord {
        LayerRecord {
            digest: Digest::of(blob),
            media_type: TAR.to_owned(),
            size: blob.len() as u64,
            diff_id: diff_id.clone(),
            chain_id: diff_id.clone(),
        }
    }

    #[test]
    fn a_layer_is_stored_only_if_its_content_is_its_diff_id() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "unpacking keeps owners: run the tests as root"
        );
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let store = LayerStore::open(&dir.path().join("layers")).unwrap();
        let good = layer_tar(b"victim\n");
        let evil = layer_tar(b"attacker\n");
        let (good_path, evil_path) = (dir.path().join("good.tar"), dir.path().join("evil.tar"));
        std::fs::write(&good_path, &good).unwrap();
        std::fs::write(&evil_path, &evil).unwrap();

        // Other bytes claiming the good layer's diff_id (so its chain id).
        let claimed = Digest::of(&good);
        let err = store
            .unpack(&record(&evil, &claimed), &evil_path)
            .unwrap_err();
        assert_eq!(
            err,
            ImageError::DiffIdMismatch {
                layer: Digest::of(&evil),
                expected: claimed.clone(),
                actual: Digest::of(&evil),
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "layer {}: its uncompressed content has digest {}, but the image config \
                 declares diff_id {claimed}; rejected",
                Digest::of(&evil),
                Digest::of(&evil)
            )
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("layers"))
                .unwrap()
                .count(),
            0,
            "nothing stored, no temporary left"
        );

        store.unpack(&record(&good, &claimed), &good_path).unwrap();
        assert_eq!(
            std::fs::read(store.path(&claimed).join("who")).unwrap(),
            b"victim\n"
        );
    }
}
