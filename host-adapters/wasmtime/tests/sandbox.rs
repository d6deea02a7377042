//! The sandbox against a real, deliberately misbehaving guest component.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

mod support;

use regain_host::memory::MemoryAdapter;
use regain_host::wit::flow::{ProviderRedirect, Step};
use regain_host::{CallError, ComponentSource, PluginHost, SandboxConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{Gauge, Slow, TEST_GUEST, client, config, directory};

fn guest(config: SandboxConfig) -> PluginHost<MemoryAdapter> {
    PluginHost::new(config, ComponentSource::File(Path::new(TEST_GUEST))).expect("test guest loads")
}

/// The test guest's answer: a redirect whose URL says what it found.
fn redirect(url: &str) -> Step {
    Step::Redirect(ProviderRedirect { url: url.into(), state: String::new(), code_verifier: String::new() })
}

/// The request every test makes after a misbehaviour: the host must still answer it.
async fn serves_normally(host: &PluginHost<MemoryAdapter>) {
    let found = host.start(directory(), "cfg", "ana@example.org", &client()).await.unwrap().unwrap();
    assert_eq!(found.step, redirect("found"));
    let missing = host.start(directory(), "cfg", "nobody@example.org", &client()).await.unwrap().unwrap();
    assert_eq!(missing.step, redirect("not-found"));
}

// A hang guard, not a speed assertion: a broken deadline would hang the test forever.
async fn within_a_minute<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f).await.expect("the call returned")
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let host = guest(config());
    let err = within_a_minute(host.start(directory(), "cfg", "spin", &client())).await.unwrap_err();
    assert_eq!(err, CallError::Timeout(Duration::from_millis(300)));
    assert_eq!(err.to_string(), "the plugin call ran past its deadline of 300ms and was stopped");
    serves_normally(&host).await;
}

#[tokio::test]
async fn allocation_past_the_cap_fails_cleanly() {
    let host = guest(config());
    let err = within_a_minute(host.start(directory(), "cfg", "hog", &client())).await.unwrap_err();
    assert_eq!(err, CallError::MemoryLimit(16 << 20));
    serves_normally(&host).await;
}

#[tokio::test]
async fn a_trap_is_returned_as_an_error() {
    let host = guest(config());
    let err = within_a_minute(host.start(directory(), "cfg", "trap", &client())).await.unwrap_err();
    let CallError::Trap(text) = &err else { panic!("expected a trap, got {err:?}") };
    assert!(text.contains("unreachable"), "trap text: {text}");
    serves_normally(&host).await;
}

#[tokio::test]
async fn a_failed_instance_is_poisoned_but_the_host_is_not() {
    let host = guest(config());
    let mut instance = host.instantiate(directory()).await.unwrap();
    assert!(matches!(instance.start("cfg", "trap", &client()).await, Err(CallError::Trap(_))));
    assert_eq!(instance.start("cfg", "ana@example.org", &client()).await.unwrap_err(), CallError::Poisoned);
    drop(instance);
    serves_normally(&host).await;
}

#[tokio::test]
async fn a_reused_instance_serves_many_calls() {
    let host = guest(config());
    let mut instance = host.instantiate(directory()).await.unwrap();
    for _ in 0..50 {
        let t = instance.start("cfg", "bo@example.org", &client()).await.unwrap().unwrap();
        assert_eq!(t.step, redirect("found"));
    }
}

#[tokio::test]
async fn an_idle_warm_instance_keeps_nothing_of_the_call_it_served() {
    let host = PluginHost::<Slow>::new(config(), ComponentSource::File(Path::new(TEST_GUEST))).unwrap();
    let gauge = Arc::new(Gauge::default());
    for _ in 0..3 {
        let adapter = Slow(directory(), Duration::ZERO, Arc::clone(&gauge));
        let t = host.start(adapter, "cfg", "bo@example.org", &client()).await.unwrap().unwrap();
        assert_eq!(t.step, redirect("found"));
        // The instance is idle and kept warm, but the call's adapter (with whatever the
        // request held: a database connection, a selfie) is gone.
        assert_eq!(Arc::strong_count(&gauge), 1);
    }
    assert_eq!(gauge.total.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_calls_all_succeed_within_the_instance_bound() {
    let config = SandboxConfig { max_instances: 6, ..config() };
    let gauge = Arc::new(Gauge::default());
    let adapter = Slow(directory(), Duration::from_millis(20), Arc::clone(&gauge));
    let host = PluginHost::<Slow>::new(config, ComponentSource::File(Path::new(TEST_GUEST))).unwrap();

    let calls: Vec<_> = (0..64)
        .map(|i| {
            let host = host.clone();
            let adapter = adapter.clone();
            tokio::spawn(async move {
                let login = if i % 2 == 0 { "ana@example.org" } else { "nobody@example.org" };
                let t = host
                    .start(adapter, "cfg", login, &client())
                    .await
                    .expect("no sandbox error")
                    .expect("no flow error");
                (i, t.step)
            })
        })
        .collect();
    for call in calls {
        let (i, step) = within_a_minute(call).await.unwrap();
        let expected = if i % 2 == 0 { "found" } else { "not-found" };
        assert_eq!(step, redirect(expected), "call {i}");
    }
    assert_eq!(gauge.total.load(Ordering::SeqCst), 64);
    let max = gauge.max.load(Ordering::SeqCst);
    assert!(max <= 6, "{max} calls ran at once with a bound of 6");
    assert!(max >= 2, "calls never overlapped (max {max}): the host serialised them");
}

#[tokio::test]
async fn a_call_waits_for_a_slot_then_fails_as_busy() {
    let config = SandboxConfig { max_instances: 1, queue_timeout: Duration::from_millis(100), ..config() };
    let host = guest(config);
    let held = host.instantiate(directory()).await.unwrap();
    let err = host.start(directory(), "cfg", "ana@example.org", &client()).await.unwrap_err();
    assert_eq!(err, CallError::Busy(Duration::from_millis(100)));
    drop(held);
    serves_normally(&host).await;
}

/// Every line of the probe's report, as `name=value` pairs.
fn report(state: &[u8]) -> Vec<(String, String)> {
    String::from_utf8(state.to_vec())
        .unwrap()
        .lines()
        .map(|line| {
            let (k, v) = line.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_guest_gets_no_files_environment_arguments_stdin_or_network() {
    // A real listener the guest is told to reach: if the sandbox leaked the network, a
    // connection would arrive here.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let host = guest(config());

    let login = format!("probe:{address}");
    let t = host.start(directory(), "cfg", &login, &client()).await.unwrap().unwrap();
    let seen = report(&t.state);
    assert!(seen.len() >= 14, "short report: {seen:?}");
    for (name, value) in &seen {
        match name.as_str() {
            n if n.starts_with("file ") || n.starts_with("dir ") || n.starts_with("tcp ") || n.starts_with("udp") => {
                assert!(value.starts_with("denied:"), "{name} was {value}")
            }
            "env count" | "args count" => assert_eq!(value, "0", "{name}"),
            "env HOME" | "env PATH" => assert_eq!(value, "None", "{name}"),
            "stdin" => assert!(value == "granted:0 bytes" || value.starts_with("denied:"), "stdin was {value}"),
            other => panic!("unexpected report line {other}={value}"),
        }
    }
    assert!(std::env::var_os("PATH").is_some(), "the test process itself has an environment");
    assert_eq!(listener.accept().map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
}
