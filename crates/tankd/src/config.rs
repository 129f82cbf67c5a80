//! Operational configuration of `tankd` (`/etc/tank/tankd.toml`).
//!
//! Owns the file format, its defaults and the environment overrides. It only
//! describes how the daemon runs; it never holds desired state (that is the
//! store's) and it performs no I/O beyond reading the file it is given.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::image::pull::RegistriesConfig;

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tank/tankd.toml";
/// Default data directory (systemd's `StateDirectory=tank`).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/tank";
/// Default runtime directory (systemd's `RuntimeDirectory=tank`).
pub const DEFAULT_RUN_DIR: &str = "/run/tank";
/// Default directory of boot seed pods.
pub const DEFAULT_PODS_DIR: &str = "/etc/tank/pods.d";
/// Environment variable overriding `data_dir`.
pub const DATA_DIR_ENV: &str = "TANK_DATA_DIR";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {field} must be an absolute path, got {value:?}")]
    NotAbsolute {
        path: PathBuf,
        field: &'static str,
        value: PathBuf,
    },
}

/// The daemon's configuration, with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the store, images, volumes and scratch live.
    pub data_dir: PathBuf,
    /// Pods written into a fresh store at first start (`*.json`, `*.yaml`).
    pub pods_dir: PathBuf,
    /// Runtime state that must not survive a reboot (pod network
    /// namespaces); systemd's `RuntimeDirectory=tank`.
    pub run_dir: PathBuf,
    /// How images are fetched.
    pub registries: RegistriesConfig,
    /// Where containers' cgroups live.
    pub cgroups: crate::runtime::cgroup::CgroupConfig,
    /// Container output logs.
    pub logs: LogsConfig,
    /// Restart backoff and resync interval.
    pub reconcile: crate::reconcile::ReconcileConfig,
    /// Where host facts (the uplink of `parent: "auto"`, default DNS) come from.
    pub host: crate::net::host::HostConfig,
}

/// `[logs]`: per-container output logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Cap of one log file in bytes; one rotated file is kept besides it.
    pub max_bytes: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            max_bytes: crate::runtime::logs::DEFAULT_MAX_BYTES,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            pods_dir: PathBuf::from(DEFAULT_PODS_DIR),
            run_dir: PathBuf::from(DEFAULT_RUN_DIR),
            registries: RegistriesConfig::default(),
            cgroups: Default::default(),
            logs: LogsConfig::default(),
            reconcile: Default::default(),
            host: Default::default(),
        }
    }
}

impl Config {
    /// Loads the configuration.
    ///
    /// `explicit` is the `--config` argument: when given, the file must exist.
    /// Otherwise [`DEFAULT_CONFIG_PATH`] is read if present, and the built-in
    /// defaults apply if not. `TANK_DATA_DIR` then overrides `data_dir`.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match explicit {
            Some(path) => Self::from_file(path)?,
            None => {
                let path = Path::new(DEFAULT_CONFIG_PATH);
                if path.exists() {
                    Self::from_file(path)?
                } else {
                    Config::default()
                }
            }
        };
        if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
            config.data_dir = PathBuf::from(dir);
        }
        Ok(config)
    }

    /// Parses one configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses configuration text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        for (field, value) in [
            ("data_dir", &config.data_dir),
            ("pods_dir", &config.pods_dir),
        ] {
            if !value.is_absolute() {
                return Err(ConfigError::NotAbsolute {
                    path: path.to_owned(),
                    field,
                    value: value.clone(),
                });
            }
        }
        Ok(config)
    }

    /// `<data_dir>/store`: the RocksDB desired-state database.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::parse(Path::new("t.toml"), "").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.store_dir(), Path::new("/var/lib/tank/store"));
    }

    #[test]
    fn fields_are_read() {
        let config = Config::parse(
            Path::new("t.toml"),
            "data_dir = \"/srv/tank\"\npods_dir = \"/srv/pods\"\n",
        )
        .unwrap();
        assert_eq!(config.data_dir, Path::new("/srv/tank"));
        assert_eq!(config.pods_dir, Path::new("/srv/pods"));
    }

    #[test]
    fn registries() {
        let config = Config::parse(
            Path::new("t.toml"),
            "[registries]\ninsecure = [\"127.0.0.1:5000\"]\nauth_file = \"/etc/tank/auth.json\"\n",
        )
        .unwrap();
        assert_eq!(config.registries.insecure, ["127.0.0.1:5000"]);
        assert_eq!(
            config.registries.auth_file.as_deref(),
            Some(Path::new("/etc/tank/auth.json"))
        );
    }

    #[test]
    fn the_packaged_default_file_is_the_defaults() {
        let text = include_str!("../../../packaging/tankd.toml");
        assert_eq!(
            Config::parse(Path::new("tankd.toml"), text).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Config::parse(Path::new("t.toml"), "data_dri = \"/x\"\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `data_dri`"),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_are_rejected() {
        let err = Config::parse(Path::new("t.toml"), "data_dir = \"tank\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.toml: data_dir must be an absolute path, got \"tank\""
        );
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/tankd.toml"))).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot read /nonexistent/tankd.toml"));
    }
}
