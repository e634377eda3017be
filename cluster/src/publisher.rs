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
use crate::error::ClusterError;

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
                if let Err(err) = send(&shared, c, &batch).await {
                    shared.stats.publish_failed.fetch_add(batch.len() as u64, Relaxed);
                    tracing::error!(
                        %err,
                        broadcasts = batch.len(),
                        "cluster bus: a publish failed; these broadcasts may not have reached \
                         the other nodes"
                    );
                    conn = None;
                    down(&shared, &err);
                }
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
    let client = redis::Client::open(shared.config.redis_url.as_str())?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.config.connect_timeout))
        .set_response_timeout(Some(shared.config.command_timeout));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    name_connection(shared, &mut conn, "publish").await;
    Ok(conn)
}

/// Publishes a batch in one pipeline; each message is taken off the
/// queue's count here, whatever the outcome.
async fn send(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    batch: &[Queued],
) -> Result<(), ClusterError> {
    let mut pipe = redis::pipe();
    let mut count = 0u64;
    let publish = if shared.config.sharded() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    for message in batch {
        shared.dequeued(message);
        let (channel, payload) = match message {
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
            Queued::Broadcast(broadcast) if shared.config.sharded() => (
                Cow::Owned(crate::sharded::broadcast_channel(
                    &shared.config.key_prefix,
                    broadcast,
                    shared.config.dynamic_rooms(),
                )),
                Cow::Owned(crate::sharded::encode_broadcast(broadcast, &shared.uid)),
            ),
            Queued::Broadcast(broadcast) => (
                Cow::Owned(broadcast.channel(&shared.config.key_prefix)),
                Cow::Owned(broadcast.encode(&shared.uid)),
            ),
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
