//! `ImageService`: the image side of husk as one domain API — pull (parallel, resumable,
//! deduplicated), list, status, remove with garbage collection, usage — over the content store,
//! the snapshotter and the image index.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};

use tokio::sync::{Semaphore, mpsc};

pub use crate::config::ImageServiceConfig;
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::hosts::HostsConfig;
use crate::locks::KeyedLocks;
use crate::manifest::{
    self, DOCKER_CONFIG, ImageConfig, Manifest, ManifestKind, OCI_CONFIG, Platform,
};
use crate::reference::Reference;
use crate::registry::{Credentials, RegistryClient, Repo};
use crate::snapshot::Snapshotter;
use crate::store::{ImageRecord, ImageStore, LayerRecord, Match, RECORD_VERSION};
use crate::unpack::{self, Compression, UnpackOptions};

/// Where a layer is in a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPhase {
    Waiting,
    Downloading,
    Downloaded,
    Extracting,
    Done,
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerProgress {
    pub digest: Digest,
    pub total: u64,
    pub done: u64,
    pub phase: LayerPhase,
}

/// Progress of a pull, for clients that show it.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    Resolved {
        manifest_digest: Digest,
        layers: Vec<LayerProgress>,
    },
    Layer(LayerProgress),
}

pub type ProgressSender = mpsc::Sender<PullEvent>;

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct PullResult {
    pub image: ImageRecord,
    /// `repo@sha256:…` of what was resolved.
    pub image_ref: String,
}

/// Disk usage of the image store.
#[derive(Debug, Clone, PartialEq)]
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// The image service.
pub struct ImageService {
    pub(crate) content: ContentStore,
    pub(crate) snapshots: Snapshotter,
    pub(crate) images: ImageStore,
    registry: RegistryClient,
    pub(crate) tmp_dir: PathBuf,
    platform: Platform,
    /// Pulls and imports hold it shared; removal and GC exclusively.
    gc_lock: tokio::sync::RwLock<()>,
    /// Serialises image record updates (tags move between images).
    meta_lock: tokio::sync::Mutex<()>,
    blob_locks: KeyedLocks,
    snapshot_locks: KeyedLocks,
    pull_locks: KeyedLocks,
    downloads: Arc<Semaphore>,
    leases: Leases,
    pub(crate) max_import_bytes: u64,
}

/// Snapshots in use by containers: garbage collection keeps every leased chain ID, even when
/// the image itself has been removed (as containerd's leases do).
#[derive(Default)]
pub struct Leases {
    map: std::sync::Mutex<std::collections::HashMap<String, Vec<Digest>>>,
}

impl Leases {
    /// `owner` (a container id) uses these snapshots.
    pub fn add(&self, owner: &str, chain_ids: Vec<Digest>) {
        self.lock().insert(owner.to_string(), chain_ids);
    }

    pub fn remove(&self, owner: &str) {
        self.lock().remove(owner);
    }

    /// Every leased chain ID.
    pub fn all(&self) -> BTreeSet<Digest> {
        self.lock().values().flatten().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<Digest>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn send(progress: Option<&ProgressSender>, ev: PullEvent) {
    if let Some(p) = progress {
        let _ = p.try_send(ev);
    }
}

fn layer_ev(
    progress: Option<&ProgressSender>,
    digest: &Digest,
    total: u64,
    done: u64,
    phase: LayerPhase,
) {
    send(
        progress,
        PullEvent::Layer(LayerProgress {
            digest: digest.clone(),
            total,
            done,
            phase,
        }),
    );
}

/// Runs blocking filesystem work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::Task {
            message: e.to_string(),
        })?
}

impl ImageService {
    /// Opens the stores under `cfg.root`, sweeping what an interrupted run left behind.
    pub fn open(cfg: ImageServiceConfig) -> Result<Self> {
        let content = ContentStore::open(cfg.root.join("content"))?;
        content.prune_ingests(Duration::from_secs(7 * 24 * 3600));
        let snapshots = Snapshotter::open(cfg.root.join("snapshots"))?;
        let images = ImageStore::open(cfg.root.join("images"))?;
        let tmp_dir = cfg.root.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp_dir);
        std::fs::create_dir_all(&tmp_dir).map_err(|e| ImageError::io("create", &tmp_dir, e))?;
        Ok(ImageService {
            content,
            snapshots,
            images,
            registry: RegistryClient::new(HostsConfig::new(cfg.registry_config_path)),
            tmp_dir,
            platform: cfg.platform,
            gc_lock: tokio::sync::RwLock::new(()),
            meta_lock: tokio::sync::Mutex::new(()),
            blob_locks: KeyedLocks::default(),
            snapshot_locks: KeyedLocks::default(),
            pull_locks: KeyedLocks::default(),
            downloads: Arc::new(Semaphore::new(cfg.max_concurrent_downloads.max(1))),
            leases: Leases::default(),
            max_import_bytes: cfg.max_import_bytes,
        })
    }

    /// A directory for temporary files on the same filesystem as the stores.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// The most bytes an imported archive may hold (see [`ImageServiceConfig`]); a receiver
    /// should stop at [`ImageError::ImportTooLarge`] once more has arrived.
    pub fn max_import_bytes(&self) -> u64 {
        self.max_import_bytes
    }

    pub fn snapshotter(&self) -> &Snapshotter {
        &self.snapshots
    }

    /// Snapshot leases held by containers.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// All images.
    pub fn list(&self) -> Vec<ImageRecord> {
        self.images.list()
    }

    /// Finds an image by id, id prefix, tag or digest reference; `None` when absent.
    pub fn status(&self, query: &str) -> Result<Option<ImageRecord>> {
        Ok(self.images.resolve(query)?.map(|(r, _)| r))
    }

    /// The raw image config (OCI JSON) of an image.
    pub fn config_json(&self, image: &ImageRecord) -> Result<serde_json::Value> {
        let data = self.content.read(&image.id)?;
        serde_json::from_slice(&data).map_err(|e| ImageError::InvalidContent {
            what: "image config",
            digest: image.id.to_string(),
            message: e.to_string(),
        })
    }

    /// The parsed image config.
    pub fn config(&self, image: &ImageRecord) -> Result<ImageConfig> {
        let data = self.content.read(&image.id)?;
        ImageConfig::parse(&image.id, &data)
    }

    /// Disk usage of snapshots and content.
    pub fn fs_usage(&self) -> Result<FsUsage> {
        let (snap_bytes, snap_inodes) = self.snapshots.usage();
        let mut blob_bytes = 0;
        let blobs = self.content.list()?;
        for b in &blobs {
            blob_bytes += self.content.size(b).unwrap_or(0);
        }
        Ok(FsUsage {
            mountpoint: self.snapshots.dir().to_path_buf(),
            used_bytes: snap_bytes + blob_bytes,
            inodes_used: snap_inodes + blobs.len() as u64,
        })
    }

    /// Pulls `reference` from its registry (or the mirrors configured for it).
    pub async fn pull(
        &self,
        reference: &str,
        creds: Option<Credentials>,
        progress: Option<ProgressSender>,
    ) -> Result<PullResult> {
        let r =
            Reference::parse(reference.trim()).map_err(|source| ImageError::InvalidReference {
                reference: reference.to_string(),
                source,
            })?;
        let progress = progress.as_ref();
        let timer = husk_telemetry::pull_timer();
        // Pulls of the same reference share the work: the second finds everything present.
        let _pull = self.pull_locks.lock(r.to_string()).await;
        let _gc = self.gc_lock.read().await;
        let started = std::time::Instant::now();
        let repo = self.registry.repo(&r, creds)?;
        let (top_digest, mt, bytes) = repo.resolve().await?;
        tracing::debug!(reference = %r, digest = %top_digest, media_type = %mt, "resolved");
        let mut blobs = BTreeSet::new();
        let top = manifest::parse_manifest(&top_digest, &mt, &bytes)?;
        self.store_blob(&top_digest, bytes.to_vec()).await?;
        blobs.insert(top_digest.clone());
        let (manifest_digest, manifest, manifest_len) = match top {
            ManifestKind::Image(m) => (top_digest.clone(), *m, bytes.len() as u64),
            ManifestKind::Index(idx) => {
                let desc = manifest::select_platform(&top_digest, &idx, &self.platform)?;
                let md = desc.digest("manifest")?;
                let (mt, data) = if self.content.has(&md) {
                    (desc.media_type.clone(), self.content.read(&md)?.into())
                } else {
                    repo.fetch_manifest(&md).await?
                };
                let mt = if mt.is_empty() {
                    desc.media_type.clone()
                } else {
                    mt
                };
                let m = match manifest::parse_manifest(&md, &mt, &data)? {
                    ManifestKind::Image(m) => *m,
                    ManifestKind::Index(_) => {
                        return Err(ImageError::InvalidContent {
                            what: "index",
                            digest: top_digest.to_string(),
                            message: "platform entry is another index".into(),
                        });
                    }
                };
                self.store_blob(&md, data.to_vec()).await?;
                blobs.insert(md.clone());
                (md, m, data.len() as u64)
            }
        };
        let config_digest = manifest.config.digest("config")?;
        check_config_media_type(&manifest)?;
        let config_size = manifest.config.size("config")?;
        if !self.content.has(&config_digest) {
            let data = self
                .fetch_small_blob(&repo, &config_digest, config_size)
                .await?;
            self.store_blob(&config_digest, data).await?;
        }
        blobs.insert(config_digest.clone());
        let config_bytes = self.content.read(&config_digest)?;
        let config = ImageConfig::parse(&config_digest, &config_bytes)?;
        let layers = self.layer_records(&config_digest, &config, &manifest)?;
        blobs.extend(layers.iter().map(|l| l.digest.clone()));
        send(
            progress,
            PullEvent::Resolved {
                manifest_digest: manifest_digest.clone(),
                layers: layers
                    .iter()
                    .map(|l| LayerProgress {
                        digest: l.digest.clone(),
                        total: l.size,
                        done: 0,
                        phase: LayerPhase::Waiting,
                    })
                    .collect(),
            },
        );

        self.fetch_and_unpack(Some(&repo), &layers, progress)
            .await?;

        let size = manifest_len + config_size + layers.iter().map(|l| l.size).sum::<u64>();
        let image_ref = r.with_digest(&top_digest);
        let rec = self
            .record_image(
                config_digest,
                manifest_digest,
                r.tagged().into_iter().collect(),
                vec![image_ref.clone()],
                layers,
                blobs,
                size,
                &config,
            )
            .await?;
        tracing::info!(reference = %r, image = %rec.id, size, elapsed_ms = started.elapsed().as_millis() as u64, "pulled image");
        timer.succeeded();
        Ok(PullResult {
            image: rec,
            image_ref,
        })
    }

    pub(crate) fn layer_records(
        &self,
        config_digest: &Digest,
        config: &ImageConfig,
        manifest: &Manifest,
    ) -> Result<Vec<LayerRecord>> {
        let diff_ids = config.diff_ids(config_digest)?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::InvalidContent {
                what: "image",
                digest: config_digest.to_string(),
                message: format!(
                    "manifest has {} layers but the config lists {} diff_ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let chains = manifest::chain_ids(&diff_ids);
        manifest
            .layers
            .iter()
            .zip(diff_ids)
            .zip(chains)
            .map(|((d, diff_id), chain_id)| {
                Compression::from_media_type(&d.media_type).map_err(|_| {
                    ImageError::UnsupportedMediaType {
                        media_type: d.media_type.clone(),
                        what: format!("layer {}", d.digest),
                    }
                })?;
                Ok(LayerRecord {
                    digest: d.digest("layer")?,
                    size: d.size("layer")?,
                    media_type: d.media_type.clone(),
                    diff_id,
                    chain_id,
                })
            })
            .collect()
    }

    async fn store_blob(&self, d: &Digest, data: Vec<u8>) -> Result<()> {
        if self.content.has(d) {
            return Ok(());
        }
        let content = self.content.clone();
        let d = d.clone();
        blocking(move || content.write(&d, &data)).await
    }

    async fn fetch_small_blob(&self, repo: &Repo<'_>, d: &Digest, size: u64) -> Result<Vec<u8>> {
        if size > crate::content::MAX_METADATA_BLOB {
            return Err(ImageError::InvalidContent {
                what: "config",
                digest: d.to_string(),
                message: format!("{size} bytes is too large"),
            });
        }
        let resp = repo.fetch_blob(d, 0).await?;
        let host = resp.host.clone();
        let data = resp
            .response
            .bytes()
            .await
            .map_err(|e| ImageError::RegistryUnreachable {
                host,
                message: crate::registry::error_chain(&e),
            })?;
        husk_telemetry::record_pull_bytes(data.len() as u64);
        if data.len() as u64 != size {
            return Err(ImageError::SizeMismatch {
                digest: d.clone(),
                expected: size,
                actual: data.len() as u64,
            });
        }
        crate::content::verify(d, &data)?;
        Ok(data.to_vec())
    }

    /// Downloads missing layers in parallel while unpacking them in order as they arrive.
    pub(crate) async fn fetch_and_unpack(
        &self,
        repo: Option<&Repo<'_>>,
        layers: &[LayerRecord],
        progress: Option<&ProgressSender>,
    ) -> Result<()> {
        let n = layers.len();
        let mut ready_tx = Vec::with_capacity(n);
        let mut ready_rx = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            ready_tx.push(Some(tx));
            ready_rx.push(rx);
        }
        let downloads = layers
            .iter()
            .zip(ready_tx)
            .map(|(l, tx)| self.download_and_signal(repo, l, tx, progress))
            .collect::<futures::stream::FuturesUnordered<_>>()
            .try_collect::<Vec<()>>();
        let unpacks = async {
            for (i, rx) in ready_rx.into_iter().enumerate() {
                if rx.await.is_err() {
                    // the download side failed; its error wins in try_join
                    futures::future::pending::<()>().await;
                }
                self.ensure_snapshot(layers, i, progress).await?;
            }
            Ok::<(), ImageError>(())
        };
        futures::try_join!(downloads, unpacks)?;
        Ok(())
    }

    async fn download_and_signal(
        &self,
        repo: Option<&Repo<'_>>,
        l: &LayerRecord,
        ready: Option<tokio::sync::oneshot::Sender<()>>,
        progress: Option<&ProgressSender>,
    ) -> Result<()> {
        if self.snapshots.get(&l.chain_id).is_none() {
            self.fetch_layer(repo, l, progress).await?;
        }
        if let Some(tx) = ready {
            let _ = tx.send(());
        }
        Ok(())
    }

    async fn fetch_layer(
        &self,
        repo: Option<&Repo<'_>>,
        l: &LayerRecord,
        progress: Option<&ProgressSender>,
    ) -> Result<()> {
        let _blob = self.blob_locks.lock(l.digest.to_string()).await;
        if self.content.has(&l.digest) {
            layer_ev(progress, &l.digest, l.size, l.size, LayerPhase::Downloaded);
            return Ok(());
        }
        let Some(repo) = repo else {
            return Err(ImageError::InvalidArchive {
                message: format!("layer {} is missing from the archive", l.digest),
            });
        };
        let _permit = self
            .downloads
            .acquire()
            .await
            .map_err(|e| ImageError::Task {
                message: e.to_string(),
            })?;
        let mut attempt = 0;
        loop {
            match self.download(repo, l, progress).await {
                Ok(()) => {
                    layer_ev(progress, &l.digest, l.size, l.size, LayerPhase::Downloaded);
                    return Ok(());
                }
                Err(e @ ImageError::RegistryUnreachable { .. }) if attempt < 2 => {
                    attempt += 1;
                    tracing::info!(digest = %l.digest, error = %e, attempt, "blob download interrupted, resuming");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt at streaming a blob to the content store, resuming a partial download.
    async fn download(
        &self,
        repo: &Repo<'_>,
        l: &LayerRecord,
        progress: Option<&ProgressSender>,
    ) -> Result<()> {
        let content = self.content.clone();
        let (digest, size) = (l.digest.clone(), l.size);
        let mut ingest = blocking(move || content.ingest(&digest, Some(size))).await?;
        let resp = repo.fetch_blob(&l.digest, ingest.offset()).await?;
        let host = resp.host.clone();
        let reset = ingest.offset() > 0 && !resp.resumed;
        let mut done = if reset { 0 } else { ingest.offset() };
        if ingest.offset() > 0 && resp.resumed {
            tracing::debug!(digest = %l.digest, offset = done, "resuming download");
        }
        // A blocking thread owns the file: chunks go to it through a bounded channel.
        let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(16);
        let writer = tokio::task::spawn_blocking(move || -> Result<crate::content::Ingest> {
            if reset {
                ingest.reset()?;
            }
            while let Some(chunk) = rx.blocking_recv() {
                ingest.write(&chunk)?;
            }
            Ok(ingest)
        });
        let mut stream = resp.response.bytes_stream();
        let mut last_report = 0u64;
        let mut net_err = None;
        layer_ev(progress, &l.digest, l.size, done, LayerPhase::Downloading);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    done += c.len() as u64;
                    husk_telemetry::record_pull_bytes(c.len() as u64);
                    if tx.send(c).await.is_err() {
                        break; // writer failed; its error is reported below
                    }
                    if done - last_report >= 512 * 1024 {
                        last_report = done;
                        layer_ev(progress, &l.digest, l.size, done, LayerPhase::Downloading);
                    }
                }
                Err(e) => {
                    net_err = Some(ImageError::RegistryUnreachable {
                        host: host.clone(),
                        message: format!(
                            "reading blob {}: {}",
                            l.digest,
                            crate::registry::error_chain(&e)
                        ),
                    });
                    break;
                }
            }
        }
        drop(tx);
        let ingest = writer.await.map_err(|e| ImageError::Task {
            message: e.to_string(),
        })??;
        // On a network error the partial file stays for the next attempt to resume.
        if let Some(e) = net_err {
            return Err(e);
        }
        if ingest.offset() < l.size {
            return Err(ImageError::RegistryUnreachable {
                host,
                message: format!(
                    "blob {} ended after {} of {} bytes",
                    l.digest,
                    ingest.offset(),
                    l.size
                ),
            });
        }
        blocking(move || ingest.commit()).await
    }

    /// Unpacks layer `i` unless its snapshot exists.
    async fn ensure_snapshot(
        &self,
        layers: &[LayerRecord],
        i: usize,
        progress: Option<&ProgressSender>,
    ) -> Result<()> {
        let l = &layers[i];
        let _snap = self.snapshot_locks.lock(l.chain_id.to_string()).await;
        if self.snapshots.get(&l.chain_id).is_some() {
            layer_ev(progress, &l.digest, l.size, l.size, LayerPhase::Exists);
            return Ok(());
        }
        layer_ev(progress, &l.digest, l.size, l.size, LayerPhase::Extracting);
        let chain: Vec<Digest> = layers[..i].iter().map(|l| l.chain_id.clone()).collect();
        let lowers = self.snapshots.lowerdirs(&chain)?;
        let prepared = self.snapshots.prepare()?;
        let blob = self.content.blob_path(&l.digest);
        let media_type = l.media_type.clone();
        let digest = l.digest.clone();
        let started = std::time::Instant::now();
        let (prepared, stats) = blocking(move || {
            let f = std::fs::File::open(&blob).map_err(|e| ImageError::io("open", &blob, e))?;
            let mut r = std::io::BufReader::with_capacity(1 << 20, f);
            let comp = match Compression::from_media_type(&media_type) {
                Ok(c) => c,
                Err(_) => {
                    let head = std::io::BufRead::fill_buf(&mut r)
                        .map_err(|e| ImageError::io("read", &blob, e))?;
                    Compression::detect(head)
                }
            };
            let unpack_err = |source| ImageError::Unpack {
                digest: digest.clone(),
                source,
            };
            let reader = unpack::decompress(r, comp).map_err(unpack_err)?;
            let stats = unpack::unpack_layer(reader, &prepared.fs_dir(), &UnpackOptions { lowers })
                .map_err(unpack_err)?;
            Ok((prepared, stats))
        })
        .await?;
        let actual = stats.diff_id.to_string();
        if actual != l.diff_id.to_string() {
            return Err(ImageError::DiffIdMismatch {
                digest: l.digest.clone(),
                expected: l.diff_id.to_string(),
                actual,
            });
        }
        let parent = i.checked_sub(1).map(|p| layers[p].chain_id.clone());
        self.snapshots.commit(
            prepared,
            l.chain_id.clone(),
            parent,
            l.diff_id.clone(),
            stats.bytes,
            stats.entries,
        )?;
        tracing::debug!(digest = %l.digest, ms = started.elapsed().as_millis() as u64, "unpacked layer");
        layer_ev(progress, &l.digest, l.size, l.size, LayerPhase::Done);
        Ok(())
    }

    /// Creates or updates the record of an image and moves `tags` to it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_image(
        &self,
        id: Digest,
        manifest: Digest,
        tags: Vec<String>,
        digests: Vec<String>,
        layers: Vec<LayerRecord>,
        blobs: BTreeSet<Digest>,
        size: u64,
        config: &ImageConfig,
    ) -> Result<ImageRecord> {
        let _meta = self.meta_lock.lock().await;
        for tag in &tags {
            for mut other in self.images.with_tag(tag) {
                if other.id != id {
                    other.repo_tags.retain(|t| t != tag);
                    self.images.put(other)?;
                }
            }
        }
        let mut rec = self.images.get(&id).unwrap_or_else(|| ImageRecord {
            version: RECORD_VERSION,
            id: id.clone(),
            manifest: manifest.clone(),
            repo_tags: vec![],
            repo_digests: vec![],
            layers: vec![],
            blobs: BTreeSet::new(),
            size,
            pinned: false,
            user: None,
            created_at: chrono::Utc::now().timestamp(),
        });
        // The same image (same config) reached again, e.g. imported after a pull: keep what the
        // record says about its layers and size, add the new names and keep the new blobs.
        if rec.layers.is_empty() {
            rec.manifest = manifest;
            rec.layers = layers;
            rec.size = size;
        }
        rec.blobs.extend(blobs);
        rec.user = config.config.as_ref().and_then(|c| c.user.clone());
        for t in tags {
            if !rec.repo_tags.contains(&t) {
                rec.repo_tags.push(t);
            }
        }
        for d in digests {
            if !rec.repo_digests.contains(&d) {
                rec.repo_digests.push(d);
            }
        }
        self.images.put(rec.clone())?;
        Ok(rec)
    }

    /// Removes an image by id, tag or digest reference. Removing by a tag that other tags
    /// share only untags. Removing a missing image is not an error (CRI semantics).
    pub async fn remove(&self, query: &str) -> Result<()> {
        let _gc = self.gc_lock.write().await;
        let _meta = self.meta_lock.lock().await;
        let Some((mut rec, how)) = self.images.resolve(query)? else {
            return Ok(());
        };
        if let Match::Tag(tag) = &how
            && rec.repo_tags.len() > 1
        {
            rec.repo_tags.retain(|t| t != tag);
            tracing::info!(image = %rec.id, %tag, "untagged image");
            return self.images.put(rec);
        }
        self.images.delete(&rec.id)?;
        tracing::info!(image = %rec.id, "removed image");
        self.collect_garbage().await
    }

    /// Garbage collection on demand (e.g. after a container released its snapshot lease).
    pub async fn gc(&self) -> Result<()> {
        let _gc = self.gc_lock.write().await;
        self.collect_garbage().await
    }

    /// Deletes blobs and snapshots no image refers to. Callers hold the GC lock.
    async fn collect_garbage(&self) -> Result<()> {
        let images = self.images.list();
        let mut keep_blobs = BTreeSet::new();
        let mut keep_chains = self.leases.all();
        for i in &images {
            keep_blobs.extend(i.blobs.iter().cloned());
            keep_chains.extend(i.chain_ids());
        }
        let content = self.content.clone();
        let (blobs, freed) = blocking(move || {
            let mut n = 0u64;
            let mut bytes = 0u64;
            for b in content.list()? {
                if !keep_blobs.contains(&b) {
                    bytes += content.size(&b).unwrap_or(0);
                    content.delete(&b)?;
                    n += 1;
                }
            }
            Ok((n, bytes))
        })
        .await?;
        let mut snaps = 0;
        for s in self.snapshots.list() {
            if !keep_chains.contains(&s.chain_id) {
                self.snapshots.remove(&s.chain_id)?;
                snaps += 1;
            }
        }
        tracing::debug!(blobs, freed, snapshots = snaps, "garbage collected");
        Ok(())
    }

    /// Shared lock for imports (same rules as a pull).
    pub(crate) async fn gc_read(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gc_lock.read().await
    }

    pub(crate) fn content(&self) -> &ContentStore {
        &self.content
    }
}

pub(crate) fn check_config_media_type(m: &Manifest) -> Result<()> {
    match m.config.media_type.as_str() {
        OCI_CONFIG | DOCKER_CONFIG | "" => Ok(()),
        other => Err(ImageError::UnsupportedMediaType {
            media_type: other.to_string(),
            what: format!("config {} (not a container image)", m.config.digest),
        }),
    }
}
