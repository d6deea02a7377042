#![doc = include_str!("../README.md")]

pub mod documents;
pub mod face;
pub mod fixtures;
pub mod html;
pub mod ida;
pub mod keys;
pub mod sdjwt;
#[cfg(not(target_family = "wasm"))]
pub mod service;
pub mod status;
pub mod wallet;

/// Serialises a JSON object, signs it and returns the compact JWS.
pub fn sign_jws(header: &serde_json::Value, claims: &serde_json::Value, key: &keys::SigningKey) -> String {
    use regain_core::jose::b64url_encode;
    let input =
        format!("{}.{}", b64url_encode(header.to_string().as_bytes()), b64url_encode(claims.to_string().as_bytes()));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&signature))
}
