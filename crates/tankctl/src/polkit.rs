//! Interactive authorization for tankctl's authorized calls, as systemctl
//! does it.
//!
//! Owns two things: whether a call carries the D-Bus
//! ALLOW_INTERACTIVE_AUTHORIZATION flag (yes when stdin is a terminal and
//! `--no-ask-password` was not given), and, for such calls by non-root
//! users, a `pkttyagent` that lives exactly as long as the call so polkit
//! can ask for a password on this terminal. The agent is optional: when
//! pkttyagent is not installed the call still allows interaction (another
//! agent of the session may answer).

use std::io::{IsTerminal, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use zbus::proxy::MethodFlags;
use zbus::zvariant::{DynamicDeserialize, DynamicType};

/// polkit's textual authentication agent (package polkitd on Debian).
const PKTTYAGENT: &str = "pkttyagent";

/// How tankctl's authorized calls may ask for authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interaction {
    /// The calls carry ALLOW_INTERACTIVE_AUTHORIZATION.
    allow: bool,
    /// A pkttyagent runs during each call.
    agent: bool,
}

impl Interaction {
    /// The interaction of this process: `ask_password` is false with
    /// `--no-ask-password`.
    pub fn detect(ask_password: bool) -> Interaction {
        Interaction::new(
            ask_password,
            std::io::stdin().is_terminal(),
            nix::unistd::geteuid().is_root(),
        )
    }

    /// Interaction only from a terminal; root needs no agent (polkit
    /// always authorizes uid 0, and tankd does not even ask it).
    pub fn new(ask_password: bool, stdin_is_terminal: bool, root: bool) -> Interaction {
        let allow = ask_password && stdin_is_terminal;
        Interaction {
            allow,
            agent: allow && !root,
        }
    }

    fn flags(&self) -> enumflags2::BitFlags<MethodFlags> {
        if self.allow {
            MethodFlags::AllowInteractiveAuth.into()
        } else {
            enumflags2::BitFlags::empty()
        }
    }

    /// Calls `method` of `proxy` with `body` (a tuple of the arguments),
    /// allowing interactive authorization as decided, with a pkttyagent
    /// running for the duration of the call when one is wanted.
    pub async fn call<B, R>(
        &self,
        proxy: &zbus::Proxy<'_>,
        method: &str,
        body: &B,
    ) -> zbus::Result<R>
    where
        B: Serialize + DynamicType,
        R: for<'d> DynamicDeserialize<'d>,
    {
        let _agent = if self.agent {
            TtyAgent::start().await
        } else {
            None
        };
        proxy
            .call_with_flags(method, self.flags(), body)
            .await?
            .ok_or_else(|| zbus::Error::Failure(format!("{method}: no reply")))
    }
}

/// A running `pkttyagent` registered for this process; stopped on drop.
struct TtyAgent {
    child: Child,
}

impl TtyAgent {
    /// Starts pkttyagent and waits until it has registered with polkit
    /// (it closes the notify fd then). None when it is not installed or
    /// cannot start: the agent only helps, so the call goes on without it.
    async fn start() -> Option<TtyAgent> {
        let (notify_read, notify_write) = match nix::unistd::pipe() {
            Ok(pipe) => pipe,
            Err(e) => {
                log::debug!("no polkit agent: pipe: {e}");
                return None;
            }
        };
        // Only the agent may hold the write end: once it closes it (or
        // dies), our read sees end-of-file.
        if let Err(e) = fcntl(&notify_read, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
            log::debug!("no polkit agent: fcntl: {e}");
            return None;
        }
        let spawned = Command::new(PKTTYAGENT)
            .arg("--notify-fd")
            .arg(notify_write.as_raw_fd().to_string())
            .arg("--fallback")
            .arg("--process")
            .arg(std::process::id().to_string())
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn();
        drop(notify_write);
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("no polkit agent: {PKTTYAGENT} is not installed");
                return None;
            }
            Err(e) => {
                eprintln!("tankctl: cannot start {PKTTYAGENT}: {e}");
                return None;
            }
        };
        let agent = TtyAgent { child };
        // Blocks until the agent is registered (or gone): off the runtime.
        match tokio::task::spawn_blocking(move || wait_closed(notify_read)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("waiting for {PKTTYAGENT}: {e}"),
            Err(e) => log::debug!("waiting for {PKTTYAGENT}: {e}"),
        }
        Some(agent)
    }
}

/// Reads `fd` until every writer has closed it.
fn wait_closed(fd: OwnedFd) -> std::io::Result<()> {
    let mut file = std::fs::File::from(fd);
    let mut buf = [0u8; 64];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Drop for TtyAgent {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interaction_only_from_a_terminal_and_when_asked() {
        let i = Interaction::new(true, true, false);
        assert!(i.allow && i.agent);
        assert_eq!(i.flags(), MethodFlags::AllowInteractiveAuth);
        // Root: the flag, but no agent.
        let i = Interaction::new(true, true, true);
        assert!(i.allow && !i.agent);
        // Not a terminal, or --no-ask-password: neither.
        for i in [
            Interaction::new(true, false, false),
            Interaction::new(false, true, false),
        ] {
            assert!(!i.allow && !i.agent);
            assert!(i.flags().is_empty());
        }
    }
}
