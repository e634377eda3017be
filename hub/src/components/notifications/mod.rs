//! `/notifications`: the namespace where a user reads their notifications.
//!
//! [`NotificationsComponent`] (here) answers the clients of the namespace:
//! `list`, `read`, `read_all`, and the `unread` count each device gets once
//! connected; the client payloads are read in `payload.rs`. What it asks,
//! and what other components and the publish API create notifications
//! through, is the service ([`crate::services::notifications`]).

pub mod contract;
mod payload;

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use socketio::{Args, Socket};

use crate::component::{Component, Reply};
use crate::components::kit;
use crate::identity::Identity;
use crate::services::Context;
use payload::NotificationsEvent;

use crate::services::notifications::Notification;
pub use crate::services::notifications::NotificationsConfig;

/// A page of `list` when the client names no `limit`.
pub const DEFAULT_LIST_LIMIT: u32 = 20;

/// `list`'s ack: a page, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Listed {
    notifications: Vec<Notification>,
    has_more: bool,
}

/// `read`'s ack: the ids this read marked (those unread and the user's).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MarkedRead {
    ids: Vec<i64>,
}

/// `read_all`'s ack: how many it marked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MarkedAllRead {
    marked: u64,
}

/// The `/notifications` namespace's component.
pub struct NotificationsComponent {
    ctx: Context,
}

impl NotificationsComponent {
    pub fn new(ctx: Context) -> NotificationsComponent {
        NotificationsComponent { ctx }
    }
}

impl Component for NotificationsComponent {
    type User = Identity;

    /// Once the client knows it is connected, it is told its unread count
    /// (`unread` `{count}`), in order with every other change of it.
    fn on_connected(&self, socket: &Arc<Socket>) {
        let notifications = self.ctx.notifications.clone();
        let socket = socket.clone();
        self.ctx.tasks.spawn(async move {
            if let Err(err) = notifications.announce_unread(&socket).await {
                // The device learns its count with the next change instead.
                tracing::debug!(%err, "unread count at connect");
            }
        });
    }

    fn handle(
        &self,
        socket: &Arc<Socket>,
        user: Identity,
        event: &str,
        args: &Args,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let parsed = NotificationsEvent::parse(event, args, self.ctx.notifications.config());
        let notifications = self.ctx.notifications.clone();
        let socket = socket.clone();
        async move {
            match parsed? {
                NotificationsEvent::List { before, limit } => {
                    let (page, has_more) = notifications.list(&user.user, before, limit).await?;
                    kit::reply(&Listed {
                        notifications: page,
                        has_more,
                    })
                }
                NotificationsEvent::Read { ids } => {
                    let ids = notifications.read(&user.user, &ids, Some(&socket)).await?;
                    kit::reply(&MarkedRead { ids })
                }
                NotificationsEvent::ReadAll => {
                    let marked = notifications.read_all(&user.user, Some(&socket)).await?;
                    kit::reply(&MarkedAllRead { marked })
                }
            }
        }
    }
}
