//! The presence service's stored part on SQLite and PostgreSQL: a chosen
//! status, and `last_seen` written many at once. Hub internals tested
//! directly, not over the wire: they belong beside the store in `hub`.

use std::time::Duration;

use crate::common::{RemoveOnDrop, postgres_database, rand_suffix};

/// The stored part on one store: a chosen status, and `last_seen` written
/// many at once (one transaction for those that wait together), a later
/// time winning whatever the order.
async fn the_store_remembers_status_and_last_seen(url: &str) {
    use hub::{components::presence::PresenceConfig, services::presence::Status};
    let store = hub::store::Store::open(&hub::store::StoreConfig {
        url: url.to_owned(),
        max_connections: 4,
        timeout: Duration::from_secs(10),
    })
    .await
    .unwrap();
    let service = PresenceConfig::default().service(store.clone());
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
    let dir = RemoveOnDrop(std::env::temp_dir().join(format!("sb-presence-st-{}", rand_suffix())));
    the_store_remembers_status_and_last_seen(&hub::store::sqlite_url_of(&dir.0.join("hub.db")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_remembers_status_and_last_seen_on_postgresql() {
    let Some((_admin, url)) = postgres_database().await else {
        return;
    };
    the_store_remembers_status_and_last_seen(&url).await;
}
