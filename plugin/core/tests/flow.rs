//! The whole recovery flow in `regain-core`, with an environment in memory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use regain_core::flow::{self, Client, FAILED, Input, Loaded, Step, Transition};
use regain_core::policy::DEFAULT_POLICIES;
use regain_core::{AuditKind, User};
use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::{IdentityCredential, issue_identity};
use regain_dev_idv::wallet;
use serde_json::json;
use support::*;

const CONFIG: &str = r#"
scope_group = "recovery"

[verifier]
response_uri = "https://recovery.example.org/vp/response"

[matching]
level = "relaxed"

[[idv]]
id = "dev-idv"
issuer = "https://idv.example"
vct = ["https://idv.example/credentials/identity"]
countries = ["*"]
priority = 1

[[idv]]
id = "backup-idv"
issuer = "https://backup.example"
vct = ["https://idv.example/credentials/identity"]
countries = ["*"]
priority = 2
"#;

fn loaded(config: &str) -> Loaded {
    Loaded::load(("regain.toml", config), &DEFAULT_POLICIES).unwrap()
}

fn user(id: &str, login: &str, given: &str, family: &str) -> User {
    User {
        id: id.into(),
        login: login.into(),
        given_name: Some(given.into()),
        family_name: Some(family.into()),
        enabled: true,
        last_sign_in: Some(NOW - 86_400 * 3),
        groups: vec!["recovery".into()],
        country: Some("PT".into()),
        privileged: false,
        attributes: vec![],
    }
}

fn users() -> Vec<User> {
    let mut never = user("u-bob", "bob@example.org", "Bob", "Stone");
    never.last_sign_in = None;
    let mut admin = user("u-adm", "admin@example.org", "Min-jun", "Kim");
    admin.privileged = true;
    vec![
        user("u-ana", "ana@example.org", "Ana", "Silva"),
        never,
        admin,
        user("u-t1", "maria1@example.org", "Maria", "Santos"),
        user("u-t2", "maria2@example.org", "Maria", "Santos"),
    ]
}

/// The wallet: reads the request URL, presents a credential with these names, and returns
/// the `direct_post` body.
fn wallet_post(
    step: &Step,
    issuer_key: &SigningKey,
    issuer: &str,
    given: &str,
    family: &str,
    status_index: u64,
) -> String {
    let Step::PresentRequest { url, .. } = step else { panic!("expected a presentation request, got {step:?}") };
    let holder = SigningKey::p256(2);
    let credential = IdentityCredential {
        issuer,
        kid: "k1",
        vct: VCT,
        iat: NOW - 600,
        exp: NOW + 86_400,
        status: Some((STATUS_URI, status_index)),
        claims: vec![
            ("given_name", json!(given)),
            ("family_name", json!(family)),
            ("portrait", json!("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk")),
        ],
    };
    let issued = issue_identity(&credential, issuer_key, &holder);
    wallet::answer(url, &issued, &holder, NOW - 5).unwrap()
}

fn post(step: &Step, given: &str, family: &str) -> String {
    wallet_post(step, &issuer_key(), ISSUER, given, family, STATUS_INDEX)
}

/// Most tests run cross-device (QR code): the presentation leads straight to the selfie.
/// Same-device flows, with their response code, have their own tests.
fn start(world: &mut World, l: &Loaded, login: &str) -> Transition {
    flow::start(world, l, login, &Client { cross_device: true, ..Client::default() }).unwrap()
}

fn resume(world: &mut World, l: &Loaded, t: &Transition, input: Input) -> Transition {
    flow::resume(world, l, &t.state, input).unwrap()
}

#[test]
fn an_eligible_user_recovers_and_every_step_is_audited() {
    let l = loaded(CONFIG);
    let mut w = World::new(users());
    let t1 = start(&mut w, &l, "ana@example.org");
    let Step::PresentRequest { url, nonce } = &t1.step else { panic!("{:?}", t1.step) };
    assert!(url.starts_with("openid4vp://?client_id=redirect_uri%3A"));
    assert_eq!(nonce.len(), 43);

    let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "ANA", "SILVA")));
    assert_eq!(t2.step, Step::CaptureSelfie);
    let t3 = resume(&mut w, &l, &t2, Input::Selfie("face:91".into()));
    let Step::Completed { secret, expires_at, one_time } = &t3.step else { panic!("{:?}", t3.step) };
    assert_eq!(secret.len(), 24);
    assert_eq!(*expires_at, NOW + 3600);
    assert!(one_time);

    assert_eq!(
        w.kinds(),
        vec![
            (AuditKind::RecoveryStarted, "ok".into()),
            (AuditKind::IssuanceStarted, "idv:dev-idv".into()),
            (AuditKind::IssuanceCompleted, "ok".into()),
            (AuditKind::PresentationCompleted, "ok".into()),
            (AuditKind::AccountMatched, "matched-relaxed".into()),
            (AuditKind::FaceCheckPassed, "ok".into()),
            (AuditKind::RecoveryCompleted, "ok".into()),
        ]
    );
    assert!(w.audit.iter().all(|e| e.user_id.as_deref() == Some("u-ana")));
    assert!(w.audit.windows(2).all(|p| p[0].flow_id == p[1].flow_id));
    assert_eq!(w.taps.len(), 1);
    assert_eq!((w.taps[0].lifetime_seconds, w.taps[0].not_before_seconds), (3600, 0));
    assert_eq!(w.revoked_methods, vec!["u-ana"]);
    assert_eq!(w.revoked_sessions, vec!["u-ana"]);
    assert_eq!(w.registration_required, vec!["u-ana"]);
    assert_eq!(w.notified, vec!["u-ana"]);

    // The finished flow accepts nothing more, and the presentation is no good elsewhere.
    let again = flow::resume(&mut w, &l, &t3.state, Input::Selfie("face:99".into()));
    assert_eq!(again.unwrap_err().to_string(), "invalid input: the flow has already ended");
    let fresh = start(&mut w, &l, "ana@example.org");
    let replay = post(&t1.step, "Ana", "Silva")
        .replace(&format!("state={}", t1.step_state()), &format!("state={}", fresh.step_state()));
    let t = resume(&mut w, &l, &fresh, Input::Presentation(replay));
    assert!(matches!(t.step, Step::Failed { reason: FAILED, .. }));
    assert_eq!(
        w.audit.last().map(|e| (e.kind, e.reason.as_str())),
        Some((AuditKind::DocumentFailed, "kb-nonce-mismatch"))
    );
    assert_eq!(w.taps.len(), 1);
}

trait StepState {
    fn step_state(&self) -> String;
}

impl StepState for Transition {
    fn step_state(&self) -> String {
        let Step::PresentRequest { url, .. } = &self.step else { panic!() };
        wallet::read_request(url).unwrap().state
    }
}

#[test]
fn unknown_and_ineligible_logins_look_like_eligible_ones() {
    let l = loaded(CONFIG);
    let mut w = World::new(users());
    let mut outcomes = Vec::new();
    for login in ["ana@example.org", "bob@example.org", "nobody@example.org"] {
        let t1 = start(&mut w, &l, login);
        let Step::PresentRequest { url, nonce } = &t1.step else { panic!("{login}: {:?}", t1.step) };
        // Same shape: only the random parts differ.
        outcomes.push((url.len(), nonce.len()));
        // An attacker's own valid credential, for someone else's name.
        let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Eve", "Mallory")));
        assert!(matches!(&t2.step, Step::Failed { reason, .. } if *reason == FAILED), "{login}: {:?}", t2.step);
    }
    assert!(outcomes.windows(2).all(|p| p[0] == p[1]), "{outcomes:?}");
    let reasons: Vec<(AuditKind, String)> = w
        .kinds()
        .into_iter()
        .filter(|(k, _)| {
            matches!(k, AuditKind::RecoveryStarted | AuditKind::AccountNotMatched | AuditKind::RecoveryFailed)
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            (AuditKind::RecoveryStarted, "ok".into()),
            (AuditKind::AccountNotMatched, "name-mismatch".into()),
            (AuditKind::RecoveryStarted, "not-eligible".into()),
            (AuditKind::RecoveryFailed, "not-eligible".into()),
            (AuditKind::RecoveryStarted, "unknown-login".into()),
            (AuditKind::RecoveryFailed, "unknown-login".into()),
        ]
    );
}

#[test]
fn a_mismatch_fails_with_the_flows_helpdesk_code() {
    let l = loaded(CONFIG);
    let mut w = World::new(users());
    let t1 = start(&mut w, &l, "ana@example.org");
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Ana", "Sousa")));
    let Step::Failed { helpdesk_ref, .. } = &t2.step else { panic!("{:?}", t2.step) };
    assert!(helpdesk_ref.starts_with("RG-") && helpdesk_ref.len() == 11);
    let event = w.audit.iter().find(|e| e.kind == AuditKind::AccountNotMatched).unwrap();
    assert_eq!(event.helpdesk_ref.as_deref(), Some(helpdesk_ref.as_str()));
    assert_eq!(event.reason, "name-mismatch");
    assert!(w.taps.is_empty());
}

#[test]
fn evaluation_mode_runs_everything_and_issues_nothing() {
    let l = loaded(&format!("mode = \"evaluation\"\n{CONFIG}"));
    let mut w = World::new(users());
    let t1 = start(&mut w, &l, "ana@example.org");
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Ana", "Silva")));
    let t3 = resume(&mut w, &l, &t2, Input::Selfie("face:95".into()));
    assert_eq!(t3.step, Step::EvaluationCompleted { would_issue: true, reason: "would-issue".into() });
    assert!(w.taps.is_empty() && w.revoked_methods.is_empty() && w.notified.is_empty());
    assert_eq!(w.audit.last().unwrap().kind, AuditKind::EvaluationCompleted);

    let t1 = start(&mut w, &l, "ana@example.org");
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Ana", "Sousa")));
    assert_eq!(t2.step, Step::EvaluationCompleted { would_issue: false, reason: "name-mismatch".into() });
}

#[test]
fn the_face_check_applies_the_threshold_and_liveness() {
    let l = loaded(CONFIG);
    for (selfie, code) in
        [("face:69", "face-below-threshold"), ("face:99:spoof", "face-not-live"), ("nobody", "unknown-selfie")]
    {
        let mut w = World::new(users());
        let t1 = start(&mut w, &l, "ana@example.org");
        let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Ana", "Silva")));
        let t3 = resume(&mut w, &l, &t2, Input::Selfie(selfie.into()));
        assert!(matches!(t3.step, Step::Failed { .. }), "{selfie}");
        assert_eq!(w.audit.last().map(|e| (e.kind, e.reason.as_str())), Some((AuditKind::FaceCheckFailed, code)));
        assert!(w.taps.is_empty());
    }
}

#[test]
fn privileged_accounts_need_a_higher_score_and_get_a_shorter_delayed_pass() {
    let l = loaded(CONFIG);
    let mut w = World::new(users());
    let t1 = start(&mut w, &l, "admin@example.org");
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Min-jun", "Kim")));
    let t3 = resume(&mut w, &l, &t2, Input::Selfie("face:80".into()));
    assert!(matches!(t3.step, Step::Failed { .. }));
    assert_eq!(w.audit.last().unwrap().reason, "policy-denied:tap-privileged-face");

    let t1 = start(&mut w, &l, "admin@example.org");
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Min-jun", "Kim")));
    let t3 = resume(&mut w, &l, &t2, Input::Selfie("face:90".into()));
    assert!(matches!(t3.step, Step::Completed { .. }), "{:?}", t3.step);
    assert_eq!((w.taps[0].lifetime_seconds, w.taps[0].not_before_seconds), (15 * 60, 60 * 60));

    // A second recovery the same day is refused, behind the same outward step.
    let t1 = start(&mut w, &l, "admin@example.org");
    assert!(matches!(t1.step, Step::PresentRequest { .. }));
    let started = w.audit.iter().rev().find(|e| e.kind == AuditKind::RecoveryStarted).unwrap();
    assert_eq!(started.reason, "not-eligible:eligibility-privileged-cooldown");
}

#[test]
fn revoked_credentials_and_other_issuers_are_refused() {
    let l = loaded(CONFIG);
    let mut w = World::new(users());
    let t1 = start(&mut w, &l, "ana@example.org");
    let body = wallet_post(&t1.step, &issuer_key(), ISSUER, "Ana", "Silva", 5);
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(body));
    assert!(matches!(t2.step, Step::Failed { .. }));
    assert_eq!(w.audit.last().unwrap().reason, "revoked");

    // The backup provider's issuer is trusted by the host, but this flow was routed to
    // dev-idv: its credential is refused.
    w.trust.issuers.insert("https://backup.example".into(), Some(attacker_key().jwks(Some("k1")).to_string()));
    let t1 = start(&mut w, &l, "ana@example.org");
    let body = wallet_post(&t1.step, &attacker_key(), "https://backup.example", "Ana", "Silva", STATUS_INDEX);
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(body));
    assert!(matches!(t2.step, Step::Failed { .. }));
    assert_eq!(w.audit.last().unwrap().reason, "issuer-untrusted");
}

#[test]
fn an_unavailable_provider_falls_back_to_the_next() {
    let l = loaded(CONFIG);
    let mut w = World::new(users());
    w.trust.issuers.insert("https://backup.example".into(), Some(attacker_key().jwks(Some("k1")).to_string()));
    let t1 = start(&mut w, &l, "ana@example.org");
    let t2 = resume(&mut w, &l, &t1, Input::ProviderUnavailable("dev-idv".into()));
    assert!(matches!(t2.step, Step::PresentRequest { .. }));
    assert_ne!(t1.step_state(), t2.step_state(), "a new request with a new state and nonce");
    assert_eq!(w.audit.last().unwrap().reason, "fallback:backup-idv");
    // The old request's response no longer fits.
    assert!(flow::resume(&mut w, &l, &t2.state, Input::Presentation(post(&t1.step, "Ana", "Silva"))).is_err());
    // The backup issuer's credential is accepted now. (Its status list is the same URI,
    // signed by dev-idv's key, so this credential fails the status check: that proves the
    // list must come from the credential's own issuer.)
    let body = wallet_post(&t2.step, &attacker_key(), "https://backup.example", "Ana", "Silva", STATUS_INDEX);
    let t3 = resume(&mut w, &l, &t2, Input::Presentation(body));
    assert!(matches!(t3.step, Step::Failed { .. }));
    assert_eq!(w.audit.last().unwrap().reason, "status-list-invalid");
    let t4 = flow::resume(&mut w, &l, &t2.state, Input::ProviderUnavailable("backup-idv".into())).unwrap();
    assert!(matches!(t4.step, Step::Failed { .. }));
    assert_eq!(w.audit.last().unwrap().reason, "no-idv-available");
}

#[test]
fn same_name_users_are_blocked() {
    let l = loaded(CONFIG);
    let mut w = World::new(users());
    let t1 = start(&mut w, &l, "maria1@example.org");
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Maria", "Santos")));
    assert!(matches!(t2.step, Step::Failed { .. }));
    assert_eq!(w.audit.last().unwrap().reason, "same-name-ambiguous");
}

#[test]
fn input_that_does_not_fit_changes_nothing() {
    let l = loaded(CONFIG);
    let mut w = World::new(users());
    let t1 = start(&mut w, &l, "ana@example.org");
    let audit_before = w.audit.len();
    let wrong_stage = flow::resume(&mut w, &l, &t1.state, Input::Selfie("face:99".into()));
    assert_eq!(wrong_stage.unwrap_err().to_string(), "invalid input: a presentation is expected");
    let foreign = post(&t1.step, "Ana", "Silva").replace(&t1.step_state(), "someone-elses-state");
    let err = flow::resume(&mut w, &l, &t1.state, Input::Presentation(foreign)).unwrap_err();
    assert_eq!(err.to_string(), "invalid input: response `state` does not match the request");
    assert!(flow::resume(&mut w, &l, b"garbage", Input::Selfie("x".into())).is_err());
    assert_eq!(w.audit.len(), audit_before, "refused input records nothing");
    // The stored state still works.
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Ana", "Silva")));
    assert_eq!(t2.step, Step::CaptureSelfie);
}

#[test]
fn same_device_flows_continue_only_with_the_response_code() {
    let l = loaded(CONFIG);
    let mut w = World::new(users());
    let t1 = flow::start(&mut w, &l, "ana@example.org", &Client::default()).unwrap();
    let t2 = resume(&mut w, &l, &t1, Input::Presentation(post(&t1.step, "Ana", "Silva")));
    let Step::PresentationReceived { response_code } = &t2.step else { panic!("{:?}", t2.step) };
    assert_eq!(response_code.len(), 43, "256 bits, base64url");
    assert!(!format!("{:?}", t2.step).contains(response_code.as_str()), "the code is a secret");
    assert!(!String::from_utf8_lossy(&t2.state).contains(response_code.as_str()), "stored hashed");

    // An attacker's browser without the code gets nowhere and the flow survives.
    let wrong = flow::resume(&mut w, &l, &t2.state, Input::ResponseCode("guessed".into()));
    assert_eq!(wrong.unwrap_err().to_string(), "invalid input: the response code does not belong to this flow");
    let early = flow::resume(&mut w, &l, &t2.state, Input::Selfie("face:99".into()));
    assert_eq!(early.unwrap_err().to_string(), "invalid input: a response code is expected");

    let t3 = resume(&mut w, &l, &t2, Input::ResponseCode(response_code.clone()));
    assert_eq!(t3.step, Step::CaptureSelfie);
    let replay = flow::resume(&mut w, &l, &t3.state, Input::ResponseCode(response_code.clone()));
    assert_eq!(replay.unwrap_err().to_string(), "invalid input: a selfie is expected");
    let t4 = resume(&mut w, &l, &t3, Input::Selfie("face:91".into()));
    assert!(matches!(t4.step, Step::Completed { .. }), "{:?}", t4.step);
    assert_eq!(w.taps.len(), 1);
}

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Act {
        GoodPresentation,
        WrongName,
        Revoked,
        Garbage,
        Selfie(u8),
        Spoof,
        Unavailable,
        GoodCode,
        BadCode,
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            Just(Act::GoodPresentation),
            Just(Act::WrongName),
            Just(Act::Revoked),
            Just(Act::Garbage),
            (0u8..=100).prop_map(Act::Selfie),
            Just(Act::Spoof),
            Just(Act::Unavailable),
            Just(Act::GoodCode),
            Just(Act::BadCode),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        /// No sequence of inputs reaches `completed` without a valid presentation for the
        /// current request, an account match, a live face at the threshold and a permit,
        /// and doomed logins never get there at all.
        #[test]
        fn completed_needs_presentation_match_face_and_permit(
            login in prop_oneof![Just("ana@example.org"), Just("bob@example.org"), Just("nobody@example.org")],
            acts in proptest::collection::vec(act(), 1..10),
            cross_device in any::<bool>(),
        ) {
            let l = loaded(CONFIG);
            let mut w = World::new(users());
            let mut t = flow::start(&mut w, &l, login, &Client { cross_device, ..Client::default() }).unwrap();
            let mut request = t.step.clone();
            let mut presented_ok = false;
            let mut face_ok = false;
            let mut code_ok = cross_device;
            let mut code = String::new();
            for a in acts {
                let input = match &a {
                    Act::GoodPresentation => Input::Presentation(post(&request, "Ana", "Silva")),
                    Act::WrongName => Input::Presentation(post(&request, "Ana", "Sousa")),
                    Act::Revoked => Input::Presentation(wallet_post(&request, &issuer_key(), ISSUER, "Ana", "Silva", 5)),
                    Act::Garbage => Input::Presentation("vp_token=%7B%7D&state=x".into()),
                    Act::Selfie(score) => Input::Selfie(format!("face:{score}")),
                    Act::Spoof => Input::Selfie("face:100:spoof".into()),
                    Act::Unavailable => Input::ProviderUnavailable("dev-idv".into()),
                    Act::GoodCode => Input::ResponseCode(code.clone()),
                    Act::BadCode => Input::ResponseCode("not-the-code".into()),
                };
                let Ok(next) = flow::resume(&mut w, &l, &t.state, input) else { continue };
                match (&a, &next.step) {
                    (Act::GoodPresentation, Step::CaptureSelfie) => presented_ok = true,
                    (Act::GoodPresentation, Step::PresentationReceived { response_code }) => {
                        presented_ok = true;
                        code.clone_from(response_code);
                    }
                    (Act::GoodCode, Step::CaptureSelfie) => code_ok = true,
                    (Act::BadCode, _) => prop_assert!(false, "a wrong response code was accepted"),
                    (Act::Selfie(score), Step::Completed { .. }) if *score >= 70 => face_ok = true,
                    _ => {}
                }
                if let Step::PresentRequest { .. } = next.step {
                    request = next.step.clone();
                }
                if let Step::Completed { .. } = next.step {
                    prop_assert_eq!(login, "ana@example.org");
                    prop_assert!(presented_ok && face_ok, "completed without presentation and face");
                    prop_assert!(code_ok, "same-device flow completed without its response code");
                    prop_assert_eq!(w.taps.len(), 1);
                }
                t = next;
            }
            if login != "ana@example.org" {
                prop_assert!(w.taps.is_empty());
            }
            prop_assert!(w.taps.len() <= 1);
        }
    }
}
