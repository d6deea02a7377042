//! The one audited place where secrets are compared.

/// Compares two byte strings in time that depends only on their lengths, not on where
/// they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares() {
        assert!(constant_time_eq(b"nonce-1", b"nonce-1"));
        assert!(!constant_time_eq(b"nonce-1", b"nonce-2"));
        assert!(!constant_time_eq(b"nonce", b"nonce-1"));
        assert!(constant_time_eq(b"", b""));
    }
}
