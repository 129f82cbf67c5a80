//! Platforms (`os/architecture/variant`) and the choice of one manifest
//! from an image index for the host.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platform of this machine, in OCI (GOARCH) names.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry for `candidate` runs here. The variant must
    /// match when both name one; `arm64` without a variant is `v8`.
    pub fn accepts(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        let normalize = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        match (normalize(self), normalize(candidate)) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        }
    }
}

/// Picks the entry of `entries` (index order) for `host`: an exact variant
/// match first, then any accepted one. Returns its position.
pub fn select(host: &Platform, entries: &[Platform]) -> Option<usize> {
    entries
        .iter()
        .position(|p| p == host)
        .or_else(|| entries.iter().position(|p| host.accepts(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn host_is_linux_and_named_like_go() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn selection() {
        let entries = [
            p("linux", "arm", Some("v6")),
            p("linux", "arm", Some("v7")),
            p("linux", "arm64", None),
            p("windows", "amd64", None),
            p("linux", "amd64", None),
        ];
        assert_eq!(select(&p("linux", "amd64", None), &entries), Some(4));
        assert_eq!(select(&p("linux", "arm", Some("v7")), &entries), Some(1));
        assert_eq!(select(&p("linux", "arm64", Some("v8")), &entries), Some(2));
        assert_eq!(select(&p("linux", "riscv64", None), &entries), None);
        assert_eq!(select(&p("linux", "arm", Some("v5")), &entries), None);
    }
}
