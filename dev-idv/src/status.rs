//! Token Status List tokens (`statuslist+jwt`) and W3C Bitstring Status List credentials.

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

/// Entries of a W3C Bitstring Status List: the specification's minimum, 16 KiB of bits.
pub const BITSTRING_ENTRIES: usize = 131_072;

/// CRC-32 (IEEE), for the GZIP trailer.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// `encodedList`: multibase `u` + base64url of the GZIP-compressed bitstring, with the
/// entries in `set` at 1 (index 0 is the most significant bit of the first byte).
pub fn encode_bitstring(set: &[u64]) -> String {
    let mut bits = vec![0u8; BITSTRING_ENTRIES / 8];
    for &index in set {
        if let Some(byte) = usize::try_from(index / 8).ok().and_then(|i| bits.get_mut(i)) {
            *byte |= 0x80 >> (index % 8);
        }
    }
    let mut gzip = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    gzip.extend(miniz_oxide::deflate::compress_to_vec(&bits, 9));
    gzip.extend(crc32(&bits).to_le_bytes());
    gzip.extend(u32::try_from(bits.len()).unwrap_or(u32::MAX).to_le_bytes());
    format!("u{}", b64url_encode(&gzip))
}

/// A `BitstringStatusListCredential` secured as a JWT (`vc+jwt`), listing `set` for
/// `purpose` (`revocation` or `suspension`).
pub fn bitstring_credential(
    key: &SigningKey,
    kid: &str,
    issuer: &str,
    uri: &str,
    purpose: &str,
    set: &[u64],
    valid_until: Option<&str>,
) -> String {
    let mut credential = json!({
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": uri,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer,
        "validFrom": "2026-01-01T00:00:00Z",
        "credentialSubject": {
            "id": format!("{uri}#list"),
            "type": "BitstringStatusList",
            "statusPurpose": purpose,
            "encodedList": encode_bitstring(set),
        },
    });
    if let (Some(until), Some(c)) = (valid_until, credential.as_object_mut()) {
        c.insert("validUntil".into(), until.into());
    }
    sign_jws(&json!({ "typ": "vc+jwt", "alg": key.alg(), "kid": kid }), &credential, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitstrings_decode_with_the_verifier() {
        let list = encode_bitstring(&[3, 131_071]);
        assert_eq!(regain_core::status::bitstring_status(&list, 3, 1), Ok(1));
        assert_eq!(regain_core::status::bitstring_status(&list, 4, 1), Ok(0));
        assert_eq!(regain_core::status::bitstring_status(&list, 131_071, 1), Ok(1));
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn packs_like_the_draft() {
        assert_eq!(pack(&[1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1], 1), vec![0xb9, 0xa3]);
        assert_eq!(pack(&[1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3], 2), vec![0xc9, 0x44, 0xf9]);
    }
}
