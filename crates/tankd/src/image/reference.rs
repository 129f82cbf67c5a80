//! Image references as tankd uses them: parsed by oci-spec's
//! distribution reference (registry, repository, tag, digest: what a pull
//! needs) after the strict grammar of [`tank_api::reference::check`],
//! which the two agree on (the check is the stricter).
//!
//! Owns parsing for pulls and the canonical names of the image index
//! (`nginx:1.27` → `docker.io/library/nginx:1.27`), which equal tank-api's
//! [`tank_api::reference::normalize`] (tested below: tankctl matches pull
//! progress by it).

use oci_spec::distribution::Reference;

pub use tank_api::reference::{check, ReferenceError, MAX_NAME_LEN, MAX_TAG_LEN};

use super::error::ImageError;

/// Checks, parses and normalizes `text`.
pub fn parse(text: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: String| ImageError::InvalidReference {
        reference: text.to_owned(),
        reason,
    };
    check(text).map_err(|e| invalid(e.to_string()))?;
    text.parse::<Reference>()
        .map_err(|e| invalid(e.to_string()))
}

/// The canonical text of `text` (`busybox` → `docker.io/library/busybox:latest`).
pub fn normalize(text: &str) -> Result<String, ImageError> {
    parse(text).map(|r| r.whole())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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
        let digest = format!("sha256:{HEX64}");
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

    /// tankd names images by oci-spec's normalization (the index keys),
    /// tankctl by tank-api's: they must agree, and every reference the
    /// grammar accepts must parse.
    #[test]
    fn the_api_normalizes_as_oci_spec() {
        let digest = format!("sha256:{HEX64}");
        for text in [
            "a".to_owned(),
            "a0/b-c/d.e/f_g/h__i/j---k".into(),
            "busybox:Latest_1.x-y".into(),
            "localhost/a".into(),
            "localhost:5000/a".into(),
            "Registry.Example:5000/team/app:v1".into(),
            "my-registry.example.com/a/b".into(),
            "index.docker.io/library/busybox".into(),
            "index.docker.io/busybox:1".into(),
            "docker.io/busybox".into(),
            "acme/app:2".into(),
            "127.0.0.1:5000/busybox:1".into(),
            format!("alpine@{digest}"),
            format!("alpine:3@{digest}"),
            format!("ghcr.io/acme/api@{digest}"),
            "a".repeat(237),
        ] {
            assert_eq!(
                tank_api::reference::normalize(&text).as_deref(),
                Ok(normalize(&text).expect("parses").as_str()),
                "{text}"
            );
        }
    }
}
