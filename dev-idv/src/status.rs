//! Token Status List tokens (`statuslist+jwt`).

use crate::keys::SigningKey;
use crate::sign_jws;
use regain_core::jose::b64url_encode;
use serde_json::json;

/// Packs `statuses` (one value per entry, each below `2^bits`) least significant bit first,
/// as the Token Status List requires.
pub fn pack(statuses: &[u8], bits: u8) -> Vec<u8> {
    let per_byte = usize::from(8 / bits);
    let mut bytes = vec![0u8; statuses.len().div_ceil(per_byte)];
    for (i, status) in statuses.iter().enumerate() {
        let shift = (i % per_byte) * usize::from(bits);
        if let Some(byte) = bytes.get_mut(i / per_byte) {
            *byte |= status << shift;
        }
    }
    bytes
}

/// `lst`: base64url of the ZLIB-compressed packed list.
pub fn encode_list(statuses: &[u8], bits: u8) -> String {
    b64url_encode(&miniz_oxide::deflate::compress_to_vec_zlib(&pack(statuses, bits), 9))
}

/// A signed status list token for `uri`.
pub fn token(
    key: &SigningKey,
    kid: Option<&str>,
    uri: &str,
    statuses: &[u8],
    bits: u8,
    iat: u64,
    exp: Option<u64>,
) -> String {
    let mut header = json!({ "typ": "statuslist+jwt", "alg": key.alg() });
    if let (Some(kid), Some(h)) = (kid, header.as_object_mut()) {
        h.insert("kid".into(), kid.into());
    }
    let mut claims = json!({
        "sub": uri,
        "iat": iat,
        "ttl": 300,
        "status_list": { "bits": bits, "lst": encode_list(statuses, bits) },
    });
    if let (Some(exp), Some(c)) = (exp, claims.as_object_mut()) {
        c.insert("exp".into(), exp.into());
    }
    sign_jws(&header, &claims, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_like_the_draft() {
        assert_eq!(pack(&[1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1], 1), vec![0xb9, 0xa3]);
        assert_eq!(pack(&[1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3], 2), vec![0xc9, 0x44, 0xf9]);
    }
}
