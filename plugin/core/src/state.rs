//! The state blob carried between the HTTP requests of one flow.
//!
//! Layout: the magic bytes `RGN\0`, a version byte (`2`), then the state as JSON. The host
//! stores the blob server-side, bound to the browser session, and hands it back; it is parsed
//! strictly (unknown fields refused, bounded size) so that a corrupted or foreign blob is
//! refused with a clear error instead of being half-understood. The blob holds personal data
//! (the login, the portrait while the selfie is taken): hosts store it like the rest of the
//! session and delete it when the flow ends.

use crate::env::Entropy;
use serde::{Deserialize, Serialize};
use std::fmt;

const MAGIC: [u8; 4] = *b"RGN\0";
const VERSION: u8 = 2;

/// Largest state blob accepted or produced, in bytes (room for a portrait).
pub const MAX_STATE_BYTES: usize = 320 * 1024;

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

    /// Parses the 32 hex digits of [`FlowId`]'s display form.
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// The reference code the user quotes to the helpdesk: `RG-` and 8 characters of
    /// Crockford base32 from the flow id (40 bits; the audit log maps it back).
    pub fn helpdesk_ref(&self) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let mut bits = self.0.iter().take(5).fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let mut code = [b'0'; 8];
        for slot in code.iter_mut().rev() {
            *slot = ALPHABET.get((bits & 31) as usize).copied().unwrap_or(b'0');
            bits >>= 5;
        }
        format!("RG-{}", String::from_utf8_lossy(&code))
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// A presentation request is out; the wallet's response is awaited.
    AwaitingPresentation,
    /// Same-device: the presentation was verified; the browser must come back with the
    /// response code handed to the wallet.
    AwaitingResponseCode,
    /// The credential was verified and matched; the selfie is awaited.
    AwaitingSelfie,
    /// The flow ended; nothing more is accepted.
    Done,
}

/// The decoded state of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowState {
    /// The attempt, as 32 hex digits.
    pub flow: String,
    /// The deployment (`config-ref`) the flow runs under.
    pub deployment: String,
    /// When it started, seconds since the Unix epoch.
    pub started_at: u64,
    /// How far it has come.
    pub stage: Stage,
    /// The login as typed (normalised).
    pub login: String,
    /// The directory user, when the login was found.
    pub user_id: Option<String>,
    /// Why this flow cannot succeed, decided at the start and kept from the user.
    pub doomed: Option<String>,
    /// The provider the user was sent to.
    pub idv: String,
    /// Providers the host reported unavailable during this flow.
    pub unavailable: Vec<String>,
    /// The presentation request's nonce.
    pub nonce: String,
    /// The presentation request's `state`.
    pub vp_state: String,
    /// The client identifier, the expected key binding audience.
    pub client_id: String,
    /// The credential portrait, while the selfie is awaited.
    pub portrait: Option<String>,
    /// The account match reason code, once matched.
    pub match_reason: Option<String>,
    /// Whether the presentation was holder-bound.
    pub holder_bound: bool,
    /// The credential's issuer, once verified.
    pub issuer: Option<String>,
    /// The credential's type, once verified.
    pub vct: Option<String>,
    /// Whether the wallet runs on another device than the browser (no response code then).
    #[serde(default)]
    pub cross_device: bool,
    /// SHA-256 (base64url) of the single-use response code, while it is awaited.
    #[serde(default)]
    pub response_code_sha256: Option<String>,
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
    /// The blob's body is not a valid state.
    #[error("state is malformed: {0}")]
    Malformed(String),
    /// The blob is larger than [`MAX_STATE_BYTES`].
    #[error("state is larger than {MAX_STATE_BYTES} bytes")]
    TooLarge,
}

impl FlowState {
    /// Serialises the state.
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        serde_json::to_writer(&mut out, self).map_err(|e| StateError::Malformed(e.to_string()))?;
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
        let (magic, rest) = blob.split_first_chunk::<4>().ok_or(StateError::NotAState)?;
        if *magic != MAGIC {
            return Err(StateError::NotAState);
        }
        let (&version, body) = rest.split_first().ok_or(StateError::NotAState)?;
        if version != VERSION {
            return Err(StateError::UnsupportedVersion(version));
        }
        // Straight into the typed view: every field is a scalar, an option or a list, and the
        // derived visitor refuses a repeated field as it refuses an unknown one, so no map
        // can hide a duplicate. (A strict untyped parse first would copy the portrait twice.)
        let state: Self = serde_json::from_slice(body).map_err(|e| StateError::Malformed(e.to_string()))?;
        if FlowId::parse(&state.flow).is_none() {
            return Err(StateError::Malformed("flow id is not 32 hex digits".into()));
        }
        Ok(state)
    }

    /// The flow id.
    pub fn flow_id(&self) -> FlowId {
        FlowId::parse(&self.flow).unwrap_or(FlowId([0; 16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlowState {
        FlowState {
            flow: FlowId([7; 16]).to_string(),
            deployment: "default".into(),
            started_at: 1_790_000_000,
            stage: Stage::AwaitingPresentation,
            login: "ana@example.org".into(),
            user_id: Some("u-1".into()),
            doomed: None,
            idv: "dev-idv".into(),
            unavailable: vec![],
            nonce: "n".into(),
            cross_device: false,
            response_code_sha256: None,
            vp_state: "s".into(),
            client_id: "redirect_uri:https://r".into(),
            portrait: None,
            match_reason: None,
            holder_bound: false,
            issuer: None,
            vct: None,
        }
    }

    #[test]
    fn round_trips() {
        let blob = sample().encode().unwrap();
        assert_eq!(&blob[..5], b"RGN\0\x02");
        assert_eq!(FlowState::decode(&blob).unwrap(), sample());
    }

    #[test]
    fn refuses_foreign_truncated_versioned_and_oversized_blobs() {
        let blob = sample().encode().unwrap();
        assert_eq!(FlowState::decode(b"{\"json\":true}"), Err(StateError::NotAState));
        assert_eq!(FlowState::decode(b"RGN"), Err(StateError::NotAState));
        let mut v1 = blob.clone();
        v1[4] = 1;
        assert_eq!(FlowState::decode(&v1), Err(StateError::UnsupportedVersion(1)));
        for cut in [6, blob.len() / 2, blob.len() - 1] {
            assert!(matches!(FlowState::decode(&blob[..cut]), Err(StateError::Malformed(_))), "cut at {cut}");
        }
        let extra = String::from_utf8(blob[5..].to_vec()).unwrap().replacen('{', "{\"admin\":true,", 1);
        let mut forged = b"RGN\0\x02".to_vec();
        forged.extend_from_slice(extra.as_bytes());
        assert!(matches!(FlowState::decode(&forged), Err(StateError::Malformed(m)) if m.contains("unknown field")));
        assert_eq!(FlowState::decode(&vec![0; MAX_STATE_BYTES + 1]), Err(StateError::TooLarge));
    }

    #[test]
    fn refuses_a_repeated_or_unknown_field() {
        let blob = sample().encode().unwrap();
        let body = std::str::from_utf8(&blob[5..]).unwrap();
        let with = |extra: &str| {
            let mut forged = blob[..5].to_vec();
            forged.extend_from_slice(format!("{{{extra},{}", &body[1..]).as_bytes());
            forged
        };
        let repeated = FlowState::decode(&with(r#""login":"mallory@example.com""#)).unwrap_err();
        assert!(repeated.to_string().contains("duplicate field `login`"), "{repeated}");
        let unknown = FlowState::decode(&with(r#""admin":true"#)).unwrap_err();
        assert!(unknown.to_string().contains("unknown field `admin`"), "{unknown}");
    }

    #[test]
    fn flow_ids_print_parse_and_give_helpdesk_codes() {
        let id = FlowId([0xab; 16]);
        assert_eq!(FlowId::parse(&id.to_string()), Some(id));
        assert_eq!(FlowId::parse("xyz"), None);
        let code = FlowId([0; 16]).helpdesk_ref();
        assert_eq!(code, "RG-00000000");
        assert_eq!(FlowId([0xff; 16]).helpdesk_ref(), "RG-ZZZZZZZZ");
    }
}
