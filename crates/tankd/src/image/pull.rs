//! Registry pulls with oci-client: manifests (choosing the host's platform
//! from an index), then blobs streamed into the content store with
//! `pull_blob_stream` — never the in-memory `pull` — one download per
//! digest at a time, resuming a download that broke off with a range
//! request. Owns the registry client, its protocol choice (plain HTTP only
//! for the registries configured as insecure) and credentials. Nothing the
//! registry sends is trusted: a blob may not exceed its descriptor's size
//! (the download stops at the first byte too many, or before the first
//! byte when the announced length says so), manifests are capped at
//! [`MAX_MANIFEST_BYTES`], and the content store verifies every digest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::content::ContentStore;
use super::digest::Digest;
use super::error::ImageError;
use super::manifest::{self, Descriptor, Manifest, Parsed};
use super::platform::Platform;

/// `[registries]` of `tankd.toml`: how tankd talks to image registries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistriesConfig {
    /// `host:port` of registries reached over plain HTTP (exact match);
    /// every other registry is HTTPS.
    pub insecure: Vec<String>,
    /// A docker-style auth file (`{"auths": {"host": {"auth": base64(user:pass)}}}`).
    pub auth_file: Option<PathBuf>,
}

/// The most a manifest or index may have (containerd's limit too). A
/// manifest fetched by tag has no descriptor to bound it; oci-client
/// buffers the response, so the cap rejects it after it arrived but before
/// it is parsed or stored.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// The host's manifest of an image, stored in the content store.
pub struct Resolved {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
}

pub struct Puller {
    client: Client,
    credentials: Credentials,
}

/// Makes *ring* the process's TLS crypto provider (rustls is built without
/// a default one: see the workspace Cargo.toml). Idempotent: a provider
/// already installed (by an earlier Puller) is kept. Public for every other
/// oci-client in the process (the tests' registry client).
pub fn install_tls_provider() {
    // Err means one is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Puller {
    pub fn new(config: &RegistriesConfig) -> Result<Puller, ImageError> {
        install_tls_provider();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure.clone()),
            // Tank chooses the platform itself (with variants) from the index.
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            ..Default::default()
        });
        Ok(Puller {
            client,
            credentials: Credentials::load(config.auth_file.as_deref())?,
        })
    }

    fn registry_error(reference: &Reference, err: impl ToString) -> ImageError {
        ImageError::Registry {
            reference: reference.whole(),
            message: err.to_string(),
        }
    }

    /// Fetches the manifest of `reference` for `host` (through an index if
    /// there is one) and stores every manifest document it read.
    pub async fn resolve(
        &self,
        reference: &Reference,
        host: &Platform,
        content: &ContentStore,
    ) -> Result<Resolved, ImageError> {
        let auth = self.credentials.for_reference(reference);
        let (bytes, _) = self
            .client
            .pull_manifest_raw(reference, &auth, manifest::ACCEPTED)
            .await
            .map_err(|e| Self::registry_error(reference, e))?;
        check_manifest_size(reference, &bytes)?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = reference.digest() {
            if expected != digest.as_str() {
                return Err(ImageError::DigestMismatch {
                    expected: expected.to_owned(),
                    actual: digest.to_string(),
                });
            }
        }
        content.write(&digest, &bytes)?;
        match manifest::parse(&format!("manifest of {}", reference.whole()), &bytes)? {
            Parsed::Manifest(manifest) => Ok(Resolved {
                manifest_digest: digest,
                manifest,
            }),
            Parsed::Index(entries) => {
                let entry = manifest::choose(&reference.whole(), host, &entries)?;
                let entry_digest = entry.digest()?;
                let by_digest = Reference::with_digest(
                    reference.registry().to_owned(),
                    reference.repository().to_owned(),
                    entry_digest.to_string(),
                );
                let (bytes, _) = self
                    .client
                    .pull_manifest_raw(&by_digest, &auth, manifest::ACCEPTED)
                    .await
                    .map_err(|e| Self::registry_error(reference, e))?;
                check_manifest_size(reference, &bytes)?;
                if Digest::of(&bytes) != entry_digest {
                    return Err(ImageError::DigestMismatch {
                        expected: entry_digest.to_string(),
                        actual: Digest::of(&bytes).to_string(),
                    });
                }
                content.write(&entry_digest, &bytes)?;
                match manifest::parse(&format!("manifest {entry_digest}"), &bytes)? {
                    Parsed::Manifest(manifest) => Ok(Resolved {
                        manifest_digest: entry_digest,
                        manifest,
                    }),
                    Parsed::Index(_) => Err(ImageError::malformed(
                        reference.whole(),
                        "an index entry is itself an index",
                    )),
                }
            }
        }
    }

    /// Streams blob `desc` into the content store unless it is there,
    /// resuming a previous partial download. Downloads of one digest take
    /// turns: a second caller waits for the first and then finds the blob
    /// in place. `progress(done, total)` is called as bytes arrive.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        content: &ContentStore,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), ImageError> {
        let digest = desc.digest()?;
        if content.contains(&digest) {
            progress(desc.size, desc.size);
            return Ok(());
        }
        let lock = content.lock(&digest).await;
        if content.contains(&digest) {
            progress(desc.size, desc.size);
            return Ok(());
        }
        let mut ingest = content.resume(&lock, Some(desc.size))?;
        if ingest.offset() < desc.size || desc.size == 0 {
            // Authenticates the client for this registry (a no-op once done).
            self.client
                .store_auth_if_needed(
                    reference.resolve_registry(),
                    &self.credentials.for_reference(reference),
                )
                .await;
            let mut stream = if ingest.offset() > 0 {
                match self
                    .client
                    .pull_blob_stream_partial(reference, digest.as_str(), ingest.offset(), None)
                    .await
                    .map_err(|e| Self::registry_error(reference, e))?
                {
                    BlobResponse::Partial(stream) => stream,
                    BlobResponse::Full(stream) => {
                        ingest.restart()?;
                        stream
                    }
                }
            } else {
                self.client
                    .pull_blob_stream(reference, digest.as_str())
                    .await
                    .map_err(|e| Self::registry_error(reference, e))?
            };
            // A registry announcing more than the descriptor allows is
            // refused before its first byte.
            if let Some(length) = stream.content_length {
                let announced = ingest.offset().saturating_add(length);
                if announced > desc.size {
                    return Err(ImageError::BlobTooLarge {
                        digest,
                        limit: desc.size,
                        announced: Some(announced),
                        received: ingest.offset(),
                    });
                }
            }
            progress(ingest.offset(), desc.size);
            while let Some(chunk) = stream.next().await {
                match chunk {
                    // Fails at the first chunk past the declared size.
                    Ok(bytes) => {
                        ingest.write(&bytes)?;
                        progress(ingest.offset(), desc.size);
                    }
                    // All bytes are in but the stream complains (e.g. its
                    // own digest check): the commit below verifies them.
                    Err(_) if ingest.offset() == desc.size => break,
                    // Keep what arrived: the next attempt resumes.
                    Err(e) => {
                        ingest.suspend();
                        return Err(Self::registry_error(reference, e));
                    }
                }
            }
        }
        ingest.commit()
    }
}

fn check_manifest_size(reference: &Reference, bytes: &[u8]) -> Result<(), ImageError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ImageError::ManifestTooLarge {
            reference: reference.whole(),
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_BYTES as u64,
        });
    }
    Ok(())
}

/// Registry credentials from a docker-style auth file.
#[derive(Default)]
pub struct Credentials {
    by_registry: HashMap<String, (String, String)>,
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    /// Reads `path`; no path means anonymous access everywhere.
    pub fn load(path: Option<&Path>) -> Result<Credentials, ImageError> {
        let Some(path) = path else {
            return Ok(Credentials::default());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::default()),
            Err(e) => return Err(ImageError::io(path, e)),
        };
        Credentials::parse(&path.display().to_string(), &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Credentials, ImageError> {
        let file: AuthFile =
            serde_json::from_str(text).map_err(|e| ImageError::malformed(name, e))?;
        let mut by_registry = HashMap::new();
        for (registry, entry) in file.auths {
            let pair = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|e| ImageError::malformed(name, format!("{registry}: {e}")))?;
                    let decoded = String::from_utf8(decoded)
                        .map_err(|e| ImageError::malformed(name, format!("{registry}: {e}")))?;
                    let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                        ImageError::malformed(
                            name,
                            format!("{registry}: auth is not user:password"),
                        )
                    })?;
                    (user.to_owned(), pass.to_owned())
                }
                (None, Some(user), Some(pass)) => (user, pass),
                _ => continue,
            };
            by_registry.insert(normalize_registry_key(&registry), pair);
        }
        Ok(Credentials { by_registry })
    }

    fn for_reference(&self, reference: &Reference) -> RegistryAuth {
        let key = normalize_registry_key(reference.registry());
        match self.by_registry.get(&key) {
            Some((user, pass)) => RegistryAuth::Basic(user.clone(), pass.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// `https://index.docker.io/v1/`, `index.docker.io`, `docker.io` → `docker.io`.
fn normalize_registry_key(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_capped() {
        let reference: Reference = "127.0.0.1:5000/big:1".parse().unwrap();
        assert!(check_manifest_size(&reference, &vec![b' '; MAX_MANIFEST_BYTES]).is_ok());
        let err = check_manifest_size(&reference, &vec![b' '; MAX_MANIFEST_BYTES + 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest of 127.0.0.1:5000/big:1: 4194305 bytes, more than the 4194304 bytes \
             Tank accepts"
        );
    }

    #[test]
    fn auth_file_forms() {
        let creds = Credentials::parse(
            "auth.json",
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
                "ghcr.io": {"username": "bob", "password": "pw"},
                "empty.example": {}}}"#,
        )
        .unwrap();
        let hub: Reference = "busybox".parse().unwrap();
        assert!(matches!(creds.for_reference(&hub),
            RegistryAuth::Basic(u, p) if u == "user" && p == "pass"));
        let ghcr: Reference = "ghcr.io/acme/api:1".parse().unwrap();
        assert!(matches!(creds.for_reference(&ghcr), RegistryAuth::Basic(u, _) if u == "bob"));
        let other: Reference = "quay.io/x/y".parse().unwrap();
        assert!(matches!(
            creds.for_reference(&other),
            RegistryAuth::Anonymous
        ));
    }

    #[test]
    fn bad_auth_file_is_an_error() {
        let err = Credentials::parse("a.json", r#"{"auths": {"x": {"auth": "!!"}}}"#)
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("a.json: x:"), "{err}");
        assert!(Credentials::load(Some(Path::new("/nonexistent/auth.json"))).is_ok());
    }
}
