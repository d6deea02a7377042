//! The OIDC4IDA side of the dev IDV: ID tokens carrying `verified_claims`, as a provider
//! returns them after checking a document and comparing the face.

use crate::keys::SigningKey;
use crate::sign_jws;
use serde_json::{Map, Value, json};

/// What the dev IDV asserts about a verified person.
#[derive(Debug, Clone)]
pub struct Assertion<'a> {
    /// The provider's issuer identifier (`iss`).
    pub issuer: &'a str,
    /// The key id of the signing key, for the header's `kid`.
    pub kid: &'a str,
    /// The relying party's client id (`aud`).
    pub client_id: &'a str,
    /// The nonce of the authorization request.
    pub nonce: &'a str,
    /// Pairwise or public subject identifier.
    pub subject: &'a str,
    /// Issuance time; the token expires ten minutes later.
    pub iat: u64,
    /// `verification.trust_framework`.
    pub trust_framework: &'a str,
    /// The evidence's face comparison `check_method` (`bvr` for a remote biometric
    /// comparison); `None` leaves the comparison out of the evidence.
    pub face_method: Option<&'a str>,
    /// The verified claims (`given_name`, `family_name`, `birthdate`...).
    pub claims: Vec<(&'a str, Value)>,
}

impl Assertion<'_> {
    /// The ID token payload.
    pub fn payload(&self) -> Value {
        let mut check_details = vec![json!({ "check_method": "vri", "organization": "regain-dev-idv" })];
        if let Some(method) = self.face_method {
            check_details.push(json!({ "check_method": method, "organization": "regain-dev-idv" }));
        }
        let claims: Map<String, Value> = self.claims.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        json!({
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.client_id,
            "nonce": self.nonce,
            "iat": self.iat,
            "exp": self.iat + 600,
            "verified_claims": {
                "verification": {
                    "trust_framework": self.trust_framework,
                    "time": self.iat,
                    "evidence": [{
                        "type": "document",
                        "check_details": check_details,
                        "document_details": { "type": "passport" },
                    }],
                },
                "claims": claims,
            },
        })
    }

    /// Signs [`Assertion::payload`] (or an edited payload) as an ID token.
    pub fn sign(&self, payload: &Value, key: &SigningKey) -> String {
        sign_jws(&json!({ "typ": "JWT", "alg": key.alg(), "kid": self.kid }), payload, key)
    }

    /// The signed ID token.
    pub fn id_token(&self, key: &SigningKey) -> String {
        self.sign(&self.payload(), key)
    }
}
