//! Resolving a container's `User` (from the image config) to numeric ids,
//! using the rootfs's own `/etc/passwd` and `/etc/group`, read safely.
//!
//! Owns the user-spec grammar (`""`, `name`, `uid`, `name:group`, `uid:gid`,
//! `name:gid`, `uid:group`, as runc's `user.GetExecUser`), the lenient
//! glibc-style parsing of the two databases and the rules for supplementary
//! groups. It only reads, and only those two files: it never writes to the
//! rootfs, never changes any process's credentials (`setgroups`/`setresgid`/
//! `setresuid` are the runtime's) and never resolves a path outside the
//! rootfs.
//!
//! Reading safely: the rootfs belongs to the image, so `etc/passwd` may be a
//! symlink to the host's `/etc/shadow`, a `../../` escape, a FIFO or a huge
//! file. The files are opened with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` relative to the rootfs (so every symlink, absolute
//! or relative, resolves inside it), non-blocking (a FIFO cannot hang us),
//! must be regular files, and are read up to [`MAX_DB_BYTES`].
//!
//! Rules (runc's, with the differences marked):
//! - `None`/`""`: root, uid 0 gid 0, with the name/home/gid of the first
//!   uid-0 entry in `/etc/passwd` if there is one.
//! - A numeric user is always a uid (even if a user is *named* `1000`); a uid
//!   without a passwd entry is allowed (gid 0, no name, no home). A user name
//!   must exist in `/etc/passwd`.
//! - A numeric group is always a gid and need not exist; a group name must
//!   exist in `/etc/group`. An explicit group replaces the passwd gid.
//! - Supplementary groups: the gids of the `/etc/group` entries that list
//!   the user's name as a member, whenever a name is known (a named user, or
//!   a uid/root found in `/etc/passwd`). *Unlike runc's `GetExecUser`, this
//!   also holds when the group is given explicitly*: containerd ≥ 1.6.18 and
//!   Kubernetes do so since CVE-2023-25173 (dropping them would let a user
//!   escape "negative" group permissions). The primary gid is not added.
//! - Every id must be in `0..=MAX_ID` (2³¹−2; runc allows 2³¹−1), both ids
//!   written in the spec and ids taken from the image's files: an id like
//!   4294967295 (`(uid_t)-1`, "unchanged" to `setresuid`) is refused.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// The largest uid/gid accepted.
pub const MAX_ID: u32 = (1 << 31) - 2;

/// The most bytes read from `/etc/passwd` or `/etc/group`; larger files are
/// refused.
pub const MAX_DB_BYTES: u64 = 4 << 20;

/// The ids (and what else is known) a container process runs with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from `/etc/group` membership, in file order,
    /// without duplicates; may or may not contain `gid`.
    pub additional_gids: Vec<u32>,
    /// The passwd home directory, when the user has an entry with one (the
    /// runtime's `HOME` when the environment sets none, as runc does).
    pub home: Option<PathBuf>,
    /// The passwd user name, when the user has an entry (and it is UTF-8).
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {user:?}: {reason}")]
    InvalidSpec { user: String, reason: String },
    #[error("user {user:?}: {what} is out of range (allowed: 0..={MAX_ID})")]
    OutOfRange { user: String, what: String },
    #[error("user {user:?}: no such user {name:?} in the image's /etc/passwd")]
    NoSuchUser { user: String, name: String },
    #[error("user {user:?}: the image has no /etc/passwd to look up user {name:?} in")]
    NoPasswd { user: String, name: String },
    #[error("user {user:?}: no such group {group:?} in the image's /etc/group")]
    NoSuchGroup { user: String, group: String },
    #[error("user {user:?}: the image has no /etc/group to look up group {group:?} in")]
    NoGroupFile { user: String, group: String },
    #[error("opening the container rootfs {rootfs:?}: {source}")]
    OpenRootfs { rootfs: PathBuf, source: io::Error },
    #[error("reading the image's {file}: {source}")]
    Read {
        file: &'static str,
        source: io::Error,
    },
    #[error("the image's {file} is {kind}, not a regular file")]
    NotRegular {
        file: &'static str,
        kind: &'static str,
    },
    #[error("the image's {file} is larger than {MAX_DB_BYTES} bytes")]
    TooLarge { file: &'static str },
}

/// Resolves `user` (the image's or spec's `User`; `None`/`""` = root) against
/// the `/etc/passwd` and `/etc/group` of `rootfs`, the container's root
/// directory (a merged overlay or a plain directory). See the module doc for
/// the forms and rules.
pub fn resolve_user(rootfs: &Path, user: Option<&str>) -> Result<ResolvedUser, UserError> {
    let spec_text = user.unwrap_or("");
    let spec = UserSpec::parse(spec_text)?;
    let root = open_rootfs(rootfs)?;
    let out_of_range = |what: String| UserError::OutOfRange {
        user: spec_text.to_owned(),
        what,
    };

    // The user: always consult passwd (it gives the name, gid and home).
    let passwd = read_db(&root, "/etc/passwd")?;
    let users = || passwd.as_deref().into_iter().flat_map(passwd_entries);
    let entry = match &spec.user {
        Arg::Default => users().find(|u| u.uid == 0),
        Arg::Id(uid) => users().find(|u| u.uid == u64::from(*uid)),
        Arg::Name(name) => {
            let found = users().find(|u| u.name == name.as_bytes());
            let err = |present: bool| {
                let (user, name) = (spec_text.to_owned(), name.clone());
                if present {
                    UserError::NoSuchUser { user, name }
                } else {
                    UserError::NoPasswd { user, name }
                }
            };
            Some(found.ok_or_else(|| err(passwd.is_some()))?)
        }
    };
    let (uid, passwd_gid, home, name) = match &entry {
        Some(u) => {
            let uid = checked_id(u.uid).ok_or_else(|| {
                let shown = String::from_utf8_lossy(u.name);
                out_of_range(format!("uid {} of {shown:?} in /etc/passwd", u.uid))
            })?;
            let home =
                (!u.home.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(u.home)));
            (uid, u.gid, home, Some(u.name))
        }
        None => match spec.user {
            Arg::Id(uid) => (uid, 0, None, None),
            _ => (0, 0, None, None),
        },
    };

    // The group database is needed for a group name or for memberships.
    let group_db = match (&spec.group, name) {
        (Some(Arg::Name(_)), _) | (_, Some(_)) => read_db(&root, "/etc/group")?,
        _ => None,
    };
    let groups = || group_db.as_deref().into_iter().flat_map(group_entries);

    // An explicit group replaces the passwd gid (which is then not checked).
    let gid = match &spec.group {
        None | Some(Arg::Default) => checked_id(passwd_gid).ok_or_else(|| {
            let shown = String::from_utf8_lossy(name.unwrap_or_default());
            out_of_range(format!("gid {passwd_gid} of {shown:?} in /etc/passwd"))
        })?,
        Some(Arg::Id(id)) => *id,
        Some(Arg::Name(group)) => {
            let Some(g) = groups().find(|g| g.name == group.as_bytes()) else {
                let (user, group) = (spec_text.to_owned(), group.clone());
                return Err(match group_db {
                    Some(_) => UserError::NoSuchGroup { user, group },
                    None => UserError::NoGroupFile { user, group },
                });
            };
            checked_id(g.gid).ok_or_else(|| {
                out_of_range(format!("gid {} of group {group:?} in /etc/group", g.gid))
            })?
        }
    };

    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for g in groups().filter(|g| g.is_member(name)) {
            let id = checked_id(g.gid).ok_or_else(|| {
                let shown = String::from_utf8_lossy(g.name);
                out_of_range(format!("gid {} of group {shown:?} in /etc/group", g.gid))
            })?;
            if !additional_gids.contains(&id) {
                additional_gids.push(id);
            }
        }
    }

    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
        name: name.and_then(|n| String::from_utf8(n.to_vec()).ok()),
    })
}

// --- the user spec -----------------------------------------------------------

/// One side of `user[:group]`.
#[derive(Debug, PartialEq, Eq)]
enum Arg {
    /// Empty: root for the user side, "from passwd" for the group side.
    Default,
    Id(u32),
    Name(String),
}

#[derive(Debug, PartialEq, Eq)]
struct UserSpec {
    user: Arg,
    /// `None` when there is no `:group` part (or it is empty).
    group: Option<Arg>,
}

impl UserSpec {
    fn parse(text: &str) -> Result<Self, UserError> {
        let invalid = |reason: String| UserError::InvalidSpec {
            user: text.to_owned(),
            reason,
        };
        let (user, group) = match text.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err(invalid(
                    "expected user[:group] but found more than one ':'".into(),
                ))
            }
            Some((user, group)) => (user, Some(group)),
            None => (text, None),
        };
        let arg = |s: &str, what: &str| -> Result<Arg, UserError> {
            if s.is_empty() {
                return Ok(Arg::Default);
            }
            let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
            let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            if !numeric {
                return Ok(Arg::Name(s.to_owned()));
            }
            if digits.len() != s.len() {
                return Err(invalid(format!(
                    "{what} {s:?} is not valid: numeric ids are unsigned decimal numbers (0..={MAX_ID})"
                )));
            }
            // All digits: a number, possibly too large even for u64.
            match s.parse::<u64>().ok().and_then(checked_id) {
                Some(id) => Ok(Arg::Id(id)),
                None => Err(UserError::OutOfRange {
                    user: text.to_owned(),
                    what: format!("{what} {s}"),
                }),
            }
        };
        let user = arg(user, "uid")?;
        let group = match group {
            None | Some("") => None,
            Some(g) => Some(arg(g, "gid")?),
        };
        Ok(UserSpec { user, group })
    }
}

fn checked_id(id: u64) -> Option<u32> {
    u32::try_from(id).ok().filter(|id| *id <= MAX_ID)
}

// --- reading the databases ---------------------------------------------------

fn open_rootfs(rootfs: &Path) -> Result<File, UserError> {
    // The rootfs path itself is Tank's own (trusted); only what is inside it
    // belongs to the image.
    nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|errno| UserError::OpenRootfs {
        rootfs: rootfs.to_owned(),
        source: errno.into(),
    })
}

/// The contents of `file` (an absolute path inside the rootfs), or `None`
/// when it does not exist.
fn read_db(root: &File, file: &'static str) -> Result<Option<Vec<u8>>, UserError> {
    let read_err = |source: io::Error| UserError::Read { file, source };
    let how = OpenHow::new()
        // O_NONBLOCK: opening a FIFO must not wait for a writer. O_NOCTTY:
        // a tty must not become our controlling terminal.
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut attempts = 0;
    let fd = loop {
        // Relative to the rootfs; with RESOLVE_IN_ROOT a leading '/' would
        // mean the rootfs anyway.
        match openat2(root, file.trim_start_matches('/'), how) {
            Ok(fd) => break fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
            // The kernel asks for a retry when a concurrent rename or mount
            // may have raced the in-root resolution.
            Err(Errno::EAGAIN | Errno::EINTR) if attempts < 16 => attempts += 1,
            Err(errno) => return Err(read_err(errno.into())),
        }
    };
    let file_handle = File::from(fd);
    let file_type = file_handle.metadata().map_err(read_err)?.file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_dir() {
            "a directory"
        } else if file_type.is_fifo() {
            "a FIFO"
        } else if file_type.is_socket() {
            "a socket"
        } else if file_type.is_char_device() {
            "a character device"
        } else if file_type.is_block_device() {
            "a block device"
        } else {
            "a special file"
        };
        return Err(UserError::NotRegular { file, kind });
    }
    let mut data = Vec::new();
    file_handle
        .take(MAX_DB_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() as u64 > MAX_DB_BYTES {
        return Err(UserError::TooLarge { file });
    }
    Ok(Some(data))
}

// --- parsing (lenient, like glibc: bad lines are skipped) --------------------

/// The usable lines of a database: trimmed, without blanks, `#` comments
/// and NIS compat entries (`+`/`-`).
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty() && !matches!(l[0], b'#' | b'+' | b'-'))
}

/// A decimal id field; `None` if empty or not all digits. Values beyond
/// u64 saturate (and are out of range anyway).
fn id_field(field: &[u8]) -> Option<u64> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(field.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// `name:password:uid:gid:gecos:home:shell`
#[derive(Debug)]
struct PasswdEntry<'a> {
    name: &'a [u8],
    uid: u64,
    gid: u64,
    home: &'a [u8],
}

fn passwd_entries(data: &[u8]) -> impl Iterator<Item = PasswdEntry<'_>> {
    lines(data).filter_map(|line| {
        let mut fields = line.split(|b| *b == b':');
        let name = fields.next().filter(|n| !n.is_empty())?;
        let _password = fields.next()?;
        let uid = id_field(fields.next()?)?;
        let gid = id_field(fields.next()?)?;
        let _gecos = fields.next();
        let home = fields.next().unwrap_or_default();
        Some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    })
}

/// `name:password:gid:member,member,...`
#[derive(Debug)]
struct GroupEntry<'a> {
    name: &'a [u8],
    gid: u64,
    members: &'a [u8],
}

impl GroupEntry<'_> {
    fn is_member(&self, user: &[u8]) -> bool {
        self.members
            .split(|b| *b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|m| !m.is_empty() && m == user)
    }
}

fn group_entries(data: &[u8]) -> impl Iterator<Item = GroupEntry<'_>> {
    lines(data).filter_map(|line| {
        let mut fields = line.split(|b| *b == b':');
        let name = fields.next().filter(|n| !n.is_empty())?;
        let _password = fields.next()?;
        let gid = id_field(fields.next()?)?;
        let members = fields.next().unwrap_or_default();
        Some(GroupEntry { name, gid, members })
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

  app:x:1000:1000:App User:/home/app:/bin/sh  
broken line without colons
nouid:x::5:::
+nisuser::::::
app:x:7777:7777:shadowed duplicate:/nope:/bin/sh
1234:x:4321:4321:user named like a number:/n:/bin/sh
nohome:x:1001:1001
big:x:4294967295:1:::
biggid:x:1002:2147483647:::
";

    const GROUP: &str = "\
root:x:0:root
wheel:x:10:root,app
staff:x:50: app , other
app:x:1000:
dup:x:10:app
audio:x:63:
huge:x:4294967294:
";

    fn rootfs(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        if let Some(p) = passwd {
            fs::write(dir.path().join("etc/passwd"), p).unwrap();
        }
        if let Some(g) = group {
            fs::write(dir.path().join("etc/group"), g).unwrap();
        }
        dir
    }

    fn std_rootfs() -> tempfile::TempDir {
        rootfs(Some(PASSWD), Some(GROUP))
    }

    fn ok(root: &tempfile::TempDir, user: Option<&str>) -> ResolvedUser {
        resolve_user(root.path(), user).unwrap_or_else(|e| panic!("{user:?}: {e}"))
    }

    fn err(root: &tempfile::TempDir, user: Option<&str>) -> UserError {
        match resolve_user(root.path(), user) {
            Ok(u) => panic!("{user:?} resolved to {u:?}"),
            Err(e) => e,
        }
    }

    fn ids(u: &ResolvedUser) -> (u32, u32, Vec<u32>) {
        (u.uid, u.gid, u.additional_gids.clone())
    }

    // --- forms ---------------------------------------------------------------

    #[test]
    fn default_is_root_with_its_groups() {
        let root = std_rootfs();
        for user in [None, Some("")] {
            let u = ok(&root, user);
            assert_eq!(ids(&u), (0, 0, vec![0, 10]));
            assert_eq!(u.name.as_deref(), Some("root"));
            assert_eq!(u.home.as_deref(), Some(Path::new("/root")));
        }
    }

    #[test]
    fn default_without_files_is_bare_root() {
        let root = rootfs(None, None);
        let u = ok(&root, None);
        assert_eq!(
            u,
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                home: None,
                name: None
            }
        );
    }

    #[test]
    fn name() {
        let u = ok(&std_rootfs(), Some("app"));
        // First match wins; memberships deduplicated (wheel and dup are both 10).
        assert_eq!(ids(&u), (1000, 1000, vec![10, 50]));
        assert_eq!(u.name.as_deref(), Some("app"));
        assert_eq!(u.home.as_deref(), Some(Path::new("/home/app")));
    }

    #[test]
    fn uid_in_passwd() {
        let u = ok(&std_rootfs(), Some("1000"));
        assert_eq!(ids(&u), (1000, 1000, vec![10, 50]));
        assert_eq!(u.name.as_deref(), Some("app"));
    }

    #[test]
    fn numeric_is_always_a_uid() {
        // "1234" is a user *named* 1234 with uid 4321; numeric means uid.
        let u = ok(&std_rootfs(), Some("1234"));
        assert_eq!(ids(&u), (1234, 0, vec![]));
        assert_eq!(u.name, None);
    }

    #[test]
    fn uid_not_in_passwd() {
        let u = ok(&std_rootfs(), Some("5000"));
        assert_eq!(
            u,
            ResolvedUser {
                uid: 5000,
                gid: 0,
                additional_gids: vec![],
                home: None,
                name: None
            }
        );
    }

    #[test]
    fn name_colon_group() {
        let u = ok(&std_rootfs(), Some("app:audio"));
        // Explicit group replaces the primary gid; memberships still apply.
        assert_eq!(ids(&u), (1000, 63, vec![10, 50]));
    }

    #[test]
    fn uid_colon_gid() {
        let root = std_rootfs();
        assert_eq!(ids(&ok(&root, Some("5000:6000"))), (5000, 6000, vec![]));
        assert_eq!(
            ids(&ok(&root, Some("1000:6000"))),
            (1000, 6000, vec![10, 50])
        );
        assert_eq!(ids(&ok(&root, Some("0:0"))), (0, 0, vec![0, 10]));
    }

    #[test]
    fn name_colon_gid() {
        let u = ok(&std_rootfs(), Some("daemon:7"));
        assert_eq!(ids(&u), (1, 7, vec![]));
        assert_eq!(u.home.as_deref(), Some(Path::new("/usr/sbin")));
    }

    #[test]
    fn uid_colon_group() {
        assert_eq!(
            ids(&ok(&std_rootfs(), Some("5000:staff"))),
            (5000, 50, vec![])
        );
    }

    #[test]
    fn empty_sides() {
        let root = std_rootfs();
        // "app:" = "app"; ":staff" = root with group staff; ":" = root.
        assert_eq!(ids(&ok(&root, Some("app:"))), (1000, 1000, vec![10, 50]));
        assert_eq!(ids(&ok(&root, Some(":staff"))), (0, 50, vec![0, 10]));
        assert_eq!(ids(&ok(&root, Some(":"))), (0, 0, vec![0, 10]));
    }

    #[test]
    fn numeric_forms_work_without_files() {
        let root = rootfs(None, None);
        assert_eq!(ids(&ok(&root, Some("1000"))), (1000, 0, vec![]));
        assert_eq!(ids(&ok(&root, Some("1000:1000"))), (1000, 1000, vec![]));
        // And without an etc directory at all.
        let bare = tempfile::tempdir().unwrap();
        assert_eq!(
            ids(&resolve_user(bare.path(), Some("7:8")).unwrap()),
            (7, 8, vec![])
        );
    }

    #[test]
    fn passwd_without_group_file() {
        let root = rootfs(Some(PASSWD), None);
        assert_eq!(ids(&ok(&root, Some("app"))), (1000, 1000, vec![]));
    }

    #[test]
    fn passwd_entry_without_home() {
        let u = ok(&std_rootfs(), Some("nohome"));
        assert_eq!(ids(&u), (1001, 1001, vec![]));
        assert_eq!(u.home, None);
    }

    // --- errors ----------------------------------------------------------------

    #[test]
    fn unknown_name() {
        let e = err(&std_rootfs(), Some("nobody"));
        assert!(matches!(e, UserError::NoSuchUser { .. }));
        assert_eq!(
            e.to_string(),
            r#"user "nobody": no such user "nobody" in the image's /etc/passwd"#
        );
        // Malformed and NIS lines never match.
        for name in ["nouid", "+nisuser", "broken line without colons"] {
            assert!(matches!(
                err(&std_rootfs(), Some(name)),
                UserError::NoSuchUser { .. }
            ));
        }
    }

    #[test]
    fn name_without_passwd() {
        let e = err(&rootfs(None, Some(GROUP)), Some("app:0"));
        assert_eq!(
            e.to_string(),
            r#"user "app:0": the image has no /etc/passwd to look up user "app" in"#
        );
    }

    #[test]
    fn unknown_group() {
        let e = err(&std_rootfs(), Some("app:nogroup"));
        assert_eq!(
            e.to_string(),
            r#"user "app:nogroup": no such group "nogroup" in the image's /etc/group"#
        );
        let e = err(&rootfs(Some(PASSWD), None), Some("1000:staff"));
        assert!(matches!(e, UserError::NoGroupFile { .. }), "{e}");
    }

    #[test]
    fn out_of_range_ids_in_spec() {
        let root = std_rootfs();
        assert_eq!(ids(&ok(&root, Some("2147483646"))), (MAX_ID, 0, vec![]));
        for user in [
            "2147483647",
            "4294967295",
            "4294967296",
            "99999999999999999999999",
            "0:2147483647",
        ] {
            let e = err(&root, Some(user));
            assert!(matches!(e, UserError::OutOfRange { .. }), "{user}: {e}");
        }
        assert_eq!(
            err(&root, Some("4294967295")).to_string(),
            r#"user "4294967295": uid 4294967295 is out of range (allowed: 0..=2147483646)"#
        );
    }

    #[test]
    fn out_of_range_ids_in_files() {
        let root = std_rootfs();
        let e = err(&root, Some("big"));
        assert_eq!(
            e.to_string(),
            r#"user "big": uid 4294967295 of "big" in /etc/passwd is out of range (allowed: 0..=2147483646)"#
        );
        assert_eq!(
            err(&root, Some("biggid")).to_string(),
            r#"user "biggid": gid 2147483647 of "biggid" in /etc/passwd is out of range (allowed: 0..=2147483646)"#
        );
        // An explicit group replaces the bad passwd gid.
        assert_eq!(ids(&ok(&root, Some("biggid:7"))), (1002, 7, vec![]));
        assert!(matches!(
            err(&root, Some("app:huge")),
            UserError::OutOfRange { .. }
        ));
    }

    #[test]
    fn negative_and_garbage_specs() {
        let root = std_rootfs();
        for user in ["-1", "+5", "0:-1", "1000:+0"] {
            let e = err(&root, Some(user));
            assert!(matches!(e, UserError::InvalidSpec { .. }), "{user}: {e}");
        }
        assert_eq!(
            err(&root, Some("-1")).to_string(),
            r#"user "-1": uid "-1" is not valid: numeric ids are unsigned decimal numbers (0..=2147483646)"#
        );
        let e = err(&root, Some("a:b:c"));
        assert_eq!(
            e.to_string(),
            r#"user "a:b:c": expected user[:group] but found more than one ':'"#
        );
        // Anything else non-numeric is a name, looked up (and not found).
        for user in [" 1000", "1e3", "0x10", "app\n", "-", "a\0"] {
            let e = err(&root, Some(user));
            assert!(matches!(e, UserError::NoSuchUser { .. }), "{user:?}: {e}");
        }
    }

    #[test]
    fn missing_rootfs() {
        let e = resolve_user(Path::new("/nonexistent/tank-rootfs"), None).unwrap_err();
        assert!(matches!(e, UserError::OpenRootfs { .. }), "{e}");
    }

    // --- reading safely ----------------------------------------------------------

    const DECOY: &str = "app:x:6666:6666::/decoy:/bin/sh\nroot:x:0:0::/decoy:/bin/sh\n";
    const INSIDE: &str = "app:x:1234:1234::/inside:/bin/sh\n";

    #[test]
    fn absolute_symlink_resolves_inside_the_rootfs() {
        let root = rootfs(None, None);
        fs::create_dir(root.path().join("data")).unwrap();
        fs::write(root.path().join("data/passwd"), INSIDE).unwrap();
        symlink("/data/passwd", root.path().join("etc/passwd")).unwrap();
        assert_eq!(ids(&ok(&root, Some("app"))), (1234, 1234, vec![]));
    }

    #[test]
    fn absolute_symlink_to_a_host_file_never_reads_it() {
        // A real host file with a decoy entry, and a rootfs whose
        // etc/passwd points at its absolute host path.
        let host = tempfile::tempdir().unwrap();
        let decoy = host.path().join("passwd");
        fs::write(&decoy, DECOY).unwrap();
        let root = rootfs(None, None);
        symlink(&decoy, root.path().join("etc/passwd")).unwrap();
        // Inside the rootfs that path does not exist: no passwd at all.
        let e = err(&root, Some("app"));
        assert!(matches!(e, UserError::NoPasswd { .. }), "{e}");
        // And once the same path exists inside the rootfs, that is what is read.
        let inside = root.path().join(decoy.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::write(&inside, INSIDE).unwrap();
        assert_eq!(ids(&ok(&root, Some("app"))), (1234, 1234, vec![]));
    }

    #[test]
    fn symlink_to_hosts_etc_passwd_is_not_followed_out() {
        // etc/passwd -> /etc/passwd is, inside the rootfs, a link to itself.
        let root = rootfs(None, None);
        symlink("/etc/passwd", root.path().join("etc/passwd")).unwrap();
        let e = err(&root, Some("root"));
        assert!(
            matches!(
                e,
                UserError::Read {
                    file: "/etc/passwd",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn relative_escape_is_contained() {
        // host/data/passwd is the decoy the escape would reach; r is the rootfs.
        let host = tempfile::tempdir().unwrap();
        fs::create_dir(host.path().join("data")).unwrap();
        fs::write(host.path().join("data/passwd"), DECOY).unwrap();
        let root = host.path().join("r");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("data")).unwrap();
        fs::write(root.join("data/passwd"), INSIDE).unwrap();
        symlink("../../data/passwd", root.join("etc/passwd")).unwrap();
        // Sanity: followed naively, the link reaches the decoy.
        assert_eq!(fs::read_to_string(root.join("etc/passwd")).unwrap(), DECOY);
        let u = resolve_user(&root, Some("app")).unwrap();
        assert_eq!(ids(&u), (1234, 1234, vec![]));
        // However deep the climb, it stops at the rootfs.
        fs::remove_file(root.join("etc/passwd")).unwrap();
        let escape = "../../../../../../../../../../data/passwd";
        symlink(escape, root.join("etc/passwd")).unwrap();
        assert_eq!(resolve_user(&root, Some("app")).unwrap().uid, 1234);
    }

    #[test]
    fn symlinked_etc_directory_resolves_inside() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("alt")).unwrap();
        fs::write(root.path().join("alt/passwd"), INSIDE).unwrap();
        fs::write(root.path().join("alt/group"), "g:x:77:app\n").unwrap();
        symlink("/alt", root.path().join("etc")).unwrap();
        assert_eq!(ids(&ok(&root, Some("app"))), (1234, 1234, vec![77]));
    }

    /// Runs `resolve_user` on another thread so a hang fails the test.
    fn resolve_with_timeout(root: PathBuf, user: &'static str) -> Result<ResolvedUser, UserError> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(resolve_user(&root, Some(user)));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("resolve_user hung")
    }

    #[test]
    fn fifo_is_refused_without_hanging() {
        let root = rootfs(None, None);
        nix::unistd::mkfifo(
            &root.path().join("etc/passwd"),
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let e = resolve_with_timeout(root.path().to_owned(), "app").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the image's /etc/passwd is a FIFO, not a regular file"
        );
        // Also for the group file, and through a symlink.
        let root = rootfs(Some(PASSWD), None);
        nix::unistd::mkfifo(&root.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        symlink("/fifo", root.path().join("etc/group")).unwrap();
        let e = resolve_with_timeout(root.path().to_owned(), "app").unwrap_err();
        assert!(
            matches!(
                e,
                UserError::NotRegular {
                    file: "/etc/group",
                    kind: "a FIFO"
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn directory_is_refused() {
        let root = rootfs(None, None);
        fs::create_dir(root.path().join("etc/passwd")).unwrap();
        let e = err(&root, Some("1000"));
        assert_eq!(
            e.to_string(),
            "the image's /etc/passwd is a directory, not a regular file"
        );
    }

    #[test]
    fn huge_file_is_refused() {
        let root = rootfs(None, None);
        let f = File::create(root.path().join("etc/passwd")).unwrap();
        f.set_len(MAX_DB_BYTES + 1).unwrap(); // sparse
        let e = err(&root, Some("0"));
        assert!(matches!(e, UserError::TooLarge { .. }), "{e}");
        // Exactly the limit is fine.
        f.set_len(MAX_DB_BYTES).unwrap();
        assert_eq!(ids(&ok(&root, Some("0"))), (0, 0, vec![]));
    }

    #[test]
    fn etc_as_a_file_means_no_databases() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("etc"), "not a dir").unwrap();
        assert_eq!(ids(&ok(&root, Some("5:6"))), (5, 6, vec![]));
        assert!(matches!(
            err(&root, Some("app")),
            UserError::NoPasswd { .. }
        ));
    }

    // --- parsing -----------------------------------------------------------------

    #[test]
    fn lenient_parsing() {
        let passwd =
            b"\r\n#c\nok:x:1:2:g:/h:/s\r\nshort:x:3\nneg:x:-1:0:::\n:x:9:9:::\nmin:x:4:5\n";
        let names: Vec<_> = passwd_entries(passwd).map(|e| e.name).collect();
        assert_eq!(names, [&b"ok"[..], b"min"]);
        let e = passwd_entries(passwd).next().unwrap();
        assert_eq!((e.uid, e.gid, e.home), (1, 2, &b"/h"[..]));

        let group = b"g1:x:5\ng2:x:6:a,b\nbad:x:z:a\ng3::7:,,b,\n";
        let gids: Vec<_> = group_entries(group)
            .filter(|g| g.is_member(b"b"))
            .map(|g| g.gid)
            .collect();
        assert_eq!(gids, [6, 7]);
        assert!(!group_entries(group).any(|g| g.is_member(b"")));
    }

    #[test]
    fn non_utf8_names_resolve_by_uid() {
        let root = rootfs(None, None);
        fs::write(root.path().join("etc/passwd"), b"\xff\xfe:x:42:42::/h:/s\n").unwrap();
        fs::write(root.path().join("etc/group"), b"g:x:99:\xff\xfe\n").unwrap();
        let u = ok(&root, Some("42"));
        assert_eq!(ids(&u), (42, 42, vec![99]));
        assert_eq!(u.name, None);
    }
}
