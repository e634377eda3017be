//! Assembles the hub from its [`HubConfig`]: opens the store, builds the
//! token verifier (with the development secret when no key is configured),
//! and installs every namespace with its handler, wrapped the same way
//! everywhere (see [`Hub::new`]). The embedding program passes in the
//! handlers it provides itself ([`Handlers`]); the hub's components are
//! chosen here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use socketio::{Namespace, NamespaceHandler, SocketIo};

use crate::auth::Auth;
use crate::component::{Component, ComponentHandler};
use crate::components::calls::Calls;
use crate::components::chat::Chat;
use crate::components::notifications::NotificationsComponent;
use crate::components::presence::Presence;
use crate::components::proxy::Proxy;
use crate::components::pubsub::PubSub;
use crate::config::{ComponentsConfig, HubConfig, IdentityConfig, LiveConfig, NamespaceConfig};
use crate::contract::Contract;
use crate::identity::{KeyError, Verifier};
use crate::limits::{RateLimited, RoomLimits};
use crate::services::Context;
use crate::services::notifications::Notifications;
use crate::services::presence::PresenceService;
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;

/// What a component of the hub is built from, for one namespace.
struct Building<'a> {
    ns: &'a NamespaceConfig,
    ctx: &'a Context,
    components: &'a ComponentsConfig,
    live: &'a LiveConfig,
    rooms: RoomLimits,
}

impl Building<'_> {
    /// `component` as the namespace's handler, holding each socket to the
    /// room limits.
    fn run<C: Component>(&self, component: C) -> Arc<dyn NamespaceHandler> {
        Arc::new(ComponentHandler::new(component).with_limits(self.rooms))
    }
}

/// One of the hub's components, as a namespace's `handler` names it.
struct Registered {
    name: &'static str,
    /// Whether the component alone emits in its namespace (the publish
    /// API refuses to: [`Hub::components`]).
    closed: bool,
    /// Builds its handler for one namespace, or says why it cannot.
    build: fn(&Building) -> Result<Arc<dyn NamespaceHandler>, String>,
    /// Its events as data, for the generated contract; `None`: not
    /// described yet (or, for `proxy`, the backend's to define).
    contract: Option<fn() -> Contract>,
}

/// The hub's own components: the one list of them.
const COMPONENTS: [Registered; 6] = [
    Registered {
        name: "notifications",
        closed: true,
        build: |b| Ok(b.run(NotificationsComponent::new(b.ctx.clone()))),
        contract: Some(crate::components::notifications::contract::contract),
    },
    Registered {
        name: "chat",
        closed: true,
        build: |b| {
            let config = b.components.chat.clone();
            let chat = match &b.live.typing {
                Some(typing) => Chat::with_state(b.ctx.clone(), config, typing.clone()),
                None => Chat::new(b.ctx.clone(), config),
            };
            Ok(b.run(chat.in_namespace(&b.ns.name)))
        },
        contract: Some(crate::components::chat::contract::contract),
    },
    Registered {
        name: "presence",
        closed: true,
        build: |b| {
            let config = b.components.presence.clone();
            Ok(b.run(Presence::new(b.ctx.clone(), config)))
        },
        contract: Some(crate::components::presence::contract::contract),
    },
    Registered {
        name: "calls",
        closed: true,
        build: |b| {
            let config = b.components.calls.clone();
            let calls = match &b.live.calls {
                Some(state) => Calls::with_state(b.ctx.clone(), config, state.clone()),
                None => Calls::new(b.ctx.clone(), config),
            };
            Ok(b.run(calls.in_namespace(&b.ns.name)))
        },
        contract: Some(crate::components::calls::contract::contract),
    },
    Registered {
        name: "pubsub",
        closed: false,
        build: |b| Ok(b.run(PubSub)),
        contract: None,
    },
    Registered {
        name: "proxy",
        closed: false,
        build: |b| proxy(b.ns).map(|proxy| b.run(proxy)),
        contract: None,
    },
];

/// The event contracts of the hub's components that describe theirs, in
/// the table's order (`switchboard contract` renders them).
pub fn contracts() -> Vec<Contract> {
    COMPONENTS
        .iter()
        .filter_map(|c| c.contract)
        .map(|contract| contract())
        .collect()
}

/// The component a namespace's `handler` names, if it is one of the hub's.
fn component(name: &str) -> Option<&'static Registered> {
    COMPONENTS.iter().find(|c| c.name == name)
}

/// The proxy to a namespace's backend.
fn proxy(ns: &NamespaceConfig) -> Result<Proxy, String> {
    let backend = ns
        .backend
        .as_ref()
        .ok_or_else(|| "a proxy namespace needs a backend URL".to_owned())?;
    let mut proxy = Proxy::new(&backend.url, backend.timeout).map_err(|e| e.to_string())?;
    match &backend.secret {
        Some(secret) => proxy = proxy.with_secret(secret),
        None => tracing::warn!(
            namespace = %ns.name,
            "no backend_secret: requests to the backend are not signed, \
             so it cannot tell that they come from this hub"
        ),
    }
    Ok(proxy)
}

/// How long closing the hub waits for the components' background tasks.
const TASKS_GRACE: Duration = Duration::from_secs(5);

/// How often sockets whose token expired are looked for.
const EXPIRY_SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("keeping the development secret in {path}: {source}")]
    DevSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("namespace {name}: {message}")]
    Namespace { name: String, message: String },
}

/// A handler the embedding program provides: a new one per namespace, and
/// the connect middleware it needs, if any.
struct Provided {
    make: Box<dyn Fn() -> Arc<dyn NamespaceHandler> + Send + Sync>,
    middleware: Option<fn(&Namespace)>,
}

/// Namespace handlers the embedding program provides (protocol-level ones
/// for tests and benchmarks), by the name a namespace's `handler` gives.
/// They are installed like the hub's components, auth included, but are
/// not held to [`Limits`]: those are the components' rules.
#[derive(Default)]
pub struct Handlers {
    by_name: BTreeMap<String, Provided>,
}

impl Handlers {
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// Provides handler `name`; `make` builds the handler of each namespace
    /// that names it.
    pub fn with(
        self,
        name: &str,
        make: impl Fn() -> Arc<dyn NamespaceHandler> + Send + Sync + 'static,
    ) -> Handlers {
        self.insert(name, Box::new(make), None)
    }

    /// Like [`with`](Self::with), and adds `middleware` to each of its
    /// namespaces (connect checks of its own).
    pub fn with_middleware(
        self,
        name: &str,
        make: impl Fn() -> Arc<dyn NamespaceHandler> + Send + Sync + 'static,
        middleware: fn(&Namespace),
    ) -> Handlers {
        self.insert(name, Box::new(make), Some(middleware))
    }

    fn insert(
        mut self,
        name: &str,
        make: Box<dyn Fn() -> Arc<dyn NamespaceHandler> + Send + Sync>,
        middleware: Option<fn(&Namespace)>,
    ) -> Handlers {
        self.by_name
            .insert(name.to_owned(), Provided { make, middleware });
        self
    }

    /// Every handler name a namespace may give, the hub's own first.
    fn names(&self) -> String {
        let provided = self.by_name.keys().map(String::as_str);
        let all: Vec<&str> = COMPONENTS.iter().map(|c| c.name).chain(provided).collect();
        all.join(", ")
    }
}

/// The running hub: the Socket.IO server with its namespaces, and the store.
/// Cloning shares it.
#[derive(Clone)]
pub struct Hub {
    /// The Socket.IO server.
    pub io: SocketIo,
    /// The SQL store.
    pub store: Store,
    /// What the components share (the notifications service, background
    /// tasks).
    pub ctx: Context,
    /// The namespaces served by one of the hub's components (their events
    /// come from the component only: the publish API refuses them).
    pub components: Arc<[String]>,
    /// Namespaces whose sockets are disconnected when their token expires.
    protected: Vec<Weak<Namespace>>,
    /// The namespaces the presence component serves.
    presence: Arc<[String]>,
}

impl Hub {
    /// Opens (and migrates) the store and installs the namespaces `config`
    /// describes; a namespace may name a handler of `provided`.
    pub async fn new(config: HubConfig, provided: &Handlers) -> Result<Hub, StartError> {
        let store = Store::open(&config.store).await?;
        tracing::info!(
            backend = store.backend().as_str(),
            url = %crate::store::redact(&config.store.url),
            "store ready"
        );
        let io = SocketIo::new(config.socketio.clone());
        let auth = if config.namespaces.iter().any(|ns| ns.auth) {
            Some(Auth::new(verifier(&config.identity).await?))
        } else {
            None
        };
        let notifications_ns = config
            .namespaces
            .iter()
            .find(|ns| ns.handler == "notifications")
            .map(|ns| ns.name.as_str());
        let ctx = Context {
            store: store.clone(),
            io: io.clone(),
            notifications: Notifications::new(
                store.clone(),
                io.clone(),
                notifications_ns,
                config.components.notifications.clone(),
            ),
            presence: match (&config.live.presence, &config.live.node) {
                (Some(state), Some(node)) => {
                    PresenceService::on_node(state.clone(), store.clone(), node)
                }
                (Some(state), None) => PresenceService::new(state.clone(), store.clone()),
                (None, _) => config.components.presence.service(store.clone()),
            },
            tasks: Tasks::new(),
            peers: Default::default(),
            shared_rates: config.live.rates.clone(),
        };
        ctx.notifications.start_pruning(&ctx.tasks);
        let mut protected = Vec::new();
        for ns in &config.namespaces {
            let auth = auth.as_ref().filter(|_| ns.auth);
            let namespace = install(&io, ns, auth, &config, &ctx, provided)?;
            if auth.is_some() {
                protected.push(Arc::downgrade(&namespace));
            }
        }
        let components = config
            .namespaces
            .iter()
            .filter(|ns| component(&ns.handler).is_some_and(|c| c.closed))
            .map(|ns| ns.name.clone())
            .collect();
        let presence = config
            .namespaces
            .iter()
            .filter(|ns| ns.handler == "presence")
            .map(|ns| ns.name.clone())
            .collect();
        Ok(Hub {
            io,
            store,
            ctx,
            components,
            protected,
            presence,
        })
    }

    /// Node `node` of the cluster stopped (it said goodbye, or went
    /// silent): the live state it held is dropped at once — its users'
    /// devices stop counting, their typing stops, their devices leave
    /// their calls — and the others are told. Every node hears
    /// of it and calls this; the state hands each change to one of them.
    pub async fn node_dropped(&self, node: &str) {
        let namespaces: Vec<Arc<Namespace>> = self
            .presence
            .iter()
            .filter_map(|name| self.io.of(name))
            .collect();
        crate::components::presence::node_dropped(&self.ctx.presence, &namespaces, node).await;
        self.ctx.peers.dropped(node).await;
    }

    /// Starts the background work: the sweep that disconnects sockets whose
    /// token expired. It ends when the namespaces are dropped.
    pub fn start(&self) {
        if !self.protected.is_empty() {
            Auth::spawn_expiry_sweep(self.protected.clone(), EXPIRY_SWEEP_PERIOD);
        }
    }

    /// Stops the components' background tasks, then closes the store.
    pub async fn close(&self) {
        self.ctx.tasks.shutdown(TASKS_GRACE).await;
        self.store.close().await;
    }
}

/// Adds one namespace. The one place that decides how a namespace's
/// handler is wrapped: the rate limit outermost (an event over the rate
/// gets no work done, not even `refresh`'s signature check), then auth
/// (the `user:<id>` room, `refresh`), then what owns the namespace.
fn install(
    io: &SocketIo,
    ns: &NamespaceConfig,
    auth: Option<&Auth>,
    config: &HubConfig,
    ctx: &Context,
    provided: &Handlers,
) -> Result<Arc<Namespace>, StartError> {
    let limits = config.limits;
    let failed = |message: String| StartError::Namespace {
        name: ns.name.clone(),
        message,
    };
    // What owns the namespace: one of the hub's components (held to
    // `limits`) or a handler of the program's.
    let (handler, rate, middleware) =
        match (component(&ns.handler), provided.by_name.get(&ns.handler)) {
            (Some(registered), _) => {
                let building = Building {
                    ns,
                    ctx,
                    components: &config.components,
                    live: &config.live,
                    rooms: limits.rooms,
                };
                (
                    (registered.build)(&building).map_err(failed)?,
                    Some(limits.rate),
                    None,
                )
            }
            (None, Some(p)) => ((p.make)(), None, p.middleware),
            (None, None) => {
                return Err(failed(format!(
                    "unknown handler {:?} ({})",
                    ns.handler,
                    provided.names()
                )));
            }
        };
    let handler = match auth {
        Some(auth) => auth.wrap(handler),
        None => handler,
    };
    let handler = match rate {
        Some(rate) => RateLimited::wrap(handler, rate),
        None => handler,
    };
    let namespace = io.add_namespace_arc(&ns.name, handler);
    if let Some(auth) = auth {
        auth.protect(&namespace);
    }
    if let Some(middleware) = middleware {
        middleware(&namespace);
    }
    Ok(namespace)
}

/// The token verifier `identity` describes; without any key, the
/// development secret. A JWKS URL is fetched before it returns.
pub async fn verifier(identity: &IdentityConfig) -> Result<Verifier, StartError> {
    let no_key = identity.hs256_secret.is_none()
        && identity.rs256_public_key_file.is_none()
        && identity.jwks_file.is_none()
        && identity.jwks_url.is_none();
    if no_key {
        let with_secret = IdentityConfig {
            hs256_secret: Some(signing_secret(identity)?),
            ..identity.clone()
        };
        return Ok(Verifier::start(&with_secret).await?);
    }
    Ok(Verifier::start(identity).await?)
}

/// The HS256 secret tokens are signed with: the configured one, or the
/// development secret kept in `data_dir` (created on first use, with a
/// warning), so that a server and `switchboard token` run from the same
/// folder agree.
pub fn signing_secret(identity: &IdentityConfig) -> Result<String, StartError> {
    if let Some(secret) = &identity.hs256_secret {
        return Ok(secret.clone());
    }
    let dir = &identity.data_dir;
    let (secret, created) =
        crate::identity::dev_secret(dir).map_err(|source| StartError::DevSecret {
            path: dir.clone(),
            source,
        })?;
    let path = dir.join("dev-secret");
    tracing::warn!(
        path = %path.display(),
        created,
        "no [auth] key configured: using the development secret (not for production)"
    );
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Nothing;
    impl NamespaceHandler for Nothing {
        fn on_event(
            &self,
            _: &Arc<socketio::Socket>,
            _: socketio::Event,
        ) -> Option<socketio::BoxFuture<()>> {
            None
        }
    }

    static MIDDLEWARE_RAN: AtomicUsize = AtomicUsize::new(0);

    fn config(dir: &std::path::Path, handler: &str) -> HubConfig {
        HubConfig {
            store: StoreConfig {
                url: crate::store::sqlite_url_of(&dir.join("hub.db")),
                max_connections: 1,
                timeout: Duration::from_secs(5),
            },
            identity: IdentityConfig {
                hs256_secret: Some("s".to_owned()),
                data_dir: dir.to_owned(),
                ..IdentityConfig::default()
            },
            limits: crate::limits::Limits::default(),
            socketio: socketio::SocketIoConfig::default(),
            namespaces: vec![NamespaceConfig {
                name: "/x".to_owned(),
                handler: handler.to_owned(),
                auth: true,
                backend: None,
            }],
            components: ComponentsConfig::default(),
            live: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_namespace_is_owned_by_a_component_or_a_provided_handler() {
        let dir = std::env::temp_dir().join(format!(
            "hub-assembly-{}-{}",
            std::process::id(),
            crate::identity::now_secs()
        ));
        let provided = Handlers::new()
            .with("plain", || Arc::new(Nothing))
            .with_middleware(
                "checked",
                || Arc::new(Nothing),
                |_| {
                    MIDDLEWARE_RAN.fetch_add(1, Ordering::Relaxed);
                },
            );
        for handler in [
            "notifications",
            "chat",
            "presence",
            "calls",
            "pubsub",
            "plain",
            "checked",
        ] {
            let hub = Hub::new(config(&dir, handler), &provided).await.unwrap();
            assert!(hub.io.of("/x").is_some(), "{handler}");
            assert_eq!(hub.protected.len(), 1);
            hub.close().await;
        }
        assert_eq!(MIDDLEWARE_RAN.load(Ordering::Relaxed), 1);
        let err = Hub::new(config(&dir, "nope"), &provided)
            .await
            .err()
            .expect("an unknown handler stops the start");
        assert_eq!(
            err.to_string(),
            "namespace /x: unknown handler \"nope\" (notifications, chat, presence, calls, pubsub, proxy, checked, plain)"
        );
        let err = Hub::new(config(&dir, "proxy"), &provided).await.err();
        assert!(err.unwrap().to_string().contains("needs a backend URL"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
