//! The published example of RFC 9901 §5 (issuer key of Appendix A.5), verified as a
//! generic SD-JWT with `typ` `example+sd-jwt`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a failing test panics with the reason")]

mod support;

use regain_core::sdjwt::{self, Expectations, TrustFailure, TrustSource};
use serde_json::json;
use support::{ALGS, RustCrypto};

const ISSUER: &str = "https://issuer.example.com";
const ISSUER_JWK: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"b28d4MwZMjw8-00CG4xfnn9SLMVMM19SlqZpVb_uNtQ","y":"Xv5zWwuoaTgdS6hV43yI6gBwTnjukmFQQnJ_kCxzqk8"}]}"#;

const JWT: &str = concat!(
    "eyJhbGciOiAiRVMyNTYiLCAidHlwIjogImV4YW1wbGUrc2Qtand0In0.",
    "eyJfc2QiOiBbIkNyUWU3UzVrcUJBSHQtbk1ZWGdjNmJkdDJTSDVhVFkxc1VfTS1QZ2tq",
    "UEkiLCAiSnpZakg0c3ZsaUgwUjNQeUVNZmVadTZKdDY5dTVxZWhabzdGN0VQWWxTRSIs",
    "ICJQb3JGYnBLdVZ1Nnh5bUphZ3ZrRnNGWEFiUm9jMkpHbEFVQTJCQTRvN2NJIiwgIlRH",
    "ZjRvTGJnd2Q1SlFhSHlLVlFaVTlVZEdFMHc1cnREc3JaemZVYW9tTG8iLCAiWFFfM2tQ",
    "S3QxWHlYN0tBTmtxVlI2eVoyVmE1TnJQSXZQWWJ5TXZSS0JNTSIsICJYekZyendzY002",
    "R242Q0pEYzZ2Vks4QmtNbmZHOHZPU0tmcFBJWmRBZmRFIiwgImdiT3NJNEVkcTJ4Mkt3",
    "LXc1d1BFemFrb2I5aFYxY1JEMEFUTjNvUUw5Sk0iLCAianN1OXlWdWx3UVFsaEZsTV8z",
    "Smx6TWFTRnpnbGhRRzBEcGZheVF3TFVLNCJdLCAiaXNzIjogImh0dHBzOi8vaXNzdWVy",
    "LmV4YW1wbGUuY29tIiwgImlhdCI6IDE2ODMwMDAwMDAsICJleHAiOiAxODgzMDAwMDAw",
    "LCAic3ViIjogInVzZXJfNDIiLCAibmF0aW9uYWxpdGllcyI6IFt7Ii4uLiI6ICJwRm5k",
    "amtaX1ZDem15VGE2VWpsWm8zZGgta284YUlLUWM5RGxHemhhVllvIn0sIHsiLi4uIjog",
    "IjdDZjZKa1B1ZHJ5M2xjYndIZ2VaOGtoQXYxVTFPU2xlclAwVmtCSnJXWjAifV0sICJf",
    "c2RfYWxnIjogInNoYS0yNTYiLCAiY25mIjogeyJqd2siOiB7Imt0eSI6ICJFQyIsICJj",
    "cnYiOiAiUC0yNTYiLCAieCI6ICJUQ0FFUjE5WnZ1M09IRjRqNFc0dmZTVm9ISVAxSUxp",
    "bERsczd2Q2VHZW1jIiwgInkiOiAiWnhqaVdXYlpNUUdIVldLVlE0aGJTSWlyc1ZmdWVj",
    "Q0U2dDRqVDlGMkhaUSJ9fX0.",
    "MczwjBFGtzf-6WMT-hIvYbkb11NrV1WMO-jTijpMPNbswNzZ87wY2uHz",
    "-CXo6R04b7jYrpj9mNRAvVssXou1iw",
);

const GIVEN_NAME: &str = "WyIyR0xDNDJzS1F2ZUNmR2ZyeU5STjl3IiwgImdpdmVuX25hbWUiLCAiSm9obiJd";
const FAMILY_NAME: &str = "WyJlbHVWNU9nM2dTTklJOEVZbnN4QV9BIiwgImZhbWlseV9uYW1lIiwgIkRvZSJd";
const EMAIL: &str = "WyI2SWo3dE0tYTVpVlBHYm9TNXRtdlZBIiwgImVtYWlsIiwgImpvaG5kb2VAZXhhbXBsZS5jb20iXQ";
const PHONE: &str = "WyJlSThaV205UW5LUHBOUGVOZW5IZGhRIiwgInBob25lX251bWJlciIsICIrMS0yMDItNTU1LTAxMDEiXQ";
const PHONE_VERIFIED: &str = "WyJRZ19PNjR6cUF4ZTQxMmExMDhpcm9BIiwgInBob25lX251bWJlcl92ZXJpZmllZCIsIHRydWVd";
const ADDRESS: &str = "WyJBSngtMDk1VlBycFR0TjRRTU9xUk9BIiwgImFkZHJlc3MiLCB7InN0cmVldF9hZGRyZXNzIjogIjEyMyBNYWluIFN0IiwgImxvY2FsaXR5IjogIkFueXRvd24iLCAicmVnaW9uIjogIkFueXN0YXRlIiwgImNvdW50cnkiOiAiVVMifV0";
const BIRTHDATE: &str = "WyJQYzMzSk0yTGNoY1VfbEhnZ3ZfdWZRIiwgImJpcnRoZGF0ZSIsICIxOTQwLTAxLTAxIl0";
const UPDATED_AT: &str = "WyJHMDJOU3JRZmpGWFE3SW8wOXN5YWpBIiwgInVwZGF0ZWRfYXQiLCAxNTcwMDAwMDAwXQ";
const NATIONALITY_US: &str = "WyJsa2x4RjVqTVlsR1RQVW92TU5JdkNBIiwgIlVTIl0";
const NATIONALITY_DE: &str = "WyJuUHVvUW5rUkZxM0JJZUFtN0FuWEZBIiwgIkRFIl0";

struct Rfc;

impl TrustSource for Rfc {
    fn issuer_keys(&mut self, issuer: &str) -> Result<String, TrustFailure> {
        if issuer == ISSUER { Ok(ISSUER_JWK.into()) } else { Err(TrustFailure::UnknownIssuer) }
    }

    fn status_list_token(&mut self, _uri: &str) -> Result<String, TrustFailure> {
        Err(TrustFailure::Unavailable("no status lists in the example".into()))
    }
}

/// The example's verifier: nonce, audience and time of RFC 9901 §5, no binding or status.
fn expectations() -> Expectations<'static> {
    Expectations {
        nonce: "1234567890",
        audience: "https://verifier.example.org",
        vcts: &[],
        algs: &ALGS,
        now: 1_683_000_001,
        skew: 60,
        kb_max_age: 300,
        holder_binding: false,
        require_status: false,
        require_expiry: true,
    }
}

fn verify(disclosures: &[&str]) -> Result<sdjwt::VerifiedSdJwt, String> {
    let presentation = format!("{JWT}~{}", disclosures.iter().map(|d| format!("{d}~")).collect::<String>());
    let expect = expectations();
    sdjwt::verify_sd_jwt(&presentation, "example+sd-jwt", &expect, &mut Rfc, &RustCrypto).map_err(|r| r.code().into())
}

#[test]
fn the_issued_sd_jwt_with_every_disclosure() {
    let all = [
        GIVEN_NAME,
        FAMILY_NAME,
        EMAIL,
        PHONE,
        PHONE_VERIFIED,
        ADDRESS,
        BIRTHDATE,
        UPDATED_AT,
        NATIONALITY_US,
        NATIONALITY_DE,
    ];
    let sd = verify(&all).unwrap();
    assert_eq!(sd.issuer, ISSUER);
    let c = &sd.claims;
    assert_eq!(c["sub"], "user_42");
    assert_eq!(c["given_name"], "John");
    assert_eq!(c["family_name"], "Doe");
    assert_eq!(c["email"], "johndoe@example.com");
    assert_eq!(c["phone_number"], "+1-202-555-0101");
    assert_eq!(c["phone_number_verified"], true);
    assert_eq!(c["birthdate"], "1940-01-01");
    assert_eq!(c["updated_at"], 1_570_000_000);
    assert_eq!(
        c["address"],
        json!({"street_address": "123 Main St", "locality": "Anytown", "region": "Anystate", "country": "US"})
    );
    assert_eq!(c["nationalities"], json!(["US", "DE"]));
    assert!(!c.contains_key("_sd") && !c.contains_key("_sd_alg"));
}

#[test]
fn the_presentation_of_section_5_2_discloses_only_its_selection() {
    let sd = verify(&[FAMILY_NAME, ADDRESS, GIVEN_NAME, NATIONALITY_US]).unwrap();
    assert_eq!(sd.claims["nationalities"], json!(["US"]));
    for hidden in ["email", "phone_number", "phone_number_verified", "birthdate", "updated_at"] {
        assert!(!sd.claims.contains_key(hidden), "{hidden} leaked");
    }
}

#[test]
fn no_disclosures_leave_only_the_plain_claims() {
    let sd = verify(&[]).unwrap();
    assert_eq!(sd.claims["nationalities"], json!([]));
    assert!(!sd.claims.contains_key("given_name"));
}

#[test]
fn the_example_rejects_what_the_rfc_says_to_reject() {
    assert_eq!(verify(&[GIVEN_NAME, GIVEN_NAME]).unwrap_err(), "disclosure-duplicate");
    let unreferenced = "WyJkdW1teXNhbHQiLCAiZm9vIiwgImJhciJd"; // ["dummysalt", "foo", "bar"]
    assert_eq!(verify(&[GIVEN_NAME, unreferenced]).unwrap_err(), "disclosure-unreferenced");
    // The same JWT under the SD-JWT VC profile is refused: its `typ` is not `dc+sd-jwt`.
    let expect = expectations();
    let err = sdjwt::verify(&format!("{JWT}~"), &expect, &mut Rfc, &RustCrypto).unwrap_err();
    assert_eq!(err.code(), "typ-invalid");
}
