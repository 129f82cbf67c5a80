//! Errors of the image subsystem. Every variant carries owned data (text,
//! digests, sizes) so an error can be shared between the callers of one
//! deduplicated pull.

use super::digest::Digest;

/// An image operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    InvalidDigest(String),
    #[error("{reference}: no image for {wanted} (available: {available})")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("{reference}: {message}")]
    Registry { reference: String, message: String },
    #[error("blob {expected}: content has digest {actual}, rejected")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    /// The registry sends (or announces) more than the blob's descriptor
    /// declares: the download stopped there.
    #[error(
        "blob {digest} is larger than the {limit} bytes its descriptor declares: {}",
        too_large_detail(*.announced, *.received)
    )]
    BlobTooLarge {
        digest: Digest,
        limit: u64,
        /// The length the registry announced (Content-Length), if that is
        /// what gave it away before any byte was read.
        announced: Option<u64>,
        /// Bytes of the blob received when the download stopped.
        received: u64,
    },
    /// A manifest fetched without a descriptor is over the cap.
    #[error("manifest of {reference}: {size} bytes, more than the {limit} bytes Tank accepts")]
    ManifestTooLarge {
        reference: String,
        size: u64,
        limit: u64,
    },
    /// A layer's uncompressed content is not what the image config says it
    /// is: the layer is not stored.
    #[error(
        "layer {layer}: its uncompressed content has digest {actual}, \
         but the image config declares diff_id {expected}; rejected"
    )]
    DiffIdMismatch {
        /// The layer blob (compressed, as in the manifest).
        layer: Digest,
        /// `rootfs.diff_ids[i]` of the image config.
        expected: Digest,
        /// The digest of the uncompressed stream as unpacked.
        actual: Digest,
    },
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("{what}: {message}")]
    Malformed { what: String, message: String },
    #[error("layer {digest}: {message}")]
    Unpack { digest: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("image {reference:?} is used by pod(s) {pods}")]
    InUse { reference: String, pods: String },
    #[error("import: {0}")]
    Import(String),
}

fn too_large_detail(announced: Option<u64>, received: u64) -> String {
    match announced {
        Some(length) => format!("the registry announced {length} bytes, {received} were read"),
        None => format!("stopped after {received} bytes"),
    }
}

impl ImageError {
    pub fn io(path: &std::path::Path, err: std::io::Error) -> ImageError {
        ImageError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }

    pub fn malformed(what: impl Into<String>, message: impl ToString) -> ImageError {
        ImageError::Malformed {
            what: what.into(),
            message: message.to_string(),
        }
    }
}
