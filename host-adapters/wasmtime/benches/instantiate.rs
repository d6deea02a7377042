//! Cost of running the real plugin component: compile, cached load, instantiation, and one
//! `flow.start` (configuration and policies parsed, eligibility and routing decided, a
//! presentation request built) in a fresh instance versus a reused one, with the pooling
//! allocator.
//!
//! `cargo bench -p regain-host --bench instantiate`; figures in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark that cannot set up may panic")]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use regain_host::memory::MemoryAdapter;
use regain_host::wit::types::{ClientInfo, User};
use regain_host::{ComponentSource, PluginHost, SandboxConfig};
use std::hint::black_box;
use std::time::Duration;

fn users() -> Vec<User> {
    (0..100)
        .map(|i| User {
            id: format!("u-{i}"),
            login: format!("user{i}@example.org"),
            given_name: Some("Ana".into()),
            family_name: Some(format!("Silva{i}")),
            enabled: true,
            last_sign_in: Some(1_790_000_000),
            groups: vec!["recovery".into()],
            country: Some("PT".into()),
            privileged: false,
            attributes: vec![],
        })
        .collect()
}

fn client() -> ClientInfo {
    ClientInfo { address: Some("192.0.2.1".into()), country: None, cross_device: false, recent_attempts: 0 }
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let config = SandboxConfig { cache_dir: Some(cache.path().to_path_buf()), ..SandboxConfig::default() };
    let host = PluginHost::<MemoryAdapter>::new(config.clone(), ComponentSource::Bundled).unwrap();
    let deployment = "scope_group = \"recovery\"\n[verifier]\nresponse_uri = \"https://r.example/vp\"\n\
        [[idv]]\nid = \"idv\"\nissuer = \"https://idv.example\"\nvct = [\"v\"]\ncountries = [\"*\"]\n";
    let directory = MemoryAdapter::builder()
        .users(users())
        .deployment("default", deployment, &regain_core::policy::DEFAULT_POLICIES)
        .build();
    // A fresh audit log per iteration keeps it from growing; the directory is shared.
    let adapter = || directory.with_fresh_log();

    let mut load = c.benchmark_group("load");
    load.sample_size(10).measurement_time(Duration::from_secs(20));
    load.bench_function("compile (no cache)", |b| {
        let uncached = SandboxConfig { cache_dir: None, ..config.clone() };
        b.iter(|| PluginHost::<MemoryAdapter>::new(uncached.clone(), ComponentSource::Bundled).unwrap())
    });
    load.bench_function("cached artefact", |b| {
        b.iter(|| PluginHost::<MemoryAdapter>::new(config.clone(), ComponentSource::Bundled).unwrap())
    });
    load.finish();

    let mut call = c.benchmark_group("call");
    call.bench_function("instantiate only (pooling + pre)", |b| {
        // The instance is dropped inside the measurement: freeing the slot is part of the cost,
        // and criterion would otherwise hold every instance until the batch ends.
        b.iter_batched(adapter, |a| drop(runtime.block_on(host.instantiate(a)).unwrap()), BatchSize::SmallInput)
    });
    call.bench_function("fresh instance + flow.start", |b| {
        b.iter_batched(
            adapter,
            |a| {
                runtime.block_on(async {
                    let mut fresh = host.instantiate(a).await.unwrap();
                    fresh.start("default", black_box("user42@example.org"), &client()).await.unwrap()
                })
            },
            BatchSize::SmallInput,
        )
    });
    call.bench_function("reused instance + flow.start", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut spent = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    // A new instance (and audit log) every 1000 calls keeps memory flat.
                    let mut instance = host.instantiate(adapter()).await.unwrap();
                    let batch = (iters - done).min(1000);
                    let started = std::time::Instant::now();
                    for _ in 0..batch {
                        instance.start("default", black_box("user42@example.org"), &client()).await.unwrap().unwrap();
                    }
                    spent += started.elapsed();
                    done += batch;
                }
                spent
            })
        })
    });
    call.finish();
}

criterion_group!(instantiate, benches);
criterion_main!(instantiate);
