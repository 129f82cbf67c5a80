//! The content store: blobs by digest under `<data_dir>/content`.
//!
//! Owns `content/sha256/<hex>` (complete, verified blobs) and
//! `content/ingest/<hex>` (downloads in progress). A blob becomes visible
//! only after its digest and size were verified and it was fsynced and
//! renamed into place, so a crash never leaves a half-written blob that
//! looks complete; an interrupted ingest is resumed from where it stopped.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::ImageError;

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store rooted at `root`.
    pub fn open(root: &Path) -> Result<ContentStore, ImageError> {
        let blobs = root.join("sha256");
        let ingest = root.join("ingest");
        for dir in [&blobs, &ingest] {
            std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Reads a whole (small) blob: manifests, configs.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest);
        std::fs::read(&path).map_err(|e| ImageError::io(&path, e))
    }

    /// Opens `digest` for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ImageError> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| ImageError::io(&path, e))
    }

    /// Writes a whole (small) blob after verifying it.
    pub fn write(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
        if self.contains(digest) {
            return Ok(());
        }
        let mut ingest = self.ingest(digest, Some(bytes.len() as u64))?;
        ingest.restart()?;
        ingest.write(bytes)?;
        ingest.commit()
    }

    /// Starts or resumes writing `digest`. The bytes already ingested are
    /// re-hashed so the final verification covers the whole blob.
    pub fn ingest(&self, digest: &Digest, size: Option<u64>) -> Result<Ingest, ImageError> {
        let partial = self.ingest.join(digest.hex());
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&partial)
            .map_err(|e| ImageError::io(&partial, e))?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| ImageError::io(&partial, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let mut ingest = Ingest {
            file,
            hasher,
            offset,
            expected: digest.clone(),
            size,
            partial,
            target: self.path(digest),
        };
        if size.is_some_and(|s| offset > s) {
            ingest.restart()?;
        }
        Ok(ingest)
    }

    /// Removes a blob (and any ingest of it).
    pub fn remove(&self, digest: &Digest) -> Result<u64, ImageError> {
        let mut freed = 0;
        for path in [self.path(digest), self.ingest.join(digest.hex())] {
            if let Ok(meta) = std::fs::metadata(&path) {
                freed += meta.len();
                std::fs::remove_file(&path).map_err(|e| ImageError::io(&path, e))?;
            }
        }
        Ok(freed)
    }

    /// Every complete blob.
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        Digest::named_in(&self.blobs)
    }
}

/// A blob being written. Dropping it keeps the partial file for a resume.
pub struct Ingest {
    file: File,
    hasher: Sha256,
    offset: u64,
    expected: Digest,
    size: Option<u64>,
    partial: PathBuf,
    target: PathBuf,
}

impl Ingest {
    /// How many bytes are already there (where a download resumes).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Throws away what was ingested so far (e.g. the registry ignored a
    /// range request and sends the whole blob).
    pub fn restart(&mut self) -> Result<(), ImageError> {
        self.file
            .set_len(0)
            .map_err(|e| ImageError::io(&self.partial, e))?;
        self.hasher = Sha256::new();
        self.offset = 0;
        Ok(())
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.file
            .write_all(bytes)
            .map_err(|e| ImageError::io(&self.partial, e))?;
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Verifies size and digest, then makes the blob durable and visible.
    /// On a mismatch the partial file is deleted: nothing is left behind.
    pub fn commit(self) -> Result<(), ImageError> {
        let actual = Digest::from_hasher(self.hasher);
        let size_ok = self.size.is_none_or(|s| s == self.offset);
        if actual != self.expected || !size_ok {
            let _ = std::fs::remove_file(&self.partial);
            if actual != self.expected {
                return Err(ImageError::DigestMismatch {
                    expected: self.expected.to_string(),
                    actual: actual.to_string(),
                });
            }
            return Err(ImageError::SizeMismatch {
                digest: self.expected.to_string(),
                expected: self.size.unwrap_or(0),
                actual: self.offset,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| ImageError::io(&self.partial, e))?;
        std::fs::rename(&self.partial, &self.target)
            .map_err(|e| ImageError::io(&self.target, e))?;
        if let Some(dir) = self.target.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| ImageError::io(dir, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_verify_resume() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"hello blob world".repeat(1000);
        let digest = Digest::of(&data);

        // A first attempt dies half way.
        let mut ingest = store.ingest(&digest, Some(data.len() as u64)).unwrap();
        ingest.write(&data[..5000]).unwrap();
        drop(ingest);
        assert!(!store.contains(&digest), "a partial blob is never complete");

        // The resume starts where it stopped and verifies the whole.
        let mut ingest = store.ingest(&digest, Some(data.len() as u64)).unwrap();
        assert_eq!(ingest.offset(), 5000);
        ingest.write(&data[5000..]).unwrap();
        ingest.commit().unwrap();
        assert!(store.contains(&digest));
        assert_eq!(store.read(&digest).unwrap(), data);
        assert_eq!(store.list().unwrap(), vec![digest]);
    }

    #[test]
    fn mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = Digest::of(b"the real content");
        let mut ingest = store.ingest(&digest, None).unwrap();
        ingest.write(b"tampered content").unwrap();
        let err = ingest.commit().unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!store.contains(&digest));
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn size_mismatch_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = Digest::of(b"abc");
        let mut ingest = store.ingest(&digest, Some(4)).unwrap();
        ingest.write(b"abc").unwrap();
        assert!(matches!(
            ingest.commit(),
            Err(ImageError::SizeMismatch { .. })
        ));
    }
}
