//! RESP frames: parsing client requests and encoding replies.
//!
//! Requests are arrays of bulk strings (what every client sends) or inline
//! commands (`PING\r\n`, for people typing into a socket). Parsing is two
//! passes, as in mini-redis: [`check`] walks the buffer without allocating and
//! says whether a whole request is there ("not enough bytes yet" is its own
//! outcome, not an error); only then is the request split off the buffer and
//! its arguments sliced out of it without copying.
//!
//! Replies are encoded for the connection's protocol version: RESP3 types
//! (null, map, set, boolean, double) fall back to their RESP2 shapes.

use bytes::{BufMut, Bytes, BytesMut};

/// Bounds on what one request may contain.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk string (an argument) in bytes.
    pub max_bulk: usize,
    /// Most arguments in one request.
    pub max_args: usize,
    /// Longest inline command line.
    pub max_inline: usize,
}

/// Why a request could not be parsed. The connection answers with the text
/// and closes, as Redis does: after a framing error the byte stream cannot
/// be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn protocol(text: impl Into<String>) -> ProtocolError {
    ProtocolError(text.into())
}

/// A reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    Null,
    /// A null array (`*-1` in RESP2): the reply of an `EXEC` whose watched
    /// keys changed.
    NullArray,
    Array(Vec<Frame>),
    /// RESP3 map; a flat array of pairs in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 double (a sorted set's score); a bulk string in RESP2. Printed
    /// as Redis 7.2 prints doubles: `inf`, `-inf`, or the shortest decimal
    /// that reads back the same.
    Double(f64),
    /// Pairs (`ZRANGE … WITHSCORES`, `ZPOPMIN key count`): an array of
    /// two-element arrays in RESP3, one flat array in RESP2, as Redis 7
    /// replies them.
    Pairs(Vec<(Frame, Frame)>),
    /// RESP3 set; an array in RESP2.
    Set(Vec<Frame>),
    /// RESP3 out-of-band push (pub/sub messages and confirmations); an
    /// array in RESP2.
    Push(Vec<Frame>),
    /// Several replies to one command, one after the other (`SUBSCRIBE a b`
    /// confirms each channel with its own reply).
    Sequence(Vec<Frame>),
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    pub fn error(text: impl Into<String>) -> Frame {
        Frame::Error(text.into())
    }

    pub fn bulk(bytes: impl Into<Bytes>) -> Frame {
        Frame::Bulk(bytes.into())
    }

    /// Appends the frame's encoding for protocol `resp3` or RESP2.
    pub fn encode(&self, out: &mut BytesMut, resp3: bool) {
        match self {
            Frame::Simple(text) => line(out, b'+', text.as_bytes()),
            Frame::Error(text) => line(out, b'-', text.as_bytes()),
            Frame::Integer(n) => line(out, b':', itoa::Buffer::new().format(*n).as_bytes()),
            Frame::Bulk(bytes) => {
                header(out, b'$', bytes.len());
                out.put_slice(bytes);
                out.put_slice(b"\r\n");
            }
            Frame::Null | Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                header(out, b'*', items.len());
                for item in items {
                    item.encode(out, resp3);
                }
            }
            Frame::Set(items) => {
                header(out, if resp3 { b'~' } else { b'*' }, items.len());
                for item in items {
                    item.encode(out, resp3);
                }
            }
            Frame::Push(items) => {
                header(out, if resp3 { b'>' } else { b'*' }, items.len());
                for item in items {
                    item.encode(out, resp3);
                }
            }
            Frame::Sequence(replies) => {
                for reply in replies {
                    reply.encode(out, resp3);
                }
            }
            Frame::Double(value) => {
                let text = crate::collection::format_score(*value);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    header(out, b'$', text.len());
                    out.put_slice(text.as_bytes());
                    out.put_slice(b"\r\n");
                }
            }
            Frame::Pairs(pairs) => {
                header(out, b'*', if resp3 { pairs.len() } else { pairs.len() * 2 });
                for (first, second) in pairs {
                    if resp3 {
                        header(out, b'*', 2);
                    }
                    first.encode(out, resp3);
                    second.encode(out, resp3);
                }
            }
            Frame::Map(pairs) => {
                if resp3 {
                    header(out, b'%', pairs.len());
                } else {
                    header(out, b'*', pairs.len() * 2);
                }
                for (key, value) in pairs {
                    key.encode(out, resp3);
                    value.encode(out, resp3);
                }
            }
        }
    }
}

fn line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.put_u8(kind);
    // A simple string or error may not contain CR or LF.
    out.extend(
        text.iter()
            .map(|b| if *b == b'\r' || *b == b'\n' { b' ' } else { *b }),
    );
    out.put_slice(b"\r\n");
}

fn header(out: &mut BytesMut, kind: u8, len: usize) {
    out.put_u8(kind);
    out.put_slice(itoa::Buffer::new().format(len).as_bytes());
    out.put_slice(b"\r\n");
}

/// The largest bulk string a client may send at all, as Redis's default
/// `proto-max-bulk-len` (512 MB). One over `max_bulk` but within this is
/// read and discarded, and the request refused; one over this is a protocol
/// error.
pub const DISCARD_BULK_LIMIT: usize = 512 * 1024 * 1024;

/// Where the arguments of a complete request lie in the buffer.
#[derive(Debug)]
pub struct Request {
    /// Bytes the request occupies at the front of the buffer (with
    /// `oversize`, up to the end of the oversize bulk string's length line).
    len: usize,
    /// Byte ranges of the arguments within those bytes.
    args: Vec<(usize, usize)>,
    oversize: Option<Oversize>,
    /// An inline command with quotes: its arguments unquoted (they are no
    /// longer slices of the buffer).
    unquoted: Option<Vec<Bytes>>,
}

/// A request with a bulk string over `max_bulk`: what is left of it to
/// discard after [`Request`]'s bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversize {
    /// The oversize bulk string's declared length.
    pub len: usize,
    /// Its body and CRLF, still to discard.
    pub body: usize,
    /// Bulk strings after it in the same request, to discard too.
    pub args_left: usize,
}

impl Request {
    /// Set when the request has a bulk string over the limit: the caller
    /// drops [`Request::len`] bytes, discards the rest as it arrives and
    /// refuses the request.
    pub fn oversize(&self) -> Option<Oversize> {
        self.oversize
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

/// The length of the bulk string header (`$<len>\r\n`) at the front of
/// `buf`, and the header's size; `Ok(None)` until it is all there.
pub fn bulk_header(buf: &[u8], limits: &Limits) -> Result<Option<(usize, usize)>, ProtocolError> {
    match buf.first() {
        None => return Ok(None),
        Some(b'$') => {}
        Some(other) => {
            return Err(protocol(format!(
                "expected '$', got '{}'",
                (*other as char).escape_default()
            )));
        }
    }
    let Some((len, end)) = number_line(buf, 1, limits.max_inline)? else {
        return Ok(None);
    };
    if len < 0 || len as usize > DISCARD_BULK_LIMIT {
        return Err(protocol("invalid bulk length"));
    }
    Ok(Some((len as usize, end)))
}

/// Looks for one complete request at the front of `buf`: `Ok(None)` when more
/// bytes are needed.
pub fn check(buf: &[u8], limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => check_array(buf, limits),
        Some(_) => check_inline(buf, limits),
    }
}

/// Splits a checked request off `buf` and returns its arguments, sharing the
/// buffer's memory.
pub fn take(buf: &mut BytesMut, request: Request) -> Vec<Bytes> {
    let bytes = buf.split_to(request.len).freeze();
    if let Some(unquoted) = request.unquoted {
        return unquoted;
    }
    request
        .args
        .into_iter()
        .map(|(start, end)| bytes.slice(start..end))
        .collect()
}

fn check_array(buf: &[u8], limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    let Some((count, mut at)) = number_line(buf, 1, limits.max_inline)? else {
        return Ok(None);
    };
    if count < 0 {
        // A null array: an empty request, which Redis ignores.
        return Ok(Some(Request {
            len: at,
            args: Vec::new(),
            oversize: None,
            unquoted: None,
        }));
    }
    let count = count as usize;
    if count > limits.max_args {
        return Err(protocol(format!(
            "invalid multibulk length: {count} arguments, the limit is {}",
            limits.max_args
        )));
    }
    // Capacity is bounded: a declared count alone must not allocate much.
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let Some((len, header)) = bulk_header(&buf[at..], limits)? else {
            return Ok(None);
        };
        let body = at + header;
        if len > limits.max_bulk {
            return Ok(Some(Request {
                len: body,
                args: Vec::new(),
                oversize: Some(Oversize {
                    len,
                    body: len + 2,
                    args_left: count - args.len() - 1,
                }),
                unquoted: None,
            }));
        }
        let end = body + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(protocol("bulk string not terminated by CRLF"));
        }
        args.push((body, end));
        at = end + 2;
    }
    Ok(Some(Request {
        len: at,
        args,
        oversize: None,
        unquoted: None,
    }))
}

/// Parses the decimal number that starts at `from` and ends with CRLF;
/// returns it and the index after the CRLF.
fn number_line(buf: &[u8], from: usize, max: usize) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = buf.get(from..).unwrap_or_default();
    let Some(cr) = rest.iter().position(|b| *b == b'\r') else {
        if rest.len() > 32.min(max) {
            return Err(protocol("length line too long"));
        }
        return Ok(None);
    };
    if rest.len() < cr + 2 {
        return Ok(None);
    }
    if rest[cr + 1] != b'\n' {
        return Err(protocol("expected CRLF after a length"));
    }
    let what = if buf.get(from - 1) == Some(&b'*') {
        "invalid multibulk length"
    } else {
        "invalid bulk length"
    };
    let n: i64 = std::str::from_utf8(&rest[..cr])
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| protocol(what))?;
    Ok(Some((n, from + cr + 2)))
}

fn check_inline(buf: &[u8], limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    let Some(newline) = buf.iter().position(|b| *b == b'\n') else {
        if buf.len() > limits.max_inline {
            return Err(protocol("too big inline request"));
        }
        return Ok(None);
    };
    let end = if newline > 0 && buf[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    };
    let line = &buf[..end];
    if line.iter().any(|b| *b == b'"' || *b == b'\'') {
        let unquoted = split_quoted(line)?;
        if unquoted.len() > limits.max_args {
            return Err(protocol("too many arguments in inline request"));
        }
        return Ok(Some(Request {
            len: newline + 1,
            args: Vec::new(),
            oversize: None,
            unquoted: Some(unquoted),
        }));
    }
    let mut args = Vec::new();
    let mut start = None;
    for (i, b) in line.iter().enumerate() {
        match (b.is_ascii_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                args.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        args.push((s, end));
    }
    if args.len() > limits.max_args {
        return Err(protocol("too many arguments in inline request"));
    }
    Ok(Some(Request {
        len: newline + 1,
        args,
        oversize: None,
        unquoted: None,
    }))
}

/// Where parsing goes on after the closing quote at `quote`, which must be
/// followed by a space or the end of the line.
fn after_closing_quote(line: &[u8], quote: usize) -> Result<usize, ProtocolError> {
    if line
        .get(quote + 1)
        .is_some_and(|n| !n.is_ascii_whitespace())
    {
        return Err(protocol("unbalanced quotes in request"));
    }
    Ok(quote + 1)
}

/// Splits an inline command line with quotes as Redis does (its
/// `sdssplitargs`): in double quotes `\n`, `\r`, `\t`, `\b`, `\a`,
/// `\xHH` and `\<any>` are escapes; in single quotes only `\'`; a closing
/// quote must be followed by a space or the end of the line.
fn split_quoted(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let unbalanced = || protocol("unbalanced quotes in request");
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        let (mut double, mut single) = (false, false);
        loop {
            let Some(&c) = line.get(i) else {
                if double || single {
                    return Err(unbalanced());
                }
                break;
            };
            if double {
                match c {
                    b'\\'
                        if line.get(i + 1) == Some(&b'x')
                            && line.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
                            && line.get(i + 3).is_some_and(u8::is_ascii_hexdigit) =>
                    {
                        let hex = std::str::from_utf8(&line[i + 2..i + 4]).expect("hex digits");
                        arg.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                        i += 3;
                    }
                    b'\\' if i + 1 < line.len() => {
                        i += 1;
                        arg.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    b'"' => {
                        i = after_closing_quote(line, i)?;
                        break;
                    }
                    other => arg.push(other),
                }
            } else if single {
                match c {
                    b'\\' if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        arg.push(b'\'');
                    }
                    b'\'' => {
                        i = after_closing_quote(line, i)?;
                        break;
                    }
                    other => arg.push(other),
                }
            } else {
                match c {
                    c if c.is_ascii_whitespace() => break,
                    b'"' => double = true,
                    b'\'' => single = true,
                    other => arg.push(other),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(arg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bulk: 1024,
        max_args: 16,
        max_inline: 1024,
    };

    fn parse_all(bytes: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(request) = check(&buf, &LIMITS)? {
            out.push(take(&mut buf, request));
        }
        Ok(out)
    }

    fn args(parts: &[&str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn arrays_of_bulk_strings_and_inline_commands() {
        let parsed = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n  ECHO  hi \n").unwrap();
        assert_eq!(
            parsed,
            vec![args(&["GET", "k"]), args(&["PING"]), args(&["ECHO", "hi"])]
        );
    }

    #[test]
    fn every_split_point_waits_for_more_bytes() {
        let whole = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n";
        for cut in 0..whole.len() {
            assert!(
                check(&whole[..cut], &LIMITS).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_all(whole).unwrap(),
            vec![args(&["SET", "key", "va\r\nl"])]
        );
    }

    #[test]
    fn malformed_frames_are_protocol_errors() {
        for bad in [
            &b"*1\r\n+PING\r\n"[..],
            b"*x\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$2\r\nabc\r\n",
            b"*99\r\n",
            b"*1\r\n$999999999999\r\n",
            b"*1\r\n$1\r\na\r\r",
        ] {
            assert!(
                parse_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn replies_encode_per_protocol() {
        let encode = |frame: Frame, resp3| {
            let mut out = BytesMut::new();
            frame.encode(&mut out, resp3);
            out
        };
        assert_eq!(encode(Frame::Null, false), &b"$-1\r\n"[..]);
        assert_eq!(encode(Frame::Null, true), &b"_\r\n"[..]);
        assert_eq!(encode(Frame::NullArray, false), &b"*-1\r\n"[..]);
        assert_eq!(encode(Frame::NullArray, true), &b"_\r\n"[..]);
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        assert_eq!(encode(map.clone(), false), &b"*2\r\n$1\r\na\r\n:1\r\n"[..]);
        assert_eq!(encode(map, true), &b"%1\r\n$1\r\na\r\n:1\r\n"[..]);
        assert_eq!(encode(Frame::Double(2.5), false), &b"$3\r\n2.5\r\n"[..]);
        assert_eq!(encode(Frame::Double(f64::INFINITY), true), &b",inf\r\n"[..]);
        let pairs = Frame::Pairs(vec![(Frame::bulk("m"), Frame::Double(1.0))]);
        assert_eq!(
            encode(pairs.clone(), false),
            &b"*2\r\n$1\r\nm\r\n$1\r\n1\r\n"[..]
        );
        assert_eq!(encode(pairs, true), &b"*1\r\n*2\r\n$1\r\nm\r\n,1\r\n"[..]);
        assert_eq!(
            encode(Frame::error("ERR x\r\ny"), false),
            &b"-ERR x  y\r\n"[..]
        );
    }

    mod properties {
        use super::*;
        use proptest::{collection::vec, prelude::*};

        fn encode_request(args: &[Vec<u8>]) -> Vec<u8> {
            let mut out = BytesMut::new();
            Frame::Array(
                args.iter()
                    .map(|a| Frame::Bulk(Bytes::copy_from_slice(a)))
                    .collect(),
            )
            .encode(&mut out, false);
            out.to_vec()
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
                let _ = parse_all(&bytes);
            }

            #[test]
            fn arbitrary_bytes_after_a_header_never_panic(
                header in prop_oneof![Just(&b"*"[..]), Just(&b"*2\r\n$"[..]), Just(&b"*1\r\n$3\r\n"[..])],
                tail in vec(any::<u8>(), 0..64),
            ) {
                let mut bytes = header.to_vec();
                bytes.extend(tail);
                let _ = parse_all(&bytes);
            }

            #[test]
            fn valid_requests_round_trip_through_any_split(
                requests in vec(vec(vec(any::<u8>(), 0..48), 1..6), 1..4),
                split in any::<prop::sample::Index>(),
            ) {
                let wire: Vec<u8> = requests.iter().flat_map(|r| encode_request(r)).collect();
                let expected: Vec<Vec<Bytes>> = requests
                    .iter()
                    .map(|r| r.iter().map(|a| Bytes::copy_from_slice(a)).collect())
                    .collect();
                prop_assert_eq!(parse_all(&wire).unwrap(), expected.clone());

                // Fed in two pieces, as a socket might deliver it.
                let cut = split.index(wire.len() + 1);
                let mut buf = BytesMut::from(&wire[..cut]);
                let mut parsed = Vec::new();
                while let Some(request) = check(&buf, &LIMITS).unwrap() {
                    parsed.push(take(&mut buf, request));
                }
                buf.extend_from_slice(&wire[cut..]);
                while let Some(request) = check(&buf, &LIMITS).unwrap() {
                    parsed.push(take(&mut buf, request));
                }
                prop_assert!(buf.is_empty());
                prop_assert_eq!(parsed, expected);
            }
        }
    }
    #[test]
    fn an_oversize_bulk_string_is_marked_for_discarding_with_what_follows() {
        let buf = b"*3\r\n$3\r\nSET\r\n$2000\r\nxx";
        let request = check(buf, &LIMITS).unwrap().expect("the header is enough");
        assert_eq!(
            request.oversize(),
            Some(Oversize {
                len: 2000,
                body: 2002,
                // The third argument, after it.
                args_left: 1,
            })
        );
        // Everything up to the oversize body is the request's.
        assert_eq!(request.len(), b"*3\r\n$3\r\nSET\r\n$2000\r\n".len());
        let too_big = format!("*1\r\n${}\r\n", DISCARD_BULK_LIMIT + 1);
        assert!(check(too_big.as_bytes(), &LIMITS).is_err());
        assert_eq!(bulk_header(b"$5\r\nhello", &LIMITS), Ok(Some((5, 4))));
        assert_eq!(bulk_header(b"$5", &LIMITS), Ok(None));
    }
    #[test]
    fn inline_quotes_split_as_redis_does() {
        assert_eq!(
            parse_all(b"SET \"a b\" 'c d'\r\n").unwrap(),
            vec![args(&["SET", "a b", "c d"])]
        );
        assert_eq!(
            parse_all(b"SET k \"\\x41\\n\\\"\" 'it\\'s'\r\n").unwrap(),
            vec![args(&["SET", "k", "A\n\"", "it's"])]
        );
        for bad in [
            &b"set \"\"\"k\"\"\" v\r\n"[..],
            b"SET \"a\r\n",
            b"SET 'a'b\r\n",
        ] {
            assert_eq!(
                parse_all(bad),
                Err(protocol("unbalanced quotes in request")),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn non_numeric_lengths_say_which_length() {
        assert_eq!(
            parse_all(b"*x\r\n"),
            Err(protocol("invalid multibulk length"))
        );
        assert_eq!(
            parse_all(b"*1\r\n$x\r\n"),
            Err(protocol("invalid bulk length"))
        );
    }
}
