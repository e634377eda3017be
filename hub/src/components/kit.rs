//! The component kit: what every component does the same way — reading an
//! event's argument, answering it, and emitting to a list of users. It
//! names no component.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use socketio::{Args, BroadcastOperator, Namespace, Once, Published, Room, SocketId};

use crate::component::{HubError, Reply};

/// The event's first argument as `T`, or a `bad_request` saying `what`
/// was expected and why it is not that.
pub fn parse<T: DeserializeOwned>(args: &Args, what: &str) -> Result<T, HubError> {
    args.first::<T>()
        .map_err(|err| HubError::bad_request(format!("{what}: {err}")))
}

/// The fields of an `{ok:true, …}` ack, from a JSON object (anything else
/// is no field).
pub fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// An `{ok:true, …}` ack with the fields of `value`, a JSON object.
pub fn ack(value: Value) -> Reply {
    Ok(fields(value))
}

/// An `{ok:true, …}` ack with the fields of `reply`, a component's reply
/// type. It goes through a JSON value, as a `json!` ack did: the runner
/// adds `ok` among the fields, and every object in it, nested ones
/// included, has its keys sorted, the order clients have always seen.
pub fn reply<T: Serialize>(reply: &T) -> Reply {
    Ok(fields(as_value(reply)))
}

/// `value` as a JSON value: the keys of every object in it sorted, as a
/// `json!` value has them (for a server event whose nested types are not
/// declared in that order). One conversion per event, not per recipient.
pub fn as_value<T: Serialize>(value: &T) -> Value {
    // A reply type has string keys only, so this cannot fail; `json!`
    // panicked where this answers `null`.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The `user:<id>` room of each of `users`, built in one buffer: a room
/// costs the one allocation of its shared name, not a `format!` and then
/// the copy into that name.
pub fn user_rooms<U: AsRef<str>>(users: impl IntoIterator<Item = U>) -> impl Iterator<Item = Room> {
    const PREFIX: &str = "user:";
    let mut name = String::from(PREFIX);
    users.into_iter().map(move |user| {
        name.truncate(PREFIX.len());
        name.push_str(user.as_ref());
        Room::from(name.as_str())
    })
}

/// Emits `event` with `payload` to every device of `users` on `ns` (their
/// `user:<id>` rooms) but the socket `except`: one broadcast, encoded
/// once, each socket reached once. Nothing when `users` is empty.
pub fn emit_to_users<U: AsRef<str>, T: Serialize + ?Sized>(
    ns: &Arc<Namespace>,
    except: Option<SocketId>,
    users: impl IntoIterator<Item = U>,
    event: &str,
    payload: &T,
) {
    if let Some(to) = to_users(ns, except, users) {
        to.emit(event, &Args::one(payload));
    }
}

/// [`emit_to_users`] for a caller that answers only once the other nodes
/// have it (see [`BroadcastOperator::emit_published`]); `once`: published
/// at most once by the cluster. Ready at once when `users` is empty.
pub fn emit_to_users_published<U: AsRef<str>, T: Serialize + ?Sized>(
    ns: &Arc<Namespace>,
    users: impl IntoIterator<Item = U>,
    event: &str,
    payload: &T,
    once: Option<&Once>,
) -> Published {
    match to_users(ns, None, users) {
        Some(to) => to.emit_published(event, &Args::one(payload), once),
        None => Published::done(),
    }
}

/// The broadcast to `users`' rooms but the socket `except`; `None` when
/// `users` is empty.
fn to_users<U: AsRef<str>>(
    ns: &Arc<Namespace>,
    except: Option<SocketId>,
    users: impl IntoIterator<Item = U>,
) -> Option<BroadcastOperator> {
    let mut rooms = user_rooms(users);
    let mut to = ns.to(rooms.next()?);
    for room in rooms {
        to = to.to(room);
    }
    if let Some(id) = except {
        to = to.except_socket(id);
    }
    Some(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_rooms_are_the_auth_rooms() {
        let rooms: Vec<Room> = user_rooms(["alice", "b", ""]).collect();
        let expected: Vec<Room> = ["alice", "b", ""]
            .iter()
            .map(|u| Room::from(crate::auth::user_room(u)))
            .collect();
        assert_eq!(rooms, expected);
    }

    #[test]
    fn a_bad_argument_is_a_bad_request_saying_what_was_expected() {
        let mut args = Args::new();
        args.push_json(&serde_json::value::RawValue::from_string("5".to_owned()).unwrap());
        let err = parse::<Map<String, Value>>(&args, "expected {room}").unwrap_err();
        assert_eq!(err.code, "bad_request");
        assert!(err.message.starts_with("expected {room}: "), "{err}");
        assert_eq!(ack(serde_json::json!(3)), Ok(Map::new()));
    }
}
