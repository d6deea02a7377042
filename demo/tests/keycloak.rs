//! Recovery through a real Keycloak 26 with the Regain provider installed: the browser goes
//! through Keycloak's own login pages (HTML forms and cookies), "Try another way" → "Recover
//! your account" → the recovery service (`regain serve` with `[keycloak]`, a separate process)
//! → the dev IDV and dev wallet → back to Keycloak with the signed result → the Temporary
//! Access Pass → forced registration of a new authenticator app → Keycloak issues tokens to a
//! test client. Negative cases: name mismatch, replayed result, expired pass, pass reuse.
//!
//! `bash scripts/test` starts Keycloak (`scripts/keycloak start`) and passes its URL and
//! administrator password in `REGAIN_TEST_KEYCLOAK_URL` and
//! `REGAIN_TEST_KEYCLOAK_ADMIN_PASSWORD`; each run creates its own realm.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use base64::Engine as _;
use regain_core::AuditKind;
use serde_json::json;
use std::time::Duration;
use support::element;
use support::keycloak::{Person, World, claims, form, get, hidden_fields, otp, post};

const NEW_PASSWORD: &str = "a new password after recovery";

const ANA: Person = Person {
    login: "ana",
    given_name: "Ana",
    family_name: "Silva",
    birthdate: "1985-02-11",
    totp: "ana-phone-otp-secret",
};
const BJORN: Person = Person {
    login: "bjorn",
    given_name: "Bjorn",
    family_name: "Odegard",
    birthdate: "1988-01-21",
    totp: "bjorn-phone-otp-secret",
};
/// Someone whose name is on no credential in the test.
const CARL: Person = Person {
    login: "carl",
    given_name: "Carl",
    family_name: "Berg",
    birthdate: "1985-02-11",
    totp: "carl-phone-otp-secret",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_through_keycloak_login_pages() {
    let world = World::start(&[&ANA, &BJORN, &CARL]).await;
    // Ana has used her account before (eligibility asks for a past sign-in).
    let tokens = world.sign_in(&ANA).await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap_or_else(|| panic!("{tokens}")))["preferred_username"], "ana");

    // Her phone is gone: "Try another way" → "Recover your account".
    let ana = world.verified("ana-silva").await;
    let (browser, page) = world.login_page(ANA.login).await;
    let start = world.choose_recovery(&browser, &page).await;
    assert!(start.body.contains("ana"), "{}", start.body);
    let done = world.recover(&browser, &start, &ana, "ana-silva").await;
    let pass = element(&done.body, "tap").unwrap_or_else(|| panic!("no pass: {}", done.body));
    // Policy (scope-revoke-methods) removed the lost methods in Keycloak; a pass is there.
    assert_eq!(world.kc.credential_types(&world.realm, ANA.login).await, vec!["regain-tap"]);

    // Back at Keycloak with the signed result; Keycloak asks for the pass.
    let page = post(&browser, &done, "back-to-sign-in", &[]).await;
    assert!(page.body.contains("kc-tap-login-form"), "{}", page.body);
    let wrong = post(&browser, &page, "kc-tap-login-form", &[("tap", "AAAA-BBBB-CCCC-DDDD")]).await;
    assert!(wrong.body.contains("not valid"), "{}", wrong.body);
    let page = post(&browser, &wrong, "kc-tap-login-form", &[("tap", &pass)]).await;

    // Keycloak makes her register a new authenticator app, and choose a new password (policy
    // removed the old one), before the login completes.
    let mut page = page;
    let mut actions = Vec::new();
    while page.callback.is_none() {
        if page.body.contains("kc-totp-settings-form") {
            let secret = hidden_fields(&form(&page.body, "kc-totp-settings-form").unwrap())
                .into_iter()
                .find(|(n, _)| n == "totpSecret")
                .map(|(_, v)| v)
                .unwrap();
            let code = otp(&secret);
            page = post(&browser, &page, "kc-totp-settings-form", &[("totp", &code), ("userLabel", "new phone")]).await;
            actions.push("CONFIGURE_TOTP");
        } else if page.body.contains("kc-passwd-update-form") {
            let fields = [("password-new", NEW_PASSWORD), ("password-confirm", NEW_PASSWORD)];
            page = post(&browser, &page, "kc-passwd-update-form", &fields).await;
            actions.push("UPDATE_PASSWORD");
        } else {
            panic!("after {actions:?}, neither a required action nor the callback: {}", page.body);
        }
        assert!(actions.len() <= 2, "{actions:?}");
    }
    actions.sort_unstable();
    assert_eq!(actions, ["CONFIGURE_TOTP", "UPDATE_PASSWORD"]);
    let tokens = world.tokens(&page).await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["preferred_username"], "ana", "{tokens}");
    // The pass is spent; the new app and password are her methods.
    assert_eq!(world.kc.credential_types(&world.realm, ANA.login).await, vec!["otp", "password"]);
    let trail = world.audit(ANA.login).await;
    for kind in [AuditKind::RecoveryStarted, AuditKind::PresentationCompleted, AuditKind::AccountMatched] {
        assert!(trail.contains(&kind), "{kind:?} missing from {trail:?}");
    }
    assert!(trail.contains(&AuditKind::RecoveryCompleted), "{trail:?}");

    // Pass reuse: a new login is no longer offered a pass.
    let (browser, page) = world.login_page(ANA.login).await;
    let page = post(&browser, &page, "kc-select-try-another-way-form", &[("tryAnotherWay", "on")]).await;
    let recover = world.kc.execution(&world.realm, "regain-recover").await;
    let pass = world.kc.execution(&world.realm, "regain-tap-authenticator").await;
    assert!(page.body.contains(&recover) && !page.body.contains(&pass), "{}", page.body);

    // The notification reaches the address Keycloak holds for her; its "this wasn't me" link
    // locks her Keycloak account (disabled, sessions ended) and alerts the administrators.
    let message = world.mail.wait_for(&["ana@example.org", "Access to your account was restored"]).await;
    let link = message.lines().find(|l| l.contains("/not-me?token=")).unwrap().trim().to_owned();
    let confirm = get(&browser, &link).await;
    assert!(confirm.body.contains("It was not me"), "{}", confirm.body);
    let locked = post(&browser, &confirm, "", &[]).await;
    assert!(locked.body.contains("Your account is locked"), "{}", locked.body);
    let id = world.kc.user_id(&world.realm, ANA.login).await;
    let user = world.kc.admin(reqwest::Method::GET, &format!("/{}/users/{id}", world.realm), None).await;
    assert_eq!(user["enabled"], false, "{user}");
    let sessions = world.kc.admin(reqwest::Method::GET, &format!("/{}/users/{id}/sessions", world.realm), None).await;
    assert_eq!(sessions.as_array().map(Vec::len), Some(0), "{sessions}");
    world.mail.wait_for(&["admins@example.org", id.as_str()]).await;
    let again = post(&browser, &confirm, "", &[]).await;
    assert!(!again.body.contains("Your account is locked"), "{}", again.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_recoveries_through_keycloak() {
    let world = World::start(&[&ANA, &BJORN, &CARL]).await;
    world.sign_in(&BJORN).await;
    world.sign_in(&CARL).await;

    // Name mismatch: Carl presents Ana's credential. The service shows a helpdesk reference
    // and Keycloak, given the signed result, refuses with the same reference.
    let ana = world.verified("ana-silva").await;
    let (browser, page) = world.login_page(CARL.login).await;
    let start = world.choose_recovery(&browser, &page).await;
    let failed = world.recover(&browser, &start, &ana, "ana-silva").await;
    let reference = element(&failed.body, "helpdesk-ref").unwrap_or_else(|| panic!("{}", failed.body));
    let page = post(&browser, &failed, "back-to-sign-in", &[]).await;
    assert!(page.body.contains(&reference), "{}", page.body);
    assert!(!page.body.contains("kc-tap-login-form"));
    assert!(world.audit(CARL.login).await.contains(&AuditKind::AccountNotMatched));
    assert_eq!(world.kc.credential_types(&world.realm, CARL.login).await, vec!["otp", "password"]);

    // The request that started Carl's recovery does not start a second one, and a forged or
    // cut request is refused at the service's door.
    let again = post(&browser, &start, "", &[("device", "same")]).await;
    assert_eq!(again.status, reqwest::StatusCode::BAD_REQUEST);
    assert!(again.body.contains("already used"), "{}", again.body);
    let token = start.url.split_once("request=").unwrap().1;
    let (header, rest) = token.split_once('.').unwrap();
    let (_, mac) = rest.split_once('.').unwrap();
    let forged_claims = json!({ "login": "ana", "sub": "someone" }).to_string();
    let forged = format!("{header}.{}.{mac}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_claims));
    for bad in [forged.as_str(), &token[..token.len() / 2], "not-a-token"] {
        let page = get(&browser, &format!("{}/recover/keycloak?request={bad}", world.service)).await;
        assert_eq!(page.status, reqwest::StatusCode::BAD_REQUEST, "{}", page.body);
        assert!(page.body.contains("not valid"), "{}", page.body);
    }

    // Running the setup again keeps the flow and updates the Recover step's settings.
    let report = regain_server::keycloak_setup::setup(&regain_server::keycloak_setup::Setup {
        url: world.kc.url.clone(),
        realm: world.realm.clone(),
        admin_user: "admin".into(),
        admin_password: world.kc.password.clone(),
        service_url: world.service.clone(),
        shared_secret: support::keycloak::SHARED_SECRET.into(),
        required_action: "webauthn-register".into(),
    })
    .await
    .unwrap();
    assert!(!report.flow_created);
    let execution = world.kc.execution(&world.realm, "regain-recover").await;
    let executions = world
        .kc
        .admin(reqwest::Method::GET, &format!("/{}/authentication/flows/regain-browser/executions", world.realm), None)
        .await;
    let config =
        executions.as_array().unwrap().iter().find(|e| e["id"] == execution.as_str()).unwrap()["authenticationConfig"]
            .as_str()
            .unwrap()
            .to_owned();
    let config =
        world.kc.admin(reqwest::Method::GET, &format!("/{}/authentication/config/{config}", world.realm), None).await;
    assert_eq!(config["config"]["required-action"], "webauthn-register");
    assert_eq!(executions.as_array().unwrap().iter().filter(|e| e["providerId"] == "regain-recover").count(), 1);

    // Bjorn recovers; his pass expires before he uses it.
    let bjorn = world.verified("bjorn-odegard").await;
    let (browser, page) = world.login_page(BJORN.login).await;
    let start = world.choose_recovery(&browser, &page).await;
    let done = world.recover(&browser, &start, &bjorn, "bjorn-odegard").await;
    let pass = element(&done.body, "tap").unwrap_or_else(|| panic!("no pass: {}", done.body));
    let page = post(&browser, &done, "back-to-sign-in", &[]).await;
    assert!(page.body.contains("kc-tap-login-form"), "{}", page.body);

    // Past its one-minute lifetime, the pass no longer signs in.
    tokio::time::sleep(Duration::from_secs(62)).await;
    let expired = post(&browser, &page, "kc-tap-login-form", &[("tap", &pass)]).await;
    assert!(expired.body.contains("not valid"), "{}", expired.body);
    assert!(expired.callback.is_none() && !expired.body.contains("kc-totp-settings-form"));

    // The same result posted again is refused: a result is accepted once.
    let result = hidden_fields(&form(&done.body, "back-to-sign-in").unwrap());
    let replay = post(&browser, &expired, "kc-tap-login-form", &[("regain_result", &result[0].1)]).await;
    assert!(!replay.body.contains("kc-totp-settings-form") && replay.callback.is_none(), "{}", replay.body);
    assert!(replay.body.contains("already used"), "{}", replay.body);

    // The expired pass is gone: with every method revoked, a new login goes straight to
    // recovery instead of asking for the pass.
    let browser = support::browser();
    let page = get(&browser, &world.authorize_url()).await;
    let page = post(&browser, &page, "kc-form-login", &[("username", BJORN.login)]).await;
    assert!(!page.body.contains("kc-tap-login-form"), "{}", page.body);
    assert!(page.url.starts_with(&format!("{}/recover/keycloak?request=", world.service)), "{}", page.url);
    assert!(!world.kc.credential_types(&world.realm, BJORN.login).await.contains(&"regain-tap".to_owned()));
}
