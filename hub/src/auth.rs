//! Authentication of sockets: the connect middleware that verifies the
//! client's token, the `user:<id>` room every socket of a user joins, the
//! `refresh` event, and the sweep that disconnects sockets whose token
//! expired.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use socketio::{
    Args, BoxFuture, ConnectError, ConnectRequest, DisconnectReason, Event, Namespace,
    NamespaceHandler, Socket,
};

use crate::error::{ErrorCode, HubError};
use crate::identity::{AuthError, Identity, Verifier, now_secs};

/// The room of every socket of user `user`.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// The authenticated user of a socket (in its extensions).
pub fn identity_of(socket: &Socket) -> Option<Identity> {
    socket.extensions().get::<Identity>().cloned()
}

/// Authentication for the namespaces that need it.
#[derive(Clone)]
pub struct Auth {
    verifier: Arc<Verifier>,
}

impl Auth {
    pub fn new(verifier: Verifier) -> Auth {
        Auth {
            verifier: Arc::new(verifier),
        }
    }

    /// Protects `ns`: its clients must present a valid token. A socket's
    /// session belongs to its user: connection state recovery restores it
    /// only for a client whose token (verified again, so an expired one
    /// revives nothing) names the same user.
    pub fn protect(&self, ns: &Namespace) {
        ns.set_session_owner(|extensions| {
            extensions
                .get::<Identity>()
                .map(|identity| Arc::from(identity.user.as_str()))
        });
        let verifier = self.verifier.clone();
        ns.use_middleware(move |mut request: ConnectRequest| {
            let token = token_of(&request);
            let verifier = verifier.clone();
            async move {
                // Async: a key the identity provider just rotated in is
                // fetched before the verdict (no lock is held meanwhile).
                match verifier.verify_fresh(&token).await {
                    Ok(identity) => {
                        request.extensions.insert(identity);
                        Ok(request)
                    }
                    Err(err) => Err(ConnectError::with_data(
                        "unauthorized",
                        serde_json::json!(Refusal {
                            code: err.code(),
                            message: err.to_string(),
                        }),
                    )),
                }
            }
        });
    }

    /// Wraps a namespace's handler: joins `user:<id>` before it sees the
    /// socket (and before the client is told it is connected), and answers
    /// `refresh` itself, within the connection's budget of costly requests.
    pub fn wrap(&self, inner: Arc<dyn NamespaceHandler>) -> Arc<dyn NamespaceHandler> {
        Arc::new(Authenticated {
            inner,
            verifier: self.verifier.clone(),
        })
    }

    /// Disconnects, every `period`, the sockets of `namespaces` whose token
    /// expired (after telling them with `auth:expired`). Runs until the
    /// namespaces are dropped.
    pub fn spawn_expiry_sweep(namespaces: Vec<std::sync::Weak<Namespace>>, period: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let live: Vec<Arc<Namespace>> =
                    namespaces.iter().filter_map(|w| w.upgrade()).collect();
                if live.is_empty() {
                    return;
                }
                let now = now_secs();
                for ns in live {
                    let mut expired = Vec::new();
                    ns.for_each_socket(|socket| {
                        let expires_at = socket
                            .extensions()
                            .get::<Identity>()
                            .map(|id| id.expires_at);
                        if expires_at.is_some_and(|at| at <= now) {
                            expired.push(socket.clone());
                        }
                    });
                    for socket in expired {
                        socket.emit(
                            "auth:expired",
                            &Args::one(&Expired {
                                code: ErrorCode::TokenExpired,
                            }),
                        );
                        socket.disconnect();
                    }
                }
            }
        });
    }
}

/// The token a client presents: `auth.token` in the CONNECT packet, or the
/// handshake's `?token=` (legacy clients).
fn token_of(request: &ConnectRequest) -> String {
    #[derive(serde::Deserialize)]
    struct AuthPayload {
        token: Option<String>,
    }
    if let Ok(AuthPayload { token: Some(token) }) = serde_json::from_str(request.auth.get()) {
        return token;
    }
    request
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(crate::query::percent_decode)
        .unwrap_or_default()
}

struct Authenticated {
    inner: Arc<dyn NamespaceHandler>,
    verifier: Arc<Verifier>,
}

impl NamespaceHandler for Authenticated {
    /// Joins `user:<id>` before the inner handler sees the socket, and so
    /// before the client is told it is connected.
    fn on_connect(&self, socket: &Arc<Socket>) -> Option<BoxFuture<()>> {
        if let Some(identity) = identity_of(socket) {
            socket.join(user_room(&identity.user));
        }
        self.inner.on_connect(socket)
    }

    fn on_connected(&self, socket: &Arc<Socket>) {
        self.inner.on_connected(socket);
    }

    fn on_event(&self, socket: &Arc<Socket>, mut event: Event) -> Option<BoxFuture<()>> {
        if event.name != "refresh" {
            return self.inner.on_event(socket, event);
        }
        let ack = event.take_ack();
        // A refresh verifies a signature, as a CONNECT does: it draws on the
        // connection's CONNECT budget, in every namespace with auth
        // (component namespaces also hold it to their event rate).
        if !socket.admit_costly() {
            reply_refresh(
                ack,
                socket,
                Err(HubError::new(
                    ErrorCode::RateLimited,
                    "too many CONNECTs and refreshes on this connection: slow down",
                )),
            );
            return None;
        }
        let token = match refresh_token(&event) {
            Ok(token) => token,
            Err(refused) => {
                reply_refresh(ack, socket, Err(refused));
                return None;
            }
        };
        match self.verifier.verify(&token) {
            // A key not in hand: fetching the JWKS again takes a while,
            // and the socket's next events wait behind it, in order.
            Err(AuthError::UnknownKey) => {
                let verifier = self.verifier.clone();
                let socket = socket.clone();
                Some(Box::pin(async move {
                    let verdict = verifier.verify_fresh(&token).await;
                    reply_refresh(ack, &socket, verdict);
                }))
            }
            verdict => {
                reply_refresh(ack, socket, verdict);
                None
            }
        }
    }

    fn on_disconnect(&self, socket: &Arc<Socket>, reason: DisconnectReason) {
        self.inner.on_disconnect(socket, reason);
    }
}

/// The token of a `refresh` event: `{token}` or a token string.
fn refresh_token(event: &Event) -> Result<String, HubError> {
    #[derive(serde::Deserialize)]
    struct Refresh {
        token: String,
    }
    match event.args.first::<Refresh>() {
        Ok(refresh) => Ok(refresh.token),
        Err(_) => event
            .args
            .first::<String>()
            .map_err(|_| HubError::bad_request("expected {token} or a token string")),
    }
}

/// Answers a `refresh`: a new token for the same user extends the
/// socket's life.
fn reply_refresh(
    ack: Option<socketio::AckSender>,
    socket: &Socket,
    verdict: Result<Identity, impl Into<HubError>>,
) {
    let outcome = verdict.map_err(Into::into).and_then(|identity| {
        let current = identity_of(socket).map(|id| id.user);
        if current.as_deref() != Some(identity.user.as_str()) {
            return Err(HubError::new(
                ErrorCode::WrongUser,
                "the new token is for another user",
            ));
        }
        socket.extensions().insert(identity.clone());
        Ok(identity)
    });
    let Some(ack) = ack else { return };
    match outcome {
        Ok(identity) => ack.send_one(&Refreshed {
            expires_at: identity.expires_at,
            ok: true,
        }),
        Err(refused) => ack.send_one(&refused.reply()),
    }
}

/// A `refresh`'s ack: the socket's new deadline.
#[derive(Serialize)]
struct Refreshed {
    /// Unix seconds, the new token's `exp`.
    expires_at: u64,
    ok: bool,
}

/// Why a client is refused: `connect_error`'s `data`.
#[derive(Serialize)]
struct Refusal {
    code: ErrorCode,
    message: String,
}

/// `auth:expired`, sent before a socket whose token expired is
/// disconnected.
#[derive(Serialize)]
struct Expired {
    code: ErrorCode,
}

impl From<AuthError> for HubError {
    fn from(err: AuthError) -> HubError {
        HubError::new(err.code(), err.to_string())
    }
}
