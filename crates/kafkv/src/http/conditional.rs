//! Versions over HTTP: a key's version as a strong `ETag`, the `If-Match` /
//! `If-None-Match` preconditions of writes as the [`Condition`] an operation
//! record carries, and the 412 that a condition which did not hold answers.
//!
//! An ETag is `"<partition>:<offset>"`. The offset is the key's version (the
//! offset of the record that last changed it, the same on every instance and
//! across compaction); offsets count per partition, so the partition makes
//! the tag name one record of the topic. The condition is decided where its
//! record lands in the log (docs/rmw.md), never by this instance's view.

use std::fmt;

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::ApiError;
use crate::{
    op::{Condition, KeyState},
    store::Store,
};

/// A key's version as HTTP names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Etag {
    pub partition: i32,
    pub offset: i64,
}

impl Etag {
    pub fn new(partition: i32, offset: i64) -> Self {
        Self { partition, offset }
    }

    /// The `ETag` header's value.
    pub fn header(self) -> HeaderValue {
        HeaderValue::try_from(self.to_string()).expect("digits, a colon and quotes")
    }

    /// The inside of a quoted tag this API issued, `<partition>:<offset>`.
    pub(super) fn parse_opaque(text: &str) -> Option<Etag> {
        let (partition, offset) = text.split_once(':')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(partition) || !digits(offset) {
            return None;
        }
        Some(Etag::new(partition.parse().ok()?, offset.parse().ok()?))
    }
}

impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}:{}\"", self.partition, self.offset)
    }
}

/// Adds `ETag` to a response.
pub fn with_etag(mut response: Response, etag: Option<Etag>) -> Response {
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag.header());
    }
    response
}

/// What a write's precondition headers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: "<etag>"`: the key's version is this one.
    Version(Etag),
    /// `If-Match: *`: the key exists.
    Exists,
    /// `If-None-Match: *`: the key does not exist.
    Absent,
}

impl fmt::Display for Precondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Precondition::Version(etag) => write!(f, "If-Match: {etag}"),
            Precondition::Exists => f.write_str("If-Match: *"),
            Precondition::Absent => f.write_str("If-None-Match: *"),
        }
    }
}

/// One element of an `If-Match` / `If-None-Match` list.
#[derive(Debug, PartialEq, Eq)]
enum Element<'a> {
    Star,
    Tag { weak: bool, opaque: &'a str },
}

/// Splits a header's value into its elements (RFC 9110: `"*" / #entity-tag`).
fn elements(value: &str) -> Option<Vec<Element<'_>>> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(out);
        }
        if let Some(after) = rest.strip_prefix('*') {
            out.push(Element::Star);
            rest = after;
        } else {
            let (weak, quoted) = match rest.strip_prefix("W/") {
                Some(quoted) => (true, quoted),
                None => (false, rest),
            };
            let inner = quoted.strip_prefix('"')?;
            let end = inner.find('"')?;
            out.push(Element::Tag {
                weak,
                opaque: &inner[..end],
            });
            rest = &inner[end + 1..];
        }
        // An element ends at a comma or the end of the value.
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if !trimmed.is_empty() && !trimmed.starts_with(',') {
            return None;
        }
        rest = trimmed;
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// Every element of the header `name`, across repeated header lines;
/// `None` when it is absent.
fn header_elements<'h>(
    headers: &'h HeaderMap,
    name: &header::HeaderName,
) -> Result<Option<Vec<Element<'h>>>, ApiError> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let mut all = Vec::new();
    for value in values {
        let text = value.to_str().ok().and_then(elements).ok_or_else(|| {
            bad(format!(
                "{name} is malformed: it takes * or one quoted entity tag, as in \
                     {name}: \"0:42\" (the ETag a read or write of the key returned)"
            ))
        })?;
        all.extend(text);
    }
    Ok(Some(all))
}

/// The precondition a `PUT` or `DELETE` carries, if any; 400 for one this
/// API cannot honour.
pub fn precondition(headers: &HeaderMap) -> Result<Option<Precondition>, ApiError> {
    let if_match = header_elements(headers, &header::IF_MATCH)?;
    let if_none_match = header_elements(headers, &header::IF_NONE_MATCH)?;
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(bad(
            "send either If-Match or If-None-Match on a write, not both",
        )),
        (Some(elements), None) => match elements.as_slice() {
            [Element::Star] => Ok(Some(Precondition::Exists)),
            [Element::Tag { weak: true, .. }] => Err(bad(
                "If-Match compares entity tags strongly, so a weak tag (W/\"...\") never \
                 matches; send the ETag exactly as kafkv returned it",
            )),
            [Element::Tag { opaque, .. }] => match Etag::parse_opaque(opaque) {
                Some(etag) => Ok(Some(Precondition::Version(etag))),
                None => Err(bad(format!(
                    "If-Match: \"{opaque}\" is not an ETag kafkv returned; kafkv's ETags are \
                     \"<partition>:<offset>\", as in \"0:42\""
                ))),
            },
            [] => Err(bad("If-Match is empty: send * or one quoted entity tag")),
            _ => Err(bad(
                "If-Match takes * or exactly one entity tag: a write checks one version",
            )),
        },
        (None, Some(elements)) => match elements.as_slice() {
            [Element::Star] => Ok(Some(Precondition::Absent)),
            _ => Err(bad(
                "If-None-Match on a write takes only * (create the key only if it does not \
                 exist); to write only at a version, send If-Match",
            )),
        },
    }
}

/// The condition an operation record carries for `precondition`, or the
/// answer already, when the tag names another partition than the key's:
/// a key's records all go to one partition, so its version can never be
/// that tag, whatever the log holds.
pub fn condition(
    store: &Store,
    key: &[u8],
    precondition: Precondition,
) -> Result<Result<Condition, Response>, ApiError> {
    Ok(Ok(match precondition {
        Precondition::Exists => Condition::Present,
        Precondition::Absent => Condition::Absent,
        Precondition::Version(etag) => {
            // The key's partition is known only once a record of it was seen.
            if let Some(found) = store.get_now(key)?
                && found.partition != etag.partition
            {
                let current = Etag::new(found.partition, found.offset);
                return Ok(Err(failed(precondition, Some(current))));
            }
            Condition::Version(etag.offset)
        }
    }))
}

/// The tag of a key's state in `partition`, if it has one.
pub fn etag_of(partition: i32, state: Option<&KeyState>) -> Option<Etag> {
    state.map(|s| Etag::new(partition, s.version))
}

/// 412: `precondition` did not hold; `current` is the key's version where
/// the condition was decided (`None`: the key did not exist). Nothing
/// changed.
pub fn failed(precondition: Precondition, current: Option<Etag>) -> Response {
    let state = match current {
        Some(etag) => format!("the key's version is {etag}"),
        None => "the key does not exist".to_owned(),
    };
    let message = format!("precondition failed ({precondition}): {state}; nothing was changed");
    let body = json!({
        "error": message,
        "etag": current.map(|e| e.to_string()),
    });
    with_etag(
        (StatusCode::PRECONDITION_FAILED, Json(body)).into_response(),
        current,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(headers: &[(&str, &str)]) -> Result<Option<Precondition>, StatusCode> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        precondition(&map).map_err(|e| e.status)
    }

    #[test]
    fn etags_read_back() {
        let etag = Etag::new(3, 42);
        assert_eq!(etag.to_string(), "\"3:42\"");
        assert_eq!(
            parse(&[("if-match", &etag.to_string())]),
            Ok(Some(Precondition::Version(etag)))
        );
        assert_eq!(
            parse(&[("if-match", " \"0:7\" ")]),
            Ok(Some(Precondition::Version(Etag::new(0, 7))))
        );
    }

    #[test]
    fn stars_and_absence() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&[("if-match", "*")]), Ok(Some(Precondition::Exists)));
        assert_eq!(
            parse(&[("if-none-match", "*")]),
            Ok(Some(Precondition::Absent))
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        let refused = StatusCode::BAD_REQUEST;
        for value in [
            "",
            "42",
            "\"42\"",
            "\"0:\"",
            "\"-1:4\"",
            "\"0:4",
            "W/\"0:4\"",
            "\"0:4\", \"0:5\"",
            "*, \"0:4\"",
            "\"0:4\"x",
            "\"0:99999999999999999999\"",
        ] {
            assert_eq!(parse(&[("if-match", value)]), Err(refused), "{value:?}");
        }
        assert_eq!(
            parse(&[("if-match", "\"0:4\""), ("if-match", "\"0:5\"")]),
            Err(refused)
        );
        assert_eq!(parse(&[("if-none-match", "\"0:4\"")]), Err(refused));
        assert_eq!(
            parse(&[("if-match", "*"), ("if-none-match", "*")]),
            Err(refused)
        );
    }
}
