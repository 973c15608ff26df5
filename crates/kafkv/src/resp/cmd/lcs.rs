//! `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`: the longest
//! common subsequence of two values (a missing key is the empty string), its
//! length, or the matching ranges, with Redis 7's replies.

use super::{Args, Frame, Kind, Session, Spec};
use crate::resp::parse::syntax_error;

pub const SPECS: &[Spec] = &[Spec {
    name: "lcs",
    arity: -3,
    flags: &["readonly"],
    kind: Kind::Read,
    before_auth: false,
}];

/// Largest table an LCS may build. Redis bounds it by proto-max-bulk-len
/// (512 MB); kafkv bounds it lower because the table is filled on a RESP
/// thread that other connections share: 64 MiB (4,096-byte values) fills in
/// tens of milliseconds.
const MAX_TABLE_BYTES: usize = 64 << 20;

pub struct Lcs {
    keys: [bytes::Bytes; 2],
    len_only: bool,
    ranges: bool,
    min_match_len: usize,
    with_match_len: bool,
}

impl Lcs {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let keys = [args.bytes()?, args.bytes()?];
        let mut lcs = Self {
            keys,
            len_only: false,
            ranges: false,
            min_match_len: 0,
            with_match_len: false,
        };
        while let Some(option) = args.optional() {
            match option.to_ascii_uppercase().as_slice() {
                b"LEN" => lcs.len_only = true,
                b"IDX" => lcs.ranges = true,
                b"WITHMATCHLEN" => lcs.with_match_len = true,
                b"MINMATCHLEN" if args.remaining() > 0 => {
                    lcs.min_match_len = args.integer()?.max(0) as usize;
                }
                _ => return Err(syntax_error()),
            }
        }
        if lcs.len_only && lcs.ranges {
            return Err(Frame::error(
                "ERR If you want both the length and indexes, please just use IDX.",
            ));
        }
        Ok(lcs)
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let values = match super::values(session, &self.keys) {
            Ok(values) => values,
            Err(reply) => return reply,
        };
        if values.iter().flatten().any(|found| !found.is_string()) {
            return super::wrong_type();
        }
        let [a, b] = [&values[0], &values[1]].map(|v| v.as_ref().map(|f| f.value.clone()));
        let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
        let cells = (a.len() + 1).saturating_mul(b.len() + 1);
        if cells.saturating_mul(size_of::<u32>()) > MAX_TABLE_BYTES {
            return Frame::error(format!(
                "ERR Insufficient memory, transient memory for LCS exceeds kafkv's bound of {} \
                 MiB: (len1 + 1) x (len2 + 1) x 4 bytes must stay under it",
                MAX_TABLE_BYTES >> 20
            ));
        }
        let table = Table::new(&a, &b);
        if self.len_only {
            return Frame::Integer(table.len().into());
        }
        let (common, matches) = table.walk_back(&a, &b);
        if !self.ranges {
            return Frame::bulk(common);
        }
        let matches = matches
            .into_iter()
            .filter(|m| self.min_match_len == 0 || m.len() >= self.min_match_len)
            .map(|m| {
                let range = |(start, end): (usize, usize)| {
                    Frame::Array(vec![
                        Frame::Integer(start as i64),
                        Frame::Integer(end as i64),
                    ])
                };
                let mut reply = vec![range(m.a), range(m.b)];
                if self.with_match_len {
                    reply.push(Frame::Integer(m.len() as i64));
                }
                Frame::Array(reply)
            })
            .collect();
        Frame::Map(vec![
            (Frame::bulk("matches"), Frame::Array(matches)),
            (Frame::bulk("len"), Frame::Integer(table.len().into())),
        ])
    }
}

/// `len[i][j]`: the LCS length of `a[..i]` and `b[..j]`.
struct Table {
    width: usize,
    len: Vec<u32>,
}

/// One run of consecutive matching bytes: inclusive ranges in each value.
#[derive(Debug, PartialEq)]
struct Match {
    a: (usize, usize),
    b: (usize, usize),
}

impl Match {
    fn len(&self) -> usize {
        self.a.1 - self.a.0 + 1
    }
}

impl Table {
    fn new(a: &[u8], b: &[u8]) -> Self {
        let width = b.len() + 1;
        let mut len = vec![0u32; (a.len() + 1) * width];
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                len[i * width + j] = if a[i - 1] == b[j - 1] {
                    len[(i - 1) * width + j - 1] + 1
                } else {
                    len[(i - 1) * width + j].max(len[i * width + j - 1])
                };
            }
        }
        Self { width, len }
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.len[i * self.width + j]
    }

    fn len(&self) -> u32 {
        *self.len.last().expect("at least one cell")
    }

    /// The common subsequence, and its runs from the end of the values
    /// backwards, walking the table the way Redis does (on a tie, step back
    /// in `b`), so the ranges are the ones Redis reports.
    fn walk_back(&self, a: &[u8], b: &[u8]) -> (Vec<u8>, Vec<Match>) {
        let mut common = Vec::with_capacity(self.len() as usize);
        let mut matches = Vec::new();
        let mut run: Option<Match> = None;
        let (mut i, mut j) = (a.len(), b.len());
        while i > 0 && j > 0 {
            if a[i - 1] == b[j - 1] {
                common.push(a[i - 1]);
                match &mut run {
                    // Still contiguous in both: extend the run backwards.
                    Some(m) if m.a.0 == i && m.b.0 == j => {
                        m.a.0 -= 1;
                        m.b.0 -= 1;
                    }
                    _ => {
                        matches.extend(run.take());
                        run = Some(Match {
                            a: (i - 1, i - 1),
                            b: (j - 1, j - 1),
                        });
                    }
                }
                i -= 1;
                j -= 1;
            } else {
                matches.extend(run.take());
                if self.at(i - 1, j) > self.at(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
            }
        }
        matches.extend(run);
        common.reverse();
        (common, matches)
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn common_subsequence_and_runs() {
        let (a, b) = (b"ohmytext", b"mynewtext");
        let table = Table::new(a, b);
        assert_eq!(table.len(), 6);
        let (common, matches) = table.walk_back(a, b);
        assert_eq!(common, b"mytext");
        // Redis's documented answer for these values: [4,7]/[5,8], [2,3]/[0,1].
        let ranges: Vec<_> = matches.iter().map(|m| (m.a, m.b, m.len())).collect();
        assert_eq!(ranges, [((4, 7), (5, 8), 4), ((2, 3), (0, 1), 2)]);
    }

    #[test]
    fn empty_values_have_an_empty_lcs() {
        let table = Table::new(b"", b"abc");
        assert_eq!(table.len(), 0);
        assert_eq!(table.walk_back(b"", b"abc"), (Vec::new(), Vec::new()));
    }
}
