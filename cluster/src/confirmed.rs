//! Broadcasts whose emitter waits for their publication
//! ([`socketio::Published`]), and publication at most once under a key
//! ([`socketio::Once`]): what lets the chat ack a change (a message, a
//! membership change, a read) only once the other nodes have it, and a
//! retry of one whose node was killed publish it if, and only if,
//! nothing did.
//!
//! The marker `<prefix>-once#<nsp>#<key>` is set by the very script that
//! publishes (the recovery log's append, or [`ONCE`] when recovery is
//! off), which publishes nothing when it is already set: a first emission
//! still in a dead node's socket buffer, run by Redis when it resumes,
//! and its retry from another node race to one publication. A
//! broadcast published once is delivered by every node from the bus, the
//! one that sent it included (its uid carries a suffix), so that a retry
//! on the node that emitted first does not deliver twice there.

use std::time::Duration;

use socketio::Once;
use tokio::sync::oneshot;

use crate::wire::Outbound;

/// Ends the uid of a broadcast published once outside the recovery log:
/// every node delivers it, the sender too (as [`crate::wire::LOGGED_UID_SUFFIX`]).
pub(crate) const ONCE_UID_SUFFIX: &str = "~once";

/// Publishes a message unless its marker is set, and sets it.
///
/// KEYS: marker. ARGV: channel, message, marker TTL ms, and the command
/// that publishes (`PUBLISH`, or `SPUBLISH` in sharded mode). Returns how
/// many subscribers got it, or false when it had been published already.
pub(crate) const ONCE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[3])
return redis.call(ARGV[4], ARGV[1], ARGV[2])
"#;

/// [`ONCE`] by its SHA-1 (see `recovery::append_sha`).
pub(crate) fn once_sha() -> &'static str {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(ONCE));
    SCRIPT.get_hash()
}

/// A broadcast in the publish queue whose emitter waits for it.
pub(crate) struct Confirmed {
    pub(crate) message: Outbound,
    /// Appended to the recovery log (and published by its script).
    pub(crate) logged: bool,
    /// The marker's key and lifetime, when published at most once.
    pub(crate) once: Option<(String, Duration)>,
    /// Fired once Redis answered the command that published it; dropped
    /// (the emitter told it was not) otherwise.
    pub(crate) done: Option<oneshot::Sender<()>>,
}

impl Confirmed {
    pub(crate) fn new(
        message: Outbound,
        logged: bool,
        once: Option<&Once>,
        prefix: &str,
        done: oneshot::Sender<()>,
    ) -> Confirmed {
        let once = once.map(|once| (marker_key(prefix, &message.nsp, &once.key), once.ttl));
        Confirmed {
            message,
            logged,
            once,
            done: Some(done),
        }
    }

    /// Tells the emitter it was published.
    pub(crate) fn fire(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

/// The key of a broadcast's marker.
pub(crate) fn marker_key(prefix: &str, nsp: &str, key: &str) -> String {
    format!("{prefix}-once#{nsp}#{key}")
}

/// Milliseconds, at least 1 (PX 0 is an error).
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
