//! What the end-to-end tests share: ports, start-up guards, reading pages, and a person
//! verified at the dev IDV with the credential in a dev wallet.

#![allow(dead_code, reason = "each test binary uses part of the support")]

pub mod keycloak;

use base64::Engine as _;
use regain_dev_idv::fixtures::Fixtures;
use regain_dev_idv::wallet::client::Wallet;
use std::path::Path;
use std::time::Duration;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A browser: keeps cookies, shows each redirect to the test instead of following it.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap()
}

/// Waits until every URL answers with success (a start-up guard, not a speed assertion).
pub async fn wait_until_up(urls: &[String]) {
    for url in urls {
        let mut up = false;
        for _ in 0..900 {
            if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "{url} did not come up");
    }
}

/// The text of the element with `id` (`href` for links), unescaped.
pub fn element(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let tag = page.get(page.get(..at)?.rfind('<')?..)?;
    let text = if tag.starts_with("<a") {
        tag.split_once("href=\"")?.1.split_once('"')?.0
    } else {
        tag.split_once('>')?.1.split_once('<')?.0
    };
    Some(unescape(text))
}

/// HTML character references as the servers under test write them.
pub fn unescape(text: &str) -> String {
    text.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&#61;", "=")
}

/// The holder of `document`, verified at the dev IDV at `idv` with the selfie `selfie`, with
/// the issued credential in a new wallet stored at `wallet`.
pub async fn verified(idv: &str, document: &str, selfie: &str, wallet: &Path) -> Wallet {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{idv}/verify"))
        .header("accept", "application/json")
        .form(&[("document", document), ("selfie", selfie)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["passed"], true, "{answer}");
    let wallet = Wallet::open(wallet).unwrap();
    wallet.receive(answer["credential_offer_url"].as_str().unwrap()).await.unwrap();
    wallet
}

/// A selfie fixture as the selfie form posts it (a `data:` URL).
pub fn selfie_data(selfie: &str) -> String {
    let image = Fixtures::generate().selfie(selfie).unwrap().image.clone();
    format!("data:image/x-portable-graymap;base64,{}", base64::engine::general_purpose::STANDARD.encode(image))
}

/// A mail relay that keeps every message it is given, as the text after `DATA`.
pub struct MailCatcher {
    /// `host:port` to give as the relay.
    pub relay: String,
    /// The messages so far.
    pub messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl MailCatcher {
    /// A catcher on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = listener.local_addr().unwrap().to_string();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = messages.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, keep.clone()));
            }
        });
        Self { relay, messages }
    }

    /// The first message that mentions every one of `words`, waiting up to a minute.
    pub async fn wait_for(&self, words: &[&str]) -> String {
        for _ in 0..600 {
            let found = self.messages.lock().unwrap().iter().find(|m| words.iter().all(|w| m.contains(w))).cloned();
            if let Some(message) = found {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no message with {words:?} among {:?}", self.messages.lock().unwrap());
    }
}

async fn smtp_session(stream: tokio::net::TcpStream, keep: std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    if write.write_all(b"220 catcher\r\n").await.is_err() {
        return;
    }
    let mut data: Option<String> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let reply: &[u8] = if let Some(body) = data.as_mut() {
            if line == "." {
                keep.lock().unwrap().push(std::mem::take(body));
                data = None;
                b"250 kept\r\n"
            } else {
                body.push_str(line.strip_prefix('.').unwrap_or(&line));
                body.push('\n');
                continue;
            }
        } else {
            match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                Some("DATA") => {
                    data = Some(String::new());
                    b"354 go ahead\r\n"
                }
                Some("QUIT") => {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => b"250 ok\r\n",
            }
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
