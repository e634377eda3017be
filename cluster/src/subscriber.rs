//! The subscriber task: one RESP3 connection that, for every namespace,
//! PSUBSCRIBEs `<prefix>#<nsp>#*` (broadcasts) and SUBSCRIBEs its request
//! channel and response channels, and hands what arrives to `Shared`
//! (`on_message`, `on_channel_message`) as the connection reads each push.
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
    loop {
        // Every namespace's pattern and channels, before the node counts
        // as up.
        let generation = shared.generation.load(Relaxed);
        let wanted: BTreeSet<Subscription> = shared.subscriptions().into_iter().collect();
        for new in wanted.difference(&subscribed) {
            match new {
                Subscription::Pattern(p) => timed(limit, conn.psubscribe(p)).await?,
                Subscription::Channel(c) => timed(limit, conn.subscribe(c)).await?,
            }
        }
        for old in subscribed.difference(&wanted) {
            match old {
                Subscription::Pattern(p) => timed(limit, conn.punsubscribe(p)).await?,
                Subscription::Channel(c) => timed(limit, conn.unsubscribe(c)).await?,
            }
        }
        subscribed = wanted;
        if shared.generation.load(Relaxed) != generation {
            // A namespace came or went meanwhile: its pattern first.
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
            _ = shared.patterns_changed.notified() => {}
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
    let client = redis::Client::open(info.set_redis_settings(settings))?;
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
            PushKind::Disconnection => lost.notify_one(),
            _ => {}
        }
        Ok(())
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.config.connect_timeout))
        .set_response_timeout(Some(shared.config.command_timeout))
        .set_push_sender(push);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
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
