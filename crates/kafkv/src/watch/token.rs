//! The resume token: where in the log a watch stands, as an opaque,
//! URL-safe string.
//!
//! Layout (then unpadded URL-safe base64): a format byte (1); eight bytes of
//! the topic's fingerprint (FNV-1a of its name and Kafka topic id, so a token
//! from another topic, or from a deleted and re-created one, is refused); the
//! minting time in milliseconds since the epoch (eight bytes, big-endian: a
//! token older than the topic's `delete.retention.ms` may have missed
//! tombstones compaction removed since); the partition count and each
//! partition's next offset as LEB128 varints.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

const FORMAT: u8 = 1;
/// Far more than any topic has; bounds what a forged token can allocate.
const MAX_PARTITIONS: u64 = 1 << 16;

/// A position in the topic: every partition's next offset, for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub(crate) fingerprint: u64,
    /// Milliseconds since the epoch when the token was made.
    pub(crate) minted_ms: i64,
    /// Per partition, the offset the watch resumes at.
    pub(crate) positions: Vec<i64>,
}

/// Why a token string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the watch token is malformed ({0}); use a token exactly as a watch event gave it")]
    Malformed(&'static str),
    #[error(
        "the watch token belongs to another topic, or to an earlier incarnation of this one \
         ({0}); start again with start=snapshot or start=now"
    )]
    Foreign(&'static str),
}

impl Token {
    pub(crate) fn new(fingerprint: u64, positions: Vec<i64>) -> Self {
        Token {
            fingerprint,
            minted_ms: crate::state::now_ms(),
            positions,
        }
    }

    pub fn positions(&self) -> &[i64] {
        &self.positions
    }

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(17 + 10 * (self.positions.len() + 1));
        bytes.push(FORMAT);
        bytes.extend_from_slice(&self.fingerprint.to_be_bytes());
        bytes.extend_from_slice(&self.minted_ms.to_be_bytes());
        put_varint(&mut bytes, self.positions.len() as u64);
        for position in &self.positions {
            put_varint(&mut bytes, (*position).max(0) as u64);
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses `text` and checks it belongs to the topic with `fingerprint`
    /// and `partitions` partitions.
    pub fn decode(text: &str, fingerprint: u64, partitions: usize) -> Result<Token, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| TokenError::Malformed("not URL-safe base64"))?;
        let mut input = bytes.as_slice();
        match take(&mut input, 1)?[0] {
            FORMAT => {}
            _ => return Err(TokenError::Malformed("unknown format")),
        }
        let found = u64::from_be_bytes(take(&mut input, 8)?.try_into().expect("8 bytes"));
        let minted_ms = i64::from_be_bytes(take(&mut input, 8)?.try_into().expect("8 bytes"));
        let count = get_varint(&mut input)?;
        if count > MAX_PARTITIONS {
            return Err(TokenError::Malformed("too many partitions"));
        }
        let mut positions = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let position = get_varint(&mut input)?;
            positions.push(i64::try_from(position).map_err(|_| TokenError::Malformed("offset"))?);
        }
        if !input.is_empty() {
            return Err(TokenError::Malformed("trailing bytes"));
        }
        if found != fingerprint {
            return Err(TokenError::Foreign("a different topic id"));
        }
        if positions.len() != partitions {
            return Err(TokenError::Foreign("a different partition count"));
        }
        Ok(Token {
            fingerprint,
            minted_ms,
            positions,
        })
    }
}

/// The topic identity a token carries: FNV-1a over the topic's name and
/// Kafka id. Stable across kafkv versions and machines, unlike std's hasher.
pub fn fingerprint(topic: &str, id: Option<&str>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes().chain([0]).chain(id.unwrap_or("").bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], TokenError> {
    if input.len() < n {
        return Err(TokenError::Malformed("too short"));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(input: &mut &[u8]) -> Result<u64, TokenError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take(input, 1)?[0];
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(TokenError::Malformed("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_url_safe() {
        let print = fingerprint("t", Some("id"));
        let token = Token::new(print, vec![0, 127, 128, 1 << 40]);
        let text = token.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Token::decode(&text, print, 4), Ok(token));
    }

    #[test]
    fn refuses_another_topic_or_incarnation_or_partition_count() {
        let text = Token::new(fingerprint("t", Some("id")), vec![1, 2]).encode();
        assert!(matches!(
            Token::decode(&text, fingerprint("other", Some("id")), 2),
            Err(TokenError::Foreign(_))
        ));
        assert!(matches!(
            Token::decode(&text, fingerprint("t", Some("recreated")), 2),
            Err(TokenError::Foreign(_))
        ));
        assert!(matches!(
            Token::decode(&text, fingerprint("t", Some("id")), 3),
            Err(TokenError::Foreign(_))
        ));
    }

    #[test]
    fn refuses_malformed_text() {
        let print = fingerprint("t", None);
        let good = Token::new(print, vec![5]).encode();
        for bad in [
            "",
            "!!",
            "AA",
            &good[..good.len() - 1],
            &format!("{good}AA"),
        ] {
            assert!(
                matches!(Token::decode(bad, print, 1), Err(TokenError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
