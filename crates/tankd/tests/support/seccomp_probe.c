/* The seccomp probe of tests/seccomp.rs, built there with `gcc -static`
 * and put into a test image as /probe.
 *
 * Makes the raw system calls a container's filter must deny, with
 * arguments that are harmless where nothing filters them (invalid
 * commands, a key type that does not exist, forked children for the
 * namespace calls), and prints one line per call: `NAME=ok` or
 * `NAME=ERRNO` (EPERM, ENOSYS, ...); last `seccomp_mode=N` from
 * /proc/self/status (0: no filter, 2: a filter). Exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void report(const char *name, long rc) {
    if (rc < 0)
        printf("%s=%s\n", name, strerrorname_np(errno));
    else
        printf("%s=ok\n", name);
}

/* rc of a call that returns an fd: closed if one came back. */
static long fd_call(long rc) {
    if (rc >= 0)
        close((int)rc);
    return rc;
}

/* Runs `call` in a forked child (namespace calls change the caller) and
 * returns its result as the parent sees it: -1 with errno, or 0. */
static long in_child(long (*call)(void)) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        long rc = call();
        _exit(rc < 0 ? errno : 0);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    if (!WIFEXITED(status)) {
        errno = EINTR;
        return -1;
    }
    if (WEXITSTATUS(status) != 0) {
        errno = WEXITSTATUS(status);
        return -1;
    }
    return 0;
}

static long do_unshare_user(void) { return syscall(SYS_unshare, CLONE_NEWUSER); }

static long do_clone_newuser(void) {
    long rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (rc == 0)
        _exit(0);
    if (rc > 0)
        waitpid((pid_t)rc, NULL, 0);
    return rc < 0 ? rc : 0;
}

int main(void) {
    /* KEYCTL_GET_KEYRING_ID of the session keyring, without creating it. */
    report("keyctl", syscall(SYS_keyctl, 0, -3L, 0L));
    /* A key type that does not exist: ENODEV where nothing filters. */
    report("add_key", syscall(SYS_add_key, "tank-no-such-type", "d", NULL, 0L, -2L));
    /* An unknown command. */
    report("bpf", syscall(SYS_bpf, 0x7fffffffL, NULL, 0L));
    report("unshare_newuser", in_child(do_unshare_user));
    report("clone_newuser", in_child(do_clone_newuser));
    /* Flags no kernel knows. */
    report("kexec_load", syscall(SYS_kexec_load, 0L, 0L, NULL, 0x7fff0000L));
    report("open_by_handle_at", fd_call(syscall(SYS_open_by_handle_at, -1L, NULL, 0L)));
    /* No attr: EFAULT where nothing filters. */
    report("perf_event_open", fd_call(syscall(SYS_perf_event_open, NULL, 0L, -1L, -1L, 0L)));
    /* No clone_args: EINVAL where nothing filters. */
    report("clone3", syscall(SYS_clone3, NULL, 0L));
    report("socket_vsock", fd_call(syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0)));
    report("socket_unix", fd_call(syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0)));
    report("personality_query", syscall(SYS_personality, 0xffffffffL));
    report("getpid", syscall(SYS_getpid));

    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    while (status && fgets(line, sizeof line, status))
        if (strncmp(line, "Seccomp:", 8) == 0)
            printf("seccomp_mode=%d\n", atoi(line + 8));
    return 0;
}
