//! Credentials of the workload: supplementary groups, gid, uid and
//! capabilities.
//!
//! Order (runc's): the bounding set is reduced first, while we still hold
//! every capability (CAP_SETPCAP is needed to drop from it); then the
//! groups and ids; then the process sets. A root (uid 0) workload keeps the
//! plan's capabilities as effective and permitted; any other uid ends with
//! empty effective/permitted sets (no PR_SET_KEEPCAPS: the kernel clears
//! them on the switch away from uid 0, and we clear them again to be sure).
//! Inheritable and ambient are always empty: an inheritable set would hand
//! the capabilities to any file with inheritable file capabilities run by
//! a non-root user in the container (CVE-2022-24769; Docker ≥ 20.10.14 and
//! containerd ≥ 1.6.2 leave it empty too).

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use super::{failed, Step};
use crate::image::user::ResolvedUser;

/// The capabilities named in the plan (`CAP_CHOWN`, also `chown`).
pub(crate) fn capability_set(names: &[String]) -> Step<CapsHashSet> {
    names
        .iter()
        .map(|name| {
            caps::to_canonical(name)
                .parse::<Capability>()
                .map_err(|_| format!("capability {name:?}: unknown"))
        })
        .collect()
}

/// The kernel bit mask of a capability set (as in `/proc/<pid>/status`).
pub(crate) fn capability_mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |mask, cap| mask | cap.bitmask())
}

/// Switches to `user` with `keep` as the bounding set (and, for uid 0, the
/// effective and permitted sets).
pub(super) fn switch_user(user: &ResolvedUser, keep: &CapsHashSet) -> Step<()> {
    drop_bounding(capability_mask(keep))?;
    let caps_err = |what: &str| {
        let what = what.to_owned();
        move |e: caps::errors::CapsError| format!("capabilities: {what}: {e}")
    };
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clear inheritable"))?;

    let groups: Vec<Gid> = user
        .additional_gids
        .iter()
        .copied()
        .map(Gid::from_raw)
        .collect();
    setgroups(&groups)
        .map_err(|e| failed("setgroups", format!("{:?}", user.additional_gids), e))?;
    let gid = Gid::from_raw(user.gid);
    setresgid(gid, gid, gid).map_err(|e| failed("setresgid", user.gid, e))?;
    let uid = Uid::from_raw(user.uid);
    setresuid(uid, uid, uid).map_err(|e| failed("setresuid", user.uid, e))?;

    if user.uid == 0 {
        // Effective first (a subset of the still full permitted set), then
        // permitted (which must keep containing effective).
        caps::set(None, CapSet::Effective, keep).map_err(caps_err("set effective"))?;
        caps::set(None, CapSet::Permitted, keep).map_err(caps_err("set permitted"))?;
    } else {
        caps::clear(None, CapSet::Effective).map_err(caps_err("clear effective"))?;
        caps::clear(None, CapSet::Permitted).map_err(caps_err("clear permitted"))?;
    }
    Ok(())
}

/// Drops every capability not in `keep` from the bounding set, including
/// ones newer than the `caps` crate knows (up to the kernel's last).
fn drop_bounding(keep: u64) -> Step<()> {
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes plain integers.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                libc::c_ulong::from(cap),
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc < 0 {
            match Errno::last() {
                // Past the kernel's last capability.
                Errno::EINVAL => break,
                e => {
                    return Err(failed(
                        "drop from the bounding set",
                        format!("capability {cap}"),
                        e,
                    ))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::plan::DEFAULT_CAPABILITIES;

    #[test]
    fn docker_default_mask() {
        let names: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        let set = capability_set(&names).unwrap();
        assert_eq!(capability_mask(&set), 0x0000_0000_a804_25fb);
    }

    #[test]
    fn names() {
        let set = capability_set(&["chown".into(), "CAP_SYS_ADMIN".into()]).unwrap();
        assert_eq!(capability_mask(&set), (1 << 0) | (1 << 21));
        assert_eq!(
            capability_set(&["CAP_NOPE".into()]).unwrap_err(),
            r#"capability "CAP_NOPE": unknown"#
        );
        assert_eq!(capability_mask(&CapsHashSet::new()), 0);
    }
}
