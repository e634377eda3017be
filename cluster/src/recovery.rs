//! Connection state recovery across the cluster, kept in Redis: what lets a
//! client come back on any node, including after its node was killed, with
//! its socket id, its rooms and every packet it missed — or with nothing.
//!
//! # The log
//!
//! One Redis stream per namespace, `<prefix>-log#<nsp>#`, holds the
//! recoverable broadcasts of every node in the order Redis received them.
//! A node appends a broadcast with one script ([`RecoveryLog::append`]) that
//! gives it its entry id, writes the id into the message's offset slot,
//! adds the message to the stream, trims the stream and PUBLISHes the
//! message on the bus channel: atomically, so the order of the log is the
//! order every subscriber receives, and nothing is published that the log
//! does not hold. The message is the Node adapter's `[uid, packet, opts]`
//! with the offset as a fourth element: a Node node reads the first three
//! and delivers the packet as emitted; a Switchboard node adds the offset
//! as the event's last argument, as the reference server's recovery
//! sends it.
//!
//! Entry ids are chosen by the script (`ms-seq`, `ms` from Redis's clock,
//! never going back), and a client's offset is the decimal text of
//! `ms * 10^6 + seq`: 19 digits, so texts compare as numbers, and a `u64`
//! on our side ([`Offset`]).
//!
//! The stream is trimmed by the appends: of the entries older than the
//! window, in a batch once the oldest has been past it for a 64th of the
//! window (the log holds at least the window, at most a 64th more), and
//! at once of the oldest ones while the log's bytes exceed `max_bytes`.
//! The stream's metadata hash `<prefix>-log#<nsp>#meta` keeps the last
//! id given, the bytes held, the oldest entry's ms (`head`) and the
//! *floor*: every entry after the floor is still held. An offset below
//! the floor is not recovered; a log that expired (idle past twice the
//! window) or never existed has its floor at its last id: what came
//! before it cannot be replayed.
//!
//! # Sessions
//!
//! A socket's session is the hash `<prefix>-session#<pid>` (`nsp`, `sid`,
//! `o` the owner when there is one, `r:<room>` per room) written when the
//! socket connects and kept current as it joins and leaves rooms, with a
//! TTL that its node refreshes while it lives: the session outlives a node
//! killed without warning by at least the window. A connection that drops
//! leaves the hash to expire after the window; one ended on purpose
//! deletes it. [`RecoveryLog::restore`] takes it (deletes it) atomically,
//! checking its namespace, its owner and that the log still holds every
//! packet after the client's offset.
//!
//! # Never partial
//!
//! [`RecoveryLog::missed`] checks the floor and reads the entries after
//! the offset in one script: either all of them or `None`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use socketio::recovery::{Missed, Offset, Pid, Session};
use socketio::{BroadcastOptions, Encoded, Room, SocketId};

use crate::error::ClusterError;
use crate::publisher::timed;
use crate::wire::{self, Decoded, OFFSET_DIGITS, Outbound};

/// Bytes counted for each log entry beyond its message, besides a share
/// that grows with the message (see [`entry_cost`]).
pub const ENTRY_OVERHEAD: usize = 48;

/// What a log entry of an `n`-byte message is counted against
/// `max_bytes`: what it costs Redis, as measured with `MEMORY USAGE` on
/// 10,000 entries (117 B: 149 B an entry; 348 B: 419; 1,099 B: 1,358;
/// 2,099 B: 2,949), from above. Streams pack entries in listpacks of at
/// most 4 KiB, so larger messages fill them less well. The append script
/// computes the same.
pub fn entry_cost(n: usize) -> usize {
    n + ENTRY_OVERHEAD + n.min(n * n / 4096)
}

/// Entries one append may trim: a log far over its bounds (the window or
/// the byte bound lowered) is brought back over several appends rather
/// than in one long script that stalls Redis.
const TRIM_BUDGET: usize = 1000;

/// Appends a message to a namespace's log and publishes it.
///
/// KEYS: stream, meta, and the marker of a broadcast published at most
/// once (see [`crate::confirmed`]). ARGV: channel, message, position of
/// the offset's digits (1-based), window ms, max bytes, entry overhead,
/// trim budget, meta TTL ms, and the marker's TTL ms. Returns the
/// offset's text, or false when the marker was set (nothing done).
///
/// Written for Redis's CPU, which one script per recoverable broadcast
/// makes the cluster's shared cost: each `redis.call` costs about 0.5 µs
/// beyond its command, so the metadata is read with one HMGET and written
/// with one HSET (the byte count added here, not by HINCRBY); the stream's
/// PEXPIRE doubles as the check that it still exists; and the stream is
/// read to trim only when its oldest entry (`head` in the metadata) has
/// been past the window for a 64th of the window, or the bytes are over
/// the bound — a batch every ~2 s under a steady flow rather than one
/// XRANGE per append. 22.5 → 17 µs a call in steady state, 27 → 19 µs
/// while trimming (`INFO commandstats`, 220-byte messages, 120 s and 1 s
/// windows).
const APPEND: &str = r#"
local stream, meta = KEYS[1], KEYS[2]
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[4])
local h = redis.call('HMGET', meta, 'ms', 'seq', 'bytes', 'head')
local last_ms = tonumber(h[1] or '-1')
local last_seq = tonumber(h[2] or '0')
local bytes = tonumber(h[3] or '0')
-- The ms of the oldest entry held (0 when not known: the next append
-- reads the stream and learns it).
local head = tonumber(h[4] or '0')
local ms, seq = now, 0
if last_ms >= 0 and ms <= last_ms then
  ms, seq = last_ms, last_seq + 1
end
local function text_of(m, s) return m .. string.format('%06d', s) end
local text = text_of(ms, seq)
if seq > 999999 or #text ~= 19 then
  return redis.error_reply('recovery log: entry id out of range')
end
local floor, fresh = nil, false
if last_ms < 0 then
  -- A new log: no offset before its first entry can be replayed.
  redis.call('DEL', stream)
  floor, fresh = text, true
elseif redis.call('PEXPIRE', stream, 2 * window) == 0 then
  -- The stream expired (idle): what it held is gone.
  floor, fresh = text_of(last_ms, last_seq), true
end
if fresh then bytes, head = 0, ms end
local slot = tonumber(ARGV[3])
local message = string.sub(ARGV[2], 1, slot - 1) .. text .. string.sub(ARGV[2], slot + 19)
local id = ms .. '-' .. seq
redis.call('XADD', stream, id, 'm', message)
if fresh then redis.call('PEXPIRE', stream, 2 * window) end
local overhead = tonumber(ARGV[6])
-- What an entry costs Redis (see `entry_cost`).
local function cost(n) return n + overhead + math.min(n, math.floor(n * n / 4096)) end
bytes = bytes + cost(#message)
local oldest = now - window
local max = tonumber(ARGV[5])
if head < oldest - math.floor(window / 64) or bytes > max then
  -- The oldest entry first, alone, then growing batches while entries go.
  local budget = tonumber(ARGV[7])
  local cursor, dropped, keep, count = '-', nil, nil, 1
  while budget > 0 and not keep do
    local batch = redis.call('XRANGE', stream, cursor, '+', 'COUNT', count)
    count = math.min(count * 8, 64)
    if #batch == 0 then break end
    for _, e in ipairs(batch) do
      local ems = tonumber(string.match(e[1], '^(%d+)-'))
      if e[1] == id or budget == 0 or (ems > oldest and bytes <= max) then
        keep, head = e[1], ems
        break
      end
      bytes = bytes - cost(#e[2][2])
      dropped = e[1]
      budget = budget - 1
    end
    cursor = '(' .. batch[#batch][1]
  end
  if dropped then
    redis.call('XTRIM', stream, 'MINID', keep or id)
    local m, s = string.match(dropped, '^(%d+)-(%d+)$')
    floor = text_of(m, tonumber(s))
  end
end
if floor then
  redis.call('HSET', meta, 'ms', ms, 'seq', seq, 'bytes', bytes, 'head', head, 'floor', floor)
else
  redis.call('HSET', meta, 'ms', ms, 'seq', seq, 'bytes', bytes, 'head', head)
end
redis.call('PEXPIRE', meta, tonumber(ARGV[8]))
if KEYS[3] then redis.call('SET', KEYS[3], '1', 'PX', ARGV[9]) end
redis.call('PUBLISH', ARGV[1], message)
return text
"#;

/// [`APPEND`] by its SHA-1: the publisher sends `EVALSHA` with it, not the
/// script's 2.5 KB with every broadcast (hashing and parsing that text
/// was most of what a recoverable broadcast cost Redis: 22 of the EVAL's
/// 30.6 µs, the commands inside taking 8.4). The publishing connection
/// loads the scripts when it opens ([`SCRIPTS`]).
pub(crate) fn append_sha() -> &'static str {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(APPEND));
    SCRIPT.get_hash()
}

/// The scripts the publisher runs by their SHA-1, loaded (`SCRIPT LOAD`)
/// whenever its connection opens: Redis keeps them until it restarts or
/// is told `SCRIPT FLUSH`. After a flush, the pipeline in flight fails
/// with NOSCRIPT (its broadcasts counted in
/// `switchboard_cluster_publish_dropped_total{reason="failed"}`) and the
/// connection is opened again, loading them.
pub(crate) const SCRIPTS: [&str; 2] = [APPEND, crate::confirmed::ONCE];

/// Whether every entry after an offset is held: a Lua function shared by
/// the scripts that read (meta key, offset text).
const HELD: &str = r#"
local function held(meta, offset)
  local floor = redis.call('HGET', meta, 'floor')
  local ms = redis.call('HGET', meta, 'ms')
  if not floor or not ms then return false end
  local last = ms .. string.format('%06d', tonumber(redis.call('HGET', meta, 'seq')))
  return #offset == 19 and offset >= floor and offset <= last
end
"#;

/// Takes a session. KEYS: session, meta. ARGV: nsp, owner (`1<owner>` or
/// `0`), offset text. Returns false when there is no such session for
/// this namespace and owner (left as it is), else `{held, sid, rooms...}`
/// (the session deleted either way: a session whose packets are gone
/// cannot be recovered any more).
const RESTORE: &str = r#"
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
local h, rooms = {}, {}
for i = 1, #fields, 2 do
  local k = fields[i]
  if string.sub(k, 1, 2) == 'r:' then
    rooms[#rooms + 1] = string.sub(k, 3)
  else
    h[k] = fields[i + 1]
  end
end
local owner = h['o'] and ('1' .. h['o']) or '0'
if h['nsp'] ~= ARGV[1] or owner ~= ARGV[2] or not h['sid'] then return false end
redis.call('DEL', KEYS[1])
local out = { held(KEYS[2], ARGV[3]) and 1 or 0, h['sid'] }
for _, r in ipairs(rooms) do out[#out + 1] = r end
return out
"#;

/// Reads what followed an offset. KEYS: stream, meta. ARGV: offset text,
/// offset entry id, and a channel and a marker to publish on it (none when
/// empty). Returns false when some of it is no longer held, else the
/// messages after it, in order. The marker is published after every
/// message read: a subscriber that receives it has received them all.
const MISSED: &str = r#"
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
if not held(KEYS[2], ARGV[1]) then return false end
local out = {}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+')) do
  out[#out + 1] = e[2][2]
end
return out
"#;

/// Where a [`RecoveryLog`] gets its Redis connection: the bus's command
/// connection in a cluster, while it is up.
pub type Connect = Arc<dyn Fn() -> Option<MultiplexedConnection> + Send + Sync>;

/// The recovery log and sessions of a cluster, in Redis (see the module).
pub struct RecoveryLog {
    prefix: String,
    window: Duration,
    max_bytes: usize,
    timeout: Duration,
    connect: Connect,
}

/// The offset of the log entry `ms-seq`, and back.
fn entry_id(offset: Offset) -> String {
    format!("{}-{}", offset.0 / 1_000_000, offset.0 % 1_000_000)
}

fn offset_text(offset: Offset) -> String {
    format!("{:0width$}", offset.0, width = OFFSET_DIGITS)
}

impl RecoveryLog {
    /// A log under key prefix `prefix` (the bus's), keeping packets and
    /// dropped sessions for `window`, each namespace's log bounded by
    /// `max_bytes`; every command bounded by `timeout`.
    pub fn new(
        prefix: &str,
        window: Duration,
        max_bytes: usize,
        timeout: Duration,
        connect: Connect,
    ) -> RecoveryLog {
        RecoveryLog {
            prefix: prefix.to_owned(),
            window,
            max_bytes,
            timeout,
            connect,
        }
    }

    /// The stream holding namespace `nsp`'s log.
    pub fn stream_key(&self, nsp: &str) -> String {
        format!("{}-log#{}#", self.prefix, nsp)
    }

    fn meta_key(&self, nsp: &str) -> String {
        format!("{}-log#{}#meta", self.prefix, nsp)
    }

    fn session_key(&self, pid: &Pid) -> String {
        format!("{}-session#{}", self.prefix, pid.as_str())
    }

    /// How long a live socket's session is kept without a refresh: the
    /// window plus the refresh period, so that it outlives its node by at
    /// least the window.
    pub fn live_ttl(&self) -> Duration {
        self.window + self.refresh_period()
    }

    /// How often a node refreshes its live sockets' sessions.
    pub fn refresh_period(&self) -> Duration {
        (self.window / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    fn conn(&self) -> Result<MultiplexedConnection, ClusterError> {
        (self.connect)().ok_or(ClusterError::NotConnected)
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis().try_into().unwrap_or(u64::MAX).max(1)
    }

    /// Appends a recoverable broadcast of this node (`uid`) to its
    /// namespace's log and publishes it on the bus, in one script; the
    /// offset it was given.
    pub async fn append(&self, outbound: &Outbound, uid: &str) -> Result<Offset, ClusterError> {
        let (cmd, _) = self.append_cmd(outbound, uid);
        let mut conn = self.conn()?;
        let text: String = match timed(self.timeout, cmd.query_async(&mut conn)).await {
            // Not loaded (a connection of its own, or a flush): the script
            // did not run, so loading it and running it again appends once.
            Err(ClusterError::Redis(err))
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                let _: String = timed(
                    self.timeout,
                    redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(APPEND)
                        .query_async(&mut conn),
                )
                .await?;
                timed(self.timeout, cmd.query_async(&mut conn)).await?
            }
            other => other?,
        };
        Offset::parse(&text).ok_or(ClusterError::Malformed("offset from the append script"))
    }

    /// The command [`append`](Self::append) sends (the publisher sends it
    /// in its pipelines, in order with the bus's other messages), and the
    /// message's size.
    pub(crate) fn append_cmd(&self, outbound: &Outbound, uid: &str) -> (redis::Cmd, usize) {
        self.append_cmd_once(outbound, uid, None)
    }

    /// [`append_cmd`](Self::append_cmd), appending and publishing nothing
    /// when the marker `once` (key, lifetime) is set, and setting it (see
    /// [`crate::confirmed`]).
    pub(crate) fn append_cmd_once(
        &self,
        outbound: &Outbound,
        uid: &str,
        once: Option<&(String, Duration)>,
    ) -> (redis::Cmd, usize) {
        let (message, slot) = outbound.encode_with_offset_slot(uid);
        let size = message.len();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(append_sha())
            .arg(if once.is_some() { 3 } else { 2 });
        cmd.arg(self.stream_key(&outbound.nsp))
            .arg(self.meta_key(&outbound.nsp));
        if let Some((marker, _)) = once {
            cmd.arg(marker);
        }
        cmd.arg(outbound.channel(&self.prefix))
            .arg(message)
            .arg(slot + 1)
            .arg(Self::ms(self.window))
            .arg(self.max_bytes)
            .arg(ENTRY_OVERHEAD)
            .arg(TRIM_BUDGET)
            // The metadata outlives the stream: a log that expired idle
            // still knows its last id (an offset equal to it missed nothing).
            .arg(Self::ms(self.window * 4).max(86_400_000));
        if let Some((_, ttl)) = once {
            cmd.arg(crate::confirmed::ttl_ms(*ttl));
        }
        (cmd, size)
    }

    /// Writes the session of a socket that entered its namespace (fresh or
    /// recovered), with the live TTL.
    pub async fn connected(&self, session: &Session) -> Result<(), ClusterError> {
        let key = self.session_key(&session.pid);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(&key).ignore();
        pipe.cmd("HSET")
            .arg(&key)
            .arg("nsp")
            .arg(&*session.nsp)
            .arg("sid")
            .arg(session.sid.as_str());
        if let Some(owner) = &session.owner {
            pipe.arg("o").arg(&**owner);
        }
        self.rooms_then_ttl(&mut pipe, &key, &session.rooms).await
    }

    /// A live socket joined rooms.
    pub async fn joined(&self, pid: &Pid, rooms: &[Room]) -> Result<(), ClusterError> {
        if rooms.is_empty() {
            return Ok(());
        }
        let key = self.session_key(pid);
        let mut pipe = redis::pipe();
        // A session whose hash expired meanwhile is written partly here:
        // without `nsp` it is never restored, and it expires.
        pipe.cmd("HSET").arg(&key);
        self.rooms_then_ttl(&mut pipe, &key, rooms).await
    }

    /// Ends the session's HSET that `pipe` ends with by a field per room,
    /// sets the live TTL, and runs the pipeline.
    async fn rooms_then_ttl(
        &self,
        pipe: &mut redis::Pipeline,
        key: &str,
        rooms: &[Room],
    ) -> Result<(), ClusterError> {
        for room in rooms {
            pipe.arg(format!("r:{room}")).arg("");
        }
        pipe.ignore();
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(Self::ms(self.live_ttl()))
            .ignore();
        self.exec(pipe).await
    }

    /// A live socket left a room.
    pub async fn left(&self, pid: &Pid, room: &str) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(self.session_key(pid))
            .arg(format!("r:{room}"))
            .ignore();
        self.exec(&mut pipe).await
    }

    /// A socket left its namespace: with `keep` (its connection dropped)
    /// its session is kept for the window, else deleted.
    pub async fn disconnected(&self, pid: &Pid, keep: bool) -> Result<(), ClusterError> {
        let key = self.session_key(pid);
        let mut pipe = redis::pipe();
        if keep {
            pipe.cmd("PEXPIRE").arg(key).arg(Self::ms(self.window));
        } else {
            pipe.cmd("DEL").arg(key);
        }
        self.exec(pipe.ignore()).await
    }

    /// Refreshes the TTL of live sockets' sessions (their node does it
    /// every [`refresh_period`](Self::refresh_period)).
    pub async fn refresh(&self, pids: &[Pid]) -> Result<(), ClusterError> {
        if pids.is_empty() {
            return Ok(());
        }
        let ttl = Self::ms(self.live_ttl());
        let mut pipe = redis::pipe();
        for pid in pids {
            pipe.cmd("PEXPIRE")
                .arg(self.session_key(pid))
                .arg(ttl)
                .ignore();
        }
        self.exec(&mut pipe).await
    }

    async fn exec(&self, pipe: &mut redis::Pipeline) -> Result<(), ClusterError> {
        let mut conn = self.conn()?;
        timed(self.timeout, pipe.exec_async(&mut conn)).await
    }

    /// Takes session `pid` of namespace `nsp` for a client of `owner` that
    /// last received `offset`: `None` if there is none for them, or if the
    /// log no longer holds every packet after `offset` (the session is
    /// then gone too).
    pub async fn restore(
        &self,
        nsp: &str,
        pid: &Pid,
        offset: Offset,
        owner: Option<&str>,
    ) -> Result<Option<Session>, ClusterError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{HELD}{RESTORE}"))
            .arg(2)
            .arg(self.session_key(pid))
            .arg(self.meta_key(nsp))
            .arg(nsp)
            .arg(owner.map_or_else(|| "0".to_owned(), |o| format!("1{o}")))
            .arg(offset_text(offset));
        let answer: Option<Vec<String>> = timed(self.timeout, cmd.query_async(&mut conn)).await?;
        let Some(answer) = answer else {
            return Ok(None);
        };
        let [held, sid, rooms @ ..] = answer.as_slice() else {
            return Err(ClusterError::Malformed("session from the restore script"));
        };
        if held != "1" {
            return Ok(None);
        }
        let sid = SocketId::parse(sid).ok_or(ClusterError::Malformed("session's socket id"))?;
        Ok(Some(Session {
            nsp: Arc::from(nsp),
            sid,
            pid: *pid,
            rooms: rooms.iter().map(|r| Room::from(r.as_str())).collect(),
            owner: owner.map(Arc::from),
        }))
    }

    /// The packets after `after` that `session` would have received, in
    /// order, each once; `None` if the log no longer holds all of them.
    /// With `marker` (a channel, a message), the marker is published on
    /// the channel in the same script, after every message read.
    pub async fn missed(
        &self,
        session: &Session,
        after: Offset,
        marker: Option<(&str, &str)>,
    ) -> Result<Option<Vec<Missed>>, ClusterError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{HELD}{MISSED}"))
            .arg(2)
            .arg(self.stream_key(&session.nsp))
            .arg(self.meta_key(&session.nsp))
            .arg(offset_text(after))
            .arg(entry_id(after))
            .arg(marker.map_or("", |m| m.0))
            .arg(marker.map_or("", |m| m.1));
        let answer: Option<Vec<Vec<u8>>> = timed(self.timeout, cmd.query_async(&mut conn)).await?;
        let Some(messages) = answer else {
            return Ok(None);
        };
        let mut missed = Vec::new();
        for message in messages {
            let message = Bytes::from(message);
            // A message that does not decode cannot be replayed: better
            // not recovered than recovered with a gap.
            let Ok(Decoded::Broadcast(inbound)) = wire::decode(&message, "", &session.nsp) else {
                return Ok(None);
            };
            let Some(offset) = inbound.offset else {
                return Ok(None);
            };
            if reaches(&inbound.opts, session) {
                let packet = Encoded::event_at(&session.nsp, &inbound.event, &inbound.args, offset);
                missed.push(Missed { offset, packet });
            }
        }
        Ok(Some(missed))
    }
}

/// Whether a socket of `session` was meant to receive a broadcast to
/// `opts` (its rooms at the time, and its own id, which is a room too).
fn reaches(opts: &BroadcastOptions, session: &Session) -> bool {
    let sid = session.sid.as_str();
    let member = |room: &Room| &**room == sid || session.rooms.contains(room);
    opts.except_socket != Some(session.sid)
        && !opts.except.iter().any(member)
        && (opts.rooms.is_empty() || opts.rooms.iter().any(member))
}

mod store;

pub(crate) use store::MARKER_PREFIX;
pub use store::RedisStore;

#[cfg(test)]
mod tests;
