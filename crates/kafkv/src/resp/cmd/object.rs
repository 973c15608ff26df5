//! `OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ key`: what Redis reports about a
//! key's in-memory object, where kafkv has a sensible answer. All answer nil
//! for a missing key.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "object",
    arity: -2,
    flags: &["readonly"],
    kind: Kind::Read,
    before_auth: false,
}];

/// Redis keeps strings up to this long in one allocation with their header.
const EMBSTR_MAX: usize = 44;

enum Field {
    Encoding,
    RefCount,
    IdleTime,
    Freq,
}

pub struct Object {
    field: Field,
    key: bytes::Bytes,
}

impl Object {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let sub = args.subcommand()?;
        let field = match sub.to_ascii_uppercase().as_slice() {
            b"ENCODING" => Field::Encoding,
            b"REFCOUNT" => Field::RefCount,
            b"IDLETIME" => Field::IdleTime,
            b"FREQ" => Field::Freq,
            _ => {
                return Err(Frame::error(format!(
                    "ERR unknown subcommand '{}'. Try OBJECT HELP.",
                    String::from_utf8_lossy(&sub)
                )));
            }
        };
        let key = args.single()?;
        Ok(Self { field, key })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let field = self.field;
        super::with_value(session, &self.key, |found| {
            let Some(found) = found else {
                return Frame::Null;
            };
            match field {
                // The encoding Redis would choose for this value, so clients
                // that branch on it behave as they would against Redis.
                // A collection is one packed value, which is what Redis's
                // `listpack` is for small ones.
                Field::Encoding if !found.is_string() => {
                    Frame::bulk("listpack")
                }
                Field::Encoding => Frame::bulk(encoding(&found.value)),
                // Redis shares one object among keys holding the integers
                // 0-9999 and reports INT_MAX for it; any other value is
                // referenced once.
                Field::RefCount => Frame::Integer(if found.is_string() && is_shared_integer(&found.value) {
                    i64::from(i32::MAX)
                } else {
                    1
                }),
                // Redis answers the seconds since the key was last read; kafkv
                // does not record reads, so it says so rather than guess.
                Field::IdleTime => Frame::error(
                    "ERR kafkv does not track when keys were last read, so OBJECT IDLETIME has \
                     no answer",
                ),
                Field::Freq => Frame::error(
                    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
                     Please note that when switching between policies at runtime LRU and LFU \
                     data will take some time to adjust.",
                ),
            }
        })
    }
}

/// Whether Redis would keep this value as one of its shared integers.
fn is_shared_integer(value: &[u8]) -> bool {
    encoding(value) == "int"
        && std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .is_some_and(|n| (0..10_000).contains(&n))
}

/// `int` for a value Redis would store as a number, `embstr` for a short
/// string, `raw` otherwise.
fn encoding(value: &[u8]) -> &'static str {
    let canonical_integer = value.len() <= 20
        && std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .is_some_and(|n| n.to_string().as_bytes() == value);
    if canonical_integer {
        "int"
    } else if value.len() <= EMBSTR_MAX {
        "embstr"
    } else {
        "raw"
    }
}

#[cfg(test)]
mod tests {
    use super::encoding;

    #[test]
    fn encodings_as_redis_chooses_them() {
        assert_eq!(encoding(b"12345"), "int");
        assert_eq!(encoding(b"-7"), "int");
        assert_eq!(encoding(b"007"), "embstr");
        assert_eq!(encoding(b"+1"), "embstr");
        assert_eq!(encoding(b"hello"), "embstr");
        assert_eq!(encoding(&[b'x'; 44]), "embstr");
        assert_eq!(encoding(&[b'x'; 45]), "raw");
        assert_eq!(encoding(b"99999999999999999999"), "embstr");
    }

    #[test]
    fn shared_integers_are_0_to_9999() {
        use super::is_shared_integer;
        assert!(is_shared_integer(b"0") && is_shared_integer(b"9999"));
        assert!(!is_shared_integer(b"10000") && !is_shared_integer(b"-1"));
        assert!(!is_shared_integer(b"007") && !is_shared_integer(b"x"));
    }
}
