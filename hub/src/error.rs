//! [`HubError`]: a refusal or failure the hub answers a client (or a
//! backend service) with, whatever part of the hub decided it, and
//! [`ErrorCode`], the one list of its codes: their string forms are the
//! contract clients code against (`docs/EVENTS.md`), the message is for
//! people.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where a code is part of the contract, and so documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The ESN namespaces' clients: in `docs/EVENTS.md`.
    Clients,
    /// The publish API's callers (`docs/EVENTS.md` has its notifications
    /// part; the rest is in the OpenAPI document).
    Api,
    /// Every namespace with auth, refusing a token at CONNECT or at
    /// `refresh`: in `docs/IDENTITY.md`.
    Identity,
    /// Clients of proxy namespaces or of namespaces without auth: in the
    /// README, not in `docs/EVENTS.md` (every namespace there needs a
    /// token, and none is a proxy).
    Elsewhere,
    /// Never meant to reach anyone: a server bug or a configuration
    /// refused at start.
    Nobody,
}

/// Defines [`ErrorCode`] from one list: variant, string form, audience.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $text:literal, $audience:ident;)*) => {
        /// What went wrong, as clients match it. Serialized as its string
        /// form (`"bad_request"`, …).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* #[serde(rename = $text)] $variant,)*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// Its string form, the contract.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }

            /// Where it is part of the contract.
            pub fn audience(self) -> Audience {
                match self {
                    $(ErrorCode::$variant => Audience::$audience,)*
                }
            }
        }
    };
}

/// The schema of [`ErrorCode`]: its string forms. Written by hand, from
/// [`ErrorCode::ALL`]: the derive does not see the `serde(rename)` the
/// macro above writes (it would list the variants' Rust names).
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(
                "What went wrong, as clients match it (`docs/EVENTS.md` lists which event \
                 answers which).",
            ))
            .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

error_codes! {
    /// The payload is not what the event takes.
    BadRequest = "bad_request", Clients;
    /// No such event in the namespace.
    UnknownEvent = "unknown_event", Clients;
    /// The socket has no signed-in user (a namespace without auth).
    Unauthorized = "unauthorized", Elsewhere;
    Forbidden = "forbidden", Clients;
    NotFound = "not_found", Clients;
    /// The store or a live state failed or did not answer: try again.
    Unavailable = "unavailable", Clients;
    RateLimited = "rate_limited", Clients;
    PayloadTooLarge = "payload_too_large", Clients;
    /// A `subscribe` past the socket's room limit.
    TooManyRooms = "too_many_rooms", Clients;
    TooManyWatched = "too_many_watched", Clients;
    TooManyMembers = "too_many_members", Clients;
    TooManyConversations = "too_many_conversations", Clients;
    TooManyParticipants = "too_many_participants", Clients;
    /// A chat `client_id` used for a message of another conversation.
    Conflict = "conflict", Clients;
    /// A call invitation to (or from) someone in too many calls.
    Busy = "busy", Clients;
    AlreadyAnswered = "already_answered", Clients;
    NotRinging = "not_ringing", Clients;
    CallFull = "call_full", Clients;
    /// No token in the CONNECT payload nor the query.
    MissingToken = "missing_token", Identity;
    /// Malformed, badly signed, or missing a required claim.
    InvalidToken = "invalid_token", Identity;
    TokenExpired = "token_expired", Identity;
    TokenNotYetValid = "token_not_yet_valid", Identity;
    InvalidIssuer = "invalid_issuer", Identity;
    InvalidAudience = "invalid_audience", Identity;
    /// A `kid` that no configured key set holds.
    UnknownKey = "unknown_key", Identity;
    /// A `refresh` whose token is for another user than the socket's.
    WrongUser = "wrong_user", Identity;
    /// A proxy namespace's backend failed (the detail is logged).
    BackendError = "backend_error", Elsewhere;
    BackendUnavailable = "backend_unavailable", Elsewhere;
    BackendTimeout = "backend_timeout", Elsewhere;
    /// The publish API's request is not valid.
    InvalidRequest = "invalid_request", Api;
    UnknownNamespace = "unknown_namespace", Api;
    ReservedNamespace = "reserved_namespace", Api;
    /// A proxy namespace's backend URL, refused at start.
    InvalidBackend = "invalid_backend", Nobody;
    /// A server bug (an outcome the writer lost).
    Internal = "internal", Nobody;
}

impl ErrorCode {
    /// The code whose string form is `text`, if there is one.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// A refusal or failure, sent to the client as `{ok:false, error}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HubError {
    pub code: ErrorCode,
    pub message: String,
}

impl HubError {
    pub fn new(code: impl Into<ErrorCode>, message: impl Into<String>) -> HubError {
        HubError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A `bad_request` saying what is wrong.
    pub fn bad_request(message: impl Into<String>) -> HubError {
        HubError::new(ErrorCode::BadRequest, message)
    }

    /// The ack that carries it: `{ok:false, error:{code, message}}`.
    pub fn reply(&self) -> Value {
        json!({"ok": false, "error": {"code": self.code, "message": self.message}})
    }
}

impl From<crate::store::StoreError> for HubError {
    /// A store that failed or did not answer: the client is told to try
    /// again later, the operator finds the cause in the log.
    fn from(err: crate::store::StoreError) -> HubError {
        tracing::warn!(%err, "store error");
        HubError::new(
            ErrorCode::Unavailable,
            "the store is unavailable; try again",
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_code_serializes_as_its_string_form() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            let back: ErrorCode = serde_json::from_value(json!(code.as_str())).unwrap();
            assert_eq!(back, *code);
        }
        let reply = HubError::new(ErrorCode::TooManyRooms, "m").reply();
        assert_eq!(
            reply,
            json!({"ok": false, "error": {"code": "too_many_rooms", "message": "m"}})
        );
    }

    /// The codes `docs/<name>` names: the first cell of its `| code |`
    /// tables, the backquoted words of an `errors` column, and every
    /// `"code": "…"` of its examples and `code: "…"` of its prose.
    fn codes_in_doc(name: &str) -> BTreeSet<String> {
        let path = format!("{}/../docs/{name}", env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(&path).expect(name);
        let mut named = BTreeSet::new();
        let quoted = |text: &str, named: &mut BTreeSet<String>| {
            for (i, part) in text.split('`').enumerate() {
                let is_code =
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                if i % 2 == 1 && is_code {
                    named.insert(part.to_owned());
                }
            }
        };
        // Which column of the current table holds codes, if any.
        let mut code_column: Option<usize> = None;
        for line in doc.lines() {
            if let Some(row) = line.strip_prefix('|') {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let header = cells.iter().position(|c| *c == "code" || *c == "errors");
                if header.is_some() {
                    code_column = header;
                } else if let Some(cell) = code_column.and_then(|i| cells.get(i)) {
                    // Codes, each perhaps followed by a note in
                    // parentheses, which may quote other words.
                    let mut depth = 0usize;
                    let outside: String = cell
                        .chars()
                        .filter(|c| {
                            match c {
                                '(' => depth += 1,
                                ')' => depth = depth.saturating_sub(1),
                                _ => return depth == 0,
                            }
                            false
                        })
                        .collect();
                    quoted(&outside, &mut named);
                }
            } else {
                code_column = None;
            }
            for marker in ["\"code\": \"", "code: \""] {
                for (i, part) in line.split(marker).enumerate() {
                    if i > 0 {
                        let code: String = part.chars().take_while(|c| *c != '"').collect();
                        named.insert(code);
                    }
                }
            }
        }
        named
    }

    #[test]
    fn docs_events_names_every_code_clients_may_get_and_no_other() {
        let named = codes_in_doc("EVENTS.md");
        assert!(named.contains("bad_request"), "the parser finds codes");
        let missing: Vec<&str> = ErrorCode::ALL
            .iter()
            .filter(|c| c.audience() == Audience::Clients)
            .map(|c| c.as_str())
            .filter(|c| !named.contains(*c))
            .collect();
        assert!(
            missing.is_empty(),
            "codes the ESN namespaces may answer that docs/EVENTS.md does not list: {missing:?}"
        );
        let sendable: BTreeSet<&str> = ErrorCode::ALL
            .iter()
            .filter(|c| matches!(c.audience(), Audience::Clients | Audience::Api))
            .map(|c| c.as_str())
            .collect();
        let unknown: Vec<&String> = named
            .iter()
            .filter(|c| !sendable.contains(c.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/EVENTS.md names codes the server does not send: {unknown:?}"
        );
    }

    #[test]
    fn docs_identity_names_every_refusal_of_a_token_and_no_other() {
        let named = codes_in_doc("IDENTITY.md");
        let identity: BTreeSet<String> = ErrorCode::ALL
            .iter()
            .filter(|c| c.audience() == Audience::Identity)
            .map(|c| c.as_str().to_owned())
            .collect();
        assert!(identity.contains("wrong_user"), "the list is read");
        assert_eq!(
            named, identity,
            "docs/IDENTITY.md's codes (left) against the codes a token's refusal may carry (right)"
        );
    }
}
