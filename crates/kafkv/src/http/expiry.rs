//! Expiry over HTTP (docs/expiry.md, "Surfaces"): the `ttl`, `expire_at`,
//! `keep_ttl`, `persist` and `when` arguments of `PUT /v1/kv/{key}`,
//! `POST /v1/kv/{key}/expire` and `/v1/txn` ops, checked into the
//! [`SetExpiry`] a put leaves or the expire operation they ask for; the
//! `x-kafkv-expires-at` header; and the `/expire` route itself.
//!
//! Times are milliseconds: `ttl` from the record's timestamp (so every
//! instance resolves it alike), `expire_at` since the Unix epoch. A value
//! this front end cannot honour answers 400 saying what to send instead,
//! and nothing is written.

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    ApiError, AppState,
    conditional::{self, with_etag},
    v1::Query,
};
use crate::{
    op::{Deadline, ExpireWhen, KeyState, Op, SetExpiry},
    store::Applied,
};

/// The header naming a key's expiry, in ms since the Unix epoch.
pub const EXPIRES_AT: &str = "x-kafkv-expires-at";

/// Adds [`EXPIRES_AT`] to a response when the key has an expiry.
pub fn with_expires_at(mut response: Response, expires_at: Option<i64>) -> Response {
    if let Some(at) = expires_at {
        response
            .headers_mut()
            .insert(EXPIRES_AT, HeaderValue::from(at));
    }
    response
}

/// The expiry arguments of one request, as sent, before they are checked
/// against what the request is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExpiryArgs {
    pub ttl: Option<i64>,
    pub expire_at: Option<i64>,
    pub keep_ttl: bool,
    pub persist: bool,
    pub when: Option<String>,
}

impl ExpiryArgs {
    /// The arguments in a query string.
    pub fn from_query(query: &Query) -> Result<ExpiryArgs, ApiError> {
        let bad = |message| ApiError::new(StatusCode::BAD_REQUEST, message);
        let integer = |name: &str| {
            query
                .text(name)?
                .map(|text| integer_text(name, &text).map_err(bad))
                .transpose()
        };
        let flag = |name: &str| {
            query
                .text(name)
                .and_then(|text| flag_text(name, text.as_deref()).map_err(bad))
        };
        Ok(ExpiryArgs {
            ttl: integer("ttl")?,
            expire_at: integer("expire_at")?,
            keep_ttl: flag("keep_ttl")?,
            persist: flag("persist")?,
            when: query.text("when")?,
        })
    }

    /// Whether it asks for nothing about expiry.
    pub fn is_empty(&self) -> bool {
        *self == ExpiryArgs::default()
    }

    /// The expiry a put leaves: `None` clears any (a plain put), `Keep`
    /// keeps the key's, else the deadline asked for.
    pub fn put_expiry(self) -> Result<Option<SetExpiry>, String> {
        if self.persist {
            return Err(
                "persist belongs to POST /v1/kv/{key}/expire; a put without ttl, \
                 expire_at or keep_ttl already clears the key's expiry"
                    .into(),
            );
        }
        if self.when.is_some() {
            return Err(
                "when belongs to POST /v1/kv/{key}/expire; to put only if the key \
                 exists or not, send If-Match: * or If-None-Match: *"
                    .into(),
            );
        }
        if self.keep_ttl {
            if self.ttl.is_some() || self.expire_at.is_some() {
                return Err(
                    "keep_ttl keeps the key's current expiry, so it takes no ttl or \
                     expire_at: send one of the three"
                        .into(),
                );
            }
            return Ok(Some(SetExpiry::Keep));
        }
        Ok(self.deadline()?.map(SetExpiry::Until))
    }

    /// The operation `POST …/expire` (or a transaction's `expire` op) asks
    /// for: a new expiry under a condition, or `persist`.
    pub fn expire_op(self) -> Result<Op, String> {
        if self.keep_ttl {
            return Err(
                "keep_ttl belongs to a put; an expire sets a new expiry (ttl or \
                 expire_at) or removes it (persist)"
                    .into(),
            );
        }
        let when = self.when.as_deref().map(expire_when).transpose()?;
        if self.persist {
            if self.ttl.is_some() || self.expire_at.is_some() {
                return Err(
                    "persist removes the expiry, so it takes no ttl or expire_at: \
                     send one of the three"
                        .into(),
                );
            }
            if when.is_some() {
                return Err("persist takes no when: it removes whatever expiry the key has".into());
            }
            return Ok(Op::Persist);
        }
        let Some(deadline) = self.deadline()? else {
            return Err(
                "an expire needs ttl=<ms from now>, expire_at=<ms since the Unix \
                 epoch> or persist=1"
                    .into(),
            );
        };
        Ok(Op::Expire {
            deadline,
            when: when.unwrap_or(ExpireWhen::Always),
        })
    }

    /// `ttl` or `expire_at`, checked; `None` when neither was sent.
    fn deadline(&self) -> Result<Option<Deadline>, String> {
        match (self.ttl, self.expire_at) {
            (Some(_), Some(_)) => Err("send ttl or expire_at, not both: ttl is milliseconds \
                 from now, expire_at milliseconds since the Unix epoch"
                .into()),
            (Some(ttl), None) if ttl <= 0 => Err(format!(
                "ttl must be a positive number of milliseconds (ttl=60000 is one minute), not \
                 {ttl}; to remove the key now, DELETE it"
            )),
            (Some(ttl), None) => {
                // Redis's bound: the expiry must fit once the clock is added.
                crate::state::now_ms().checked_add(ttl).ok_or_else(|| {
                    format!(
                        "ttl={ttl} is too large: now plus that many milliseconds does not fit \
                         in 64 bits; send a smaller ttl, or none for a key that never expires"
                    )
                })?;
                Ok(Some(Deadline::In(ttl)))
            }
            (None, Some(at)) if at < 0 => Err(format!(
                "expire_at must be a time in milliseconds since the Unix epoch (0 or more), as \
                 in expire_at=1767225600000, not {at}"
            )),
            (None, Some(at)) => Ok(Some(Deadline::At(at))),
            (None, None) => Ok(None),
        }
    }
}

/// A time argument sent as text: a whole number of milliseconds.
fn integer_text(name: &str, text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{name} must be a whole number of milliseconds, as in {name}=60000, not '{text}'"
        ));
    }
    text.parse().map_err(|_| {
        format!("{name}={text} is out of range: milliseconds must fit in a signed 64-bit integer")
    })
}

/// A time argument sent as JSON: a whole number of milliseconds.
pub fn integer_json(name: &str, value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(number) if number.is_i64() => Ok(number.as_i64().unwrap_or_default()),
        Value::Number(number) if number.is_u64() => Err(format!(
            "{name} {number} is out of range: milliseconds must fit in a signed 64-bit integer"
        )),
        other => Err(format!(
            "{name} must be a whole number of milliseconds, as in \"{name}\": 60000, not {other}"
        )),
    }
}

/// A switch sent as a query parameter: present alone, `1` or `true` is on.
fn flag_text(name: &str, text: Option<&str>) -> Result<bool, String> {
    match text {
        None | Some("0" | "false") => Ok(false),
        Some("" | "1" | "true") => Ok(true),
        Some(other) => Err(format!(
            "{name} takes 1 or 0 (true or false), not '{other}'"
        )),
    }
}

/// `when`: Redis 7's `EXPIRE` options, `xx` combined with `gt` or `lt`.
fn expire_when(text: &str) -> Result<ExpireWhen, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "nx" => ExpireWhen::Nx,
        "xx" => ExpireWhen::Xx,
        "gt" => ExpireWhen::Gt,
        "lt" => ExpireWhen::Lt,
        "xx,gt" | "gt,xx" => ExpireWhen::XxGt,
        "xx,lt" | "lt,xx" => ExpireWhen::XxLt,
        _ => {
            return Err(format!(
                "when must be nx (only if the key has no expiry), xx (only if it has one), gt \
                 (only later than its expiry), lt (only earlier), xx,gt or xx,lt, as Redis's \
                 EXPIRE options; not '{text}'"
            ));
        }
    })
}

/// `POST /v1/kv/{key}/expire`: sets or removes the live key's expiry where
/// the record lands in the log. Answers `{"applied", "expires_at",
/// "partition", "offset"}`, with the key's version as `ETag` and its expiry
/// as [`EXPIRES_AT`]: the new ones when applied, else the key as the
/// operation found it (nothing when absent or expired).
pub async fn expire(
    state: &AppState,
    key: &[u8],
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if conditional::precondition(headers)?.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "an expire takes no If-Match or If-None-Match: its condition is when=nx|xx|gt|lt, \
             decided where its record lands in the log",
        ));
    }
    let op = ExpiryArgs::from_query(query)?
        .expire_op()
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    let Applied { receipt, outcome } = state.store.apply_op(key, op).await?;
    let now = reported(&outcome);
    let expires_at = now.and_then(|state| state.expires_at);
    let body = json!({
        "applied": outcome.applied,
        "expires_at": expires_at,
        "partition": receipt.partition,
        "offset": receipt.offset,
    });
    let etag = conditional::etag_of(receipt.partition, now);
    Ok(with_expires_at(
        with_etag(Json(body).into_response(), etag),
        expires_at,
    ))
}

/// The key an expire or persist reports: as it left it when it applied,
/// else as it found it (absent once expired).
pub fn reported(outcome: &crate::op::Outcome) -> Option<&KeyState> {
    match outcome.applied {
        true => outcome.after.as_ref(),
        false => outcome.before.as_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Result<ExpiryArgs, StatusCode> {
        ExpiryArgs::from_query(&Query::parse(Some(text)).map_err(|e| e.status)?)
            .map_err(|e| e.status)
    }

    fn put(text: &str) -> Result<Option<SetExpiry>, String> {
        query(text).unwrap().put_expiry()
    }

    fn expire(text: &str) -> Result<Op, String> {
        query(text).unwrap().expire_op()
    }

    #[test]
    fn a_put_takes_one_of_ttl_expire_at_and_keep_ttl() {
        assert_eq!(put(""), Ok(None));
        assert_eq!(
            put("ttl=1500"),
            Ok(Some(SetExpiry::Until(Deadline::In(1500))))
        );
        assert_eq!(
            put("expire_at=0"),
            Ok(Some(SetExpiry::Until(Deadline::At(0))))
        );
        for keep in ["keep_ttl=1", "keep_ttl=true", "keep_ttl"] {
            assert_eq!(put(keep), Ok(Some(SetExpiry::Keep)), "{keep}");
        }
        assert_eq!(put("keep_ttl=0"), Ok(None));
        for bad in [
            "ttl=0",
            "ttl=-5",
            "ttl=1&expire_at=5",
            "expire_at=-1",
            "keep_ttl=1&ttl=5",
            "persist=1",
            "when=nx",
        ] {
            assert!(put(bad).is_err(), "{bad}");
        }
        let overflow = format!("ttl={}", i64::MAX);
        assert!(put(&overflow).unwrap_err().contains("too large"));
    }

    #[test]
    fn malformed_numbers_are_refused_before_anything_else() {
        for bad in [
            "ttl=abc",
            "ttl=1.5",
            "ttl=",
            "ttl=%2B5",
            "expire_at=soon",
            "ttl=99999999999999999999",
            "keep_ttl=yes",
        ] {
            assert_eq!(query(bad), Err(StatusCode::BAD_REQUEST), "{bad}");
        }
        assert!(
            integer_text("ttl", "99999999999999999999")
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(integer_json("ttl", &json!(5)), Ok(5));
        assert!(integer_json("ttl", &json!(1.5)).is_err());
        assert!(integer_json("ttl", &json!("5")).is_err());
        assert!(
            integer_json("ttl", &json!(u64::MAX))
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn an_expire_takes_a_time_and_a_condition_or_persist() {
        let at = |when| {
            Ok(Op::Expire {
                deadline: Deadline::In(100),
                when,
            })
        };
        assert_eq!(expire("ttl=100"), at(ExpireWhen::Always));
        assert_eq!(expire("ttl=100&when=nx"), at(ExpireWhen::Nx));
        assert_eq!(expire("ttl=100&when=XX"), at(ExpireWhen::Xx));
        assert_eq!(expire("ttl=100&when=gt"), at(ExpireWhen::Gt));
        assert_eq!(expire("ttl=100&when=lt"), at(ExpireWhen::Lt));
        assert_eq!(expire("ttl=100&when=xx,gt"), at(ExpireWhen::XxGt));
        assert_eq!(expire("ttl=100&when=lt%2Cxx"), at(ExpireWhen::XxLt));
        assert_eq!(
            expire("expire_at=7"),
            Ok(Op::Expire {
                deadline: Deadline::At(7),
                when: ExpireWhen::Always
            })
        );
        assert_eq!(expire("persist=1"), Ok(Op::Persist));
        for bad in [
            "",
            "persist=0",
            "ttl=0",
            "ttl=100&when=nx,xx",
            "ttl=100&when=gt,lt",
            "ttl=100&when=sometimes",
            "persist=1&ttl=5",
            "persist=1&when=xx",
            "keep_ttl=1",
        ] {
            assert!(expire(bad).is_err(), "{bad}");
        }
    }
}
