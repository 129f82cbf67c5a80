//! What a running container leaves on the machine for the next tankd: its
//! run directory `<run_dir>/containers/<pod>/<container>/` with
//!
//! - `record.json`: the pid of its PID 1, that process's start time (clock
//!   ticks since boot, field 22 of `/proc/<pid>/stat`, so a recycled pid is
//!   never mistaken for it) and when it started; what an exec in it
//!   inherits (the resolved env, user, working directory, capabilities:
//!   the [`ExecContext`] it was started with, since its PID 1 may rewrite
//!   its own environ or drop privileges), its stop signal and its seccomp
//!   profile (so that an exec into an adopted container gets the same
//!   filter). The env holds secrets: the file is 0600 in the private
//!   `run_dir`. A record of an older tankd has none of these: see
//!   [`ContainerRecord::exec`];
//! - `stdout`, `stderr`: the FIFOs its output goes through. The container
//!   holds them open read-write, so it always has a reader of its own: a
//!   tankd that dies (or is upgraded) never kills it with SIGPIPE; output
//!   waits in the pipe until the next tankd reopens the FIFO and drains it.
//!
//! This module owns those files and nothing else: adopting a process
//! (pidfd, cgroup) is the runtime manager's job.

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::exec::ExecContext;
use tank_api::log_record::Stream;
use tank_api::spec::{Seccomp, StopSignal};

/// The record of one running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub pid: u32,
    /// Start time of `pid` in clock ticks since boot.
    pub start_ticks: u64,
    /// When it started, in ms since the Unix epoch.
    pub started_at_ms: u64,
    /// The seccomp profile its processes run under. Records written before
    /// the field existed read as `runtime/default`: an exec gets the filter
    /// (never less confinement than asked for).
    #[serde(default, skip_serializing_if = "Seccomp::is_default")]
    pub seccomp: Seccomp,
    /// What an exec inherits. `None` in a record written by a tankd that
    /// did not keep it: the context is then read from `/proc` of `pid`
    /// ([`ExecContext::from_proc`]), which is wrong for a PID 1 that
    /// rewrote its environ or switched users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecContext>,
    /// What stops it (before SIGKILL). `None` in an older record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<StopSignal>,
}

impl ContainerRecord {
    /// The record of `pid`, which started at `started_at`; `None` if the
    /// process is already gone.
    pub fn of(pid: u32, started_at: SystemTime) -> Option<ContainerRecord> {
        Some(ContainerRecord {
            pid,
            start_ticks: start_ticks(pid)?,
            started_at_ms: started_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            seccomp: Seccomp::default(),
            exec: None,
            stop_signal: None,
        })
    }

    pub fn started_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_at_ms)
    }

    /// Whether `pid` is still the process this record describes.
    pub fn is_alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

/// The run directory of one container.
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    pub fn new(containers: &Path, pod: &str, container: &str) -> RunDir {
        RunDir {
            dir: containers.join(pod).join(container),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn fifo(&self, stream: Stream) -> PathBuf {
        self.dir.join(match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        })
    }

    fn record_path(&self) -> PathBuf {
        self.dir.join("record.json")
    }

    /// A fresh run directory with both FIFOs; returns the container's ends
    /// (read-write, see the module doc).
    pub fn create(&self) -> std::io::Result<(OwnedFd, OwnedFd)> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut ends = Vec::with_capacity(2);
        for stream in [Stream::Stdout, Stream::Stderr] {
            let path = self.fifo(stream);
            nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))?;
            // O_RDWR never blocks on a FIFO and makes this end a reader too.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)?;
            ends.push(OwnedFd::from(file));
        }
        let stderr = ends.pop().expect("two ends");
        let stdout = ends.pop().expect("two ends");
        Ok((stdout, stderr))
    }

    /// Tankd's end of a FIFO: read-only, non-blocking.
    pub fn open_reader(&self, stream: Stream) -> std::io::Result<OwnedFd> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(self.fifo(stream))?;
        Ok(OwnedFd::from(file))
    }

    /// Writes the record (atomically: a crash leaves the old one or none).
    pub fn write_record(&self, record: &ContainerRecord) -> std::io::Result<()> {
        let tmp = self.dir.join(".record.json.tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::state_dir::PRIVATE_FILE)
            .open(&tmp)?;
        std::io::Write::write_all(
            &mut file,
            &serde_json::to_vec(record).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, self.record_path())
    }

    /// The record, if there is a readable one.
    pub fn read_record(&self) -> Option<ContainerRecord> {
        let file = File::open(self.record_path()).ok()?;
        serde_json::from_reader(std::io::BufReader::new(file)).ok()
    }

    /// Removes the directory (FIFOs included).
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock
/// ticks since boot.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain anything: fields resume after
    // its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state): field 22 is the 20th from here.
    rest.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn start_ticks_identify_a_process() {
        let me = std::process::id();
        let ticks = start_ticks(me).expect("own stat");
        assert_eq!(start_ticks(me), Some(ticks));
        let record = ContainerRecord::of(me, SystemTime::now()).unwrap();
        assert!(record.is_alive());
        let recycled = ContainerRecord {
            start_ticks: ticks + 1,
            ..record.clone()
        };
        assert!(!recycled.is_alive());
        assert_eq!(start_ticks(u32::MAX), None);
    }

    #[test]
    fn records_round_trip_and_fifos_outlive_their_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path(), "pod", "c");
        let (stdout, _stderr) = run.create().unwrap();
        let mut record = ContainerRecord::of(std::process::id(), SystemTime::now()).unwrap();
        record.exec = Some(ExecContext {
            user: Some("app".into()),
            env: vec!["SECRET=s3cr3t".into()],
            cwd: "/srv".into(),
            capabilities: vec!["CAP_CHOWN".into()],
        });
        record.stop_signal = Some(StopSignal::parse("QUIT").unwrap());
        run.write_record(&record).unwrap();
        assert_eq!(run.read_record(), Some(record));
        // Private: the env holds secrets.
        let mode = std::fs::metadata(run.record_path()).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        // A reader comes and goes; the writer's end is a reader too, so
        // writing never fails meanwhile, and a new reader gets the data.
        drop(run.open_reader(Stream::Stdout).unwrap());
        let mut writer = File::from(stdout);
        writer.write_all(b"kept\n").unwrap();
        let mut reader = File::from(run.open_reader(Stream::Stdout).unwrap());
        let mut buf = [0u8; 16];
        let n = reader.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"kept\n");

        run.remove();
        assert!(!run.path().exists());
        assert_eq!(run.read_record(), None);
    }

    #[test]
    fn records_keep_the_seccomp_profile() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path(), "pod", "c");
        run.create().unwrap();
        let mut record = ContainerRecord::of(std::process::id(), SystemTime::now()).unwrap();
        record.seccomp = Seccomp::Unconfined;
        run.write_record(&record).unwrap();
        assert_eq!(run.read_record().unwrap().seccomp, Seccomp::Unconfined);
        let text = std::fs::read_to_string(run.path().join("record.json")).unwrap();
        assert!(text.contains(r#""seccomp":"unconfined""#), "{text}");
        // A record of an older tankd: the filter applies.
        let old = r#"{"pid": 1, "start_ticks": 2, "started_at_ms": 3}"#;
        let old: ContainerRecord = serde_json::from_str(old).unwrap();
        assert_eq!(old.seccomp, Seccomp::RuntimeDefault);
    }

    #[test]
    fn a_record_of_an_older_tankd_has_no_context() {
        let old = r#"{"pid":42,"start_ticks":7,"started_at_ms":1700000000000}"#;
        let record: ContainerRecord = serde_json::from_str(old).unwrap();
        assert_eq!(
            (record.pid, record.exec, record.stop_signal),
            (42, None, None)
        );
        // And a record without them is written as an older tankd did.
        let record = ContainerRecord {
            pid: 42,
            start_ticks: 7,
            started_at_ms: 1_700_000_000_000,
            exec: None,
            stop_signal: None,
            seccomp: Seccomp::RuntimeDefault,
        };
        assert_eq!(serde_json::to_string(&record).unwrap(), old);
    }
}
