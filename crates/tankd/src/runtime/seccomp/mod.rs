//! The seccomp filter of containers: Tank's `runtime/default` profile,
//! compiled once per tankd into a BPF program, and the loading of that
//! program by the init and exec stages as their very last step before
//! `execve` (DESIGN §6).
//!
//! Owns the profile ([`profile`]: the rules as plain data), its
//! compilation ([`mod@compile`], with libseccomp: no hand-written BPF), the
//! compiled program ([`SeccompProgram`], cached by [`default_program`] and
//! shipped to the stages inside their plans) and [`load`]. It does not
//! decide which container is filtered: the spec's `seccomp` field says so
//! (`runtime/default` or `unconfined`), the runtime manager puts the
//! program into the plans, and the bus lets only root declare
//! `unconfined`.
//!
//! **Which profile.** The issue asks for the effect of podman's default
//! profile with the EPERM denials Docker's has (`keyctl`, `add_key`,
//! `unshare(CLONE_NEWUSER)`, …). Today's containers-common profile (what
//! podman ships) no longer gives those: it returns `ENOSYS` for unknown
//! calls and allows `keyctl`, `unshare`, `mount`, `setns`, `clone` with
//! namespace flags and `ptrace` (podman runs nested containers). Tank's
//! profile is therefore Docker's default profile (moby's
//! `seccomp/default.json`, of which containers-common's was a copy until
//! 2021), with its semantics: `EPERM` by default, an allow-list, argument
//! filters on `clone` (no namespace flags), `socket` (no `AF_ALG`,
//! `AF_VSOCK`) and `personality` (five values), `clone3` → `ENOSYS`.
//!
//! **Resolved for Tank.** moby's profile has rules that depend on the
//! container's capabilities, on the kernel version and on the
//! architecture. Tank's containers always have Docker's default
//! capability set ([`crate::runtime::plan::DEFAULT_CAPABILITIES`]; the
//! spec has no capability field), so those rules are resolved here once:
//! of the capabilities moby conditions on, only `CAP_SYS_CHROOT` is in the
//! set (`chroot` allowed); `CAP_SYS_ADMIN`, `CAP_DAC_READ_SEARCH`,
//! `CAP_SYS_BOOT`, `CAP_SYS_MODULE`, `CAP_SYS_PACCT`, `CAP_SYS_PTRACE`,
//! `CAP_SYS_RAWIO`, `CAP_SYS_TIME`, `CAP_SYS_TTY_CONFIG`, `CAP_SYS_NICE`,
//! `CAP_SYSLOG`, `CAP_BPF` and `CAP_PERFMON` are not, so their calls keep
//! the default `EPERM` and the "without `CAP_SYS_ADMIN`" rules (the `clone`
//! mask, `clone3` → `ENOSYS`) apply. The kernel ≥ 4.8 rule (`ptrace`,
//! `process_vm_*`) always holds (Tank needs `clone3`, 5.3). An
//! architecture rule applies when it names the native architecture.
//!
//! **Architectures.** On x86_64 the filter covers x86_64 and the compat
//! ABIs the profile lists for it, x86 (i386) and x32, so a 32-bit binary
//! in the container is filtered by the same rules (its syscall numbers are
//! its own); aarch64 covers arm. Calls of any other ABI kill the thread
//! (libseccomp's bad-architecture action). Names the host's libseccomp does
//! not know (calls newer than it) are skipped: they keep the default
//! `EPERM`, which is what an old runtime gives too.
//!
//! **Cost.** libseccomp compiles the profile once per tankd
//! ([`default_program`]; ~50–70 ms here, which a compile per start would
//! add to every container start and exec); every start and exec then only
//! copies the program (~10 KB) into its plan, and the stage hands it to the
//! kernel with one `seccomp(SECCOMP_SET_MODE_FILTER)` (~0.4 ms), with no
//! libseccomp work in the child. The program is a binary tree over syscall
//! numbers (libseccomp's optimize level 2, see [`mod@compile`]), and the kernel
//! caches the always-allowed calls in a bitmap, so most calls of a filtered
//! workload never run the filter at all.

pub mod compile;
pub mod profile;

use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use nix::errno::Errno;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use compile::{compile, Compiled, SeccompError};

/// The most instructions the kernel accepts in one filter (`BPF_MAXINSNS`).
pub const MAX_INSTRUCTIONS: usize = 4096;

/// The size of one BPF instruction (`struct sock_filter`).
const INSTRUCTION: usize = std::mem::size_of::<libc::sock_filter>();

/// A compiled seccomp filter: the `struct sock_filter` array libseccomp
/// exported, in host byte order. Cheap to clone. In a plan it travels as a
/// base64 string.
#[derive(Clone, PartialEq, Eq)]
pub struct SeccompProgram(Arc<[u8]>);

/// The program is not a whole number of BPF instructions, is empty, or is
/// longer than the kernel takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a seccomp program of {0} bytes: not 1 to {MAX_INSTRUCTIONS} BPF instructions of {INSTRUCTION} bytes")]
pub struct BadProgram(pub usize);

impl SeccompProgram {
    pub fn new(bytes: Vec<u8>) -> Result<SeccompProgram, BadProgram> {
        let n = bytes.len();
        if n == 0 || n % INSTRUCTION != 0 || n / INSTRUCTION > MAX_INSTRUCTIONS {
            return Err(BadProgram(n));
        }
        Ok(SeccompProgram(bytes.into()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.0.len() / INSTRUCTION
    }

    /// Never true: a program has at least one instruction.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The instructions as the kernel reads them.
    fn instructions(&self) -> Vec<libc::sock_filter> {
        self.0
            .chunks_exact(INSTRUCTION)
            .map(|i| libc::sock_filter {
                code: u16::from_ne_bytes([i[0], i[1]]),
                jt: i[2],
                jf: i[3],
                k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
            })
            .collect()
    }
}

impl fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeccompProgram({} instructions)", self.len())
    }
}

impl Serialize for SeccompProgram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for SeccompProgram {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(D::Error::custom)?;
        SeccompProgram::new(bytes).map_err(D::Error::custom)
    }
}

/// The `runtime/default` program, compiled on the first call and cached
/// for the life of the process (tankd calls it at start, so a libseccomp
/// problem stops tankd there rather than failing containers later).
pub fn default_program() -> Result<&'static SeccompProgram, SeccompError> {
    static PROGRAM: OnceLock<SeccompProgram> = OnceLock::new();
    if let Some(program) = PROGRAM.get() {
        return Ok(program);
    }
    let started = std::time::Instant::now();
    let compiled = compile()?;
    log::debug!(
        "seccomp: runtime/default compiled in {:?}: {} BPF instructions{}",
        started.elapsed(),
        compiled.program.len(),
        if compiled.unknown.is_empty() {
            String::new()
        } else {
            format!(
                "; calls unknown to this libseccomp (left to EPERM): {}",
                compiled.unknown.join(", ")
            )
        }
    );
    Ok(PROGRAM.get_or_init(|| compiled.program))
}

/// Installs `program` as a seccomp filter of the calling thread (the
/// stages are single-threaded), inherited across `execve` and by every
/// child. The caller must have set `no_new_privs` (or hold
/// `CAP_SYS_ADMIN`); a filter can never be removed.
#[allow(unsafe_code)]
pub fn load(program: &SeccompProgram) -> Result<(), Errno> {
    let filter = program.instructions();
    let prog = libc::sock_fprog {
        // SeccompProgram::new bounds it by MAX_INSTRUCTIONS.
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog) only reads `prog`
    // and the `len` instructions it points to, both alive for the call;
    // the kernel copies the program and verifies it before installing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            std::ptr::addr_of!(prog),
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
