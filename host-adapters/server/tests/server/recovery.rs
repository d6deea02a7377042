//! A whole recovery through the real plugin component with the reference server's
//! implementations of every import, on SQLite and on PostgreSQL: the pass the plugin issues is
//! stored by the server and redeemable at its sign-in, the audit trail and the notification
//! land in the database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use crate::support::databases;
use crate::support::recovery::{FaceDouble, credential, trust, wallet_answer};
use regain_core::env::AuditKind as CoreKind;
use regain_core::policy::DEFAULT_POLICIES;
use regain_host::reload::DeploymentStore;
use regain_host::wit::deployment::Bundle;
use regain_host::wit::flow::{FlowInput, Step};
use regain_host::wit::types::{ClientInfo, SourceFile};
use regain_host::{ComponentSource, PluginHost, SandboxConfig};
use regain_server::accounts::{Account, BrowserSession};
use regain_server::adapter::ServerAdapter;
use regain_server::store::{Passes, Redemption, now};
use regain_server::trust::TrustSource;
use std::sync::Arc;

const CONFIG: &str = r#"
scope_group = "recovery"

[verifier]
response_uri = "https://idp.example/recover/response"

[[idv]]
id = "dev-idv"
issuer = "https://idv.example"
vct = ["https://idv.example/credentials/identity"]
countries = ["*"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_with_the_servers_imports_issues_a_pass_the_server_accepts() {
    let cache = tempfile::tempdir().unwrap();
    let config = SandboxConfig { cache_dir: Some(cache.path().to_path_buf()), ..SandboxConfig::default() };
    let host = PluginHost::<ServerAdapter>::new(config, ComponentSource::Bundled).unwrap();
    for (store, _dir) in databases().await {
        let ana = Account {
            id: "u-ana".into(),
            login: "ana@example.org".into(),
            given_name: Some("Ana".into()),
            family_name: Some("Silva".into()),
            enabled: true,
            last_sign_in: Some(now() - 86_400),
            groups: vec!["recovery".into()],
            password_hash: Some("$argon2id$lost".into()),
            ..Account::default()
        };
        store.create_user(&ana, now()).await.unwrap();
        let deployments = DeploymentStore::default();
        let source = |name: &str, text: &str| SourceFile { name: name.into(), text: text.into() };
        deployments.publish(
            "default",
            Bundle {
                config: source("regain.toml", CONFIG),
                policies: DEFAULT_POLICIES.iter().map(|(n, t)| source(n, t)).collect(),
            },
        );
        let passes = Passes::open(store.clone()).await.unwrap();
        let adapter = ServerAdapter::new(
            store.clone(),
            passes.clone(),
            deployments,
            Arc::new(TrustSource::pinned(trust())),
            Arc::new(FaceDouble),
        );

        // What the recovery will take away: a TOTP secret, a passkey, a signed-in browser.
        store.set_totp("u-ana", Some(b"12345678901234567890")).await.unwrap();
        let passkey = crate::support::passkey("cred-ana", "u-ana");
        assert!(store.insert_passkey(&passkey).await.unwrap());
        let session = BrowserSession { user_id: "u-ana".into(), auth_time: now(), amr: "pwd".into() };
        store.insert_browser_session("sid-ana", &session, now() + 3600).await.unwrap();

        // Each step runs on a request's own handle of the database, which stores the step's
        // writes at its end, as the server's pages do.
        let client =
            ClientInfo { address: Some("192.0.2.1".into()), country: None, cross_device: false, recent_attempts: 0 };
        let step = store.scoped();
        let t1 = host.start(adapter.on(&step), "default", "ana@example.org", &client).await.unwrap().unwrap();
        step.flush().await.unwrap();
        let Step::PresentRequest(request) = &t1.step else { panic!("{:?}", t1.step) };
        let step = store.scoped();
        let t2 = host
            .resume(
                adapter.on(&step),
                &t1.state,
                &FlowInput::Presentation(wallet_answer(&request.url, &credential("Ana", "Silva", 0))),
            )
            .await
            .unwrap()
            .unwrap();
        step.flush().await.unwrap();
        let Step::PresentationReceived(code) = &t2.step else { panic!("{:?}", t2.step) };
        let step = store.scoped();
        let t3 =
            host.resume(adapter.on(&step), &t2.state, &FlowInput::ResponseCode(code.clone())).await.unwrap().unwrap();
        step.flush().await.unwrap();
        let step = store.scoped();
        let on_step = adapter.on(&step);
        let selfie = on_step.keep_selfie(b"face:90".to_vec()).unwrap();
        let t4 = host.resume(on_step, &t3.state, &FlowInput::Selfie(selfie)).await.unwrap().unwrap();
        let Step::Completed(pass) = &t4.step else { panic!("{:?}", t4.step) };
        // Until the step's write, nothing of the recovery is stored: the pass, the removed
        // methods, the ended session and the trail go in together.
        let before = store.user_by_id("u-ana").await.unwrap().unwrap();
        assert!(before.password_hash.is_some() && before.totp_secret.is_some() && !before.must_register);
        assert_eq!(store.passkeys_of("u-ana").await.unwrap().len(), 1);
        assert!(store.browser_session("sid-ana", now()).await.unwrap().is_some());
        assert_eq!(passes.redeem(&pass.secret, now()).await.unwrap(), Redemption::Refused);
        assert_eq!(store.count_recent(CoreKind::RecoveryCompleted, "u-ana", now() - 60).await.unwrap(), 0);
        step.flush().await.unwrap();

        // The server stored the pass (as a MAC) and its sign-in accepts it once.
        assert!(
            matches!(passes.redeem(&pass.secret, now()).await.unwrap(), Redemption::Redeemed { ref user_id, .. } if user_id == "u-ana")
        );
        assert_eq!(passes.redeem(&pass.secret, now()).await.unwrap(), Redemption::Refused);
        // What recovery changed: old methods gone, a new one required, the audit trail and
        // the notification in the database.
        let after = store.user_by_id("u-ana").await.unwrap().unwrap();
        assert!(after.password_hash.is_none(), "password removed");
        assert!(after.totp_secret.is_none(), "TOTP removed");
        assert!(after.must_register, "a new method required, with the methods removed in the same write");
        assert!(store.passkeys_of("u-ana").await.unwrap().is_empty(), "passkeys removed");
        assert!(store.browser_session("sid-ana", now()).await.unwrap().is_none(), "sessions ended");
        assert_eq!(store.count_recent(CoreKind::RecoveryCompleted, "u-ana", now() - 60).await.unwrap(), 1);
        assert_eq!(store.count_recent(CoreKind::FaceCheckPassed, "u-ana", now() - 60).await.unwrap(), 1);
        let outbox = store.pending_notifications().await.unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!((outbox[0].1.as_str(), outbox[0].2.as_str()), ("u-ana", "access-restored"));
    }
}
