//! Load test of the reference server: complete recoveries over loopback HTTP against the
//! `regain serve` binary of this build, driven the way a browser and a wallet drive them:
//! start, the wallet's `direct_post`, the response code back in the browser, the selfie and
//! the pass page, then the pass sign-in (`POST /authorize`, `method=tap`) that answers the
//! register page. The IDV side runs in this process: its status list and a face comparison
//! double. Users are seeded in the database beforehand, one per recovery.
//!
//! It measures the server's CPU time per recovery on SQLite and on PostgreSQL (utime + stime
//! from `/proc/PID/stat`, after a warm-up) and where it goes step by step, one recovery at
//! a time and under load (one process on SQLite), then the throughput of one process and of
//! two processes sharing one PostgreSQL database. While a server's CPU is measured it runs on
//! half of the machine's CPUs and PostgreSQL and the load generator on the other half (set
//! with `taskset`, as on hosts of their own); the throughput comparison shares every CPU. Every
//! recovery is checked (pass shown, sign-in answered the register page); any failure fails
//! the run. The report goes to `docs/benchmarks-server.md`.
//!
//! `cargo bench -p regain-server --bench server_load` (about seven minutes; needs
//! `REGAIN_TEST_POSTGRES_URL`, which `bash scripts/postgres start` prints). The report's
//! figures are rewritten on every run; the analysis below them in the file is kept.
//!
//! - `REGAIN_BENCH_QUICK=1`: a short pass that checks the same things and writes no report;
//! - `REGAIN_BENCH_RECOVERIES=N`: N sequential recoveries per database, to attach a profiler
//!   (`perf record -p PID`) to a server for longer;
//! - `REGAIN_BENCH_CLIENTS=N`, `REGAIN_BENCH_SECONDS=S`: N clients for S seconds in each run
//!   under load (default 12 for 30 s; 4 for 3 s when quick);
//! - `REGAIN_BENCH_KEEP=1`: keeps each run's files and server logs, and prints where.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    reason = "a load tool that cannot set up stops with the reason"
)]

#[path = "../tests/server/support/mod.rs"]
mod support;

use axum::routing::{get, post};
use base64::Engine as _;
use regain_dev_idv::keys::SigningKey;
use regain_dev_idv::sdjwt::Issued;
use regain_server::store::{Store, now};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::recovery::{RP, VCT, credential_listed_at, element, member, wallet_answer};

/// Seeded users are `Ana Silva<letters>`: names must differ, as a name shared by two users in
/// scope matches neither.
const GIVEN: &str = "Ana";
const FAMILY: &str = "Silva";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuIojdkuwOQ";
/// The steps of one recovery, as the browser and the wallet see them.
const STEPS: [&str; 5] = [
    "start (`POST /recover/start`)",
    "wallet `direct_post` (`POST /recover/response`)",
    "response code (`GET /recover/continue`)",
    "selfie, pass issued (`POST /recover/selfie`)",
    "pass sign-in (`POST /authorize`, `method=tap`)",
];

struct Settings {
    quick: bool,
    /// CPUs the machine gives this process (read before any is set aside).
    cpus: usize,
    warmup: usize,
    sequential: usize,
    clients: usize,
    duration: Duration,
}

impl Settings {
    fn from_env() -> Self {
        let quick = std::env::var("REGAIN_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let mut settings = if quick {
            Self { quick, cpus, warmup: 5, sequential: 20, clients: 4, duration: Duration::from_secs(3) }
        } else {
            Self { quick, cpus, warmup: 50, sequential: 500, clients: 12, duration: Duration::from_secs(30) }
        };
        // Longer sequential runs, to attach a profiler to a server.
        if let Some(n) = std::env::var("REGAIN_BENCH_RECOVERIES").ok().and_then(|n| n.parse().ok()) {
            settings.sequential = n;
        }
        // Another load: clients, and seconds of each load run.
        if let Some(n) = std::env::var("REGAIN_BENCH_CLIENTS").ok().and_then(|n| n.parse().ok()) {
            settings.clients = n;
        }
        if let Some(n) = std::env::var("REGAIN_BENCH_SECONDS").ok().and_then(|n| n.parse().ok()) {
            settings.duration = Duration::from_secs(n);
        }
        settings
    }
}

// ---- CPU accounting from /proc ------------------------------------------------------------

/// Clock ticks per second of the times in `/proc/PID/stat` (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime and stime of a process: all its threads, including those that have ended, in ticks.
fn process_times(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; fields count from the state.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// utime + stime of a process, in ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    process_times(pid).map(|(user, system)| user + system)
}

/// CPU time of a process's live threads in nanoseconds, and how many times they were put on
/// a CPU (`/proc/PID/task/*/schedstat`): precise enough to split one recovery into its steps,
/// where ticks are too coarse.
fn threads(pid: u32) -> (u64, u64) {
    threads_named(pid, |_| true)
}

/// [`threads`] over the threads whose name (`comm`) passes `keep`.
fn threads_named(pid: u32, keep: impl Fn(&str) -> bool) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return (0, 0) };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| keep(c.trim_end())))
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .fold((0, 0), |(ns, runs), s| {
            let mut fields = s.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
            let (on_cpu, _waiting, scheduled) = (fields.next(), fields.next(), fields.next());
            (ns + on_cpu.unwrap_or(0), runs + scheduled.unwrap_or(0))
        })
}

/// CPU time in nanoseconds of a process's SQLite connection threads (sqlx runs each SQLite
/// connection on a thread of its own, named `sqlx-sqlite-worker-N`): the database engine's
/// share of a SQLite server's CPU, with the driver's work on those threads.
fn sqlite_threads(pid: u32) -> u64 {
    threads_named(pid, |name| name.starts_with("sqlx-sqlite")).0
}

/// The whole machine's CPU time from `/proc/stat`, in ticks: (busy, steal, total).
fn machine_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0, 0) };
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
    if v.len() < 8 {
        return (0, 0, 0);
    }
    // user nice system idle iowait irq softirq steal
    let busy = v[0] + v[1] + v[2] + v[5] + v[6];
    (busy, v[7], v.iter().sum())
}

/// The PostgreSQL processes serving the bench database, and the server's own background
/// processes (WAL writer, checkpointer...), found through `pg_stat_activity`.
struct PostgresProbe {
    admin: sqlx::AnyPool,
}

impl PostgresProbe {
    async fn ticks(&self) -> HashMap<u32, u64> {
        let pids: Vec<i64> = sqlx::query_scalar(
            "SELECT CAST(pid AS BIGINT) FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL",
        )
        .fetch_all(&self.admin)
        .await
        .unwrap_or_default();
        pids.into_iter().filter_map(|p| u32::try_from(p).ok()).filter_map(|p| Some((p, process_ticks(p)?))).collect()
    }
}

/// CPU ticks between two snapshots of a set of processes; processes that started in between
/// count from zero, those that ended in between are lost (connections are pooled and live on).
fn ticks_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after.iter().map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0))).sum()
}

/// A snapshot of every CPU figure a phase reports.
struct Snapshot {
    at: Instant,
    servers: u64,
    servers_system: u64,
    /// Times the servers' threads were put on a CPU.
    servers_switches: u64,
    /// Nanoseconds on a CPU of the servers' SQLite connection threads.
    servers_sqlite: u64,
    generator: u64,
    postgres: Option<HashMap<u32, u64>>,
    machine: (u64, u64, u64),
}

async fn snapshot(servers: &[u32], postgres: Option<&PostgresProbe>) -> Snapshot {
    let postgres = match postgres {
        Some(p) => Some(p.ticks().await),
        None => None,
    };
    Snapshot {
        at: Instant::now(),
        servers: servers.iter().filter_map(|p| process_ticks(*p)).sum(),
        servers_system: servers.iter().filter_map(|p| Some(process_times(*p)?.1)).sum(),
        servers_switches: servers.iter().map(|p| threads(*p).1).sum(),
        servers_sqlite: servers.iter().map(|p| sqlite_threads(*p)).sum(),
        generator: process_ticks(std::process::id()).unwrap_or(0),
        postgres,
        machine: machine_ticks(),
    }
}

/// CPU spent between two snapshots, in seconds.
struct Spent {
    wall: f64,
    servers: f64,
    /// The part of `servers` spent in the kernel (stime).
    servers_system: f64,
    servers_switches: f64,
    /// The part of `servers` spent on SQLite's connection threads, in seconds.
    servers_sqlite: f64,
    generator: f64,
    postgres: Option<f64>,
    /// Share of the machine's CPU time that was busy, and stolen by the hypervisor.
    busy: f64,
    steal: f64,
}

fn spent(a: &Snapshot, b: &Snapshot, hz: f64) -> Spent {
    let total = b.machine.2.saturating_sub(a.machine.2).max(1) as f64;
    Spent {
        wall: b.at.duration_since(a.at).as_secs_f64(),
        servers: b.servers.saturating_sub(a.servers) as f64 / hz,
        servers_system: b.servers_system.saturating_sub(a.servers_system) as f64 / hz,
        servers_switches: b.servers_switches.saturating_sub(a.servers_switches) as f64,
        servers_sqlite: b.servers_sqlite.saturating_sub(a.servers_sqlite) as f64 / 1e9,
        generator: b.generator.saturating_sub(a.generator) as f64 / hz,
        postgres: match (&a.postgres, &b.postgres) {
            (Some(x), Some(y)) if !y.is_empty() => Some(ticks_between(x, y) as f64 / hz),
            _ => None,
        },
        busy: b.machine.0.saturating_sub(a.machine.0) as f64 / total,
        steal: b.machine.1.saturating_sub(a.machine.1) as f64 / total,
    }
}

// ---- where the processes run -----------------------------------------------------------------

/// The CPUs this process may run on (`Cpus_allowed_list` in `/proc/self/status`: `0-1`,
/// `0,2-3`...).
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) else { return Vec::new() };
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(from), Ok(to)) = (from.trim().parse::<usize>(), to.trim().parse::<usize>()) {
            cpus.extend(from..=to);
        }
    }
    cpus
}

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// Sets the CPUs of every thread of process `pid` (`taskset`, from util-linux).
fn pin(pid: u32, cpus: &str) -> Result<(), String> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("taskset could not move process {pid} ({status})")) }
}

/// The parent of process `pid`.
fn parent(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")?.trim().parse().ok())
}

/// Whether process `pid` of this machine runs PostgreSQL (a server on another machine has
/// process ids that mean nothing here).
fn is_postgres(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "postgres")
}

/// PostgreSQL's processes: the postmaster (the parent of `backend`) and its children; backends
/// started later are forked by the postmaster and inherit its CPUs. None when `backend` is
/// not a PostgreSQL process of this machine.
fn postgres_processes(backend: u32) -> Vec<u32> {
    if !is_postgres(backend) {
        return Vec::new();
    }
    let Some(postmaster) = parent(backend).filter(|p| *p > 1 && is_postgres(*p)) else { return Vec::new() };
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
            && parent(pid) == Some(postmaster)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Where the processes run while the server's CPU is measured: the servers on CPUs of their
/// own, PostgreSQL and the load generator on the others, as on hosts of their own. Sharing
/// every CPU, the server pays for the others' work: the kernel preempts its workers to run
/// PostgreSQL and the load generator, and each of those switches costs the server CPU time.
struct Placement {
    all: String,
    servers: String,
    rest: String,
    postgres: Vec<u32>,
}

impl Placement {
    /// Splits the CPUs in two (the servers get the first half) and moves this process and
    /// PostgreSQL (`backend` is one of its connections' processes) to the second half. Fails,
    /// with the reason, on a machine of one CPU or where a process cannot be moved; everything
    /// is then where it was.
    fn apply(backend: u32) -> Result<Self, String> {
        let cpus = allowed_cpus();
        if cpus.len() < 2 {
            return Err(format!("{} CPU to run on", cpus.len()));
        }
        let (servers, rest) = cpus.split_at(cpus.len() / 2);
        let postgres = postgres_processes(backend);
        let Some(&postmaster) = postgres.first() else {
            return Err("PostgreSQL's processes were not found on this machine".into());
        };
        let placement = Self { all: cpu_list(&cpus), servers: cpu_list(servers), rest: cpu_list(rest), postgres };
        let moved = [std::process::id(), postmaster].into_iter().try_for_each(|pid| pin(pid, &placement.rest));
        // On failure, dropping the placement puts back what moved.
        moved?;
        // The postmaster's children that are there now (one may end meanwhile).
        for pid in placement.postgres.iter().skip(1) {
            let _ = pin(*pid, &placement.rest);
        }
        Ok(placement)
    }

    /// How the CPUs were split, for the report.
    fn described(&self) -> (String, String) {
        (self.servers.clone(), self.rest.clone())
    }
}

/// Every process back on every CPU (also when a run fails half-way).
impl Drop for Placement {
    fn drop(&mut self) {
        for pid in std::iter::once(std::process::id()).chain(self.postgres.iter().copied()) {
            let _ = pin(pid, &self.all);
        }
    }
}

/// The process serving a connection to the PostgreSQL server at `url`.
async fn postgres_backend(url: &str) -> Result<u32, String> {
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(url).await.map_err(|e| e.to_string())?;
    let pid: i64 = sqlx::query_scalar("SELECT CAST(pg_backend_pid() AS BIGINT)")
        .fetch_one(&admin)
        .await
        .map_err(|e| e.to_string())?;
    admin.close().await;
    u32::try_from(pid).map_err(|e| e.to_string())
}

// ---- the IDV side, the server processes, the database -------------------------------------

/// The IDV side the server reaches over HTTP: its status list and, as a TEST DOUBLE (no face
/// comparison service exists on this machine), a comparison service that scores selfies
/// reading `face:<score>`.
async fn idv_services() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let uri = format!("{base}/status/1");
    let list = regain_dev_idv::status::token(
        &SigningKey::p256(1),
        Some("k1"),
        &uri,
        &[0, 0, 1, 0],
        1,
        u64::try_from(now()).unwrap() - 60,
        None,
    );
    let router = axum::Router::new()
        .route("/status/1", get(move || async move { ([("content-type", "application/statuslist+jwt")], list) }))
        .route(
            "/compare",
            post(|axum::Json(body): axum::Json<Value>| async move {
                let score = body["selfie"]
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .and_then(|s| String::from_utf8(s).ok())
                    .and_then(|s| s.strip_prefix("face:").and_then(|n| n.parse::<u8>().ok()))
                    .unwrap_or(0);
                axum::Json(serde_json::json!({ "score": score, "live": true }))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// A directory for one run's files and server logs, removed on drop unless
/// `REGAIN_BENCH_KEEP=1` (then its path is printed).
struct Workdir {
    path: PathBuf,
    _removed_on_drop: Option<tempfile::TempDir>,
}

impl Workdir {
    fn path(&self) -> &Path {
        &self.path
    }
}

fn workdir() -> Result<Workdir, String> {
    let dir = tempfile::Builder::new().prefix("regain-load-").tempdir().map_err(|e| e.to_string())?;
    if std::env::var("REGAIN_BENCH_KEEP").is_ok_and(|v| v == "1") {
        let path = dir.keep();
        println!("files and server logs kept in {}", path.display());
        return Ok(Workdir { path, _removed_on_drop: None });
    }
    Ok(Workdir { path: dir.path().to_owned(), _removed_on_drop: Some(dir) })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes one server configuration per listening port (all under the issuer on
/// `issuer_port`, as behind a load balancer), the deployment, the shipped policies and the
/// IDV's key file.
fn write_files(dir: &Path, idv: &str, issuer_port: u16, ports: &[u16]) -> Vec<PathBuf> {
    let issuer = format!("http://127.0.0.1:{issuer_port}");
    std::fs::write(
        dir.join("regain.toml"),
        format!(
            "mode = \"production\"\nscope_group = \"recovery\"\n\n[verifier]\nresponse_uri = \"{issuer}/recover/response\"\n\n\
             [[idv]]\nid = \"dev-idv\"\nissuer = \"https://idv.example\"\nvct = [\"{VCT}\"]\ncountries = [\"*\"]\n\
             jwks_file = \"idv-jwks.json\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("idv-jwks.json"), SigningKey::p256(1).jwks(Some("k1")).to_string()).unwrap();
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cedar") {
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
    }
    // The default rate limits stay: every simulated browser has its own loopback address
    // and every recovery its own user, so none of them binds.
    ports
        .iter()
        .map(|port| {
            let config = dir.join(format!("regain-server-{port}.toml"));
            std::fs::write(
                &config,
                format!(
                    "issuer = \"{issuer}\"\nlisten = \"127.0.0.1:{port}\"\n\n\
                     [[client]]\nclient_id = \"rp\"\nredirect_uris = [\"{RP}\"]\n\n\
                     [recovery]\ndeployment = \"regain.toml\"\npolicies = \"policies\"\nface_service = \"{idv}/compare\"\n"
                ),
            )
            .unwrap();
            config
        })
        .collect()
}

/// A `regain serve` process, killed on drop.
struct Server {
    child: Child,
    /// Where it listens.
    base: String,
    /// The issuer (the first process's address when several share one name).
    issuer: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the servers of `configs` on `database`, logging with `filter`, on `cpus` when
/// given (a `taskset` list), and waits until each answers `/healthz`.
async fn serve(
    dir: &Path,
    configs: &[PathBuf],
    ports: &[u16],
    database: &str,
    filter: &str,
    cpus: Option<&str>,
) -> Vec<Server> {
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let mut servers = Vec::new();
    for (config, port) in configs.iter().zip(ports) {
        let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
        // On CPUs of its own: `taskset` sets them and becomes the server (same process).
        let mut command = match cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.args(["-c", cpus, env!("CARGO_BIN_EXE_regain")]);
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_regain")),
        };
        let child = command
            .args(["serve", "--server-config", config.to_str().unwrap()])
            .env("DATABASE_URL", database)
            .env("REGAIN_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        servers.push(Server { child, base: format!("http://127.0.0.1:{port}"), issuer: issuer.clone() });
    }
    for server in &mut servers {
        let mut up = false;
        for _ in 0..1200 {
            if let Ok(r) = reqwest::get(format!("{}/healthz", server.base)).await
                && r.status().is_success()
            {
                up = true;
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server on {} exited ({status}); its log is in {}", server.base, dir.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "the server on {} never became healthy", server.base);
    }
    servers
}

/// A seeded user and the credential the IDV issued to them.
struct User {
    login: String,
    issued: Issued,
}

/// A family name of letters only, distinct for every `i`.
fn family(i: usize) -> String {
    let mut name = FAMILY.to_owned();
    let mut n = i;
    loop {
        name.push(char::from(b'a' + u8::try_from(n % 26).unwrap_or(0)));
        n /= 26;
        if n == 0 {
            return name;
        }
    }
}

/// Seeds `count` users in the recovery scope and issues each a credential (listed as valid
/// in the status list at `status_uri`); all of it before anything is measured.
async fn seed(store: &Store, prefix: &str, count: usize, status_uri: &str) -> Vec<User> {
    let workers = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let store = store.clone();
        let (prefix, status_uri) = (prefix.to_owned(), status_uri.to_owned());
        tasks.spawn(async move {
            let mut users = Vec::new();
            for i in (w..count).step_by(workers) {
                let login = format!("{prefix}-{i}@bench.example");
                store.create_user(&member(&format!("{prefix}-{i}"), &login, GIVEN, &family(i)), now()).await.unwrap();
                users.push((i, User { login, issued: credential_listed_at(&status_uri, GIVEN, &family(i), 0) }));
            }
            users
        });
    }
    let mut users = Vec::new();
    while let Some(done) = tasks.join_next().await {
        users.extend(done.unwrap());
    }
    users.sort_by_key(|(i, _)| *i);
    users.into_iter().map(|(_, u)| u).collect()
}

// ---- one recovery ---------------------------------------------------------------------------

/// What every recovery shares: the wallet's HTTP client and the next browser address.
struct Load {
    wallet: reqwest::Client,
    next_address: AtomicU32,
}

impl Load {
    /// A new browser: its own cookies and its own loopback address (127.x.y.z), as distinct
    /// users arrive from distinct addresses; per-address limits then count per browser.
    fn browser(&self) -> Result<reqwest::Client, String> {
        let n = self.next_address.fetch_add(1, Ordering::Relaxed);
        let octet = |v: u32| u8::try_from(v % 250 + 1).unwrap_or(1);
        let address = Ipv4Addr::new(127, octet(n / 62_500), octet(n / 250), octet(n));
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .local_address(IpAddr::V4(address))
            .build()
            .map_err(|e| format!("browser: {e}"))
    }
}

fn auth_form() -> Vec<(&'static str, String)> {
    vec![
        ("client_id", "rp".into()),
        ("redirect_uri", RP.into()),
        ("response_type", "code".into()),
        ("scope", "openid".into()),
        ("state", "s1".into()),
        ("nonce", "n1".into()),
        ("code_challenge", CHALLENGE.into()),
        ("code_challenge_method", "S256".into()),
    ]
}

/// Per step: wall time, and when probed the server's CPU time in nanoseconds and how many
/// times its threads were put on a CPU.
type Steps = Vec<(Duration, (u64, u64))>;

/// Times the steps of one recovery; reads the server's thread CPU when `pid` is given.
struct StepClock {
    pid: Option<u32>,
    at: Instant,
    cpu: (u64, u64),
    steps: Steps,
}

impl StepClock {
    fn new(pid: Option<u32>) -> Self {
        Self { pid, at: Instant::now(), cpu: pid.map_or((0, 0), threads), steps: Vec::new() }
    }

    fn lap(&mut self) {
        let cpu = self.pid.map_or((0, 0), threads);
        let at = Instant::now();
        self.steps.push((at - self.at, (cpu.0.saturating_sub(self.cpu.0), cpu.1.saturating_sub(self.cpu.1))));
        (self.at, self.cpu) = (at, cpu);
    }
}

async fn send(request: reqwest::RequestBuilder, step: &str) -> Result<(reqwest::StatusCode, String), String> {
    let response = request.send().await.map_err(|e| format!("{step}: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("{step}: {e}"))?;
    Ok((status, body))
}

/// One complete recovery of `login` on `server`; answers the steps' timings, or what went wrong.
async fn recover(load: &Load, server: &Target, user: &User, probe: bool) -> Result<Steps, String> {
    let login = user.login.as_str();
    let base = &server.base;
    let browser = load.browser()?;
    let mut clock = StepClock::new(probe.then_some(server.pid));

    let mut form = auth_form();
    form.extend([("login", login.to_owned()), ("device", "same".to_owned())]);
    let (status, page) = send(browser.post(format!("{base}/recover/start")).form(&form), "start").await?;
    let request = element(&page, "wallet-link").filter(|_| status == 200).ok_or_else(|| format!("start: {status}"))?;
    clock.lap();

    let body = wallet_answer(&request, &user.issued);
    let (status, answer) = send(
        load.wallet
            .post(format!("{base}/recover/response"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
        "wallet",
    )
    .await?;
    let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    let back = answer["redirect_uri"]
        .as_str()
        .filter(|_| status == 200)
        .ok_or_else(|| format!("wallet: {status} {answer}"))?;
    // The answer names the public issuer; this browser stays on its own process.
    let back = back.strip_prefix(&server.issuer).map_or_else(|| back.to_owned(), |path| format!("{base}{path}"));
    clock.lap();

    let (status, page) = send(browser.get(back), "response code").await?;
    if status != 200 || !page.contains("selfie-form") {
        return Err(format!("response code: {status}, {}", outline(&page)));
    }
    clock.lap();

    let selfie = format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode("face:93"));
    let (status, page) =
        send(browser.post(format!("{base}/recover/selfie")).form(&[("selfie", selfie)]), "selfie").await?;
    let pass = element(&page, "tap")
        .filter(|_| status == 200)
        .ok_or_else(|| format!("selfie: {status}, {}", outline(&page)))?;
    clock.lap();

    let mut form = auth_form();
    form.extend([("method", "tap".to_owned()), ("login", login.to_owned()), ("tap", pass)]);
    let (status, page) = send(browser.post(format!("{base}/authorize")).form(&form), "sign-in").await?;
    if status != 200 || !page.contains("Register a new sign-in method") {
        return Err(format!("pass sign-in: {status}, {}", outline(&page)));
    }
    clock.lap();
    Ok(clock.steps)
}

/// What a page that is not the expected one says: its heading and helpdesk reference.
fn outline(page: &str) -> String {
    let heading = page.split_once("<h1>").and_then(|(_, rest)| rest.split_once('<')).map_or("", |(h, _)| h);
    match element(page, "helpdesk-ref") {
        Some(reference) => format!("page `{heading}`, helpdesk reference {reference}"),
        None => format!("page `{heading}`"),
    }
}

/// Adds the audit trail's reason codes to a failure that names a helpdesk reference.
async fn diagnose(database: &str, error: String) -> String {
    let Some(reference) = error.split("helpdesk reference ").nth(1).and_then(|r| r.split([' ', ';']).next()) else {
        return error;
    };
    let Ok(store) = Store::open(database).await else { return error };
    let trail = store.audit_by_helpdesk_ref(reference).await.unwrap_or_default();
    let reasons: Vec<String> = trail.iter().map(|e| format!("{:?}: {}", e.kind, e.reason)).collect();
    format!("{error}; audit trail: {}", reasons.join(", "))
}

/// Where a simulated user goes.
#[derive(Clone)]
struct Target {
    base: String,
    issuer: String,
    pid: u32,
}

fn targets(servers: &[Server]) -> Vec<Target> {
    servers.iter().map(|s| Target { base: s.base.clone(), issuer: s.issuer.clone(), pid: s.pid() }).collect()
}

// ---- the phases ---------------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// N recoveries one after another on one process, after a warm-up.
struct Sequential {
    database: &'static str,
    recoveries: usize,
    spent: Spent,
    p50: Duration,
    p95: Duration,
    /// Per step: mean wall time, mean server CPU and times its threads were put on a CPU
    /// (threads' schedstat).
    steps: Vec<(Duration, Duration, f64)>,
}

async fn sequential(
    database: &'static str,
    load: &Load,
    server: &Target,
    users: &[User],
    warmup: usize,
    postgres: Option<&PostgresProbe>,
    hz: f64,
) -> Result<Sequential, String> {
    let (warm, measured) = users.split_at(warmup);
    for user in warm {
        recover(load, server, user, false).await.map_err(|e| format!("{database} warm-up: {e}"))?;
    }
    let before = snapshot(&[server.pid], postgres).await;
    let mut walls = Vec::new();
    let mut sums = vec![(Duration::ZERO, 0u64, 0u64); STEPS.len()];
    let mut failures = Vec::new();
    for user in measured {
        let at = Instant::now();
        match recover(load, server, user, true).await {
            Ok(steps) => {
                walls.push(at.elapsed());
                for (sum, (wall, (cpu, runs))) in sums.iter_mut().zip(steps) {
                    sum.0 += wall;
                    sum.1 += cpu;
                    sum.2 += runs;
                }
            }
            Err(e) => failures.push(e),
        }
    }
    let after = snapshot(&[server.pid], postgres).await;
    if let Some(first) = failures.first() {
        return Err(format!("{database}: {} of {} recoveries failed; first: {first}", failures.len(), measured.len()));
    }
    walls.sort();
    let n = u32::try_from(walls.len().max(1)).unwrap_or(u32::MAX);
    Ok(Sequential {
        database,
        recoveries: walls.len(),
        spent: spent(&before, &after, hz),
        p50: percentile(&walls, 0.5),
        p95: percentile(&walls, 0.95),
        steps: sums
            .into_iter()
            .map(|(wall, cpu, runs)| (wall / n, Duration::from_nanos(cpu) / n, runs as f64 / f64::from(n)))
            .collect(),
    })
}

/// C clients for a fixed time against one or more processes (client k on process k mod n).
struct Throughput {
    database: &'static str,
    processes: usize,
    clients: usize,
    recoveries: usize,
    ran_out: bool,
    spent: Spent,
    p50: Duration,
    p95: Duration,
}

async fn throughput(
    load: &Arc<Load>,
    servers: &[Target],
    users: Vec<User>,
    clients: usize,
    duration: Duration,
    postgres: Option<&PostgresProbe>,
    hz: f64,
) -> Result<Throughput, String> {
    let users = Arc::new(users);
    let next = Arc::new(AtomicUsize::new(0));
    // Warm-up: two recoveries per client, not counted.
    let run = |until: Option<Instant>, rounds: usize| {
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..clients {
            let (load, users, next) = (load.clone(), users.clone(), next.clone());
            let server = servers[k % servers.len()].clone();
            tasks.spawn(async move {
                let (mut walls, mut failures, mut ran_out) = (Vec::new(), Vec::new(), false);
                for round in 0.. {
                    if until.map_or(round >= rounds, |t| Instant::now() >= t) {
                        break;
                    }
                    let Some(user) = users.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        ran_out = true;
                        break;
                    };
                    let at = Instant::now();
                    match recover(&load, &server, user, false).await {
                        Ok(_) => walls.push(at.elapsed()),
                        Err(e) => failures.push(e),
                    }
                }
                (walls, failures, ran_out)
            });
        }
        tasks
    };
    let mut warm = run(None, 2);
    while let Some(done) = warm.join_next().await {
        let (_, failures, _) = done.map_err(|e| e.to_string())?;
        if let Some(first) = failures.first() {
            return Err(format!("throughput warm-up: {first}"));
        }
    }
    let pids: Vec<u32> = servers.iter().map(|s| s.pid).collect();
    let before = snapshot(&pids, postgres).await;
    let mut tasks = run(Some(Instant::now() + duration), 0);
    let (mut walls, mut failures, mut ran_out) = (Vec::new(), Vec::new(), false);
    while let Some(done) = tasks.join_next().await {
        let (w, f, r) = done.map_err(|e| e.to_string())?;
        walls.extend(w);
        failures.extend(f);
        ran_out |= r;
    }
    let after = snapshot(&pids, postgres).await;
    if let Some(first) = failures.first() {
        return Err(format!(
            "{} process(es): {} of {} recoveries failed; first: {first}",
            servers.len(),
            failures.len(),
            failures.len() + walls.len()
        ));
    }
    walls.sort();
    Ok(Throughput {
        database: if postgres.is_some() { "PostgreSQL" } else { "SQLite" },
        processes: servers.len(),
        clients,
        recoveries: walls.len(),
        ran_out,
        spent: spent(&before, &after, hz),
        p50: percentile(&walls, 0.5),
        p95: percentile(&walls, 0.95),
    })
}

/// A fresh database on the PostgreSQL server, with a connection for the CPU probe.
async fn fresh_postgres() -> (String, PostgresProbe) {
    let url = support::fresh_postgres_url().await;
    let admin = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    (url, PostgresProbe { admin })
}

// ---- the report -----------------------------------------------------------------------------

struct Results {
    settings: Settings,
    hz: f64,
    sqlite: Sequential,
    postgres: Sequential,
    statements: Statements,
    /// Where the servers ran while measured (their CPUs, the others'), or why everything
    /// shared every CPU.
    placement: Result<(String, String), String>,
    /// SQLite under load (one process).
    lite: Throughput,
    /// PostgreSQL under load, one process, placed as the sequential runs.
    pg_load: Throughput,
    /// One and two processes, every process on every CPU.
    one: Throughput,
    two: Throughput,
}

impl Throughput {
    /// CPU-seconds per second the rest of the machine used during the run.
    fn other(&self, cores: f64) -> f64 {
        let ours = self.spent.servers + self.spent.generator + self.spent.postgres.unwrap_or(0.0);
        (self.spent.busy * cores - ours / self.spent.wall.max(f64::EPSILON)).max(0.0)
    }

    fn rate(&self) -> f64 {
        self.recoveries as f64 / self.spent.wall.max(f64::EPSILON)
    }
    fn per(&self, seconds: f64) -> f64 {
        seconds * 1000.0 / self.recoveries.max(1) as f64
    }
}

impl Sequential {
    fn per(&self, seconds: f64) -> f64 {
        seconds * 1000.0 / self.recoveries.max(1) as f64
    }
}

/// Today's date (UTC), from the system clock.
fn today() -> String {
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn machine(cpus: usize) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or_else(String::new, |kb| format!(", {} GiB", (kb + (1 << 19)) >> 20));
    let rust = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(|v| format!(", Rust {v}")))
        .unwrap_or_default();
    format!("{cpus} vCPU virtual machine ({model}){memory}, Linux{rust}, release profile")
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.2} ms"))
}

/// Separates the figures this tool writes from the analysis below them, which a run keeps.
const KEPT: &str =
    "<!-- Above: written by `cargo bench -p regain-server --bench server_load`. Below: kept across runs. -->";

fn report(r: &Results) -> String {
    let (lite, pg, lite_load, pg_load, one, two) = (&r.sqlite, &r.postgres, &r.lite, &r.pg_load, &r.one, &r.two);
    let lite_ms = lite.per(lite.spent.servers);
    let pg_ms = pg.per(pg.spent.servers);
    let ratio = two.rate() / one.rate().max(f64::EPSILON);
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Benchmarks: the reference server under load\n");
    let _ = writeln!(
        w,
        "Reproduce with `cargo bench -p regain-server --bench server_load` (about seven minutes; it needs \
         `REGAIN_TEST_POSTGRES_URL`, which `bash scripts/postgres start` prints); `REGAIN_BENCH_QUICK=1` runs \
         a short smoke pass without writing this file. Figures of {}: {}; PostgreSQL and the load generator on \
         the same machine. {} Back to [the other benchmarks](benchmarks.md).\n",
        today(),
        machine(r.settings.cpus),
        match &r.placement {
            Ok((servers, rest)) => format!(
                "While the server's CPU is measured (the first two tables) the server runs on CPU {servers} and \
                 PostgreSQL and the load generator on CPU {rest} (set with `taskset`), as on hosts of their own; \
                 the throughput runs share every CPU."
            ),
            Err(why) => format!("Every process shares every CPU ({why})."),
        }
    );
    let _ = writeln!(w, "## What is measured\n");
    let _ = writeln!(
        w,
        "A complete recovery over loopback HTTP against the `regain serve` binary, as a browser and a wallet \
         drive it: {steps}. The server runs the plugin component (warm instances, the host's default), the \
         shipped policies, the IDV's key file, and fetches the status list and the face comparison over HTTP \
         from the load generator, which serves them (the face service is a test double that answers at once). \
         Each recovery uses its own seeded user and each simulated browser its own loopback address \
         (127.x.y.z), so the default rate limits stay on and never refuse the load. A recovery counts only \
         if the pass was shown and the pass sign-in answered the register page; a single failure fails the run.\n",
        steps = STEPS.join(" → ")
    );
    let _ = writeln!(
        w,
        "CPU time is utime + stime of the process from `/proc/PID/stat` (all threads, {hz:.0} ticks per \
         second), read before and after the measured recoveries, after {warm} warm-up recoveries. The database's \
         CPU: for PostgreSQL the same sum over the backends of the bench database and the server's background \
         processes (found in `pg_stat_activity`), apart from the server's; for SQLite, which runs inside the \
         server, the part of the server's CPU spent on its SQLite connection threads (sqlx runs each \
         connection on a thread of its own; the engine, the driver's work there and the flushes to disk), \
         read from those threads' `schedstat`. The load generator's is the bench process's own (browser, wallet, \
         status list, face double). The per-step split reads the server's threads' `schedstat` (nanoseconds) \
         around each step. Server logs at the default level (`info`: one line per request), to a file.\n",
        hz = r.hz,
        warm = r.settings.warmup
    );
    let _ = writeln!(w, "## Server CPU time per complete recovery\n");
    let _ = writeln!(
        w,
        "| database | recoveries | server CPU | of which kernel | database CPU | load generator CPU | latency p50 / p95 | goal |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    // One row: database, how the recoveries ran, their count, CPU, latency.
    let row = |w: &mut String, database: &str, how: String, recoveries: usize, spent: &Spent, p50, p95| {
        let per = |seconds: f64| seconds * 1000.0 / recoveries.max(1) as f64;
        let server = per(spent.servers);
        let _ = writeln!(
            w,
            "| {database} | {recoveries} {how} | **{server:.2} ms** | {:.0} % | {} | {:.2} ms | {:.1} / {:.1} ms | ≤ 2 ms: {} |",
            spent.servers_system * 100.0 / spent.servers.max(f64::EPSILON),
            if database == "SQLite" {
                format!("{:.2} ms of the server's", per(spent.servers_sqlite))
            } else {
                opt(spent.postgres.map(per))
            },
            per(spent.generator),
            ms(p50),
            ms(p95),
            verdict(server <= 2.0)
        );
    };
    for (s, t) in [(lite, lite_load), (pg, pg_load)] {
        row(w, s.database, "sequential".into(), s.recoveries, &s.spent, s.p50, s.p95);
        let how = format!("under load ({} clients, {} s)", t.clients, r.settings.duration.as_secs());
        row(w, t.database, how, t.recoveries, &t.spent, t.p50, t.p95);
    }
    let _ = writeln!(
        w,
        "\nFor scale: Keycloak's sizing guide (\"Concepts for sizing CPU and memory resources\") allots one vCPU \
         per 15 password-based logins per second, about 67 ms of CPU per login, most of it hashing the \
         password; that figure is a capacity under load. One recovery here, one at a time, costs the server \
         {lite_ms:.1} ms on SQLite and {pg_ms:.1} ms on PostgreSQL ({:.0} % and {:.0} % of that login); under \
         load, {:.1} ms and {:.1} ms. \"Under load\" is {} clients running recoveries back to back against one \
         process. On SQLite the server's figure includes the database engine, which runs in its process: \
         outside SQLite's connection threads it spent {:.2} ms one at a time and {:.2} ms under load. Sharing \
         every CPU with PostgreSQL and the load generator (the one-process run of the throughput table below), \
         the same server spent {:.2} ms per recovery under load: the other processes preempt its workers, and \
         it pays for each switch.\n",
        lite_ms * 100.0 / 66.7,
        pg_ms * 100.0 / 66.7,
        lite_load.per(lite_load.spent.servers),
        pg_load.per(pg_load.spent.servers),
        pg_load.clients,
        lite.per(lite.spent.servers - lite.spent.servers_sqlite),
        lite_load.per(lite_load.spent.servers - lite_load.spent.servers_sqlite),
        one.per(one.spent.servers)
    );
    let _ = writeln!(w, "### Where the server's time goes, step by step\n");
    let _ = writeln!(
        w,
        "Mean per recovery over the sequential runs: wall time as the client sees it (the `direct_post` step \
         includes the wallet's signing), the server's CPU time, and how many times the server's threads were \
         put on a CPU (a thread that waits for the database or for another thread sleeps, and each wake-up is a \
         context switch); the last two from the server threads' `schedstat`.\n"
    );
    let _ = writeln!(
        w,
        "| step | SQL statements (writes) | SQLite: wall | server CPU | thread switches | PostgreSQL: wall | server CPU | thread switches |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    for (i, name) in STEPS.iter().enumerate() {
        let (lw, lc, lr) = lite.steps[i];
        let (pw, pc, pr) = pg.steps[i];
        let (all, writes) = r.statements.steps[i];
        let _ = writeln!(
            w,
            "| {name} | {all:.0} ({writes:.0}) | {:.2} ms | {:.2} ms | {lr:.0} | {:.2} ms | {:.2} ms | {pr:.0} |",
            ms(lw),
            ms(lc),
            ms(pw),
            ms(pc)
        );
    }
    let total = |s: &Sequential| s.steps.iter().map(|(_, c, _)| ms(*c)).sum::<f64>();
    let runs = |s: &Sequential| s.steps.iter().map(|(_, _, r)| r).sum::<f64>();
    let (all, writes) = r.statements.steps.iter().fold((0.0, 0.0), |(a, w), (x, y)| (a + x, w + y));
    let _ = writeln!(
        w,
        "| sum | {all:.0} ({writes:.0}) | | {:.2} ms | {:.0} | | {:.2} ms | {:.0} |\n",
        total(lite),
        runs(lite),
        total(pg),
        runs(pg)
    );
    let kinds: Vec<String> =
        r.statements.kinds.iter().filter(|(_, n)| *n >= 0.5).map(|(k, n)| format!("{n:.0} {k}")).collect();
    let _ = writeln!(
        w,
        "Statements counted from the server's own statement log (`sqlx::query` at debug level) over {} \
         recoveries on a separate SQLite server, so that the logging costs nothing above: {} in all per \
         recovery. A batch is a step's writes sent as one text (`BEGIN IMMEDIATE; ...; COMMIT`; on \
         PostgreSQL one statement) and counts as one statement here.\n",
        r.statements.recoveries,
        kinds.join(", ")
    );
    let _ = writeln!(w, "## Throughput: one process and two processes on one PostgreSQL\n");
    let cores = r.settings.cpus as f64;
    let _ = writeln!(
        w,
        "{} concurrent clients for {} s (clients alternate between the processes), each running complete \
         recoveries back to back; a fresh database for each run. Latency is the whole recovery as the client \
         sees it, including the wallet's and the browser's own work.\n",
        one.clients,
        r.settings.duration.as_secs()
    );
    let _ = writeln!(
        w,
        "| processes | recoveries | recoveries/s | latency p50 / p95 | server CPU / recovery | server thread switches / recovery | PostgreSQL CPU / recovery | generator CPU / recovery | machine busy (steal) | other processes |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for t in [one, two] {
        let _ = writeln!(
            w,
            "| {} | {}{} | **{:.1}** | {:.1} / {:.1} ms | {:.2} ms | {:.0} | {} | {:.2} ms | {:.0} % ({:.0} %) | {:.2} CPU |",
            t.processes,
            t.recoveries,
            if t.ran_out { " (ran out of seeded users)" } else { "" },
            t.rate(),
            ms(t.p50),
            ms(t.p95),
            t.per(t.spent.servers),
            t.spent.servers_switches / t.recoveries.max(1) as f64,
            opt(t.spent.postgres.map(|p| t.per(p))),
            t.per(t.spent.generator),
            t.spent.busy * 100.0,
            t.spent.steal * 100.0,
            t.other(cores)
        );
    }
    let _ = writeln!(
        w,
        "\n\"Machine busy\" is the whole machine's CPU time outside idle and I/O wait; \"other processes\" is \
         what of it neither the servers, PostgreSQL nor the load generator used (CPU-seconds per second: \
         anything else running on the machine at the time)."
    );
    let share = |t: &Throughput, s: f64| s / t.spent.wall.max(f64::EPSILON);
    let _ = writeln!(
        w,
        "\nMeasured ratio, two processes to one: **{ratio:.2}×** (goal ≥ 1.7×: {}).\n",
        verdict(ratio >= 1.7)
    );
    let _ = writeln!(
        w,
        "What limits the ratio here: the machine has {cores:.0} vCPUs and one process already uses all of them \
         (its async runtime runs a worker per core), while the load generator and PostgreSQL need the same \
         cores. With two processes the machine was {:.0} % busy; per second of the run the servers used \
         {:.2} CPU-seconds, PostgreSQL {}, the load generator {:.2}. A second process adds no CPU the first \
         could not already use, so the ratio measures contention, not scaling.\n",
        two.spent.busy * 100.0,
        share(two, two.spent.servers),
        two.spent.postgres.map_or_else(|| "n/a".into(), |p| format!("{:.2}", share(two, p))),
        share(two, two.spent.generator)
    );
    let one_ms = one.per(one.spent.servers);
    let two_ms = two.per(two.spent.servers);
    let _ = writeln!(
        w,
        "CPU-based capacity: one server process handles **{:.0} recoveries per CPU-second** under load ({one_ms:.2} ms \
         each), two processes {:.0} per CPU-second together ({two_ms:.2} ms each): sharing the database costs a \
         process {}. Processes share nothing but the database (flows, nonces, response codes, passes and \
         counters are rows), so on machines of their own the processes add capacity until PostgreSQL \
         saturates; here PostgreSQL spent {} per recovery, about {} recoveries per PostgreSQL core-second.\n",
        1000.0 / one_ms.max(f64::EPSILON),
        1000.0 / two_ms.max(f64::EPSILON),
        if two_ms <= one_ms * 1.05 {
            "no measurable CPU per recovery".to_owned()
        } else {
            format!(
                "{:.0} % more CPU per recovery; its threads were put on a CPU {:.0} times per recovery against {:.0} \
                 for one process (each process's workers find less work waiting and sleep more often)",
                (two_ms / one_ms - 1.0) * 100.0,
                two.spent.servers_switches / two.recoveries.max(1) as f64,
                one.spent.servers_switches / one.recoveries.max(1) as f64
            )
        },
        opt(two.spent.postgres.map(|p| two.per(p))),
        two.spent.postgres.map_or_else(|| "n/a".into(), |p| format!("{:.0}", 1000.0 / two.per(p).max(f64::EPSILON)))
    );
    out
}

fn sequential_lines(s: &Sequential) -> String {
    let mut out = format!(
        "{:<10} sequential {:>4}: server CPU {:.2} ms/recovery ({:.0} % system), database {}, generator {:.2} ms, p50 {:.1} ms, p95 {:.1} ms\n",
        s.database,
        s.recoveries,
        s.per(s.spent.servers),
        s.spent.servers_system * 100.0 / s.spent.servers.max(f64::EPSILON),
        database_cpu(&s.spent, |p| s.per(p)),
        s.per(s.spent.generator),
        ms(s.p50),
        ms(s.p95)
    );
    for (name, (wall, cpu, runs)) in STEPS.iter().zip(&s.steps) {
        let _ = writeln!(
            out,
            "    {name:<50} wall {:>6.2} ms  server CPU {:>5.2} ms  thread switches {runs:>5.0}",
            ms(*wall),
            ms(*cpu)
        );
    }
    out
}

/// The database's CPU per recovery for a console line: PostgreSQL's processes, or the
/// server's SQLite threads (part of the server's own figure).
fn database_cpu(spent: &Spent, per: impl Fn(f64) -> f64) -> String {
    match spent.postgres {
        Some(p) => format!("{:.2} ms", per(p)),
        None => format!("{:.2} ms in the server's SQLite threads", per(spent.servers_sqlite)),
    }
}

fn throughput_line(t: &Throughput) -> String {
    format!(
        "{} {} process(es), {} clients: {} recoveries{}, {:.1}/s, p50 {:.1} ms, p95 {:.1} ms, server CPU {:.2} ms ({:.0} thread switches), database {}, generator {:.2} ms, machine busy {:.0} % (steal {:.0} %)\n",
        t.database,
        t.processes,
        t.clients,
        t.recoveries,
        if t.ran_out { " (ran out of users)" } else { "" },
        t.rate(),
        ms(t.p50),
        ms(t.p95),
        t.per(t.spent.servers),
        t.spent.servers_switches / t.recoveries.max(1) as f64,
        database_cpu(&t.spent, |p| t.per(p)),
        t.per(t.spent.generator),
        t.spent.busy * 100.0,
        t.spent.steal * 100.0
    )
}

/// SQL statements per recovery, by step and by kind, as the server's statement log shows them.
struct Statements {
    recoveries: usize,
    /// Per step (in `STEPS` order): statements, of which writes.
    steps: Vec<(f64, f64)>,
    /// Per first keyword (`SELECT`, `INSERT`...), per recovery.
    kinds: Vec<(String, f64)>,
}

const ROUTES: [&str; 5] = ["/recover/start", "/recover/response", "/recover/continue", "/recover/selfie", "/authorize"];

/// Counts the statements of `count` recoveries on a server logging them (`sqlx::query` at
/// debug level): a separate server, so that logging costs nothing in the measured runs.
async fn count_statements(load: &Load, idv: &str, status_uri: &str, count: usize) -> Result<Statements, String> {
    let dir = workdir()?;
    let port = free_port();
    let configs = write_files(dir.path(), idv, port, &[port]);
    let database = format!("sqlite://{}", dir.path().join("regain.db").display());
    let store = Store::open(&database).await.map_err(|e| e.to_string())?;
    let warm = 5;
    let users = seed(&store, "sql", warm + count, status_uri).await;
    drop(store);
    let servers = serve(dir.path(), &configs, &[port], &database, "info,sqlx::query=debug", None).await;
    let target = targets(&servers).remove(0);
    let log = dir.path().join(format!("server-{port}.log"));
    for user in &users[..warm] {
        recover(load, &target, user, false).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let from = std::fs::read_to_string(&log).map_err(|e| e.to_string())?.len();
    for user in &users[warm..] {
        recover(load, &target, user, false).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
    let mut steps = vec![(0.0, 0.0); STEPS.len()];
    let mut kinds: Vec<(String, f64)> = Vec::new();
    let per = 1.0 / count.max(1) as f64;
    for line in text.get(from..).unwrap_or_default().lines().filter(|l| l.contains("sqlx::query")) {
        let text = line.split("db.statement=\"").nth(1).or_else(|| line.split("summary=\"").nth(1)).unwrap_or("");
        let text = text.trim_start_matches("\\n").trim_start();
        // The leases and counters set their durability first (`PRAGMA synchronous = NORMAL; ...`).
        let text = match text.get(..18) {
            Some(head) if head.eq_ignore_ascii_case("PRAGMA synchronous") => {
                text.split_once(';').map_or(text, |(_, rest)| rest.trim_start())
            }
            _ => text,
        };
        let kind = text.split_whitespace().next().unwrap_or("?").trim_end_matches('"').to_uppercase();
        // A step's writes go as one batch: `BEGIN IMMEDIATE; ...; COMMIT` on SQLite.
        let kind = if kind == "BEGIN" { "BATCH".to_owned() } else { kind };
        let write = matches!(kind.as_str(), "INSERT" | "UPDATE" | "DELETE" | "BATCH");
        let route = line.split("route=").nth(1).and_then(|r| r.split(['}', ' ']).next()).unwrap_or("");
        if let Some(step) = ROUTES.iter().position(|r| *r == route) {
            steps[step].0 += per;
            if write {
                steps[step].1 += per;
            }
        }
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += per,
            None => kinds.push((kind, per)),
        }
    }
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(Statements { recoveries: count, steps, kinds })
}

fn statement_lines(s: &Statements) -> String {
    let total: f64 = s.kinds.iter().map(|(_, n)| n).sum();
    let kinds: Vec<String> = s.kinds.iter().filter(|(_, n)| *n >= 0.5).map(|(k, n)| format!("{n:.0} {k}")).collect();
    let mut out = format!(
        "SQL statements per recovery (SQLite, {} recoveries): {total:.0} ({})\n",
        s.recoveries,
        kinds.join(", ")
    );
    for (name, (all, writes)) in STEPS.iter().zip(&s.steps) {
        let _ = writeln!(out, "    {name:<50} {all:>4.0} statements, {writes:.0} writes");
    }
    out
}

/// Server logs as operators run them: one line per request.
const LOG: &str = "info";

async fn run(settings: Settings) -> Result<Results, String> {
    let hz = clock_ticks();
    let idv = idv_services().await;
    let status_uri = format!("{idv}/status/1");
    let load = Arc::new(Load { wallet: reqwest::Client::new(), next_address: AtomicU32::new(0) });
    let per_run = settings.warmup + settings.sequential;

    // The servers' CPU is measured with the servers on CPUs of their own.
    let admin_url = std::env::var("REGAIN_TEST_POSTGRES_URL").map_err(|e| e.to_string())?;
    let placement = Placement::apply(postgres_backend(&admin_url).await?);
    let cpus = placement.as_ref().ok().map(|p| p.servers.clone());
    let cpus = cpus.as_deref();
    let placement_described = placement.as_ref().map(Placement::described).map_err(Clone::clone);
    match &placement {
        Ok(p) => println!("servers on CPU {}; PostgreSQL and the load generator on CPU {}", p.servers, p.rest),
        Err(e) => println!("every process on every CPU ({e})"),
    }

    // SQLite, sequential.
    let dir = workdir()?;
    let port = free_port();
    let configs = write_files(dir.path(), &idv, port, &[port]);
    let database = format!("sqlite://{}", dir.path().join("regain.db").display());
    let store = Store::open(&database).await.map_err(|e| e.to_string())?;
    let users = seed(&store, "lite", per_run, &status_uri).await;
    drop(store);
    let servers = serve(dir.path(), &configs, &[port], &database, LOG, cpus).await;
    println!("SQLite: {per_run} recoveries one after another");
    let target = targets(&servers).remove(0);
    let sqlite = sequential("SQLite", &load, &target, &users, settings.warmup, None, hz);
    let sqlite = match sqlite.await {
        Ok(s) => s,
        Err(e) => return Err(diagnose(&database, e).await),
    };
    drop(servers);
    print!("{}", sequential_lines(&sqlite));

    // SQLite under load: one process, as SQLite is served.
    let dir = workdir()?;
    let port = free_port();
    let configs = write_files(dir.path(), &idv, port, &[port]);
    let database = format!("sqlite://{}", dir.path().join("regain.db").display());
    let store = Store::open(&database).await.map_err(|e| e.to_string())?;
    let users = enough_users(&settings, sqlite.per(sqlite.spent.servers + sqlite.spent.generator));
    let seeded = seed(&store, "litel", users, &status_uri).await;
    drop(store);
    let servers = serve(dir.path(), &configs, &[port], &database, LOG, cpus).await;
    println!(
        "SQLite, 1 process: {} clients for {} s ({users} users seeded)",
        settings.clients,
        settings.duration.as_secs()
    );
    let all = targets(&servers);
    let run = throughput(&load, &all, seeded, settings.clients, settings.duration, None, hz);
    let lite = match run.await {
        Ok(run) => run,
        Err(e) => return Err(diagnose(&database, e).await),
    };
    drop(servers);
    print!("{}", throughput_line(&lite));

    // PostgreSQL, sequential.
    let dir = workdir()?;
    let port = free_port();
    let configs = write_files(dir.path(), &idv, port, &[port]);
    let (database, probe) = fresh_postgres().await;
    let store = Store::open(&database).await.map_err(|e| e.to_string())?;
    let users = seed(&store, "pg", per_run, &status_uri).await;
    drop(store);
    let servers = serve(dir.path(), &configs, &[port], &database, LOG, cpus).await;
    let target = targets(&servers).remove(0);
    println!("PostgreSQL: {per_run} recoveries one after another");
    let postgres = sequential("PostgreSQL", &load, &target, &users, settings.warmup, Some(&probe), hz);
    let postgres = match postgres.await {
        Ok(s) => s,
        Err(e) => return Err(diagnose(&database, e).await),
    };
    drop(servers);
    print!("{}", sequential_lines(&postgres));

    let statements = count_statements(&load, &idv, &status_uri, 10).await?;
    print!("{}", statement_lines(&statements));

    let users = enough_users(
        &settings,
        postgres.per(postgres.spent.servers + postgres.spent.generator + postgres.spent.postgres.unwrap_or(0.0)),
    );

    // PostgreSQL under load: one process, on its CPUs.
    let postgres_run = PostgresRun { settings: &settings, load: &load, idv: &idv, status_uri: &status_uri, users, hz };
    let pg_load = postgres_run.throughput(1, cpus).await?;
    // The throughput of one and of two processes, every process on every CPU.
    drop(placement);
    let one = postgres_run.throughput(1, None).await?;
    let two = postgres_run.throughput(2, None).await?;
    println!("two / one process: {:.2}x", two.rate() / one.rate().max(f64::EPSILON));
    let placement = placement_described;
    Ok(Results { settings, hz, placement, sqlite, postgres, statements, lite, pg_load, one, two })
}

/// What a run under load on PostgreSQL needs.
struct PostgresRun<'a> {
    settings: &'a Settings,
    load: &'a Arc<Load>,
    idv: &'a str,
    status_uri: &'a str,
    /// Users to seed.
    users: usize,
    hz: f64,
}

impl PostgresRun<'_> {
    /// `processes` servers (on `cpus` when given) on a fresh database, under the settings' load.
    async fn throughput(&self, processes: usize, cpus: Option<&str>) -> Result<Throughput, String> {
        let (settings, users) = (self.settings, self.users);
        let dir = workdir()?;
        let ports: Vec<u16> = (0..processes).map(|_| free_port()).collect();
        let configs = write_files(dir.path(), self.idv, ports[0], &ports);
        let (database, probe) = fresh_postgres().await;
        let store = Store::open(&database).await.map_err(|e| e.to_string())?;
        let seeded = seed(&store, &format!("tp{processes}"), users, self.status_uri).await;
        drop(store);
        let servers = serve(dir.path(), &configs, &ports, &database, LOG, cpus).await;
        println!(
            "PostgreSQL, {processes} process(es){}: {} clients for {} s ({users} users seeded)",
            if cpus.is_some() { " on CPUs of their own" } else { "" },
            settings.clients,
            settings.duration.as_secs()
        );
        let all = targets(&servers);
        let run = throughput(self.load, &all, seeded, settings.clients, settings.duration, Some(&probe), self.hz);
        let run = match run.await {
            Ok(run) => run,
            Err(e) => return Err(diagnose(&database, e).await),
        };
        print!("{}", throughput_line(&run));
        Ok(run)
    }
}

/// Enough users for the fastest the machine could go under load: all its CPU spent on
/// recoveries at `cost` ms each (the sequential cost), with a margin; a run that runs out
/// says so.
fn enough_users(settings: &Settings, cost: f64) -> usize {
    let cores = settings.cpus as f64;
    let ceiling = cores * 1000.0 / cost.max(0.5) * settings.duration.as_secs_f64() * 2.0;
    (ceiling as usize).max(100) + 2 * settings.clients
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { term.as_mut()?.recv().await } => {}
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; this tool takes no arguments.
    if std::env::var("REGAIN_TEST_POSTGRES_URL").is_err() {
        eprintln!(
            "REGAIN_TEST_POSTGRES_URL is not set: start PostgreSQL with `bash scripts/postgres start` and export the URL it prints"
        );
        return ExitCode::from(2);
    }
    let settings = Settings::from_env();
    let quick = settings.quick;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // Interrupted, the run is dropped, and with it the servers it started.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(settings) => outcome,
            _ = interrupted() => Err("interrupted".to_owned()),
        }
    });
    match outcome {
        Ok(results) => {
            if quick {
                println!("quick run: the report is not written");
            } else {
                let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks-server.md");
                let kept = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| text.split_once(KEPT).map(|(_, rest)| rest.to_owned()))
                    .unwrap_or_else(|| "\n\n## Reading the figures\n\nNot written yet.\n".to_owned());
                std::fs::write(&path, format!("{}{KEPT}{kept}", report(&results))).unwrap();
                println!("report written to docs/benchmarks-server.md");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("server_load failed: {e}");
            ExitCode::FAILURE
        }
    }
}
