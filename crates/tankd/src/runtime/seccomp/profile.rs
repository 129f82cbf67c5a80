//! The rules of Tank's `runtime/default` seccomp profile, as plain data,
//! and a pure evaluator of them (for the unit tests and for anyone asking
//! "what does the profile say about this call?").
//!
//! The profile is Docker's default profile (moby's `seccomp/default.json`)
//! resolved for Tank's containers; see the [module doc](super) for why
//! Docker's and not podman's current one, and how the capability- and
//! kernel-conditional rules were resolved. In short:
//!
//! - the default verdict is `EPERM`;
//! - [`ALLOWED`] is allowed unconditionally;
//! - `ptrace`, `process_vm_readv`, `process_vm_writev` are allowed
//!   (moby: kernel ≥ 4.8; Tank needs ≥ 5.3 for `clone3` anyway);
//! - `chroot` is allowed (moby: with `CAP_SYS_CHROOT`, which Tank keeps);
//! - `socket` is allowed for every family but `AF_ALG` (38) and
//!   `AF_VSOCK` (40);
//! - `personality` is allowed for the five harmless values Docker allows
//!   (`PER_LINUX`, `PER_LINUX32`, `UNAME26`, both, and the query
//!   `0xffffffff`);
//! - `clone` is allowed without namespace flags ([`NAMESPACE_FLAGS`]),
//!   `clone3` fails with `ENOSYS` (its flags live in memory a filter cannot
//!   read; `ENOSYS` makes glibc fall back to `clone`);
//! - architecture-specific calls of the native architecture
//!   ([`ARCH_ALLOWED`]).
//!
//! Everything that moby allows only with a capability Tank's containers
//! lack (`CAP_SYS_ADMIN`: `mount`, `unshare`, `setns`, `bpf`,
//! `perf_event_open`, …; `CAP_DAC_READ_SEARCH`: `open_by_handle_at`;
//! `CAP_SYS_BOOT`, `CAP_SYS_MODULE`, `CAP_SYS_PTRACE`, `CAP_SYS_TIME`,
//! `CAP_SYS_NICE`, …) is simply not listed, so it gets the default `EPERM`,
//! as does everything moby never allows (`keyctl`, `add_key`,
//! `request_key`, `kexec_load`, `userfaultfd`, `io_uring_*`, …).

/// What the filter does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// The call fails with this errno, without reaching the kernel's
    /// implementation.
    Errno(i32),
}

/// A comparison of one system-call argument (64-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq(u64),
    Lt(u64),
    Gt(u64),
    /// `arg & mask == value`.
    MaskedEq {
        mask: u64,
        value: u64,
    },
}

impl Cmp {
    pub fn holds(self, arg: u64) -> bool {
        match self {
            Cmp::Eq(v) => arg == v,
            Cmp::Lt(v) => arg < v,
            Cmp::Gt(v) => arg > v,
            Cmp::MaskedEq { mask, value } => arg & mask == value,
        }
    }
}

/// A condition on argument `arg` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCheck {
    pub arg: u32,
    pub cmp: Cmp,
}

/// `verdict` for the calls named in `syscalls` when every check of `when`
/// holds (no checks: always). Several rules for one call match when any
/// of them does.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub syscalls: &'static [&'static str],
    pub verdict: Verdict,
    pub when: &'static [ArgCheck],
}

/// The verdict of a call no rule matches.
pub const DEFAULT_VERDICT: Verdict = Verdict::Errno(libc::EPERM);

/// The namespace flags `clone` may not carry (`CLONE_NEWNS`, `NEWCGROUP`,
/// `NEWUTS`, `NEWIPC`, `NEWUSER`, `NEWPID`, `NEWNET`): 0x7e020000.
pub const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// Allowed whatever the arguments. Names of other architectures (`_llseek`,
/// `stat64`, `socketcall`, …) apply to the compat architectures of the
/// filter (x86 on x86_64); names that the host's libseccomp does not know
/// yet are skipped when compiling (they get the default verdict).
pub const ALLOWED: &[&str] = &[
    "_llseek",
    "_newselect",
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Calls of the native architecture only (moby's `includes.arches`).
#[cfg(target_arch = "x86_64")]
pub const ARCH_ALLOWED: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
pub const ARCH_ALLOWED: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "breakpoint",
    "cacheflush",
    "set_tls",
    "sync_file_range2",
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const ARCH_ALLOWED: &[&str] = &[];

/// `verdict` for `syscalls` whatever the arguments.
const fn always(syscalls: &'static [&'static str], verdict: Verdict) -> Rule {
    Rule {
        syscalls,
        verdict,
        when: &[],
    }
}

/// Allowed when argument 0 compares so.
const fn allow_if_arg0(syscall: &'static [&'static str], cmp: &'static [ArgCheck]) -> Rule {
    Rule {
        syscalls: syscall,
        verdict: Verdict::Allow,
        when: cmp,
    }
}

/// Every rule of the profile.
pub const RULES: &[Rule] = &[
    always(ALLOWED, Verdict::Allow),
    always(ARCH_ALLOWED, Verdict::Allow),
    // moby: kernel >= 4.8 (before, ptrace could be used to bypass seccomp).
    always(
        &["ptrace", "process_vm_readv", "process_vm_writev"],
        Verdict::Allow,
    ),
    // moby: with CAP_SYS_CHROOT, which Tank's containers have.
    always(&["chroot"], Verdict::Allow),
    // Every family below AF_ALG (38), AF_NFC (39), every one above AF_VSOCK (40).
    allow_if_arg0(
        &["socket"],
        &[ArgCheck {
            arg: 0,
            cmp: Cmp::Lt(38),
        }],
    ),
    allow_if_arg0(
        &["socket"],
        &[ArgCheck {
            arg: 0,
            cmp: Cmp::Eq(39),
        }],
    ),
    allow_if_arg0(
        &["socket"],
        &[ArgCheck {
            arg: 0,
            cmp: Cmp::Gt(40),
        }],
    ),
    // PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, the query.
    allow_if_arg0(
        &["personality"],
        &[ArgCheck {
            arg: 0,
            cmp: Cmp::Eq(0x0),
        }],
    ),
    allow_if_arg0(
        &["personality"],
        &[ArgCheck {
            arg: 0,
            cmp: Cmp::Eq(0x8),
        }],
    ),
    allow_if_arg0(
        &["personality"],
        &[ArgCheck {
            arg: 0,
            cmp: Cmp::Eq(0x2_0000),
        }],
    ),
    allow_if_arg0(
        &["personality"],
        &[ArgCheck {
            arg: 0,
            cmp: Cmp::Eq(0x2_0008),
        }],
    ),
    allow_if_arg0(
        &["personality"],
        &[ArgCheck {
            arg: 0,
            cmp: Cmp::Eq(0xffff_ffff),
        }],
    ),
    // moby, without CAP_SYS_ADMIN: clone without namespace flags (argument
    // 0 on every architecture Tank builds for; s390 would differ)...
    allow_if_arg0(
        &["clone"],
        &[ArgCheck {
            arg: 0,
            cmp: Cmp::MaskedEq {
                mask: NAMESPACE_FLAGS,
                value: 0,
            },
        }],
    ),
    // ...and clone3 fails with ENOSYS: its flags are in memory a filter
    // cannot read; libc falls back to clone.
    always(&["clone3"], Verdict::Errno(libc::ENOSYS)),
];

/// The verdict of the rules for `syscall` with `args`: the first matching
/// rule's, else [`DEFAULT_VERDICT`].
pub fn verdict(syscall: &str, args: [u64; 6]) -> Verdict {
    RULES
        .iter()
        .filter(|rule| rule.syscalls.contains(&syscall))
        .find(|rule| {
            rule.when
                .iter()
                .all(|check| check.cmp.holds(args[check.arg as usize]))
        })
        .map_or(DEFAULT_VERDICT, |rule| rule.verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ARGS: [u64; 6] = [0; 6];
    const EPERM: Verdict = Verdict::Errno(libc::EPERM);

    fn arg0(value: u64) -> [u64; 6] {
        [value, 0, 0, 0, 0, 0]
    }

    #[test]
    fn the_dangerous_calls_get_eperm() {
        for name in [
            // The list.
            "keyctl",
            "add_key",
            "bpf",
            "unshare",
            "kexec_load",
            "open_by_handle_at",
            "perf_event_open",
            // And their kin.
            "request_key",
            "kexec_file_load",
            "mount",
            "umount2",
            "fsopen",
            "move_mount",
            "open_tree",
            "pivot_root",
            "setns",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
            "acct",
            "settimeofday",
            "clock_settime",
            "iopl",
            "ioperm",
            "userfaultfd",
            "io_uring_setup",
            "lookup_dcookie",
            "quotactl",
            "sethostname",
            "setdomainname",
            "syslog",
            "vhangup",
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "mbind",
            "set_mempolicy",
            "no_such_call",
        ] {
            assert_eq!(verdict(name, NO_ARGS), EPERM, "{name}");
        }
    }

    #[test]
    fn everyday_calls_are_allowed() {
        for name in [
            "read",
            "write",
            "openat",
            "close",
            "execve",
            "execveat",
            "mmap",
            "futex",
            "epoll_wait",
            "fork",
            "vfork",
            "wait4",
            "getpid",
            "rt_sigaction",
            "prctl",
            "seccomp",
            "setuid",
            "setgroups",
            "capset",
            "chown",
            "mknod",
            "bind",
            "ioctl",
            "chroot",
            "ptrace",
            "arch_prctl",
            "name_to_handle_at",
        ] {
            assert_eq!(verdict(name, NO_ARGS), Verdict::Allow, "{name}");
        }
        // Compat-architecture names are listed too.
        for name in ["_llseek", "stat64", "socketcall", "mmap2", "ugetrlimit"] {
            assert_eq!(verdict(name, NO_ARGS), Verdict::Allow, "{name}");
        }
    }

    #[test]
    fn clone_without_namespace_flags_only() {
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(verdict("clone", arg0(thread)), Verdict::Allow);
        assert_eq!(verdict("clone", arg0(libc::SIGCHLD as u64)), Verdict::Allow);
        assert_eq!(NAMESPACE_FLAGS, 0x7e02_0000);
        for flag in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
        ] {
            let flags = flag as u64 | libc::SIGCHLD as u64;
            assert_eq!(verdict("clone", arg0(flags)), EPERM, "{flag:#x}");
        }
        assert_eq!(verdict("clone3", NO_ARGS), Verdict::Errno(libc::ENOSYS));
    }

    #[test]
    fn socket_families_but_alg_and_vsock() {
        for family in 0..=64u64 {
            let expected = if family == libc::AF_ALG as u64 || family == libc::AF_VSOCK as u64 {
                EPERM
            } else {
                Verdict::Allow
            };
            assert_eq!(verdict("socket", arg0(family)), expected, "{family}");
        }
        // socketpair and the calls on sockets are not filtered by family.
        assert_eq!(verdict("socketpair", arg0(40)), Verdict::Allow);
    }

    #[test]
    fn personality_values() {
        for allowed in [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
            assert_eq!(
                verdict("personality", arg0(allowed)),
                Verdict::Allow,
                "{allowed:#x}"
            );
        }
        // READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, PER_BSD.
        for denied in [0x40_0000, 0x4_0000, 0x6] {
            assert_eq!(verdict("personality", arg0(denied)), EPERM, "{denied:#x}");
        }
    }

    #[test]
    fn the_table_is_consistent() {
        // ALLOWED is sorted and has no repeats (easy to compare with
        // other profiles).
        assert!(ALLOWED.windows(2).all(|w| w[0] < w[1]));
        // A call with argument checks or another verdict is not also
        // allowed unconditionally (the unconditional rule would win).
        let unconditional: Vec<&str> = RULES
            .iter()
            .filter(|r| r.when.is_empty() && r.verdict == Verdict::Allow)
            .flat_map(|r| r.syscalls.iter().copied())
            .collect();
        for rule in RULES
            .iter()
            .filter(|r| !r.when.is_empty() || r.verdict != Verdict::Allow)
        {
            for name in rule.syscalls {
                assert!(!unconditional.contains(name), "{name}");
            }
        }
        let mut sorted = unconditional.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), unconditional.len(), "a call listed twice");
        // Argument indexes exist.
        assert!(RULES.iter().flat_map(|r| r.when).all(|c| c.arg < 6));
    }
}
