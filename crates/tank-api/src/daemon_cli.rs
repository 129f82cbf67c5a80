//! tankd's command line (clap), in the library so that tankctl can render
//! tankd's man page (`tankctl generate-manpages`) from the same definition
//! the daemon parses.
//!
//! Only the daemon's own options live here. The hidden stages tankd
//! re-executes itself for (a container's init and exec stages, the process
//! keeping the pods' systemd scope alive) are dispatched by tankd's `main`
//! on their first argument before this parser runs; they are not part of
//! the CLI.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

/// Tank's daemon: owns org.tank.Manager on the system bus and converges the
/// machine to the declared pods.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// Configuration file [default: /etc/tank/tankd.toml if it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// tankd's clap command under its installed name, for man pages.
pub fn command() -> clap::Command {
    Args::command().name("tankd").bin_name("tankd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config() {
        let args = Args::try_parse_from(["tankd", "--config", "/etc/x.toml"]).expect("parses");
        assert_eq!(
            args.config.as_deref(),
            Some(std::path::Path::new("/etc/x.toml"))
        );
        assert!(Args::try_parse_from(["tankd"])
            .expect("parses")
            .config
            .is_none());
        assert!(Args::try_parse_from(["tankd", "--bogus"]).is_err());
    }

    #[test]
    fn command_is_named_tankd() {
        command().debug_assert();
        assert_eq!(command().get_name(), "tankd");
    }
}
