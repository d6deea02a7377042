//! The recovery core natively and through the real component, on the same inputs in one run:
//! the presentation step (SD-JWT VC + KB-JWT + status list + account match), a whole recovery
//! (start, presentation, selfie: three calls, five Cedar decisions), and the per-request
//! overhead (a call refused at once, and `flow.start` for an unknown login). The component runs
//! on a warm instance (the host's default) and, for the whole recovery, on a fresh instance
//! per call. The wallet's work between the calls is not counted.
//!
//! `cargo bench -p regain-host --bench recovery`; figures in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark that cannot set up may panic")]

use criterion::{Criterion, criterion_group, criterion_main};
use regain_core::flow::{self, Input, Loaded};
use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::{IdentityCredential, issue_identity};
use regain_host::memory::MemoryAdapter;
use regain_host::native::NativeEnvironment;
use regain_host::wit::flow::{FlowInput, Step};
use regain_host::wit::types::{ClientInfo, User};
use regain_host::{ComponentSource, PluginHost, SandboxConfig};
use serde_json::json;
use std::time::{Duration, Instant};

const ISSUER: &str = "https://idv.example";
const URI: &str = "https://idv.example/status/1";
const CONFIG: &str = r#"
scope_group = "recovery"
[verifier]
response_uri = "https://recovery.example.org/vp/response"
[[idv]]
id = "dev-idv"
issuer = "https://idv.example"
vct = ["https://idv.example/credentials/identity"]
countries = ["*"]
"#;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn client() -> ClientInfo {
    // Cross-device (QR code): three calls; a same-device flow adds the response code call.
    ClientInfo { address: None, country: None, cross_device: true, recent_attempts: 0 }
}

fn wallet(step: &Step) -> String {
    let Step::PresentRequest(request) = step else { panic!("{step:?}") };
    answer(&request.url)
}

fn native_wallet(step: &regain_core::Step) -> String {
    let regain_core::Step::PresentRequest { url, .. } = step else { panic!("{step:?}") };
    answer(url)
}

/// A credential of its own for every recovery, as each user has (the dev IDV's salts are
/// fixed, so the issue time tells them apart): the host remembers signatures it found valid,
/// and the same credential every time would only measure that memory.
static ISSUED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn answer(url: &str) -> String {
    let holder = SigningKey::p256(5);
    let serial = ISSUED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 86_400;
    let credential = IdentityCredential {
        issuer: ISSUER,
        kid: "k1",
        vct: "https://idv.example/credentials/identity",
        iat: now() - 600 - serial,
        exp: now() + 86_400,
        status: Some((URI, 42)),
        claims: vec![("given_name", json!("Ana")), ("family_name", json!("Silva")), ("portrait", json!("cG9ydHJhaXQ"))],
    };
    let issued = issue_identity(&credential, &SigningKey::p256(1), &holder);
    regain_dev_idv::wallet::answer(url, &issued, &holder, now() - 2).unwrap()
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let config = SandboxConfig { cache_dir: Some(cache.path().to_path_buf()), ..SandboxConfig::default() };
    let host = PluginHost::<MemoryAdapter>::new(config, ComponentSource::Bundled).unwrap();
    let issuer = SigningKey::p256(1);
    let list = regain_dev_idv::status::token(&issuer, Some("k1"), URI, &vec![0u8; 1 << 16], 1, now() - 60, None);
    let ana = User {
        id: "u-ana".into(),
        login: "ana@example.org".into(),
        given_name: Some("Ana".into()),
        family_name: Some("Silva".into()),
        enabled: true,
        last_sign_in: Some(now() - 86_400),
        groups: vec!["recovery".into()],
        country: Some("PT".into()),
        privileged: false,
        attributes: vec![],
    };
    let world = MemoryAdapter::builder()
        .users(vec![ana])
        .deployment("default", CONFIG, &regain_core::policy::DEFAULT_POLICIES)
        .issuer(ISSUER, &issuer.jwks(Some("k1")).to_string())
        .status_list(URI, &list)
        .build();

    let mut group = c.benchmark_group("recovery through the component");
    group.sample_size(30);
    group.bench_function("fresh instance per call", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let a = world.with_fresh_log();
                    let t0 = Instant::now();
                    let mut fresh = host.instantiate(a.clone()).await.unwrap();
                    let t1 = fresh.start("default", "ana@example.org", &client()).await.unwrap().unwrap();
                    drop(fresh);
                    spent += t0.elapsed();
                    let body = wallet(&t1.step);
                    let t0 = Instant::now();
                    let mut fresh = host.instantiate(a.clone()).await.unwrap();
                    let t2 = fresh.resume(&t1.state, &FlowInput::Presentation(body)).await.unwrap().unwrap();
                    drop(fresh);
                    let mut fresh = host.instantiate(a).await.unwrap();
                    let t3 = fresh.resume(&t2.state, &FlowInput::Selfie("face:90".into())).await.unwrap().unwrap();
                    spent += t0.elapsed();
                    assert!(matches!(t3.step, Step::Completed(_)), "{:?}", t3.step);
                }
                spent
            })
        })
    });
    // The host's default: idle instances stay warm between calls and between recoveries;
    // each recovery gets its own audit log (the attempt limit counts it).
    runtime.block_on(host.start(world.with_fresh_log(), "default", "nobody@example.org", &client())).unwrap().unwrap();
    group.bench_function("warm instances (host default)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let a = world.with_fresh_log();
                    let t0 = Instant::now();
                    let t1 = host.start(a.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
                    spent += t0.elapsed();
                    let body = wallet(&t1.step);
                    let t0 = Instant::now();
                    let t2 = host.resume(a.clone(), &t1.state, &FlowInput::Presentation(body)).await.unwrap().unwrap();
                    let t3 = host.resume(a, &t2.state, &FlowInput::Selfie("face:90".into())).await.unwrap().unwrap();
                    spent += t0.elapsed();
                    assert!(matches!(t3.step, Step::Completed(_)), "{:?}", t3.step);
                }
                spent
            })
        })
    });
    group.bench_function("flow.start on a warm instance (per-request overhead)", |b| {
        warm_starts(b, &runtime, &host, &world, "default");
    });
    // An operator's larger policy set: 100 more policy files of 1 KB each (comments only, so
    // Cedar decides the same): a warm call fetches nothing while the revision stays, so its
    // cost does not grow with the texts.
    let padding: Vec<(String, String)> =
        (0..100).map(|i| (format!("notes-{i}.cedar"), format!("// {}\n", "policy notes ".repeat(78)))).collect();
    let mut policies: Vec<(&str, &str)> = regain_core::policy::DEFAULT_POLICIES.to_vec();
    policies.extend(padding.iter().map(|(name, text)| (name.as_str(), text.as_str())));
    let large = world.with_fresh_log();
    large.deployments().publish(
        "large",
        regain_host::wit::deployment::Bundle {
            config: source("large", CONFIG),
            policies: policies.iter().map(|(name, text)| source(name, text)).collect(),
        },
    );
    group.bench_function("flow.start on a warm instance, 100 KB more policy text", |b| {
        warm_starts(b, &runtime, &host, &large, "large");
    });
    group.bench_function("warm instances: presentation step", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let a = world.with_fresh_log();
                    let t1 = host.start(a.clone(), "default", "ana@example.org", &client()).await.unwrap().unwrap();
                    let body = wallet(&t1.step);
                    let t0 = Instant::now();
                    let t2 = host.resume(a, &t1.state, &FlowInput::Presentation(body)).await.unwrap().unwrap();
                    spent += t0.elapsed();
                    assert_eq!(t2.step, Step::CaptureSelfie);
                }
                spent
            })
        })
    });
    group.bench_function("warm instance: refused call (per-request overhead)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut instance = host.instantiate(world.with_fresh_log()).await.unwrap();
                instance.start("default", "nobody@example.org", &client()).await.unwrap().unwrap();
                let t0 = Instant::now();
                for _ in 0..iters {
                    let refused = instance.resume(b"not a state", &FlowInput::Selfie("x".into())).await.unwrap();
                    assert!(refused.is_err());
                }
                t0.elapsed()
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("recovery natively");
    group.sample_size(30);
    let native_client = regain_core::Client { cross_device: true, ..regain_core::Client::default() };
    let fresh_native = || {
        let env = NativeEnvironment::new(world.with_fresh_log());
        let loaded: Loaded = env.load("default").unwrap();
        (env, loaded)
    };
    group.bench_function("whole recovery", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let (mut env, loaded) = fresh_native();
                let t0 = Instant::now();
                let t1 = flow::start(&mut env, &loaded, "ana@example.org", &native_client).unwrap();
                spent += t0.elapsed();
                let body = native_wallet(&t1.step);
                let t0 = Instant::now();
                let t2 = flow::resume(&mut env, &loaded, &t1.state, Input::Presentation(body)).unwrap();
                let t3 = flow::resume(&mut env, &loaded, &t2.state, Input::Selfie("face:90".into())).unwrap();
                spent += t0.elapsed();
                assert!(matches!(t3.step, regain_core::Step::Completed { .. }), "{:?}", t3.step);
            }
            spent
        })
    });
    group.bench_function("presentation step", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let (mut env, loaded) = fresh_native();
                let t1 = flow::start(&mut env, &loaded, "ana@example.org", &native_client).unwrap();
                let body = native_wallet(&t1.step);
                let t0 = Instant::now();
                let t2 = flow::resume(&mut env, &loaded, &t1.state, Input::Presentation(body)).unwrap();
                spent += t0.elapsed();
                assert_eq!(t2.step, regain_core::Step::CaptureSelfie);
            }
            spent
        })
    });
    group.bench_function("refused call", |b| {
        let (mut env, loaded) = fresh_native();
        b.iter(|| assert!(flow::resume(&mut env, &loaded, b"not a state", Input::Selfie("x".into())).is_err()));
    });
    group.bench_function("flow.start, unknown login", |b| {
        let (mut env, loaded) = fresh_native();
        b.iter(|| flow::start(&mut env, &loaded, "nobody@example.org", &regain_core::Client::default()).unwrap());
    });
    group.finish();
}

/// `flow.start` of deployment `deployment` for an unknown login, over and over on one warm
/// instance (warmed by a first call): the per-request overhead.
fn warm_starts(
    b: &mut criterion::Bencher<'_>,
    runtime: &tokio::runtime::Runtime,
    host: &PluginHost<MemoryAdapter>,
    adapter: &MemoryAdapter,
    deployment: &str,
) {
    b.iter_custom(|iters| {
        runtime.block_on(async {
            let mut instance = host.instantiate(adapter.with_fresh_log()).await.unwrap();
            instance.start(deployment, "nobody@example.org", &client()).await.unwrap().unwrap();
            let t0 = Instant::now();
            for _ in 0..iters {
                instance.start(deployment, "nobody@example.org", &client()).await.unwrap().unwrap();
            }
            t0.elapsed()
        })
    });
}

fn source(name: &str, text: &str) -> regain_host::wit::types::SourceFile {
    regain_host::wit::types::SourceFile { name: name.into(), text: text.into() }
}

criterion_group!(recovery, benches);
criterion_main!(recovery);
