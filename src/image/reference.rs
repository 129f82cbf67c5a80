//! Image references: `nginx:1.27` → `docker.io/library/nginx:1.27`, tags,
//! digests. Parsing and normalization come from oci-spec's distribution
//! reference (the grammar of the distribution project).

use oci_spec::distribution::Reference;

use super::error::ImageError;

/// Parses and normalizes `text`.
pub fn parse(text: &str) -> Result<Reference, ImageError> {
    text.parse::<Reference>()
        .map_err(|e| ImageError::InvalidReference {
            reference: text.to_owned(),
            reason: e.to_string(),
        })
}

/// The canonical text of `text` (`busybox` → `docker.io/library/busybox:latest`).
pub fn normalize(text: &str) -> Result<String, ImageError> {
    parse(text).map(|r| r.whole())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(
            normalize("nginx:1.27").unwrap(),
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("ghcr.io/acme/api:1.4.2").unwrap(),
            "ghcr.io/acme/api:1.4.2"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/busybox:1").unwrap(),
            "127.0.0.1:5000/busybox:1"
        );
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            normalize(&format!("alpine@{digest}")).unwrap(),
            format!("docker.io/library/alpine@{digest}")
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "repo/UPPER", "a b", "busybox:", "x@sha256:zz"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
