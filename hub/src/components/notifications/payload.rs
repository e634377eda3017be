//! What the clients of `/notifications` send, read and checked once into a
//! [`NotificationsEvent`]: every bad input is a `bad_request` naming what
//! is wrong.

use serde::Deserialize;
use socketio::Args;

use super::{DEFAULT_LIST_LIMIT, NotificationsConfig};
use crate::component::{ErrorCode, HubError};
use crate::components::kit;

/// An event of `/notifications`, checked.
#[derive(Debug, PartialEq)]
pub enum NotificationsEvent {
    /// A page of notifications below id `before` (all when `None`).
    List { before: Option<i64>, limit: u32 },
    /// Marks these (no repeats) as read.
    Read { ids: Vec<i64> },
    /// Marks every unread one as read.
    ReadAll,
}

impl NotificationsEvent {
    /// Reads `event` and its arguments, or says what is wrong.
    pub fn parse(
        event: &str,
        args: &Args,
        config: &NotificationsConfig,
    ) -> Result<NotificationsEvent, HubError> {
        match event {
            "list" => {
                let (before, limit) = list(args, config)?;
                Ok(NotificationsEvent::List { before, limit })
            }
            "read" => Ok(NotificationsEvent::Read {
                ids: read(args, config)?,
            }),
            "read_all" => {
                read_all(args)?;
                Ok(NotificationsEvent::ReadAll)
            }
            other => Err(HubError::new(
                ErrorCode::UnknownEvent,
                format!("no event {other:?} in /notifications (list, read, read_all)"),
            )),
        }
    }
}

/// `list`: `{before?, limit?}` (or nothing).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListRequest {
    /// Only notifications with a smaller id (the previous page's last).
    before: Option<i64>,
    limit: Option<i64>,
}

/// `read`: `{ids}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadRequest {
    ids: Vec<i64>,
}

/// `read_all`: `{}` (or nothing).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadAllRequest {}

fn bad(message: impl Into<String>) -> HubError {
    HubError::new(ErrorCode::BadRequest, message)
}

/// The first argument as `T`; nothing (or `null`) is `T::default()` when
/// `optional`.
fn parse<T: serde::de::DeserializeOwned>(
    args: &Args,
    event: &str,
    shape: &str,
) -> Result<Option<T>, HubError> {
    kit::parse(args, &format!("{event} takes {shape}"))
}

/// `(before, limit)` of a `list`.
pub fn list(args: &Args, config: &NotificationsConfig) -> Result<(Option<i64>, u32), HubError> {
    let request: ListRequest =
        parse(args, "list", "{before?: id, limit?: number}")?.unwrap_or_default();
    // Refused at start when 0 (a list could never return anything).
    let max = config.max_list_limit.max(1);
    let limit = match request.limit {
        None => DEFAULT_LIST_LIMIT.min(max),
        Some(limit) if (1..=i64::from(max)).contains(&limit) => limit as u32,
        Some(_) => return Err(bad(format!("limit must be 1 to {max}"))),
    };
    Ok((request.before, limit))
}

/// The ids of a `read`, without repeats.
pub fn read(args: &Args, config: &NotificationsConfig) -> Result<Vec<i64>, HubError> {
    let Some(request) = parse::<ReadRequest>(args, "read", "{ids: [id, …]}")? else {
        return Err(bad("read takes {ids: [id, …]}"));
    };
    let max = config.max_read_ids;
    if request.ids.is_empty() || request.ids.len() > max {
        return Err(bad(format!("ids: 1 to {max} notification ids")));
    }
    let mut ids = request.ids;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// A `read_all` takes nothing.
pub fn read_all(args: &Args) -> Result<(), HubError> {
    parse::<ReadAllRequest>(args, "read_all", "nothing or {}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(json: &str) -> Args {
        let mut args = Args::new();
        if !json.is_empty() {
            args.push_json(&serde_json::value::RawValue::from_string(json.to_owned()).unwrap());
        }
        args
    }

    #[test]
    fn list_defaults_and_bounds() {
        let config = NotificationsConfig::default();
        assert_eq!(list(&args(""), &config).unwrap(), (None, 20));
        assert_eq!(list(&args("{}"), &config).unwrap(), (None, 20));
        assert_eq!(
            list(&args(r#"{"before":7,"limit":100}"#), &config).unwrap(),
            (Some(7), 100)
        );
        for bad in [
            r#"{"limit":0}"#,
            r#"{"limit":101}"#,
            r#"{"limit":"5"}"#,
            r#"{"before":"x"}"#,
            r#"{"cursor":1}"#,
            "[]",
            "5",
        ] {
            let err = list(&args(bad), &config).unwrap_err();
            assert_eq!(err.code, "bad_request", "{bad}");
        }
    }

    #[test]
    fn read_needs_a_bounded_list_of_ids() {
        let config = NotificationsConfig {
            max_read_ids: 3,
            ..NotificationsConfig::default()
        };
        assert_eq!(
            read(&args(r#"{"ids":[3,1,3]}"#), &config).unwrap(),
            vec![1, 3]
        );
        for bad in [
            "",
            "{}",
            r#"{"ids":[]}"#,
            r#"{"ids":[1,2,3,4]}"#,
            r#"{"ids":["1"]}"#,
            r#"{"ids":[1.5]}"#,
            r#"{"ids":[1],"all":true}"#,
        ] {
            let err = read(&args(bad), &config).unwrap_err();
            assert_eq!(err.code, "bad_request", "{bad}");
        }
        assert!(read_all(&args("")).is_ok());
        assert!(read_all(&args("{}")).is_ok());
        assert!(read_all(&args(r#"{"ids":[1]}"#)).is_err());
    }
}
