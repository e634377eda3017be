//! The presence service's stored part on SQLite and PostgreSQL: a chosen
//! status, and `last_seen` written many at once.

use std::sync::Arc;
use std::time::Duration;

use super::{MemoryState, PresenceService, Status};
use crate::store::testing::Scratch;

/// The stored part on one store: a chosen status, and `last_seen` written
/// many at once (one transaction for those that wait together), a later
/// time winning whatever the order.
async fn the_store_remembers_status_and_last_seen(scratch: Scratch) {
    let store = scratch.open(4, Duration::from_secs(10)).await;
    // The live state as one node keeps it (the component's default bound
    // of lingering devices; none linger here).
    let service = PresenceService::new(Arc::new(MemoryState::new(32)), store.clone());
    let users: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let mut writes = tokio::task::JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        for at in [1_000 + i as i64, 500] {
            let service = service.clone();
            let user = user.clone();
            writes.spawn(async move { service.record_seen(&user, at).await });
        }
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap().unwrap();
    }
    // A user who never chose keeps `online`; a choice is kept.
    assert_eq!(
        service.set_status("user-7", Status::Busy).await.unwrap(),
        None
    );
    let remembered = service.remembered(&users).await.unwrap();
    assert_eq!(remembered.len(), 300);
    for (i, user) in users.iter().enumerate() {
        let r = remembered[user];
        assert_eq!(r.last_seen, Some(1_000 + i as i64), "{user}");
        let status = if i == 7 { Status::Busy } else { Status::Online };
        assert_eq!(r.status, status, "{user}");
    }
    service.record_seen("user-7", 10).await.unwrap();
    let looked = service
        .lookup(&["user-7".to_owned(), "nobody".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        (looked[0].status, looked[0].last_seen),
        (Status::Offline, Some(1_007))
    );
    assert_eq!(
        (looked[1].status, looked[1].last_seen),
        (Status::Offline, None)
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_remembers_status_and_last_seen_on_sqlite() {
    the_store_remembers_status_and_last_seen(Scratch::sqlite("presence-store")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_remembers_status_and_last_seen_on_postgresql() {
    let Some(scratch) = Scratch::postgres().await else {
        return;
    };
    the_store_remembers_status_and_last_seen(scratch).await;
}
