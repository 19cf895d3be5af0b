//! Allowlist files that are re-read when they change, without `nginx -s reload`.
//!
//! Each worker keeps the last good list. At most once per second (per worker, per file) a request
//! that needs the list `stat()`s the file; only when its identity, size or modification time
//! changed is it read and parsed again. A file that is broken or gone keeps the last good list
//! in force, and the failure is logged once (again only when the file changes again).

use core::cell::RefCell;
use std::fs;
use std::os::unix::fs::MetadataExt;

use gpt_auth_core::allowlist::Allowlist;
use nginx_sys::ngx_log_t;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileSig {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileSig {
    fn of(meta: &fs::Metadata) -> FileSig {
        FileSig {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

#[derive(Debug)]
struct State {
    list: Allowlist,
    /// Signature of the file `list` was read from.
    sig: FileSig,
    /// Second of the last `stat()`.
    checked_at: u64,
    /// Set while the file is broken or missing: what was last reported, so it is logged once.
    failing: Option<Option<FileSig>>,
}

/// One allowlist file, shared by every location that names it.
#[derive(Debug)]
pub struct WatchedAllowlist {
    path: String,
    state: RefCell<State>,
}

impl WatchedAllowlist {
    /// Reads the file at configuration time; any problem is an error for `nginx -t`.
    pub fn load(path: &str) -> Result<WatchedAllowlist, String> {
        let (list, sig) = read(path)?;
        Ok(WatchedAllowlist {
            path: path.to_owned(),
            state: RefCell::new(State { list, sig, checked_at: 0, failing: None }),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.state.borrow().list.len()
    }

    /// Whether `email` is on the list, re-reading the file first if it is due and changed.
    pub fn allows(&self, email: &str, now: u64, log: *mut ngx_log_t) -> bool {
        self.refresh(now, log);
        self.state.borrow().list.allows(email)
    }

    /// Checks the file now (in a worker at start-up): logs if it cannot be read by this process.
    pub fn check_readable(&self, log: *mut ngx_log_t) {
        if let Err(e) = fs::File::open(&self.path) {
            warn!(
                log,
                "allowlist \"{}\" is not readable by the worker process ({}): changes to it \
                 will not be picked up until the file is readable",
                self.path,
                crate::log::io_reason(&e)
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
                        "allowlist \"{}\": {}; keeping the last good list ({} entries)",
                        self.path,
                        crate::log::io_reason(&e),
                        st.list.len()
                    );
                }
                return;
            }
        };
        if sig == st.sig || st.failing == Some(Some(sig)) {
            return;
        }
        match read(&self.path) {
            Ok((list, read_sig)) => {
                notice!(
                    log,
                    "allowlist \"{}\" re-read: {} entries (was {})",
                    self.path,
                    list.len(),
                    st.list.len()
                );
                st.list = list;
                st.sig = read_sig;
                st.failing = None;
            }
            Err(e) => {
                st.failing = Some(Some(sig));
                error!(log, "{}; keeping the last good list ({} entries)", e, st.list.len());
            }
        }
    }
}

/// Reads and parses the file; the signature is taken before reading and checked after, so a
/// file caught in the middle of being rewritten is not taken as good.
fn read(path: &str) -> Result<(Allowlist, FileSig), String> {
    let fail = |e: std::io::Error| format!("allowlist \"{path}\": {}", crate::log::io_reason(&e));
    let before = fs::metadata(path).map_err(fail)?;
    let text = fs::read(path).map_err(fail)?;
    let after = fs::metadata(path).map_err(fail)?;
    let sig = FileSig::of(&before);
    if sig != FileSig::of(&after) {
        return Err(format!("allowlist \"{path}\" changed while being read"));
    }
    let text = String::from_utf8(text)
        .map_err(|_| format!("allowlist \"{path}\": not valid UTF-8 text"))?;
    let list = Allowlist::parse(&text).map_err(|e| format!("allowlist \"{path}\": {e}"))?;
    Ok((list, sig))
}
