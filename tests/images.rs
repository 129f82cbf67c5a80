//! Images against a real `docker-registry` on 127.0.0.1: pulls, the cache,
//! platform selection, tampering, whiteouts mounted as overlay lowers,
//! import, prune, and the D-Bus/tankctl surface.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use support::images::{
    busybox_image, five_layer_image, foreign_image, host_arch, index, multiarch_index, oci_archive,
    user_entrypoint_image, Pushable,
};
use support::registry::Registry;
use support::{failed, ok, SystemBus, Tankd, TankdHome};
use tank::config::RegistriesConfig;
use tank::image::{ImageError, Images};

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

#[tokio::test]
async fn an_interrupted_download_is_resumed() {
    let registry = Registry::start();
    let image = five_layer_image(200, 4096);
    registry
        .push("five:1", &Pushable::Image(image.clone()))
        .await;
    let data = tempfile::tempdir().unwrap();
    // A previous tankd died half way through the biggest layer.
    let layer = image
        .layers
        .iter()
        .max_by_key(|l| l.blob.bytes.len())
        .unwrap();
    let content = tank::image::content::ContentStore::open(&data.path().join("content")).unwrap();
    let digest = tank::image::digest::Digest::parse(&layer.blob.digest).unwrap();
    let mut ingest = content
        .ingest(&digest, Some(layer.blob.bytes.len() as u64))
        .unwrap();
    let half = layer.blob.bytes.len() / 2;
    ingest.write(&layer.blob.bytes[..half]).unwrap();
    drop(ingest);
    assert!(!content.contains(&digest));

    let images = open_images(data.path(), &registry);
    images.pull(&registry.reference("five:1")).await.unwrap();
    assert!(content.contains(&digest));
    assert_eq!(
        std::fs::read(content.path(&digest)).unwrap(),
        layer.blob.bytes
    );
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
            env!("CARGO_BIN_EXE_tankctl"),
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
