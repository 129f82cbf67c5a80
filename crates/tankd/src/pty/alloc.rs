//! PTY allocation in the devpts instance of the calling process's root.
//!
//! Used by the init stage (a `tty: true` container) and by the exec stage,
//! both single-threaded and already inside the container's mount
//! namespace: `/dev/pts/ptmx` then is the container's own (newinstance)
//! devpts, so the slave is `/dev/pts/N` *in the container*. The slave is
//! obtained from the master with `TIOCGPTPEER` (no path lookup that the
//! container could redirect). Also the host-side check that an fd passed
//! back really is a PTY master.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, major, minor, Mode, SFlag};
use nix::sys::statfs::fstatfs;
use rustix::fs::OFlags;
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

/// The ptmx node of a devpts instance.
const PTMX: &str = "/dev/pts/ptmx";
/// `DEVPTS_SUPER_MAGIC`.
const DEVPTS_MAGIC: i64 = 0x1cd1;
/// The window size given to a new PTY until someone sets one.
pub const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// A new PTY of the devpts at `/dev/pts`: `(master, slave)`, both
/// close-on-exec, neither a controlling terminal yet, window size
/// `rows`×`cols`.
pub fn open_pty(rows: u16, cols: u16) -> Result<(OwnedFd, OwnedFd), String> {
    let failed = |what: &str, e: Errno| format!("{what} {PTMX}: {e:?} ({})", e.desc());
    let master = nix::fcntl::open(
        PTMX,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| failed("open", e))?;
    let fs = fstatfs(&master).map_err(|e| failed("statfs", e))?;
    if fs.filesystem_type().0 as i64 != DEVPTS_MAGIC {
        return Err(format!("open {PTMX}: not on a devpts filesystem"));
    }
    unlock(master.as_fd()).map_err(|e| failed("unlock", e))?;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, peer_flags())
        .map_err(|e| failed("open the slave of", errno(e)))?;
    set_size(master.as_fd(), rows, cols).map_err(|e| failed("set the size of", e))?;
    Ok((master, slave))
}

/// `TIOCGPTPEER`'s flags: read-write, never a controlling terminal,
/// close-on-exec.
fn peer_flags() -> OpenptFlags {
    OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC
}

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

/// `TIOCSPTLCK 0` (`unlockpt`): the slave may be opened.
pub fn unlock(master: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::pty::unlockpt(master).map_err(errno)
}

/// `TIOCSWINSZ`.
pub fn set_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, size).map_err(errno)
}

/// `TIOCGWINSZ`: `(rows, cols)`.
pub fn get_size(fd: BorrowedFd<'_>) -> Result<(u16, u16), Errno> {
    let size = rustix::termios::tcgetwinsize(fd).map_err(errno)?;
    Ok((size.ws_row, size.ws_col))
}

/// Makes the tty `fd` the controlling terminal of the calling session
/// leader (`TIOCSCTTY`).
pub fn make_controlling(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::process::ioctl_tiocsctty(fd).map_err(errno)
}

/// A new fd for the slave of `master` (`TIOCGPTPEER`, non-blocking, never a
/// controlling terminal).
pub fn open_slave(master: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let slave = rustix::pty::ioctl_tiocgptpeer(master, peer_flags()).map_err(errno)?;
    let flags = rustix::fs::fcntl_getfl(&slave).map_err(errno)?;
    rustix::fs::fcntl_setfl(&slave, flags | OFlags::NONBLOCK).map_err(errno)?;
    Ok(slave)
}

/// Ok if `fd` is the master side of a PTY (the ptmx device, 5:2, with a
/// PTY number).
pub fn check_master(fd: &OwnedFd) -> Result<(), String> {
    let st = fstat(fd).map_err(|e| e.to_string())?;
    let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_char || major(st.st_rdev) != 5 || minor(st.st_rdev) != 2 {
        return Err("not the ptmx device".to_owned());
    }
    // TIOCGPTN: only a master has a PTY number.
    rustix::pty::ptsname(fd, Vec::new()).map_err(|e| errno(e).to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slave_is_non_blocking_and_close_on_exec() {
        let master = nix::fcntl::open(
            "/dev/ptmx",
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        unlock(master.as_fd()).unwrap();
        let slave = open_slave(master.as_fd()).unwrap();
        let fl = OFlag::from_bits_truncate(
            nix::fcntl::fcntl(&slave, nix::fcntl::FcntlArg::F_GETFL).unwrap(),
        );
        assert!(fl.contains(OFlag::O_NONBLOCK) && fl.contains(OFlag::O_RDWR));
        let fd = nix::fcntl::fcntl(&slave, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(fd & libc::FD_CLOEXEC, 0);
        let mut buf = [0u8; 8];
        assert_eq!(
            nix::unistd::read(&slave, &mut buf),
            Err(Errno::EAGAIN),
            "an empty non-blocking slave"
        );
    }

    #[test]
    fn a_host_pty_master_passes_and_other_fds_do_not() {
        // The host's devpts: /dev/ptmx is the same device as /dev/pts/ptmx.
        let master = nix::fcntl::open(
            "/dev/ptmx",
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        check_master(&master).unwrap();
        unlock(master.as_fd()).unwrap();
        let slave = open_slave(master.as_fd()).unwrap();
        assert!(check_master(&slave).is_err());
        set_size(master.as_fd(), 33, 101).unwrap();
        assert_eq!(get_size(slave.as_fd()).unwrap(), (33, 101));
        let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        assert!(check_master(&null).is_err());
    }
}
