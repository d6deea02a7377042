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
use regain_server::accounts::Account;
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

        let client =
            ClientInfo { address: Some("192.0.2.1".into()), country: None, cross_device: false, recent_attempts: 0 };
        let t1 = host.start(adapter.clone(), "default", "ana@example.org", &client).await.unwrap().unwrap();
        let Step::PresentRequest(request) = &t1.step else { panic!("{:?}", t1.step) };
        let t2 = host
            .resume(
                adapter.clone(),
                &t1.state,
                &FlowInput::Presentation(wallet_answer(&request.url, &credential("Ana", "Silva", 0))),
            )
            .await
            .unwrap()
            .unwrap();
        let Step::PresentationReceived(code) = &t2.step else { panic!("{:?}", t2.step) };
        let t3 =
            host.resume(adapter.clone(), &t2.state, &FlowInput::ResponseCode(code.clone())).await.unwrap().unwrap();
        let selfie = adapter.keep_selfie(b"face:90".to_vec()).unwrap();
        let t4 = host.resume(adapter.clone(), &t3.state, &FlowInput::Selfie(selfie)).await.unwrap().unwrap();
        let Step::Completed(pass) = &t4.step else { panic!("{:?}", t4.step) };

        // The server stored the pass (as a MAC) and its sign-in accepts it once.
        assert!(
            matches!(passes.redeem(&pass.secret, now()).await.unwrap(), Redemption::Redeemed { ref user_id, .. } if user_id == "u-ana")
        );
        assert_eq!(passes.redeem(&pass.secret, now()).await.unwrap(), Redemption::Refused);
        // What recovery changed: old methods gone, a new one required, the audit trail and
        // the notification in the database.
        let after = store.user_by_id("u-ana").await.unwrap().unwrap();
        assert!(after.password_hash.is_none() && after.must_register);
        assert_eq!(store.count_recent(CoreKind::RecoveryCompleted, "u-ana", now() - 60).await.unwrap(), 1);
        assert_eq!(store.count_recent(CoreKind::FaceCheckPassed, "u-ana", now() - 60).await.unwrap(), 1);
        let outbox = store.pending_notifications().await.unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!((outbox[0].1.as_str(), outbox[0].2.as_str()), ("u-ana", "access-restored"));
    }
}
