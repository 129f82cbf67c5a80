//! Images against a real `docker-registry` on 127.0.0.1: pulls, the cache,
//! platform selection, tampering, whiteouts mounted as overlay lowers,
//! import, prune, and the D-Bus/tankctl surface.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use support::images::{
    bulk_content, busybox_image, busybox_layer, five_layer_image, foreign_image, host_arch,
    host_platform, image, index, multiarch_index, oci_archive, sha256_digest,
    user_entrypoint_image, Blob, Layer, LayerBuilder, OciImage, Pushable, DEFAULT_PATH,
    MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_MANIFEST,
};
use support::registry::Registry;
use support::{failed, ok, SystemBus, Tankd, TankdHome};
use tankd::config::RegistriesConfig;
use tankd::image::{ImageError, Images};

fn open_images(dir: &Path, registry: &Registry) -> Arc<Images> {
    Images::open(
        dir,
        &RegistriesConfig {
            insecure: vec![registry.addr.clone()],
            auth_file: None,
        },
    )
    .expect("open image stores")
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn pull_then_cache_hit_refetches_no_blob() {
    let registry = Registry::start();
    let image = busybox_image();
    registry
        .push("busybox:1", &Pushable::Image(image.clone()))
        .await;
    let data = tempfile::tempdir().unwrap();
    let images = open_images(data.path(), &registry);

    let record = images.pull(&registry.reference("busybox:1")).await.unwrap();
    assert_eq!(record.reference, registry.reference("busybox:1"));
    assert_eq!(record.manifest_digest.as_str(), image.digest());
    assert_eq!(record.layers.len(), 1);
    assert_eq!(
        record.config.cmd.as_deref(),
        Some(&["/bin/sh".to_owned()][..])
    );
    let lower = &images.layer_dirs(&record)[0];
    assert!(lower.join("bin/busybox").is_file());
    assert!(std::fs::symlink_metadata(lower.join("bin/sh"))
        .unwrap()
        .is_symlink());

    // Every blob in the registry is now corrupt: a second pull can only
    // succeed if it fetches no blob at all.
    for layer in &image.layers {
        registry.corrupt_blob(&layer.blob.digest);
    }
    registry.corrupt_blob(&image.config.digest);
    let again = images.pull(&registry.reference("busybox:1")).await.unwrap();
    assert_eq!(again.manifest_digest, record.manifest_digest);
    assert_eq!(again.layers, record.layers);
    // ensure() needs no network at all for a complete cached image.
    drop(registry);
    let cached = images.ensure("127.0.0.1:1/nothing-here:1").await;
    assert!(cached.is_err());
    let record_ref = record.reference.clone();
    assert_eq!(
        images.ensure(&record_ref).await.unwrap().layers,
        record.layers
    );
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_are_one_pull() {
    let registry = Registry::start();
    registry
        .push("five:1", &Pushable::Image(five_layer_image(300, 256)))
        .await;
    let data = tempfile::tempdir().unwrap();
    let images = open_images(data.path(), &registry);
    let reference = registry.reference("five:1");
    let pulls: Vec<_> = (0..5)
        .map(|_| {
            let images = Arc::clone(&images);
            let reference = reference.clone();
            tokio::spawn(async move { images.pull(&reference).await })
        })
        .collect();
    let mut records = Vec::new();
    for pull in pulls {
        records.push(pull.await.unwrap().unwrap());
    }
    // One pull wrote one record; every caller got that very record.
    assert!(records.windows(2).all(|w| w[0] == w[1]), "{records:#?}");
}

#[tokio::test]
async fn multi_arch_index_picks_the_host_platform() {
    let registry = Registry::start();
    registry.push("multi:1", &multiarch_index()).await;
    let data = tempfile::tempdir().unwrap();
    let images = open_images(data.path(), &registry);
    let record = images.pull(&registry.reference("multi:1")).await.unwrap();
    assert_eq!(record.platform.architecture, host_arch());
    let marker = images
        .layer_dirs(&record)
        .iter()
        .map(|dir| dir.join("ARCH"))
        .find(|path| path.exists())
        .expect("a layer with /ARCH");
    assert_eq!(std::fs::read_to_string(marker).unwrap().trim(), host_arch());

    // An index with no entry for this host: the error lists what exists.
    let foreign = if host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    registry
        .push(
            "foreign:1",
            &index(vec![
                foreign_image(foreign, None),
                foreign_image("s390x", None),
            ]),
        )
        .await;
    let err = images
        .pull(&registry.reference("foreign:1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::NoMatchingPlatform { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("no image for linux/{}", host_arch()))
            && message.contains(&format!("linux/{foreign}"))
            && message.contains("linux/s390x"),
        "{message}"
    );
}

#[tokio::test]
async fn a_tampered_blob_is_rejected_and_nothing_is_cached() {
    let registry = Registry::start();
    let image = busybox_image();
    registry
        .push("busybox:1", &Pushable::Image(image.clone()))
        .await;
    let layer_digest = image.layers[0].blob.digest.clone();
    registry.corrupt_blob(&layer_digest);

    let data = tempfile::tempdir().unwrap();
    let images = open_images(data.path(), &registry);
    let err = images
        .pull(&registry.reference("busybox:1"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            ImageError::DigestMismatch { .. } | ImageError::Registry { .. }
        ),
        "{message}"
    );
    assert!(
        message.contains(&layer_digest) || message.contains("digest"),
        "{message}"
    );
    let hex = layer_digest.strip_prefix("sha256:").unwrap();
    assert!(!data.path().join("content/sha256").join(hex).exists());
    assert_eq!(files_under(&data.path().join("content/ingest")), 0);
    assert_eq!(files_under(&data.path().join("layers")), 0);
    assert!(images.list().unwrap().is_empty());
}

/// A TCP forwarder in front of the registry: a real network fault between
/// the real client and the real registry. While armed it cuts the
/// connection that carries the `budget`th byte from the registry, then
/// forwards everything; it counts the bytes it forwarded from the registry.
struct CuttingProxy {
    addr: String,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// Bytes from the registry still allowed before the cut (None: no cut).
    budget: std::sync::Mutex<Option<u64>>,
    sent: std::sync::atomic::AtomicU64,
    stop: std::sync::atomic::AtomicBool,
}

impl CuttingProxy {
    fn start(upstream: &str) -> CuttingProxy {
        use std::net::{Shutdown, TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(ProxyState::default());
        let upstream = upstream.to_owned();
        let accept_state = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept_state.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_client, &mut to_server);
                    let _ = to_server.shutdown(Shutdown::Write);
                });
                let state = Arc::clone(&accept_state);
                std::thread::spawn(move || state.forward(server, client));
            }
        });
        CuttingProxy { addr, state }
    }

    /// Cuts the connection carrying byte number `budget` (counted from now).
    fn arm(&self, budget: u64) {
        *self.state.budget.lock().unwrap() = Some(budget);
    }

    fn sent(&self) -> u64 {
        self.state.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// "PROXY_ADDR/REPO:TAG".
    fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }
}

impl ProxyState {
    fn forward(&self, mut server: std::net::TcpStream, mut client: std::net::TcpStream) {
        use std::io::{Read, Write};
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut n = match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut cut = false;
            {
                let mut budget = self.budget.lock().unwrap();
                if let Some(left) = *budget {
                    if n as u64 >= left {
                        n = left as usize;
                        cut = true;
                        *budget = None;
                    } else {
                        *budget = Some(left - n as u64);
                    }
                }
            }
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
            self.sent
                .fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
            if cut {
                break;
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = server.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// An image of one 6 MiB incompressible gzip layer (`/big/blob`).
fn six_mib_image() -> OciImage {
    let mut big = LayerBuilder::new();
    big.add_dir("big", 0o755)
        .add_file_vec("big/blob", bulk_content(6, 0, 6 << 20), 0o644, 0, 0);
    image(
        vec![big.build_gzip()],
        json!({ "Cmd": ["/bin/sh"] }),
        host_platform(),
    )
}

/// Insecure registries for `images` opened on `dir`: the registry and the
/// proxy in front of it.
fn open_images_via(dir: &Path, registry: &Registry, proxy: &CuttingProxy) -> Arc<Images> {
    Images::open(
        dir,
        &RegistriesConfig {
            insecure: vec![registry.addr.clone(), proxy.addr.clone()],
            auth_file: None,
        },
    )
    .expect("open image stores")
}

/// Pulls `reference` through `proxy` armed to cut it after 2 MiB: the pull
/// fails half way through the layer.
async fn interrupted_pull(images: &Arc<Images>, proxy: &CuttingProxy, reference: &str) {
    proxy.arm(2 << 20);
    let err = images.pull(reference).await.unwrap_err();
    assert!(
        matches!(err, ImageError::Registry { .. }),
        "a cut connection is a registry error: {err}"
    );
}

#[tokio::test]
async fn an_interrupted_download_is_resumed() {
    let registry = Registry::start();
    let image = six_mib_image();
    registry
        .push("big:1", &Pushable::Image(image.clone()))
        .await;
    let proxy = CuttingProxy::start(&registry.addr);
    let reference = proxy.reference("big:1");
    let blob = &image.layers[0].blob;
    let data = tempfile::tempdir().unwrap();
    let images = open_images_via(data.path(), &registry, &proxy);
    interrupted_pull(&images, &proxy, &reference).await;
    let ingest = data.path().join("content/ingest");
    assert_eq!(files_under(&ingest), 1, "the partial download is kept");

    // The next pull resumes where the first one stopped: its first progress
    // report starts past zero, and less than the blob crosses the proxy.
    let mut progress = images.subscribe_progress();
    let before = proxy.sent();
    let record = images.pull(&reference).await.unwrap();
    let resumed_bytes = proxy.sent() - before;
    let first = std::iter::from_fn(|| progress.try_recv().ok())
        .find(|p| p.layer == blob.digest)
        .expect("progress of the layer");
    assert!(
        first.done > 0 && first.done < blob.size(),
        "resumed at {} of {}",
        first.done,
        blob.size()
    );
    assert!(
        resumed_bytes < blob.size(),
        "the resume fetched {resumed_bytes} bytes of a {}-byte blob",
        blob.size()
    );
    let stored = std::fs::read(data.path().join("content/sha256").join(blob.hex())).unwrap();
    assert_eq!(sha256_digest(&stored), blob.digest);
    assert_eq!(files_under(&ingest), 0);
    assert_eq!(
        std::fs::metadata(images.layer_dirs(&record)[0].join("big/blob"))
            .unwrap()
            .len(),
        6 << 20
    );
}

#[tokio::test]
async fn ingest_leftovers_are_removed_at_start_and_by_prune() {
    let registry = Registry::start();
    let image = six_mib_image();
    registry
        .push("big:1", &Pushable::Image(image.clone()))
        .await;
    let proxy = CuttingProxy::start(&registry.addr);
    let reference = proxy.reference("big:1");
    let data = tempfile::tempdir().unwrap();
    let ingest = data.path().join("content/ingest");

    // A tankd that stops after a download broke leaves a partial file; the
    // next tankd removes it at start.
    let images = open_images_via(data.path(), &registry, &proxy);
    interrupted_pull(&images, &proxy, &reference).await;
    assert_eq!(files_under(&ingest), 1);
    drop(images);
    let images = open_images_via(data.path(), &registry, &proxy);
    assert_eq!(files_under(&ingest), 0, "ingest leftovers removed at start");

    // A running tankd: prune removes it.
    interrupted_pull(&images, &proxy, &reference).await;
    assert_eq!(files_under(&ingest), 1);
    let report = images.prune(&HashSet::new()).await.unwrap();
    assert_eq!(files_under(&ingest), 0, "ingest leftovers removed by prune");
    assert!(report.bytes > 0, "{report:?}");

    // And the next pull fetches the blob whole and right.
    let before = proxy.sent();
    images.pull(&reference).await.unwrap();
    assert!(proxy.sent() - before >= image.layers[0].blob.size());
}

#[tokio::test]
async fn whiteouts_and_opaque_dirs_hide_lower_content_when_mounted() {
    let registry = Registry::start();
    let image = five_layer_image(500, 128);
    registry.push("five:1", &Pushable::Image(image)).await;
    let data = tempfile::tempdir_in("/var/tmp").unwrap();
    let images = open_images(data.path(), &registry);
    let record = images.pull(&registry.reference("five:1")).await.unwrap();
    assert_eq!(record.layers.len(), 5);

    // Mount the layers the way the runtime does and look at the result.
    let mnt = tempfile::tempdir_in("/var/tmp").unwrap();
    let lower = images
        .layer_dirs(&record)
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let merged = mnt.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let status = std::process::Command::new("mount")
        .args([
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!("lowerdir={lower}"),
        ])
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success(), "overlay mount of the unpacked layers");
    let check = std::panic::catch_unwind(|| assert_five_layer_view(&merged));
    let _ = std::process::Command::new("umount").arg(&merged).status();
    if let Err(panic) = check {
        std::panic::resume_unwind(panic);
    }
}

/// The merged view documented on `five_layer_image`.
fn assert_five_layer_view(root: &Path) {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let exists = |p: &str| std::fs::symlink_metadata(root.join(p)).is_ok();
    assert_eq!(
        read("data/shared/a.txt"),
        "a4\n",
        "recreated after a whiteout"
    );
    assert_eq!(
        read("data/shared/b.txt"),
        "b4\n",
        "overwritten by a later layer"
    );
    assert_eq!(read("data/shared/c.txt"), "c2\n");
    assert_eq!(read("data/opq/new1"), "new1\n");
    assert_eq!(read("data/opq/kept-name"), "new\n");
    for hidden in [
        "data/doomed",
        "data/doomed/x",
        "data/l1/f00000",
        "data/opq/old1",
        "data/opq/sub",
    ] {
        assert!(!exists(hidden), "{hidden} must be hidden");
    }
    assert!(exists("data/l1/f00001"));
    use std::os::unix::fs::MetadataExt;
    let owned = std::fs::metadata(root.join("data/shared/owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1000, 29, 0o640)
    );
    let link = std::fs::metadata(root.join("data/l3/hardlink")).unwrap();
    let target = std::fs::metadata(root.join("data/l3/f00000")).unwrap();
    assert_eq!(link.ino(), target.ino(), "hard link kept");
    assert_eq!(
        std::fs::read_link(root.join("data/l3/symlink")).unwrap(),
        Path::new("f00000")
    );
    let names: Vec<String> = walk(root);
    assert!(
        names.iter().all(|n| !n.contains(".wh.")),
        "no whiteout visible"
    );
    assert!(names.len() > 2000, "all bulk files there: {}", names.len());
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        out.push(entry.file_name().to_string_lossy().into_owned());
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&entry.path()));
        }
    }
    out
}

#[tokio::test]
async fn import_from_an_oci_archive_needs_no_registry() {
    let data = tempfile::tempdir().unwrap();
    let images = Images::open(data.path(), &RegistriesConfig::default()).unwrap();
    let archive = oci_archive(&[
        (
            "localhost/tank/busybox:1",
            &Pushable::Image(busybox_image()),
        ),
        ("localhost/tank/multi:1", &multiarch_index()),
        (
            "localhost/tank/app:1",
            &Pushable::Image(user_entrypoint_image()),
        ),
    ]);
    let records = images.import(std::io::Cursor::new(archive)).await.unwrap();
    let names: HashSet<_> = records.iter().map(|r| r.reference.as_str()).collect();
    assert_eq!(
        names,
        HashSet::from([
            "localhost/tank/busybox:1",
            "localhost/tank/multi:1",
            "localhost/tank/app:1"
        ])
    );
    let app = images.get("localhost/tank/app:1").unwrap().unwrap();
    assert_eq!(app.config.user.as_deref(), Some("app"));
    assert!(images.layer_dirs(&app)[0].join("bin/busybox").exists());

    // Not an image layout: a clear error, nothing recorded.
    let data2 = tempfile::tempdir().unwrap();
    let empty = Images::open(data2.path(), &RegistriesConfig::default()).unwrap();
    let err = empty
        .import(std::io::Cursor::new(b"definitely not a tar".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Import(_)), "{err}");
    assert!(empty.list().unwrap().is_empty());
}

#[tokio::test]
async fn prune_keeps_what_is_in_use() {
    let registry = Registry::start();
    registry
        .push("busybox:1", &Pushable::Image(busybox_image()))
        .await;
    registry
        .push("five:1", &Pushable::Image(five_layer_image(100, 64)))
        .await;
    let data = tempfile::tempdir().unwrap();
    let images = open_images(data.path(), &registry);
    let kept = images.pull(&registry.reference("busybox:1")).await.unwrap();
    let gone = images.pull(&registry.reference("five:1")).await.unwrap();

    let in_use = HashSet::from([kept.reference.clone()]);
    let report = images.prune(&in_use).await.unwrap();
    assert_eq!(report.images, vec![gone.reference.clone()]);
    assert!(report.blobs > 0 && report.bytes > 0);
    let remaining: Vec<_> = images
        .list()
        .unwrap()
        .into_iter()
        .map(|r| r.reference)
        .collect();
    assert_eq!(remaining, vec![kept.reference.clone()]);
    for dir in images.layer_dirs(&kept) {
        assert!(dir.is_dir(), "layer of the image in use kept");
    }
    let shared: HashSet<_> = kept.layers.iter().map(|l| &l.chain_id).collect();
    for layer in gone.layers.iter().filter(|l| !shared.contains(&l.chain_id)) {
        let hex = layer.chain_id.hex();
        assert!(
            !data.path().join("layers").join(hex).exists(),
            "unused layer removed"
        );
    }

    // Removing an image used by a pod is refused.
    let err = images
        .remove(&kept.reference, &["web".to_owned()])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("image {:?} is used by pod(s) web", kept.reference)
    );
}

/// tankd with the registry configured as insecure.
fn tankd_with(bus: &SystemBus, registry: &Registry) -> Tankd {
    let home = TankdHome::with_config(&format!(
        "[registries]\ninsecure = [\"{}\"]\n",
        registry.addr
    ));
    let mut tankd = Tankd::start_in(bus, &home);
    tankd.keep_home(home);
    tankd
}

#[tokio::test]
async fn images_over_the_bus_and_tankctl() {
    use futures_util::StreamExt;
    let registry = Registry::start();
    registry
        .push("busybox:1", &Pushable::Image(busybox_image()))
        .await;
    let bus = SystemBus::start();
    let tankd = tankd_with(&bus, &registry);
    let reference = registry.reference("busybox:1");

    // PullProgress signals reach a D-Bus client.
    let conn = bus.connect().await;
    let manager = zbus::Proxy::new(
        &conn,
        "org.tank.Manager",
        "/org/tank/Manager",
        "org.tank.Manager",
    )
    .await
    .unwrap();
    let mut progress = manager.receive_signal("PullProgress").await.unwrap();
    let out = ok(&tankd.tankctl(&["image", "pull", &reference]));
    assert!(
        out.starts_with(&format!("pulled {reference} (sha256:")),
        "{out}"
    );
    let signal = tokio::time::timeout(std::time::Duration::from_secs(10), progress.next())
        .await
        .expect("a PullProgress signal")
        .unwrap();
    let (sref, layer, _done, total): (String, String, u64, u64) =
        signal.body().deserialize().unwrap();
    assert_eq!(sref, reference);
    assert!(layer.starts_with("sha256:") && total > 0);

    let ls = ok(&tankd.tankctl(&["image", "ls"]));
    assert!(ls.starts_with("REFERENCE"), "{ls}");
    assert!(
        ls.contains(&reference) && ls.contains(&format!("linux/{}", host_arch())),
        "{ls}"
    );

    // In use by a declared pod → refused; after the pod is gone → removed.
    let pod = format!(
        r#"{{"name": "web", "restart": "never",
            "containers": [{{"name": "app", "image": "{reference}", "command": ["true"]}}]}}"#
    );
    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&pod)));
    // Let the loop finish with it, so nothing pulls it again behind the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ok(&tankd.tankctl(&["get", "web", "-o", "json"])).contains("\"terminated\"") {
        assert!(std::time::Instant::now() < deadline, "web never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let err = failed(&tankd.tankctl(&["image", "rm", &reference]));
    assert_eq!(
        err,
        format!("tankctl: image {reference:?} is used by pod(s) web\n")
    );
    let out = ok(&tankd.tankctl(&["image", "prune"]));
    assert!(out.contains("0 images removed"), "{out}");
    ok(&tankd.tankctl(&["delete", "web"]));
    ok(&tankd.tankctl(&["image", "rm", &reference]));
    assert_eq!(ok(&tankd.tankctl(&["image", "ls"])).lines().count(), 1);

    // Errors are named and precise.
    let err = failed(&tankd.tankctl(&["image", "pull", "NOT a reference"]));
    assert!(err.starts_with("tankctl: invalid image reference"), "{err}");
    let err = failed(&tankd.tankctl(&["image", "rm", &reference]));
    assert_eq!(err, format!("tankctl: image {reference:?} not found\n"));

    // Import through fd passing, from a file and from stdin.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("images.tar");
    std::fs::write(
        &archive,
        oci_archive(&[("localhost/imported:1", &Pushable::Image(busybox_image()))]),
    )
    .unwrap();
    let out = ok(&tankd.tankctl(&["image", "import", archive.to_str().unwrap()]));
    assert_eq!(out, "imported localhost/imported:1\n");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} image import - < {}",
            support::tankctl_bin().display(),
            archive.display()
        ))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    assert_eq!(ok(&out), "imported localhost/imported:1\n");
    let err = failed(&tankd.tankctl(&["image", "import", "/etc/hostname"]));
    assert!(err.starts_with("tankctl: import failed: "), "{err}");

    // Non-root callers may list but not change images (no polkitd here:
    // denied).
    let out = support::polkit::gdbus_as(
        support::NOBODY,
        &bus,
        "PullImage",
        &[&format!("'{reference}'")],
        false,
    );
    let err = failed(&out);
    assert!(
        err.contains(
            "GDBus.Error:org.freedesktop.DBus.Error.AccessDenied: uid 65534 is not authorized \
             for org.tank.images.manage: polkit is unavailable"
        ),
        "{err}"
    );
    ok(&bus.busctl_as(
        support::NOBODY,
        &[
            "call",
            "org.tank.Manager",
            "/org/tank/Manager",
            "org.tank.Manager",
            "ListImages",
        ],
    ));
}

/// The victim: busybox, then a layer with `/app/who` = "victim\n"
/// (`Cmd ["/bin/cat", "/app/who"]`). The poison: the same busybox layer,
/// then a layer whose bytes say "attacker\n" (and add `/app/POISONED`) but
/// whose config declares the victim's diff_id, so it claims the victim's
/// chain id. Also returns the real diff_id of the poisoned layer.
fn victim_and_poison() -> (OciImage, OciImage, String) {
    let mut app = LayerBuilder::new();
    app.add_dir("app", 0o755)
        .add_file("app/who", b"victim\n", 0o644, 0, 0);
    let app = app.build_gzip();
    let mut evil = LayerBuilder::new();
    evil.add_dir("app", 0o755)
        .add_file("app/who", b"attacker\n", 0o644, 0, 0)
        .add_file("app/POISONED", b"", 0o644, 0, 0);
    let evil = evil.build_gzip();
    let evil_diff_id = evil.diff_id.clone();
    let lying = Layer {
        blob: evil.blob,
        diff_id: app.diff_id.clone(),
    };
    let config = json!({ "Cmd": ["/bin/cat", "/app/who"], "Env": [DEFAULT_PATH] });
    (
        image(vec![busybox_layer(), app], config.clone(), host_platform()),
        image(vec![busybox_layer(), lying], config, host_platform()),
        evil_diff_id,
    )
}

/// The chain id (hex) of layer `n` of `image`, from its config's diff_ids.
fn chain_hex(image: &OciImage, n: usize) -> String {
    let mut chain = image.layers[0].diff_id.clone();
    for layer in &image.layers[1..=n] {
        chain = sha256_digest(format!("{chain} {}", layer.diff_id).as_bytes());
    }
    chain.strip_prefix("sha256:").unwrap().to_owned()
}

/// The top layer of `record` (what a container sees at /app) holds the
/// victim's files.
fn assert_victim_files(images: &Images, record: &tankd::image::ImageRecord) {
    let top = &images.layer_dirs(record)[0];
    assert_eq!(
        std::fs::read_to_string(top.join("app/who")).unwrap(),
        "victim\n"
    );
    assert!(!top.join("app/POISONED").exists());
}

/// `err` is the typed mismatch of the poisoned layer.
fn assert_diff_id_mismatch(err: &ImageError, poison: &OciImage, victim: &OciImage, actual: &str) {
    match err {
        ImageError::DiffIdMismatch {
            layer,
            expected,
            actual: got,
        } => {
            assert_eq!(layer.as_str(), poison.layers[1].blob.digest);
            assert_eq!(expected.as_str(), victim.layers[1].diff_id);
            assert_eq!(got.as_str(), actual);
        }
        other => panic!("not DiffIdMismatch: {other:?}"),
    }
    assert_names_the_lie(&err.to_string(), poison, victim, actual);
}

/// The error names the poisoned layer, the diff_id its config declares and
/// the digest of what it really holds.
fn assert_names_the_lie(message: &str, poison: &OciImage, victim: &OciImage, actual: &str) {
    assert!(
        message.contains(&poison.layers[1].blob.digest)
            && message.contains(&victim.layers[1].diff_id)
            && message.contains(actual),
        "{message}"
    );
}

/// The names under `layers/` (chain ids and any temporaries).
fn layer_dirs_on_disk(data: &Path) -> HashSet<String> {
    std::fs::read_dir(data.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn a_layer_lying_about_its_diff_id_cannot_poison_another_image() {
    let registry = Registry::start();
    let (victim, poison, evil_diff_id) = victim_and_poison();
    registry
        .push("victim:1", &Pushable::Image(victim.clone()))
        .await;
    registry
        .push("poison:1", &Pushable::Image(poison.clone()))
        .await;
    let chain = chain_hex(&victim, 1);
    assert_eq!(
        chain,
        chain_hex(&poison, 1),
        "the poison claims the chain id"
    );

    // The poison first: rejected, nothing stored under the chain id.
    let data = tempfile::tempdir().unwrap();
    let images = open_images(data.path(), &registry);
    let err = images
        .pull(&registry.reference("poison:1"))
        .await
        .expect_err("a layer whose content is not its diff_id is rejected");
    assert_diff_id_mismatch(&err, &poison, &victim, &evil_diff_id);
    // Only the (verified) busybox layer may be there, or still unpacking.
    let busybox_chain = chain_hex(&victim, 0);
    let on_disk = layer_dirs_on_disk(data.path());
    assert!(
        on_disk
            .iter()
            .all(|name| name.trim_start_matches(".tmp-").starts_with(&busybox_chain)),
        "{on_disk:?}"
    );
    assert!(images.list().unwrap().is_empty());
    let record = images.pull(&registry.reference("victim:1")).await.unwrap();
    assert_victim_files(&images, &record);

    // The victim first: the poison cannot replace what is there.
    let data = tempfile::tempdir().unwrap();
    let images = open_images(data.path(), &registry);
    let record = images.pull(&registry.reference("victim:1")).await.unwrap();
    let _ = images.pull(&registry.reference("poison:1")).await;
    assert_victim_files(&images, &record);
    let again = images.pull(&registry.reference("victim:1")).await.unwrap();
    assert_victim_files(&images, &again);

    // Import goes through the same check.
    let data = tempfile::tempdir().unwrap();
    let images = Images::open(data.path(), &RegistriesConfig::default()).unwrap();
    let archive = oci_archive(&[("localhost/poison:1", &Pushable::Image(poison.clone()))]);
    let err = images
        .import(std::io::Cursor::new(archive))
        .await
        .expect_err("an imported layer whose content is not its diff_id is rejected");
    assert_diff_id_mismatch(&err, &poison, &victim, &evil_diff_id);
    assert!(!data.path().join("layers").join(&chain).exists());
    assert!(images.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_poisoned_pull_is_an_image_pull_error_and_the_victim_runs_its_own_files() {
    let registry = Registry::start();
    let (victim, poison, evil_diff_id) = victim_and_poison();
    registry
        .push("victim:1", &Pushable::Image(victim.clone()))
        .await;
    registry
        .push("poison:1", &Pushable::Image(poison.clone()))
        .await;
    let bus = SystemBus::start();
    let tankd = tankd_with(&bus, &registry);

    let out = support::polkit::gdbus_as(
        "0",
        &bus,
        "PullImage",
        &[&format!("'{}'", registry.reference("poison:1"))],
        false,
    );
    let err = failed(&out);
    assert!(
        err.contains("GDBus.Error:org.tank.Error.ImagePull: "),
        "{err}"
    );
    assert_names_the_lie(&err, &poison, &victim, &evil_diff_id);

    tankd.apply(&json!({
        "name": "victim", "restart": "never",
        "containers": [{"name": "main", "image": registry.reference("victim:1")}]
    }));
    tankd.wait_for("victim", "exit", 60, |doc| {
        doc["status"]["containers"]["main"]["state"]
            .get("terminated")
            .is_some()
    });
    assert_eq!(ok(&tankd.tankctl(&["logs", "victim"])), "victim\n");
}

/// Two images sharing a 6 MiB layer, each with a small layer of its own.
fn two_images_sharing_a_layer() -> (OciImage, OciImage) {
    let shared = six_mib_image().layers[0].clone();
    let own = |name: &str| {
        let mut b = LayerBuilder::new();
        b.add_file(name, name.as_bytes(), 0o644, 0, 0);
        b.build_gzip()
    };
    let config = json!({ "Cmd": ["/bin/sh"] });
    (
        image(
            vec![shared.clone(), own("a")],
            config.clone(),
            host_platform(),
        ),
        image(vec![shared, own("b")], config, host_platform()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_images_sharing_a_layer() {
    let registry = Registry::start();
    let (a, b) = two_images_sharing_a_layer();
    registry.push("a:1", &Pushable::Image(a.clone())).await;
    registry.push("b:1", &Pushable::Image(b)).await;
    let shared = &a.layers[0].blob;
    for round in 0..10 {
        let data = tempfile::tempdir().unwrap();
        let images = open_images(data.path(), &registry);
        let pulls: Vec<_> = ["a:1", "b:1"]
            .iter()
            .map(|tag| {
                let images = Arc::clone(&images);
                let reference = registry.reference(tag);
                tokio::spawn(async move { images.pull(&reference).await })
            })
            .collect();
        for pull in pulls {
            pull.await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let stored = std::fs::read(data.path().join("content/sha256").join(shared.hex())).unwrap();
        assert_eq!(stored.len(), shared.bytes.len(), "round {round}");
        assert_eq!(sha256_digest(&stored), shared.digest, "round {round}");
        assert_eq!(files_under(&data.path().join("content/ingest")), 0);
    }
}

#[tokio::test]
async fn an_image_listing_one_blob_three_times_pulls_first_time() {
    let registry = Registry::start();
    let layer = busybox_layer();
    let thrice = image(
        vec![layer.clone(), layer.clone(), layer.clone()],
        json!({ "Cmd": ["/bin/sh"] }),
        host_platform(),
    );
    registry.push("thrice:1", &Pushable::Image(thrice)).await;
    let data = tempfile::tempdir().unwrap();
    let images = open_images(data.path(), &registry);
    let record = images
        .pull(&registry.reference("thrice:1"))
        .await
        .expect("the first pull succeeds");
    let chains: HashSet<_> = record.layers.iter().map(|l| &l.chain_id).collect();
    assert_eq!(chains.len(), 3);
    for dir in images.layer_dirs(&record) {
        assert!(dir.join("bin/busybox").is_file(), "{}", dir.display());
    }
    let stored = std::fs::read(data.path().join("content/sha256").join(layer.blob.hex())).unwrap();
    assert_eq!(stored, layer.blob.bytes);
}

/// `image` with the manifest descriptor of layer `n` declaring `size`.
fn with_declared_size(mut image: OciImage, n: usize, size: u64) -> OciImage {
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    manifest["layers"][n]["size"] = json!(size);
    image.manifest = Blob::json(MEDIA_TYPE_MANIFEST, &manifest);
    image
}

#[tokio::test]
async fn a_blob_larger_than_its_descriptor_is_cut_off() {
    let registry = Registry::start();
    let big = Blob::new(MEDIA_TYPE_LAYER_TAR, bulk_content(8, 0, 64 << 20));
    let layer = Layer {
        diff_id: big.digest.clone(),
        blob: big,
    };
    // The registry serves the real 64 MiB; the manifest says 1024 bytes.
    let lying = with_declared_size(
        image(
            vec![layer.clone()],
            json!({ "Cmd": ["/bin/sh"] }),
            host_platform(),
        ),
        0,
        1024,
    );
    registry.push("big:1", &Pushable::Image(lying)).await;
    let data = tempfile::tempdir().unwrap();
    let images = open_images(data.path(), &registry);
    let err = images.pull(&registry.reference("big:1")).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&layer.blob.digest)
            && message.contains("larger than the 1024 bytes its descriptor declares"),
        "{message}"
    );
    // Stopped at once: the announced length gave it away, and at most the
    // first byte past the limit was read.
    match err {
        ImageError::BlobTooLarge {
            digest,
            limit,
            announced,
            received,
        } => {
            assert_eq!(digest.as_str(), layer.blob.digest);
            assert_eq!(limit, 1024);
            assert_eq!(announced, Some(64 << 20));
            assert!(received <= 1025, "{received} bytes read");
        }
        other => panic!("not BlobTooLarge: {other:?}"),
    }
    assert_eq!(files_under(&data.path().join("content/ingest")), 0);
    assert!(!data
        .path()
        .join("content/sha256")
        .join(layer.blob.hex())
        .exists());
}

#[tokio::test]
async fn layers_made_by_gnu_tar_verify() {
    // GNU tar pads an archive to 10 KiB records: the zero blocks after the
    // end-of-archive marker are part of the diff_id.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hello"), "hello from GNU tar\n").unwrap();
    let tar = dir.path().join("layer.tar");
    let status = std::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg("etc")
        .status()
        .unwrap();
    assert!(status.success());
    let tar = std::fs::read(&tar).unwrap();
    assert_eq!(tar.len() % 10240, 0, "a padded GNU tar");
    let diff_id = sha256_digest(&tar);
    let gz = Layer {
        blob: Blob::new(MEDIA_TYPE_LAYER_GZIP, support::images::gzip(&tar)),
        diff_id: diff_id.clone(),
    };
    let plain = Layer {
        blob: Blob::new(MEDIA_TYPE_LAYER_TAR, tar),
        diff_id,
    };
    let registry = Registry::start();
    for (tag, layer) in [("gz:1", gz), ("plain:1", plain)] {
        let img = image(
            vec![busybox_layer(), layer],
            json!({ "Cmd": ["/bin/sh"] }),
            host_platform(),
        );
        registry.push(tag, &Pushable::Image(img)).await;
        let data = tempfile::tempdir().unwrap();
        let images = open_images(data.path(), &registry);
        let record = images
            .pull(&registry.reference(tag))
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(
            std::fs::read_to_string(images.layer_dirs(&record)[0].join("etc/hello")).unwrap(),
            "hello from GNU tar\n"
        );
    }
}
