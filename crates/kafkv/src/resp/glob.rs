//! Redis's glob-style patterns (`KEYS`, `SCAN MATCH`, `CONFIG GET`) over raw
//! bytes: `*` any run, `?` any byte, `[abc]`, `[^a]`, `[a-z]` classes, and `\`
//! to escape the next byte.

/// Most `*` runs before the pattern's last byte that Redis follows: its
/// matcher recurses once per run and gives up (no match) past 1,000.
const MAX_STAR_RUNS: usize = 1000;

/// Whether `text` matches `pattern` in full.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    if inner_star_runs(pattern) > MAX_STAR_RUNS {
        return false;
    }
    // Iterative with one backtrack point for the most recent `*`: linear in
    // practice and never recursive, so no pattern can exhaust the stack.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        // An unterminated class is a literal '['.
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                literal => {
                    if literal == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((star_p, star_t)) => {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

/// Runs of unescaped `*` outside classes, not counting one that ends the
/// pattern (Redis matches a trailing `*` without recursing).
fn inner_star_runs(pattern: &[u8]) -> usize {
    let mut runs = 0;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' => i += 2,
            b'[' => i = class(pattern, i, 0).map_or(i + 1, |(_, next)| next),
            b'*' => {
                while pattern.get(i) == Some(&b'*') {
                    i += 1;
                }
                if i < pattern.len() {
                    runs += 1;
                }
            }
            _ => i += 1,
        }
    }
    runs
}

/// Matches `byte` against the class starting at `pattern[open] == '['`;
/// returns whether it matched and the index after the closing `]`, or `None`
/// if the class is not terminated.
fn class(pattern: &[u8], open: usize, byte: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let c = *pattern.get(i)?;
        if c == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let c = if c == b'\\' {
            i += 1;
            *pattern.get(i)?
        } else {
            c
        };
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|e| *e != b']') {
            let end = pattern[i + 2];
            let (low, high) = if c <= end { (c, end) } else { (end, c) };
            matched |= (low..=high).contains(&byte);
            i += 3;
        } else {
            matched |= c == byte;
            i += 1;
        }
    }
}

/// The literal bytes a pattern's matches must start with, for a prefix scan.
pub fn literal_prefix(pattern: &[u8]) -> Vec<u8> {
    let mut prefix = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'*' | b'?' | b'[' => break,
            b'\\' if i + 1 < pattern.len() => {
                prefix.push(pattern[i + 1]);
                i += 2;
            }
            b => {
                prefix.push(b);
                i += 1;
            }
        }
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_glob_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:email", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("[", "[", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                matches(pattern.as_bytes(), text.as_bytes()),
                *expected,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn more_than_a_thousand_inner_star_runs_match_nothing_as_in_redis() {
        let text = vec![b'a'; 2000];
        let within = "*?".repeat(MAX_STAR_RUNS);
        assert!(matches(within.as_bytes(), &text));
        let beyond = "*?".repeat(MAX_STAR_RUNS + 1);
        assert!(!matches(beyond.as_bytes(), &text));
        // A trailing run and escaped or classed stars do not count.
        let trailing = format!("{}*", "*?".repeat(MAX_STAR_RUNS));
        assert!(matches(trailing.as_bytes(), &text));
        let escaped = format!("{}{}", "*?".repeat(MAX_STAR_RUNS), "\\*".repeat(5));
        let stars = [&text[..], b"*****"].concat();
        assert!(matches(escaped.as_bytes(), &stars));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix(b"user:*"), b"user:");
        assert_eq!(literal_prefix(b"a\\*b*"), b"a*b");
        assert_eq!(literal_prefix(b"*"), b"");
    }
}
