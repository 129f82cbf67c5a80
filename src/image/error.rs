//! Errors of the image subsystem. Every variant carries owned text so an
//! error can be shared between the callers of one deduplicated pull.

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
