//! The OCI config merge: what a container runs (argv, environment, working
//! directory, user) and how it is stopped (stop signal), computed from the
//! image config and the container spec.
//!
//! Owns [`ImageConfig`] (the parts of the image config's `config` object the
//! merge reads), [`RunConfig`] (the merged result the runtime executes) and
//! the merge rules, which follow containerd/Kubernetes exactly:
//!
//! | spec `command` | spec `args` | argv                               |
//! |----------------|-------------|------------------------------------|
//! | none           | none        | image `Entrypoint` + image `Cmd`   |
//! | set            | none        | spec command (image both ignored)  |
//! | none           | set         | image `Entrypoint` + spec args     |
//! | set            | set         | spec command + spec args           |
//!
//! The stop signal is the spec's `stop_signal`, else the image's
//! `StopSignal` (read as the spec's, [`StopSignal::parse`]), else SIGTERM;
//! as in podman, a bad image `StopSignal` fails the merge unless the spec
//! overrides it.
//!
//! It is pure computation: it never reads the rootfs, the store or anything
//! else on the system, and it does not resolve the `User` string (that needs
//! the image's `/etc/passwd`; see [`super::user`]) nor create the working
//! directory (the runtime's job inside the container).

use std::path::{Component, Path, PathBuf};

use tank_api::spec::{Container, StopSignal};

/// The `PATH` a container gets when neither the image nor the spec sets one
/// (Docker's default for Linux containers).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The parts of an OCI image config (`config` object of the image config
/// JSON) the merge uses. Unknown keys are ignored, absent ones are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ImageConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// `"K=V"` entries, in order.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    #[serde(rename = "StopSignal", default)]
    pub stop_signal: Option<String>,
}

/// What the runtime executes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct RunConfig {
    /// Never empty; `argv[0]` is never empty.
    pub argv: Vec<String>,
    /// `"K=V"` entries (image entries without `=` are kept verbatim, as
    /// containerd does). Order: `PATH` first if it is the default one, then
    /// the image's entries in image order (each key once; a spec key
    /// overrides the image value in place), then the spec's new keys sorted.
    pub env: Vec<String>,
    /// Absolute and lexically clean (no `.`/`..` components).
    pub working_dir: PathBuf,
    /// The image's `User`, unresolved; `None` means root (an empty string is
    /// normalised to `None`).
    pub user: Option<String>,
    /// What stops the container's PID 1 (before SIGKILL).
    pub stop_signal: StopSignal,
}

#[derive(Debug, thiserror::Error)]
pub enum RunConfigError {
    #[error("no command: the image has no Entrypoint or Cmd and the spec sets no command")]
    NoCommand,
    #[error("the command's first word (the program to run) is an empty string: {argv:?}")]
    EmptyProgram { argv: Vec<String> },
    /// The image config holds a string the kernel cannot take (`execve` and
    /// `chdir` take C strings). The spec side is checked by `Pod::new`.
    #[error("image config {field} contains a NUL byte: {value:?}")]
    Nul { field: String, value: String },
    #[error("image config StopSignal: {0} (the container's stop_signal can override it)")]
    StopSignal(String),
}

/// Merges the image config with the container spec (see the module doc for
/// the argv table).
pub fn merge(image: &ImageConfig, container: &Container) -> Result<RunConfig, RunConfigError> {
    Ok(RunConfig {
        argv: argv(image, container)?,
        env: env(image, container)?,
        working_dir: working_dir(image, container)?,
        user: image.user.clone().filter(|u| !u.is_empty()),
        stop_signal: stop_signal(image, container)?,
    })
}

fn stop_signal(image: &ImageConfig, c: &Container) -> Result<StopSignal, RunConfigError> {
    if let Some(signal) = c.stop_signal {
        return Ok(signal);
    }
    match image.stop_signal.as_deref() {
        None | Some("") => Ok(StopSignal::DEFAULT),
        Some(name) => StopSignal::parse(name).map_err(RunConfigError::StopSignal),
    }
}

fn argv(image: &ImageConfig, c: &Container) -> Result<Vec<String>, RunConfigError> {
    let entrypoint = || image_strings("Entrypoint", image.entrypoint.as_deref());
    let argv = match (&c.command, &c.args) {
        (None, None) => [entrypoint()?, image_strings("Cmd", image.cmd.as_deref())?].concat(),
        (Some(command), None) => command.clone(),
        (None, Some(args)) => [entrypoint()?, args.as_slice()].concat(),
        (Some(command), Some(args)) => [command.as_slice(), args.as_slice()].concat(),
    };
    match argv.first() {
        None => Err(RunConfigError::NoCommand),
        Some(program) if program.is_empty() => Err(RunConfigError::EmptyProgram { argv }),
        Some(_) => Ok(argv),
    }
}

/// The image's list (empty when absent), checked for NUL bytes.
fn image_strings<'a>(
    field: &str,
    items: Option<&'a [String]>,
) -> Result<&'a [String], RunConfigError> {
    let items = items.unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        no_nul(&format!("{field}[{i}]"), item)?;
    }
    Ok(items)
}

fn no_nul(field: &str, value: &str) -> Result<(), RunConfigError> {
    if value.contains('\0') {
        return Err(RunConfigError::Nul {
            field: field.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// The variable name of an environment entry: up to the first `=`, or the
/// whole entry when it has none.
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(key, _)| key)
}

fn env(image: &ImageConfig, c: &Container) -> Result<Vec<String>, RunConfigError> {
    let image_env = image_strings("Env", image.env.as_deref())?;

    // Image entries, one per key: a key repeated in the image keeps its first
    // position and takes its last value (so no stale duplicate can shadow an
    // override: glibc's getenv returns the first match).
    let mut env: Vec<String> = Vec::with_capacity(image_env.len() + c.env.len() + 1);
    for entry in image_env {
        match env.iter().position(|e| env_key(e) == env_key(entry)) {
            Some(i) => env[i] = entry.clone(),
            None => env.push(entry.clone()),
        }
    }

    // Spec values override in place; new keys follow, sorted (BTreeMap order).
    for (key, value) in &c.env {
        let entry = format!("{key}={value}");
        match env.iter().position(|e| env_key(e) == key) {
            Some(i) => env[i] = entry,
            None => env.push(entry),
        }
    }

    // Docker's default PATH when nobody set one. A bare `PATH` entry (no
    // `=`) sets nothing, so it is replaced in place.
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        let entry = format!("PATH={DEFAULT_PATH}");
        match env.iter().position(|e| e == "PATH") {
            Some(i) => env[i] = entry,
            None => env.insert(0, entry),
        }
    }
    Ok(env)
}

fn working_dir(image: &ImageConfig, c: &Container) -> Result<PathBuf, RunConfigError> {
    if let Some(dir) = &c.working_dir {
        return Ok(clean_absolute(dir));
    }
    match image.working_dir.as_deref() {
        None | Some("") => Ok(PathBuf::from("/")),
        Some(dir) => {
            no_nul("WorkingDir", dir)?;
            // Relative image working directories resolve against `/`, as
            // Docker does.
            Ok(clean_absolute(Path::new(dir)))
        }
    }
}

/// `path` made absolute against `/` and cleaned lexically, like Go's
/// `filepath.Clean("/" + path)`: `.` dropped, `..` pops (never above `/`).
fn clean_absolute(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use tank_api::spec::{Image, Limits};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.map(strings),
            cmd: cmd.map(strings),
            ..ImageConfig::default()
        }
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        Container {
            name: "app".into(),
            image: Image::Reference("busybox".into()),
            command: command.map(strings),
            args: args.map(strings),
            env: BTreeMap::new(),
            working_dir: None,
            tty: false,
            mounts: Vec::new(),
            limits: Limits::default(),
            seccomp: Default::default(),
            stop_signal: None,
        }
    }

    fn run(image: &ImageConfig, container: &Container) -> Vec<String> {
        merge(image, container).expect("merge").argv
    }

    const EP: Option<&[&str]> = Some(&["/entry", "--flag"]);
    const CMD: Option<&[&str]> = Some(&["serve", "--port=80"]);

    // --- argv: the table, row by row -------------------------------------

    #[test]
    fn row1_no_command_no_args_uses_entrypoint_then_cmd() {
        assert_eq!(
            run(&image(EP, CMD), &container(None, None)),
            ["/entry", "--flag", "serve", "--port=80"]
        );
    }

    #[test]
    fn row2_command_only_ignores_entrypoint_and_cmd() {
        assert_eq!(
            run(
                &image(EP, CMD),
                &container(Some(&["/bin/sh", "-c", "x"]), None)
            ),
            ["/bin/sh", "-c", "x"]
        );
    }

    #[test]
    fn row3_args_only_uses_entrypoint_then_args() {
        assert_eq!(
            run(&image(EP, CMD), &container(None, Some(&["--debug"]))),
            ["/entry", "--flag", "--debug"]
        );
    }

    #[test]
    fn row4_command_and_args() {
        assert_eq!(
            run(
                &image(EP, CMD),
                &container(Some(&["/bin/app"]), Some(&["a", "b"]))
            ),
            ["/bin/app", "a", "b"]
        );
    }

    // --- argv: edge cases --------------------------------------------------

    #[test]
    fn empty_entrypoint_with_cmd_runs_cmd() {
        assert_eq!(
            run(&image(Some(&[]), Some(&["sh"])), &container(None, None)),
            ["sh"]
        );
    }

    #[test]
    fn cmd_only_image() {
        assert_eq!(
            run(&image(None, Some(&["sh", "-l"])), &container(None, None)),
            ["sh", "-l"]
        );
    }

    #[test]
    fn entrypoint_only_image() {
        assert_eq!(
            run(&image(Some(&["/init"]), None), &container(None, None)),
            ["/init"]
        );
    }

    #[test]
    fn empty_args_override_cmd_with_nothing() {
        assert_eq!(
            run(&image(EP, CMD), &container(None, Some(&[]))),
            ["/entry", "--flag"]
        );
    }

    #[test]
    fn empty_args_without_entrypoint_is_no_command() {
        let err = merge(&image(None, CMD), &container(None, Some(&[]))).unwrap_err();
        assert!(matches!(err, RunConfigError::NoCommand), "{err}");
    }

    #[test]
    fn args_without_entrypoint_run_the_args() {
        // containerd: Entrypoint (none) + args, so args[0] is the program.
        assert_eq!(
            run(&image(None, CMD), &container(None, Some(&["/bin/x", "y"]))),
            ["/bin/x", "y"]
        );
    }

    #[test]
    fn command_with_empty_args_is_just_the_command() {
        assert_eq!(
            run(&image(EP, CMD), &container(Some(&["/bin/app"]), Some(&[]))),
            ["/bin/app"]
        );
    }

    #[test]
    fn nothing_anywhere_is_no_command() {
        let err = merge(&ImageConfig::default(), &container(None, None)).unwrap_err();
        assert!(matches!(err, RunConfigError::NoCommand));
        assert_eq!(
            err.to_string(),
            "no command: the image has no Entrypoint or Cmd and the spec sets no command"
        );
        let err = merge(&image(Some(&[]), Some(&[])), &container(None, None)).unwrap_err();
        assert!(matches!(err, RunConfigError::NoCommand));
    }

    #[test]
    fn empty_program_is_rejected() {
        let err = merge(&image(None, Some(&["", "x"])), &container(None, None)).unwrap_err();
        assert!(matches!(err, RunConfigError::EmptyProgram { .. }), "{err}");
    }

    #[test]
    fn nul_in_used_image_strings_is_rejected() {
        let err = merge(&image(None, Some(&["/bin/a\0b"])), &container(None, None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"image config Cmd[0] contains a NUL byte: "/bin/a\0b""#
        );
        // An overridden Cmd is not used, so it is not checked.
        assert_eq!(
            run(
                &image(None, Some(&["/bin/a\0b"])),
                &container(Some(&["/x"]), None)
            ),
            ["/x"]
        );
        let mut img = image(None, CMD);
        img.env = Some(strings(&["A=\0"]));
        let err = merge(&img, &container(None, None)).unwrap_err();
        assert!(err.to_string().starts_with("image config Env[0]"), "{err}");
        let mut img = image(None, CMD);
        img.working_dir = Some("/a\0".into());
        let err = merge(&img, &container(None, None)).unwrap_err();
        assert!(
            err.to_string().starts_with("image config WorkingDir"),
            "{err}"
        );
    }

    // --- env -----------------------------------------------------------------

    fn env_of(image_env: &[&str], spec_env: &[(&str, &str)]) -> Vec<String> {
        let mut img = image(None, CMD);
        img.env = Some(strings(image_env));
        let mut c = container(None, None);
        c.env = spec_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        merge(&img, &c).expect("merge").env
    }

    #[test]
    fn env_spec_overrides_in_place_and_appends_new_keys_sorted() {
        assert_eq!(
            env_of(
                &["PATH=/bin", "A=1", "B=2", "C=3"],
                &[("Z", "26"), ("B", "two"), ("M", "13"), ("A", "a=b")]
            ),
            ["PATH=/bin", "A=a=b", "B=two", "C=3", "M=13", "Z=26"]
        );
    }

    #[test]
    fn env_path_defaults_when_unset() {
        assert_eq!(
            env_of(&["A=1"], &[("B", "2")]),
            [&format!("PATH={DEFAULT_PATH}"), "A=1", "B=2"]
        );
        assert_eq!(
            env_of(&[], &[]),
            [format!("PATH={DEFAULT_PATH}")],
            "no env at all"
        );
    }

    #[test]
    fn env_path_from_image_or_spec_is_kept() {
        assert_eq!(env_of(&["PATH=/img"], &[]), ["PATH=/img"]);
        assert_eq!(
            env_of(&["A=1"], &[("PATH", "/spec")]),
            ["A=1", "PATH=/spec"]
        );
        assert_eq!(env_of(&["PATH=/img"], &[("PATH", "/spec")]), ["PATH=/spec"]);
        // An empty PATH is a PATH the user chose.
        assert_eq!(env_of(&["PATH="], &[]), ["PATH="]);
    }

    #[test]
    fn env_malformed_image_entries_are_kept_verbatim() {
        // containerd keeps entries without '='; a spec key of that name
        // replaces them in place.
        assert_eq!(
            env_of(&["BARE", "A=1", "OTHER"], &[("OTHER", "x")]),
            [&format!("PATH={DEFAULT_PATH}"), "BARE", "A=1", "OTHER=x"]
        );
        // A bare PATH sets nothing: the default takes its place.
        assert_eq!(
            env_of(&["A=1", "PATH"], &[]),
            ["A=1".to_string(), format!("PATH={DEFAULT_PATH}")]
        );
    }

    #[test]
    fn env_image_duplicates_collapse_first_position_last_value() {
        assert_eq!(
            env_of(&["PATH=/bin", "A=1", "B=2", "A=3"], &[]),
            ["PATH=/bin", "A=3", "B=2"]
        );
        assert_eq!(
            env_of(&["PATH=/bin", "A=1", "A=3"], &[("A", "spec")]),
            ["PATH=/bin", "A=spec"]
        );
    }

    #[test]
    fn env_key_is_up_to_the_first_equals() {
        assert_eq!(
            env_of(&["PATH=/bin", "A=b=c"], &[("A", "x")]),
            ["PATH=/bin", "A=x"]
        );
        // "AB" is not "A".
        assert_eq!(
            env_of(&["PATH=/bin", "AB=1"], &[("A", "x")]),
            ["PATH=/bin", "AB=1", "A=x"]
        );
    }

    // --- working_dir -------------------------------------------------------

    fn cwd_of(image_dir: Option<&str>, spec_dir: Option<&str>) -> PathBuf {
        let mut img = image(None, CMD);
        img.working_dir = image_dir.map(str::to_owned);
        let mut c = container(None, None);
        c.working_dir = spec_dir.map(PathBuf::from);
        merge(&img, &c).expect("merge").working_dir
    }

    #[test]
    fn working_dir_spec_wins() {
        assert_eq!(cwd_of(Some("/img"), Some("/srv")), Path::new("/srv"));
        assert_eq!(cwd_of(None, Some("/srv/")), Path::new("/srv"));
    }

    #[test]
    fn working_dir_from_image() {
        assert_eq!(cwd_of(Some("/app"), None), Path::new("/app"));
        assert_eq!(cwd_of(Some("/app/./x/"), None), Path::new("/app/x"));
    }

    #[test]
    fn working_dir_relative_image_dir_resolves_against_root() {
        assert_eq!(cwd_of(Some("app"), None), Path::new("/app"));
        assert_eq!(cwd_of(Some("./app/sub"), None), Path::new("/app/sub"));
        assert_eq!(cwd_of(Some("../../etc"), None), Path::new("/etc"));
        assert_eq!(cwd_of(Some("/a/../../b"), None), Path::new("/b"));
    }

    #[test]
    fn working_dir_defaults_to_root() {
        assert_eq!(cwd_of(None, None), Path::new("/"));
        assert_eq!(cwd_of(Some(""), None), Path::new("/"));
    }

    // --- user and JSON -------------------------------------------------------

    #[test]
    fn user_is_passed_through_unresolved() {
        let mut img = image(None, CMD);
        assert_eq!(merge(&img, &container(None, None)).unwrap().user, None);
        img.user = Some(String::new());
        assert_eq!(merge(&img, &container(None, None)).unwrap().user, None);
        img.user = Some("app:staff".into());
        assert_eq!(
            merge(&img, &container(None, None)).unwrap().user.as_deref(),
            Some("app:staff")
        );
    }

    #[test]
    fn image_config_from_oci_json() {
        let json = r#"{"User":"1000","Env":["PATH=/usr/bin"],"Entrypoint":null,
            "Cmd":["sh"],"WorkingDir":"","ExposedPorts":{"80/tcp":{}},"Labels":{"a":"b"}}"#;
        let config: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(
            config,
            ImageConfig {
                entrypoint: None,
                cmd: Some(strings(&["sh"])),
                env: Some(strings(&["PATH=/usr/bin"])),
                working_dir: Some(String::new()),
                user: Some("1000".into()),
                stop_signal: None,
            }
        );
        let config: ImageConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, ImageConfig::default());
    }

    #[test]
    fn stop_signal_from_the_spec_the_image_or_sigterm() {
        let signal = |image_signal: Option<&str>, spec: Option<&str>| {
            let mut img = image(None, CMD);
            img.stop_signal = image_signal.map(str::to_owned);
            let mut c = container(None, None);
            c.stop_signal = spec.map(|s| StopSignal::parse(s).unwrap());
            merge(&img, &c).map(|r| r.stop_signal.name())
        };
        assert_eq!(signal(None, None).unwrap(), "SIGTERM");
        assert_eq!(signal(Some(""), None).unwrap(), "SIGTERM");
        assert_eq!(signal(Some("SIGQUIT"), None).unwrap(), "SIGQUIT");
        assert_eq!(signal(Some("37"), Some("TERM")).unwrap(), "SIGTERM");
        assert_eq!(signal(None, Some("usr1")).unwrap(), "SIGUSR1");
        assert_eq!(
            signal(Some("SIGRTMIN+3"), None).unwrap_err().to_string(),
            "image config StopSignal: \"SIGRTMIN+3\": real-time signals are not supported \
             (the container's stop_signal can override it)"
        );
        let config: ImageConfig = serde_json::from_str(r#"{"StopSignal":"SIGQUIT"}"#).unwrap();
        assert_eq!(config.stop_signal.as_deref(), Some("SIGQUIT"));
    }
}
