//! The compile step: [`profile::RULES`] → a libseccomp filter context →
//! the BPF program libseccomp exports. No hand-written BPF.

use std::io::{Read, Seek};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

use super::profile::{self, ArgCheck, Cmp, Verdict};
use super::{BadProgram, SeccompProgram};

/// The compat architectures the filter also covers (the profile's
/// `archMap` for the native architecture).
#[cfg(target_arch = "x86_64")]
const COMPAT_ARCHES: &[ScmpArch] = &[ScmpArch::X86, ScmpArch::X32];
#[cfg(target_arch = "aarch64")]
const COMPAT_ARCHES: &[ScmpArch] = &[ScmpArch::Arm];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const COMPAT_ARCHES: &[ScmpArch] = &[];

/// libseccomp's "binary tree sorted by syscall number" layout: a call is
/// found in O(log n) instructions instead of a linear scan of the list.
/// Measured here (x86_64 + x86 + x32, libseccomp 2.5.4, Linux 6.18): 1246
/// instructions that the kernel loads in ~0.4 ms, against 1001
/// instructions and ~1.1 ms for the default linear layout (the kernel
/// runs the filter over every syscall number when loading it, to cache
/// the always-allowed ones).
const OPTIMIZE_BINARY_TREE: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: {what}: {source}")]
    Libseccomp {
        what: String,
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp: exporting the BPF program: {0}")]
    Export(#[source] std::io::Error),
    #[error("seccomp: {0}")]
    Program(#[from] BadProgram),
}

fn libseccomp_err(
    what: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Libseccomp { what, source }
}

/// The result of [`compile`].
#[derive(Debug)]
pub struct Compiled {
    pub program: SeccompProgram,
    /// Names of the profile the host's libseccomp does not know (calls
    /// newer than it): they keep the default verdict.
    pub unknown: Vec<&'static str>,
}

fn action(verdict: Verdict) -> ScmpAction {
    match verdict {
        Verdict::Allow => ScmpAction::Allow,
        Verdict::Errno(errno) => ScmpAction::Errno(errno),
    }
}

fn comparison(check: &ArgCheck) -> ScmpArgCompare {
    let (op, datum) = match check.cmp {
        Cmp::Eq(v) => (ScmpCompareOp::Equal, v),
        Cmp::Lt(v) => (ScmpCompareOp::Less, v),
        Cmp::Gt(v) => (ScmpCompareOp::Greater, v),
        Cmp::MaskedEq { mask, value } => (ScmpCompareOp::MaskedEqual(mask), value),
    };
    ScmpArgCompare::new(check.arg, op, datum)
}

/// Compiles the `runtime/default` profile for the native architecture and
/// its compat architectures.
pub fn compile() -> Result<Compiled, SeccompError> {
    let mut ctx = ScmpFilterContext::new(action(profile::DEFAULT_VERDICT))
        .map_err(libseccomp_err("creating the filter"))?;
    for arch in COMPAT_ARCHES {
        ctx.add_arch(*arch)
            .map_err(libseccomp_err(format!("adding architecture {arch:?}")))?;
    }
    ctx.set_ctl_optimize(OPTIMIZE_BINARY_TREE)
        .map_err(libseccomp_err("choosing the binary-tree layout"))?;

    let mut unknown = Vec::new();
    for rule in profile::RULES {
        let conditions: Vec<ScmpArgCompare> = rule.when.iter().map(comparison).collect();
        for &name in rule.syscalls {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                unknown.push(name);
                continue;
            };
            let added = if conditions.is_empty() {
                ctx.add_rule(action(rule.verdict), syscall)
            } else {
                ctx.add_rule_conditional(action(rule.verdict), syscall, &conditions)
            };
            added.map_err(libseccomp_err(format!("the rule for {name}")))?;
        }
    }

    // libseccomp exports to an fd: a memfd, read back whole.
    let fd =
        nix::sys::memfd::memfd_create(c"tank-seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SeccompError::Export(e.into()))?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file)
        .map_err(libseccomp_err("exporting the BPF program"))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(SeccompError::Export)?;
    Ok(Compiled {
        program: SeccompProgram::new(bytes)?,
        unknown,
    })
}
