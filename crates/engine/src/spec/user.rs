//! The container's user: CRI `run_as_*` over the image `User`, names resolved through the
//! container rootfs' `/etc/passwd` and `/etc/group` (opened with `openat2(RESOLVE_IN_ROOT)` so a
//! symlink cannot reach the host's files), and the additional gids (containerd's rules).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::error::SpecError;
use super::input::{SecurityContext, SupplementalGroupsPolicy};

/// Bigger passwd/group files are truncated: they are parsed, not trusted.
const MAX_FILE: u64 = 16 << 20;

/// The resolved `process.user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Sorted, unique, includes `gid`.
    pub additional_gids: Vec<u32>,
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Lazily read user databases of one rootfs.
struct Rootfs<'a> {
    path: &'a Path,
    users: Option<Option<Vec<Passwd>>>,
    groups: Option<Option<Vec<Group>>>,
}

impl<'a> Rootfs<'a> {
    fn new(path: &'a Path) -> Self {
        Rootfs {
            path,
            users: None,
            groups: None,
        }
    }

    fn read(&self, rel: &'static str) -> Result<Option<String>, SpecError> {
        read_in_root(self.path, rel).map_err(|source| SpecError::ReadRootfsFile {
            rootfs: self.path.to_path_buf(),
            file: rel,
            source,
        })
    }

    /// `None` when the image has no `/etc/passwd`.
    fn users(&mut self) -> Result<Option<&[Passwd]>, SpecError> {
        if self.users.is_none() {
            let parsed = self.read("etc/passwd")?.map(|s| parse_passwd(&s));
            self.users = Some(parsed);
        }
        Ok(self.users.as_ref().and_then(|u| u.as_deref()))
    }

    /// `None` when the image has no `/etc/group`.
    fn groups(&mut self) -> Result<Option<&[Group]>, SpecError> {
        if self.groups.is_none() {
            let parsed = self.read("etc/group")?.map(|s| parse_group(&s));
            self.groups = Some(parsed);
        }
        Ok(self.groups.as_ref().and_then(|g| g.as_deref()))
    }

    fn user_by_name(&mut self, name: &str) -> Result<&Passwd, SpecError> {
        self.users()?
            .and_then(|us| us.iter().find(|u| u.name == name))
            .ok_or_else(|| SpecError::UserNotFound {
                name: name.to_string(),
            })
    }

    fn user_by_uid(&mut self, uid: u32) -> Result<Option<&Passwd>, SpecError> {
        Ok(self
            .users()?
            .and_then(|us| us.iter().find(|u| u.uid == uid)))
    }

    fn gid_by_name(&mut self, name: &str) -> Result<u32, SpecError> {
        self.groups()?
            .and_then(|gs| gs.iter().find(|g| g.name == name))
            .map(|g| g.gid)
            .ok_or_else(|| SpecError::GroupNotFound {
                name: name.to_string(),
            })
    }
}

/// Opens `rel` below `rootfs` with every path component, symlinks and `..` resolved as if
/// `rootfs` were `/`. `Ok(None)` if it does not exist; an error if it is not a regular file.
fn read_in_root(rootfs: &Path, rel: &str) -> io::Result<Option<String>> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = match rustix::fs::openat2(
        &root,
        rel,
        // NONBLOCK: a FIFO planted at /etc/passwd must not hang the daemon.
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(e) if e == rustix::io::Errno::NOENT => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut buf = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut buf)?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn parse_passwd(s: &str) -> Vec<Passwd> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            Some(Passwd {
                name: (*f.first()?).to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(s: &str) -> Vec<Group> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            Some(Group {
                name: (*f.first()?).to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A uid or gid as the OCI runtimes accept it (`0..=i32::MAX`), `None` if not numeric.
fn numeric_id(s: &str, user: &str, what: &'static str) -> Result<Option<u32>, SpecError> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(v) if (0..=i64::from(i32::MAX)).contains(&v) => Ok(u32::try_from(v).ok()),
        _ => Err(SpecError::InvalidUser {
            user: user.to_string(),
            reason: what,
        }),
    }
}

/// CRI's user string (containerd's `GenerateUserString`): username or uid, `:gid` appended.
fn cri_user_string(sc: &SecurityContext) -> Result<String, SpecError> {
    let mut user = sc.run_as_user.map(|u| u.to_string()).unwrap_or_default();
    if !sc.run_as_username.is_empty() {
        user = sc.run_as_username.clone();
    }
    match (user.is_empty(), sc.run_as_group) {
        (true, Some(gid)) => Err(SpecError::GroupWithoutUser { gid }),
        (true, None) => Ok(String::new()),
        (false, Some(gid)) => Ok(format!("{user}:{gid}")),
        (false, None) => Ok(user),
    }
}

/// containerd's `oci.WithUser`: `uid`, `name`, `uid:gid`, `name:group`, `uid:group`,
/// `name:gid`. A numeric uid absent from passwd gets gid 0; an unknown name is an error.
fn with_user(fs: &mut Rootfs<'_>, userstr: &str) -> Result<(u32, u32), SpecError> {
    let parts: Vec<&str> = userstr.split(':').collect();
    match parts.as_slice() {
        [user] => match numeric_id(user, userstr, "uid out of range")? {
            Some(uid) => Ok((uid, fs.user_by_uid(uid)?.map(|u| u.gid).unwrap_or(0))),
            None => {
                let u = fs.user_by_name(user)?;
                Ok((u.uid, u.gid))
            }
        },
        [user, group] => {
            let uid = match numeric_id(user, userstr, "uid out of range")? {
                Some(uid) => uid,
                None => fs.user_by_name(user)?.uid,
            };
            let gid = match numeric_id(group, userstr, "gid out of range")? {
                Some(gid) => gid,
                None => fs.gid_by_name(group)?,
            };
            Ok((uid, gid))
        }
        _ => Err(SpecError::InvalidUser {
            user: userstr.to_string(),
            reason: "want user, uid, user:group or uid:gid",
        }),
    }
}

/// Groups of `/etc/group` that list the user (not counting a group named like the user).
fn member_gids(fs: &mut Rootfs<'_>, userstr: &str) -> Result<Vec<u32>, SpecError> {
    let name = match userstr.parse::<u32>() {
        Ok(uid) => match fs.user_by_uid(uid)? {
            Some(u) => u.name.clone(),
            None => return Ok(Vec::new()),
        },
        Err(_) => userstr.to_string(),
    };
    Ok(fs
        .groups()?
        .map(|gs| {
            gs.iter()
                .filter(|g| g.name != name && g.members.contains(&name))
                .map(|g| g.gid)
                .collect()
        })
        .unwrap_or_default())
}

/// Resolves `process.user` as containerd does for a CRI container.
pub(crate) fn resolve(
    rootfs: &Path,
    sc: &SecurityContext,
    image_user: Option<&str>,
) -> Result<ResolvedUser, SpecError> {
    let image_user = image_user.unwrap_or("");
    let mut fs = Rootfs::new(rootfs);
    let mut userstr = cri_user_string(sc)?;
    if userstr.is_empty() {
        userstr = image_user.to_string();
    }
    let (uid, gid) = if userstr.is_empty() {
        (0, 0)
    } else {
        with_user(&mut fs, &userstr)?
    };

    let mut gids = vec![gid];
    if sc.supplemental_groups_policy == SupplementalGroupsPolicy::Merge {
        let who = if !sc.run_as_username.is_empty() {
            sc.run_as_username.clone()
        } else if let Some(uid) = sc.run_as_user {
            uid.to_string()
        } else if !image_user.is_empty() {
            image_user.split(':').next().unwrap_or("").to_string()
        } else {
            "0".to_string()
        };
        gids.extend(member_gids(&mut fs, &who)?);
    }
    for g in &sc.supplemental_groups {
        gids.push(u32::try_from(*g).map_err(|_| SpecError::InvalidSupplementalGroup { gid: *g })?);
    }
    gids.sort_unstable();
    gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: gids,
    })
}

#[cfg(test)]
#[path = "user_tests.rs"]
mod tests;
