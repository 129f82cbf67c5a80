//! Proves the image and registry fixtures in `tests/support/` work:
//! deterministic builders, valid OCI JSON, the documented merged view of
//! `five_layer_image`, a real docker-registry serving exactly the pushed
//! digests, and a structurally sound OCI layout / archive.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use oci_client::secrets::RegistryAuth;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use support::images::{self, Blob, Layer, OciImage, Pushable};
use support::registry::Registry;

/// What a tar entry is, for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File(Vec<u8>, u32, u64, u64),
    Dir(u32),
    Symlink(String),
    Hardlink(String),
    Other,
}

/// The entries of a layer, in order (paths without a trailing `/`).
fn layer_entries(layer: &Layer) -> Vec<(String, Node)> {
    let tar: Vec<u8> = if layer.blob.media_type == images::MEDIA_TYPE_LAYER_GZIP {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&layer.blob.bytes[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        layer.blob.bytes.clone()
    };
    assert_eq!(images::sha256_digest(&tar), layer.diff_id, "diff_id");
    let mut archive = tar::Archive::new(&tar[..]);
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let header = entry.header().clone();
        assert_eq!(header.mtime().unwrap(), images::MTIME, "{path}: mtime");
        let mode = header.mode().unwrap();
        let node = match header.entry_type() {
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                Node::File(data, mode, header.uid().unwrap(), header.gid().unwrap())
            }
            tar::EntryType::Directory => Node::Dir(mode),
            tar::EntryType::Symlink => Node::Symlink(
                entry
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ),
            tar::EntryType::Link => Node::Hardlink(
                entry
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ),
            _ => Node::Other,
        };
        entries.push((path, node));
    }
    entries
}

/// Applies OCI layer semantics (whiteouts, opaque dirs) bottom to top.
fn merged_view(image: &OciImage) -> BTreeMap<String, Node> {
    let mut view: BTreeMap<String, Node> = BTreeMap::new();
    let remove_under = |view: &mut BTreeMap<String, Node>, dir: &str, with_self: bool| {
        let prefix = format!("{dir}/");
        view.retain(|p, _| !(p.starts_with(&prefix) || (with_self && p == dir)));
    };
    for layer in &image.layers {
        let entries = layer_entries(layer);
        // Whiteouts and opaque markers hide lower layers only.
        for (path, _) in &entries {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            if name == ".wh..wh..opq" {
                remove_under(&mut view, dir, false);
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                let target = if dir.is_empty() {
                    hidden.to_owned()
                } else {
                    format!("{dir}/{hidden}")
                };
                remove_under(&mut view, &target, true);
            }
        }
        for (path, node) in entries {
            let name = path.rsplit('/').next().unwrap();
            if !name.starts_with(".wh.") {
                view.insert(path, node);
            }
        }
    }
    view
}

fn file_content(view: &BTreeMap<String, Node>, path: &str) -> Vec<u8> {
    match view.get(path) {
        Some(Node::File(data, ..)) => data.clone(),
        other => panic!("{path}: expected a file, found {other:?}"),
    }
}

#[test]
fn builders_are_deterministic() {
    assert_eq!(images::busybox_image(), images::busybox_image());
    assert_eq!(images::multiarch_index(), images::multiarch_index());
    assert_eq!(
        images::user_entrypoint_image(),
        images::user_entrypoint_image()
    );
    let a = images::five_layer_image(20, 300);
    let b = images::five_layer_image(20, 300);
    assert_eq!(a, b);
    assert_ne!(a.digest(), images::five_layer_image(21, 300).digest());
    let pushable: Pushable = a.into();
    let archive = images::oci_archive(&[("five:1", &pushable)]);
    assert_eq!(archive, images::oci_archive(&[("five:1", &b.into())]));
    // The busybox layer is shared, as in real images.
    assert_eq!(
        images::busybox_image().layers[0],
        images::user_entrypoint_image().layers[0]
    );
}

#[test]
fn images_are_valid_oci() {
    let check = |image: &OciImage| {
        let manifest: ImageManifest = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest.config().digest().to_string(), image.config.digest);
        assert_eq!(manifest.config().size(), image.config.size());
        assert_eq!(manifest.layers().len(), image.layers.len());
        for (descriptor, layer) in manifest.layers().iter().zip(&image.layers) {
            assert_eq!(descriptor.digest().to_string(), layer.blob.digest);
            assert_eq!(descriptor.size(), layer.blob.size());
            assert_eq!(images::sha256_digest(&layer.blob.bytes), layer.blob.digest);
        }
        let config: ImageConfiguration = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(config.architecture().to_string(), image.platform.1);
        assert_eq!(config.os().to_string(), image.platform.0);
        let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        assert_eq!(config.rootfs().diff_ids(), &diff_ids);
        config
    };

    let busybox = images::busybox_image();
    let config = check(&busybox);
    assert_eq!(
        config.config().as_ref().unwrap().cmd().as_deref(),
        Some(&["/bin/sh".to_owned()][..])
    );
    assert_eq!(busybox.platform.1, images::host_arch());
    let view = merged_view(&busybox);
    assert!(matches!(
        view.get("bin/busybox"),
        Some(Node::File(_, 0o755, 0, 0))
    ));
    assert_eq!(view["bin/sh"], Node::Symlink("/bin/busybox".into()));
    assert_eq!(view["tmp"], Node::Dir(0o1777));
    assert_eq!(
        file_content(&view, "ARCH"),
        format!("{}\n", images::host_arch()).into_bytes()
    );
    assert!(String::from_utf8(file_content(&view, "etc/group"))
        .unwrap()
        .contains("audio:x:29:app"));

    let user = check(&images::user_entrypoint_image());
    let runtime = user.config().as_ref().unwrap();
    assert_eq!(runtime.user().as_deref(), Some("app"));
    assert_eq!(runtime.working_dir().as_deref(), Some("/home/app"));
    assert_eq!(
        runtime.entrypoint().as_deref(),
        Some(&["/bin/echo".to_owned(), "entry".to_owned()][..])
    );

    let index = images::multiarch_index();
    let Pushable::Index { manifests, index } = &index else {
        panic!("not an index")
    };
    let parsed: ImageIndex = serde_json::from_slice(&index.bytes).unwrap();
    assert_eq!(parsed.manifests().len(), 3);
    assert_eq!(manifests[0], images::busybox_image());
    for (descriptor, image) in parsed.manifests().iter().zip(manifests) {
        check(image);
        assert_eq!(descriptor.digest().to_string(), image.manifest.digest);
        let platform = descriptor.platform().as_ref().unwrap();
        assert_eq!(platform.architecture().to_string(), image.platform.1);
        assert_eq!(platform.variant().clone(), image.platform.2);
        let view = merged_view(image);
        assert_eq!(
            file_content(&view, "ARCH"),
            format!("{}\n", image.platform.1).into_bytes()
        );
    }
    let arches: Vec<&str> = manifests.iter().map(|i| i.platform.1.as_str()).collect();
    assert_eq!(
        arches.iter().filter(|a| **a == images::host_arch()).count(),
        1
    );
    assert!(arches.contains(&"arm"));
}

/// The merged view documented on `five_layer_image`.
#[test]
fn five_layer_merged_view_is_as_documented() {
    let (files, size) = (30, 200);
    let image = images::five_layer_image(files, size);
    assert_eq!(image.layers.len(), 5);
    let view = merged_view(&image);
    assert_eq!(file_content(&view, "data/shared/a.txt"), b"a4\n");
    assert_eq!(file_content(&view, "data/shared/b.txt"), b"b4\n");
    assert_eq!(file_content(&view, "data/shared/c.txt"), b"c2\n");
    assert_eq!(
        view["data/shared/owned"],
        Node::File(b"owned\n".to_vec(), 0o640, 1000, 29)
    );
    let opq: Vec<&str> = view
        .keys()
        .filter(|p| p.starts_with("data/opq/"))
        .map(String::as_str)
        .collect();
    assert_eq!(opq, ["data/opq/kept-name", "data/opq/new1"]);
    assert_eq!(file_content(&view, "data/opq/kept-name"), b"new\n");
    assert!(!view.keys().any(|p| p.starts_with("data/doomed")));
    assert!(!view.contains_key("data/l1/f00000"));
    assert!(!view.keys().any(|p| p.contains(".wh.")));
    for layer in 1..=4 {
        let count = view
            .keys()
            .filter(|p| p.starts_with(&format!("data/l{layer}/f")))
            .count();
        assert_eq!(count, if layer == 1 { files - 1 } else { files });
        let i = files - 1;
        assert_eq!(
            file_content(&view, &images::bulk_path(layer, i)),
            images::bulk_content(layer, i, size)
        );
    }
    assert_eq!(
        view["data/l3/hardlink"],
        Node::Hardlink("data/l3/f00000".into())
    );
    assert_eq!(view["data/l3/symlink"], Node::Symlink("f00000".into()));
    assert_eq!(view["data/latest"], Node::Symlink("l3".into()));
    assert!(view.contains_key("bin/busybox"));
    // Bulk content does not compress away.
    let gz: u64 = image.layers[1..].iter().map(|l| l.blob.size()).sum();
    assert!(gz as usize > 4 * files * size, "{gz}");
}

#[test]
fn unchecked_entries_keep_raw_names() {
    let mut b = images::LayerBuilder::new();
    b.add_unchecked_file("../escape", b"x", 0o644)
        .add_unchecked_symlink("/abs-link", "../../etc")
        .add_unchecked_hardlink("hl", "/etc/shadow")
        .add_char_device("dev/null", 1, 3)
        .add_whiteout("/", "gone");
    let layer = b.build_uncompressed();
    assert_eq!(layer.blob.digest, layer.diff_id);
    let mut archive = tar::Archive::new(&layer.blob.bytes[..]);
    let names: Vec<Vec<u8>> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            &b"../escape"[..],
            b"/abs-link",
            b"hl",
            b"dev/null",
            b".wh.gone"
        ]
    );
}

/// Every blob an OCI layout's index.json reaches exists with the right sha256.
fn check_layout(dir: &Path, expected: &[(&str, &Pushable)]) {
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: ImageIndex =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index.manifests().len(), expected.len());
    let read_blob = |digest: &str, size: u64| -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(dir.join("blobs/sha256").join(hex))
            .unwrap_or_else(|e| panic!("blob {digest}: {e}"));
        assert_eq!(images::sha256_digest(&bytes), digest);
        assert_eq!(bytes.len() as u64, size);
        bytes
    };
    let check_manifest = |bytes: &[u8]| {
        let manifest: ImageManifest = serde_json::from_slice(bytes).unwrap();
        read_blob(
            manifest.config().digest().as_ref(),
            manifest.config().size(),
        );
        for layer in manifest.layers() {
            read_blob(layer.digest().as_ref(), layer.size());
        }
    };
    for (descriptor, (name, pushable)) in index.manifests().iter().zip(expected) {
        let annotations = descriptor.annotations().as_ref().unwrap();
        assert_eq!(annotations[images::REF_NAME], *name);
        assert_eq!(descriptor.digest().to_string(), pushable.digest());
        let bytes = read_blob(descriptor.digest().as_ref(), descriptor.size());
        if descriptor.media_type().to_string() == images::MEDIA_TYPE_INDEX {
            let inner: ImageIndex = serde_json::from_slice(&bytes).unwrap();
            for m in inner.manifests() {
                check_manifest(&read_blob(m.digest().as_ref(), m.size()));
            }
        } else {
            check_manifest(&bytes);
        }
    }
}

#[test]
fn oci_layout_and_archive_are_sound() {
    let busybox: Pushable = images::busybox_image().into();
    let multi = images::multiarch_index();
    let user: Pushable = images::user_entrypoint_image().into();
    let set = [
        ("busybox:1", &busybox),
        ("multi:1", &multi),
        ("user:1", &user),
    ];

    let dir = tempfile::tempdir().unwrap();
    images::write_oci_layout(dir.path(), &set);
    check_layout(dir.path(), &set);

    let archive = images::oci_archive(&set);
    let unpacked = tempfile::tempdir().unwrap();
    tar::Archive::new(&archive[..])
        .unpack(unpacked.path())
        .unwrap();
    check_layout(unpacked.path(), &set);
    // The shared busybox layer is stored once.
    let blobs = std::fs::read_dir(unpacked.path().join("blobs/sha256"))
        .unwrap()
        .count();
    let mut unique: Vec<&str> = set
        .iter()
        .flat_map(|(_, p)| p.blobs())
        .map(|b: &Blob| b.digest.as_str())
        .collect();
    unique.sort();
    unique.dedup();
    assert_eq!(blobs, unique.len());
}

#[tokio::test]
async fn registry_serves_exactly_what_was_pushed() {
    let registry = Registry::start();
    assert!(registry.addr.starts_with("127.0.0.1:"));
    assert_eq!(
        registry.reference("busybox:1"),
        format!("{}/busybox:1", registry.addr)
    );

    let busybox: Pushable = images::busybox_image().into();
    let multi = images::multiarch_index();
    let five: Pushable = images::five_layer_image(500, 512).into();
    let user: Pushable = images::user_entrypoint_image().into();
    let set = [
        ("busybox:1", &busybox),
        ("multi:1", &multi),
        ("five:1", &five),
        ("user:1", &user),
    ];
    for (tag, pushable) in set {
        registry.push(tag, pushable).await;
    }
    // Pushing again is a no-op for the blobs.
    registry.push("busybox:1", &busybox).await;

    for (tag, pushable) in set {
        assert_eq!(
            registry.manifest_digest(tag).as_deref(),
            Some(pushable.digest()),
            "{tag}"
        );
        assert_eq!(
            registry.manifest_bytes(tag).unwrap(),
            pushable.top().bytes,
            "{tag}"
        );
    }
    assert_eq!(registry.manifest_digest("nothing:here"), None);

    // oci-client resolves the index to this machine's image and streams a
    // layer with the built digest.
    let client = registry.client();
    let auth = RegistryAuth::Anonymous;
    let reference = registry.oci_reference("multi:1");
    let (manifest, digest) = client.pull_image_manifest(&reference, &auth).await.unwrap();
    let host = multi.image_for(images::host_arch()).unwrap();
    assert_eq!(digest, host.digest());
    let mut layer = Vec::new();
    client
        .pull_blob(&reference, &manifest.layers[0], &mut layer)
        .await
        .unwrap();
    assert_eq!(layer, host.layers[0].blob.bytes);
    assert_eq!(
        client
            .fetch_manifest_digest(&registry.oci_reference("five:1"), &auth)
            .await
            .unwrap(),
        five.digest()
    );

    // Tampering: same size, wrong content → the pull fails verification.
    let five_image = five.image_for(images::host_arch()).unwrap();
    let victim = &five_image.layers[2].blob;
    assert!(registry.blob_data_path(&victim.digest).is_file());
    registry.corrupt_blob(&victim.digest);
    let reference = registry.oci_reference("five:1");
    let (manifest, _) = client.pull_image_manifest(&reference, &auth).await.unwrap();
    let mut sink = Vec::new();
    let err = client
        .pull_blob(&reference, &manifest.layers[2], &mut sink)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("Digest"), "{err:?}");

    // Deleting a manifest untags it.
    registry.delete_manifest("user", user.digest());
    assert_eq!(registry.manifest_digest("user:1"), None);
    registry.remove_repository("busybox");
    assert_eq!(registry.manifest_digest("busybox:1"), None);

    let addr = registry.addr.clone();
    drop(registry);
    assert!(std::net::TcpStream::connect(&addr).is_err());
}
