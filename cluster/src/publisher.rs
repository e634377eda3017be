//! The publisher task: drains the publish queue into Redis, in order, up
//! to `publish_batch` PUBLISHes (SPUBLISHes in sharded mode) per pipeline (one round trip for a burst),
//! encoding each message on the way (off the emitting caller's path). Its
//! connection is opened again, with backoff, when it fails; meanwhile the
//! queue holds what is emitted, up to its bounds.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch};

use crate::bus::{Queued, Shared, backoff, name_connection, sleep_or_stop, stop_requested};
use crate::confirmed::{Confirmed, ONCE_UID_SUFFIX, once_sha, ttl_ms};
use crate::error::ClusterError;
use crate::wire::Outbound;

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Queued>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut delay = shared.config.reconnect_min;
    let mut ever_connected = false;
    let mut batch: Vec<Queued> = Vec::with_capacity(shared.config.publish_batch);
    loop {
        let Some(c) = conn.as_mut() else {
            match connect(&shared).await {
                Ok(c) => {
                    if ever_connected {
                        shared.stats.publish_reconnects.fetch_add(1, Relaxed);
                        tracing::info!("cluster bus: publishing connection open again");
                    }
                    ever_connected = true;
                    shared.stats.publish_up.store(true, Relaxed);
                    delay = shared.config.reconnect_min;
                    // Requests publish on it too (a clone shares it).
                    *shared.command.lock() = Some(c.clone());
                    conn = Some(c);
                }
                Err(err) => {
                    down(&shared, &err);
                    if sleep_or_stop(delay, &mut stopped).await {
                        return;
                    }
                    delay = backoff(delay, &shared.config);
                }
            }
            continue;
        };
        tokio::select! {
            // Drained first: what was emitted before a stop still goes out
            // (`Cluster::close` waits for the queue to empty).
            biased;
            received = queue.recv_many(&mut batch, shared.config.publish_batch.max(1)) => {
                if received == 0 {
                    return;
                }
                if let Err(err) = send(&shared, c, &mut batch).await {
                    shared.stats.publish_failed.fetch_add(batch.len() as u64, Relaxed);
                    tracing::error!(
                        %err,
                        broadcasts = batch.len(),
                        "cluster bus: a publish failed; these broadcasts may not have reached \
                         the other nodes"
                    );
                    conn = None;
                    down(&shared, &err);
                } else {
                    for message in &mut batch {
                        if let Queued::Confirmed(confirmed) = message {
                            confirmed.fire();
                        }
                    }
                }
                // Unfired confirmations are dropped: their emitters hear so.
                batch.clear();
            }
            _ = tokio::time::sleep(shared.config.health_interval) => {
                if let Err(err) = ping(&shared, c).await {
                    tracing::warn!(%err, "cluster bus: the publishing connection does not answer");
                    conn = None;
                    down(&shared, &err);
                }
            }
            _ = stop_requested(&mut stopped) => return,
        }
    }
}

fn down(shared: &Shared, err: &ClusterError) {
    *shared.command.lock() = None;
    if shared.stats.publish_up.swap(false, Relaxed) {
        tracing::error!(%err, "cluster bus: publishing connection lost");
    }
    shared.set_error(Some(err.to_string()));
}

/// Opens the publishing connection.
async fn connect(shared: &Shared) -> Result<MultiplexedConnection, ClusterError> {
    let client = crate::config::client(&shared.config, shared.config.redis_url.as_str())?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.config.connect_timeout))
        .set_response_timeout(Some(shared.config.command_timeout));
    let mut conn = crate::config::connect(&shared.config, &client, &config).await?;
    name_connection(shared, &mut conn, "publish").await;
    // Before it counts as up: its scripts run by their SHA-1.
    for script in crate::recovery::SCRIPTS {
        let _: String = timed(
            shared.config.command_timeout,
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script)
                .query_async(&mut conn),
        )
        .await?;
    }
    Ok(conn)
}

/// Publishes a batch in one pipeline; each message is taken off the
/// queue's count here, whatever the outcome.
async fn send(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    batch: &mut [Queued],
) -> Result<(), ClusterError> {
    let mut pipe = redis::pipe();
    let mut count = 0u64;
    let publish = publish_command(shared);
    for message in batch.iter_mut() {
        shared.dequeued(message);
        if let Queued::Confirmed(confirmed) = message {
            let Some(cmd) = confirmed_cmd(shared, confirmed) else {
                // Not published: its emitter hears so now.
                confirmed.done = None;
                continue;
            };
            pipe.add_command(cmd).ignore();
            count += 1;
            continue;
        }
        let message = &*message;
        let (channel, payload) = match message {
            Queued::Confirmed(_) => continue, // sent above
            Queued::Logged(broadcast) => {
                let Some(store) = shared.recovery.get() else {
                    continue;
                };
                let uid = format!("{}{}", shared.uid, crate::wire::LOGGED_UID_SUFFIX);
                let (cmd, size) = store.log().append_cmd(broadcast, &uid);
                if size > shared.config.max_message_bytes {
                    shared.stats.dropped_too_large.fetch_add(1, Relaxed);
                    tracing::error!(
                        %message,
                        bytes = size,
                        "bus message over cluster.max_message_bytes once encoded: not published"
                    );
                    continue;
                }
                pipe.add_command(cmd).ignore();
                count += 1;
                continue;
            }
            Queued::Broadcast(broadcast) => {
                let (channel, payload) = encoded(shared, broadcast, &shared.uid);
                (Cow::Owned(channel), Cow::Owned(payload))
            }
            Queued::Raw { channel, payload } => (
                Cow::Borrowed(channel.as_str()),
                Cow::Borrowed(payload.as_slice()),
            ),
        };
        if payload.len() > shared.config.max_message_bytes {
            // The arguments' estimate passed, the encoding did not (many
            // small values grow as MessagePack): the other nodes would
            // refuse it, so it is not sent.
            shared.stats.dropped_too_large.fetch_add(1, Relaxed);
            tracing::error!(
                %message,
                bytes = payload.len(),
                "bus message over cluster.max_message_bytes once encoded: not published"
            );
            continue;
        }
        pipe.cmd(publish)
            .arg(channel.as_ref())
            .arg(payload.as_ref())
            .ignore();
        count += 1;
    }
    if count == 0 {
        return Ok(());
    }
    timed(shared.config.command_timeout, pipe.exec_async(conn)).await?;
    shared.stats.published.fetch_add(count, Relaxed);
    Ok(())
}

/// `PUBLISH`, or `SPUBLISH` in sharded mode.
fn publish_command(shared: &Shared) -> &'static str {
    if shared.config.sharded() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    }
}

/// A broadcast's channel and bytes from node `uid`, in the bus's format
/// (the Node adapter's, or the sharded adapter's in sharded mode).
fn encoded(shared: &Shared, message: &Outbound, uid: &str) -> (String, Vec<u8>) {
    let prefix = &shared.config.key_prefix;
    if shared.config.sharded() {
        (
            crate::sharded::broadcast_channel(prefix, message, shared.config.dynamic_rooms()),
            crate::sharded::encode_broadcast(message, uid),
        )
    } else {
        (message.channel(prefix), message.encode(uid))
    }
}

/// The command that publishes a broadcast whose emitter waits for it
/// (see [`crate::confirmed`]); `None` when it is not published (over
/// `max_message_bytes`, or logged without a recovery store).
fn confirmed_cmd(shared: &Shared, confirmed: &Confirmed) -> Option<redis::Cmd> {
    let message = &confirmed.message;
    let once = confirmed.once.as_ref();
    let (cmd, size) = if confirmed.logged {
        let store = shared.recovery.get()?;
        let uid = format!("{}{}", shared.uid, crate::wire::LOGGED_UID_SUFFIX);
        store.log().append_cmd_once(message, &uid, once)
    } else if let Some((marker, ttl)) = once {
        let (channel, payload) =
            encoded(shared, message, &format!("{}{ONCE_UID_SUFFIX}", shared.uid));
        let size = payload.len();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(once_sha())
            .arg(1)
            .arg(marker)
            .arg(channel)
            .arg(payload)
            .arg(ttl_ms(*ttl))
            .arg(publish_command(shared));
        (cmd, size)
    } else {
        let (channel, payload) = encoded(shared, message, &shared.uid);
        let size = payload.len();
        let mut cmd = redis::cmd(publish_command(shared));
        cmd.arg(channel).arg(payload);
        (cmd, size)
    };
    if size > shared.config.max_message_bytes {
        shared.stats.dropped_too_large.fetch_add(1, Relaxed);
        tracing::error!(
            event = %message.event,
            bytes = size,
            "bus message over cluster.max_message_bytes once encoded: not published"
        );
        return None;
    }
    Some(cmd)
}

async fn ping(shared: &Shared, conn: &mut MultiplexedConnection) -> Result<(), ClusterError> {
    let _: String = timed(
        shared.config.command_timeout,
        redis::cmd("PING").query_async(conn),
    )
    .await?;
    Ok(())
}

/// A command bounded in time (the connection's response timeout is the
/// first bound; this one also covers a connection stuck before it).
pub(crate) async fn timed<T>(
    limit: Duration,
    command: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(limit, command).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ClusterError::Timeout(limit)),
    }
}
