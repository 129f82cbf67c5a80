//! [`Images`]: the one entry point to images for the daemon (bus and
//! reconciler): ensure/pull (concurrent pulls of one image are deduplicated
//! into one), list, remove, prune, import, and pull progress.
//!
//! Owns the order of an image's life: manifest → config → layers (fetched
//! and unpacked in parallel; each layer stored under the chain id computed
//! from the config's diff_ids only once its content was verified against
//! them) → index record, and garbage collection of what no record
//! references. It does not decide which images are in use: the
//! caller passes the references its declared pods use.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::{StreamExt, TryStreamExt};
use oci_client::Reference;
use serde::Deserialize;
use tokio::sync::{broadcast, OwnedRwLockReadGuard, RwLock};

use super::content::ContentStore;
use super::digest::{chain_ids, Digest};
use super::error::ImageError;
use super::index::{ImageIndex, ImageRecord, LayerRecord};
use super::layers::LayerStore;
use super::manifest::{Descriptor, Manifest};
use super::platform::Platform;
use super::pull::RegistriesConfig;
use super::pull::{Puller, Resolved};
use super::reference;
use super::runconfig::ImageConfig;

/// How far a layer download is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    pub reference: String,
    pub layer: String,
    pub done: u64,
    pub total: u64,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub images: Vec<String>,
    pub layers: usize,
    pub blobs: usize,
    pub bytes: u64,
}

type PullFuture = Shared<BoxFuture<'static, Result<ImageRecord, ImageError>>>;

/// A pull's or import's share of the gc lock. Layer unpacks (blocking
/// tasks that outlive a pull that failed or was dropped) hold a clone, so
/// garbage collection waits for them too.
type GcShare = Arc<OwnedRwLockReadGuard<()>>;

pub struct Images {
    content: ContentStore,
    layers: Arc<LayerStore>,
    index: ImageIndex,
    puller: Puller,
    host: Platform,
    inflight: Mutex<HashMap<String, PullFuture>>,
    progress: broadcast::Sender<PullProgress>,
    /// Pulls and imports (and their unpacks) hold it shared; garbage
    /// collection exclusively, so it never removes what an unfinished pull
    /// has written, nor runs while one downloads.
    gc: Arc<RwLock<()>>,
}

/// Where the blobs of an image come from.
enum Source<'a> {
    Registry(&'a Reference),
    /// Already in the content store (an import).
    Local,
}

impl Images {
    /// Opens the image stores under `data_dir`.
    pub fn open(data_dir: &Path, registries: &RegistriesConfig) -> Result<Arc<Images>, ImageError> {
        Ok(Arc::new(Images {
            content: ContentStore::open(&data_dir.join("content"))?,
            layers: Arc::new(LayerStore::open(&data_dir.join("layers"))?),
            index: ImageIndex::open(&data_dir.join("images"))?,
            puller: Puller::new(registries)?,
            host: Platform::host(),
            inflight: Mutex::new(HashMap::new()),
            progress: broadcast::channel(256).0,
            gc: Arc::new(RwLock::new(())),
        }))
    }

    /// Pull progress of every pull, for whoever listens.
    pub fn subscribe_progress(&self) -> broadcast::Receiver<PullProgress> {
        self.progress.subscribe()
    }

    /// The image for `reference`, pulling it only if Tank does not have it
    /// complete (the reconciler's call: no network when cached).
    pub async fn ensure(self: &Arc<Self>, reference: &str) -> Result<ImageRecord, ImageError> {
        let normalized = reference::normalize(reference)?;
        if let Some(record) = self.index.get(&normalized)? {
            if record
                .layers
                .iter()
                .all(|l| self.layers.contains(&l.chain_id))
            {
                return Ok(record);
            }
        }
        self.pull(reference).await
    }

    /// Pulls `reference` from its registry (a cache hit refetches only the
    /// manifest). Concurrent pulls of one reference share one pull.
    pub async fn pull(self: &Arc<Self>, reference: &str) -> Result<ImageRecord, ImageError> {
        let parsed = reference::parse(reference)?;
        let key = parsed.whole();
        let future = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            inflight
                .entry(key.clone())
                .or_insert_with(|| {
                    let this = Arc::clone(self);
                    let key = key.clone();
                    async move {
                        let result = this.pull_once(&parsed).await;
                        this.inflight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key);
                        result
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        future.await
    }

    async fn pull_once(&self, reference: &Reference) -> Result<ImageRecord, ImageError> {
        let gc: GcShare = Arc::new(Arc::clone(&self.gc).read_owned().await);
        log::info!("pulling {}", reference.whole());
        let resolved = self
            .puller
            .resolve(reference, &self.host, &self.content)
            .await?;
        let record = self
            .complete(
                reference.whole(),
                resolved,
                Source::Registry(reference),
                &gc,
            )
            .await?;
        log::info!(
            "pulled {} ({}, {} layers)",
            record.reference,
            record.manifest_digest,
            record.layers.len()
        );
        Ok(record)
    }

    /// Config, layers (fetched if needed, unpacked in parallel) and the
    /// index record of a resolved manifest.
    async fn complete(
        &self,
        reference: String,
        resolved: Resolved,
        source: Source<'_>,
        gc: &GcShare,
    ) -> Result<ImageRecord, ImageError> {
        let Resolved {
            manifest_digest,
            manifest: Manifest { config, layers },
        } = resolved;
        let config_digest = config.digest()?;
        self.fetch(&source, &reference, &config).await?;
        let blob = self.content.read(&config_digest)?;
        let (platform, image_config, diff_ids) = self.parse_config(&reference, &blob)?;
        if diff_ids.len() != layers.len() {
            return Err(ImageError::malformed(
                format!("config of {reference}"),
                format!("{} diff_ids for {} layers", diff_ids.len(), layers.len()),
            ));
        }
        let chains = chain_ids(&diff_ids);
        let mut records = Vec::with_capacity(layers.len());
        for ((desc, diff_id), chain_id) in layers.iter().zip(&diff_ids).zip(&chains) {
            records.push(LayerRecord {
                digest: desc.digest()?,
                media_type: desc.media_type.clone(),
                size: desc.size,
                diff_id: diff_id.clone(),
                chain_id: chain_id.clone(),
            });
        }
        // Download and unpack, several layers at once: downloads overlap
        // with the unpacking of earlier layers.
        let jobs: Vec<_> = layers
            .iter()
            .zip(&records)
            .map(|(desc, layer)| self.ensure_layer(&source, &reference, desc, layer, gc))
            .collect();
        futures_util::stream::iter(jobs)
            .buffer_unordered(3)
            .try_collect::<Vec<()>>()
            .await?;
        let record = ImageRecord {
            reference,
            manifest_digest,
            config_digest,
            platform,
            size: records.iter().map(|l| l.size).sum(),
            layers: records,
            config: image_config,
            created_ms: now_ms(),
        };
        self.index.put(&record)?;
        Ok(record)
    }

    async fn ensure_layer(
        &self,
        source: &Source<'_>,
        reference: &str,
        desc: &Descriptor,
        layer: &LayerRecord,
        gc: &GcShare,
    ) -> Result<(), ImageError> {
        if self.layers.contains(&layer.chain_id) {
            return Ok(());
        }
        self.fetch(source, reference, desc).await?;
        let blob = self.content.path(&layer.digest);
        let record = layer.clone();
        let layers = Arc::clone(&self.layers);
        let gc = Arc::clone(gc);
        tokio::task::spawn_blocking(move || {
            let result = layers.unpack(&record, &blob);
            drop(gc);
            result
        })
        .await
        .map_err(|e| ImageError::Unpack {
            digest: layer.chain_id.to_string(),
            message: format!("unpack task failed: {e}"),
        })?
    }

    async fn fetch(
        &self,
        source: &Source<'_>,
        reference: &str,
        desc: &Descriptor,
    ) -> Result<(), ImageError> {
        let digest = desc.digest()?;
        match source {
            _ if self.content.contains(&digest) => Ok(()),
            Source::Local => Err(ImageError::Import(format!(
                "{reference}: blob {digest} is missing from the archive"
            ))),
            Source::Registry(parsed) => {
                let mut last_percent = u64::MAX;
                let progress = &self.progress;
                self.puller
                    .fetch_blob(parsed, desc, &self.content, |done, total| {
                        let percent = (done * 100).checked_div(total).unwrap_or(100);
                        if percent != last_percent {
                            last_percent = percent;
                            let _ = progress.send(PullProgress {
                                reference: reference.to_owned(),
                                layer: digest.to_string(),
                                done,
                                total,
                            });
                        }
                    })
                    .await
            }
        }
    }

    fn parse_config(
        &self,
        reference: &str,
        blob: &[u8],
    ) -> Result<(Platform, ImageConfig, Vec<Digest>), ImageError> {
        #[derive(Deserialize)]
        struct RootFs {
            #[serde(default)]
            diff_ids: Vec<String>,
        }
        #[derive(Deserialize)]
        struct ConfigBlob {
            #[serde(default)]
            architecture: String,
            #[serde(default)]
            os: String,
            #[serde(default)]
            variant: Option<String>,
            #[serde(default)]
            config: Option<ImageConfig>,
            rootfs: RootFs,
        }
        let what = format!("config of {reference}");
        let parsed: ConfigBlob =
            serde_json::from_slice(blob).map_err(|e| ImageError::malformed(&what, e))?;
        let platform = Platform {
            os: parsed.os,
            architecture: parsed.architecture,
            variant: parsed.variant,
        };
        if !platform.architecture.is_empty() && !self.host.accepts(&platform) {
            return Err(ImageError::NoMatchingPlatform {
                reference: reference.to_owned(),
                wanted: self.host.to_string(),
                available: platform.to_string(),
            });
        }
        let diff_ids = parsed
            .rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((platform, parsed.config.unwrap_or_default(), diff_ids))
    }

    /// The record of `reference` if Tank has it.
    pub fn get(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        self.index.get(&reference::normalize(reference)?)
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        self.index.list()
    }

    /// Overlay lower directories of `record`, top layer first (the order
    /// of overlayfs' `lowerdir=`).
    pub fn layer_dirs(&self, record: &ImageRecord) -> Vec<PathBuf> {
        record
            .layers
            .iter()
            .rev()
            .map(|l| self.layers.path(&l.chain_id))
            .collect()
    }

    /// Removes the image `reference` unless `users` (pods using it) is not
    /// empty, then collects what no image references any more.
    pub async fn remove(
        &self,
        reference: &str,
        users: &[String],
    ) -> Result<PruneReport, ImageError> {
        let normalized = reference::normalize(reference)?;
        if !users.is_empty() {
            return Err(ImageError::InUse {
                reference: normalized,
                pods: users.join(", "),
            });
        }
        let _gc = self.gc.write().await;
        if self.index.remove(&normalized)?.is_none() {
            return Err(ImageError::NotFound(normalized));
        }
        let mut report = self.collect_garbage()?;
        report.images.push(normalized);
        Ok(report)
    }

    /// Removes every image whose normalized reference is not in `in_use`,
    /// then every layer and blob no remaining image references.
    pub async fn prune(&self, in_use: &HashSet<String>) -> Result<PruneReport, ImageError> {
        let _gc = self.gc.write().await;
        let mut removed = Vec::new();
        for record in self.index.list()? {
            if !in_use.contains(&record.reference) {
                self.index.remove(&record.reference)?;
                removed.push(record.reference);
            }
        }
        let mut report = self.collect_garbage()?;
        report.images = removed;
        Ok(report)
    }

    /// Deletes layers and blobs that no image record references, and what
    /// interrupted downloads left in the ingest area. Call with the gc lock
    /// held exclusively.
    fn collect_garbage(&self) -> Result<PruneReport, ImageError> {
        let records = self.index.list()?;
        let mut blobs: HashSet<Digest> = HashSet::new();
        let mut chains: HashSet<Digest> = HashSet::new();
        for record in &records {
            blobs.insert(record.manifest_digest.clone());
            blobs.insert(record.config_digest.clone());
            for layer in &record.layers {
                blobs.insert(layer.digest.clone());
                chains.insert(layer.chain_id.clone());
            }
        }
        let mut report = PruneReport::default();
        for chain in self.layers.list()? {
            if !chains.contains(&chain) && self.layers.remove(&chain)? {
                report.layers += 1;
            }
        }
        for blob in self.content.list()? {
            if !blobs.contains(&blob) {
                report.bytes += self.content.remove(&blob)?;
                report.blobs += 1;
            }
        }
        // Downloads that broke off: no pull runs now (the gc lock), and the
        // store spares any file still being written anyway.
        let (_, ingest_bytes) = self.content.clean_ingest()?;
        report.bytes += ingest_bytes;
        Ok(report)
    }

    /// Imports the images of an OCI image-layout tar read from `archive`
    /// (blocking reads: a pipe or file passed by a client). Every image
    /// named in the layout's index (`org.opencontainers.image.ref.name`
    /// or `io.containerd.image.name`) is recorded.
    pub async fn import<R: std::io::Read + Send + 'static>(
        self: &Arc<Self>,
        archive: R,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let gc: GcShare = Arc::new(Arc::clone(&self.gc).read_owned().await);
        let this = Arc::clone(self);
        let index = tokio::task::spawn_blocking(move || {
            super::import::read_archive(archive, &this.content)
        })
        .await
        .map_err(|e| ImageError::Import(format!("import task failed: {e}")))??;
        let mut records = Vec::new();
        for (name, resolved) in super::import::resolve(&index, &self.host, &self.content)? {
            records.push(self.complete(name, resolved, Source::Local, &gc).await?);
        }
        if records.is_empty() {
            return Err(ImageError::Import(
                "the archive's index.json names no image (org.opencontainers.image.ref.name)"
                    .to_owned(),
            ));
        }
        Ok(records)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
