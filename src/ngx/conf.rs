//! Configuration-time helpers: directive arguments, where a directive was written, paths relative
//! to the configuration prefix, sizes, shared zones and our own `{ }` blocks with nested command
//! tables; and [`ConfError`], the error every directive handler returns.

use core::ffi::{c_char, c_void, CStr};
use core::{fmt, ptr};
use std::io;

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_complex_value_t, ngx_int_t, ngx_module_t, ngx_shm_zone_t,
    ngx_str_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_LOG_EMERG, NGX_LOG_WARN, NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};

/// Why a directive was refused. `Display` is the reason as `nginx -t` shows it after the
/// directive's name (nginx appends the file and line).
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("is duplicate")]
    Duplicate,
    #[error("{0}")]
    Invalid(String),
    /// A file that cannot be read, with the system's reason as nginx words it.
    #[error("cannot read \"{path}\" {}", io_reason(.source))]
    Read { path: String, source: io::Error },
    #[error("cannot resolve the path \"{0}\"")]
    Path(String),
    #[error("has no http configuration")]
    NoHttp,
    #[error("cannot allocate memory")]
    NoMemory,
    /// Already logged (by one of nginx's own slot setters, say).
    #[error("")]
    Logged,
}

impl ConfError {
    pub fn invalid(msg: impl fmt::Display) -> ConfError {
        ConfError::Invalid(msg.to_string())
    }
}

impl From<String> for ConfError {
    fn from(s: String) -> ConfError {
        ConfError::Invalid(s)
    }
}

/// An I/O error as nginx words them: errno and the system's message, as in
/// `(13: Permission denied)`, instead of Rust's "Permission denied (os error 13)".
pub fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    let text = s.rfind(" (os error ").map_or(s.as_str(), |i| &s[..i]);
    match e.raw_os_error() {
        Some(errno) => format!("({errno}: {text})"),
        None => format!("({text})"),
    }
}

/// Where a directive was written, to point later `nginx -t` errors (found when the
/// configuration is merged) at it.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What a directive handler needs from `ngx_conf_t`.
pub trait NgxConfExt {
    /// The directive's words; `args()[0]` is its name.
    fn args(&self) -> &[ngx_str_t];
    /// The arguments after the name, as (lossy) UTF-8.
    fn arg_strings(&self) -> Vec<String>;
    /// `file:line` of the directive being parsed.
    fn source(&self) -> Source;
    /// `path` resolved against the configuration prefix, as nginx does for its own files.
    fn full_path(&mut self, path: &[u8]) -> Result<String, ConfError>;
    /// Logs at `emerg` with the file and line appended (for `nginx -t`).
    fn emerg(&self, msg: fmt::Arguments<'_>);
    /// Logs at `warn` with the file and line appended.
    fn warn(&self, msg: fmt::Arguments<'_>);
}

impl NgxConfExt for ngx_conf_t {
    fn args(&self) -> &[ngx_str_t] {
        // SAFETY: while a directive is parsed, `args` is an array of ngx_str_t.
        unsafe { self.args.as_ref().map(|a| a.as_slice()).unwrap_or_default() }
    }

    fn arg_strings(&self) -> Vec<String> {
        self.args().iter().skip(1).map(|a| a.to_string()).collect()
    }

    fn source(&self) -> Source {
        // SAFETY: `conf_file` is NULL or the file being parsed.
        match unsafe { self.conf_file.as_ref() } {
            Some(f) => Source {
                file: String::from_utf8_lossy(f.file.name.as_bytes()).into_owned(),
                line: f.line,
            },
            None => Source::default(),
        }
    }

    fn full_path(&mut self, path: &[u8]) -> Result<String, ConfError> {
        let mut s = ngx_str_t { len: path.len(), data: path.as_ptr().cast_mut() };
        // SAFETY: ngx_conf_full_name allocates the result from the cycle pool and only reads
        // the original bytes.
        let rc = unsafe { nginx_sys::ngx_conf_full_name(self.cycle, &mut s, 1) };
        if rc != NGX_OK as ngx_int_t {
            return Err(ConfError::Path(String::from_utf8_lossy(path).into_owned()));
        }
        Ok(String::from_utf8_lossy(s.as_bytes()).into_owned())
    }

    fn emerg(&self, msg: fmt::Arguments<'_>) {
        let cf = ptr::from_ref(self).cast_mut();
        ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", msg);
    }

    fn warn(&self, msg: fmt::Arguments<'_>) {
        let cf = ptr::from_ref(self).cast_mut();
        ngx::ngx_conf_log_error!(NGX_LOG_WARN, cf, "{}", msg);
    }
}

/// Reads a file named in the configuration (relative to the prefix).
pub fn read_conf_file(cf: &mut ngx_conf_t, name: &[u8]) -> Result<(String, Vec<u8>), ConfError> {
    let path = cf.full_path(name)?;
    match std::fs::read(&path) {
        Ok(data) => Ok((path, data)),
        Err(source) => Err(ConfError::Read { path, source }),
    }
}

/// nginx's size syntax (`10m`, `512k`).
pub fn parse_size(s: &str) -> Option<usize> {
    let mut v = ngx_str_t { len: s.len(), data: s.as_ptr().cast_mut() };
    // SAFETY: ngx_parse_size only reads the string.
    let n = unsafe { nginx_sys::ngx_parse_size(&mut v) };
    usize::try_from(n).ok()
}

/// A command table entry. nginx compares directive names with `strcmp`, so names are C strings.
pub const fn command(
    name: &'static CStr,
    type_: u32,
    set: DirectiveHandler,
    conf: usize,
    offset: usize,
) -> ngx_command_t {
    ngx_command_t {
        name: ngx_str_t { len: name.count_bytes(), data: name.as_ptr().cast::<u8>().cast_mut() },
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset,
        post: ptr::null_mut(),
    }
}

/// The signature of a directive handler.
pub type DirectiveHandler =
    unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// Parses the `{ }` block that follows the directive `inside` with the commands of `table`, each
/// applied to `conf`: the way nginx parses its own blocks, so nginx's slot setters work for
/// plain fields. `table` must be the table the handlers were written for (they take `conf` as
/// their configuration).
pub fn parse_block<T>(
    cf: &mut ngx_conf_t,
    inside: &'static str,
    table: &'static [ngx_command_t],
    conf: &mut T,
) -> bool {
    let mut block = Block { inside, table, conf: ptr::from_mut(conf).cast() };
    let mut block_cf: ngx_conf_t = *cf;
    block_cf.handler = Some(block_command);
    block_cf.handler_conf = ptr::addr_of_mut!(block).cast();
    // SAFETY: parses the block with our handler; `block` and `conf` outlive the call.
    let rv = unsafe { nginx_sys::ngx_conf_parse(&mut block_cf, ptr::null_mut()) };
    rv == NGX_CONF_OK
}

struct Block {
    inside: &'static str,
    table: &'static [ngx_command_t],
    conf: *mut c_void,
}

/// nginx's argument-count rules for a command type, as `ngx_conf_handler` applies them:
/// `NGX_CONF_NOARGS`, `TAKE1` ... `TAKE7` are the bits 0..7, one per number of arguments.
fn nargs_ok(type_: ngx_uint_t, words: usize) -> bool {
    let t = type_ as u32;
    if t & NGX_CONF_FLAG != 0 {
        return words == 2;
    }
    if t & NGX_CONF_1MORE != 0 {
        return words >= 2;
    }
    (1..=8).contains(&words) && t & (1 << (words - 1)) != 0
}

ngx_entry! {
    /// One directive inside a block of ours: found in the block's table, its argument count
    /// checked, then its handler called with the block's configuration.
    block_directive fn block_command(cf, block: Block) {
        let args = cf.args();
        let Some(name) = args.first().copied() else { return Err(ConfError::NoHttp) };
        let Some(cmd) = block.table.iter().find(|c| c.set.is_some() && c.name.as_bytes() == name.as_bytes())
        else {
            return Err(ConfError::invalid(format!("is unknown here (inside \"{}\")", block.inside)));
        };
        if !nargs_ok(cmd.type_, args.len()) {
            cf.emerg(format_args!("invalid number of arguments in \"{name}\" directive"));
            return Err(ConfError::Logged);
        }
        let Some(set) = cmd.set else { return Err(ConfError::NoHttp) };
        let cmd = ptr::from_ref(cmd).cast_mut();
        // SAFETY: a handler from our own table, called as nginx calls handlers, with the
        // configuration its table belongs to.
        let rv = unsafe { set(cf, cmd, block.conf) };
        if rv == NGX_CONF_OK {
            return Ok(());
        }
        if rv != NGX_CONF_ERROR {
            // A slot setter's reason, e.g. "is duplicate".
            // SAFETY: nginx's handlers return a NUL-terminated static string.
            let why = unsafe { CStr::from_ptr(rv) }.to_string_lossy();
            cf.emerg(format_args!("\"{name}\" directive {why}"));
        }
        Err(ConfError::Logged)
    }
}

/// Adds a shared memory zone owned by `module`; `data` is the module's description of it.
/// Fails if the name is already taken by another module's or directive's zone.
pub fn add_shared_zone(
    cf: &mut ngx_conf_t,
    name: &str,
    size: usize,
    module: *mut ngx_module_t,
) -> Result<&'static mut ngx_shm_zone_t, ConfError> {
    let mut shm_name = ngx_str_t { len: name.len(), data: name.as_ptr().cast_mut() };
    // SAFETY: registers a zone for this configuration cycle; nginx copies the name.
    let shm = unsafe { nginx_sys::ngx_shared_memory_add(cf, &mut shm_name, size, module.cast()) };
    // SAFETY: NULL or a zone of this cycle, alive as long as the cycle.
    let shm = unsafe { shm.as_mut() }.ok_or(ConfError::NoMemory)?;
    if !shm.data.is_null() {
        return Err(ConfError::invalid(format!(
            "zone \"{name}\" is already used by another directive"
        )));
    }
    Ok(shm)
}

/// A configuration slot filled by nginx's `ngx_http_set_complex_value_slot` (a directive
/// argument that may contain variables): `NGX_CONF_UNSET_PTR` until set, NULL for `off`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct ComplexValueSlot(*mut ngx_http_complex_value_t);

impl ComplexValueSlot {
    pub const UNSET: ComplexValueSlot = ComplexValueSlot(usize::MAX as *mut _);
    pub const OFF: ComplexValueSlot = ComplexValueSlot(ptr::null_mut());

    pub fn is_unset(&self) -> bool {
        self.0 == Self::UNSET.0
    }

    /// The compiled value; `None` when unset or `off`.
    pub fn get(&self) -> Option<&ngx_http_complex_value_t> {
        if self.is_unset() {
            return None;
        }
        // SAFETY: NULL or a complex value compiled into the configuration pool, which lives
        // as long as this configuration.
        unsafe { self.0.as_ref() }
    }

    /// Lets nginx's own slot setter compile the directive's argument into the slot of `conf`
    /// that the command entry's `offset` points at.
    pub fn compile<T>(
        cf: &mut ngx_conf_t,
        cmd: *mut ngx_command_t,
        conf: &mut T,
    ) -> Result<(), ConfError> {
        // SAFETY: nginx's arguments, passed through to nginx's own setter, which writes a
        // pointer at `conf + cmd.offset` (a ComplexValueSlot of T by the command table).
        slot_result(unsafe {
            nginx_sys::ngx_http_set_complex_value_slot(cf, cmd, ptr::from_mut(conf).cast())
        })
    }
}

/// What one of nginx's slot setters returned: `NGX_CONF_OK`, `NGX_CONF_ERROR` (it logged the
/// reason) or a reason for nginx to log.
pub fn slot_result(rv: *mut c_char) -> Result<(), ConfError> {
    if rv == NGX_CONF_OK {
        Ok(())
    } else if rv == NGX_CONF_ERROR || rv.is_null() {
        Err(ConfError::Logged)
    } else {
        // SAFETY: nginx's setters return a NUL-terminated static string.
        Err(ConfError::invalid(unsafe { CStr::from_ptr(rv) }.to_string_lossy()))
    }
}

/// Registers the module's variables (in `preconfiguration`); nginx copies names and handlers.
pub fn add_variables(cf: &mut ngx_conf_t, table: &[nginx_sys::ngx_http_variable_t]) -> bool {
    for v in table {
        let mut name = v.name;
        // SAFETY: nginx copies the name into its own pool and returns a slot to fill (or NULL).
        let slot = unsafe { nginx_sys::ngx_http_add_variable(cf, &mut name, v.flags) };
        // SAFETY: NULL or a variable of this configuration.
        let Some(slot) = (unsafe { slot.as_mut() }) else { return false };
        slot.get_handler = v.get_handler;
        slot.data = v.data;
    }
    true
}

/// Adds `handler` to a phase of nginx's phase engine (in `postconfiguration`), ahead of the
/// handlers already there: nginx runs a phase's handlers from the last registered to the first,
/// so it runs after them (after allow/deny, auth_basic and auth_request in the access phase:
/// under `satisfy any` they get to grant access first).
pub fn add_phase_handler_first(
    cf: &mut ngx_conf_t,
    phase: nginx_sys::ngx_http_phases,
    handler: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> ngx_int_t,
) -> bool {
    use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(cf) else { return false };
    let handlers = &mut cmcf.phases[phase as usize].handlers;
    // SAFETY: `handlers` is an ngx_array_t of ngx_http_handler_pt; the pushed slot is filled
    // by the rotation.
    unsafe {
        if nginx_sys::ngx_array_push(handlers).is_null() {
            return false;
        }
        let slots = handlers.as_slice_mut::<nginx_sys::ngx_http_handler_pt>();
        slots.rotate_right(1);
        slots[0] = Some(handler);
    }
    true
}

/// A location of a server, as nginx's core module configured it.
#[derive(Debug, Clone)]
pub struct LocationInfo {
    pub name: String,
    /// `internal;`
    pub internal: bool,
    /// Whether `resolver` (at this or an enclosing level) names a DNS server: without one,
    /// nginx cannot resolve host names that are only known at run time (`proxy_pass $url`).
    pub resolver: bool,
}

/// While a location configuration is merged: every location of the server being merged,
/// nested ones too. (nginx merges the core module's configuration of all locations before
/// other modules', so the values here are final; the location tree is built only after all
/// merges, so its queue is still intact.)
pub fn server_locations(cf: &ngx_conf_t) -> Vec<LocationInfo> {
    let mut out = Vec::new();
    if let Some(clcf) = server_location_conf(cf) {
        collect_locations(clcf, has_resolver(clcf), &mut out);
    }
    out
}

/// The core module's configuration of the server-level location of the server being merged.
fn server_location_conf(cf: &ngx_conf_t) -> Option<&nginx_sys::ngx_http_core_loc_conf_t> {
    use ngx::http::{HttpModuleServerConf, NgxHttpCoreModule};
    let cscf: &nginx_sys::ngx_http_core_srv_conf_t = NgxHttpCoreModule::server_conf(cf)?;
    // SAFETY: a server's conf ctx holds the loc_conf array of its server-level location, whose
    // core module slot is an ngx_http_core_loc_conf_t.
    unsafe {
        let ctx = cscf.ctx.as_ref()?;
        let slot = ctx
            .loc_conf
            .as_ref()
            .map(|_| *ctx.loc_conf.add(nginx_sys::ngx_http_core_module.ctx_index))?;
        slot.cast::<nginx_sys::ngx_http_core_loc_conf_t>().as_ref()
    }
}

fn has_resolver(clcf: &nginx_sys::ngx_http_core_loc_conf_t) -> bool {
    // SAFETY: NULL or the resolver of this configuration.
    unsafe { clcf.resolver.as_ref() }.is_some_and(|r| r.connections.nelts > 0)
}

fn collect_locations(
    clcf: &nginx_sys::ngx_http_core_loc_conf_t,
    inherited_resolver: bool,
    out: &mut Vec<LocationInfo>,
) {
    // SAFETY: `locations` is NULL or the queue of ngx_http_location_queue_t of this location,
    // whose `queue` is their first member; each holds the exact or inclusive location's conf.
    unsafe {
        let Some(head) = clcf.locations.as_ref() else { return };
        let mut q = head.next;
        while !q.is_null() && !ptr::eq(q, head) {
            let lq = &*q.cast::<nginx_sys::ngx_http_location_queue_t>();
            let conf = if lq.exact.is_null() { lq.inclusive } else { lq.exact };
            if let Some(l) = conf.as_ref() {
                let resolver =
                    if l.resolver.is_null() { inherited_resolver } else { has_resolver(l) };
                out.push(LocationInfo {
                    name: l.name.to_string(),
                    internal: l.internal != 0,
                    resolver,
                });
                collect_locations(l, resolver, out);
            }
            q = (*q).next;
        }
    }
}

/// The user and group the workers will run as, when the configuration says so already (the
/// `user` directive comes before `http` in practice) or when nginx does not run as root (then
/// workers keep the master's user). `None`: not known yet (nginx's default applies later).
pub fn worker_user(cf: &ngx_conf_t) -> Option<(u32, u32)> {
    // SAFETY: the cycle's conf_ctx has the core module's configuration at its index once the
    // main context is being parsed (the http block is inside it).
    let ccf = unsafe {
        let ctx = (*cf.cycle).conf_ctx;
        (*ctx.add(nginx_sys::ngx_core_module.index))
            .cast::<nginx_sys::ngx_core_conf_t>()
            .as_ref()?
    };
    const UNSET: u32 = u32::MAX; // NGX_CONF_UNSET_UINT
    if ccf.user != UNSET {
        return Some((ccf.user, ccf.group));
    }
    // SAFETY: plain libc getters.
    let (uid, gid) = unsafe { (nginx_sys::geteuid(), nginx_sys::getegid()) };
    (uid != 0).then_some((uid, gid))
}
