//! The state blob carried between the HTTP requests of one flow.
//!
//! Layout (version 1), all integers big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `RGN\0` |
//! | 1 | version, `1` |
//! | 16 | flow id |
//! | 8 | start time, seconds since the Unix epoch |
//! | 1 | stage |
//! | 1 | `0` no user, `1` user id follows |
//! | 2 + n | user id length and UTF-8 bytes, when present |
//!
//! The host stores the blob server-side and binds it to the browser session; the blob is
//! parsed strictly (no trailing bytes, bounded size) so that a corrupted or foreign blob is
//! refused with a clear error instead of being half-understood.

use crate::env::Entropy;
use std::fmt;

const MAGIC: [u8; 4] = *b"RGN\0";
const VERSION: u8 = 1;

/// Largest state blob accepted or produced, in bytes.
pub const MAX_STATE_BYTES: usize = 16 * 1024;

/// Identifier of one recovery attempt: 128 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId([u8; 16]);

impl FlowId {
    /// Draws a fresh identifier.
    pub fn random(entropy: &mut impl Entropy) -> Self {
        let mut bytes = [0u8; 16];
        entropy.fill(&mut bytes);
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlowId({self})")
    }
}

/// How far a flow has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The login was looked up in the directory.
    AccountLookedUp,
}

impl Stage {
    fn code(self) -> u8 {
        match self {
            Self::AccountLookedUp => 1,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::AccountLookedUp),
            _ => None,
        }
    }
}

/// The decoded state of one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowState {
    /// The attempt.
    pub flow_id: FlowId,
    /// When it started, seconds since the Unix epoch.
    pub started_at: u64,
    /// How far it has come.
    pub stage: Stage,
    /// The directory user, when the login was found.
    pub user_id: Option<String>,
}

/// Why a state blob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The blob does not start with the Regain magic bytes.
    #[error("state is not a regain flow state")]
    NotAState,
    /// The blob was written by another version of the plugin.
    #[error("state has version {0}, this plugin reads version {VERSION}")]
    UnsupportedVersion(u8),
    /// The blob ends before its last field.
    #[error("state is truncated")]
    Truncated,
    /// The blob has bytes after its last field.
    #[error("state has {0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// A field holds a value no plugin writes.
    #[error("state field `{0}` is invalid")]
    InvalidField(&'static str),
    /// The blob is larger than [`MAX_STATE_BYTES`].
    #[error("state is larger than {MAX_STATE_BYTES} bytes")]
    TooLarge,
}

impl FlowState {
    /// Serialises the state.
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(self.flow_id.as_bytes());
        out.extend_from_slice(&self.started_at.to_be_bytes());
        out.push(self.stage.code());
        match &self.user_id {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                let len = u16::try_from(id.len()).map_err(|_| StateError::TooLarge)?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(id.as_bytes());
            }
        }
        if out.len() > MAX_STATE_BYTES {
            return Err(StateError::TooLarge);
        }
        Ok(out)
    }

    /// Parses a blob produced by [`FlowState::encode`].
    pub fn decode(blob: &[u8]) -> Result<Self, StateError> {
        if blob.len() > MAX_STATE_BYTES {
            return Err(StateError::TooLarge);
        }
        let mut r = Reader(blob);
        if r.take::<4>().map_err(|_| StateError::NotAState)? != MAGIC {
            return Err(StateError::NotAState);
        }
        let [version] = r.take::<1>()?;
        if version != VERSION {
            return Err(StateError::UnsupportedVersion(version));
        }
        let flow_id = FlowId(r.take::<16>()?);
        let started_at = u64::from_be_bytes(r.take::<8>()?);
        let [stage] = r.take::<1>()?;
        let stage = Stage::from_code(stage).ok_or(StateError::InvalidField("stage"))?;
        let user_id = match r.take::<1>()? {
            [0] => None,
            [1] => {
                let len = usize::from(u16::from_be_bytes(r.take::<2>()?));
                let bytes = r.take_slice(len)?;
                let id = std::str::from_utf8(bytes).map_err(|_| StateError::InvalidField("user id"))?;
                Some(id.to_owned())
            }
            _ => return Err(StateError::InvalidField("user presence")),
        };
        if !r.0.is_empty() {
            return Err(StateError::TrailingBytes(r.0.len()));
        }
        Ok(Self { flow_id, started_at, stage, user_id })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take_slice(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.0.len() < n {
            return Err(StateError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let slice = self.take_slice(N)?;
        <[u8; N]>::try_from(slice).map_err(|_| StateError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(user_id: Option<&str>) -> FlowState {
        FlowState {
            flow_id: FlowId([7; 16]),
            started_at: 1_790_000_000,
            stage: Stage::AccountLookedUp,
            user_id: user_id.map(str::to_owned),
        }
    }

    #[test]
    fn round_trips_with_and_without_user() {
        for state in [sample(None), sample(Some("u-1")), sample(Some("ünïcødé"))] {
            let blob = state.encode().unwrap();
            assert_eq!(FlowState::decode(&blob).unwrap(), state);
        }
    }

    #[test]
    fn refuses_every_truncation() {
        let blob = sample(Some("user-42")).encode().unwrap();
        for len in 0..blob.len() {
            let err = FlowState::decode(&blob[..len]).unwrap_err();
            assert!(matches!(err, StateError::Truncated | StateError::NotAState), "prefix of {len} bytes gave {err:?}");
        }
    }

    #[test]
    fn refuses_foreign_versioned_trailing_and_oversized_blobs() {
        let blob = sample(None).encode().unwrap();
        assert_eq!(FlowState::decode(b"{\"json\":true}"), Err(StateError::NotAState));

        let mut other_version = blob.clone();
        other_version[4] = 9;
        assert_eq!(FlowState::decode(&other_version), Err(StateError::UnsupportedVersion(9)));

        let mut trailing = blob.clone();
        trailing.extend_from_slice(b"xx");
        assert_eq!(FlowState::decode(&trailing), Err(StateError::TrailingBytes(2)));

        let mut bad_stage = blob.clone();
        bad_stage[29] = 200;
        assert_eq!(FlowState::decode(&bad_stage), Err(StateError::InvalidField("stage")));

        assert_eq!(FlowState::decode(&vec![0; MAX_STATE_BYTES + 1]), Err(StateError::TooLarge));
    }

    #[test]
    fn flow_id_prints_as_hex() {
        assert_eq!(FlowId([0xab; 16]).to_string(), "ab".repeat(16));
    }
}
