//! A real `docker-registry` (Debian package `docker-registry`) on
//! `127.0.0.1:<free port>`: plain HTTP, no auth, delete enabled, filesystem
//! storage in a tempdir, no blob-descriptor cache (so tampering with a blob
//! on disk is seen by the next pull). Killed on drop.
//!
//! ```ignore
//! let registry = Registry::start();
//! let image = images::busybox_image();
//! registry.push("busybox:1", &image.clone().into()).await;
//! // pull registry.reference("busybox:1") with registry.client_config()
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::images::{Blob, OciImage, Pushable};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// The Accept header for manifests and indexes (OCI and Docker).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

pub struct Registry {
    /// "127.0.0.1:PORT"
    pub addr: String,
    /// The registry's storage root (`rootdirectory`).
    pub storage: PathBuf,
    /// The registry's stderr/stdout.
    pub log: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// A response of [`Registry::http`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request over a plain TcpStream (the connection closes after
/// the response, so the body is read to EOF).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

fn config_yaml(addr: &str, storage: &Path) -> String {
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
health:
  storagedriver:
    enabled: false
",
        storage = storage.display()
    )
}

enum Attempt {
    Ready(Child),
    AddrInUse,
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers 200. Panics
    /// (with the registry's log) if it cannot.
    pub fn start() -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("tank-registry-")
            .tempdir()
            .expect("tempdir");
        let storage = dir.path().join("storage");
        let log = dir.path().join("registry.log");
        for _ in 0..10 {
            let addr = format!("127.0.0.1:{}", free_port());
            let config = dir.path().join("config.yml");
            std::fs::write(&config, config_yaml(&addr, &storage)).unwrap();
            match Registry::attempt(&addr, &config, &log) {
                Attempt::Ready(child) => {
                    return Registry {
                        addr,
                        storage,
                        log,
                        child: Some(child),
                        _dir: dir,
                    }
                }
                Attempt::AddrInUse => continue,
            }
        }
        panic!("docker-registry: no free port after 10 attempts");
    }

    fn attempt(addr: &str, config: &Path, log: &Path) -> Attempt {
        let log_file = std::fs::File::create(log).unwrap();
        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {REGISTRY_BIN} (Debian package docker-registry): {e}")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if text.contains("address already in use") {
                    return Attempt::AddrInUse;
                }
                panic!("docker-registry exited ({status}) before answering:\n{text}");
            }
            if let Ok(response) = http_request(addr, "GET", "/v2/", &[]) {
                if response.status == 200 {
                    // Not another server that won the port race.
                    if child.try_wait().unwrap().is_none() {
                        return Attempt::Ready(child);
                    }
                    continue;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let text = std::fs::read_to_string(log).unwrap_or_default();
                panic!("docker-registry did not answer GET /v2/ within 20 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// "127.0.0.1:PORT/REPO:TAG" for `repo_tag` = "REPO:TAG" (or "REPO",
    /// "REPO@sha256:…").
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{}", self.addr, repo_tag)
    }

    /// [`Self::reference`] parsed.
    pub fn oci_reference(&self, repo_tag: &str) -> Reference {
        self.reference(repo_tag)
            .parse()
            .unwrap_or_else(|e| panic!("bad reference {repo_tag}: {e}"))
    }

    /// An oci-client configuration for this registry (plain HTTP for it only).
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![self.addr.clone()]),
            use_monolithic_push: true,
            ..Default::default()
        }
    }

    /// An anonymous oci-client for this registry.
    pub fn client(&self) -> Client {
        tankd::image::pull::install_tls_provider();
        Client::new(self.client_config())
    }

    /// Pushes `image` as `repo_tag` ("busybox:1"), keeping every digest as
    /// built: blobs with `push_blob` (skipped when already there), manifests
    /// raw; for an index each platform manifest by digest, then the index
    /// under the tag.
    pub async fn push(&self, repo_tag: &str, image: &Pushable) {
        let client = self.client();
        client
            .store_auth_if_needed(&self.addr, &RegistryAuth::Anonymous)
            .await;
        let reference = self.oci_reference(repo_tag);
        match image {
            Pushable::Image(image) => {
                push_image_blobs(&client, &reference, image).await;
                push_manifest(&client, &reference, &image.manifest).await;
            }
            Pushable::Index { manifests, index } => {
                for image in manifests {
                    push_image_blobs(&client, &reference, image).await;
                    let by_digest = Reference::with_digest(
                        reference.registry().to_owned(),
                        reference.repository().to_owned(),
                        image.manifest.digest.clone(),
                    );
                    push_manifest(&client, &by_digest, &image.manifest).await;
                }
                push_manifest(&client, &reference, index).await;
            }
        }
    }

    /// Plain HTTP request to this registry (`path` like "/v2/busybox/tags/list").
    pub fn http(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http_request(&self.addr, method, path, headers)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.addr))
    }

    /// `Docker-Content-Digest` of `GET /v2/<repo>/manifests/<tag>` (any
    /// manifest or index type accepted); `None` if not found.
    pub fn manifest_digest(&self, repo_tag: &str) -> Option<String> {
        let (repo, reference) = split_repo_tag(repo_tag);
        let response = self.http(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", MANIFEST_ACCEPT)],
        );
        match response.status {
            200 => Some(
                response
                    .header("docker-content-digest")
                    .expect("Docker-Content-Digest header")
                    .to_owned(),
            ),
            404 => None,
            s => panic!(
                "GET manifest {repo_tag}: HTTP {s}: {}",
                String::from_utf8_lossy(&response.body)
            ),
        }
    }

    /// The raw manifest/index bytes under `repo_tag`, as served.
    pub fn manifest_bytes(&self, repo_tag: &str) -> Option<Vec<u8>> {
        let (repo, reference) = split_repo_tag(repo_tag);
        let response = self.http(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", MANIFEST_ACCEPT)],
        );
        (response.status == 200).then_some(response.body)
    }

    /// Deletes the manifest `digest` of `repo` (and so every tag pointing at
    /// it): later pulls of those tags get 404.
    pub fn delete_manifest(&self, repo: &str, digest: &str) {
        let response = self.http("DELETE", &format!("/v2/{repo}/manifests/{digest}"), &[]);
        assert_eq!(
            response.status,
            202,
            "DELETE manifest {repo}@{digest}: {}",
            String::from_utf8_lossy(&response.body)
        );
    }

    /// Removes `repo` from storage entirely (tags, manifests, blob links).
    pub fn remove_repository(&self, repo: &str) {
        let dir = self
            .storage
            .join("docker/registry/v2/repositories")
            .join(repo);
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    }

    /// Where the registry keeps blob `digest` ("sha256:…"): for tampering.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Flips one byte in the middle of blob `digest` on disk (same size, so
    /// the registry still serves it, with the wrong content).
    pub fn corrupt_blob(&self, digest: &str) {
        let path = self.blob_data_path(digest);
        let mut bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(!bytes.is_empty());
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }

    /// Stops the registry now (a later pull gets "connection refused").
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// ("repo", "tag" or "sha256:…") of "repo:tag" / "repo@digest" / "repo".
fn split_repo_tag(repo_tag: &str) -> (&str, &str) {
    if let Some((repo, digest)) = repo_tag.split_once('@') {
        return (repo, digest);
    }
    match repo_tag.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (repo_tag, "latest"),
    }
}

async fn push_blob(client: &Client, reference: &Reference, blob: &Blob) {
    let exists = client
        .blob_exists(reference, &blob.digest)
        .await
        .unwrap_or_else(|e| panic!("HEAD blob {}: {e}", blob.digest));
    if !exists {
        client
            .push_blob(reference, blob.bytes.clone(), &blob.digest)
            .await
            .unwrap_or_else(|e| panic!("push blob {}: {e}", blob.digest));
    }
}

async fn push_image_blobs(client: &Client, reference: &Reference, image: &OciImage) {
    for layer in &image.layers {
        push_blob(client, reference, &layer.blob).await;
    }
    push_blob(client, reference, &image.config).await;
}

async fn push_manifest(client: &Client, reference: &Reference, manifest: &Blob) {
    client
        .push_manifest_raw(
            reference,
            manifest.bytes.clone(),
            manifest.media_type.parse().unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("push manifest {reference}: {e}"));
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if !log.trim().is_empty() {
                eprintln!(
                    "---- docker-registry log ({}) ----\n{log}",
                    self.log.display()
                );
            }
        }
    }
}
