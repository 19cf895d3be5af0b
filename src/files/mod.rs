//! Files that are re-read when they change, without `nginx -s reload` (allowlists, quota
//! overrides).
//!
//! Each worker keeps the last good version. At most once per second (per worker, per file) a
//! request that needs the file `stat()`s it; only when its identity, size or modification time
//! changed is it read and parsed again. A file that is broken or gone keeps the last good version
//! in force, and the failure is logged once (again only when the file changes again).

use core::cell::{Ref, RefCell};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

use gpt_auth_core::allowlist::Allowlist;
use gpt_auth_core::quota::Overrides;
use gpt_auth_core::revocations::Revocations;
use nginx_sys::ngx_log_t;

use crate::ngx::conf::io_reason;
use crate::ngx::ConfError;

/// Why a watched file could not be taken in. `Display` names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{what} \"{path}\" {}", io_reason(.source))]
    Io { what: &'static str, path: String, source: std::io::Error },
    #[error("{what} \"{path}\" changed while being read")]
    Changed { what: &'static str, path: String },
    #[error("{what} \"{path}\": not valid UTF-8 text")]
    NotText { what: &'static str, path: String },
    #[error("{what} \"{path}\": {reason}")]
    Invalid { what: &'static str, path: String, reason: String },
    #[error("{what} \"{path}\" is empty (0 bytes: more likely truncated than meant; a list that allows nobody holds a comment line)")]
    Empty { what: &'static str, path: String },
}

impl From<FileError> for ConfError {
    fn from(e: FileError) -> ConfError {
        ConfError::Invalid(e.to_string())
    }
}

/// A file format that can be watched.
pub trait Parse: Sized {
    /// What the file is, for messages ("allowlist").
    const WHAT: &'static str;
    fn parse(text: &str) -> Result<Self, String>;
    /// Number of entries, for messages.
    fn entries(&self) -> usize;
    /// Whether the version lets no one through (said at `warn` when re-read so).
    fn admits_nobody(&self) -> bool {
        false
    }
    /// Whether a re-read file of 0 bytes is taken as broken (an allowlist emptied that way is
    /// far more likely truncated, or caught while being written, than a decision to lock
    /// everyone out). A file that holds something but no entries (comments, blank lines) is a
    /// list of nobody, and is taken.
    const REFUSE_EMPTY_REREAD: bool = false;
}

impl Parse for Allowlist {
    const WHAT: &'static str = "allowlist";
    const REFUSE_EMPTY_REREAD: bool = true;

    fn parse(text: &str) -> Result<Self, String> {
        Allowlist::parse(text).map_err(|e| e.to_string())
    }

    fn entries(&self) -> usize {
        self.len()
    }

    fn admits_nobody(&self) -> bool {
        Allowlist::admits_nobody(self)
    }
}

impl Parse for Revocations {
    const WHAT: &'static str = "revocation list";

    fn parse(text: &str) -> Result<Self, String> {
        Revocations::parse(text).map_err(|e| e.to_string())
    }

    fn entries(&self) -> usize {
        self.len()
    }
}

impl Parse for gpt_auth_core::usage::price::PriceTable {
    const WHAT: &'static str = "price table";

    fn parse(text: &str) -> Result<Self, String> {
        Self::parse(text).map_err(|e| e.to_string())
    }

    fn entries(&self) -> usize {
        self.len()
    }
}

impl Parse for Overrides {
    const WHAT: &'static str = "quota overrides";

    fn parse(text: &str) -> Result<Self, String> {
        Overrides::parse(text).map_err(|e| e.to_string())
    }

    fn entries(&self) -> usize {
        self.len()
    }
}

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileSig {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    /// Permissions: a file made (un)readable is a new version to (re)try.
    mode: u32,
}

impl FileSig {
    fn of(meta: &fs::Metadata) -> FileSig {
        FileSig {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            mode: meta.mode(),
        }
    }
}

#[derive(Debug)]
struct State<T> {
    value: T,
    /// Signature of the file `value` was read from.
    sig: FileSig,
    /// Second of the last `stat()`.
    checked_at: u64,
    /// Set while the file is broken or missing: what was last reported, so it is logged once.
    failing: Option<Option<FileSig>>,
    /// Counts the versions this worker has taken in.
    version: u64,
}

/// One watched file, shared by every location that names it.
#[derive(Debug)]
pub struct Watched<T> {
    path: String,
    state: RefCell<State<T>>,
}

pub type WatchedAllowlist = Watched<Allowlist>;
pub type WatchedRevocations = Watched<Revocations>;

impl<T: Parse> Watched<T> {
    /// Reads the file at configuration time; any problem is an error for `nginx -t`.
    pub fn load(path: &str) -> Result<Watched<T>, FileError> {
        let (value, sig) = read::<T>(path)?;
        Ok(Watched {
            path: path.to_owned(),
            state: RefCell::new(State { value, sig, checked_at: 0, failing: None, version: 0 }),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The current version, re-reading the file first if it is due and changed.
    pub fn get(&self, now: u64, log: *mut ngx_log_t) -> Ref<'_, T> {
        self.refresh(now, log);
        Ref::map(self.state.borrow(), |s| &s.value)
    }

    /// Checks the file now (in a worker at start-up): logs if it cannot be read by this process.
    pub fn check_readable(&self, log: *mut ngx_log_t) {
        if let Err(e) = fs::File::open(&self.path) {
            warn!(
                log,
                "{} \"{}\" is not readable by the worker process {}: changes to it will not \
                 be picked up until the file is readable",
                T::WHAT,
                self.path,
                io_reason(&e)
            );
        }
    }

    fn refresh(&self, now: u64, log: *mut ngx_log_t) {
        let Ok(mut st) = self.state.try_borrow_mut() else { return };
        if st.checked_at == now {
            return;
        }
        st.checked_at = now;

        let sig = match fs::metadata(&self.path) {
            Ok(meta) => FileSig::of(&meta),
            Err(e) => {
                if st.failing != Some(None) {
                    st.failing = Some(None);
                    error!(
                        log,
                        "{} \"{}\" {}; keeping the last good list ({} entries)",
                        T::WHAT,
                        self.path,
                        io_reason(&e),
                        st.value.entries()
                    );
                }
                return;
            }
        };
        if sig == st.sig || st.failing == Some(Some(sig)) {
            return;
        }
        let result = read::<T>(&self.path).and_then(|(value, read_sig)| {
            if T::REFUSE_EMPTY_REREAD && read_sig.size == 0 {
                return Err(FileError::Empty { what: T::WHAT, path: self.path.clone() });
            }
            Ok((value, read_sig))
        });
        match result {
            Ok((value, read_sig)) => {
                if value.admits_nobody() {
                    warn!(
                        log,
                        "{} \"{}\" re-read: {} entries (was {}): it allows nobody",
                        T::WHAT,
                        self.path,
                        value.entries(),
                        st.value.entries()
                    );
                } else {
                    notice!(
                        log,
                        "{} \"{}\" re-read: {} entries (was {})",
                        T::WHAT,
                        self.path,
                        value.entries(),
                        st.value.entries()
                    );
                }
                st.value = value;
                st.sig = read_sig;
                st.failing = None;
                st.version += 1;
            }
            Err(e) => {
                st.failing = Some(Some(sig));
                error!(log, "{}; keeping the last good list ({} entries)", e, st.value.entries());
            }
        }
    }
}

/// The watched file `name` (relative to the configuration), loaded once per configuration
/// however many directives name it: `lists` picks the main configuration's list of that kind.
pub fn shared<T: Parse>(
    cf: &mut nginx_sys::ngx_conf_t,
    name: &[u8],
    lists: fn(&mut crate::conf::MainConf) -> &mut Vec<Rc<Watched<T>>>,
) -> Result<Rc<Watched<T>>, ConfError> {
    use crate::ngx::NgxConfExt;
    use ngx::http::HttpModuleMainConf;
    let path = cf.full_path(name)?;
    let mcf = crate::GptAuthModule::main_conf_mut(cf).ok_or(ConfError::NoHttp)?;
    if let Some(w) = lists(mcf).iter().find(|w| w.path() == path) {
        return Ok(w.clone());
    }
    let w = Rc::new(Watched::<T>::load(&path)?);
    warn_if_unreadable_by_workers(cf, T::WHAT, &path);
    let mcf = crate::GptAuthModule::main_conf_mut(cf).ok_or(ConfError::NoHttp)?;
    lists(mcf).push(w.clone());
    Ok(w)
}

impl Watched<Revocations> {
    /// Whether the session of `email` issued at `iat` is revoked, re-reading the file first if
    /// it is due and changed.
    pub fn revokes(&self, email: &[u8], iat: u64, now: u64, log: *mut ngx_log_t) -> bool {
        self.get(now, log).revokes(email, iat)
    }
}

impl Watched<Allowlist> {
    /// Whether `email` is on the list, re-reading the file first if it is due and changed.
    pub fn allows(&self, email: &[u8], now: u64, log: *mut ngx_log_t) -> bool {
        self.get(now, log).allows_bytes(email)
    }

    /// This file's identity and current version (re-reading it first if due): an answer
    /// remembered for the same identity and version is still right.
    pub fn version(&self, now: u64, log: *mut ngx_log_t) -> (usize, u64) {
        self.refresh(now, log);
        (self as *const Self as usize, self.state.borrow().version)
    }
}

/// Reads and parses the file; the signature is taken before reading and checked after, so a
/// file caught in the middle of being rewritten is not taken as good.
fn read<T: Parse>(path: &str) -> Result<(T, FileSig), FileError> {
    let what = T::WHAT;
    let fail = |source| FileError::Io { what, path: path.to_owned(), source };
    let before = fs::metadata(path).map_err(fail)?;
    let text = fs::read(path).map_err(fail)?;
    let after = fs::metadata(path).map_err(fail)?;
    let sig = FileSig::of(&before);
    if sig != FileSig::of(&after) {
        return Err(FileError::Changed { what, path: path.to_owned() });
    }
    let text =
        String::from_utf8(text).map_err(|_| FileError::NotText { what, path: path.to_owned() })?;
    let value = T::parse(&text).map_err(|reason| FileError::Invalid {
        what,
        path: path.to_owned(),
        reason,
    })?;
    Ok((value, sig))
}

/// Whether the permission bits `bits` (4 read, 2 write, 1 search) of `meta` apply to the user
/// `uid` with primary group `gid` (supplementary groups are not considered).
fn allows(meta: &fs::Metadata, uid: u32, gid: u32, bits: u32) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    let shift = if meta.uid() == uid {
        6
    } else if meta.gid() == gid {
        3
    } else {
        0
    };
    (mode >> shift) & bits == bits
}

/// Search permission on every directory above `path`.
fn ancestors_searchable(path: &std::path::Path, uid: u32, gid: u32) -> Result<(), String> {
    for dir in path.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
        let meta = fs::metadata(dir).map_err(|e| io_reason(&e))?;
        if !allows(&meta, uid, gid, 0o1) {
            return Err(format!("directory \"{}\" is not searchable for it", dir.display()));
        }
    }
    Ok(())
}

fn mode_text(meta: &fs::Metadata) -> String {
    use std::os::unix::fs::PermissionsExt;
    format!("mode {:o}, owner {}:{}", meta.permissions().mode() & 0o777, meta.uid(), meta.gid())
}

/// Whether the user `uid` (primary group `gid`) can read `path`. `Err` names the obstacle.
pub fn readable_by(path: &str, uid: u32, gid: u32) -> Result<(), String> {
    if uid == 0 {
        return Ok(());
    }
    let p = std::path::Path::new(path);
    ancestors_searchable(p, uid, gid)?;
    let meta = fs::metadata(p).map_err(|e| io_reason(&e))?;
    if !allows(&meta, uid, gid, 0o4) {
        return Err(mode_text(&meta));
    }
    Ok(())
}

/// Whether the user can create files in the directory `dir`.
pub fn writable_dir_by(dir: &str, uid: u32, gid: u32) -> Result<(), String> {
    if uid == 0 {
        return Ok(());
    }
    let p = std::path::Path::new(dir);
    ancestors_searchable(p, uid, gid)?;
    let meta = fs::metadata(p).map_err(|e| io_reason(&e))?;
    if !allows(&meta, uid, gid, 0o3) {
        return Err(mode_text(&meta));
    }
    Ok(())
}

/// At `nginx -t`: warns when the workers will not be able to re-read a watched file (they
/// would keep the version read now and never see a change).
pub fn warn_if_unreadable_by_workers(cf: &nginx_sys::ngx_conf_t, what: &str, path: &str) {
    let Some((uid, gid)) = crate::ngx::conf::worker_user(cf) else { return };
    if let Err(why) = readable_by(path, uid, gid) {
        warn!(
            cf,
            "{} \"{}\" is not readable by the worker user (uid {}): {}; workers will not pick \
             up changes to it until it is",
            what,
            path,
            uid,
            why
        );
    }
}
