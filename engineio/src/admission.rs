//! Admission of new sessions: how many may be open at once, in all and per
//! client address, and how fast one address may open them.
//!
//! Each admitted handshake holds a [`SessionPermit`] for the whole life of
//! its session, whatever the transport (a polling session is one session,
//! not one request; an upgrade keeps the permit it had). The permit is
//! released when it is dropped — the session takes it out of its state when
//! it closes, however it closes — so a slot is freed exactly once.
//!
//! The client address is the TCP peer's ([`ClientAddr`], put on each request
//! by whoever accepts the connection), or the rightmost `X-Forwarded-For`
//! entry not in the trusted set when — and only when — the peer is a trusted
//! proxy. IPv6 addresses are counted by their /64, the block one host
//! usually gets.
//!
//! The per-address table is bounded: an address is forgotten once it has no
//! session and a full bucket, and a sweep every time the table doubles
//! removes those whose bucket has refilled since. An address whose bucket
//! is not full is never forgotten before it refills (forgetting it would
//! hand it a fresh burst — the attacker's first of all). Instead, idle
//! addresses are bounded by [`MAX_IDLE_ADDRESSES`]: when that many idle
//! addresses are still refilling, the table is swept again (at most once a
//! second), and if it is still full the idle addresses closest to a full
//! bucket are forgotten — forgetting them changes least, and an address
//! that hammers (an empty bucket) goes last. A newcomer is never refused
//! because of other addresses' churn. Addresses with sessions are bounded
//! by `max_sessions`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

/// The TCP peer of a request. The server that accepts connections inserts
/// it as a request extension; without it, per-address limits do not apply
/// (the total still does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// An IP network: an address and a prefix length (`10.0.0.0/8`,
/// `2001:db8::/32`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not an [`IpNet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR network (e.g. 10.0.0.1, 10.0.0.0/8, fd00::/8)")]
pub struct IpNetError(String);

impl IpNet {
    /// The prefix length (0 = every address of its family).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<IpNet, IpNetError> {
        let err = || IpNetError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr = IpAddr::from_str(addr).map_err(|_| err())?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(err)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

/// How many sessions may be admitted, and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// Sessions open at once, on both transports.
    pub max_sessions: usize,
    /// Sessions open at once from one client address; 0 = no limit.
    pub max_sessions_per_address: usize,
    /// Sustained handshakes per second from one client address; 0 = no limit.
    pub handshakes_per_sec_per_address: f64,
    /// Handshakes one address may make at once after a quiet spell.
    pub handshake_burst_per_address: f64,
    /// Peers whose `X-Forwarded-For` is believed; empty = none is.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for AdmissionConfig {
    /// No limits, as the reference server.
    fn default() -> Self {
        AdmissionConfig {
            max_sessions: usize::MAX,
            max_sessions_per_address: 0,
            handshakes_per_sec_per_address: 0.0,
            handshake_burst_per_address: 1.0,
            trusted_proxies: Vec::new(),
        }
    }
}

impl AdmissionConfig {
    fn per_address(&self) -> bool {
        self.max_sessions_per_address > 0 || self.rate_limited()
    }

    fn rate_limited(&self) -> bool {
        self.handshakes_per_sec_per_address > 0.0
    }

    /// The address a request comes from, by the rules in the module docs.
    pub(crate) fn client_ip(
        &self,
        headers: &http::HeaderMap,
        peer: Option<ClientAddr>,
    ) -> Option<IpAddr> {
        let peer = peer?.0.ip().to_canonical();
        if !self.trusted(peer) {
            return Some(peer);
        }
        // Entries in order, across repeated headers; from the right, skip
        // the proxies we trust: the next one is who they saw.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(ip) = parse_forwarded(entry) else {
                // A trusted proxy wrote something we cannot read: the last
                // hop we could is the client.
                break;
            };
            client = ip;
            if !self.trusted(ip) {
                break;
            }
        }
        Some(client)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    IpAddr::from_str(entry)
        .ok()
        .or_else(|| SocketAddr::from_str(entry).ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The key an address is counted under: IPv6 by its /64.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_sessions` are open.
    ServerFull,
    /// The client's address has `max_sessions_per_address` open.
    AddressFull,
    /// The client's address is over its handshake rate.
    RateLimited,
}

impl Refusal {
    /// The code in the JSON body. The reference server has no such errors:
    /// these continue its numbering (0–5, see
    /// [`ErrorCode`](crate::ErrorCode)).
    pub fn code(self) -> u8 {
        match self {
            Refusal::ServerFull => 6,
            Refusal::AddressFull => 7,
            Refusal::RateLimited => 8,
        }
    }

    /// The message in the JSON body.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::ServerFull => "Server full",
            Refusal::AddressFull => "Too many sessions from this address",
            Refusal::RateLimited => "Too many handshakes from this address",
        }
    }

    /// The HTTP status: 503 when the server is full (the condition is the
    /// server's, not the client's, and a client or load balancer should try
    /// again later or elsewhere), 429 when this client's address is over
    /// its own limits.
    pub fn status(self) -> http::StatusCode {
        match self {
            Refusal::ServerFull => http::StatusCode::SERVICE_UNAVAILABLE,
            Refusal::AddressFull | Refusal::RateLimited => http::StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// Idle addresses (no session, bucket still refilling) kept at most; past
/// it, the idle addresses closest to a full bucket are forgotten (they
/// change least by it), so a newcomer is never refused for others' churn.
pub const MAX_IDLE_ADDRESSES: usize = 65_536;

/// How often, at most, a full table of idle addresses is swept again to
/// make room (each sweep walks the whole table).
const FULL_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The table never sweeps below this size.
const MIN_SWEEP: usize = 1024;

struct Entry {
    sessions: usize,
    tokens: f64,
    refilled: Instant,
}

impl Entry {
    fn refill(&mut self, now: Instant, config: &AdmissionConfig) {
        if config.rate_limited() {
            let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + elapsed * config.handshakes_per_sec_per_address)
                .min(config.handshake_burst_per_address);
        }
        self.refilled = now;
    }

    /// Nothing to remember: no session, and a full bucket (or no rate).
    fn forgettable(&self, now: Instant, config: &AdmissionConfig) -> bool {
        if self.sessions > 0 {
            return false;
        }
        if !config.rate_limited() {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens + elapsed * config.handshakes_per_sec_per_address
            >= config.handshake_burst_per_address
    }
}

struct Table {
    open: usize,
    addresses: HashMap<IpAddr, Entry>,
    /// Entries of `addresses` with no session.
    idle: usize,
    /// Idle entries kept at most ([`MAX_IDLE_ADDRESSES`]; smaller in tests).
    max_idle: usize,
    /// When the table was last swept because `max_idle` was reached.
    full_sweep: Option<Instant>,
    sweep_at: usize,
    refused: [u64; 3],
}

/// The admission state of one engine.
pub(crate) struct Admission {
    config: AdmissionConfig,
    table: Mutex<Table>,
}

/// A session's slot; dropping it frees the slot.
pub struct SessionPermit {
    admission: Arc<Admission>,
    key: Option<IpAddr>,
}

impl std::fmt::Debug for SessionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPermit")
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.admission.release(self.key);
    }
}

/// Counts of the admission state, for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Sessions holding a slot.
    pub open: usize,
    /// Client addresses remembered.
    pub addresses: usize,
    /// Handshakes refused because `max_sessions` were open.
    pub refused_server_full: u64,
    /// Handshakes refused by the per-address session limit.
    pub refused_address_full: u64,
    /// Handshakes refused by the per-address rate.
    pub refused_rate_limited: u64,
}

impl Admission {
    pub(crate) fn new(config: AdmissionConfig) -> Arc<Admission> {
        Arc::new(Admission {
            config,
            table: Mutex::new(Table {
                open: 0,
                addresses: HashMap::new(),
                idle: 0,
                max_idle: MAX_IDLE_ADDRESSES,
                full_sweep: None,
                sweep_at: MIN_SWEEP,
                refused: [0; 3],
            }),
        })
    }

    pub(crate) fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Takes a slot for a new session from `client` (unknown: only the
    /// total applies).
    pub(crate) fn admit(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<SessionPermit, Refusal> {
        let config = &self.config;
        let mut table = self.table.lock();
        // The total first, so a full server remembers no new address.
        if table.open >= config.max_sessions {
            table.refused[0] += 1;
            return Err(Refusal::ServerFull);
        }
        let key = client.filter(|_| config.per_address()).map(key_of);
        if let Some(key) = key {
            if !table.addresses.contains_key(&key) {
                if table.addresses.len() >= table.sweep_at {
                    table.sweep(now, config);
                }
                if table.idle >= table.max_idle {
                    let due = table
                        .full_sweep
                        .is_none_or(|at| now.saturating_duration_since(at) >= FULL_SWEEP_EVERY);
                    if due {
                        table.full_sweep = Some(now);
                        table.sweep(now, config);
                    }
                    if table.idle >= table.max_idle {
                        // Still full of refilling addresses: forget those
                        // closest to a full bucket, which forgetting
                        // changes least. A hammering address (an empty
                        // bucket) is the last to go, and newcomers are
                        // never locked out by someone else's churn.
                        table.evict_fullest(now, config);
                    }
                }
                // Counted idle until it takes a session below.
                table.idle += 1;
            }
            let table = &mut *table;
            let entry = table.addresses.entry(key).or_insert(Entry {
                sessions: 0,
                tokens: config.handshake_burst_per_address,
                refilled: now,
            });
            entry.refill(now, config);
            let refusal = if config.max_sessions_per_address > 0
                && entry.sessions >= config.max_sessions_per_address
            {
                Some((1, Refusal::AddressFull))
            } else if config.rate_limited() && entry.tokens < 1.0 {
                Some((2, Refusal::RateLimited))
            } else {
                None
            };
            if let Some((index, refusal)) = refusal {
                table.refused[index] += 1;
                return Err(refusal);
            }
            if config.rate_limited() {
                entry.tokens -= 1.0;
            }
            if entry.sessions == 0 {
                table.idle -= 1;
            }
            entry.sessions += 1;
        }
        table.open += 1;
        Ok(SessionPermit {
            admission: self.clone(),
            key,
        })
    }

    fn release(&self, key: Option<IpAddr>) {
        let now = Instant::now();
        let mut table = self.table.lock();
        table.open = table.open.saturating_sub(1);
        if let Some(key) = key
            && let Some(entry) = table.addresses.get_mut(&key)
        {
            entry.sessions = entry.sessions.saturating_sub(1);
            if entry.forgettable(now, &self.config) {
                table.addresses.remove(&key);
            } else if entry.sessions == 0 {
                table.idle += 1;
            }
        }
    }

    pub(crate) fn stats(&self) -> AdmissionStats {
        let table = self.table.lock();
        AdmissionStats {
            open: table.open,
            addresses: table.addresses.len(),
            refused_server_full: table.refused[0],
            refused_address_full: table.refused[1],
            refused_rate_limited: table.refused[2],
        }
    }
}

impl Table {
    /// Forgets addresses with nothing to remember (no session, a full
    /// bucket), and only those.
    /// Forgets the idle addresses with the most tokens until an eighth of
    /// `max_idle` is free (so the O(n) pass runs once per that many new
    /// addresses).
    fn evict_fullest(&mut self, now: Instant, config: &AdmissionConfig) {
        let keep = self.max_idle - self.max_idle.div_ceil(8).max(1);
        let mut idle: Vec<(f64, IpAddr)> = self
            .addresses
            .iter_mut()
            .filter(|(_, e)| e.sessions == 0)
            .map(|(key, e)| {
                e.refill(now, config);
                (e.tokens, *key)
            })
            .collect();
        if idle.len() <= keep {
            return;
        }
        let excess = idle.len() - keep;
        // Fullest first: the `excess` largest token counts go.
        idle.select_nth_unstable_by(excess - 1, |a, b| b.0.total_cmp(&a.0));
        for (_, key) in &idle[..excess] {
            self.addresses.remove(key);
        }
        self.idle -= excess;
    }

    fn sweep(&mut self, now: Instant, config: &AdmissionConfig) {
        self.addresses.retain(|_, e| !e.forgettable(now, config));
        self.idle = self.addresses.values().filter(|e| e.sessions == 0).count();
        self.sweep_at = (self.addresses.len() * 2).max(MIN_SWEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn parses_and_matches_networks() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: IpNet = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let any: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("203.0.113.1".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "fd00::/129", "nope", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let config = AdmissionConfig {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..AdmissionConfig::default()
        };
        let peer = |s: &str| Some(ClientAddr(SocketAddr::new(s.parse().unwrap(), 1234)));
        let mut headers = http::HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6, 198.51.100.1".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        // An untrusted peer: its header is ignored.
        assert_eq!(
            config.client_ip(&headers, peer("203.0.113.9")),
            ip("203.0.113.9")
        );
        // A trusted one: the rightmost entry that is not a trusted proxy.
        assert_eq!(
            config.client_ip(&headers, peer("10.0.0.1")),
            ip("198.51.100.1")
        );
        // No header: the proxy itself.
        let empty = http::HeaderMap::new();
        assert_eq!(config.client_ip(&empty, peer("10.0.0.1")), ip("10.0.0.1"));
        // Garbage written by a trusted hop: the last hop we could read.
        let mut garbage = http::HeaderMap::new();
        garbage.append(
            "x-forwarded-for",
            "198.51.100.1, junk, 10.0.0.3".parse().unwrap(),
        );
        assert_eq!(config.client_ip(&garbage, peer("10.0.0.1")), ip("10.0.0.3"));
        // With a port.
        let mut port = http::HeaderMap::new();
        port.append("x-forwarded-for", "198.51.100.4:5555".parse().unwrap());
        assert_eq!(
            config.client_ip(&port, peer("10.0.0.1")),
            ip("198.51.100.4")
        );
        assert_eq!(config.client_ip(&headers, None), None);
    }

    #[test]
    fn counts_in_total_and_per_address_and_frees_once() {
        let admission = Admission::new(AdmissionConfig {
            max_sessions: 3,
            max_sessions_per_address: 2,
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        let a1 = admission.admit(ip("192.0.2.1"), now).unwrap();
        let _a2 = admission.admit(ip("192.0.2.1"), now).unwrap();
        assert_eq!(
            admission.admit(ip("192.0.2.1"), now).unwrap_err(),
            Refusal::AddressFull
        );
        let _b = admission.admit(ip("192.0.2.2"), now).unwrap();
        assert_eq!(
            admission.admit(ip("192.0.2.3"), now).unwrap_err(),
            Refusal::ServerFull
        );
        drop(a1);
        assert_eq!(admission.stats().open, 2);
        let _c = admission.admit(ip("192.0.2.3"), now).unwrap();
        let stats = admission.stats();
        assert_eq!(
            (stats.refused_address_full, stats.refused_server_full),
            (1, 1)
        );
    }

    #[test]
    fn ipv6_counts_by_64() {
        let admission = Admission::new(AdmissionConfig {
            max_sessions_per_address: 1,
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        let _a = admission.admit(ip("2001:db8:1:2::1"), now).unwrap();
        assert!(admission.admit(ip("2001:db8:1:2::ffff"), now).is_err());
        assert!(admission.admit(ip("2001:db8:1:3::1"), now).is_ok());
    }

    #[test]
    fn rate_is_a_token_bucket() {
        let admission = Admission::new(AdmissionConfig {
            handshakes_per_sec_per_address: 10.0,
            handshake_burst_per_address: 3.0,
            ..AdmissionConfig::default()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(admission.admit(ip("192.0.2.1"), t0).unwrap());
        }
        assert_eq!(
            admission.admit(ip("192.0.2.1"), t0).unwrap_err(),
            Refusal::RateLimited
        );
        assert!(admission.admit(ip("192.0.2.2"), t0).is_ok());
        let later = t0 + Duration::from_millis(100);
        assert!(admission.admit(ip("192.0.2.1"), later).is_ok());
        assert!(admission.admit(ip("192.0.2.1"), later).is_err());
    }

    #[test]
    fn the_address_table_stays_bounded() {
        let admission = Admission::new(AdmissionConfig {
            max_sessions_per_address: 5,
            handshakes_per_sec_per_address: 1.0,
            handshake_burst_per_address: 10.0,
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        // Spoofed-looking churn: each address opens one session and leaves,
        // its bucket left partial.
        for i in 0..(MAX_IDLE_ADDRESSES as u32 * 3) {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            // Past `MAX_IDLE_ADDRESSES` still refilling, new ones wait.
            match admission.admit(Some(addr), now) {
                Ok(permit) => drop(permit),
                Err(refusal) => assert_eq!(refusal, Refusal::RateLimited),
            }
        }
        let stats = admission.stats();
        assert_eq!(stats.open, 0);
        assert!(
            stats.addresses <= 2 * MAX_IDLE_ADDRESSES + MIN_SWEEP,
            "{}",
            stats.addresses
        );
        // Without a rate, an address with no session is forgotten at once.
        let plain = Admission::new(AdmissionConfig {
            max_sessions_per_address: 5,
            ..AdmissionConfig::default()
        });
        drop(plain.admit(ip("192.0.2.1"), now).unwrap());
        assert_eq!(plain.stats().addresses, 0);
    }

    #[test]
    fn a_partial_bucket_is_never_forgotten_before_it_refills() {
        let admission = Admission::new(AdmissionConfig {
            handshakes_per_sec_per_address: 1.0,
            handshake_burst_per_address: 2.0,
            ..AdmissionConfig::default()
        });
        let t0 = Instant::now();
        let attacker = ip("192.0.2.66");
        drop(admission.admit(attacker, t0).unwrap());
        drop(admission.admit(attacker, t0).unwrap());
        assert_eq!(
            admission.admit(attacker, t0).unwrap_err(),
            Refusal::RateLimited
        );
        // More idle addresses than the table keeps, each with a partial
        // bucket: newcomers are still admitted (the fullest buckets are
        // forgotten to make room), and the table stays bounded.
        for i in 0..(MAX_IDLE_ADDRESSES as u32 + 5000) {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(
                admission
                    .admit(Some(addr), t0)
                    .expect("a newcomer is admitted"),
            );
        }
        assert!(admission.stats().addresses <= MAX_IDLE_ADDRESSES + 1);
        // The attacker's empty bucket was not reset by the churn.
        assert_eq!(
            admission.admit(attacker, t0).unwrap_err(),
            Refusal::RateLimited
        );
        // Once it refills (1 token a second), the attacker is served again.
        let later = t0 + Duration::from_secs(1);
        assert!(admission.admit(attacker, later).is_ok());
    }

    #[test]
    fn idle_count_follows_sessions() {
        let admission = Admission::new(AdmissionConfig {
            handshakes_per_sec_per_address: 1.0,
            handshake_burst_per_address: 5.0,
            ..AdmissionConfig::default()
        });
        admission.table.lock().max_idle = 2;
        let t0 = Instant::now();
        let a = admission.admit(ip("192.0.2.1"), t0).unwrap();
        let b = admission.admit(ip("192.0.2.2"), t0).unwrap();
        let c = admission.admit(ip("192.0.2.3"), t0).unwrap();
        // Sessions open: none idle, new addresses admitted.
        assert_eq!(admission.table.lock().idle, 0);
        drop(a);
        drop(b);
        assert_eq!(admission.table.lock().idle, 2);
        // The table of idle addresses is full: a newcomer still gets in,
        // and the idle count stays within the bound.
        let d = admission.admit(ip("192.0.2.4"), t0).unwrap();
        assert!(admission.table.lock().idle <= 2);
        drop(d);
        assert!(admission.table.lock().idle <= 2);
        drop(c);
        assert!(admission.table.lock().idle <= 3);
    }
}
