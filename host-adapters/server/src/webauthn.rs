//! Passkeys (WebAuthn Level 2/3) for the relying party this server is: the options handed to
//! `navigator.credentials.create` / `get`, and the verification of what comes back
//! (registration, §7.1, and authentication, §7.2). Pure logic: the caller keeps challenges
//! (accepted once) and credentials in the store.
//!
//! INVARIANT: one algorithm only, ES256 (COSE `-7`) with a P-256 key; attestation `none` or
//! `packed` self-attestation, nothing that would need a certificate chain. Every parser is
//! bounded (sizes, nesting, item counts) and refuses instead of guessing.

use regain_core::jose::{b64url_decode, b64url_encode};
use regain_core::secret::constant_time_eq;
use ring::rand::SecureRandom as _;
use serde::Deserialize;
use serde_json::{Value, json};

/// How long a ceremony may take, in milliseconds (the hint given to the browser).
pub const TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// COSE algorithm identifier of ES256, the only one accepted.
pub const ES256: i64 = -7;

/// Largest accepted `clientDataJSON`.
const MAX_CLIENT_DATA: usize = 8 * 1024;
/// Largest accepted attestation object.
const MAX_ATTESTATION_OBJECT: usize = 16 * 1024;
/// Largest accepted authenticator data in an assertion.
const MAX_AUTHENTICATOR_DATA: usize = 8 * 1024;
/// Largest accepted signature; a DER ECDSA P-256 signature is at most 72 bytes.
const MAX_SIGNATURE: usize = 128;
/// Longest credential id (WebAuthn Level 3 §7.1 step 19).
const MAX_CREDENTIAL_ID: usize = 1023;
/// Longest user handle (§5.4.3).
pub const MAX_USER_HANDLE: usize = 64;

/// Authenticator data flags (§6.1).
const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

/// Why a ceremony was refused; the text is for the log, not for the user's page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebAuthnError {
    /// The issuer URL gives no origin and host.
    #[error("issuer `{0}` is not an http(s) URL with a host")]
    Issuer(String),
    /// A field is larger than accepted.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Its limit.
        limit: usize,
    },
    /// `clientDataJSON` is not the expected JSON object.
    #[error("client data is not valid: {0}")]
    ClientData(String),
    /// The ceremony type in the client data is not the expected one.
    #[error("client data type is `{found}`, expected `{expected}`")]
    WrongType {
        /// The expected type.
        expected: &'static str,
        /// What came.
        found: String,
    },
    /// The client data carries another challenge than the one issued.
    #[error("the challenge does not match the one issued")]
    ChallengeMismatch,
    /// The ceremony ran on another origin.
    #[error("origin `{0}` is not this relying party's origin")]
    OriginMismatch(String),
    /// The ceremony ran in a cross-origin frame.
    #[error("cross-origin ceremonies are refused")]
    CrossOrigin,
    /// CBOR that does not parse.
    #[error("malformed cbor: {0}")]
    Cbor(#[from] CborError),
    /// The attestation object is not the expected map.
    #[error("malformed attestation object: {0}")]
    AttestationObject(&'static str),
    /// The authenticator data ends early.
    #[error("authenticator data is truncated")]
    Truncated,
    /// The authenticator data is not well formed.
    #[error("malformed authenticator data: {0}")]
    AuthenticatorData(&'static str),
    /// The credential is scoped to another relying party.
    #[error("the rp id hash does not match `{0}`")]
    RpIdMismatch(String),
    /// The user-present flag is not set.
    #[error("the authenticator did not report user presence")]
    UserNotPresent,
    /// The backup flags contradict each other.
    #[error("backup state is set without backup eligibility")]
    BackupFlags,
    /// A registration without attested credential data.
    #[error("the authenticator data carries no attested credential")]
    NoAttestedCredential,
    /// A credential public key of an unsupported kind.
    #[error("unsupported credential public key: {0}")]
    UnsupportedKey(String),
    /// The key's coordinates are not a point of P-256.
    #[error("the credential public key is not a valid p-256 point")]
    InvalidKey,
    /// An attestation format this relying party does not accept.
    #[error("attestation format `{0}` is not supported")]
    UnsupportedAttestation(String),
    /// A `packed` statement from an attestation CA or ECDAA, which this RP does not assess.
    #[error("attestation with a certificate chain or ecdaa is not supported, only `none` and self-attestation")]
    CertifiedAttestation,
    /// An accepted attestation format with a statement that does not hold.
    #[error("invalid attestation statement: {0}")]
    AttestationStatement(&'static str),
    /// The signature does not verify with the credential's key.
    #[error("the signature does not verify")]
    BadSignature,
    /// The signature counter did not increase.
    #[error("signature counter went from {stored} to {received}: the authenticator may be cloned")]
    SignCountRegression {
        /// The stored counter.
        stored: u32,
        /// The counter in the assertion.
        received: u32,
    },
    /// The user id cannot be a user handle.
    #[error("user id is longer than {MAX_USER_HANDLE} bytes")]
    UserHandle,
    /// The system random generator failed.
    #[error("no random source")]
    Random,
}

/// This server as a WebAuthn relying party, derived from its issuer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// The RP ID: the issuer's host.
    pub id: String,
    /// The name browsers show.
    pub name: String,
    /// The issuer's origin (`scheme://host[:port]`), which client data must name exactly.
    pub origin: String,
}

impl RelyingParty {
    /// The relying party of the issuer `issuer` (`https://id.example.org/path`).
    pub fn from_issuer(issuer: &str) -> Result<Self, WebAuthnError> {
        let refuse = || WebAuthnError::Issuer(issuer.to_owned());
        let (scheme, rest) = issuer.split_once("://").ok_or_else(refuse)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => "443",
            "http" => "80",
            _ => return Err(refuse()),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default().to_ascii_lowercase();
        if authority.is_empty() || authority.contains('@') {
            return Err(refuse());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (inside, after) = v6.split_once(']').ok_or_else(refuse)?;
                (format!("[{inside}]"), after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.clone(), None),
            },
        };
        if host.is_empty() || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(refuse());
        }
        // Origins are serialised without the scheme's default port (HTML §7.5).
        let origin = match port.filter(|p| *p != default_port) {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        Ok(Self { name: host.clone(), id: host, origin })
    }

    fn id_hash(&self) -> ring::digest::Digest {
        ring::digest::digest(&ring::digest::SHA256, self.id.as_bytes())
    }
}

/// A fresh challenge: 32 random bytes.
pub fn new_challenge() -> Result<[u8; 32], WebAuthnError> {
    let mut challenge = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut challenge).map_err(|_| WebAuthnError::Random)?;
    Ok(challenge)
}

/// The account a passkey is created for.
#[derive(Debug, Clone, Copy)]
pub struct UserEntity<'a> {
    /// The user id; its bytes are the user handle.
    pub id: &'a str,
    /// The login.
    pub name: &'a str,
    /// The name shown to the user.
    pub display_name: &'a str,
}

/// `PublicKeyCredentialCreationOptionsJSON` (Level 3 §5.4) for `navigator.credentials.create`:
/// binary fields are base64url. `exclude` holds the user's credential ids (base64url), so
/// that an authenticator already registered is not registered twice.
pub fn creation_options(
    rp: &RelyingParty,
    challenge: &[u8],
    user: UserEntity<'_>,
    exclude: &[String],
) -> Result<Value, WebAuthnError> {
    if user.id.len() > MAX_USER_HANDLE {
        return Err(WebAuthnError::UserHandle);
    }
    let exclude: Vec<Value> = exclude.iter().map(|id| json!({ "type": "public-key", "id": id })).collect();
    Ok(json!({
        "challenge": b64url_encode(challenge),
        "rp": { "id": rp.id, "name": rp.name },
        "user": { "id": b64url_encode(user.id.as_bytes()), "name": user.name, "displayName": user.display_name },
        "pubKeyCredParams": [{ "type": "public-key", "alg": ES256 }],
        "timeout": TIMEOUT_MS,
        "excludeCredentials": exclude,
        "authenticatorSelection": {
            "residentKey": "preferred",
            "requireResidentKey": false,
            "userVerification": "preferred",
        },
        "attestation": "none",
    }))
}

/// `PublicKeyCredentialRequestOptionsJSON` for `navigator.credentials.get`. With no
/// `allow` list the authenticator offers its discoverable credentials for this RP.
pub fn request_options(rp: &RelyingParty, challenge: &[u8], allow: &[String]) -> Value {
    let mut options = json!({
        "challenge": b64url_encode(challenge),
        "rpId": rp.id,
        "timeout": TIMEOUT_MS,
        "userVerification": "preferred",
    });
    if !allow.is_empty()
        && let Some(map) = options.as_object_mut()
    {
        let allow: Vec<Value> = allow.iter().map(|id| json!({ "type": "public-key", "id": id })).collect();
        map.insert("allowCredentials".into(), Value::Array(allow));
    }
    options
}

/// How the new credential was attested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attestation {
    /// `none`: no statement.
    None,
    /// `packed` self-attestation: signed by the credential's own key.
    PackedSelf,
}

/// A credential that passed registration, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPasskey {
    /// The credential id.
    pub credential_id: Vec<u8>,
    /// The public key as an uncompressed SEC1 point (`0x04 || x || y`).
    pub public_key: Vec<u8>,
    /// The signature counter at creation.
    pub sign_count: u32,
    /// The authenticator model (zeros when not disclosed).
    pub aaguid: [u8; 16],
    /// The authenticator verified the user (PIN, biometrics).
    pub user_verified: bool,
    /// The credential may be synced to other devices.
    pub backup_eligible: bool,
    /// The attestation.
    pub attestation: Attestation,
}

/// What the client data of a ceremony must say.
#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
}

/// Steps 5-12 of §7.1 and 7-14 of §7.2: the client data names this ceremony, this
/// challenge and this origin. Returns SHA-256 of the client data.
fn check_client_data(
    rp: &RelyingParty,
    expected_type: &'static str,
    expected_challenge: &[u8],
    client_data_json: &[u8],
) -> Result<ring::digest::Digest, WebAuthnError> {
    if client_data_json.len() > MAX_CLIENT_DATA {
        return Err(WebAuthnError::TooLarge { what: "client data", limit: MAX_CLIENT_DATA });
    }
    let data: ClientData =
        serde_json::from_slice(client_data_json).map_err(|e| WebAuthnError::ClientData(e.to_string()))?;
    if data.kind != expected_type {
        return Err(WebAuthnError::WrongType { expected: expected_type, found: data.kind });
    }
    let challenge = b64url_decode(&data.challenge).ok_or(WebAuthnError::ChallengeMismatch)?;
    if !constant_time_eq(&challenge, expected_challenge) {
        return Err(WebAuthnError::ChallengeMismatch);
    }
    if data.origin != rp.origin {
        return Err(WebAuthnError::OriginMismatch(data.origin));
    }
    if data.cross_origin == Some(true) {
        return Err(WebAuthnError::CrossOrigin);
    }
    Ok(ring::digest::digest(&ring::digest::SHA256, client_data_json))
}

/// Verifies a registration (§7.1): the client data, the attestation object and its
/// authenticator data, the credential's key (ES256 on P-256 only) and the attestation
/// statement (`none`, or `packed` self-attestation).
pub fn verify_registration(
    rp: &RelyingParty,
    expected_challenge: &[u8],
    client_data_json: &[u8],
    attestation_object: &[u8],
) -> Result<NewPasskey, WebAuthnError> {
    let client_data_hash = check_client_data(rp, "webauthn.create", expected_challenge, client_data_json)?;
    if attestation_object.len() > MAX_ATTESTATION_OBJECT {
        return Err(WebAuthnError::TooLarge { what: "attestation object", limit: MAX_ATTESTATION_OBJECT });
    }
    let Cbor::Map(entries) = decode(attestation_object)? else {
        return Err(WebAuthnError::AttestationObject("not a map"));
    };
    let field = |name: &str| entries.iter().find(|(k, _)| *k == Cbor::Text(name)).map(|(_, v)| v);
    let Some(Cbor::Text(fmt)) = field("fmt") else { return Err(WebAuthnError::AttestationObject("no `fmt` text")) };
    let Some(Cbor::Bytes(raw_auth_data)) = field("authData") else {
        return Err(WebAuthnError::AttestationObject("no `authData` bytes"));
    };
    let Some(Cbor::Map(statement)) = field("attStmt") else {
        return Err(WebAuthnError::AttestationObject("no `attStmt` map"));
    };
    let auth_data = AuthenticatorData::parse(raw_auth_data)?;
    auth_data.check(rp)?;
    let credential = auth_data.attested.ok_or(WebAuthnError::NoAttestedCredential)?;
    let public_key = ec2_public_key(&credential.public_key)?;
    let attestation = match *fmt {
        "none" if statement.is_empty() => Attestation::None,
        "none" => return Err(WebAuthnError::AttestationStatement("`none` carries a statement")),
        "packed" => {
            verify_packed_self(statement, raw_auth_data, client_data_hash.as_ref(), &public_key)?;
            Attestation::PackedSelf
        }
        other => return Err(WebAuthnError::UnsupportedAttestation(other.to_owned())),
    };
    Ok(NewPasskey {
        credential_id: credential.id.to_vec(),
        public_key,
        sign_count: auth_data.sign_count,
        aaguid: credential.aaguid,
        user_verified: auth_data.flags & FLAG_UV != 0,
        backup_eligible: auth_data.flags & FLAG_BE != 0,
        attestation,
    })
}

/// `packed` self-attestation (§8.2): `alg` is the credential's, `sig` verifies over
/// `authData || clientDataHash` with the credential's own key, and there is no `x5c`.
fn verify_packed_self(
    statement: &[(Cbor<'_>, Cbor<'_>)],
    auth_data: &[u8],
    client_data_hash: &[u8],
    public_key: &[u8],
) -> Result<(), WebAuthnError> {
    let field = |name: &str| statement.iter().find(|(k, _)| *k == Cbor::Text(name)).map(|(_, v)| v);
    if field("x5c").is_some() || field("ecdaaKeyId").is_some() {
        return Err(WebAuthnError::CertifiedAttestation);
    }
    if field("alg").and_then(Cbor::as_int) != Some(i128::from(ES256)) {
        return Err(WebAuthnError::AttestationStatement("`alg` is not the credential's algorithm"));
    }
    let Some(Cbor::Bytes(signature)) = field("sig") else {
        return Err(WebAuthnError::AttestationStatement("no `sig` bytes"));
    };
    let signed = [auth_data, client_data_hash].concat();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, public_key)
        .verify(&signed, signature)
        .map_err(|_| WebAuthnError::AttestationStatement("self-attestation signature does not verify"))
}

/// Verifies an assertion (§7.2) made with the stored credential: the client data, the
/// authenticator data, the signature over `authenticatorData || SHA-256(clientDataJSON)`
/// and the signature counter. Returns the new counter, to store.
pub fn verify_assertion(
    rp: &RelyingParty,
    expected_challenge: &[u8],
    stored_public_key: &[u8],
    stored_sign_count: u32,
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
) -> Result<u32, WebAuthnError> {
    let client_data_hash = check_client_data(rp, "webauthn.get", expected_challenge, client_data_json)?;
    if authenticator_data.len() > MAX_AUTHENTICATOR_DATA {
        return Err(WebAuthnError::TooLarge { what: "authenticator data", limit: MAX_AUTHENTICATOR_DATA });
    }
    if signature.len() > MAX_SIGNATURE {
        return Err(WebAuthnError::TooLarge { what: "signature", limit: MAX_SIGNATURE });
    }
    let auth_data = AuthenticatorData::parse(authenticator_data)?;
    auth_data.check(rp)?;
    let signed = [authenticator_data, client_data_hash.as_ref()].concat();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, stored_public_key)
        .verify(&signed, signature)
        .map_err(|_| WebAuthnError::BadSignature)?;
    check_sign_count(stored_sign_count, auth_data.sign_count)
}

/// §7.2 step 22: authenticators without a counter always send 0; otherwise the counter must
/// grow, and a counter that does not is the sign of a cloned authenticator.
fn check_sign_count(stored: u32, received: u32) -> Result<u32, WebAuthnError> {
    if (stored != 0 || received != 0) && received <= stored {
        return Err(WebAuthnError::SignCountRegression { stored, received });
    }
    Ok(received)
}

/// Attested credential data (§6.5.1).
struct AttestedCredential<'a> {
    aaguid: [u8; 16],
    id: &'a [u8],
    public_key: Cbor<'a>,
}

/// Authenticator data (§6.1).
struct AuthenticatorData<'a> {
    rp_id_hash: &'a [u8],
    flags: u8,
    sign_count: u32,
    attested: Option<AttestedCredential<'a>>,
}

impl<'a> AuthenticatorData<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, WebAuthnError> {
        let (rp_id_hash, rest) = bytes.split_at_checked(32).ok_or(WebAuthnError::Truncated)?;
        let (&flags, rest) = rest.split_first().ok_or(WebAuthnError::Truncated)?;
        let (count, mut rest) = rest.split_first_chunk::<4>().ok_or(WebAuthnError::Truncated)?;
        let sign_count = u32::from_be_bytes(*count);
        let attested = if flags & FLAG_AT != 0 {
            let (aaguid, after) = rest.split_first_chunk::<16>().ok_or(WebAuthnError::Truncated)?;
            let (length, after) = after.split_first_chunk::<2>().ok_or(WebAuthnError::Truncated)?;
            let length = usize::from(u16::from_be_bytes(*length));
            if length > MAX_CREDENTIAL_ID {
                return Err(WebAuthnError::AuthenticatorData("credential id longer than 1023 bytes"));
            }
            if length == 0 {
                return Err(WebAuthnError::AuthenticatorData("empty credential id"));
            }
            let (id, after) = after.split_at_checked(length).ok_or(WebAuthnError::Truncated)?;
            let (public_key, after) = decode_prefix(after).map_err(truncated_or_cbor)?;
            rest = after;
            Some(AttestedCredential { aaguid: *aaguid, id, public_key })
        } else {
            None
        };
        if flags & FLAG_ED != 0 {
            let (extensions, after) = decode_prefix(rest).map_err(truncated_or_cbor)?;
            if !matches!(extensions, Cbor::Map(_)) {
                return Err(WebAuthnError::AuthenticatorData("extensions are not a map"));
            }
            rest = after;
        }
        if !rest.is_empty() {
            return Err(WebAuthnError::AuthenticatorData("unexpected bytes after the last field"));
        }
        Ok(Self { rp_id_hash, flags, sign_count, attested })
    }

    /// The checks common to both ceremonies: this RP, a user present, coherent backup flags.
    fn check(&self, rp: &RelyingParty) -> Result<(), WebAuthnError> {
        if !constant_time_eq(self.rp_id_hash, rp.id_hash().as_ref()) {
            return Err(WebAuthnError::RpIdMismatch(rp.id.clone()));
        }
        if self.flags & FLAG_UP == 0 {
            return Err(WebAuthnError::UserNotPresent);
        }
        if self.flags & FLAG_BS != 0 && self.flags & FLAG_BE == 0 {
            return Err(WebAuthnError::BackupFlags);
        }
        Ok(())
    }
}

/// Inside authenticator data the CBOR runs out when the data does: say so plainly.
fn truncated_or_cbor(e: CborError) -> WebAuthnError {
    match e {
        CborError::Truncated => WebAuthnError::Truncated,
        other => WebAuthnError::Cbor(other),
    }
}

/// The uncompressed SEC1 point of a COSE_Key (RFC 9053 §7.1.1), which must be EC2, P-256,
/// ES256.
fn ec2_public_key(key: &Cbor<'_>) -> Result<Vec<u8>, WebAuthnError> {
    let Cbor::Map(entries) = key else { return Err(WebAuthnError::UnsupportedKey("not a cose key map".into())) };
    let label = |l: i128| entries.iter().find(|(k, _)| k.as_int() == Some(l)).map(|(_, v)| v);
    match label(3).map(|alg| alg.as_int()) {
        Some(Some(alg)) if alg == i128::from(ES256) => {}
        Some(Some(alg)) => {
            return Err(WebAuthnError::UnsupportedKey(format!("algorithm `{alg}`, only `-7` (es256) is accepted")));
        }
        _ => return Err(WebAuthnError::UnsupportedKey("the key names no algorithm".into())),
    }
    match label(1).and_then(Cbor::as_int) {
        Some(2) => {}
        Some(kty) => {
            return Err(WebAuthnError::UnsupportedKey(format!("key type `{kty}`, only `2` (ec2) is accepted")));
        }
        None => return Err(WebAuthnError::UnsupportedKey("the key names no key type".into())),
    }
    match label(-1).and_then(Cbor::as_int) {
        Some(1) => {}
        Some(crv) => return Err(WebAuthnError::UnsupportedKey(format!("curve `{crv}`, only `1` (p-256) is accepted"))),
        None => return Err(WebAuthnError::UnsupportedKey("the key names no curve".into())),
    }
    let (Some(Cbor::Bytes(x)), Some(Cbor::Bytes(y))) = (label(-2), label(-3)) else {
        return Err(WebAuthnError::UnsupportedKey("the key has no x and y coordinates".into()));
    };
    if x.len() != 32 || y.len() != 32 {
        return Err(WebAuthnError::UnsupportedKey("coordinates are not 32 bytes each".into()));
    }
    let point = [&[0x04u8][..], *x, *y].concat();
    // ring only looks at the point when verifying; refuse a bad one before it is stored.
    p256::PublicKey::from_sec1_bytes(&point).map_err(|_| WebAuthnError::InvalidKey)?;
    Ok(point)
}

/// Why CBOR did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The input ends inside an item.
    #[error("input ends inside an item")]
    Truncated,
    /// Bytes follow the item.
    #[error("bytes follow the item")]
    TrailingBytes,
    /// Indefinite lengths are not used by authenticators (CTAP2 canonical CBOR).
    #[error("indefinite-length items are not accepted")]
    Indefinite,
    /// A reserved additional-information value.
    #[error("reserved additional information")]
    Reserved,
    /// Nesting deeper than accepted.
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// An array or map with more items than accepted.
    #[error("more than {MAX_ITEMS} items in an array or map")]
    TooManyItems,
    /// A text string that is not UTF-8.
    #[error("text string is not utf-8")]
    Utf8,
    /// A map with the same key twice.
    #[error("duplicate map key")]
    DuplicateKey,
}

const MAX_DEPTH: usize = 16;
const MAX_ITEMS: u64 = 256;

/// A CBOR data item (RFC 8949); strings borrow from the input.
#[derive(Debug, Clone, PartialEq)]
enum Cbor<'a> {
    /// Major type 0.
    Unsigned(u64),
    /// Major type 1: the value is `-1 - n`.
    Negative(u64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Cbor<'a>>),
    Map(Vec<(Cbor<'a>, Cbor<'a>)>),
    Tag(u64, Box<Cbor<'a>>),
    /// `false`, `true`, `null`, `undefined` and other simple values.
    Simple(u8),
    /// A float; WebAuthn never reads one, so the value is not kept.
    Float,
}

impl Cbor<'_> {
    fn as_int(&self) -> Option<i128> {
        match self {
            Cbor::Unsigned(n) => Some(i128::from(*n)),
            Cbor::Negative(n) => Some(-1 - i128::from(*n)),
            _ => None,
        }
    }
}

/// One item that must fill `input` exactly.
fn decode(input: &[u8]) -> Result<Cbor<'_>, CborError> {
    let (item, rest) = decode_prefix(input)?;
    if rest.is_empty() { Ok(item) } else { Err(CborError::TrailingBytes) }
}

/// One item at the start of `input`, and what follows it.
fn decode_prefix(input: &[u8]) -> Result<(Cbor<'_>, &[u8]), CborError> {
    let mut reader = Reader { input };
    let item = reader.item(0)?;
    Ok((item, reader.input))
}

struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: u64) -> Result<&'a [u8], CborError> {
        let count = usize::try_from(count).map_err(|_| CborError::Truncated)?;
        let (taken, rest) = self.input.split_at_checked(count).ok_or(CborError::Truncated)?;
        self.input = rest;
        Ok(taken)
    }

    fn argument(&mut self, info: u8) -> Result<u64, CborError> {
        let width = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => return Err(CborError::Indefinite),
            _ => return Err(CborError::Reserved),
        };
        Ok(self.take(width)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// The item count of an array or map, refused before anything is allocated when the
    /// input could not hold that many items (each takes at least one byte).
    fn count(&self, declared: u64, per_entry: u64) -> Result<usize, CborError> {
        if declared > MAX_ITEMS {
            return Err(CborError::TooManyItems);
        }
        let needed = declared.saturating_mul(per_entry);
        if needed > u64::try_from(self.input.len()).unwrap_or(u64::MAX) {
            return Err(CborError::Truncated);
        }
        usize::try_from(declared).map_err(|_| CborError::TooManyItems)
    }

    fn item(&mut self, depth: usize) -> Result<Cbor<'a>, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let head = *self.take(1)?.first().ok_or(CborError::Truncated)?;
        let (major, info) = (head >> 5, head & 0x1f);
        if major == 7 {
            return match info {
                0..=23 => Ok(Cbor::Simple(info)),
                24 => Ok(Cbor::Simple(*self.take(1)?.first().ok_or(CborError::Truncated)?)),
                25 => self.take(2).map(|_| Cbor::Float),
                26 => self.take(4).map(|_| Cbor::Float),
                27 => self.take(8).map(|_| Cbor::Float),
                31 => Err(CborError::Indefinite),
                _ => Err(CborError::Reserved),
            };
        }
        let argument = self.argument(info)?;
        match major {
            0 => Ok(Cbor::Unsigned(argument)),
            1 => Ok(Cbor::Negative(argument)),
            2 => self.take(argument).map(Cbor::Bytes),
            3 => std::str::from_utf8(self.take(argument)?).map(Cbor::Text).map_err(|_| CborError::Utf8),
            4 => {
                let count = self.count(argument, 1)?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Cbor::Array(items))
            }
            5 => {
                let count = self.count(argument, 2)?;
                let mut entries: Vec<(Cbor<'a>, Cbor<'a>)> = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = self.item(depth + 1)?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(CborError::DuplicateKey);
                    }
                    let value = self.item(depth + 1)?;
                    entries.push((key, value));
                }
                Ok(Cbor::Map(entries))
            }
            _ => Ok(Cbor::Tag(argument, Box::new(self.item(depth + 1)?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair as _;

    fn rp() -> RelyingParty {
        RelyingParty::from_issuer("https://id.example.org").unwrap()
    }

    /// A COSE EC2 key map with the given algorithm and a real P-256 point.
    fn cose_key(alg: i8, point: &[u8]) -> Vec<u8> {
        let mut out = vec![0xa5, 0x01, 0x02, 0x03];
        // -1 - n is encoded as major type 1 with argument n.
        out.push(if alg < 0 { 0x20 | u8::try_from(-1 - alg).unwrap() } else { u8::try_from(alg).unwrap() });
        out.extend([0x20, 0x01, 0x21, 0x58, 0x20]);
        out.extend(&point[1..33]);
        out.extend([0x22, 0x58, 0x20]);
        out.extend(&point[33..65]);
        out
    }

    fn key_pair() -> ring::signature::EcdsaKeyPair {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    fn auth_data(rp_id: &str, flags: u8, count: u32, attested: Option<&[u8]>) -> Vec<u8> {
        let mut out = ring::digest::digest(&ring::digest::SHA256, rp_id.as_bytes()).as_ref().to_vec();
        out.push(flags);
        out.extend(count.to_be_bytes());
        if let Some(key) = attested {
            out.extend([0u8; 16]);
            out.extend([0x00, 0x04, 0xc1, 0xc2, 0xc3, 0xc4]);
            out.extend(key);
        }
        out
    }

    fn client_data(kind: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
        format!(r#"{{"type":"{kind}","challenge":"{}","origin":"{origin}"}}"#, b64url_encode(challenge)).into_bytes()
    }

    /// `{"fmt": fmt, "attStmt": {}, "authData": auth_data}`.
    fn attestation_object(fmt: &str, auth_data: &[u8]) -> Vec<u8> {
        let mut out = vec![0xa3, 0x63];
        out.extend(b"fmt");
        out.push(0x60 | u8::try_from(fmt.len()).unwrap());
        out.extend(fmt.as_bytes());
        out.push(0x67);
        out.extend(b"attStmt");
        out.push(0xa0);
        out.push(0x68);
        out.extend(b"authData");
        out.extend([0x59, u8::try_from(auth_data.len() >> 8).unwrap(), u8::try_from(auth_data.len() & 0xff).unwrap()]);
        out.extend(auth_data);
        out
    }

    #[test]
    fn relying_party_from_issuer() {
        let rp = RelyingParty::from_issuer("https://ID.example.org:443/realm?x#y").unwrap();
        assert_eq!((rp.id.as_str(), rp.origin.as_str()), ("id.example.org", "https://id.example.org"));
        let local = RelyingParty::from_issuer("http://127.0.0.1:8080").unwrap();
        assert_eq!((local.id.as_str(), local.origin.as_str()), ("127.0.0.1", "http://127.0.0.1:8080"));
        let v6 = RelyingParty::from_issuer("http://[::1]:9000/").unwrap();
        assert_eq!((v6.id.as_str(), v6.origin.as_str()), ("[::1]", "http://[::1]:9000"));
        for bad in ["id.example.org", "ftp://id.example.org", "https://", "https://u@h", "https://h:x", "https://h:"] {
            assert!(matches!(RelyingParty::from_issuer(bad), Err(WebAuthnError::Issuer(_))), "{bad}");
        }
    }

    #[test]
    fn cbor_refuses_hostile_input() {
        assert_eq!(decode(&[]), Err(CborError::Truncated));
        // A byte string announcing 2^64-1 bytes, an array announcing 2^32 items.
        assert_eq!(decode(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Err(CborError::Truncated));
        assert_eq!(decode(&[0x9a, 0xff, 0xff, 0xff, 0xff]), Err(CborError::TooManyItems));
        assert_eq!(decode(&[0x98, 0x20, 0x01]), Err(CborError::Truncated));
        assert_eq!(decode(&[0x9f, 0xff]), Err(CborError::Indefinite));
        assert_eq!(decode(&[0x1c]), Err(CborError::Reserved));
        assert_eq!(decode(&[0x01, 0x02]), Err(CborError::TrailingBytes));
        assert_eq!(decode(&[0x62, 0xff, 0xfe]), Err(CborError::Utf8));
        assert_eq!(decode(&[0xa2, 0x01, 0x02, 0x01, 0x03]), Err(CborError::DuplicateKey));
        assert_eq!(decode(&[0x81; 40]), Err(CborError::TooDeep));
        assert_eq!(decode(&[0xc1; 40]), Err(CborError::TooDeep));
        assert_eq!(decode(&[0x39, 0x01, 0x00]).map(|c| c.as_int()), Ok(Some(-257)));
        assert_eq!(decode(&[0xf5]), Ok(Cbor::Simple(21)));
        assert_eq!(decode(&[0xf9, 0x3c, 0x00]), Ok(Cbor::Float));
    }

    #[test]
    fn authenticator_data_edges() {
        let rp = rp();
        assert!(matches!(AuthenticatorData::parse(&[0u8; 36]), Err(WebAuthnError::Truncated)));
        let plain = auth_data(&rp.id, FLAG_UP, 7, None);
        let parsed = AuthenticatorData::parse(&plain).unwrap();
        assert_eq!((parsed.sign_count, parsed.attested.is_none()), (7, true));
        assert!(parsed.check(&rp).is_ok());
        let mut extra = plain.clone();
        extra.push(0);
        assert!(matches!(AuthenticatorData::parse(&extra), Err(WebAuthnError::AuthenticatorData(_))));
        // AT set, but the data stops inside the credential id, then inside the key.
        let point = key_pair().public_key().as_ref().to_vec();
        let full = auth_data(&rp.id, FLAG_UP | FLAG_AT, 0, Some(&cose_key(-7, &point)));
        for cut in [40, 37 + 16 + 2 + 2, full.len() - 1] {
            assert!(matches!(AuthenticatorData::parse(&full[..cut]), Err(WebAuthnError::Truncated)), "{cut}");
        }
        let parsed = AuthenticatorData::parse(&full).unwrap();
        assert_eq!(parsed.attested.as_ref().map(|a| a.id), Some(&[0xc1, 0xc2, 0xc3, 0xc4][..]));
        assert_eq!(ec2_public_key(&parsed.attested.unwrap().public_key).unwrap(), point);
        let mut with_ext = full.clone();
        with_ext[32] |= FLAG_ED;
        with_ext.push(0xa0);
        assert!(AuthenticatorData::parse(&with_ext).is_ok());
        with_ext.pop();
        with_ext.push(0x80);
        assert!(matches!(AuthenticatorData::parse(&with_ext), Err(WebAuthnError::AuthenticatorData(_))));
        // Flags: no user presence; backed up without being eligible.
        assert_eq!(
            AuthenticatorData::parse(&auth_data(&rp.id, FLAG_UV, 0, None)).unwrap().check(&rp),
            Err(WebAuthnError::UserNotPresent)
        );
        assert_eq!(
            AuthenticatorData::parse(&auth_data(&rp.id, FLAG_UP | FLAG_BS, 0, None)).unwrap().check(&rp),
            Err(WebAuthnError::BackupFlags)
        );
        assert!(matches!(
            AuthenticatorData::parse(&auth_data("other.example", FLAG_UP, 0, None)).unwrap().check(&rp),
            Err(WebAuthnError::RpIdMismatch(_))
        ));
    }

    #[test]
    fn only_es256_p256_keys() {
        let point = key_pair().public_key().as_ref().to_vec();
        let parse = |bytes: &[u8]| ec2_public_key(&decode(bytes).unwrap());
        assert!(parse(&cose_key(-7, &point)).is_ok());
        let rs256 = [0xa3, 0x01, 0x03, 0x03, 0x39, 0x01, 0x00, 0x20, 0x01];
        assert!(matches!(parse(&rs256), Err(WebAuthnError::UnsupportedKey(m)) if m.contains("`-257`")));
        assert!(matches!(parse(&cose_key(-8, &point)), Err(WebAuthnError::UnsupportedKey(m)) if m.contains("`-8`")));
        let mut off_curve = point.clone();
        off_curve[64] ^= 1;
        assert_eq!(parse(&cose_key(-7, &off_curve)), Err(WebAuthnError::InvalidKey));
        assert!(matches!(parse(&[0x80]), Err(WebAuthnError::UnsupportedKey(_))));
    }

    #[test]
    fn registration_and_assertion_round_trip() {
        let rp = rp();
        let key = key_pair();
        let point = key.public_key().as_ref().to_vec();
        let challenge = [7u8; 32];
        let data = auth_data(&rp.id, FLAG_UP | FLAG_AT, 0, Some(&cose_key(-7, &point)));
        let created = client_data("webauthn.create", &challenge, &rp.origin);
        let passkey = verify_registration(&rp, &challenge, &created, &attestation_object("none", &data)).unwrap();
        assert_eq!((passkey.public_key, passkey.attestation), (point.clone(), Attestation::None));
        assert_eq!(
            verify_registration(&rp, &challenge, &created, &attestation_object("tpm", &data)),
            Err(WebAuthnError::UnsupportedAttestation("tpm".into()))
        );
        assert_eq!(
            verify_registration(&rp, &[8u8; 32], &created, &attestation_object("none", &data)),
            Err(WebAuthnError::ChallengeMismatch)
        );
        assert!(matches!(
            verify_registration(&rp, &challenge, b"{", &attestation_object("none", &data)),
            Err(WebAuthnError::ClientData(_))
        ));
        let framed = format!(
            r#"{{"type":"webauthn.create","challenge":"{}","origin":"{}","crossOrigin":true}}"#,
            b64url_encode(&challenge),
            rp.origin
        );
        assert_eq!(
            verify_registration(&rp, &challenge, framed.as_bytes(), &attestation_object("none", &data)),
            Err(WebAuthnError::CrossOrigin)
        );
        let mut statement = attestation_object("none", &data);
        // `attStmt` is the empty map 0xa0 right after its key: give `none` a statement.
        let at = statement.windows(7).position(|w| w == b"attStmt").unwrap() + 7;
        statement.splice(at..=at, [0xa1, 0x01, 0x02]);
        assert!(matches!(
            verify_registration(&rp, &challenge, &created, &statement),
            Err(WebAuthnError::AttestationStatement(_))
        ));
        let no_at = auth_data(&rp.id, FLAG_UP, 0, None);
        assert_eq!(
            verify_registration(&rp, &challenge, &created, &attestation_object("none", &no_at)),
            Err(WebAuthnError::NoAttestedCredential)
        );

        let rng = ring::rand::SystemRandom::new();
        let got = client_data("webauthn.get", &challenge, &rp.origin);
        let signed_data = auth_data(&rp.id, FLAG_UP, 3, None);
        let hash = ring::digest::digest(&ring::digest::SHA256, &got);
        let signature = key.sign(&rng, &[&signed_data[..], hash.as_ref()].concat()).unwrap();
        let verify = |stored| verify_assertion(&rp, &challenge, &point, stored, &got, &signed_data, signature.as_ref());
        assert_eq!(verify(0), Ok(3));
        assert_eq!(verify(3), Err(WebAuthnError::SignCountRegression { stored: 3, received: 3 }));
        assert_eq!(
            verify_assertion(&rp, &challenge, &point, 0, &created, &signed_data, signature.as_ref()),
            Err(WebAuthnError::WrongType { expected: "webauthn.get", found: "webauthn.create".into() })
        );
        let mut tampered = signature.as_ref().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            verify_assertion(&rp, &challenge, &point, 0, &got, &signed_data, &tampered),
            Err(WebAuthnError::BadSignature)
        );
        assert!(matches!(
            verify_assertion(&rp, &challenge, &point, 0, &got, &signed_data, &[0u8; 200]),
            Err(WebAuthnError::TooLarge { .. })
        ));
    }

    #[test]
    fn sign_counts() {
        assert_eq!(check_sign_count(0, 0), Ok(0));
        assert_eq!(check_sign_count(0, 1), Ok(1));
        assert_eq!(check_sign_count(4, 5), Ok(5));
        assert!(check_sign_count(5, 5).is_err());
        assert!(check_sign_count(5, 0).is_err(), "a counter back to zero is a regression too");
    }

    #[test]
    fn options_shape() {
        let rp = rp();
        let user = UserEntity { id: "u-1", name: "ana@example.org", display_name: "Ana Silva" };
        let created = creation_options(&rp, &[1; 32], user, &["AAAA".into()]).unwrap();
        assert_eq!(created["user"]["id"], b64url_encode(b"u-1"));
        assert_eq!(created["pubKeyCredParams"], json!([{ "type": "public-key", "alg": -7 }]));
        assert_eq!(created["excludeCredentials"][0]["id"], "AAAA");
        let long = "u".repeat(65);
        let too_long = UserEntity { id: &long, ..user };
        assert_eq!(creation_options(&rp, &[1; 32], too_long, &[]), Err(WebAuthnError::UserHandle));
        let request = request_options(&rp, &[1; 32], &[]);
        assert_eq!(request["rpId"], "id.example.org");
        assert!(request.get("allowCredentials").is_none());
        assert_eq!(request_options(&rp, &[1; 32], &["AAAA".into()])["allowCredentials"][0]["id"], "AAAA");
    }
}
