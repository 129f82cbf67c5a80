//! `Exec` and `Attach` of `org.tank.Manager`: the bus side of interactive
//! containers.
//!
//! Owns the translation of those calls — the container named by the
//! caller (checked against desired state), the `a{sv}` options of Exec,
//! the errors `NotFound`, `NotRunning`, `NotATty`, `Busy` — into
//! [`crate::runtime::exec`] and [`crate::pty`] calls, and of their results
//! into fds on the bus. Authorization is the caller's (the interface
//! method checks `org.tank.pods.exec` first). It never touches processes
//! or terminals itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use zbus::zvariant::{OwnedFd, OwnedValue};

use super::error::BusError;
use crate::pty::session::ClientEnds;
use crate::pty::SessionError;
use crate::runtime::exec::{ExecError, ExecRequest};
use crate::runtime::manager::Runtime;
use crate::store::Store;
use tank_api::spec::Container;

/// The declared container `name` of `pod` (`""`: the only one).
async fn declared(store: &Arc<Store>, pod: &str, name: &str) -> Result<Container, BusError> {
    let store = Arc::clone(store);
    let key = pod.to_owned();
    let record = tokio::task::spawn_blocking(move || store.get(&key))
        .await
        .map_err(|e| BusError::Failed(format!("store task failed: {e}")))??
        .ok_or_else(|| BusError::pod_not_found(pod))?;
    let name = super::pod::pick_container(&record.spec, name)?;
    record
        .spec
        .container(&name)
        .cloned()
        .ok_or_else(|| BusError::NotFound(format!("pod {pod:?} has no container {name:?}")))
}

/// The options of `Exec`.
fn request(argv: Vec<String>, opts: HashMap<String, OwnedValue>) -> Result<ExecRequest, BusError> {
    let mut request = ExecRequest {
        argv,
        ..ExecRequest::default()
    };
    let invalid = |key: &str, want: &str| {
        BusError::InvalidArgument(format!("option {key:?}: expected {want}"))
    };
    let (mut rows, mut cols) = (None, None);
    for (key, value) in opts {
        match key.as_str() {
            "tty" => request.tty = bool::try_from(value).map_err(|_| invalid(&key, "b"))?,
            "env" => {
                request.env =
                    Vec::<String>::try_from(value).map_err(|_| invalid(&key, "as (K=V)"))?
            }
            "cwd" => {
                request.cwd = Some(PathBuf::from(
                    String::try_from(value).map_err(|_| invalid(&key, "s"))?,
                ))
            }
            "rows" => rows = Some(u16::try_from(value).map_err(|_| invalid(&key, "q"))?),
            "cols" => cols = Some(u16::try_from(value).map_err(|_| invalid(&key, "q"))?),
            "stdin" | "stdout" | "stderr" => {
                let fd = zbus::zvariant::Fd::try_from(value).map_err(|_| invalid(&key, "h"))?;
                let fd = std::os::fd::OwnedFd::try_from(fd)
                    .map_err(|e| BusError::Failed(format!("option {key:?}: {e}")))?;
                let slot = match key.as_str() {
                    "stdin" => 0,
                    "stdout" => 1,
                    _ => 2,
                };
                request.stdio[slot] = Some(fd);
            }
            other => {
                return Err(BusError::InvalidArgument(format!(
                    "unknown option {other:?} (known: tty, env, cwd, rows, cols, stdin, stdout, stderr)"
                )))
            }
        }
    }
    request.size = match (rows, cols) {
        (Some(r), Some(c)) if r > 0 && c > 0 => Some((r, c)),
        (None, None) => None,
        _ => {
            return Err(BusError::InvalidArgument(
                "options \"rows\" and \"cols\": both, non-zero".to_owned(),
            ))
        }
    };
    Ok(request)
}

fn ends(ends: ClientEnds) -> (OwnedFd, OwnedFd) {
    (ends.pty.into(), ends.status.into())
}

/// `Exec(pod, container, argv, opts)`.
pub async fn exec(
    store: &Arc<Store>,
    runtime: &Runtime,
    pod: &str,
    container: &str,
    argv: Vec<String>,
    opts: HashMap<String, OwnedValue>,
) -> Result<(OwnedFd, OwnedFd), BusError> {
    let container = declared(store, pod, container).await?;
    let request = request(argv, opts)?;
    match runtime.exec(pod, &container.name, request).await {
        Ok(client) => Ok(ends(client)),
        Err(e @ ExecError::NotRunning { .. }) => Err(BusError::NotRunning(e.to_string())),
        Err(e @ ExecError::InvalidArgument(_)) => Err(BusError::InvalidArgument(e.to_string())),
        // The stage's own words: `exec nope: ENOENT (not found in PATH=…)`.
        Err(ExecError::Spawn(crate::runtime::spawn::SpawnError::Init(message))) => {
            Err(BusError::ExecFailed(message))
        }
        Err(e) => {
            log::error!("{pod}/{}: exec: {e}", container.name);
            Err(BusError::Failed(e.to_string()))
        }
    }
}

/// `Attach(pod, container)`.
pub async fn attach(
    store: &Arc<Store>,
    runtime: &Runtime,
    pod: &str,
    container: &str,
) -> Result<(OwnedFd, OwnedFd), BusError> {
    let container = declared(store, pod, container).await?;
    let name = &container.name;
    if !container.tty {
        return Err(BusError::NotATty(format!(
            "container {pod}/{name} has no terminal (tty: false); use exec"
        )));
    }
    let not_running = || BusError::NotRunning(format!("container {pod}/{name} is not running"));
    let session = match runtime.consoles().main_session(pod, name) {
        Some(session) => session,
        // Adopted after a tankd restart: its terminal died with the old tankd.
        None if runtime.exec_target(pod, name).is_some() => None,
        None => return Err(not_running()),
    }
    // Running, but started before its spec had tty: true.
    .ok_or_else(|| {
        BusError::NotATty(format!(
            "container {pod}/{name} runs without a terminal (restart it)"
        ))
    })?;
    match session.attach().await {
        Ok(client) => Ok(ends(client)),
        Err(SessionError::Ended) => Err(not_running()),
        Err(SessionError::Busy) => Err(BusError::Busy(format!(
            "another client is attached to {pod}/{name}"
        ))),
        Err(e) => Err(BusError::Failed(e.to_string())),
    }
}
