//! The wallet side of OpenID4VP: reading a presentation request URL and answering it with a
//! `direct_post` body.

use crate::keys::SigningKey;
use crate::sdjwt::{Issued, present};
use regain_core::openid4vp::{QUERY_ID, form_decode, percent_encode};
use serde_json::json;

/// The parameters of a request the wallet needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `client_id`, the audience of the key binding JWT.
    pub client_id: String,
    /// `nonce`.
    pub nonce: String,
    /// `state`, posted back.
    pub state: String,
}

/// Reads `client_id`, `nonce` and `state` from a request URL; `None` if one is missing.
pub fn read_request(url: &str) -> Option<Request> {
    let param = |name: &str| {
        url.split(['?', '&'])
            .find_map(|p| p.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
            .and_then(form_decode)
    };
    Some(Request { client_id: param("client_id")?, nonce: param("nonce")?, state: param("state")? })
}

/// The `direct_post` body carrying `presentation` for `request`.
pub fn direct_post(request: &Request, presentation: &str) -> String {
    let vp_token = json!({ QUERY_ID: [presentation] }).to_string();
    format!("vp_token={}&state={}", percent_encode(&vp_token), percent_encode(&request.state))
}

/// Presents every disclosure of `issued`, bound to `request`, signed by `holder` at `iat`.
pub fn answer(url: &str, issued: &Issued, holder: &SigningKey, iat: u64) -> Option<String> {
    let request = read_request(url)?;
    let vp = present(issued, &issued.all(), holder, &request.nonce, &request.client_id, iat);
    Some(direct_post(&request, &vp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parameters_it_needs() {
        let url = "openid4vp://?client_id=redirect_uri%3Ahttps%3A%2F%2Fr&nonce=abc&state=s-1&dcql_query=%7B%7D";
        let r = read_request(url).unwrap_or_else(|| Request {
            client_id: String::new(),
            nonce: String::new(),
            state: String::new(),
        });
        assert_eq!(r.client_id, "redirect_uri:https://r");
        assert_eq!(r.nonce, "abc");
        assert_eq!(r.state, "s-1");
        assert_eq!(read_request("openid4vp://?nonce=abc"), None);
        assert!(direct_post(&r, "p~").starts_with("vp_token=%7B%22identity%22%3A%5B%22p~%22%5D%7D&state=s-1"));
    }
}
