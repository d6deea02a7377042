//! The dev wallet: the wallet side of OpenID4VP (reading a presentation request URL and
//! answering it with a `direct_post` body), the holder's side of OpenID4VCI (credential
//! offers and proofs of possession), and the wallet's file of keys and credentials.
//!
//! This module is pure; [`client`] talks HTTP to issuers and verifiers, and [`web`] is the
//! wallet's small web page.

use crate::keys::SigningKey;
use crate::sdjwt::{Disclosure, Issued, present};
use regain_core::jose::b64url_decode;
use regain_core::openid4vp::{QUERY_ID, form_decode, percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::path::Path;

#[cfg(not(target_family = "wasm"))]
pub mod client;
#[cfg(not(target_family = "wasm"))]
pub mod web;

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

/// The credential offer scheme of OpenID4VCI.
pub const OFFER_SCHEME: &str = "openid-credential-offer://";
/// The pre-authorized code grant type.
pub const PRE_AUTHORIZED_GRANT: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";
/// The `typ` of an OpenID4VCI proof JWT.
pub const PROOF_TYP: &str = "openid4vci-proof+jwt";

/// Why the wallet could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// The request or offer URL is malformed; the text says how.
    #[error("malformed {0}")]
    Malformed(String),
    /// The request asks for something this wallet does not do.
    #[error("unsupported request: {0}")]
    Unsupported(String),
    /// No held credential answers the request.
    #[error("no credential in the wallet matches the request")]
    NoCredential,
    /// The wallet file cannot be read or written.
    #[error("wallet file `{path}`: {message}")]
    Store {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// An issuer or verifier failed or refused; the text says how.
    #[error("{0}")]
    Remote(String),
}

/// The parameters of a URL's query, decoded; `Err` names a parameter given twice or badly
/// encoded.
pub fn query_params(url: &str) -> Result<Vec<(String, String)>, WalletError> {
    let query = url.split_once('?').map_or(url, |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(key).ok_or_else(|| WalletError::Malformed("query: bad percent-encoding".into()))?;
        let value = form_decode(value)
            .ok_or_else(|| WalletError::Malformed(format!("query: bad percent-encoding of `{key}`")))?;
        if params.iter().any(|(k, _)| *k == key) {
            return Err(WalletError::Malformed(format!("query: `{key}` is given twice")));
        }
        params.push((key, value));
    }
    Ok(params)
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// An OpenID4VP request as the wallet understands it: unsigned, by value, `direct_post`,
/// a DCQL query for one SD-JWT VC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationRequest {
    /// The nonce, the KB-JWT's `nonce`, and `client_id` (the KB-JWT's `aud`) and `state`.
    pub request: Request,
    /// Where the answer is posted.
    pub response_uri: String,
    /// The DCQL credential query id.
    pub query_id: String,
    /// The credential types asked for; empty accepts any.
    pub vcts: Vec<String>,
    /// The top-level claims asked for; empty asks for every claim.
    pub claims: Vec<String>,
}

impl PresentationRequest {
    /// Parses and checks a request URL (any scheme and path: `openid4vp://?...` or the
    /// dev wallet's `/present?...`).
    pub fn parse(url: &str) -> Result<Self, WalletError> {
        let params = query_params(url)?;
        let get = |name: &str| {
            param(&params, name)
                .map(str::to_owned)
                .ok_or_else(|| WalletError::Malformed(format!("request: `{name}` is missing")))
        };
        if param(&params, "request_uri").is_some() || param(&params, "request").is_some() {
            return Err(WalletError::Unsupported("requests by reference or signed requests".into()));
        }
        if get("response_type")? != "vp_token" {
            return Err(WalletError::Unsupported("a `response_type` other than `vp_token`".into()));
        }
        if get("response_mode")? != "direct_post" {
            return Err(WalletError::Unsupported("a `response_mode` other than `direct_post`".into()));
        }
        let client_id = get("client_id")?;
        let response_uri = get("response_uri")?;
        // The `redirect_uri:` prefix: the client identifier is the response URI itself.
        if client_id.strip_prefix("redirect_uri:") != Some(response_uri.as_str()) {
            return Err(WalletError::Unsupported("a `client_id` that is not `redirect_uri:<response_uri>`".into()));
        }
        if !(response_uri.starts_with("https://") || response_uri.starts_with("http://")) {
            return Err(WalletError::Malformed("request: `response_uri` is not an HTTP(S) URL".into()));
        }
        let dcql: Value = serde_json::from_str(&get("dcql_query")?)
            .map_err(|_| WalletError::Malformed("request: `dcql_query` is not JSON".into()))?;
        let queries = dcql.get("credentials").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let [query] = queries else {
            return Err(WalletError::Unsupported("a DCQL query for other than exactly one credential".into()));
        };
        if query.get("format").and_then(Value::as_str) != Some("dc+sd-jwt") {
            return Err(WalletError::Unsupported("a credential format other than `dc+sd-jwt`".into()));
        }
        let query_id = query.get("id").and_then(Value::as_str).unwrap_or(QUERY_ID).to_owned();
        let vcts = query
            .pointer("/meta/vct_values")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let mut claims = Vec::new();
        for claim in query.get("claims").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            match claim.get("path").and_then(Value::as_array).map(Vec::as_slice) {
                Some([Value::String(name)]) => claims.push(name.clone()),
                _ => return Err(WalletError::Unsupported("claim paths deeper than one top-level claim".into())),
            }
        }
        let request = Request { client_id, nonce: get("nonce")?, state: get("state")? };
        Ok(Self { request, response_uri, query_id, vcts, claims })
    }

    /// The verifier as a person would name it: the response URI's origin.
    pub fn verifier(&self) -> &str {
        origin(&self.response_uri)
    }
}

/// `scheme://host[:port]` of a URL.
pub fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url.get(after_scheme..).and_then(|rest| rest.find('/')).map_or(url.len(), |i| after_scheme + i);
    url.get(..end).unwrap_or(url)
}

/// The well-known URL `suffix` (`openid-credential-issuer`...) of an identifier: inserted
/// between the origin and the path, as RFC 8414 and OpenID4VCI place it.
pub fn well_known(identifier: &str, suffix: &str) -> String {
    let origin = origin(identifier);
    let path = identifier.get(origin.len()..).unwrap_or_default().trim_end_matches('/');
    format!("{origin}/.well-known/{suffix}{path}")
}

/// The name of a disclosure's claim, for an object-property disclosure.
pub fn disclosure_claim(disclosure: &Disclosure) -> Option<(String, Value)> {
    let bytes = b64url_decode(&disclosure.encoded)?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Array(mut items) if items.len() == 3 => {
            let value = items.pop()?;
            let name = items.pop()?.as_str()?.to_owned();
            Some((name, value))
        }
        _ => None,
    }
}

/// The `direct_post` body answering `request` with `issued`: only the disclosures of the
/// claims asked for (all of them when the query names none), bound to the request.
pub fn answer_request(request: &PresentationRequest, issued: &Issued, holder: &SigningKey, iat: u64) -> String {
    let chosen: Vec<&Disclosure> = issued
        .disclosures
        .iter()
        .filter(|d| {
            request.claims.is_empty() || disclosure_claim(d).is_some_and(|(name, _)| request.claims.contains(&name))
        })
        .collect();
    let r = &request.request;
    let vp = present(issued, &chosen, holder, &r.nonce, &r.client_id, iat);
    let vp_token = json!({ request.query_id.clone(): [vp] }).to_string();
    format!("vp_token={}&state={}", percent_encode(&vp_token), percent_encode(&r.state))
}

/// A credential offer with a pre-authorized code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialOffer {
    /// The issuer identifier.
    pub credential_issuer: String,
    /// The offered credential configurations.
    pub configuration_ids: Vec<String>,
    /// The pre-authorized code.
    pub pre_authorized_code: String,
}

impl CredentialOffer {
    /// The offer JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "credential_issuer": self.credential_issuer,
            "credential_configuration_ids": self.configuration_ids,
            "grants": { PRE_AUTHORIZED_GRANT: { "pre-authorized_code": self.pre_authorized_code } },
        })
    }

    /// `openid-credential-offer://?credential_offer=...`, or `base` (the dev wallet's
    /// `/offer` page) with the same query.
    pub fn url(&self, base: &str) -> String {
        format!("{base}?credential_offer={}", percent_encode(&self.to_json().to_string()))
    }

    /// Reads an offer from a URL carrying `credential_offer` by value, or from its JSON.
    pub fn parse(text: &str) -> Result<Self, WalletError> {
        let text = text.trim();
        let json = if text.starts_with('{') {
            text.to_owned()
        } else {
            let params = query_params(text)?;
            if param(&params, "credential_offer_uri").is_some() {
                return Err(WalletError::Unsupported("offers by reference (`credential_offer_uri`)".into()));
            }
            param(&params, "credential_offer")
                .ok_or_else(|| WalletError::Malformed("offer: `credential_offer` is missing".into()))?
                .to_owned()
        };
        let offer: Value = serde_json::from_str(&json).map_err(|_| WalletError::Malformed("offer: not JSON".into()))?;
        let text_of = |pointer: &str| offer.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        let credential_issuer = text_of("/credential_issuer")
            .ok_or_else(|| WalletError::Malformed("offer: no `credential_issuer`".into()))?;
        let configuration_ids: Vec<String> = offer
            .get("credential_configuration_ids")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if configuration_ids.is_empty() {
            return Err(WalletError::Malformed("offer: no `credential_configuration_ids`".into()));
        }
        let grant = offer.get("grants").and_then(|g| g.get(PRE_AUTHORIZED_GRANT));
        let code = grant.and_then(|g| g.get("pre-authorized_code")).and_then(Value::as_str);
        let code = code.ok_or_else(|| WalletError::Unsupported("offers without a pre-authorized code".into()))?;
        if grant.and_then(|g| g.get("tx_code")).is_some() {
            return Err(WalletError::Unsupported("offers with a transaction code".into()));
        }
        Ok(Self { credential_issuer, configuration_ids, pre_authorized_code: code.to_owned() })
    }
}

/// The proof of possession of `holder` for the credential endpoint of `issuer`.
pub fn proof_jwt(holder: &SigningKey, issuer: &str, nonce: Option<&str>, iat: u64) -> String {
    let header = json!({ "typ": PROOF_TYP, "alg": holder.alg(), "jwk": holder.public_jwk(None) });
    let mut claims = json!({ "aud": issuer, "iat": iat });
    if let (Some(nonce), Some(map)) = (nonce, claims.as_object_mut()) {
        map.insert("nonce".into(), nonce.into());
    }
    crate::sign_jws(&header, &claims, holder)
}

/// A credential the wallet holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// The wallet's id for it.
    pub id: String,
    /// Its issuer.
    pub issuer: String,
    /// Its type.
    pub vct: String,
    /// When it was received (Unix seconds).
    pub received_at: u64,
    /// The SD-JWT with every disclosure, `<jwt>~<d1>~...~`.
    pub sd_jwt: String,
}

impl StoredCredential {
    /// Reads an issued SD-JWT VC (issuer, type) into a stored credential.
    pub fn new(id: String, sd_jwt: &str, received_at: u64) -> Result<Self, WalletError> {
        let issued = issued(sd_jwt)?;
        let payload = payload(&issued.jwt)?;
        let field = |name: &str| payload.get(name).and_then(Value::as_str).map(str::to_owned);
        let issuer = field("iss").ok_or_else(|| WalletError::Malformed("credential: no `iss`".into()))?;
        let vct = field("vct").ok_or_else(|| WalletError::Malformed("credential: no `vct`".into()))?;
        Ok(Self { id, issuer, vct, received_at, sd_jwt: issued.sd_jwt(&issued.all()) })
    }

    /// The credential as issued (JWT and disclosures).
    pub fn issued(&self) -> Result<Issued, WalletError> {
        issued(&self.sd_jwt)
    }

    /// Its disclosed claims, by name (for display: this is the holder's own data).
    pub fn claims(&self) -> Vec<(String, Value)> {
        self.issued().map(|i| i.disclosures.iter().filter_map(disclosure_claim).collect()).unwrap_or_default()
    }

    /// The `cnf.jwk` the credential is bound to.
    pub fn holder_jwk(&self) -> Option<Value> {
        let issued = self.issued().ok()?;
        payload(&issued.jwt).ok()?.get("cnf")?.get("jwk").cloned()
    }
}

/// Splits `<jwt>~<d1>~...~` into the issuer-signed JWT and its disclosures.
pub fn issued(sd_jwt: &str) -> Result<Issued, WalletError> {
    let mut parts = sd_jwt.trim().split('~');
    let jwt = parts.next().filter(|j| j.split('.').count() == 3);
    let jwt = jwt.ok_or_else(|| WalletError::Malformed("credential: not an SD-JWT".into()))?.to_owned();
    let disclosures = parts.filter(|d| !d.is_empty()).map(|d| Disclosure::from_encoded(d.to_owned())).collect();
    Ok(Issued { jwt, disclosures })
}

fn payload(jwt: &str) -> Result<Map<String, Value>, WalletError> {
    let part = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = b64url_decode(part).ok_or_else(|| WalletError::Malformed("credential: payload".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| WalletError::Malformed("credential: payload".into()))
}

/// The wallet's file: the holder key and the credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// DEV ONLY: the holder's private key as a JWK, in the clear.
    pub holder_key: Value,
    /// Held credentials, oldest first.
    pub credentials: Vec<StoredCredential>,
}

impl Store {
    /// A new wallet with `holder`'s key and no credentials.
    pub fn new(holder: &SigningKey) -> Self {
        Self { holder_key: holder.private_jwk().unwrap_or(Value::Null), credentials: Vec::new() }
    }

    /// The holder key.
    pub fn holder(&self) -> Result<SigningKey, WalletError> {
        SigningKey::from_private_jwk(&self.holder_key)
            .ok_or_else(|| WalletError::Malformed("wallet file: `holder_key` is not a P-256 private JWK".into()))
    }

    /// Reads the wallet file at `path`; `None` if there is none yet.
    pub fn read(path: &Path) -> Result<Option<Self>, WalletError> {
        let error = |message: String| WalletError::Store { path: path.display().to_string(), message };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error(e.to_string())),
        }
    }

    /// Writes the wallet file (readable by its owner only), replacing it atomically.
    pub fn write(&self, path: &Path) -> Result<(), WalletError> {
        let error = |message: String| WalletError::Store { path: path.display().to_string(), message };
        let text = serde_json::to_vec_pretty(self).map_err(|e| error(e.to_string()))?;
        let temporary = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary).map_err(|e| error(e.to_string()))?;
        std::io::Write::write_all(&mut file, &text).map_err(|e| error(e.to_string()))?;
        std::fs::rename(&temporary, path).map_err(|e| error(e.to_string()))
    }

    /// The newest credential that answers `request`, or the one with `id`.
    pub fn choose(&self, request: &PresentationRequest, id: Option<&str>) -> Result<&StoredCredential, WalletError> {
        self.credentials
            .iter()
            .rev()
            .filter(|c| id.is_none_or(|id| c.id == id))
            .find(|c| request.vcts.is_empty() || request.vcts.contains(&c.vct))
            .ok_or(WalletError::NoCredential)
    }
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

    #[test]
    fn well_known_urls_go_between_origin_and_path() {
        assert_eq!(
            well_known("http://127.0.0.1:8081", "openid-credential-issuer"),
            "http://127.0.0.1:8081/.well-known/openid-credential-issuer"
        );
        assert_eq!(
            well_known("https://idv.example/tenant/", "oauth-authorization-server"),
            "https://idv.example/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(origin("https://r.example:8443/recover/response"), "https://r.example:8443");
    }

    #[test]
    fn offers_round_trip() {
        let offer = CredentialOffer {
            credential_issuer: "http://127.0.0.1:8081".into(),
            configuration_ids: vec!["identity".into()],
            pre_authorized_code: "c-1".into(),
        };
        assert_eq!(CredentialOffer::parse(&offer.url(OFFER_SCHEME)), Ok(offer.clone()));
        assert_eq!(CredentialOffer::parse(&offer.to_json().to_string()), Ok(offer));
        assert!(CredentialOffer::parse("openid-credential-offer://?credential_offer_uri=x").is_err());
    }
}
