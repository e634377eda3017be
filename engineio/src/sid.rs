//! Session ids: 20 characters of base64url from 120 random bits, as the
//! reference server's `base64id`. The id authenticates polling requests, so it
//! comes from the thread-local CSPRNG.

use base64::Engine as _;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;

/// A random session id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid([u8; 20]);

impl Sid {
    /// A fresh random id.
    pub fn random() -> Sid {
        let mut raw = [0u8; 15];
        rand::fill(&mut raw);
        let mut id = [0u8; 20];
        let written = BASE64_URL_SAFE_NO_PAD
            .encode_slice(raw, &mut id)
            .unwrap_or(0);
        debug_assert_eq!(written, 20);
        Sid(id)
    }

    /// Parses an id received from a client; `None` if it cannot be one of ours.
    pub fn parse(s: &str) -> Option<Sid> {
        let bytes: [u8; 20] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .then_some(Sid(bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only base64url characters are ever stored (see `random` and `parse`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// What logs show instead of the id: 8 hex digits of a hash keyed per
    /// process. Lines of one session can be told apart and followed, but
    /// the id, which authenticates polling requests, cannot be recovered
    /// from a log.
    pub fn log_id(&self) -> LogId {
        use std::hash::BuildHasher;
        static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
        let hash = KEY
            .get_or_init(std::hash::RandomState::new)
            .hash_one(self.0);
        LogId((hash >> 32) as u32)
    }
}

/// A session's name in logs (see [`Sid::log_id`]); shows as 8 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LogId(u32);

impl std::fmt::Display for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl std::fmt::Debug for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Debug output shows the log id, never the sid itself: a `?sid` in a log
/// line must not hand out what authenticates polling requests.
impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sid({})", self.log_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_parse_back() {
        let a = Sid::random();
        let b = Sid::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 20);
        assert_eq!(Sid::parse(a.as_str()), Some(a));
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse("aaaaaaaaaaaaaaaaaaa/"), None);
    }

    #[test]
    fn log_ids_hide_the_id_and_stay_stable() {
        let a = Sid::random();
        let shown = a.log_id().to_string();
        assert_eq!(shown.len(), 8);
        assert!(shown.bytes().all(|b| b.is_ascii_hexdigit()));
        // Not the id, nor any part of it that could help guess it.
        assert!(!a.as_str().contains(&shown));
        assert_eq!(a.log_id(), a.log_id(), "one session, one name");
        assert_ne!(a.log_id(), Sid::random().log_id());
    }
}
