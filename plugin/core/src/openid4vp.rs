//! OpenID for Verifiable Presentations 1.0, verifier side: the authorization request (DCQL,
//! fresh nonce, `direct_post`) and the parsing of the wallet's response.
//!
//! The request is unsigned and uses the `redirect_uri:` client identifier prefix, whose value
//! is the response URI; the KB-JWT's `aud` must then be that full prefixed string.

use crate::env::Entropy;
use crate::jose::b64url_encode;
use crate::secret::constant_time_eq;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Bytes of randomness in a nonce, `state` or response code (256 bits; the floor is 128).
const RANDOM_BYTES: usize = 32;

/// The DCQL credential query id Regain uses.
pub const QUERY_ID: &str = "identity";

/// Largest `direct_post` body accepted, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024;

/// A fresh random value, base64url: URL-safe ASCII as OpenID4VP requires for nonces.
pub fn random_token(entropy: &mut impl Entropy) -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    entropy.fill(&mut bytes);
    b64url_encode(&bytes)
}

/// A request ready to hand to the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationRequest {
    /// The request nonce; the KB-JWT must carry it, and it is accepted once.
    pub nonce: String,
    /// The `state` the wallet posts back; binds the response to this flow.
    pub state: String,
    /// `client_id`, with its prefix; also the expected KB-JWT `aud`.
    pub client_id: String,
    /// The DCQL query.
    pub dcql_query: Value,
    /// The request as a URL for a same-device redirect or a cross-device QR code.
    pub url: String,
}

/// What to ask for.
#[derive(Debug, Clone)]
pub struct RequestParams<'a> {
    /// Where the wallet posts its response (`response_uri`).
    pub response_uri: &'a str,
    /// Accepted credential types.
    pub vcts: &'a [String],
    /// Claims to disclose, as top-level claim names.
    pub claims: &'a [&'a str],
    /// The wallet's authorization endpoint; `openid4vp://` when the wallet is unknown.
    pub wallet: &'a str,
}

/// Percent-encodes for a URL query component (RFC 3986 unreserved characters kept).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Decodes an `application/x-www-form-urlencoded` value; `None` for broken escapes or UTF-8.
pub fn form_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hi = char::from(input.next()?).to_digit(16)?;
                let lo = char::from(input.next()?).to_digit(16)?;
                bytes.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

/// Builds a request for an SD-JWT VC with the given claims, with a fresh nonce and state.
pub fn build_request(entropy: &mut impl Entropy, params: &RequestParams<'_>) -> PresentationRequest {
    let nonce = random_token(entropy);
    let state = random_token(entropy);
    let client_id = format!("redirect_uri:{}", params.response_uri);
    let claims: Vec<Value> = params.claims.iter().map(|name| json!({ "path": [name] })).collect();
    let dcql_query = json!({
        "credentials": [{
            "id": QUERY_ID,
            "format": "dc+sd-jwt",
            "meta": { "vct_values": params.vcts },
            "claims": claims,
        }]
    });
    let url = format!(
        "{}?client_id={}&response_type=vp_token&response_mode=direct_post&response_uri={}&nonce={}&state={}&dcql_query={}",
        params.wallet,
        percent_encode(&client_id),
        percent_encode(params.response_uri),
        nonce,
        state,
        percent_encode(&dcql_query.to_string()),
    );
    PresentationRequest { nonce, state, client_id, dcql_query, url }
}

/// Why a wallet response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The body is larger than [`MAX_RESPONSE_BYTES`].
    #[error("response body is too large")]
    TooLarge,
    /// The body is not form-encoded, or a parameter appears twice or is missing.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The `state` is not this flow's.
    #[error("response `state` does not match the request")]
    StateMismatch,
    /// The wallet reported an error instead of a presentation.
    #[error("wallet returned error `{0}`")]
    WalletError(String),
    /// `vp_token` has no presentation for Regain's query, or more than one.
    #[error("`vp_token` must hold exactly one presentation for query `identity`")]
    NoPresentation,
}

/// Extracts the single presentation from a `direct_post` body, after checking `state`.
pub fn parse_direct_post(body: &str, expected_state: &str) -> Result<String, ResponseError> {
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(ResponseError::TooLarge);
    }
    let (mut vp_token, mut state, mut error) = (None, None, None);
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or(ResponseError::Malformed("parameter without `=`"))?;
        let value = form_decode(value).ok_or(ResponseError::Malformed("bad percent-encoding"))?;
        let slot = match key {
            "vp_token" => &mut vp_token,
            "state" => &mut state,
            "error" => &mut error,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(ResponseError::Malformed("parameter repeated"));
        }
    }
    let state = state.ok_or(ResponseError::Malformed("`state` missing"))?;
    if !constant_time_eq(state.as_bytes(), expected_state.as_bytes()) {
        return Err(ResponseError::StateMismatch);
    }
    if let Some(error) = error {
        return Err(ResponseError::WalletError(error.chars().take(64).collect()));
    }
    let vp_token = vp_token.ok_or(ResponseError::Malformed("`vp_token` missing"))?;
    let token: Value =
        crate::json::parse(vp_token.as_bytes()).map_err(|_| ResponseError::Malformed("`vp_token` is not JSON"))?;
    match token.get(QUERY_ID).and_then(Value::as_array).map(Vec::as_slice) {
        Some([Value::String(presentation)]) => Ok(presentation.clone()),
        _ => Err(ResponseError::NoPresentation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u8);

    impl Entropy for Counter {
        fn fill(&mut self, out: &mut [u8]) {
            self.0 = self.0.wrapping_add(1);
            out.fill(self.0);
        }
    }

    fn request() -> PresentationRequest {
        let vcts = vec!["https://idv.example/credentials/identity".to_owned()];
        build_request(
            &mut Counter(0),
            &RequestParams {
                response_uri: "https://recovery.example.org/vp/response",
                vcts: &vcts,
                claims: &["given_name", "family_name"],
                wallet: "openid4vp://",
            },
        )
    }

    #[test]
    fn the_request_carries_a_fresh_nonce_state_and_dcql() {
        let r = request();
        assert_eq!(r.nonce.len(), 43, "256 bits in unpadded base64url");
        assert_ne!(r.nonce, r.state);
        assert_eq!(r.client_id, "redirect_uri:https://recovery.example.org/vp/response");
        assert_eq!(r.dcql_query["credentials"][0]["format"], "dc+sd-jwt");
        assert_eq!(r.dcql_query["credentials"][0]["claims"][1]["path"][0], "family_name");
        assert!(r.url.starts_with("openid4vp://?client_id=redirect_uri%3Ahttps%3A%2F%2Frecovery.example.org"));
        assert!(r.url.contains("&response_mode=direct_post&"));
        assert!(r.url.contains(&format!("&nonce={}&", r.nonce)));
        let dcql = r.url.split("dcql_query=").nth(1).and_then(form_decode).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&dcql).unwrap(), r.dcql_query);
    }

    #[test]
    fn the_response_yields_the_one_presentation() {
        let r = request();
        let token = percent_encode(&json!({ "identity": ["eyJ.x~d~kb"] }).to_string());
        let body = format!("vp_token={token}&state={}", r.state);
        assert_eq!(parse_direct_post(&body, &r.state), Ok("eyJ.x~d~kb".into()));
    }

    #[test]
    fn bad_responses_are_refused() {
        let r = request();
        let one = percent_encode(&json!({ "identity": ["p"] }).to_string());
        let two = percent_encode(&json!({ "identity": ["p", "q"] }).to_string());
        let other = percent_encode(&json!({ "other": ["p"] }).to_string());
        let s = &r.state;
        assert_eq!(parse_direct_post(&format!("vp_token={one}&state=forged"), s), Err(ResponseError::StateMismatch));
        assert_eq!(parse_direct_post(&format!("vp_token={one}"), s), Err(ResponseError::Malformed("`state` missing")));
        assert_eq!(
            parse_direct_post(&format!("vp_token={one}&vp_token={one}&state={s}"), s),
            Err(ResponseError::Malformed("parameter repeated"))
        );
        assert_eq!(parse_direct_post(&format!("vp_token={two}&state={s}"), s), Err(ResponseError::NoPresentation));
        assert_eq!(parse_direct_post(&format!("vp_token={other}&state={s}"), s), Err(ResponseError::NoPresentation));
        assert_eq!(
            parse_direct_post(&format!("vp_token=%ZZ&state={s}"), s),
            Err(ResponseError::Malformed("bad percent-encoding"))
        );
        assert_eq!(
            parse_direct_post(&format!("error=access_denied&state={s}"), s),
            Err(ResponseError::WalletError("access_denied".into()))
        );
        assert_eq!(parse_direct_post(&"a".repeat(MAX_RESPONSE_BYTES + 1), s), Err(ResponseError::TooLarge));
    }

    #[test]
    fn percent_encoding_round_trips() {
        let text = "José & {\"a\": [1]} ~ ü/?=";
        assert_eq!(form_decode(&percent_encode(text)).as_deref(), Some(text));
        assert_eq!(form_decode("a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(form_decode("%E2%28"), None, "invalid UTF-8");
    }
}
