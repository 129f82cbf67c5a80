//! Man pages and shell completions, generated from the clap definitions of
//! tankctl ([`crate::cli::Cli`]) and tankd ([`tank_api::daemon_cli`]), so they
//! never drift from the parsers.
//!
//! `tankctl completions SHELL` prints a completion script;
//! `tankctl generate-manpages DIR` (hidden) writes `tankctl.1`, one page per
//! visible subcommand (`tankctl-apply.1`, `tankctl-image-pull.1`, …, as
//! clap_mangen names them) and `tankd.8`. `packaging/build-deb.sh` ships
//! both in the Debian package.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::{Cli, CompletionShell};

/// The title of the manual the pages belong to (the centre of their header).
const MANUAL: &str = "Tank Manual";

#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the completion script: {0}")]
    Completions(std::io::Error),
}

/// tankctl's clap command, as the completions and man pages see it.
pub fn tankctl_command() -> clap::Command {
    Cli::command()
}

/// Writes the completion script of tankctl for `shell` to `out`.
pub fn write_completions(shell: CompletionShell, out: &mut dyn Write) -> Result<(), DocsError> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = tankctl_command();
    // clap_complete writes through a panic-free path but reports nothing:
    // render into memory, then write (and report) once.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tankctl", &mut script);
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(DocsError::Completions)
}

/// Writes every man page into `dir` (created if missing); returns their
/// paths, tankctl's first.
pub fn write_manpages(dir: &Path) -> Result<Vec<PathBuf>, DocsError> {
    std::fs::create_dir_all(dir).map_err(|source| DocsError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    // As clap_mangen::generate_to: no page for the `help` subcommand, and
    // subcommand pages named after their full path (`tankctl-image-pull`).
    let mut tankctl = tankctl_command().disable_help_subcommand(true);
    tankctl.build();
    write_tree(tankctl, "1", dir, &mut written)?;
    let mut tankd = tank_api::daemon_cli::command();
    tankd.build();
    written.push(write_page(tankd, "8", dir)?);
    Ok(written)
}

/// Writes `cmd`'s page, then those of its visible subcommands, depth first.
fn write_tree(
    cmd: clap::Command,
    section: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), DocsError> {
    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    written.push(write_page(cmd, section, dir)?);
    for sub in subcommands {
        write_tree(sub, section, dir, written)?;
    }
    Ok(())
}

/// The date in the pages' header: `SOURCE_DATE_EPOCH` (reproducible
/// builds) when set, else today; `YYYY-MM-DD`.
fn page_date() -> String {
    let time = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|epoch| epoch.trim().parse::<u64>().ok())
        .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap_or_else(std::time::SystemTime::now);
    let mut date = humantime::format_rfc3339_seconds(time).to_string();
    date.truncate("YYYY-MM-DD".len());
    date
}

/// Renders one page into `dir`, named `<display name>.<section>`.
fn write_page(cmd: clap::Command, section: &str, dir: &Path) -> Result<PathBuf, DocsError> {
    // An empty date would shift the header's fields (.TH's arguments).
    let man = Man::new(cmd)
        .section(section)
        .date(page_date())
        .source(format!("Tank {}", env!("CARGO_PKG_VERSION")))
        .manual(MANUAL);
    let path = dir.join(man.get_filename());
    let write = || -> std::io::Result<()> {
        let mut file = BufWriter::new(File::create(&path)?);
        man.render(&mut file)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().map_err(|source| DocsError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completions(shell: CompletionShell) -> String {
        let mut out = Vec::new();
        write_completions(shell, &mut out).expect("completions render");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn bash_completion_knows_the_subcommands() {
        let bash = completions(CompletionShell::Bash);
        assert!(bash.contains("complete -F _tankctl"), "{bash}");
        for word in ["apply", "exec", "attach", "logs", "completions"] {
            assert!(bash.contains(word), "bash completion lacks {word}");
        }
        assert!(bash.contains("--no-ask-password"));
    }

    #[test]
    fn zsh_and_fish_completions_render() {
        let zsh = completions(CompletionShell::Zsh);
        assert!(zsh.starts_with("#compdef tankctl"), "{zsh}");
        assert!(zsh.contains("apply"));
        let fish = completions(CompletionShell::Fish);
        assert!(fish.contains("complete -c tankctl"), "{fish}");
        assert!(fish.contains("exec"));
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_manpages(dir.path()).expect("man pages render");
        let names: Vec<String> = written
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names[0], "tankctl.1");
        for page in [
            "tankctl-apply.1",
            "tankctl-exec.1",
            "tankctl-completions.1",
            "tankctl-image.1",
            "tankctl-image-pull.1",
            "tankctl-volume-rm.1",
            "tankd.8",
        ] {
            assert!(names.iter().any(|n| n == page), "no {page} in {names:?}");
            assert!(dir.path().join(page).is_file());
        }
        // Hidden and help subcommands get no page.
        assert!(!names
            .iter()
            .any(|n| n.contains("generate-manpages") || n.contains("help")));

        let main = std::fs::read_to_string(dir.path().join("tankctl.1")).expect("read");
        assert!(
            main.contains(&format!(".TH tankctl 1 {} \"Tank ", page_date())),
            "{main}"
        );
        for sub in [
            "apply", "get", "ps", "describe", "delete", "logs", "exec", "attach",
        ] {
            assert!(
                main.contains(&format!("tankctl\\-{sub}(1)")),
                "tankctl.1 does not list {sub}:\n{main}"
            );
        }
        let tankd = std::fs::read_to_string(dir.path().join("tankd.8")).expect("read");
        assert!(tankd.contains(".TH tankd 8 "), "{tankd}");
        assert!(tankd.contains("converges the"), "{tankd}");
        assert!(tankd.contains("\\-\\-config"), "{tankd}");
    }
}
