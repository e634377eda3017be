//! The subscriber task: one RESP3 connection that, for every namespace,
//! PSUBSCRIBEs `<prefix>#<nsp>#*` (broadcasts) and SUBSCRIBEs its request
//! channel and response channels — in sharded mode SSUBSCRIBEs its
//! channel, this node's response channel and (dynamic mode) the channel of
//! each room this node has — and hands what arrives to `Shared`
//! (`on_message`, `on_channel_message`, `on_shard_message`) as the
//! connection reads each push.
//! When the connection drops — Redis says so, or a PING goes unanswered —
//! it is opened again with backoff and every subscription made again
//! before the node counts as up: nothing is left half-subscribed, the
//! failure node-redis users report (socket.io-redis-adapter#446). What
//! the others published while it was cut never reached this node, so
//! before it counts as up again it has the application close its
//! clients, which recover it from the log (`Cluster::on_rejoin`): it
//! tells its clients to resynchronize rather than lose a broadcast
//! silently.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, watch};

use crate::bus::{Shared, Subscription, backoff, name_connection, sleep_or_stop, stop_requested};
use crate::error::ClusterError;
use crate::publisher::timed;

pub(crate) async fn run(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut delay = shared.config.reconnect_min;
    let mut ever_connected = false;
    loop {
        let lost = Arc::new(Notify::new());
        let result = match connect(&shared, lost.clone()).await {
            Ok(conn) => {
                if ever_connected {
                    shared.stats.subscribe_reconnects.fetch_add(1, Relaxed);
                }
                ever_connected = true;
                delay = shared.config.reconnect_min;
                serve(&shared, conn, &lost, &mut stopped).await
            }
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => return,
            Err(err) => {
                if shared.stats.subscribe_up.swap(false, Relaxed) {
                    tracing::error!(%err, "cluster bus: subscribing connection lost");
                    // What the others publish until it is back never
                    // reaches this node: its clients are closed then, to
                    // recover it (`serve`).
                    shared.bus_gap.store(true, Relaxed);
                }
                shared.set_error(Some(err.to_string()));
            }
        }
        if sleep_or_stop(delay, &mut stopped).await {
            return;
        }
        delay = backoff(delay, &shared.config);
    }
}

/// Subscribes and serves one connection until it fails (`Err`) or the bus
/// stops (`Ok`).
async fn serve(
    shared: &Arc<Shared>,
    mut conn: MultiplexedConnection,
    lost: &Notify,
    stopped: &mut watch::Receiver<bool>,
) -> Result<(), ClusterError> {
    let limit = shared.config.command_timeout;
    let mut subscribed: BTreeSet<Subscription> = BTreeSet::new();
    // Set when the rooms' channels must be compared with every room (a
    // fresh connection, a namespace come or gone) rather than only with
    // the rooms touched.
    let mut all_rooms = true;
    loop {
        // Every namespace's pattern and channels, before the node counts
        // as up.
        let generation = shared.generation.load(Relaxed);
        let base: BTreeSet<Subscription> = shared.subscriptions().into_iter().collect();
        let mut wanted = base.clone();
        if all_rooms {
            wanted.extend(shared.room_subscriptions());
        } else {
            // The rooms' channels held stay as they are.
            wanted.extend(subscribed.difference(&base).cloned());
        }
        let new: Vec<&Subscription> = wanted.difference(&subscribed).collect();
        change(&mut conn, &new, true, limit).await?;
        let old: Vec<&Subscription> = subscribed.difference(&wanted).collect();
        change(&mut conn, &old, false, limit).await?;
        subscribed = wanted;
        all_rooms = false;
        if shared.generation.load(Relaxed) != generation {
            // A namespace came or went meanwhile: its pattern first.
            all_rooms = true;
            continue;
        }
        if shared.bus_gap.load(Relaxed) {
            // Subscribed again after a cut: before the node counts as up
            // and delivers what it reads, its clients are closed so that
            // they recover what was published meanwhile (what arrives
            // until then is not delivered: they get it from the log).
            shared.rejoin().await;
        }
        if !shared.stats.subscribe_up.swap(true, Relaxed) {
            tracing::info!(subscriptions = subscribed.len(), "cluster bus: subscribed");
            shared.set_error(None);
        }
        tokio::select! {
            _ = shared.patterns_changed.notified() => all_rooms = true,
            _ = shared.rooms_changed.notified() => {
                rooms_changed(shared, &mut conn, &mut subscribed, limit).await?;
            }
            _ = lost.notified() => return Err(ClusterError::Redis(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the connection closed",
            )))),
            _ = tokio::time::sleep(shared.config.health_interval) => {
                let _: String = timed(limit, redis::cmd("PING").query_async(&mut conn)).await?;
            }
            _ = stop_requested(stopped) => return Ok(()),
        }
    }
}

/// Opens the subscribing connection: RESP3, whose pushes are handed to
/// `Shared::on_message` as they are read.
async fn connect(
    shared: &Arc<Shared>,
    lost: Arc<Notify>,
) -> Result<MultiplexedConnection, ClusterError> {
    use redis::IntoConnectionInfo;
    let info = shared.config.redis_url.as_str().into_connection_info()?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = crate::config::client(&shared.config, info.set_redis_settings(settings))?;
    let weak = Arc::downgrade(shared);
    let push = move |push: PushInfo| -> Result<(), redis::aio::SendError> {
        match push.kind {
            PushKind::PMessage => {
                if let Some(shared) = weak.upgrade() {
                    pmessage(&shared, push.data);
                }
            }
            PushKind::Message => {
                if let Some(shared) = weak.upgrade() {
                    message(&shared, push.data);
                }
            }
            PushKind::SMessage => {
                if let Some(shared) = weak.upgrade() {
                    smessage(&shared, push.data);
                }
            }
            PushKind::Disconnection => lost.notify_one(),
            _ => {}
        }
        Ok(())
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.config.connect_timeout))
        .set_response_timeout(Some(shared.config.command_timeout))
        .set_push_sender(push);
    let mut conn = crate::config::connect(&shared.config, &client, &config).await?;
    name_connection(shared, &mut conn, "subscribe").await;
    Ok(conn)
}

/// `[pattern, channel, message]`.
fn pmessage(shared: &Shared, data: Vec<Value>) {
    let mut data = data.into_iter();
    let (Some(pattern), Some(channel), Some(message)) = (data.next(), data.next(), data.next())
    else {
        shared.stats.malformed.fetch_add(1, Relaxed);
        return;
    };
    let (Some(pattern), Some(channel), Some(message)) =
        (text(pattern), text(channel), bytes(message))
    else {
        shared.stats.malformed.fetch_add(1, Relaxed);
        return;
    };
    shared.on_message(&pattern, &channel, message);
}

/// `[channel, message]`: a request or an answer.
fn message(shared: &Arc<Shared>, data: Vec<Value>) {
    let mut data = data.into_iter();
    let (Some(channel), Some(message)) = (data.next().and_then(text), data.next().and_then(bytes))
    else {
        shared.stats.requests_malformed.fetch_add(1, Relaxed);
        return;
    };
    shared.on_channel_message(&channel, message);
}

/// `[channel, message]` on a shard channel.
fn smessage(shared: &Arc<Shared>, data: Vec<Value>) {
    let mut data = data.into_iter();
    let (Some(channel), Some(message)) = (data.next().and_then(text), data.next().and_then(bytes))
    else {
        shared.stats.malformed.fetch_add(1, Relaxed);
        return;
    };
    shared.on_shard_message(&channel, message);
}

/// Shard channels subscribed or unsubscribed per round trip, at most.
const SHARD_BATCH: usize = 256;

/// Subscribes (`on`) or unsubscribes: patterns and channels one command
/// each, shard channels [`SHARD_BATCH`] per pipeline.
async fn change(
    conn: &mut MultiplexedConnection,
    list: &[&Subscription],
    on: bool,
    limit: std::time::Duration,
) -> Result<(), ClusterError> {
    let mut shards = Vec::new();
    for subscription in list {
        match (subscription, on) {
            (Subscription::Pattern(p), true) => timed(limit, conn.psubscribe(p)).await?,
            (Subscription::Pattern(p), false) => timed(limit, conn.punsubscribe(p)).await?,
            (Subscription::Channel(c), true) => timed(limit, conn.subscribe(c)).await?,
            (Subscription::Channel(c), false) => timed(limit, conn.unsubscribe(c)).await?,
            (Subscription::Shard(c), _) => shards.push(c.as_str()),
        }
    }
    for chunk in shards.chunks(SHARD_BATCH) {
        let mut pipe = redis::pipe();
        let command = if on { "SSUBSCRIBE" } else { "SUNSUBSCRIBE" };
        for channel in chunk {
            pipe.cmd(command).arg(*channel);
        }
        if on {
            // redis-rs's multiplexed connection has no `ssubscribe`: one
            // channel per command, whose one confirmation is its reply.
            timed(limit, pipe.exec_async(conn)).await?;
        } else {
            // redis-rs 1.8 does not take a raw SUNSUBSCRIBE's confirmation
            // for its reply (it drops it, redis-rs#2533): waiting for it
            // would wait forever, so a PING behind them is what is awaited.
            pipe.cmd("PING");
            timed(limit, conn.send_packed_commands(&pipe, 0, 1)).await?;
        }
    }
    Ok(())
}

/// Follows the rooms touched since the last look (dynamic sharded mode):
/// a room this node has now gets its channel, one it no longer has loses
/// it; [`SHARD_BATCH`] rooms per round, the rest on the next.
async fn rooms_changed(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    subscribed: &mut BTreeSet<Subscription>,
    limit: std::time::Duration,
) -> Result<(), ClusterError> {
    // A namespace's own channels are never a room's to drop (a room named
    // as this node's uid shares its response channel).
    let base: BTreeSet<Subscription> = shared.subscriptions().into_iter().collect();
    let mut new = Vec::new();
    let mut old = Vec::new();
    for (channel, wanted) in shared.take_touched_rooms(SHARD_BATCH) {
        let subscription = Subscription::Shard(channel);
        let held = subscribed.contains(&subscription);
        if wanted && !held {
            new.push(subscription);
        } else if !wanted && held && !base.contains(&subscription) {
            old.push(subscription);
        }
    }
    change(conn, &new.iter().collect::<Vec<_>>(), true, limit).await?;
    subscribed.extend(new);
    change(conn, &old.iter().collect::<Vec<_>>(), false, limit).await?;
    for subscription in &old {
        subscribed.remove(subscription);
    }
    Ok(())
}

fn bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::BulkString(data) => Some(Bytes::from(data)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        _ => None,
    }
}

fn text(value: Value) -> Option<String> {
    bytes(value).and_then(|b| String::from_utf8(b.to_vec()).ok())
}
