//! Sign-in primitives of the reference server: passwords (Argon2id), TOTP (RFC 6238) and
//! Temporary Access Pass secrets. Secrets are compared in constant time and never logged.

use crate::store::StoreError;
use ring::rand::SecureRandom as _;

/// The alphabet of pass secrets: 32 letters and digits without look-alikes (no 0/O, 1/I/L),
/// so each character carries 5 bits.
const TAP_ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789#";

/// A fresh pass secret of `length` characters (24 carry 120 bits).
pub fn tap_secret(length: u8) -> Result<String, StoreError> {
    let mut random = vec![0u8; usize::from(length)];
    ring::rand::SystemRandom::new().fill(&mut random).map_err(|_| StoreError::Random)?;
    Ok(random.iter().filter_map(|b| TAP_ALPHABET.get(usize::from(b & 31))).map(|c| char::from(*c)).collect())
}

/// Normalises what a user typed as a pass: spaces and dashes dropped, upper case.
pub fn normalise_tap(typed: &str) -> String {
    typed.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_uppercase).collect()
}

/// Hashes a password with Argon2id and a random salt, in PHC string format.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut salt).map_err(|_| "no random source".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches a PHC hash from [`hash_password`]; a malformed hash never
/// matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    PasswordHash::new(phc)
        .is_ok_and(|hash| argon2::Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A TOTP secret (RFC 6238: HMAC-SHA-1, 30-second steps, 6 digits).
pub struct Totp {
    key: Vec<u8>,
}

/// Time steps accepted on either side of now, for clock drift.
const TOTP_DRIFT_STEPS: i64 = 1;

impl Totp {
    /// A TOTP with this shared secret.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// A fresh 160-bit secret.
    pub fn generate() -> Result<Self, StoreError> {
        let mut key = vec![0u8; 20];
        ring::rand::SystemRandom::new().fill(&mut key).map_err(|_| StoreError::Random)?;
        Ok(Self { key })
    }

    /// The secret in base32 (RFC 4648, no padding), as authenticator apps take it.
    pub fn secret_base32(&self) -> String {
        base32(&self.key)
    }

    /// The `otpauth://` URI for a QR code.
    pub fn uri(&self, issuer: &str, account: &str) -> String {
        let enc = regain_core::openid4vp::percent_encode;
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}",
            enc(issuer),
            enc(account),
            self.secret_base32(),
            enc(issuer)
        )
    }

    /// The code for time step `step` (Unix seconds / 30), with `digits` digits.
    pub fn code_at_step(&self, step: u64, digits: u32) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.key);
        let mac = ring::hmac::sign(&key, &step.to_be_bytes());
        let mac = mac.as_ref();
        let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
        let word = mac
            .get(offset..offset + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| u32::from_be_bytes(b) & 0x7fff_ffff);
        let modulus = 10u32.saturating_pow(digits);
        format!("{:0width$}", word % modulus, width = usize::try_from(digits).unwrap_or(6))
    }

    /// The time step a code typed at `now` matches, within the drift window; the caller
    /// stores it and refuses any step at or before it next time (no replay).
    pub fn verify(&self, code: &str, now: i64) -> Option<u64> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let step = now.div_euclid(30);
        (step - TOTP_DRIFT_STEPS..=step + TOTP_DRIFT_STEPS)
            .filter_map(|s| u64::try_from(s).ok())
            .find(|&s| regain_core::secret::constant_time_eq(self.code_at_step(s, 6).as_bytes(), code.as_bytes()))
    }
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.extend(ALPHABET.get(((buffer >> bits) & 31) as usize).map(|c| char::from(*c)));
        }
    }
    if bits > 0 {
        out.extend(ALPHABET.get(((buffer << (5 - bits)) & 31) as usize).map(|c| char::from(*c)));
    }
    out
}

/// RFC 4648 base32 without padding (authenticator app keys); `None` when malformed or empty.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.trim().trim_end_matches('=').bytes() {
        let value = match c.to_ascii_uppercase() {
            u @ b'A'..=b'Z' => u - b'A',
            d @ b'2'..=b'7' => d - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_the_rfc_6238_vectors() {
        // RFC 6238 Appendix B, SHA-1, 8 digits, secret "12345678901234567890".
        let totp = Totp::new(b"12345678901234567890");
        for (time, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.code_at_step(time / 30, 8), code, "T = {time}");
        }
    }

    #[test]
    fn totp_accepts_one_step_of_drift_and_nothing_else() {
        let totp = Totp::new(b"12345678901234567890");
        let now = 1_234_567_890;
        let code = totp.code_at_step(u64::try_from(now / 30).unwrap(), 6);
        assert_eq!(totp.verify(&code, now), Some(u64::try_from(now / 30).unwrap()));
        assert!(totp.verify(&code, now + 30).is_some(), "one step late");
        assert!(totp.verify(&code, now + 90).is_none(), "three steps late");
        assert!(totp.verify("12345", now).is_none());
        assert!(totp.verify("abcdef", now).is_none());
        assert_eq!(Totp::new(b"foobar").secret_base32(), "MZXW6YTBOI", "RFC 4648 §10");
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapler", &phc));
        assert!(!verify_password("anything", "not a hash"));
        assert_ne!(hash_password("same").unwrap(), hash_password("same").unwrap(), "salted");
    }

    #[test]
    fn pass_secrets_carry_120_bits_and_normalise() {
        let secret = tap_secret(24).unwrap();
        assert_eq!(secret.len(), 24);
        assert!(secret.bytes().all(|b| TAP_ALPHABET.contains(&b)));
        assert_ne!(secret, tap_secret(24).unwrap());
        assert_eq!(normalise_tap(" abcd-efgh jk "), "ABCDEFGHJK");
    }
}
