//! tankctl: the command-line client of tankd.
//!
//! Owns the commands a person types and how their results and errors are
//! shown. It talks to tankd only over the system bus (the interfaces of
//! `dbus/`), never to the store or the machine directly.

pub mod cli;
pub mod docs;
pub mod exec;
pub mod images;
pub mod input;
pub mod output;
pub mod polkit;
pub mod proxy;
pub mod terminal;

use std::collections::HashMap;
use std::time::Duration;

use zbus::fdo::ObjectManagerProxy;
use zbus::zvariant::OwnedValue;
use zbus::Connection;

use crate::bus::{BUS_NAME, ROOT_PATH};
use cli::{Cli, Command, Format};
use polkit::Interaction;
use proxy::{ManagerProxy, PodProxy};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Reading or converting the user's input failed.
    #[error("{0}")]
    Input(String),
    #[error("cannot connect to the system bus: {0}")]
    Connect(zbus::Error),
    /// A call to tankd failed; the message is already user-facing.
    #[error("{0}")]
    Call(String),
    #[error("unexpected reply from tankd: {0}")]
    Reply(String),
    /// Writing man pages or completions failed.
    #[error(transparent)]
    Docs(#[from] docs::DocsError),
}

impl From<zbus::Error> for ClientError {
    fn from(err: zbus::Error) -> Self {
        ClientError::Call(describe(&err))
    }
}

impl From<zbus::fdo::Error> for ClientError {
    fn from(err: zbus::fdo::Error) -> Self {
        ClientError::Call(describe(&zbus::Error::FDO(Box::new(err))))
    }
}

/// One line for a failed call, by D-Bus error name.
pub fn describe(err: &zbus::Error) -> String {
    let (name, message) = match err {
        zbus::Error::MethodError(name, message, _) => {
            (name.to_string(), message.as_deref().unwrap_or(""))
        }
        zbus::Error::FDO(fdo) => {
            let fdo: &zbus::fdo::Error = fdo;
            (
                zbus::DBusError::name(fdo).to_string(),
                zbus::DBusError::description(fdo).unwrap_or(""),
            )
        }
        other => return other.to_string(),
    };
    match name.as_str() {
        "org.tank.Error.InvalidSpec" => format!("invalid spec: {message}"),
        "org.tank.Error.NotFound"
        | "org.tank.Error.NotRunning"
        | "org.tank.Error.NotATty"
        | "org.tank.Error.Busy"
        | "org.tank.Error.ExecFailed"
        | "org.tank.Error.InUse"
        | "org.tank.Error.ImagePull"
        | "org.tank.Error.InvalidArgument" => message.to_owned(),
        "org.tank.Error.ImportFailed" => format!("import failed: {message}"),
        "org.freedesktop.DBus.Error.AccessDenied" => format!("access denied: {message}"),
        "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => format!(
            "interactive authentication required: {message} (run tankctl on a terminal, \
             without --no-ask-password)"
        ),
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            format!("tankd is not running ({BUS_NAME} is not on the system bus)")
        }
        other => format!("{other}: {message}"),
    }
}

/// Runs one tankctl invocation; returns tankctl's exit status.
pub async fn run(cli: Cli) -> Result<u8, ClientError> {
    // Local commands: no bus, no tankd.
    match &cli.command {
        Command::Completions { shell } => {
            docs::write_completions(*shell, &mut std::io::stdout().lock())?;
            return Ok(0);
        }
        Command::GenerateManpages { dir } => {
            for page in docs::write_manpages(dir)? {
                println!("{}", page.display());
            }
            return Ok(0);
        }
        _ => {}
    }
    let conn = Connection::system().await.map_err(ClientError::Connect)?;
    let manager = ManagerProxy::new(&conn).await?;
    // The calls tankd authorizes may prompt for a password.
    let ask = Interaction::detect(!cli.no_ask_password);
    match cli.command {
        Command::Apply {
            file,
            wait,
            timeout,
        } => {
            let document = input::read_document(&file)?;
            let path: zbus::zvariant::OwnedObjectPath = ask
                .call(manager.inner(), "Apply", &(document.as_str(),))
                .await?;
            let pod = PodProxy::builder(&conn).path(path)?.build().await?;
            let (name, generation) = (pod.name().await?, pod.generation().await?);
            println!("pod/{name} applied (generation {generation})");
            if wait {
                let status = wait_converged(&pod, generation, Duration::from_secs(timeout)).await?;
                println!("pod/{name} {}", status["phase"].as_str().unwrap_or("?"));
            }
        }
        Command::Get { name, output } => {
            let document = manager.get(&name).await?;
            let value: serde_json::Value =
                serde_json::from_str(&document).map_err(|e| ClientError::Reply(e.to_string()))?;
            match output {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&value).expect("JSON values serialize")
                ),
                Format::Yaml => print!(
                    "{}",
                    serde_norway::to_string(&value).expect("JSON values serialize")
                ),
                Format::Table => {
                    let row = pod_row(
                        &name,
                        value["phase"].as_str().unwrap_or("?"),
                        &value["status"],
                        value["created_ms"].as_u64().unwrap_or(0) * 1000,
                    );
                    print!("{}", output::table(POD_COLUMNS, &[row]));
                }
            }
        }
        Command::Describe { name } => {
            let document = manager.get(&name).await?;
            let value: serde_json::Value =
                serde_json::from_str(&document).map_err(|e| ClientError::Reply(e.to_string()))?;
            print!("{}", output::describe(&value));
        }
        Command::Ps => {
            let rows = list_rows(&conn).await?;
            print!("{}", output::table(POD_COLUMNS, &rows));
        }
        Command::Delete {
            name,
            wait,
            timeout,
        } => {
            if wait {
                wait_deleted(&conn, &manager, &ask, &name, Duration::from_secs(timeout)).await?;
            } else {
                delete(&manager, &ask, &name).await?;
            }
            println!("pod/{name} deleted");
        }
        Command::Image(command) => images::run(&manager, &ask, command).await?,
        Command::Logs {
            pod,
            container,
            follow,
            tail,
            timestamps,
        } => {
            let fd: zbus::zvariant::OwnedFd = ask
                .call(
                    manager.inner(),
                    "Logs",
                    &(pod.as_str(), container.as_str(), follow, tail),
                )
                .await?;
            let fd: std::os::fd::OwnedFd = fd.into();
            tokio::task::spawn_blocking(move || print_log(fd, timestamps))
                .await
                .map_err(|e| ClientError::Reply(e.to_string()))?
                .map_err(|e| ClientError::Reply(format!("reading the log: {e}")))?;
        }
        Command::Volume(cli::VolumeCommand::Ls) => {
            let rows: Vec<Vec<String>> = manager
                .list_volumes()
                .await?
                .into_iter()
                .map(|(pod, volume, bytes)| vec![pod, volume, images::human_bytes(bytes)])
                .collect();
            print!("{}", output::table(&["POD", "VOLUME", "SIZE"], &rows));
        }
        Command::Volume(cli::VolumeCommand::Rm { volume }) => {
            let Some((pod, name)) = volume.split_once('/') else {
                return Err(ClientError::Input(format!(
                    "{volume:?}: name a volume as POD/VOLUME"
                )));
            };
            ask.call::<_, ()>(manager.inner(), "RemoveVolume", &(pod, name))
                .await?;
            println!("volume {volume} removed");
        }
        Command::Exec(args) => return exec::exec(&manager, &ask, args).await,
        Command::Attach {
            pod,
            container,
            detach_keys,
        } => return exec::attach(&manager, &ask, &pod, &container, &detach_keys).await,
        // Handled before connecting.
        Command::Completions { .. } | Command::GenerateManpages { .. } => {}
    }
    Ok(0)
}

/// Waits for the pod's status to show `generation` converged: Running, or
/// every container ended (Succeeded/Failed). Property changes wake it; no
/// polling.
async fn wait_converged(
    pod: &PodProxy<'_>,
    generation: u64,
    timeout: Duration,
) -> Result<serde_json::Value, ClientError> {
    use futures_util::StreamExt;
    let mut changes = pod.receive_status_changed().await;
    let converged = |status: &serde_json::Value| {
        status["observed_generation"].as_u64() == Some(generation)
            && matches!(
                status["phase"].as_str(),
                Some("Running" | "Succeeded" | "Failed")
            )
    };
    let read = || async {
        let text = pod.status().await?;
        Ok::<_, ClientError>(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut status = read().await?;
    while !converged(&status) {
        match tokio::time::timeout_at(deadline, changes.next()).await {
            Ok(Some(_)) => status = read().await?,
            Ok(None) => return Err(ClientError::Reply("tankd went away".to_owned())),
            Err(_) => {
                let summary = output::StatusSummary::of(&status);
                return Err(ClientError::Call(format!(
                    "timed out after {}s: pod is {} ({})",
                    timeout.as_secs(),
                    status["phase"].as_str().unwrap_or("Pending"),
                    summary.state
                )));
            }
        }
    }
    Ok(status)
}

/// Removes pod `name` from desired state.
async fn delete(manager: &ManagerProxy<'_>, ask: &Interaction, name: &str) -> zbus::Result<()> {
    ask.call(manager.inner(), "Delete", &(name,)).await
}

/// Deletes `name` and waits for its object to go: tankd keeps it, in phase
/// Terminating, until the teardown ends. The ObjectManager's
/// InterfacesRemoved wakes it; no polling.
async fn wait_deleted(
    conn: &Connection,
    manager: &ManagerProxy<'_>,
    ask: &Interaction,
    name: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    use futures_util::StreamExt;
    let objects = ObjectManagerProxy::builder(conn)
        .destination(BUS_NAME)?
        .path(ROOT_PATH)?
        .build()
        .await?;
    // Subscribed before the call: the removal cannot slip past.
    let mut removed = objects.receive_interfaces_removed().await?;
    delete(manager, ask, name).await?;
    let path = crate::bus::path::pod_path(name);
    let exported = || async {
        let pods = manager.list_pods().await?;
        Ok::<_, ClientError>(pods.iter().any(|(pod, _, _)| pod == name))
    };
    let deadline = tokio::time::Instant::now() + timeout;
    if !exported().await? {
        return Ok(());
    }
    loop {
        match tokio::time::timeout_at(deadline, removed.next()).await {
            Ok(Some(signal)) => {
                let gone = signal
                    .args()
                    .is_ok_and(|args| args.object_path().as_str() == path.as_str());
                if gone {
                    return Ok(());
                }
            }
            Ok(None) => return Err(ClientError::Reply("tankd went away".to_owned())),
            Err(_) => {
                return Err(ClientError::Call(format!(
                    "timed out after {}s: pod {name} is still terminating",
                    timeout.as_secs()
                )))
            }
        }
    }
}

/// Copies log records from `fd` to stdout, as text or with their times.
fn print_log(fd: std::os::fd::OwnedFd, timestamps: bool) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let reader = std::io::BufReader::new(std::fs::File::from(fd));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in reader.lines() {
        let line = line?;
        let written = if timestamps {
            writeln!(out, "{line}")
        } else {
            out.write_all(crate::runtime::logs::record_text(&line).as_bytes())
        };
        match written {
            Ok(()) => out.flush()?,
            // The reader of our stdout went away (e.g. `| head`).
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

const POD_COLUMNS: &[&str] = &["NAME", "PHASE", "READY", "RESTARTS", "STATUS", "AGE", "IPS"];

fn pod_row(name: &str, phase: &str, status: &serde_json::Value, created_us: u64) -> Vec<String> {
    let summary = output::StatusSummary::of(status);
    vec![
        name.to_owned(),
        phase.to_owned(),
        format!("{}/{}", summary.ready, summary.total),
        summary.restarts.to_string(),
        summary.state,
        output::age(created_us),
        if summary.ips.is_empty() {
            "-".to_owned()
        } else {
            summary.ips.join(",")
        },
    ]
}

/// One row per pod, from a single GetManagedObjects round trip.
async fn list_rows(conn: &Connection) -> Result<Vec<Vec<String>>, ClientError> {
    let objects = ObjectManagerProxy::builder(conn)
        .destination(BUS_NAME)?
        .path(ROOT_PATH)?
        .build()
        .await?
        .get_managed_objects()
        .await?;
    let mut rows: Vec<Vec<String>> = objects
        .values()
        .filter_map(|interfaces| {
            interfaces
                .iter()
                .find(|(name, _)| name.as_str() == "org.tank.Pod")
                .map(|(_, props)| props)
        })
        .map(|props| {
            let status = serde_json::from_str(&prop_string(props, "Status"))
                .unwrap_or(serde_json::Value::Null);
            pod_row(
                &prop_string(props, "Name"),
                &prop_string(props, "Phase"),
                &status,
                prop_u64(props, "CreatedTimestamp"),
            )
        })
        .collect();
    rows.sort();
    Ok(rows)
}

fn prop_string(props: &HashMap<String, OwnedValue>, name: &str) -> String {
    props
        .get(name)
        .and_then(|v| String::try_from(v.clone()).ok())
        .unwrap_or_default()
}

fn prop_u64(props: &HashMap<String, OwnedValue>, name: &str) -> u64 {
    props
        .get(name)
        .and_then(|v| u64::try_from(v.clone()).ok())
        .unwrap_or(0)
}
