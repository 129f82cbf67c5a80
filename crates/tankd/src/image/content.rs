//! The content store: blobs by digest under `<data_dir>/content`.
//!
//! Owns `content/sha256/<hex>` (complete, verified blobs) and
//! `content/ingest/` (downloads in progress). What keeps concurrency and
//! crashes from corrupting it:
//! - Every writer ([`Ingest`]) has a temporary file of its own,
//!   `ingest/<hex>.<pid>-<n>.tmp`: two writers of one blob never share a
//!   file, so their bytes cannot mix.
//! - A writer that knows the blob's size (its descriptor's) fails as soon
//!   as more bytes come ([`ImageError::BlobTooLarge`]).
//! - A blob becomes visible only after its size and digest were verified
//!   and it was fsynced and renamed into `sha256/<hex>` (directory fsynced
//!   too), so a crash never leaves a half-written blob that looks complete.
//!   A mismatch deletes the temporary file.
//! - Downloads of one digest take turns: [`ContentStore::lock`] is an async
//!   per-digest lock (the map entry goes when the last holder or waiter is
//!   done), so a second pull of a blob waits for the first and then finds
//!   the blob in place.
//! - A download that broke off may be suspended ([`Ingest::suspend`]): its
//!   file becomes `ingest/<hex>.partial`, which the next download of that
//!   digest, under the lock, claims with an atomic rename and resumes
//!   ([`ContentStore::resume`]). Nothing ever writes a `.partial` file.
//! - Whatever is in `ingest/` and not being written is a leftover: removed
//!   when the store opens (nothing is in progress then) and by
//!   [`ContentStore::clean_ingest`] (prune), which skips the files of live
//!   writers.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;

use super::digest::Digest;
use super::error::ImageError;

const TMP_SUFFIX: &str = ".tmp";
const PARTIAL_SUFFIX: &str = ".partial";

type DownloadLock = Arc<tokio::sync::Mutex<()>>;

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    counter: AtomicU64,
    /// Download locks by digest; an entry lives while someone holds or
    /// waits for it.
    locks: Mutex<HashMap<Digest, DownloadLock>>,
    /// Names in `ingest/` that a live [`Ingest`] owns.
    live: Mutex<HashSet<OsString>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ContentStore {
    /// Opens (creating) the store rooted at `root` and removes what earlier
    /// runs left in the ingest area.
    pub fn open(root: &Path) -> Result<ContentStore, ImageError> {
        let blobs = root.join("sha256");
        let ingest = root.join("ingest");
        for dir in [&blobs, &ingest] {
            std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
        }
        let store = ContentStore {
            blobs,
            ingest,
            counter: AtomicU64::new(0),
            locks: Mutex::new(HashMap::new()),
            live: Mutex::new(HashSet::new()),
        };
        let (files, bytes) = store.clean_ingest()?;
        if files > 0 {
            log::info!(
                "removed {files} interrupted download(s), {bytes} bytes, from {}",
                store.ingest.display()
            );
        }
        Ok(store)
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
        ingest.write(bytes)?;
        ingest.commit()
    }

    /// Waits for, then holds, the download lock of `digest` (until the
    /// returned guard is dropped).
    pub async fn lock(&self, digest: &Digest) -> BlobLock<'_> {
        let waiter = Waiter {
            store: self,
            digest: digest.clone(),
            mutex: Arc::clone(locked(&self.locks).entry(digest.clone()).or_default()),
        };
        let guard = Arc::clone(&waiter.mutex).lock_owned().await;
        BlobLock {
            _guard: guard,
            waiter,
        }
    }

    /// Starts writing `digest` into a fresh temporary file of its own;
    /// `size` (if known) is the most it may receive.
    pub fn ingest(&self, digest: &Digest, size: Option<u64>) -> Result<Ingest<'_>, ImageError> {
        let (name, temp) = self.new_temp(digest);
        let opened = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&temp);
        match opened {
            Ok(file) => Ok(self.writer(digest, size, name, temp, file)),
            Err(e) => {
                locked(&self.live).remove(&name);
                Err(ImageError::io(&temp, e))
            }
        }
    }

    fn writer(
        &self,
        digest: &Digest,
        size: Option<u64>,
        name: OsString,
        temp: PathBuf,
        file: File,
    ) -> Ingest<'_> {
        Ingest {
            store: self,
            file,
            hasher: Sha256::new(),
            offset: 0,
            expected: digest.clone(),
            size,
            name,
            temp,
            done: false,
        }
    }

    /// Like [`ContentStore::ingest`] for the digest `lock` holds, but
    /// continues a suspended download of it if there is one: the bytes
    /// already there are re-hashed, so the final verification covers the
    /// whole blob. Taking the lock makes the resumed file this writer's
    /// alone.
    pub fn resume(&self, lock: &BlobLock<'_>, size: Option<u64>) -> Result<Ingest<'_>, ImageError> {
        let digest = lock.digest();
        let partial = self.partial_path(digest);
        let (name, temp) = self.new_temp(digest);
        if let Err(e) = std::fs::rename(&partial, &temp) {
            locked(&self.live).remove(&name);
            return match e.kind() {
                std::io::ErrorKind::NotFound => self.ingest(digest, size),
                _ => Err(ImageError::io(&partial, e)),
            };
        }
        let mut ingest = match OpenOptions::new().read(true).append(true).open(&temp) {
            Ok(file) => self.writer(digest, size, name, temp, file),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                locked(&self.live).remove(&name);
                return Err(ImageError::io(&temp, e));
            }
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = ingest
                .file
                .read(&mut buf)
                .map_err(|e| ImageError::io(&ingest.temp, e))?;
            if n == 0 {
                break;
            }
            ingest.hasher.update(&buf[..n]);
            ingest.offset += n as u64;
        }
        if size.is_some_and(|s| ingest.offset > s) {
            ingest.restart()?;
        }
        Ok(ingest)
    }

    /// A new temporary name for `digest`, registered as live.
    fn new_temp(&self, digest: &Digest) -> (OsString, PathBuf) {
        let name = OsString::from(format!(
            "{}.{}-{}{TMP_SUFFIX}",
            digest.hex(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        locked(&self.live).insert(name.clone());
        let path = self.ingest.join(&name);
        (name, path)
    }

    fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.ingest
            .join(format!("{}{PARTIAL_SUFFIX}", digest.hex()))
    }

    /// Removes everything in the ingest area that no live writer owns:
    /// leftovers of a crash, suspended downloads. Returns (files, bytes).
    pub fn clean_ingest(&self) -> Result<(usize, u64), ImageError> {
        // Held throughout, so no writer registers (and creates) a file
        // between the listing and the removal.
        let live = locked(&self.live);
        let entries =
            std::fs::read_dir(&self.ingest).map_err(|e| ImageError::io(&self.ingest, e))?;
        let (mut files, mut bytes) = (0, 0);
        for entry in entries.filter_map(|e| e.ok()) {
            if live.contains(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            match removed {
                Ok(()) => {
                    files += 1;
                    bytes += size;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io(&path, e)),
            }
        }
        Ok((files, bytes))
    }

    /// Removes a blob; returns the bytes freed.
    pub fn remove(&self, digest: &Digest) -> Result<u64, ImageError> {
        let path = self.path(digest);
        let Ok(meta) = std::fs::metadata(&path) else {
            return Ok(0);
        };
        std::fs::remove_file(&path).map_err(|e| ImageError::io(&path, e))?;
        Ok(meta.len())
    }

    /// Every complete blob.
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        Digest::named_in(&self.blobs)
    }

    /// Digests with a download lock held or waited for.
    #[cfg(test)]
    fn locked_digests(&self) -> usize {
        locked(&self.locks).len()
    }
}

/// A place in the queue for a digest's download lock; dropping it removes
/// the lock's map entry once nobody else holds or waits for it.
struct Waiter<'a> {
    store: &'a ContentStore,
    digest: Digest,
    mutex: DownloadLock,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut locks = locked(&self.store.locks);
        // The map's reference and this one: nobody else is left. Every
        // other reference is taken under the map lock held here.
        if Arc::strong_count(&self.mutex) == 2 {
            locks.remove(&self.digest);
        }
    }
}

/// The download lock of one digest, held.
pub struct BlobLock<'a> {
    // Dropped first: the lock is free before the waiter checks for others.
    _guard: OwnedMutexGuard<()>,
    waiter: Waiter<'a>,
}

impl BlobLock<'_> {
    pub fn digest(&self) -> &Digest {
        &self.waiter.digest
    }
}

/// A blob being written into its own temporary file. Dropped without
/// [`Ingest::commit`] or [`Ingest::suspend`], it deletes that file.
pub struct Ingest<'a> {
    store: &'a ContentStore,
    file: File,
    hasher: Sha256,
    offset: u64,
    expected: Digest,
    size: Option<u64>,
    /// The temporary file, and its name in the ingest area.
    name: OsString,
    temp: PathBuf,
    /// Committed or suspended: the file is no longer this writer's.
    done: bool,
}

impl Ingest<'_> {
    /// How many bytes are already there (where a download resumes).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Throws away what was ingested so far (e.g. the registry ignored a
    /// range request and sends the whole blob).
    pub fn restart(&mut self) -> Result<(), ImageError> {
        self.file
            .set_len(0)
            .map_err(|e| ImageError::io(&self.temp, e))?;
        self.hasher = Sha256::new();
        self.offset = 0;
        Ok(())
    }

    /// Appends `bytes`; [`ImageError::BlobTooLarge`] (writing nothing) if
    /// they would take the blob past its declared size.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        let received = self.offset + bytes.len() as u64;
        if let Some(limit) = self.size.filter(|&limit| received > limit) {
            return Err(ImageError::BlobTooLarge {
                digest: self.expected.clone(),
                limit,
                announced: None,
                received,
            });
        }
        self.file
            .write_all(bytes)
            .map_err(|e| ImageError::io(&self.temp, e))?;
        self.hasher.update(bytes);
        self.offset = received;
        Ok(())
    }

    /// Verifies size and digest, then makes the blob durable and visible.
    /// On a mismatch the temporary file is deleted: nothing is left behind.
    pub fn commit(mut self) -> Result<(), ImageError> {
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if actual != self.expected {
            return Err(ImageError::DigestMismatch {
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            });
        }
        if let Some(size) = self.size.filter(|&s| s != self.offset) {
            return Err(ImageError::SizeMismatch {
                digest: self.expected.to_string(),
                expected: size,
                actual: self.offset,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| ImageError::io(&self.temp, e))?;
        let target = self.store.path(&self.expected);
        std::fs::rename(&self.temp, &target).map_err(|e| ImageError::io(&target, e))?;
        self.done = true;
        File::open(&self.store.blobs)
            .and_then(|d| d.sync_all())
            .map_err(|e| ImageError::io(&self.store.blobs, e))
    }

    /// Keeps what arrived for the next download of this digest to resume
    /// (a download that broke off). Nothing is kept if nothing arrived or
    /// the file cannot be moved.
    pub fn suspend(mut self) {
        if self.offset == 0 {
            return;
        }
        let partial = self.store.partial_path(&self.expected);
        match std::fs::rename(&self.temp, &partial) {
            Ok(()) => self.done = true,
            Err(e) => log::warn!("cannot keep {} for a resume: {e}", self.temp.display()),
        }
    }
}

impl Drop for Ingest<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
        locked(&self.store.live).remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("ingest"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn write_verify_suspend_resume() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"hello blob world".repeat(1000);
        let digest = Digest::of(&data);
        let size = Some(data.len() as u64);

        // A first download breaks off half way and is suspended.
        let lock = store.lock(&digest).await;
        let mut ingest = store.resume(&lock, size).unwrap();
        assert_eq!(ingest.offset(), 0);
        ingest.write(&data[..5000]).unwrap();
        ingest.suspend();
        drop(lock);
        assert!(!store.contains(&digest), "a partial blob is never complete");
        assert_eq!(
            ingest_names(dir.path()),
            [format!("{}.partial", digest.hex())]
        );
        assert_eq!(store.locked_digests(), 0, "lock entries go when unused");

        // The resume starts where it stopped and verifies the whole.
        let lock = store.lock(&digest).await;
        let mut ingest = store.resume(&lock, size).unwrap();
        assert_eq!(ingest.offset(), 5000);
        assert!(ingest_names(dir.path())[0].ends_with(".tmp"), "claimed");
        ingest.write(&data[5000..]).unwrap();
        ingest.commit().unwrap();
        drop(lock);
        assert!(store.contains(&digest));
        assert_eq!(store.read(&digest).unwrap(), data);
        assert_eq!(store.list().unwrap(), vec![digest]);
        assert!(ingest_names(dir.path()).is_empty());
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
        assert!(ingest_names(dir.path()).is_empty());
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
        assert!(ingest_names(dir.path()).is_empty());
    }

    #[test]
    fn a_write_past_the_declared_size_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = Digest::of(&[7u8; 4096]);
        let mut ingest = store.ingest(&digest, Some(1024)).unwrap();
        ingest.write(&[7u8; 1000]).unwrap();
        let err = ingest.write(&[7u8; 25]).unwrap_err();
        assert_eq!(
            err,
            ImageError::BlobTooLarge {
                digest: digest.clone(),
                limit: 1024,
                announced: None,
                received: 1025
            }
        );
        assert_eq!(
            ingest.offset(),
            1000,
            "the chunk past the limit is not written"
        );
        drop(ingest);
        assert!(ingest_names(dir.path()).is_empty());
        assert!(err.to_string().ends_with(
            "larger than the 1024 bytes its descriptor declares: stopped after 1025 bytes"
        ));
    }

    #[test]
    fn concurrent_writers_of_one_blob_never_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"shared layer bytes".repeat(10_000);
        let digest = Digest::of(&data);
        let size = Some(data.len() as u64);
        let mut first = store.ingest(&digest, size).unwrap();
        let mut second = store.ingest(&digest, size).unwrap();
        for chunk in data.chunks(4096) {
            first.write(chunk).unwrap();
            second.write(chunk).unwrap();
        }
        assert_eq!(ingest_names(dir.path()).len(), 2);
        first.commit().unwrap();
        second.commit().unwrap();
        assert_eq!(store.read(&digest).unwrap(), data);
        assert!(ingest_names(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_second_download_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ContentStore::open(dir.path()).unwrap());
        let digest = Digest::of(b"blob");
        let first = store.lock(&digest).await;
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let waiter = {
            let store = Arc::clone(&store);
            let digest = digest.clone();
            tokio::spawn(async move {
                let _second = store.lock(&digest).await;
                let _ = tx.send(store.contains(&digest));
            })
        };
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "the second waits");
        store.write(&digest, b"blob").unwrap();
        drop(first);
        waiter.await.unwrap();
        assert!(rx.await.unwrap(), "and finds the blob in place");
        assert_eq!(store.locked_digests(), 0);
    }

    #[test]
    fn leftovers_go_at_open_and_clean_spares_live_writers() {
        let dir = tempfile::tempdir().unwrap();
        let ingest_dir = dir.path().join("ingest");
        std::fs::create_dir_all(&ingest_dir).unwrap();
        std::fs::write(ingest_dir.join("abc.partial"), b"half").unwrap();
        std::fs::write(ingest_dir.join("abc.1-0.tmp"), b"crashed").unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        assert!(ingest_names(dir.path()).is_empty());

        let digest = Digest::of(b"x");
        let mut live = store.ingest(&digest, None).unwrap();
        live.write(b"in progress").unwrap();
        std::fs::write(ingest_dir.join("old.partial"), b"left").unwrap();
        assert_eq!(store.clean_ingest().unwrap(), (1, 4));
        assert_eq!(ingest_names(dir.path()).len(), 1, "the live file stays");
        drop(live);
        assert!(ingest_names(dir.path()).is_empty());
    }
}
