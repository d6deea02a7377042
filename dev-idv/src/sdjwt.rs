//! Issuing SD-JWT VCs, and presenting them as a wallet would.

use crate::keys::SigningKey;
use crate::sign_jws;
use regain_core::jose::b64url_encode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// One disclosure: the encoded string and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    /// base64url of the JSON array.
    pub encoded: String,
    /// base64url SHA-256 of `encoded`.
    pub digest: String,
}

impl Disclosure {
    /// An object-property disclosure `[salt, name, value]`.
    pub fn property(salt: &str, name: &str, value: &Value) -> Self {
        Self::from_json(&json!([salt, name, value]))
    }

    /// An array-element disclosure `[salt, value]`.
    pub fn element(salt: &str, value: &Value) -> Self {
        Self::from_json(&json!([salt, value]))
    }

    /// A disclosure of any JSON (for forging malformed ones).
    pub fn from_json(array: &Value) -> Self {
        Self::from_encoded(b64url_encode(array.to_string().as_bytes()))
    }

    /// A disclosure from its encoded form.
    pub fn from_encoded(encoded: String) -> Self {
        let digest = b64url_encode(&Sha256::digest(encoded.as_bytes()));
        Self { encoded, digest }
    }
}

/// An issued SD-JWT: the issuer-signed JWT and every disclosure the holder received.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The issuer-signed JWT.
    pub jwt: String,
    /// All disclosures, in issuance order.
    pub disclosures: Vec<Disclosure>,
}

impl Issued {
    /// `<jwt>~<d1>~...~<dn>~` with the chosen disclosures (all of them by default).
    pub fn sd_jwt(&self, chosen: &[&Disclosure]) -> String {
        let mut out = self.jwt.clone();
        out.push('~');
        for d in chosen {
            out.push_str(&d.encoded);
            out.push('~');
        }
        out
    }

    /// All disclosures, as references.
    pub fn all(&self) -> Vec<&Disclosure> {
        self.disclosures.iter().collect()
    }
}

/// Signs an SD-JWT with `header` and `claims` (into which `_sd` digests were already put).
pub fn issue(header: &Value, claims: &Value, disclosures: Vec<Disclosure>, key: &SigningKey) -> Issued {
    Issued { jwt: sign_jws(header, claims, key), disclosures }
}

/// Makes every top-level claim in `disclosed` selectively disclosable: adds one disclosure
/// each (salts derived from the name, so fixtures are reproducible), puts their digests and
/// `decoys` extra digests into `_sd`, and sets `_sd_alg`.
pub fn conceal(claims: &mut Map<String, Value>, disclosed: &[(&str, Value)], decoys: usize) -> Vec<Disclosure> {
    conceal_with(claims, disclosed, decoys, &mut fixed_salt)
}

/// What a salt is drawn for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaltFor<'a> {
    /// The disclosure of the named claim.
    Claim(&'a str),
    /// The `i`-th decoy digest (the digest of the returned value).
    Decoy(usize),
}

/// The reproducible salts of [`conceal`] and [`issue_identity`].
pub fn fixed_salt(purpose: SaltFor<'_>) -> String {
    match purpose {
        SaltFor::Claim(name) => format!("salt-{name}"),
        SaltFor::Decoy(i) => format!("decoy-{i}"),
    }
}

/// [`conceal`] with salts (and decoy digests) from `salt`: the issuing service passes fresh
/// random values, so that a digest does not reveal a guessable claim value.
pub fn conceal_with(
    claims: &mut Map<String, Value>,
    disclosed: &[(&str, Value)],
    decoys: usize,
    salt: &mut dyn FnMut(SaltFor<'_>) -> String,
) -> Vec<Disclosure> {
    let disclosures: Vec<Disclosure> =
        disclosed.iter().map(|(name, value)| Disclosure::property(&salt(SaltFor::Claim(name)), name, value)).collect();
    let mut digests: Vec<Value> = disclosures.iter().map(|d| Value::String(d.digest.clone())).collect();
    for i in 0..decoys {
        let seed = salt(SaltFor::Decoy(i));
        digests.push(Value::String(b64url_encode(&Sha256::digest(seed.as_bytes()))));
    }
    digests.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    claims.insert("_sd".into(), Value::Array(digests));
    claims.insert("_sd_alg".into(), Value::String("sha-256".into()));
    disclosures
}

/// The key binding JWT over `sd_jwt` (which ends with `~`).
pub fn key_binding_jwt(holder: &SigningKey, sd_jwt: &str, nonce: &str, aud: &str, iat: u64) -> String {
    let header = json!({ "typ": "kb+jwt", "alg": holder.alg() });
    let claims = json!({
        "iat": iat,
        "aud": aud,
        "nonce": nonce,
        "sd_hash": b64url_encode(&Sha256::digest(sd_jwt.as_bytes())),
    });
    sign_jws(&header, &claims, holder)
}

/// What the dev IDV puts into an identity credential.
#[derive(Debug, Clone)]
pub struct IdentityCredential<'a> {
    /// The issuer identifier (`iss`).
    pub issuer: &'a str,
    /// The key id of the issuer key, for the header's `kid`.
    pub kid: &'a str,
    /// The credential type (`vct`).
    pub vct: &'a str,
    /// Issuance time.
    pub iat: u64,
    /// Expiry time.
    pub exp: u64,
    /// The status list reference, `(uri, index)`.
    pub status: Option<(&'a str, u64)>,
    /// Selectively disclosable claims, in order.
    pub claims: Vec<(&'a str, Value)>,
}

/// Issues a holder-bound SD-JWT VC with every claim selectively disclosable.
pub fn issue_identity(credential: &IdentityCredential<'_>, issuer: &SigningKey, holder: &SigningKey) -> Issued {
    issue_identity_with(credential, issuer, &holder.public_jwk(None), &mut fixed_salt)
}

/// [`issue_identity`] to a holder known by its public JWK only (as an issuer knows it from
/// the proof of possession), with salts from `salt` (see [`conceal_with`]).
pub fn issue_identity_with(
    credential: &IdentityCredential<'_>,
    issuer: &SigningKey,
    holder_jwk: &Value,
    salt: &mut dyn FnMut(SaltFor<'_>) -> String,
) -> Issued {
    let mut claims = Map::new();
    claims.insert("iss".into(), credential.issuer.into());
    claims.insert("vct".into(), credential.vct.into());
    claims.insert("iat".into(), credential.iat.into());
    claims.insert("exp".into(), credential.exp.into());
    claims.insert("cnf".into(), json!({ "jwk": holder_jwk }));
    if let Some((uri, idx)) = credential.status {
        claims.insert("status".into(), json!({ "status_list": { "idx": idx, "uri": uri } }));
    }
    let disclosures = conceal_with(&mut claims, &credential.claims, 2, salt);
    let header = json!({ "typ": "dc+sd-jwt", "alg": issuer.alg(), "kid": credential.kid });
    issue(&header, &Value::Object(claims), disclosures, issuer)
}

/// The wallet's presentation: the chosen disclosures and a key binding JWT.
pub fn present(
    issued: &Issued,
    chosen: &[&Disclosure],
    holder: &SigningKey,
    nonce: &str,
    aud: &str,
    iat: u64,
) -> String {
    let sd_jwt = issued.sd_jwt(chosen);
    let kb = key_binding_jwt(holder, &sd_jwt, nonce, aud, iat);
    format!("{sd_jwt}{kb}")
}
