//! `tankctl exec` and `tankctl attach`: the calls, the fds passed each
//! way, and tankctl's exit status from the command's.
//!
//! Owns the client side of `Exec`/`Attach`: which of tankctl's own fds are
//! passed (without `-t`: stdout and stderr always, stdin with `-i`), when
//! the local terminal goes raw (with a terminal and keyboard input), and
//! what is printed when the session ends. The pumping itself is
//! [`crate::terminal`].

use std::collections::HashMap;
use std::io::IsTerminal;
use std::os::fd::{AsFd, OwnedFd};

use zbus::zvariant::{Fd, Value};

use crate::cli::ExecArgs;
use crate::error::ClientError;
use crate::polkit::Interaction;
use crate::terminal::{self, DetachKeys, Outcome, RawMode};
use tank_api::bus::proxy::ManagerProxy;

/// `tankctl exec`: returns tankctl's exit status.
pub async fn exec(
    manager: &ManagerProxy<'_>,
    ask: &Interaction,
    args: ExecArgs,
) -> Result<u8, ClientError> {
    let keys = DetachKeys::parse(&args.detach_keys).map_err(ClientError::Input)?;
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map_err(|e| ClientError::Input(format!("duplicating a standard fd: {e}")))
    };
    let mut opts: HashMap<&str, Value<'_>> = HashMap::new();
    // Kept open until the call returned (tankd dups them).
    let mut passed: Vec<OwnedFd> = Vec::new();
    if args.tty {
        opts.insert("tty", Value::from(true));
        if let Some((rows, cols)) = terminal::local_size() {
            opts.insert("rows", Value::from(rows));
            opts.insert("cols", Value::from(cols));
        }
    } else {
        if args.interactive {
            passed.push(dup(std::io::stdin().as_fd())?);
        }
        passed.push(dup(std::io::stdout().as_fd())?);
        passed.push(dup(std::io::stderr().as_fd())?);
        let names: &[&str] = if args.interactive {
            &["stdin", "stdout", "stderr"]
        } else {
            &["stdout", "stderr"]
        };
        for (name, fd) in names.iter().zip(&passed) {
            opts.insert(name, Value::from(Fd::from(fd)));
        }
    }
    if !args.env.is_empty() {
        opts.insert("env", Value::from(args.env.clone()));
    }
    if let Some(cwd) = &args.cwd {
        opts.insert("cwd", Value::from(cwd.as_str()));
    }
    let reply: zbus::Result<(zbus::zvariant::OwnedFd, zbus::zvariant::OwnedFd)> = ask
        .call(
            manager.inner(),
            "Exec",
            &(
                args.pod.as_str(),
                args.container.as_str(),
                &args.command,
                opts,
            ),
        )
        .await;
    drop(passed);
    let (pty, status) = match reply {
        Ok(fds) => fds,
        Err(zbus::Error::MethodError(name, message, _))
            if name.as_str() == "org.tank.Error.ExecFailed" =>
        {
            // As a shell says it: 127 not found, 126 found but failed.
            let message = message.unwrap_or_default();
            eprintln!("tankctl: {message}");
            return Ok(if message.contains("ENOENT") { 127 } else { 126 });
        }
        Err(e) => return Err(e.into()),
    };
    let (pty, status): (OwnedFd, OwnedFd) = (pty.into(), status.into());
    let outcome = if args.tty {
        session(pty, status, args.interactive, &keys).await?
    } else {
        drop(pty);
        terminal::wait_status(status)
            .await
            .map_err(|e| ClientError::Reply(format!("status: {e}")))?
    };
    Ok(finish(outcome))
}

/// `tankctl attach`.
pub async fn attach(
    manager: &ManagerProxy<'_>,
    ask: &Interaction,
    pod: &str,
    container: &str,
    detach_keys: &str,
) -> Result<u8, ClientError> {
    let keys = DetachKeys::parse(detach_keys).map_err(ClientError::Input)?;
    let (pty, status): (zbus::zvariant::OwnedFd, zbus::zvariant::OwnedFd) = ask
        .call(manager.inner(), "Attach", &(pod, container))
        .await?;
    let outcome = session(pty.into(), status.into(), true, &keys).await?;
    Ok(finish(outcome))
}

/// Pumps a terminal session, in raw mode when the keyboard is a terminal
/// whose input goes to the process.
async fn session(
    pty: OwnedFd,
    status: OwnedFd,
    input: bool,
    keys: &DetachKeys,
) -> Result<Outcome, ClientError> {
    let stdin = std::io::stdin();
    let raw = if input && stdin.is_terminal() {
        Some(
            RawMode::enable(stdin.as_fd())
                .map_err(|e| ClientError::Input(format!("raw mode: {e}")))?,
        )
    } else {
        None
    };
    let outcome = terminal::pump(pty, status, input, keys).await;
    drop(raw);
    outcome.map_err(|e| ClientError::Reply(format!("terminal: {e}")))
}

/// The line printed (if any) and the exit status for an outcome.
fn finish(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Detached => eprintln!("detached (the process keeps running)"),
        Outcome::Lost => eprintln!("tankctl: the session ended without an exit status"),
        Outcome::Exited(_) | Outcome::Interrupted(_) => {}
    }
    outcome.exit_code()
}
