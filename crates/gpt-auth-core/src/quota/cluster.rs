//! Zones shared by several nginx machines ("nodes") through Redis: what one node sends in a
//! round and how it reads the answer. No I/O here: the module runs a round over an nginx
//! connection (`src/quota/cluster.rs`).
//!
//! **The model.** Every node counts in its own shared memory as without Redis; each key's
//! [`Counters`](super::Counters) hold the node's *view* of the cluster's totals (`day_used`,
//! `month_used`: the totals Redis gave at the last round plus what the node charged since), and
//! its [`Shares`](super::Shares) what it charged since it last sent (`day_unsent`,
//! `month_unsent`) and in all (`day_own`, `month_own`). Admission reads the view only, so the
//! request path never waits for Redis.
//!
//! **A round** (one [`SCRIPT`] call per batch of keys, atomic in Redis) adds each key's unsent
//! amounts to the node's own fields of the key's day and month hashes (`HINCRBY` on
//! `requests:NODE`, `input:NODE`, …), so the counts of all nodes add up, and returns the
//! totals (the sums over the nodes' fields). Each batch has an id, marked in Redis when it is
//! applied: a round whose answer was lost (a timeout, a connection cut after Redis ran it) is
//! sent again as it was, and counts once.
//!
//! **Personal API keys** of the zone are shared too ([`KEYS_SCRIPT`], in the same round): a key
//! created on one node is written to the zone's key hash, a revoked one is deleted from it and
//! added to the set of revoked ids; every node adds the keys it does not have and deletes the
//! revoked ones. A version number, raised by every change, spares the nodes reading the keys
//! when nothing changed. A key is never deleted for being absent from Redis (Redis may have
//! lost it): the node sends it again.
//!
//! **Redis losing its data** (restarted empty, or from an older snapshot): each node also
//! sends what it has counted in all in the period (`day_own`, `month_own`), and a field below
//! that is raised to it. So every node puts its own share back, exactly, at its next round, and
//! the totals are whole again once every node that counted has run one: nothing is lost and
//! nothing counted twice (each node writes only its own fields). Nodes therefore need names of
//! their own (`node=`); two with one name share fields (their counts still add up, but a lost
//! share is refilled only to the larger of theirs). Amounts are exact below 2⁵³ (Lua numbers):
//! 9 million dollars in nano-dollars, 9·10¹⁵ tokens.

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};

use super::budget::Amounts;
use super::key::Key;
use super::state_file::{key_text, parse_key};
use crate::api_key::{parse_record, record_line, Record, ID_LEN};

/// The round's script (`EVAL`). `KEYS[1]`: the month's index of keys; `KEYS[2]`: the batch's
/// mark (set once: a batch sent again, after its answer was lost, adds nothing twice); then per
/// entry its day hash and its month hash. `ARGV[1]`, `ARGV[2]`: how long (seconds) day and
/// month hashes live; `ARGV[3]`: the node's name; then per entry its name in the index and, per
/// hash, the four amounts sent (requests, input, output, cost) and the four the node counted in
/// all. Returns the totals, eight per entry.
pub const SCRIPT: &str = r#"
local units = {'requests', 'input', 'output', 'cost'}
local fresh = redis.call('SET', KEYS[2], '1', 'NX', 'EX', 86400)
local node = ARGV[3]
local out = {}
local a = 4
for i = 3, #KEYS, 2 do
  local member = ARGV[a]
  a = a + 1
  local indexed = false
  for j = 0, 1 do
    local key = KEYS[i + j]
    local total, mine = {0, 0, 0, 0}, {0, 0, 0, 0}
    local all = redis.call('HGETALL', key)
    for k = 1, #all, 2 do
      local colon = string.find(all[k], ':', 1, true)
      if colon then
        local unit, who = string.sub(all[k], 1, colon - 1), string.sub(all[k], colon + 1)
        for n = 1, 4 do
          if unit == units[n] then
            local v = tonumber(all[k + 1]) or 0
            total[n] = total[n] + v
            if who == node then mine[n] = v end
          end
        end
      end
    end
    local touched = false
    for n = 1, 4 do
      local field = units[n] .. ':' .. node
      if fresh and ARGV[a + n - 1] ~= '0' then
        local v = redis.call('HINCRBY', key, field, ARGV[a + n - 1])
        total[n] = total[n] + v - mine[n]
        mine[n] = v
        touched = true
      end
      local own = tonumber(ARGV[a + 3 + n])
      if mine[n] < own then
        redis.call('HSET', key, field, ARGV[a + 3 + n])
        total[n] = total[n] + own - mine[n]
        touched = true
      end
      out[#out + 1] = total[n]
    end
    if touched then
      redis.call('EXPIRE', key, ARGV[1 + j])
      indexed = true
    end
    a = a + 8
  end
  if indexed then redis.call('SADD', KEYS[1], member) end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return out
"#;

/// The API keys' part of a round (`EVAL`). `KEYS`: the key hash (id → record line), the set of
/// revoked ids, the version. `ARGV[1]`: the version the node has read last; `ARGV[2]`: how
/// many records follow as (id, line) pairs; then the revoked ids. Returns `{version}` when the
/// node is up to date, else `{version, hash, revoked}`.
pub const KEYS_SCRIPT: &str = r#"
local n = tonumber(ARGV[2])
local a = 3
local changed = false
for i = 1, n do
  if redis.call('SISMEMBER', KEYS[2], ARGV[a]) == 0 then
    redis.call('HSET', KEYS[1], ARGV[a], ARGV[a + 1])
    changed = true
  end
  a = a + 2
end
for i = a, #ARGV do
  redis.call('SADD', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[1], ARGV[i])
  changed = true
end
if changed then redis.call('INCR', KEYS[3]) end
local v = redis.call('GET', KEYS[3]) or '0'
if v == ARGV[1] then return {v} end
return {v, redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}
"#;

/// Most keys in one script call (Redis runs a script without serving others meanwhile: a
/// batch stays short).
pub const BATCH: usize = 200;

/// Where a zone's counters are in Redis: `PREFIX ZONE ":d:" DAY ":" KEY` and
/// `PREFIX ZONE ":m:" MONTH ":" KEY` (hashes of `requests:NODE`, `input:NODE`, `output:NODE`,
/// `cost:NODE`: each node's share), and the
/// month's index `PREFIX ZONE ":keys:" MONTH` (a set of keys). A key is written as in the state
/// file: an address, `group:NAME` or `model:ADDRESS/MODEL`, names percent-encoded.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
    pub zone: String,
}

impl Names {
    fn day_key(&self, day: u32, member: &str) -> Vec<u8> {
        format!("{}{}:d:{day}:{member}", self.prefix, self.zone).into_bytes()
    }

    fn month_key(&self, month: u32, member: &str) -> Vec<u8> {
        format!("{}{}:m:{month}:{member}", self.prefix, self.zone).into_bytes()
    }

    pub fn index(&self, month: u32) -> Vec<u8> {
        format!("{}{}:keys:{month}", self.prefix, self.zone).into_bytes()
    }

    /// The mark of a round's batch: `PREFIX ZONE ":round:" NODE ":" ID ":" BATCH` (kept a
    /// day).
    fn mark(&self, node: &str, round: &str, batch: usize) -> Vec<u8> {
        format!("{}{}:round:{node}:{round}:{batch}", self.prefix, self.zone).into_bytes()
    }

    /// The zone's API keys: `PREFIX ZONE ":apikeys"` (a hash of id → record line as in the
    /// state file), `…":apikeys:revoked"` (a set of ids), `…":apikeys:version"`.
    fn api_keys(&self, part: &str) -> Vec<u8> {
        format!("{}{}:apikeys{part}", self.prefix, self.zone).into_bytes()
    }
}

/// The API keys' changes a node sends in a round, and the version it read last.
#[derive(Clone, Default)]
pub struct KeyChanges {
    /// Records created here (or missing from Redis), not yet sent.
    pub created: Vec<Record>,
    /// Ids revoked here, not yet sent.
    pub revoked: Vec<[u8; ID_LEN]>,
    /// The version of the last full read (empty: none yet).
    pub version: String,
}

/// The zone's API keys as a round read them (when they changed since the node's version).
#[derive(Clone, Default)]
pub struct KeyState {
    pub version: String,
    /// Every key on record in Redis.
    pub records: Vec<Record>,
    pub revoked: Vec<[u8; ID_LEN]>,
}

// Records compare (and print) as their state-file lines: `Record` has neither trait.
impl PartialEq for KeyState {
    fn eq(&self, o: &KeyState) -> bool {
        let lines = |k: &KeyState| k.records.iter().map(record_line).collect::<Vec<_>>();
        self.version == o.version && self.revoked == o.revoked && lines(self) == lines(o)
    }
}

impl Eq for KeyState {}

impl core::fmt::Debug for KeyState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyState")
            .field("version", &self.version)
            .field("records", &self.records.len())
            .field("revoked", &self.revoked.len())
            .finish()
    }
}

/// One key's part in a round: what the node sends, and all it counted (for the day and the
/// month of the round).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The encoded key ([`Key::encode`]).
    pub key: Vec<u8>,
    pub day_sent: Amounts,
    pub month_sent: Amounts,
    pub day_own: Amounts,
    pub month_own: Amounts,
}

/// The cluster's totals of one key, as a round returned them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub day: Amounts,
    pub month: Amounts,
}

/// How long hashes live, in seconds (a period's hash is kept a while after the period ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub day: u64,
    pub month: u64,
}

/// The SHA-1 (hex) Redis names a script by.
fn sha(script: &str) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(script.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The names of [`SCRIPT`] and [`KEYS_SCRIPT`] in Redis (computed once).
fn shas() -> &'static (String, String) {
    static SHAS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    SHAS.get_or_init(|| (sha(SCRIPT), sha(KEYS_SCRIPT)))
}

/// Computes what every round reuses (the scripts' names) before the first round, so that no
/// round leaves an allocation of its own behind: a node calls it when it starts.
pub fn prepare() {
    let _ = shas();
}

/// A round's request, and what its answer must hold.
#[derive(Debug, Clone)]
pub struct Round {
    /// The commands, RESP-encoded, to be written as they are.
    pub bytes: Vec<u8>,
    /// An `AUTH` comes first.
    auth: bool,
    /// Then `SCRIPT LOAD`s (the scripts are called by their SHA-1).
    loads: usize,
    /// Entries per script call, in order.
    batches: Vec<usize>,
    /// The API keys' script comes last.
    keys: bool,
}

impl Round {
    /// How many replies the answer has.
    pub fn replies(&self) -> usize {
        usize::from(self.auth) + self.loads + self.batches.len() + 1 + usize::from(self.keys)
    }
}

/// Why a round's answer is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The password was refused (or one is needed).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Redis answered a command with an error.
    #[error("error reply: {0}")]
    Server(String),
    /// Redis does not have the scripts (it restarted, or they were flushed): send them with
    /// the next round.
    #[error("the scripts are not loaded")]
    NoScript,
    /// Not RESP, or not the shape the commands answer with.
    #[error("unexpected reply: {0}")]
    Protocol(&'static str),
}

fn bulk(b: impl Into<Vec<u8>>) -> OwnedFrame {
    OwnedFrame::BulkString(b.into())
}

fn number(n: u64) -> OwnedFrame {
    // Redis integers are signed 64-bit.
    bulk(n.min(i64::MAX as u64).to_string())
}

fn command(out: &mut Vec<u8>, args: Vec<OwnedFrame>) {
    let frame = OwnedFrame::Array(args);
    let at = out.len();
    out.resize(at + frame.encode_len(false), 0);
    // The room is exactly what the frame takes, so encoding cannot fail; were it to, the
    // command is left out and the round's answer is short (refused as such).
    if encode(&mut out[at..], &frame, false).is_err() {
        out.truncate(at);
    }
}

/// Who runs a round, its id (unique per node and round: a worker's random id and a sequence
/// number) and its periods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundId {
    pub node: String,
    pub id: String,
    pub day: u32,
    pub month: u32,
}

/// What a round writes before its script calls: an `AUTH` when a password is given (a user too,
/// for an ACL user), then `SCRIPT LOAD` of the scripts when `load` (the first round on a
/// server, or after it lost them; the keys' script too for a zone with API keys).
#[derive(Debug, Clone, Default)]
pub struct Preamble {
    /// RESP-encoded, written before a round's own bytes.
    pub bytes: Vec<u8>,
    auth: bool,
    loads: usize,
}

/// Encodes a [`Preamble`]. A node makes its two (with and without the loads) once, when it
/// starts: the scripts are kilobytes, and a buffer that large made and freed by a round leaves
/// a hole in the worker's heap that nginx's request pools are then cut from, a few hundred
/// instructions more for every request (measured with callgrind in `make bench`).
pub fn preamble(auth: Option<(Option<&str>, &[u8])>, load: bool, keys: bool) -> Preamble {
    let mut bytes = Vec::new();
    if let Some((user, password)) = auth {
        let mut args = vec![bulk("AUTH")];
        args.extend(user.map(bulk));
        args.push(bulk(password));
        command(&mut bytes, args);
    }
    let mut loads = 0;
    if load {
        for script in [Some(SCRIPT), keys.then_some(KEYS_SCRIPT)].into_iter().flatten() {
            command(&mut bytes, vec![bulk("SCRIPT"), bulk("LOAD"), bulk(script)]);
            loads += 1;
        }
    }
    Preamble { bytes, auth: auth.is_some(), loads }
}

/// The round `at` for `entries` (in the day and month of the node's clock), whole: its
/// [`preamble`], then what [`round_after`] writes.
pub fn round(
    names: &Names,
    auth: Option<(Option<&str>, &[u8])>,
    load: bool,
    entries: &[Entry],
    at: &RoundId,
    life: Lifetimes,
    keys: Option<&KeyChanges>,
) -> Round {
    let pre = preamble(auth, load, keys.is_some());
    let mut r = round_after(&pre, names, entries, at, life, keys);
    let mut bytes = pre.bytes;
    bytes.extend_from_slice(&r.bytes);
    r.bytes = bytes;
    r
}

/// The round `at` for `entries` after `pre` (which the caller writes first; the answer holds
/// its replies too): the script (`EVALSHA`) once per [`BATCH`] entries, the month's index,
/// then (for a zone with API keys) the keys' script.
pub fn round_after(
    pre: &Preamble,
    names: &Names,
    entries: &[Entry],
    at: &RoundId,
    life: Lifetimes,
    keys: Option<&KeyChanges>,
) -> Round {
    let (sha_round, sha_keys) = shas();
    let (day, month) = (at.day, at.month);
    let mut bytes = Vec::with_capacity(256 + entries.len() * 200);
    let mut batches = Vec::new();
    for (i, batch) in entries.chunks(BATCH).enumerate() {
        let mut keys = vec![names.index(month), names.mark(&at.node, &at.id, i)];
        let mut argv = vec![number(life.day), number(life.month), bulk(at.node.as_str())];
        for e in batch {
            let member = Key::decode(&e.key).map(|k| key_text(&k)).unwrap_or_default();
            keys.push(names.day_key(day, &member));
            keys.push(names.month_key(month, &member));
            argv.push(bulk(member));
            for (sent, own) in [(&e.day_sent, &e.day_own), (&e.month_sent, &e.month_own)] {
                for a in [sent, own] {
                    argv.extend([a.requests, a.input, a.output, a.cost].map(number));
                }
            }
        }
        let mut args = vec![bulk("EVALSHA"), bulk(sha_round.as_str()), number(keys.len() as u64)];
        args.extend(keys.into_iter().map(bulk));
        args.extend(argv);
        command(&mut bytes, args);
        batches.push(batch.len());
    }
    command(&mut bytes, vec![bulk("SMEMBERS"), bulk(names.index(month))]);
    if let Some(k) = keys {
        let mut args = vec![bulk("EVALSHA"), bulk(sha_keys.as_str()), number(3)];
        args.extend(["", ":revoked", ":version"].map(|p| bulk(names.api_keys(p))));
        args.push(bulk(if k.version.is_empty() { "-" } else { k.version.as_str() }));
        args.push(number(k.created.len() as u64));
        for r in &k.created {
            args.push(bulk(r.id.to_vec()));
            args.push(bulk(record_line(&Record { last_used: 0, ..*r })));
        }
        args.extend(k.revoked.iter().map(|id| bulk(id.to_vec())));
        command(&mut bytes, args);
    }
    Round { bytes, auth: pre.auth, loads: pre.loads, batches, keys: keys.is_some() }
}

/// Whether `buf` holds the whole answer of `round` (`Some(length)`), not yet (`None`), or
/// cannot be one (not RESP).
pub fn complete(round: &Round, buf: &[u8]) -> Result<Option<usize>, ReplyError> {
    let mut at = 0;
    for _ in 0..round.replies() {
        match decode(&buf[at..]) {
            Ok(Some((_, n))) => at += n,
            Ok(None) => return Ok(None),
            Err(_) => return Err(ReplyError::Protocol("not RESP")),
        }
    }
    Ok(Some(at))
}

/// What a round's answer says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The totals of the round's entries, in order.
    pub totals: Vec<Totals>,
    /// The keys (encoded) charged this month on any node, as the month's index lists them.
    pub known: Vec<Vec<u8>>,
    /// The API keys, when they changed since the version sent (`None`: unchanged, or a zone
    /// without keys).
    pub api_keys: Option<KeyState>,
}

fn error_text(e: &str) -> String {
    // Redis error replies are short, printable lines; keep them so for the log.
    e.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn amount(f: &OwnedFrame) -> Result<u64, ReplyError> {
    match f {
        OwnedFrame::Integer(n) => Ok((*n).max(0) as u64),
        _ => Err(ReplyError::Protocol("a total is not an integer")),
    }
}

fn amounts(f: &[OwnedFrame]) -> Result<Amounts, ReplyError> {
    match f {
        [r, i, o, c] => Ok(Amounts {
            requests: amount(r)?,
            input: amount(i)?,
            output: amount(o)?,
            cost: amount(c)?,
        }),
        _ => Err(ReplyError::Protocol("short totals")),
    }
}

/// Reads the whole answer of `round` (as [`complete`] measured it).
pub fn outcome(round: &Round, buf: &[u8]) -> Result<Outcome, ReplyError> {
    let mut frames = Vec::with_capacity(round.replies());
    let mut at = 0;
    for _ in 0..round.replies() {
        match decode(&buf[at..]) {
            Ok(Some((f, n))) => {
                frames.push(f);
                at += n;
            }
            _ => return Err(ReplyError::Protocol("incomplete answer")),
        }
    }
    let mut frames = frames.into_iter();
    if round.auth {
        match frames.next() {
            Some(OwnedFrame::SimpleString(_)) => {}
            Some(OwnedFrame::Error(e)) => return Err(ReplyError::Auth(error_text(&e))),
            _ => return Err(ReplyError::Protocol("AUTH answered neither OK nor an error")),
        }
    }
    for _ in 0..round.loads {
        match frames.next() {
            Some(OwnedFrame::BulkString(_)) => {}
            Some(OwnedFrame::Error(e)) => return Err(server_error(&e)),
            _ => return Err(ReplyError::Protocol("SCRIPT LOAD answered no name")),
        }
    }
    let mut out = Outcome::default();
    for &n in &round.batches {
        match frames.next() {
            Some(OwnedFrame::Array(items)) if items.len() == n * 8 => {
                for e in items.chunks(8) {
                    out.totals.push(Totals { day: amounts(&e[..4])?, month: amounts(&e[4..])? });
                }
            }
            Some(OwnedFrame::Error(e)) => return Err(server_error(&e)),
            _ => return Err(ReplyError::Protocol("the script's answer is not its totals")),
        }
    }
    match frames.next() {
        Some(OwnedFrame::Array(items)) => {
            for item in items {
                if let OwnedFrame::BulkString(name) = item {
                    let key = core::str::from_utf8(&name).ok().and_then(parse_key);
                    out.known.extend(key.map(|k| k.encode()));
                }
            }
        }
        Some(OwnedFrame::Error(e)) => return Err(ReplyError::Server(error_text(&e))),
        _ => return Err(ReplyError::Protocol("the index is not a list")),
    }
    if round.keys {
        out.api_keys = key_state(frames.next())?;
    }
    Ok(out)
}

fn text(f: &OwnedFrame) -> Option<&[u8]> {
    match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => Some(b),
        _ => None,
    }
}

fn an_id(b: &[u8]) -> Option<[u8; ID_LEN]> {
    b.try_into().ok()
}

/// The keys' script's answer: `{version}` or `{version, hash, revoked}`.
fn key_state(f: Option<OwnedFrame>) -> Result<Option<KeyState>, ReplyError> {
    let items = match f {
        Some(OwnedFrame::Array(items)) => items,
        Some(OwnedFrame::Error(e)) => return Err(server_error(&e)),
        _ => return Err(ReplyError::Protocol("the keys' answer is not a list")),
    };
    let version = items.first().and_then(text).and_then(|v| core::str::from_utf8(v).ok());
    let Some(version) = version.map(str::to_owned) else {
        return Err(ReplyError::Protocol("the keys' answer has no version"));
    };
    match items.as_slice() {
        [_] => Ok(None),
        [_, OwnedFrame::Array(hash), OwnedFrame::Array(revoked)] => {
            // A record that does not parse (written by hand) is left out, as in a state file.
            let records = hash
                .chunks(2)
                .filter_map(|pair| text(pair.get(1)?))
                .filter_map(|line| parse_record(core::str::from_utf8(line).ok()?))
                .collect();
            let revoked = revoked.iter().filter_map(text).filter_map(an_id).collect();
            Ok(Some(KeyState { version, records, revoked }))
        }
        _ => Err(ReplyError::Protocol("the keys' answer is not version, keys, revoked")),
    }
}

/// The first error among the replies of an answer cut short (Redis closes a connection that
/// sends too much before it is authenticated, right after refusing the password).
pub fn early_error(buf: &[u8]) -> Option<ReplyError> {
    let mut at = 0;
    while let Ok(Some((f, n))) = decode(&buf[at..]) {
        at += n;
        if let OwnedFrame::Error(e) = f {
            return Some(server_error(&e));
        }
    }
    None
}

/// An error reply, told apart: refused credentials, missing scripts, anything else.
fn server_error(e: &str) -> ReplyError {
    if is_auth_error(e) {
        ReplyError::Auth(error_text(e))
    } else if e.starts_with("NOSCRIPT") {
        ReplyError::NoScript
    } else {
        ReplyError::Server(error_text(e))
    }
}

fn is_auth_error(e: &str) -> bool {
    e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") || e.starts_with("NOPERM")
}

/// The wait before the next attempt after `failures` failed rounds in a row: the interval, then
/// doubling up to 30 s (never less than the interval).
pub fn backoff(interval_ms: u64, failures: u32) -> u64 {
    let max = 30_000u64.max(interval_ms);
    let shift = failures.saturating_sub(1).min(16);
    interval_ms.saturating_mul(1 << shift).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names { prefix: "ga:".into(), zone: "chat".into() }
    }

    fn at(day: u32, month: u32) -> RoundId {
        RoundId { node: "web1".into(), id: "ab-7".into(), day, month }
    }

    fn entry(user: &str, sent: u64, view: u64) -> Entry {
        let a = |n: u64| Amounts { requests: n, input: n * 10, output: n * 2, cost: n * 100 };
        Entry {
            key: Key::User(user.into()).encode(),
            day_sent: a(sent),
            month_sent: a(sent),
            day_own: a(view),
            month_own: a(view + 1),
        }
    }

    fn parse_commands(mut b: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let (f, n) = decode(b).unwrap().unwrap();
            let OwnedFrame::Array(items) = f else { panic!("not an array") };
            out.push(
                items
                    .into_iter()
                    .map(|i| match i {
                        OwnedFrame::BulkString(s) => s,
                        other => panic!("{other:?}"),
                    })
                    .collect(),
            );
            b = &b[n..];
        }
        out
    }

    #[test]
    fn a_round_is_auth_then_the_script_then_the_index() {
        let life = Lifetimes { day: 100, month: 2000 };
        let e = [entry("alice@example.com", 2, 5), entry("bob@example.com", 0, 0)];
        let r = round(&names(), Some((None, b"s3cret")), false, &e, &at(20_000, 671), life, None);
        assert_eq!(r.replies(), 3);
        let cmds = parse_commands(&r.bytes);
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0], vec![b"AUTH".to_vec(), b"s3cret".to_vec()]);
        let eval = &cmds[1];
        assert_eq!(eval[0], b"EVALSHA");
        assert_eq!(eval[1], shas().0.as_bytes());
        assert_eq!(eval[2], b"6");
        assert_eq!(eval[3], b"ga:chat:keys:671");
        assert_eq!(eval[4], b"ga:chat:round:web1:ab-7:0");
        assert_eq!(eval[5], b"ga:chat:d:20000:alice@example.com");
        assert_eq!(eval[6], b"ga:chat:m:671:alice@example.com");
        assert_eq!(eval[8], b"ga:chat:m:671:bob@example.com");
        // ARGV: lifetimes, the node, then per entry the name and 16 numbers.
        let argv = &eval[9..];
        assert_eq!(argv.len(), 3 + 2 * 17);
        assert_eq!((argv[0].as_slice(), argv[1].as_slice()), (&b"100"[..], &b"2000"[..]));
        assert_eq!(argv[2], b"web1");
        assert_eq!(argv[3], b"alice@example.com");
        let nums: Vec<&[u8]> = argv[4..20].iter().map(Vec::as_slice).collect();
        let want: [&[u8]; 16] = [
            b"2", b"20", b"4", b"200", b"5", b"50", b"10", b"500", b"2", b"20", b"4", b"200", b"6",
            b"60", b"12", b"600",
        ];
        assert_eq!(nums, want);
        assert_eq!(cmds[2], vec![b"SMEMBERS".to_vec(), b"ga:chat:keys:671".to_vec()]);
    }

    #[test]
    fn a_round_after_its_preamble_is_the_whole_round() {
        let life = Lifetimes { day: 1, month: 1 };
        let keys = KeyChanges::default();
        let e = [entry("a@example.com", 1, 1), entry("b@example.com", 2, 2)];
        for (auth, load, k) in [
            (Some((Some("gpt"), &b"pw"[..])), true, Some(&keys)),
            (Some((None, &b"pw"[..])), false, None),
            (None, true, None),
            (None, false, Some(&keys)),
        ] {
            let whole = round(&names(), auth, load, &e, &at(1, 1), life, k);
            let pre = preamble(auth, load, k.is_some());
            let after = round_after(&pre, &names(), &e, &at(1, 1), life, k);
            assert_eq!([pre.bytes.as_slice(), &after.bytes].concat(), whole.bytes);
            assert_eq!(after.replies(), whole.replies(), "the answer holds the preamble's replies");
            let cmds = parse_commands(&after.bytes);
            assert_eq!(cmds[0][0], b"EVALSHA", "no AUTH or SCRIPT LOAD after the preamble");
        }
    }

    #[test]
    fn scripts_are_loaded_when_asked_and_called_by_their_sha1() {
        let life = Lifetimes { day: 1, month: 1 };
        let keys = KeyChanges::default();
        let e = [entry("a@example.com", 1, 1)];
        let r = round(&names(), None, true, &e, &at(1, 1), life, Some(&keys));
        let cmds = parse_commands(&r.bytes);
        assert_eq!(cmds[0], vec![b"SCRIPT".to_vec(), b"LOAD".to_vec(), SCRIPT.as_bytes().to_vec()]);
        assert_eq!(cmds[1][2], KEYS_SCRIPT.as_bytes());
        // The SHA-1 Redis gives a script: of its text (checked against sha1sum's).
        assert_eq!(sha("return 1"), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        assert_eq!(cmds[2][1], sha(SCRIPT).as_bytes());
        assert_eq!(r.replies(), 5);
        let sha_reply = |s: &str| format!("${}\r\n{s}\r\n", s.len());
        let answer = format!(
            "{}{}{}*0\r\n*1\r\n$1\r\n3\r\n",
            sha_reply(&shas().0),
            sha_reply(&shas().1),
            String::from_utf8(ints(&[0; 8])).unwrap()
        );
        assert_eq!(outcome(&r, answer.as_bytes()).map(|o| o.totals.len()), Ok(1));
        let missing = round(&names(), None, false, &e, &at(1, 1), life, None);
        let noscript = b"-NOSCRIPT No matching script. Please use EVAL.\r\n*0\r\n";
        assert_eq!(outcome(&missing, noscript), Err(ReplyError::NoScript));
    }

    #[test]
    fn an_acl_user_and_no_password() {
        let life = Lifetimes { day: 1, month: 1 };
        let r = round(&names(), Some((Some("gpt"), b"pw")), false, &[], &at(1, 1), life, None);
        let cmds = parse_commands(&r.bytes);
        assert_eq!(cmds[0], vec![b"AUTH".to_vec(), b"gpt".to_vec(), b"pw".to_vec()]);
        let r = round(&names(), None, false, &[], &at(1, 1), life, None);
        assert_eq!(r.replies(), 1);
        assert_eq!(parse_commands(&r.bytes)[0][0], b"SMEMBERS");
    }

    #[test]
    fn large_rounds_are_batched() {
        let e: Vec<Entry> =
            (0..BATCH * 2 + 1).map(|i| entry(&format!("u{i}@example.com"), 1, 1)).collect();
        let r = round(&names(), None, false, &e, &at(1, 1), Lifetimes { day: 1, month: 1 }, None);
        assert_eq!(r.batches, vec![BATCH, BATCH, 1]);
        assert_eq!(r.replies(), 4);
        let cmds = parse_commands(&r.bytes);
        assert_eq!(cmds.len(), 4);
        // Each batch has a mark of its own.
        let marks: Vec<&[u8]> = cmds[..3].iter().map(|c| c[4].as_slice()).collect();
        assert_eq!(
            marks,
            [
                &b"ga:chat:round:web1:ab-7:0"[..],
                b"ga:chat:round:web1:ab-7:1",
                b"ga:chat:round:web1:ab-7:2"
            ]
        );
    }

    #[test]
    fn groups_and_models_are_named_as_in_the_state_file() {
        let mut e = entry("x@example.com", 1, 1);
        e.key = Key::Group("r&d team".into()).encode();
        let r = round(
            &names(),
            None,
            false,
            &[e.clone()],
            &at(3, 4),
            Lifetimes { day: 1, month: 1 },
            None,
        );
        let cmds = parse_commands(&r.bytes);
        assert_eq!(cmds[0][5], b"ga:chat:d:3:group:r%26d%20team");
        let known = b"*2\r\n$18\r\ngroup:r%26d%20team\r\n$7\r\nnot-key\r\n";
        let answer = [&b"*8\r\n"[..], &b":1\r\n".repeat(8), known].concat();
        let o = outcome(&r, &answer).unwrap();
        // An index member that is no key of ours is left out.
        assert_eq!(o.known, vec![e.key]);
    }

    fn ints(v: &[i64]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", v.len()).into_bytes();
        for n in v {
            out.extend_from_slice(format!(":{n}\r\n").as_bytes());
        }
        out
    }

    #[test]
    fn answers_are_read_whole_and_in_order() {
        let e = [entry("alice@example.com", 1, 1), entry("bob@example.com", 1, 1)];
        let r = round(
            &names(),
            Some((None, b"pw")),
            false,
            &e,
            &at(1, 1),
            Lifetimes { day: 1, month: 1 },
            None,
        );
        let totals = ints(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, -1]);
        let index = b"*1\r\n$17\r\nalice@example.com\r\n";
        let answer = [&b"+OK\r\n"[..], &totals, index].concat();
        for cut in 0..answer.len() {
            assert_eq!(complete(&r, &answer[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(complete(&r, &answer), Ok(Some(answer.len())));
        let o = outcome(&r, &answer).unwrap();
        let am = |r, i, o, c| Amounts { requests: r, input: i, output: o, cost: c };
        assert_eq!(o.totals[0], Totals { day: am(1, 2, 3, 4), month: am(5, 6, 7, 8) });
        // A negative total (someone wrote the hash by hand) reads as zero.
        assert_eq!(o.totals[1], Totals { day: am(9, 10, 11, 12), month: am(13, 14, 15, 0) });
        assert_eq!(o.known, vec![Key::User("alice@example.com".into()).encode()]);
        assert!(complete(&r, b"!garbage\r\n").is_err());
    }

    #[test]
    fn errors_are_told_apart() {
        let e = [entry("alice@example.com", 1, 1)];
        let life = Lifetimes { day: 1, month: 1 };
        let with_pw = round(&names(), Some((None, b"pw")), false, &e, &at(1, 1), life, None);
        let index = b"*0\r\n";
        let wrong =
            [&b"-WRONGPASS invalid username-password pair\r\n"[..], &ints(&[0; 8]), index].concat();
        assert!(
            matches!(outcome(&with_pw, &wrong), Err(ReplyError::Auth(m)) if m.starts_with("WRONGPASS"))
        );
        let bare = round(&names(), None, false, &e, &at(1, 1), life, None);
        let noauth = [&b"-NOAUTH Authentication required.\r\n"[..], &b"-NOAUTH x\r\n"[..]].concat();
        assert!(matches!(outcome(&bare, &noauth), Err(ReplyError::Auth(_))));
        let oom = [&b"-OOM command not allowed\r\n"[..], index].concat();
        assert_eq!(outcome(&bare, &oom), Err(ReplyError::Server("OOM command not allowed".into())));
        let short = [&ints(&[1, 2, 3])[..], index].concat();
        assert!(matches!(outcome(&bare, &short), Err(ReplyError::Protocol(_))));
        let text = [&b"$2\r\nhi\r\n"[..], index].concat();
        assert!(matches!(outcome(&bare, &text), Err(ReplyError::Protocol(_))));
    }

    fn record(n: u8, owner: &str) -> Record {
        let id = crate::api_key::new_id(&[n; 12]);
        crate::api_key::Record {
            id,
            owner: crate::session::Email::new(owner).unwrap(),
            name: crate::api_key::Name::new("ci bot"),
            created: 1_700_000_000,
            last_used: 1_700_000_500,
        }
    }

    #[test]
    fn api_keys_go_last_and_come_back_when_changed() {
        let (a, b) = (record(1, "alice@example.com"), record(2, "bob@example.com"));
        let k = KeyChanges { created: vec![a], revoked: vec![b.id], version: String::new() };
        let life = Lifetimes { day: 1, month: 1 };
        let r = round(&names(), None, false, &[], &at(1, 1), life, Some(&k));
        assert_eq!(r.replies(), 2);
        let cmds = parse_commands(&r.bytes);
        let eval = &cmds[1];
        assert_eq!(eval[1], shas().1.as_bytes());
        assert_eq!(
            eval[3..6],
            [
                b"ga:chat:apikeys".to_vec(),
                b"ga:chat:apikeys:revoked".to_vec(),
                b"ga:chat:apikeys:version".to_vec()
            ]
        );
        // No version read yet: "-" (never a version); one record; its line without last use
        // (which stays with each node); then the revoked id.
        assert_eq!(eval[6], b"-");
        assert_eq!(eval[7], b"1");
        assert_eq!(eval[8], a.id);
        let line = String::from_utf8(eval[9].clone()).unwrap();
        assert_eq!(
            parse_record(&line).map(|r| record_line(&r)),
            Some(record_line(&Record { last_used: 0, ..a }))
        );
        assert_eq!(eval[10], b.id);
        assert_eq!(eval.len(), 11);

        let unchanged = [&b"*0\r\n"[..], b"*1\r\n$1\r\n7\r\n"].concat();
        assert_eq!(outcome(&r, &unchanged).unwrap().api_keys, None);
        let line_a = record_line(&a);
        let changed = format!(
            "*0\r\n*3\r\n$1\r\n8\r\n*4\r\n$16\r\n{}\r\n${}\r\n{}\r\n$1\r\nx\r\n$3\r\nbad\r\n\
             *2\r\n$16\r\n{}\r\n$3\r\nodd\r\n",
            core::str::from_utf8(&a.id).unwrap(),
            line_a.len(),
            line_a,
            core::str::from_utf8(&b.id).unwrap()
        );
        let got = outcome(&r, changed.as_bytes()).unwrap().api_keys.unwrap();
        // The unparsable record and the id of the wrong length are left out.
        assert_eq!(got, KeyState { version: "8".into(), records: vec![a], revoked: vec![b.id] });
        let bad = [&b"*0\r\n"[..], b"*2\r\n$1\r\n7\r\n:1\r\n"].concat();
        assert!(matches!(outcome(&r, &bad), Err(ReplyError::Protocol(_))));
    }

    #[test]
    fn an_answer_cut_short_says_its_first_error() {
        let cut = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n*8\r\n:1";
        assert!(
            matches!(early_error(cut), Some(ReplyError::Auth(m)) if m.starts_with("WRONGPASS"))
        );
        assert_eq!(
            early_error(b"+OK\r\n-ERR busy\r\n"),
            Some(ReplyError::Server("ERR busy".into()))
        );
        assert_eq!(early_error(b"+OK\r\n*8\r\n:1"), None);
        assert_eq!(early_error(b""), None);
    }

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        assert_eq!(backoff(1000, 1), 1000);
        assert_eq!(backoff(1000, 2), 2000);
        assert_eq!(backoff(1000, 5), 16_000);
        assert_eq!(backoff(1000, 6), 30_000);
        assert_eq!(backoff(1000, 1000), 30_000);
        assert_eq!(backoff(60_000, 3), 60_000);
    }
}
