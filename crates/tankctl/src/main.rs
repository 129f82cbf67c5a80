//! tankctl: the command-line client of tankd.
//!
//! Owns the commands a person types and how their results and errors are
//! shown. It talks to tankd only over the system bus (the interfaces of
//! `dbus/`, through tank-api's proxies), never to the store or the
//! machine directly, and it reads what tankd sends as tank-api's types
//! (pod documents, status, the status line, log records). Pod documents
//! are read with tank-api's one strict reader, the one tankd uses: a
//! document tankd would refuse is refused here, with tankd's message.
//!
//! - [`cli`]: the command line (clap); [`docs`]: man pages and completions
//!   generated from it (and from tankd's);
//! - [`input`]: reading pod documents; [`output`]: tables, ages, `describe`;
//! - [`images`]: `tankctl image …`; [`exec`]: `exec` and `attach`, with
//!   [`terminal`] the local end of a session; [`polkit`]: interactive
//!   authorization; [`error`]: how failures are told.
#![deny(unsafe_code)]

mod cli;
mod docs;
mod error;
mod exec;
mod images;
mod input;
mod output;
mod polkit;
mod terminal;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tank_api::bus::proxy::{ManagerProxy, PodProxy};
use tank_api::bus::{BUS_NAME, POD_INTERFACE, ROOT_PATH};
use tank_api::status::{Phase, PodDocument, PodStatus};
use zbus::fdo::ObjectManagerProxy;
use zbus::zvariant::OwnedValue;
use zbus::Connection;

use cli::{Cli, Command, Format};
use error::ClientError;
use polkit::Interaction;

fn main() -> ExitCode {
    // Like any Unix filter: a reader that goes away (`tankctl ps | head`)
    // ends tankctl quietly, instead of a panic in println!.
    // SAFETY: signal(2) with SIG_DFL at the start of main, before any other
    // thread exists; no handler function is involved.
    #[allow(unsafe_code)]
    if let Err(e) = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    } {
        eprintln!("tankctl: cannot reset SIGPIPE: {e}");
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tankctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tankctl: {e}");
            ExitCode::FAILURE
        }
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
    // A pod document is read (and refused, as tankd would) before any call.
    let document = match &cli.command {
        Command::Apply { file, .. } => Some(input::read_document(file)?.to_canonical_json()),
        _ => None,
    };
    let conn = Connection::system().await.map_err(ClientError::Connect)?;
    let manager = ManagerProxy::new(&conn).await?;
    // The calls tankd authorizes may prompt for a password.
    let ask = Interaction::detect(!cli.no_ask_password);
    match cli.command {
        Command::Apply { wait, timeout, .. } => {
            // Read above (always, for Apply).
            let document = document.unwrap_or_default();
            let path: zbus::zvariant::OwnedObjectPath = ask
                .call(manager.inner(), "Apply", &(document.as_str(),))
                .await?;
            let pod = PodProxy::builder(&conn).path(path)?.build().await?;
            let (name, generation) = (pod.name().await?, pod.generation().await?);
            println!("pod/{name} applied (generation {generation})");
            if wait {
                let status = wait_converged(&pod, generation, Duration::from_secs(timeout)).await?;
                println!("pod/{name} {}", status.phase);
            }
        }
        Command::Get { name, output } => {
            let document = get(&manager, &name).await?;
            match output {
                Format::Json => println!("{}", output::json(&document)),
                Format::Yaml => print!("{}", output::yaml(&document)),
                Format::Table => {
                    let row = pod_row(
                        &name,
                        document.phase,
                        document.status.0.as_ref(),
                        document.created_ms * 1000,
                    );
                    print!("{}", output::table(POD_COLUMNS, &[row]));
                }
            }
        }
        Command::Describe { name } => {
            let document = get(&manager, &name).await?;
            print!("{}", output::describe(&document));
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

/// The `Get` document of pod `name`.
async fn get(manager: &ManagerProxy<'_>, name: &str) -> Result<PodDocument, ClientError> {
    let text = manager.get(name).await?;
    PodDocument::from_json(&text).map_err(|e| ClientError::Reply(format!("Get: {e}")))
}

/// The pod's `Status` property (`None` until tankd first reported).
async fn status(pod: &PodProxy<'_>) -> Result<Option<PodStatus>, ClientError> {
    let text = pod.status().await?;
    PodStatus::from_property(&text).map_err(|e| ClientError::Reply(format!("Status: {e}")))
}

/// Waits for the pod's status to show `generation` converged: Running, or
/// every container ended (Succeeded/Failed). Property changes wake it; no
/// polling.
async fn wait_converged(
    pod: &PodProxy<'_>,
    generation: u64,
    timeout: Duration,
) -> Result<PodStatus, ClientError> {
    use futures_util::StreamExt;
    let mut changes = pod.receive_status_changed().await;
    let converged = |status: &PodStatus| {
        status.observed_generation == generation
            && matches!(
                status.phase,
                Phase::Running | Phase::Succeeded | Phase::Failed
            )
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut observed = status(pod).await?;
    loop {
        match observed {
            Some(status) if converged(&status) => return Ok(status),
            _ => {}
        }
        match tokio::time::timeout_at(deadline, changes.next()).await {
            Ok(Some(_)) => observed = status(pod).await?,
            Ok(None) => return Err(ClientError::Reply("tankd went away".to_owned())),
            Err(_) => {
                let summary = output::StatusSummary::of(observed.as_ref());
                let phase = observed.as_ref().map_or(Phase::Pending, |s| s.phase);
                return Err(ClientError::Call(format!(
                    "timed out after {}s: pod is {phase} ({})",
                    timeout.as_secs(),
                    summary.state
                )));
            }
        }
    }
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
    let path = tank_api::bus::path::pod_path(name);
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
            out.write_all(tank_api::log_record::record_text(&line).as_bytes())
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

fn pod_row(name: &str, phase: Phase, status: Option<&PodStatus>, created_us: u64) -> Vec<String> {
    let summary = output::StatusSummary::of(status);
    vec![
        name.to_owned(),
        phase.to_string(),
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
    let mut rows = Vec::new();
    for props in objects.values().filter_map(|interfaces| {
        interfaces
            .iter()
            .find(|(name, _)| name.as_str() == POD_INTERFACE)
            .map(|(_, props)| props)
    }) {
        let name = prop_string(props, "Name");
        let phase: Phase = prop_string(props, "Phase")
            .parse()
            .map_err(|e| ClientError::Reply(format!("pod {name}: {e}")))?;
        let status = PodStatus::from_property(&prop_string(props, "Status"))
            .map_err(|e| ClientError::Reply(format!("pod {name}: Status: {e}")))?;
        rows.push(pod_row(
            &name,
            phase,
            status.as_ref(),
            prop_u64(props, "CreatedTimestamp"),
        ));
    }
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
