//! The login a recovery starts from.

use std::fmt;

/// Longest login accepted, in bytes. An e-mail address is at most 254 bytes (RFC 5321).
pub const MAX_LOGIN_BYTES: usize = 256;

/// A login as typed by the user, parsed once: surrounding white space removed, not empty,
/// at most [`MAX_LOGIN_BYTES`] bytes, no control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Login(String);

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLogin {
    /// Nothing but white space was given.
    #[error("login is empty")]
    Empty,
    /// The login is longer than [`MAX_LOGIN_BYTES`].
    #[error("login is longer than {MAX_LOGIN_BYTES} bytes")]
    TooLong,
    /// The login contains a control character (newline, NUL, escape...).
    #[error("login contains a control character")]
    ControlCharacter,
}

impl Login {
    /// Parses a login typed by a user.
    pub fn parse(raw: &str) -> Result<Self, InvalidLogin> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidLogin::Empty);
        }
        if trimmed.len() > MAX_LOGIN_BYTES {
            return Err(InvalidLogin::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(InvalidLogin::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The login as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Logins are personal data: debug output shows only their length.
impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Login(<{} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_keeps_inner_text() {
        assert_eq!(Login::parse("  ana@example.org\t").unwrap().as_str(), "ana@example.org");
    }

    #[test]
    fn refuses_empty_long_and_control() {
        assert_eq!(Login::parse(" \n "), Err(InvalidLogin::Empty));
        assert_eq!(Login::parse(&"a".repeat(MAX_LOGIN_BYTES + 1)), Err(InvalidLogin::TooLong));
        assert!(Login::parse(&"a".repeat(MAX_LOGIN_BYTES)).is_ok());
        assert_eq!(Login::parse("ana\u{0}bob"), Err(InvalidLogin::ControlCharacter));
        assert_eq!(Login::parse("ana\nbob"), Err(InvalidLogin::ControlCharacter));
    }

    #[test]
    fn debug_output_hides_the_login() {
        let login = Login::parse("ana@example.org").unwrap();
        assert_eq!(format!("{login:?}"), "Login(<15 bytes>)");
    }
}
