//! Shared fixtures of the regain-core tests: a RustCrypto signature verifier, a trust source
//! in memory, and a forge for SD-JWT VC presentations.

#![allow(dead_code, reason = "each test file uses part of the support module")]

use p256::ecdsa::signature::Verifier as _;
use regain_core::jose::{Alg, PublicKey, SignatureVerifier};
use regain_core::sdjwt::{Expectations, TrustFailure, TrustSource};
use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::{Disclosure, conceal, key_binding_jwt};
use regain_dev_idv::{sign_jws, status};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Verifies with the RustCrypto crates (the hosts use their own native verifier).
pub struct RustCrypto;

impl SignatureVerifier for RustCrypto {
    fn verify(&self, alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        Ok(match (alg, key) {
            (Alg::Es256, PublicKey::P256 { x, y }) => {
                let point = p256::EncodedPoint::from_affine_coordinates(x.into(), y.into(), false);
                let Ok(key) = p256::ecdsa::VerifyingKey::from_encoded_point(&point) else { return Ok(false) };
                let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else { return Ok(false) };
                key.verify(message, &sig).is_ok()
            }
            (Alg::EdDsa, PublicKey::Ed25519(k)) => {
                let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(k) else { return Ok(false) };
                let Ok(sig) = <[u8; 64]>::try_from(signature) else { return Ok(false) };
                key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
            }
            _ => false,
        })
    }
}

pub const NOW: u64 = 1_790_000_000;
pub const ISSUER: &str = "https://idv.example";
pub const VCT: &str = "https://idv.example/credentials/identity";
pub const NONCE: &str = "n-0S6_WzA2Mj-8ff6bY3Qw";
pub const AUDIENCE: &str = "x509_san_dns:recovery.example.org";
pub const STATUS_URI: &str = "https://idv.example/status/1";
pub const STATUS_INDEX: u64 = 3;

pub fn issuer_key() -> SigningKey {
    SigningKey::p256(1)
}

pub fn holder_key() -> SigningKey {
    SigningKey::p256(2)
}

pub fn attacker_key() -> SigningKey {
    SigningKey::p256(66)
}

/// Trust material in memory; `None` makes the lookup fail as unavailable.
pub struct Trust {
    pub issuers: HashMap<String, Option<String>>,
    pub lists: HashMap<String, Option<String>>,
    pub status_lookups: usize,
}

impl TrustSource for Trust {
    fn issuer_keys(&mut self, issuer: &str) -> Result<String, TrustFailure> {
        match self.issuers.get(issuer) {
            None => Err(TrustFailure::UnknownIssuer),
            Some(None) => Err(TrustFailure::Unavailable("jwks fetch timed out".into())),
            Some(Some(jwks)) => Ok(jwks.clone()),
        }
    }

    fn status_list_token(&mut self, uri: &str) -> Result<String, TrustFailure> {
        self.status_lookups += 1;
        match self.lists.get(uri) {
            Some(Some(token)) => Ok(token.clone()),
            _ => Err(TrustFailure::Unavailable("status list fetch failed".into())),
        }
    }
}

/// Statuses of the default list: index 3 valid, 5 revoked, 6 suspended, 7 value 3.
pub fn statuses() -> Vec<u8> {
    vec![0, 0, 0, 0, 0, 1, 2, 3]
}

pub fn status_token(statuses: &[u8]) -> String {
    status::token(&issuer_key(), Some("k1"), STATUS_URI, statuses, 2, NOW - 60, Some(NOW + 3600))
}

pub fn trust() -> Trust {
    let mut issuers = HashMap::new();
    issuers.insert(ISSUER.to_owned(), Some(issuer_key().jwks(Some("k1")).to_string()));
    let mut lists = HashMap::new();
    lists.insert(STATUS_URI.to_owned(), Some(status_token(&statuses())));
    Trust { issuers, lists, status_lookups: 0 }
}

pub fn vcts() -> Vec<String> {
    vec![VCT.to_owned()]
}

pub const ALGS: [Alg; 2] = [Alg::Es256, Alg::EdDsa];

pub fn expectations(vcts: &[String]) -> Expectations<'_> {
    Expectations {
        nonce: NONCE,
        audience: AUDIENCE,
        vcts,
        algs: &ALGS,
        now: NOW,
        skew: 60,
        kb_max_age: 300,
        holder_binding: true,
        require_status: true,
        require_expiry: true,
    }
}

/// Everything that goes into a presentation, editable before [`Forge::build`].
pub struct Forge {
    pub header: Value,
    pub claims: Value,
    pub issuer: SigningKey,
    /// The disclosures presented, in order.
    pub presented: Vec<Disclosure>,
    pub with_kb: bool,
    pub kb_header: Value,
    pub kb_claims: Map<String, Value>,
    pub holder: SigningKey,
}

/// The disclosures of the default credential, by claim name.
pub fn disclosures() -> HashMap<&'static str, Disclosure> {
    Forge::new_with_disclosures().1
}

impl Forge {
    fn new_with_disclosures() -> (Self, HashMap<&'static str, Disclosure>) {
        let mut claims = Map::new();
        claims.insert("iss".into(), ISSUER.into());
        claims.insert("vct".into(), VCT.into());
        claims.insert("iat".into(), (NOW - 120).into());
        claims.insert("exp".into(), (NOW + 86_400).into());
        claims.insert("cnf".into(), json!({ "jwk": holder_key().public_jwk(None) }));
        claims.insert("status".into(), json!({ "status_list": { "idx": STATUS_INDEX, "uri": STATUS_URI } }));

        // A nested, recursively disclosable address and an array with disclosable elements.
        let street = Disclosure::property("salt-street", "street_address", &json!("Rua Augusta 1"));
        let nat_pt = Disclosure::element("salt-pt", &json!("PT"));
        let nat_br = Disclosure::element("salt-br", &json!("BR"));
        let address = json!({ "_sd": [street.digest], "locality": "Lisboa", "country": "PT" });
        let nationalities = json!([{ "...": nat_pt.digest }, { "...": nat_br.digest }, { "...": "decoy-digest" }]);

        let top = conceal(
            &mut claims,
            &[
                ("given_name", json!("Ana")),
                ("family_name", json!("Silva")),
                ("birthdate", json!("1990-01-01")),
                ("address", address),
                ("nationalities", nationalities),
            ],
            3,
        );
        let mut named: HashMap<&'static str, Disclosure> = HashMap::new();
        for (name, d) in ["given_name", "family_name", "birthdate", "address", "nationalities"].iter().zip(&top) {
            named.insert(name, d.clone());
        }
        named.insert("street_address", street);
        named.insert("nat_pt", nat_pt);
        named.insert("nat_br", nat_br);
        let presented: Vec<Disclosure> = top
            .into_iter()
            .chain([named["street_address"].clone(), named["nat_pt"].clone(), named["nat_br"].clone()])
            .collect();

        let forge = Self {
            header: json!({ "typ": "dc+sd-jwt", "alg": "ES256", "kid": "k1" }),
            claims: Value::Object(claims),
            issuer: issuer_key(),
            presented,
            with_kb: true,
            kb_header: json!({ "typ": "kb+jwt", "alg": "ES256" }),
            kb_claims: Map::new(),
            holder: holder_key(),
        };
        (forge, named)
    }

    /// The default presentation: valid, every disclosure presented, holder-bound.
    pub fn new() -> Self {
        Self::new_with_disclosures().0
    }

    pub fn claims_mut(&mut self) -> &mut Map<String, Value> {
        self.claims.as_object_mut().unwrap()
    }

    pub fn header_mut(&mut self) -> &mut Map<String, Value> {
        self.header.as_object_mut().unwrap()
    }

    /// `<jwt>~<d1>~...~<dn>~`.
    pub fn sd_jwt(&self) -> String {
        let mut out = sign_jws(&self.header, &self.claims, &self.issuer);
        out.push('~');
        for d in &self.presented {
            out.push_str(&d.encoded);
            out.push('~');
        }
        out
    }

    /// The default KB-JWT claims for `sd_jwt`, overridden by `kb_claims`.
    pub fn kb_jwt(&self, sd_jwt: &str) -> String {
        let honest = key_binding_jwt(&self.holder, sd_jwt, NONCE, AUDIENCE, NOW - 5);
        let payload = honest.split('.').nth(1).unwrap();
        let mut claims: Map<String, Value> =
            serde_json::from_slice(&regain_core::jose::b64url_decode(payload).unwrap()).unwrap();
        for (k, v) in &self.kb_claims {
            if v.is_null() {
                claims.remove(k);
            } else {
                claims.insert(k.clone(), v.clone());
            }
        }
        sign_jws(&self.kb_header, &Value::Object(claims), &self.holder)
    }

    pub fn build(&self) -> String {
        let sd_jwt = self.sd_jwt();
        if self.with_kb {
            let kb = self.kb_jwt(&sd_jwt);
            format!("{sd_jwt}{kb}")
        } else {
            sd_jwt
        }
    }
}

/// A whole environment in memory, for the flow tests. The face matcher is a test double:
/// the selfie reference names the result (`face:<score>` or `face:<score>:spoof`).
pub struct World {
    pub now: u64,
    pub counter: u8,
    pub users: Vec<regain_core::User>,
    pub audit: Vec<regain_core::AuditEvent>,
    pub trust: Trust,
    pub taps: Vec<regain_core::env::TapRequest>,
    pub revoked_methods: Vec<String>,
    pub revoked_sessions: Vec<String>,
    pub registration_required: Vec<String>,
    pub notified: Vec<String>,
}

impl World {
    pub fn new(users: Vec<regain_core::User>) -> Self {
        Self {
            now: NOW,
            counter: 0,
            users,
            audit: Vec::new(),
            trust: trust(),
            taps: Vec::new(),
            revoked_methods: Vec::new(),
            revoked_sessions: Vec::new(),
            registration_required: Vec::new(),
            notified: Vec::new(),
        }
    }

    pub fn kinds(&self) -> Vec<(regain_core::AuditKind, String)> {
        self.audit.iter().map(|e| (e.kind, e.reason.clone())).collect()
    }
}

impl regain_core::Clock for World {
    fn now_unix(&self) -> u64 {
        self.now
    }
}

impl regain_core::Entropy for World {
    fn fill(&mut self, out: &mut [u8]) {
        self.counter = self.counter.wrapping_add(1);
        for (i, b) in out.iter_mut().enumerate() {
            *b = self.counter.wrapping_mul(31).wrapping_add(i as u8);
        }
    }
}

impl regain_core::Directory for World {
    fn find_user_by_login(
        &mut self,
        login: &regain_core::Login,
    ) -> Result<Option<regain_core::User>, regain_core::env::HostError> {
        Ok(self.users.iter().find(|u| u.login == login.as_str()).cloned())
    }

    fn count_users_by_name(&mut self, given: &str, family: &str) -> Result<u32, regain_core::env::HostError> {
        Ok(self
            .users
            .iter()
            .filter(|u| u.given_name.as_deref() == Some(given) && u.family_name.as_deref() == Some(family))
            .count() as u32)
    }
}

impl regain_core::env::Audit for World {
    fn record(&mut self, event: &regain_core::AuditEvent) -> Result<(), regain_core::env::HostError> {
        self.audit.push(event.clone());
        Ok(())
    }

    fn count_recent(
        &mut self,
        user_id: &str,
        windows: &[(regain_core::AuditKind, u64)],
    ) -> Result<Vec<u32>, regain_core::env::HostError> {
        let count =
            |kind| self.audit.iter().filter(|e| e.kind == kind && e.user_id.as_deref() == Some(user_id)).count();
        Ok(windows.iter().map(|(kind, _)| count(*kind) as u32).collect())
    }

    fn notify_access_restored(&mut self, user_id: &str) -> Result<(), regain_core::env::HostError> {
        self.notified.push(user_id.into());
        Ok(())
    }
}

impl regain_core::env::Credentials for World {
    fn issue_tap(
        &mut self,
        request: &regain_core::env::TapRequest,
    ) -> Result<regain_core::env::IssuedTap, regain_core::env::HostError> {
        self.taps.push(request.clone());
        Ok(regain_core::env::IssuedTap {
            secret: "A".repeat(usize::from(request.length)),
            expires_at: self.now + u64::from(request.lifetime_seconds),
        })
    }

    fn revoke_methods(&mut self, user_id: &str) -> Result<u32, regain_core::env::HostError> {
        self.revoked_methods.push(user_id.into());
        Ok(2)
    }

    fn require_registration(&mut self, user_id: &str) -> Result<(), regain_core::env::HostError> {
        self.registration_required.push(user_id.into());
        Ok(())
    }

    fn revoke_sessions(&mut self, user_id: &str) -> Result<u32, regain_core::env::HostError> {
        self.revoked_sessions.push(user_id.into());
        Ok(1)
    }
}

impl regain_core::env::FaceMatcher for World {
    fn compare(&mut self, portrait: &[u8], selfie_ref: &str) -> Result<regain_core::env::FaceResult, &'static str> {
        if portrait.is_empty() {
            return Err("invalid-image");
        }
        let mut parts = selfie_ref.split(':');
        match (parts.next(), parts.next().and_then(|s| s.parse::<u8>().ok()), parts.next()) {
            (Some("face"), Some(score), spoof) => {
                Ok(regain_core::env::FaceResult { score, live: spoof != Some("spoof") })
            }
            _ => Err("unknown-selfie"),
        }
    }
}

impl TrustSource for World {
    fn issuer_keys(&mut self, issuer: &str) -> Result<String, TrustFailure> {
        self.trust.issuer_keys(issuer)
    }

    fn status_list_token(&mut self, uri: &str) -> Result<String, TrustFailure> {
        self.trust.status_list_token(uri)
    }
}

impl SignatureVerifier for World {
    fn verify(&self, alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        RustCrypto.verify(alg, key, message, signature)
    }
}
