//! A software WebAuthn authenticator.
//!
//! TEST DOUBLE: it stands in for a hardware security key or a platform authenticator in the
//! tests, and has none of their protections (the private key lives in this process's
//! memory). It makes real P-256 keys and real ECDSA signatures, builds authenticator data
//! and CBOR attestation objects byte by byte, and lets a test change any field to forge a
//! broken or hostile response.

use regain_core::jose::{b64url_decode, b64url_encode};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::Value;

/// User present.
pub const UP: u8 = 0x01;
/// User verified.
pub const UV: u8 = 0x04;
/// Attested credential data included.
pub const AT: u8 = 0x40;

/// A CBOR item, encoded in the deterministic form authenticators use.
#[derive(Debug, Clone)]
pub enum Cbor {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A text string.
    Text(String),
    /// An array.
    Array(Vec<Cbor>),
    /// A map, in the order given.
    Map(Vec<(Cbor, Cbor)>),
}

impl Cbor {
    fn head(out: &mut Vec<u8>, major: u8, value: u64) {
        let major = major << 5;
        match value {
            0..=23 => out.push(major | u8::try_from(value).unwrap()),
            24..=0xff => out.extend([major | 24, u8::try_from(value).unwrap()]),
            0x100..=0xffff => {
                out.push(major | 25);
                out.extend(u16::try_from(value).unwrap().to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(major | 26);
                out.extend(u32::try_from(value).unwrap().to_be_bytes());
            }
            _ => {
                out.push(major | 27);
                out.extend(value.to_be_bytes());
            }
        }
    }

    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Cbor::Int(n) if *n >= 0 => Self::head(out, 0, n.unsigned_abs()),
            Cbor::Int(n) => Self::head(out, 1, (-1 - n).unsigned_abs()),
            Cbor::Bytes(b) => {
                Self::head(out, 2, u64::try_from(b.len()).unwrap());
                out.extend(b);
            }
            Cbor::Text(t) => {
                Self::head(out, 3, u64::try_from(t.len()).unwrap());
                out.extend(t.as_bytes());
            }
            Cbor::Array(items) => {
                Self::head(out, 4, u64::try_from(items.len()).unwrap());
                items.iter().for_each(|i| i.write(out));
            }
            Cbor::Map(entries) => {
                Self::head(out, 5, u64::try_from(entries.len()).unwrap());
                for (k, v) in entries {
                    k.write(out);
                    v.write(out);
                }
            }
        }
    }
}

fn text(t: &str) -> Cbor {
    Cbor::Text(t.to_owned())
}

/// What one ceremony's client data and authenticator data say. Built from the server's
/// options; a test changes a field to make a response the server must refuse.
#[derive(Debug, Clone)]
pub struct Ceremony {
    /// `webauthn.create` or `webauthn.get`.
    pub kind: String,
    /// The challenge echoed in the client data.
    pub challenge: Vec<u8>,
    /// The origin the browser reports.
    pub origin: String,
    /// The RP ID whose hash starts the authenticator data.
    pub rp_id: String,
    /// Authenticator data flags (`AT` is added for a registration).
    pub flags: u8,
}

impl Ceremony {
    /// A registration as the browser would run it for `options` (`publicKey` of the
    /// creation options) on `origin`.
    pub fn create(options: &Value, origin: &str) -> Self {
        Self {
            kind: "webauthn.create".into(),
            challenge: b64url_decode(options["challenge"].as_str().unwrap()).unwrap(),
            origin: origin.into(),
            rp_id: options["rp"]["id"].as_str().unwrap().into(),
            flags: UP | UV,
        }
    }

    /// A sign-in as the browser would run it for `options` (`publicKey` of the request
    /// options) on `origin`.
    pub fn get(options: &Value, origin: &str) -> Self {
        Self {
            kind: "webauthn.get".into(),
            challenge: b64url_decode(options["challenge"].as_str().unwrap()).unwrap(),
            origin: origin.into(),
            rp_id: options["rpId"].as_str().unwrap().into(),
            flags: UP | UV,
        }
    }

    /// `clientDataJSON`, serialised the way browsers do.
    pub fn client_data(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": self.kind,
            "challenge": b64url_encode(&self.challenge),
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }
}

/// The attestation statement to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `none`, with an empty statement.
    None,
    /// `packed` self-attestation, signed with the credential key.
    PackedSelf,
    /// `packed` self-attestation whose signature covers other bytes.
    PackedBadSignature,
    /// `packed` with an (empty, fake) certificate chain.
    PackedWithChain,
    /// Another format name with an empty statement.
    Named(&'static str),
}

/// What `navigator.credentials.create` answers.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `response.clientDataJSON`.
    pub client_data_json: Vec<u8>,
    /// `response.attestationObject`.
    pub attestation_object: Vec<u8>,
}

/// What `navigator.credentials.get` answers.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// `rawId`.
    pub credential_id: Vec<u8>,
    /// `response.clientDataJSON`.
    pub client_data_json: Vec<u8>,
    /// `response.authenticatorData`.
    pub authenticator_data: Vec<u8>,
    /// `response.signature`, DER.
    pub signature: Vec<u8>,
    /// `response.userHandle`.
    pub user_handle: Option<Vec<u8>>,
}

/// One credential on the software authenticator.
pub struct Authenticator {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The credential id.
    pub credential_id: Vec<u8>,
    /// The signature counter; each assertion adds one first.
    pub sign_count: u32,
    /// The user handle given at registration, answered at sign-in (a discoverable
    /// credential).
    pub user_handle: Option<Vec<u8>>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl Authenticator {
    /// A new credential: a fresh P-256 key and a random 32-byte id.
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let mut credential_id = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&rng, &mut credential_id).unwrap();
        Self { key, rng, credential_id, sign_count: 0, user_handle: None }
    }

    /// The public key, uncompressed SEC1.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// The credential id, base64url.
    pub fn credential_id_b64(&self) -> String {
        b64url_encode(&self.credential_id)
    }

    /// The public key as a COSE_Key (EC2, P-256) claiming algorithm `alg`.
    pub fn cose_key(&self, alg: i64) -> Vec<u8> {
        let point = self.public_key();
        Cbor::Map(vec![
            (Cbor::Int(1), Cbor::Int(2)),
            (Cbor::Int(3), Cbor::Int(alg)),
            (Cbor::Int(-1), Cbor::Int(1)),
            (Cbor::Int(-2), Cbor::Bytes(point[1..33].to_vec())),
            (Cbor::Int(-3), Cbor::Bytes(point[33..65].to_vec())),
        ])
        .encode()
    }

    /// Authenticator data: rpIdHash, flags, counter and, when `cose_key` is given, the
    /// attested credential data (AAGUID zeros, this credential's id, the key).
    pub fn auth_data(&self, rp_id: &str, flags: u8, count: u32, cose_key: Option<&[u8]>) -> Vec<u8> {
        let mut out = ring::digest::digest(&ring::digest::SHA256, rp_id.as_bytes()).as_ref().to_vec();
        out.push(flags);
        out.extend(count.to_be_bytes());
        if let Some(key) = cose_key {
            out.extend([0u8; 16]);
            out.extend(u16::try_from(self.credential_id.len()).unwrap().to_be_bytes());
            out.extend(&self.credential_id);
            out.extend(key);
        }
        out
    }

    /// An attestation object around `auth_data`.
    pub fn attestation_object(fmt: &str, statement: Cbor, auth_data: &[u8]) -> Vec<u8> {
        Cbor::Map(vec![
            (text("fmt"), text(fmt)),
            (text("attStmt"), statement),
            (text("authData"), Cbor::Bytes(auth_data.to_vec())),
        ])
        .encode()
    }

    /// Signs `message` with the credential key (ECDSA P-256 SHA-256, DER).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(&self.rng, message).unwrap().as_ref().to_vec()
    }

    /// Registers for `options` (`publicKey` of the creation options) on `origin`, as an
    /// honest authenticator would, with attestation `none`.
    pub fn register(&mut self, options: &Value, origin: &str) -> Registration {
        self.user_handle = options["user"]["id"].as_str().and_then(b64url_decode);
        self.register_with(&Ceremony::create(options, origin), Format::None, -7)
    }

    /// A registration for `ceremony`, with this attestation and a key that claims `alg`.
    pub fn register_with(&self, ceremony: &Ceremony, format: Format, alg: i64) -> Registration {
        let client_data_json = ceremony.client_data();
        let auth_data =
            self.auth_data(&ceremony.rp_id, ceremony.flags | AT, self.sign_count, Some(&self.cose_key(alg)));
        let client_data_hash = ring::digest::digest(&ring::digest::SHA256, &client_data_json);
        let signed = [&auth_data[..], client_data_hash.as_ref()].concat();
        let (fmt, statement) = match format {
            Format::None => ("none", Cbor::Map(vec![])),
            Format::PackedSelf => (
                "packed",
                Cbor::Map(vec![(text("alg"), Cbor::Int(-7)), (text("sig"), Cbor::Bytes(self.sign(&signed)))]),
            ),
            Format::PackedBadSignature => (
                "packed",
                Cbor::Map(vec![(text("alg"), Cbor::Int(-7)), (text("sig"), Cbor::Bytes(self.sign(b"other bytes")))]),
            ),
            Format::PackedWithChain => (
                "packed",
                Cbor::Map(vec![
                    (text("alg"), Cbor::Int(-7)),
                    (text("sig"), Cbor::Bytes(self.sign(&signed))),
                    (text("x5c"), Cbor::Array(vec![Cbor::Bytes(vec![0x30, 0x00])])),
                ]),
            ),
            Format::Named(name) => (name, Cbor::Map(vec![])),
        };
        Registration { client_data_json, attestation_object: Self::attestation_object(fmt, statement, &auth_data) }
    }

    /// Signs in for `options` (`publicKey` of the request options) on `origin`, as an
    /// honest authenticator would.
    pub fn assert(&mut self, options: &Value, origin: &str) -> Assertion {
        self.assert_with(&Ceremony::get(options, origin))
    }

    /// An assertion for `ceremony`; the counter goes up by one first.
    pub fn assert_with(&mut self, ceremony: &Ceremony) -> Assertion {
        self.sign_count += 1;
        let client_data_json = ceremony.client_data();
        let authenticator_data = self.auth_data(&ceremony.rp_id, ceremony.flags, self.sign_count, None);
        let client_data_hash = ring::digest::digest(&ring::digest::SHA256, &client_data_json);
        let signature = self.sign(&[&authenticator_data[..], client_data_hash.as_ref()].concat());
        Assertion {
            credential_id: self.credential_id.clone(),
            client_data_json,
            authenticator_data,
            signature,
            user_handle: self.user_handle.clone(),
        }
    }
}
