//! tankctl's command line (clap). Kept apart from the commands so man pages
//! and shell completions can be generated from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Control Tank: declare pods and look at them.
#[derive(Debug, Parser)]
#[command(name = "tankctl", version, propagate_version = true)]
pub struct Cli {
    /// Never ask for a password: calls fail with "interactive
    /// authentication required" instead of starting a polkit agent. (Asking
    /// happens only when stdin is a terminal.)
    #[arg(long, global = true)]
    pub no_ask_password: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Declare a pod (create it, or change it to this spec).
    Apply {
        /// Pod document, JSON or YAML; `-` reads stdin.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        /// Wait until the pod has converged to this spec (Running, or its
        /// containers ended), or fail after --timeout.
        #[arg(long)]
        wait: bool,
        /// Seconds --wait waits at most.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
    },
    /// Show one pod.
    Get {
        name: String,
        /// Output format: a table row, or the whole document.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// List the declared pods.
    #[command(visible_alias = "list")]
    Ps,
    /// Show a pod's observed status: phase, IPs, containers, events.
    Describe { name: String },
    /// Remove a pod from desired state (its containers are stopped).
    Delete {
        name: String,
        /// Wait until its containers are stopped and its sandbox torn down,
        /// or fail after --timeout.
        #[arg(long)]
        wait: bool,
        /// Seconds --wait waits at most.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
    },
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Show a container's output.
    Logs {
        pod: String,
        /// The container (may be omitted when the pod has one).
        #[arg(short = 'c', long = "container", default_value = "")]
        container: String,
        /// Keep streaming new output until the container's current run
        /// ends (at once when it is not running).
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines (read from the end of the log).
        #[arg(long, value_name = "N", default_value_t = 0)]
        tail: u32,
        /// Show each line's time and stream.
        #[arg(long)]
        timestamps: bool,
    },
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Run a command in a running container (`-it` for a shell).
    Exec(ExecArgs),
    /// Attach to the terminal of a `tty: true` container.
    Attach {
        pod: String,
        /// The container (may be omitted when the pod has one).
        #[arg(short = 'c', long = "container", default_value = "")]
        container: String,
        /// Key sequence that detaches (comma-separated: a character or
        /// ctrl-<x>; empty: never).
        #[arg(long = "detach-keys", value_name = "KEYS", default_value = crate::terminal::DEFAULT_DETACH_KEYS)]
        detach_keys: String,
    },
    /// Print tankctl's shell completion script.
    ///
    /// For example `tankctl completions bash > ~/.local/share/bash-completion/completions/tankctl`
    /// (the Debian package installs them for bash, zsh and fish).
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write the man pages of tankctl (one per subcommand) and tankd into
    /// DIR (used to build the package).
    #[command(hide = true)]
    GenerateManpages {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// The shells `tankctl completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// `tankctl exec [-i] [-t] [-c CONTAINER] [--env K=V] [--cwd DIR] POD -- CMD…`
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Pass stdin to the command (the keyboard with -t).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Run the command on a terminal (a PTY in the container).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The container (may be omitted when the pod has one).
    #[arg(short = 'c', long = "container", default_value = "")]
    pub container: String,
    /// Set an environment variable (repeatable; over the container's).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory of the command [default: the container's].
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Key sequence that detaches with -it (comma-separated: a character
    /// or ctrl-<x>; empty: never).
    #[arg(long = "detach-keys", value_name = "KEYS", default_value = crate::terminal::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
    pub pod: String,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List managed volumes.
    #[command(visible_alias = "list")]
    Ls,
    /// Delete a managed volume and its data (POD/VOLUME).
    Rm { volume: String },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from its registry, showing progress.
    Pull { reference: String },
    /// List the images Tank has.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove an image no declared pod uses.
    Rm { reference: String },
    /// Remove every image no declared pod uses, and unused layers.
    Prune,
    /// Import the images of an OCI image-layout tar (`-` reads stdin).
    Import { file: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}
