//! The compiled program against the real kernel: each test that loads it
//! does so on a thread of its own (a filter binds the thread that loads it
//! and its future children only; the thread ends with the test), after
//! setting that thread's `no_new_privs`.

use super::*;

/// Runs `f` on a fresh thread with `no_new_privs` and `program` loaded.
fn filtered<T: Send + 'static>(
    program: &SeccompProgram,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let program = program.clone();
    std::thread::spawn(move || {
        nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
        load(&program).expect("load the filter");
        f()
    })
    .join()
    .expect("the filtered thread")
}

/// A raw system call's errno (0: it succeeded; a returned fd is closed).
fn errno_of(result: libc::c_long, closes_fd: bool) -> i32 {
    if result < 0 {
        Errno::last_raw()
    } else {
        if closes_fd {
            // SAFETY: the call just returned this fd to us.
            #[allow(unsafe_code)]
            unsafe {
                libc::close(result as libc::c_int)
            };
        }
        0
    }
}

/// The errno of each probe, in order. Every probe is harmless when no
/// filter is loaded either (invalid arguments, multi-threaded process).
#[allow(unsafe_code)]
fn probes() -> Vec<(&'static str, i32)> {
    use libc::{c_long, syscall};
    let null = std::ptr::null::<libc::c_void>();
    // SAFETY: (all of them) raw system calls with integer arguments and
    // NULL or valid NUL-terminated string pointers; none writes memory.
    unsafe {
        vec![
            // KEYCTL_GET_KEYRING_ID of the session keyring, no create.
            (
                "keyctl",
                errno_of(syscall(libc::SYS_keyctl, 0, -3 as c_long, 0), false),
            ),
            // A key type that does not exist (ENODEV without a filter).
            (
                "add_key",
                errno_of(
                    syscall(
                        libc::SYS_add_key,
                        c"tank-no-such-type".as_ptr(),
                        c"d".as_ptr(),
                        null,
                        0,
                        -2 as c_long,
                    ),
                    false,
                ),
            ),
            // An unknown command (EINVAL without a filter, as root).
            (
                "bpf",
                errno_of(syscall(libc::SYS_bpf, 0x7fff_ffff, null, 0), false),
            ),
            // EINVAL without a filter: the process has several threads.
            (
                "unshare",
                errno_of(syscall(libc::SYS_unshare, libc::CLONE_NEWUSER), false),
            ),
            // Flags no kernel knows (EINVAL without a filter).
            (
                "kexec_load",
                errno_of(
                    syscall(libc::SYS_kexec_load, 0, 0, null, 0x7fff_0000),
                    false,
                ),
            ),
            (
                "open_by_handle_at",
                errno_of(syscall(libc::SYS_open_by_handle_at, -1, null, 0), true),
            ),
            (
                "perf_event_open",
                errno_of(syscall(libc::SYS_perf_event_open, null, 0, -1, -1, 0), true),
            ),
            // CLONE_NEWUSER with CLONE_THREAD is invalid without a filter.
            (
                "clone(CLONE_NEWUSER)",
                errno_of(
                    syscall(
                        libc::SYS_clone,
                        libc::CLONE_NEWUSER | libc::CLONE_THREAD,
                        null,
                        null,
                        null,
                        null,
                    ),
                    false,
                ),
            ),
            (
                "clone3",
                errno_of(syscall(libc::SYS_clone3, null, 0), false),
            ),
            (
                "socket(AF_VSOCK)",
                errno_of(
                    syscall(libc::SYS_socket, libc::AF_VSOCK, libc::SOCK_STREAM, 0),
                    true,
                ),
            ),
            (
                "socket(AF_UNIX)",
                errno_of(
                    syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0),
                    true,
                ),
            ),
            (
                "personality(query)",
                errno_of(syscall(libc::SYS_personality, 0xffff_ffff_u64), false),
            ),
            ("getpid", errno_of(syscall(libc::SYS_getpid), false)),
        ]
    }
}

#[test]
fn the_kernel_enforces_the_compiled_profile() {
    let program = default_program().unwrap();
    let (probes, status) = filtered(program, || {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        (probes(), status)
    });
    let got: std::collections::HashMap<_, _> = probes.into_iter().collect();
    for name in [
        "keyctl",
        "add_key",
        "bpf",
        "unshare",
        "kexec_load",
        "open_by_handle_at",
        "perf_event_open",
        "clone(CLONE_NEWUSER)",
        "socket(AF_VSOCK)",
    ] {
        assert_eq!(
            got[name],
            libc::EPERM,
            "{name}: {}",
            Errno::from_raw(got[name])
        );
    }
    assert_eq!(got["clone3"], libc::ENOSYS);
    for name in ["socket(AF_UNIX)", "personality(query)", "getpid"] {
        assert_eq!(got[name], 0, "{name}: {}", Errno::from_raw(got[name]));
    }
    assert!(status.contains("\nSeccomp:\t2\n"), "{status}");
}

#[test]
fn without_the_filter_the_probes_are_not_eperm() {
    // The control: the same probes on an unfiltered thread fail for their
    // own reasons (or succeed), so the test above proves the filter.
    let got: std::collections::HashMap<_, _> = std::thread::spawn(probes)
        .join()
        .unwrap()
        .into_iter()
        .collect();
    for name in [
        "keyctl",
        "add_key",
        "unshare",
        "open_by_handle_at",
        "perf_event_open",
        "clone(CLONE_NEWUSER)",
        "clone3",
    ] {
        assert_ne!(got[name], libc::EPERM, "{name}");
        assert_ne!(got[name], libc::ENOSYS, "{name}");
    }
}

#[test]
fn compiled_once_and_deterministic() {
    let first = default_program().unwrap();
    assert!(std::ptr::eq(first, default_program().unwrap()));
    let started = std::time::Instant::now();
    let again = compile().unwrap();
    eprintln!(
        "compiled in {:?}: {} instructions; unknown to this libseccomp: {:?}",
        started.elapsed(),
        again.program.len(),
        again.unknown
    );
    assert_eq!(&again.program, first);
    assert!((100..MAX_INSTRUCTIONS).contains(&first.len()), "{first:?}");
    // Only calls newer than this libseccomp may be unknown to it: never
    // one of the profile's argument-filtered or everyday calls.
    for name in [
        "read",
        "clone",
        "clone3",
        "socket",
        "personality",
        "execveat",
        "openat2",
    ] {
        assert!(
            !again.unknown.contains(&name),
            "{name}: {:?}",
            again.unknown
        );
    }
}

#[test]
fn programs_travel_as_base64_and_are_checked() {
    let program = default_program().unwrap();
    let json = serde_json::to_string(program).unwrap();
    assert!(json.starts_with('"'), "{json}");
    let back: SeccompProgram = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, program);

    for bad in [0, 7, 9, 8 * (MAX_INSTRUCTIONS + 1)] {
        assert_eq!(SeccompProgram::new(vec![0; bad]), Err(BadProgram(bad)));
    }
    let short = base64::engine::general_purpose::STANDARD.encode([0u8; 12]);
    let err = serde_json::from_str::<SeccompProgram>(&format!("\"{short}\"")).unwrap_err();
    assert!(err.to_string().contains("12 bytes"), "{err}");
    assert!(serde_json::from_str::<SeccompProgram>("\"not base64!\"").is_err());
}

#[test]
fn the_kernel_rejects_a_malformed_program() {
    // One instruction with an opcode BPF does not have.
    let garbage = SeccompProgram::new(vec![0xff; 8]).unwrap();
    let result = std::thread::spawn(move || {
        nix::sys::prctl::set_no_new_privs().unwrap();
        load(&garbage)
    })
    .join()
    .unwrap();
    assert_eq!(result, Err(Errno::EINVAL));
}

#[test]
fn loading_the_program_is_cheap() {
    // What a container start or exec pays: the kernel copies and checks
    // the program (no libseccomp work in the stage). Generous bound; the
    // measured time is printed (`--nocapture`).
    let program = default_program().unwrap().clone();
    let rounds = 20u32;
    let total: std::time::Duration = (0..rounds)
        .map(|_| {
            let program = program.clone();
            std::thread::spawn(move || {
                nix::sys::prctl::set_no_new_privs().unwrap();
                let started = std::time::Instant::now();
                load(&program).unwrap();
                started.elapsed()
            })
            .join()
            .unwrap()
        })
        .sum();
    let each = total / rounds;
    eprintln!("seccomp load of {} instructions: {each:?}", program.len());
    assert!(each < std::time::Duration::from_millis(5), "{each:?}");
}
