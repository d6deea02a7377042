//! Loading the plugin once and running each call in a fresh, limited instance.

use crate::bindings::exports::regain::recovery::{admin, flow};
use crate::bindings::regain::recovery::types::ClientInfo;
use crate::bindings::{Plugin, PluginPre};
use crate::cache::{self, LoadReport};
use crate::imports::{Adapter, Ctx};
use crate::{CallError, LoadError, SandboxConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

/// Path of the plugin component this crate was built with.
pub const BUNDLED_PLUGIN_PATH: &str = env!("REGAIN_PLUGIN_WASM");

/// The plugin component this crate was built with, embedded in the binary so that no
/// configuration is needed to find it.
pub fn bundled_plugin() -> &'static [u8] {
    include_bytes!(env!("REGAIN_PLUGIN_WASM"))
}

/// Which component to load.
#[derive(Debug, Clone, Copy)]
pub enum ComponentSource<'a> {
    /// The plugin built with this crate ([`bundled_plugin`]).
    Bundled,
    /// A component file, e.g. a plugin build an operator pinned.
    File(&'a Path),
    /// Component bytes already in memory.
    Bytes(&'a [u8]),
}

/// Most core instances, memories and tables one component may create. The Rust plugin needs
/// three core instances, one memory and two tables; the margin leaves room for other
/// toolchains without letting a component reserve the whole pool.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;

/// The loaded plugin, ready to be instantiated. Cheap to clone; clones share the engine,
/// the compiled component and the instance slots.
pub struct PluginHost<A: Adapter> {
    inner: Arc<Inner<A>>,
}

impl<A: Adapter> Clone for PluginHost<A> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

struct Inner<A: Adapter> {
    engine: Engine,
    /// Live instances between calls (each holds its slot); see ADR 0004.
    idle: std::sync::Mutex<Vec<Instance<A>>>,
    pre: PluginPre<Ctx<A>>,
    config: SandboxConfig,
    slots: Arc<Semaphore>,
    report: LoadReport,
    imports: Vec<String>,
    ticker: EpochTicker,
}

impl<A: Adapter> Drop for Inner<A> {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

impl<A: Adapter> PluginHost<A> {
    /// Creates the engine, loads (or compiles and caches) the component and links it
    /// against the WASI sandbox and the Regain imports.
    pub fn new(config: SandboxConfig, source: ComponentSource<'_>) -> Result<Self, LoadError> {
        config.check().map_err(LoadError::InvalidConfig)?;
        let engine = make_engine(&config)?;
        let owned;
        let bytes = match source {
            ComponentSource::Bundled => bundled_plugin(),
            ComponentSource::Bytes(bytes) => bytes,
            ComponentSource::File(path) => {
                owned = std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
                &owned
            }
        };
        let (component, report) = cache::load(&engine, bytes, config.cache_dir.as_deref())?;
        tracing::info!(
            origin = ?report.origin,
            elapsed_ms = report.elapsed.as_secs_f64() * 1e3,
            sha256 = %report.component_sha256,
            "plugin component loaded"
        );

        let mut imports: Vec<String> =
            component.component_type().imports(&engine).map(|(name, _)| name.to_owned()).collect();
        imports.sort();

        let mut linker = Linker::<Ctx<A>>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        Plugin::add_to_linker::<_, HasSelf<Ctx<A>>>(&mut linker, |ctx| ctx)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = PluginPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;

        let ticker = EpochTicker::start(&engine, config.epoch_tick);
        let slots = Arc::new(Semaphore::new(usize::try_from(config.max_instances).unwrap_or(usize::MAX)));
        let idle = std::sync::Mutex::new(Vec::new());
        Ok(Self { inner: Arc::new(Inner { engine, idle, pre, config, slots, report, imports, ticker }) })
    }

    /// What loading did: compiled or cached, how long it took, the component's hash.
    pub fn load_report(&self) -> &LoadReport {
        &self.inner.report
    }

    /// The component's imports (`package:name/interface@version`), sorted.
    pub fn component_imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// The sandbox limits in force.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Takes an instance slot (waiting up to the queue timeout) and instantiates the plugin
    /// with `adapter` behind its imports. Dropping the instance frees the slot.
    pub async fn instantiate(&self, adapter: A) -> Result<Instance<A>, CallError> {
        let slot = self.acquire_slot().await?;
        self.instantiate_in(slot, adapter).await
    }

    async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, CallError> {
        let wait = self.inner.config.queue_timeout;
        tokio::time::timeout(wait, Arc::clone(&self.inner.slots).acquire_owned())
            .await
            .map_err(|_| CallError::Busy(wait))?
            .map_err(|_| CallError::Busy(wait))
    }

    async fn instantiate_in(&self, slot: OwnedSemaphorePermit, adapter: A) -> Result<Instance<A>, CallError> {
        let config = &self.inner.config;
        let mut store = Store::new(&self.inner.engine, Ctx::new(adapter, config.memory_limit));
        store.limiter(|ctx| &mut ctx.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(config.deadline_ticks());
        let mut instance = Instance {
            store,
            plugin: None,
            slot: Some(slot),
            deadline: config.deadline,
            ticks: config.deadline_ticks(),
            memory_limit: config.memory_limit,
            poisoned: false,
        };
        let created =
            tokio::time::timeout(instance.hard_limit(), self.inner.pre.instantiate_async(&mut instance.store)).await;
        let plugin = instance.settle(created).map_err(|e| match e {
            CallError::Trap(text) => CallError::Instantiate(text),
            other => other,
        })?;
        instance.plugin = Some(plugin);
        Ok(instance)
    }

    /// An idle instance given `adapter`, or a new one when none is idle.
    ///
    /// The slot bounds calls in flight; idle instances hold none, so a waiting call is never
    /// starved by idle ones.
    async fn checkout(&self, adapter: A) -> Result<Instance<A>, CallError> {
        let slot = self.acquire_slot().await?;
        let idle = self.inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        match idle {
            Some(mut instance) => {
                instance.store.data_mut().set_adapter(adapter);
                instance.slot = Some(slot);
                Ok(instance)
            }
            None => self.instantiate_in(slot, adapter).await,
        }
    }

    /// Keeps an instance whose call succeeded for the next call, up to `max_instances` idle
    /// ones, without the finished call's adapter; a failed one is dropped.
    fn checkin<R>(&self, mut instance: Instance<A>, outcome: &Result<R, CallError>) {
        instance.slot = None;
        instance.store.data_mut().clear_adapter();
        if outcome.is_ok() && !instance.poisoned {
            let mut idle = self.inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < usize::try_from(self.inner.config.max_instances).unwrap_or(usize::MAX) {
                idle.push(instance);
            }
        }
    }

    /// `flow.start` in a warm instance (or a fresh one).
    pub async fn start(
        &self,
        adapter: A,
        config_ref: &str,
        login: &str,
        client: &ClientInfo,
    ) -> Result<Result<flow::Transition, flow::FlowError>, CallError> {
        let mut instance = self.checkout(adapter).await?;
        let outcome = instance.start(config_ref, login, client).await;
        self.checkin(instance, &outcome);
        outcome
    }

    /// `flow.resume` in a warm instance (or a fresh one).
    pub async fn resume(
        &self,
        adapter: A,
        state: &[u8],
        input: &flow::FlowInput,
    ) -> Result<Result<flow::Transition, flow::FlowError>, CallError> {
        let mut instance = self.checkout(adapter).await?;
        let outcome = instance.resume(state, input).await;
        self.checkin(instance, &outcome);
        outcome
    }

    /// `admin.validate` in a warm instance (or a fresh one).
    pub async fn validate(
        &self,
        adapter: A,
        config: &admin::SourceFile,
        policies: &[admin::SourceFile],
    ) -> Result<Result<(), admin::AdminError>, CallError> {
        let mut instance = self.checkout(adapter).await?;
        let outcome = instance.validate(config, policies).await;
        self.checkin(instance, &outcome);
        outcome
    }

    /// `admin.explain` in a warm instance (or a fresh one).
    pub async fn explain(
        &self,
        adapter: A,
        config: &admin::SourceFile,
        policies: &[admin::SourceFile],
        login: &str,
    ) -> Result<Result<String, admin::AdminError>, CallError> {
        let mut instance = self.checkout(adapter).await?;
        let outcome = instance.explain(config, policies, login).await;
        self.checkin(instance, &outcome);
        outcome
    }
}

fn make_engine(config: &SandboxConfig) -> Result<Engine, LoadError> {
    // Up to `max_instances` calls in flight plus as many idle instances kept warm.
    let instances = config.max_instances.saturating_mul(2);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .total_stacks(instances)
        .max_memory_size(config.memory_limit);

    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(|e| LoadError::Engine(format!("{e:#}")))
}

/// One live plugin instance holding one slot. Calls on it reuse its memory (the guest's
/// caches stay warm); a call that fails leaves it poisoned, and later calls answer
/// [`CallError::Poisoned`].
pub struct Instance<A: Adapter> {
    store: Store<Ctx<A>>,
    plugin: Option<Plugin>,
    // Declared after the store: the pool slot is released before the permit. `None` while
    // the instance waits idle between calls.
    slot: Option<OwnedSemaphorePermit>,
    deadline: Duration,
    ticks: u64,
    memory_limit: usize,
    poisoned: bool,
}

impl<A: Adapter> Instance<A> {
    /// The deadline also bounds time spent awaiting the host's own imports, which epochs
    /// cannot interrupt; the timer fires a little after the epoch would.
    fn hard_limit(&self) -> Duration {
        self.deadline + self.deadline / 4 + Duration::from_millis(50)
    }

    /// Re-arms the deadline for the next call.
    fn arm(&mut self) -> Result<(), CallError> {
        if self.poisoned || self.plugin.is_none() {
            return Err(CallError::Poisoned);
        }
        self.store.set_epoch_deadline(self.ticks);
        Ok(())
    }

    fn settle<R>(&mut self, outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>) -> Result<R, CallError> {
        let error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => self.classify(&e),
            Err(_) => CallError::Timeout(self.deadline),
        };
        self.poisoned = true;
        tracing::warn!(error = %error, "plugin call failed");
        Err(error)
    }

    fn classify(&self, error: &wasmtime::Error) -> CallError {
        if self.store.data().limiter.exceeded {
            CallError::MemoryLimit(self.memory_limit)
        } else if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            CallError::Timeout(self.deadline)
        } else {
            CallError::Trap(format!("{error:#}"))
        }
    }

    /// `flow.start`: begins a recovery for `login`.
    pub async fn start(
        &mut self,
        config_ref: &str,
        login: &str,
        client: &ClientInfo,
    ) -> Result<Result<flow::Transition, flow::FlowError>, CallError> {
        let limit = self.hard_limit();
        self.arm()?;
        let Some(plugin) = &self.plugin else { return Err(CallError::Poisoned) };
        let call = plugin.regain_recovery_flow().call_start(&mut self.store, config_ref, login, client);
        let outcome = tokio::time::timeout(limit, call).await;
        self.settle(outcome)
    }

    /// `flow.resume`: continues a flow from its stored state.
    pub async fn resume(
        &mut self,
        state: &[u8],
        input: &flow::FlowInput,
    ) -> Result<Result<flow::Transition, flow::FlowError>, CallError> {
        let limit = self.hard_limit();
        self.arm()?;
        let Some(plugin) = &self.plugin else { return Err(CallError::Poisoned) };
        let call = plugin.regain_recovery_flow().call_resume(&mut self.store, state, input);
        let outcome = tokio::time::timeout(limit, call).await;
        self.settle(outcome)
    }

    /// `admin.validate`: checks a configuration and its policies.
    pub async fn validate(
        &mut self,
        config: &admin::SourceFile,
        policies: &[admin::SourceFile],
    ) -> Result<Result<(), admin::AdminError>, CallError> {
        let limit = self.hard_limit();
        self.arm()?;
        let Some(plugin) = &self.plugin else { return Err(CallError::Poisoned) };
        let call = plugin.regain_recovery_admin().call_validate(&mut self.store, config, policies);
        let outcome = tokio::time::timeout(limit, call).await;
        self.settle(outcome)
    }

    /// `admin.explain`: explains the decisions for `login`.
    pub async fn explain(
        &mut self,
        config: &admin::SourceFile,
        policies: &[admin::SourceFile],
        login: &str,
    ) -> Result<Result<String, admin::AdminError>, CallError> {
        let limit = self.hard_limit();
        self.arm()?;
        let Some(plugin) = &self.plugin else { return Err(CallError::Poisoned) };
        let call = plugin.regain_recovery_admin().call_explain(&mut self.store, config, policies, login);
        let outcome = tokio::time::timeout(limit, call).await;
        self.settle(outcome)
    }
}

/// Advances the engine's epoch at a fixed interval on its own thread, which is what makes
/// deadlines fire while a guest spins without calling the host.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = Arc::clone(&stop);
        let spawned = std::thread::Builder::new().name("regain-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
        if let Err(e) = spawned {
            // Without the ticker every call would time out only by the timer; say so loudly.
            tracing::error!(error = %e, "cannot start the epoch thread; plugin deadlines rely on timers alone");
        }
        Self { stop }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
