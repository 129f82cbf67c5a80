//! PTY allocation in the devpts instance of the calling process's root.
//!
//! Used by the init stage (a `tty: true` container) and by the exec stage,
//! both single-threaded and already inside the container's mount
//! namespace: `/dev/pts/ptmx` then is the container's own (newinstance)
//! devpts, so the slave is `/dev/pts/N` *in the container*. The slave is
//! obtained from the master with `TIOCGPTPEER` (no path lookup that the
//! container could redirect). Also the host-side check that an fd passed
//! back really is a PTY master.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, major, minor, Mode, SFlag};
use nix::sys::statfs::fstatfs;

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
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(failed("open the slave of", Errno::last()));
    }
    // SAFETY: the ioctl just returned this new descriptor; we own it.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    set_size(master.as_fd(), rows, cols).map_err(|e| failed("set the size of", e))?;
    Ok((master, slave))
}

/// `TIOCSPTLCK 0` (`unlockpt`): the slave may be opened.
pub fn unlock(master: BorrowedFd<'_>) -> Result<(), Errno> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, valid for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `TIOCSWINSZ`.
pub fn set_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, valid for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `TIOCGWINSZ`: `(rows, cols)`.
pub fn get_size(fd: BorrowedFd<'_>) -> Result<(u16, u16), Errno> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize to the pointer, valid for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } < 0 {
        return Err(Errno::last());
    }
    Ok((size.ws_row, size.ws_col))
}

/// Makes the tty `fd` the controlling terminal of the calling session
/// leader (`TIOCSCTTY`).
pub fn make_controlling(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an int argument by value.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// A new fd for the slave of `master` (`TIOCGPTPEER`, non-blocking, never a
/// controlling terminal).
pub fn open_slave(master: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the ioctl just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Ok if `fd` is the master side of a PTY (the ptmx device, 5:2, with a
/// PTY number).
pub fn check_master(fd: &OwnedFd) -> Result<(), String> {
    let st = fstat(fd).map_err(|e| e.to_string())?;
    let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_char || major(st.st_rdev) != 5 || minor(st.st_rdev) != 2 {
        return Err("not the ptmx device".to_owned());
    }
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int to the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut number) } < 0 {
        return Err(Errno::last().to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
