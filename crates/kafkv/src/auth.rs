//! The shared secret of `--auth-token`, checked the same way by every front end.

/// Whether `presented` is the configured token. The comparison does not stop
/// at the first differing byte, so timing does not reveal how much matched.
pub fn token_matches(expected: &str, presented: &[u8]) -> bool {
    let expected = expected.as_bytes();
    expected.len() == presented.len()
        && expected
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn only_the_exact_token_matches() {
        assert!(token_matches("s3cret", b"s3cret"));
        assert!(!token_matches("s3cret", b"s3cres"));
        assert!(!token_matches("s3cret", b"s3cret!"));
        assert!(!token_matches("s3cret", b""));
    }
}
