//! What the Regain hops add to a login through Keycloak, measured against a real Keycloak with
//! the provider installed (`bash scripts/keycloak start`, then
//! `REGAIN_TEST_KEYCLOAK_URL=... REGAIN_TEST_KEYCLOAK_ADMIN_PASSWORD=... cargo bench -p
//! regain-demo --bench keycloak_overhead`).
//!
//! Each iteration times, request by request, a plain login (login page, username, password,
//! one-time code) and the hops a recovery adds around the identity check: Keycloak's
//! "Recover your account" redirect with its signed request, the service checking that
//! request, the pass issued through the provider's endpoint, the signed result taken back
//! by Keycloak, and the sign-in with the pass. The identity check itself (wallet, selfie,
//! plugin) is the person's time and the server benchmark's subject, not part of these hops.
//! Prints a Markdown table of p50 and p95 per step; `REGAIN_BENCH_ITERATIONS` sets the count
//! (default 200, 20 with `REGAIN_BENCH_QUICK=1`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a measuring tool that stops with the reason"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::keycloak::{Page, Person, World, claims, get, otp, post, post_once};

const BASE: Person =
    Person { login: "base", given_name: "Base", family_name: "Line", birthdate: "1980-01-01", totp: "base-otp-secret" };
const ROSA: Person =
    Person { login: "rosa", given_name: "Rosa", family_name: "Lind", birthdate: "1981-02-02", totp: "rosa-otp-secret" };

/// Steps in report order: the plain login first, then the Regain hops.
const LOGIN: [&str; 4] = ["login page", "username", "password", "one-time code"];
const HOPS: [&str; 5] = [
    "Keycloak → service (signed request, redirect)",
    "service checks the request, start page",
    "pass issued (service → Keycloak endpoint)",
    "service → Keycloak (signed result checked, pass form)",
    "sign-in with the pass",
];

async fn timed<T>(
    samples: &mut BTreeMap<&'static str, Vec<Duration>>,
    step: &'static str,
    f: impl Future<Output = T>,
) -> T {
    let start = Instant::now();
    let out = f.await;
    samples.entry(step).or_default().push(start.elapsed());
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let quick = std::env::var("REGAIN_BENCH_QUICK").is_ok_and(|v| v == "1");
    let iterations: usize = std::env::var("REGAIN_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20 } else { 200 });
    let world = World::start(&[&BASE, &ROSA]).await;
    // The baseline signs in many times within one 30-second period (Keycloak updates the OTP
    // policy only as a whole).
    world
        .kc
        .admin(
            reqwest::Method::PUT,
            &format!("/{}", world.realm),
            Some(json!({ "otpPolicyType": "totp", "otpPolicyAlgorithm": "HmacSHA1", "otpPolicyDigits": 6,
            "otpPolicyPeriod": 30, "otpPolicyLookAheadWindow": 1, "otpPolicyInitialCounter": 0,
            "otpPolicyCodeReusable": true })),
        )
        .await;
    let recover = world.kc.execution(&world.realm, "regain-recover").await;
    let client_secret = std::fs::read_to_string(world.dir.path().join("client-secret")).unwrap();
    let shared = regain_server::keycloak::SharedSecret::new(support::keycloak::SHARED_SECRET).unwrap();
    let http = reqwest::Client::new();
    let mut samples: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut logins = Vec::new();
    let mut hops = Vec::new();

    for i in 0..iterations {
        // A plain login with password and one-time code.
        let b = support::browser();
        let start = Instant::now();
        let page = timed(&mut samples, LOGIN[0], get(&b, &world.authorize_url())).await;
        let page = timed(&mut samples, LOGIN[1], post(&b, &page, "kc-form-login", &[("username", BASE.login)])).await;
        let page = timed(
            &mut samples,
            LOGIN[2],
            post(&b, &page, "kc-form-login", &[("password", support::keycloak::PASSWORD)]),
        )
        .await;
        let code = otp(BASE.totp);
        let page = timed(&mut samples, LOGIN[3], post(&b, &page, "kc-otp-login-form", &[("otp", &code)])).await;
        assert!(page.callback.is_some(), "iteration {i}: the login did not reach the client: {}", page.body);
        logins.push(start.elapsed());

        // The recovery's hops, up to the required action after the pass.
        let b = support::browser();
        let page = get(&b, &world.authorize_url()).await;
        let page = post(&b, &page, "kc-form-login", &[("username", ROSA.login)]).await;
        let page = post(&b, &page, "kc-select-try-another-way-form", &[("tryAnotherWay", "on")]).await;
        let mut added = Duration::ZERO;
        let start = Instant::now();
        let redirect = timed(
            &mut samples,
            HOPS[0],
            post_once(&b, &page, "kc-select-credential-form", &[("authenticationExecution", &recover)]),
        )
        .await;
        let location = redirect.headers()["location"].to_str().unwrap().to_owned();
        let page = timed(&mut samples, HOPS[1], get(&b, &location)).await;
        added += start.elapsed();
        assert!(page.body.contains("Start recovery"), "{}", page.body);
        let token = location.split_once("request=").unwrap().1;
        let request = claims(token);

        let service_token = service_token(&http, &world, &client_secret).await;
        let start = Instant::now();
        let issued: Value = timed(&mut samples, HOPS[2], async {
            http.post(format!("{}/regain/users/{}/tap", world.realm_url(), request["sub"].as_str().unwrap()))
                .bearer_auth(&service_token)
                .json(&json!({ "lifetime_seconds": 600, "one_time": true, "length": 24 }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
        .await;
        added += start.elapsed();

        let checked = regain_server::keycloak::check_request(
            &shared,
            token,
            &world.realm_url(),
            &world.service,
            regain_server::store::now(),
        )
        .unwrap();
        let result = regain_server::keycloak::result_token(
            &shared,
            &world.service,
            &world.realm_url(),
            &checked,
            regain_server::keycloak::Outcome::Completed,
            None,
            regain_server::store::now(),
        )
        .unwrap();
        let back = Page {
            status: reqwest::StatusCode::OK,
            url: world.service.clone(),
            body: format!(
                "<form id=\"back\" action=\"{}\"><input type=\"hidden\" name=\"regain_result\" value=\"{result}\"></form>",
                checked.return_url.replace('&', "&amp;")
            ),
            callback: None,
        };
        let start = Instant::now();
        let page = timed(&mut samples, HOPS[3], post(&b, &back, "back", &[])).await;
        assert!(page.body.contains("kc-tap-login-form"), "{}", page.body);
        let pass = issued["secret"].as_str().unwrap();
        let page = timed(&mut samples, HOPS[4], post(&b, &page, "kc-tap-login-form", &[("tap", pass)])).await;
        added += start.elapsed();
        assert!(page.body.contains("kc-totp-settings-form"), "{}", page.body);
        hops.push(added);
    }

    println!("Keycloak login vs. Regain hops, {iterations} iterations (milliseconds)\n");
    println!("| step | p50 | p95 |\n|---|---|---|");
    for step in LOGIN.iter().chain(HOPS.iter()) {
        let mut list = samples.remove(step).unwrap_or_default();
        list.sort_unstable();
        println!("| {step} | {} | {} |", ms(percentile(&list, 0.5)), ms(percentile(&list, 0.95)));
    }
    for (name, mut list) in [("whole plain login (4 requests)", logins), ("all Regain hops (5 requests)", hops)] {
        list.sort_unstable();
        println!("| **{name}** | {} | {} |", ms(percentile(&list, 0.5)), ms(percentile(&list, 0.95)));
    }
}

async fn service_token(http: &reqwest::Client, world: &World, secret: &str) -> String {
    let form =
        [("grant_type", "client_credentials"), ("client_id", "regain-service"), ("client_secret", secret.trim())];
    support::keycloak::token(http, &world.realm_url(), &form).await
}
