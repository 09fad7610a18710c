//! The policy engine shared by every call path. One compiled revision (bytecode for the
//! decision rule, see `vm.rs`) sits in an [`ArcSwap`]; each thread evaluates on its own VM
//! (cached in a thread local and rebuilt when the revision changes), so the hot path takes no
//! lock. A reload compiles the
//! new bundle first and swaps only on success: the last good bundle keeps serving otherwise.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::bundle;
use crate::metrics::{ErrorCause, Metrics};
use crate::needles::Needles;
use crate::output::{self, OutputError};
use crate::vm::{Compiled, Worker};
use decision::{CallKind, Decision, PolicyInput};

pub use crate::settings::PolicySettings;

/// Where the bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// The default bundle compiled into the binary from `policies/`.
    Embedded,
    /// Every `.rego` and `data.json` file under a directory.
    Dir(PathBuf),
    /// A bundle held in memory: one published to the fleet (`crate::signed`) and applied
    /// here. It never changes, so a reload only re-reads the policy data.
    Published(Arc<crate::signed::Published>),
}

/// Engine tuning.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Per-evaluation time limit; exceeding it denies with `policy_error`.
    pub eval_timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { eval_timeout: Duration::from_millis(5) }
    }
}

/// Errors loading or compiling a bundle. Evaluation never returns an error: it fails closed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file or directory could not be read, or a data file is not valid JSON.
    #[error("{0}")]
    Load(String),
    /// Rego did not parse or compile; the text names `file:line:col`.
    #[error("{0}")]
    Compile(String),
    /// The input document is not valid JSON or not an object.
    #[error("invalid input: {0}")]
    Input(String),
    /// Metrics could not be registered (e.g. registered twice on one registry).
    #[error("metrics: {0}")]
    Metrics(String),
    /// The file watcher could not be started.
    #[error("watch: {0}")]
    Watch(String),
    /// A published bundle's signature is missing, malformed or does not verify.
    #[error("{0}")]
    Signature(String),
    /// A bundle's own tests did not all pass (or it has none), so it was not applied.
    #[error("{0}")]
    Tests(String),
}

/// What is loaded now (served by `GET /api/v1/policies`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Short content hash of the serving bundle and its policy data.
    pub revision: String,
    /// Bundle files that make up the serving engine (tests excluded).
    pub files: Vec<String>,
    /// RFC 3339 time the serving revision was loaded.
    pub loaded_at: String,
    /// Error of the last failed reload, cleared by the next successful one.
    pub last_error: Option<String>,
    /// `embedded` or the bundle directory.
    #[serde(default)]
    pub source: String,
}

/// What started a reload (for audit records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadTrigger {
    /// The file watcher saw a change.
    Watch,
    /// SIGHUP.
    Signal,
    /// `POST /api/v1/policies/reload`.
    Api,
    /// A direct call (tests, CLI).
    Manual,
    /// A bundle published to the fleet (`docs/fleet.md`, "Policy rollout").
    Fleet,
}

/// The result of one reload attempt, handed to the `on_reload` callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    pub trigger: ReloadTrigger,
    /// Revision serving before the attempt.
    pub previous_revision: String,
    /// Revision serving after it (unchanged on error or when the bundle did not change).
    pub revision: String,
    /// True when a new revision is now serving.
    pub changed: bool,
    /// The compile or load error when the attempt failed.
    pub error: Option<String>,
    /// The fleet bundle tried (`fleet bundle #3 sha256:...`), for trigger `fleet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
}

/// Callback told about every reload attempt.
pub type ReloadHook = Arc<dyn Fn(&ReloadOutcome) + Send + Sync>;

/// Process-unique id of a compiled bundle, so thread-local clones from another engine instance
/// (or an older revision) are never reused.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// One compiled revision.
struct Prepared {
    generation: u64,
    revision: String,
    files: Vec<String>,
    loaded_at: String,
    /// What each thread builds its evaluator from.
    compiled: Compiled,
    /// What this bundle asks the engine to find in exec commands (`features.triggers`, `.hits`).
    needles: Needles,
    /// Which optional parts of the input this bundle may read.
    reads: crate::reads::Reads,
}

impl Prepared {
    fn load(source: &BundleSource, config: &serde_json::Value, opts: &EngineOptions) -> Result<Prepared, PolicyError> {
        let files = bundle::read_files(source)?;
        let revision = bundle::revision(&files, config);
        let mut engine = bundle::build_engine(&files, config, false)?;
        engine.set_execution_timer_config(timer_config(opts.eval_timeout));
        let policy = bundle::prepare(&mut engine)?;
        let needles = Needles::from_engine(&engine);
        let reads = crate::reads::Reads::of(&files);
        let compiled = Compiled::new(engine, &policy, opts.eval_timeout);
        Ok(Prepared {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            revision,
            files: files.iter().filter(|f| !f.is_test()).map(|f| f.path.clone()).collect(),
            loaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            compiled,
            needles,
            reads,
        })
    }
}

/// regorus checks the clock every `check_interval` units of work; 32 keeps the clock reads
/// off the profile while bounding the overshoot to a few microseconds of work.
pub(crate) fn timer_config(limit: Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig { limit, check_interval: std::num::NonZeroU32::MIN.saturating_add(31) }
}

thread_local! {
    /// This thread's clone of the serving engine, tagged with its generation.
    static WORKER: RefCell<Option<(u64, Worker)>> = const { RefCell::new(None) };
}

/// The policy engine shared by every call path.
pub struct PolicyEngine {
    /// Swapped (under `reload_lock`) only when a published bundle is applied.
    source: ArcSwap<BundleSource>,
    opts: EngineOptions,
    config: ArcSwap<serde_json::Value>,
    current: ArcSwap<Prepared>,
    last_error: Mutex<Option<String>>,
    /// Serialises reloads (watcher, signal, API) so two compiles never race to swap.
    reload_lock: Mutex<()>,
    on_reload: RwLock<Option<ReloadHook>>,
    metrics: Metrics,
}

impl PolicyEngine {
    /// Load and compile the bundle. `data` is the policy data (usually
    /// [`PolicySettings::data`]); it appears in Rego as `data.clawbutler.config` (`null` = none).
    pub fn new(
        source: BundleSource,
        data: serde_json::Value,
        opts: EngineOptions,
        registry: &prometheus::Registry,
    ) -> Result<PolicyEngine, PolicyError> {
        let prepared = Prepared::load(&source, &data, &opts)?;
        let metrics = Metrics::register(registry)?;
        Ok(PolicyEngine {
            source: ArcSwap::from_pointee(source),
            opts,
            config: ArcSwap::from_pointee(data),
            current: ArcSwap::from_pointee(prepared),
            last_error: Mutex::new(None),
            reload_lock: Mutex::new(()),
            on_reload: RwLock::new(None),
            metrics,
        })
    }

    /// Build from a `[policies]` config section.
    pub fn from_settings(
        settings: &PolicySettings,
        registry: &prometheus::Registry,
    ) -> Result<PolicyEngine, PolicyError> {
        PolicyEngine::new(settings.source(), settings.data(), settings.engine_options(), registry)
    }

    /// Decide one call. Never fails: errors become a `policy_error` deny.
    pub fn evaluate(&self, input: &PolicyInput) -> Decision {
        let start = Instant::now();
        let prepared = self.current.load();
        let value = crate::value::input_value(input, &prepared.needles);
        self.finish(start, &prepared, input.kind.as_str(), Ok(value))
    }

    /// Whether the serving bundle may read `input.mcp.calls` (see `reads.rs`): the MCP path
    /// fills that array only when it may.
    pub fn reads_mcp_calls(&self) -> bool {
        self.current.load().reads.mcp_calls
    }

    /// Dry-run on an arbitrary JSON input (control API, `policy eval`), with the same
    /// fail-closed rules as [`PolicyEngine::evaluate`].
    pub fn evaluate_value(&self, input: &serde_json::Value) -> Decision {
        let start = Instant::now();
        let kind = input.get("kind").and_then(|k| CallKind::deserialize(k).ok()).map_or("unknown", CallKind::as_str);
        let prepared = self.current.load();
        let value = if input.is_object() {
            Ok(crate::features::attach_to_json(input, &prepared.needles))
        } else {
            Err((ErrorCause::Input, "input must be a JSON object".to_string()))
        };
        self.finish(start, &prepared, kind, value)
    }

    /// Evaluate `value`, built for `prepared` (its needles), on that same revision.
    fn finish(
        &self,
        start: Instant,
        prepared: &Prepared,
        kind: &'static str,
        value: Result<regorus::Value, (ErrorCause, String)>,
    ) -> Decision {
        let result = value.and_then(|v| self.run(prepared, v, start));
        let decision = match result {
            Ok(d) => d,
            Err((cause, detail)) => {
                self.metrics.errors.with_label_values(&[cause.as_str()]).inc();
                tracing::warn!(cause = cause.as_str(), revision = %prepared.revision, %detail, "policy evaluation failed closed");
                Decision::policy_error(&prepared.revision, user_detail(cause))
            }
        };
        self.metrics.eval_seconds.observe(start.elapsed().as_secs_f64());
        self.metrics.decisions.with_label_values(&[kind, decision.action.as_str()]).inc();
        decision
    }

    fn run(
        &self,
        prepared: &Prepared,
        input: regorus::Value,
        start: Instant,
    ) -> Result<Decision, (ErrorCause, String)> {
        let outcome = WORKER.with(|cell| {
            let Ok(mut slot) = cell.try_borrow_mut() else {
                return Err((ErrorCause::Engine, "re-entrant evaluation".to_string()));
            };
            if slot.as_ref().map(|(g, _)| *g) != Some(prepared.generation) {
                let worker = prepared.compiled.worker().map_err(|e| (ErrorCause::Engine, e))?;
                *slot = Some((prepared.generation, worker));
            }
            let Some((_, worker)) = slot.as_mut() else {
                return Err((ErrorCause::Engine, "no engine".to_string()));
            };
            match std::panic::catch_unwind(AssertUnwindSafe(|| worker.eval(&prepared.compiled, input))) {
                Ok(r) => Ok(r),
                Err(_) => {
                    // A panicking engine may be left inconsistent: drop this thread's evaluator.
                    *slot = None;
                    Err((ErrorCause::Engine, "engine panicked".to_string()))
                }
            }
        })?;
        match outcome {
            Ok(value) => output::parse(&value, &prepared.revision).map_err(|e| match e {
                OutputError::Undefined => (ErrorCause::Undefined, "decision is undefined".to_string()),
                OutputError::IllTyped(t) => (ErrorCause::IllTyped, t),
            }),
            // A limit error can surface as a generic engine error; the clock is the arbiter.
            Err((ErrorCause::Engine, detail)) if start.elapsed() >= self.opts.eval_timeout => {
                Err((ErrorCause::Timeout, detail))
            }
            Err(e) => Err(e),
        }
    }

    /// Re-read and recompile the bundle; swap only if it compiles. See [`PolicyEngine::reload_by`].
    pub fn reload(&self) -> Result<PolicyStatus, PolicyError> {
        self.reload_by(ReloadTrigger::Manual)
    }

    /// Reload, recording what triggered it. On error the last good bundle keeps serving and
    /// `status().last_error` holds the message.
    pub fn reload_by(&self, trigger: ReloadTrigger) -> Result<PolicyStatus, PolicyError> {
        let config = self.config.load_full();
        self.reload_inner(trigger, &config).map(|_| self.status())
    }

    /// Reload with new policy data (config change); the data is kept only if the bundle
    /// compiles with it.
    pub fn reload_with_data(
        &self,
        data: serde_json::Value,
        trigger: ReloadTrigger,
    ) -> Result<PolicyStatus, PolicyError> {
        let data = Arc::new(data);
        self.reload_inner(trigger, &data)?;
        self.config.store(data);
        Ok(self.status())
    }

    fn reload_inner(&self, trigger: ReloadTrigger, config: &serde_json::Value) -> Result<(), PolicyError> {
        let _serial = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let source = self.source.load_full();
        let result = Prepared::load(&source, config, &self.opts);
        self.settle(trigger, None, result.map(|p| (p, None))).1
    }

    /// Apply a bundle published to the fleet: its own tests must all pass (there must be some)
    /// and it must compile with this sidecar's policy data; only then do the source and the
    /// engine swap, atomically for every call path. Otherwise the last good bundle keeps
    /// serving and the error says why. Reported to the `on_reload` callback with trigger
    /// `fleet`.
    pub fn apply_published(&self, bundle: crate::signed::Published) -> Result<ReloadOutcome, PolicyError> {
        let _serial = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let label = bundle.label().to_string();
        let source = BundleSource::Published(Arc::new(bundle));
        let config = self.config.load_full();
        let result = crate::signed::check_tests(&source).and_then(|_| Prepared::load(&source, &config, &self.opts));
        let (outcome, result) = self.settle(ReloadTrigger::Fleet, Some(label), result.map(|p| (p, Some(source))));
        result.map(|()| outcome)
    }

    /// What [`PolicyEngine::apply_published`] would do, without swapping: the bundle's tests
    /// pass and it compiles with this sidecar's policy data. Returns the revision it would
    /// serve as.
    pub fn check_published(&self, bundle: crate::signed::Published) -> Result<String, PolicyError> {
        let source = BundleSource::Published(Arc::new(bundle));
        crate::signed::check_tests(&source)?;
        Ok(Prepared::load(&source, &self.config.load_full(), &self.opts)?.revision)
    }

    /// Record that a published bundle was refused before reaching the engine (a bad
    /// signature, a replay): the last good bundle keeps serving; the callback and `status()`
    /// are told.
    pub fn refuse_published(&self, label: &str, error: String) -> ReloadOutcome {
        let _serial = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.settle(ReloadTrigger::Fleet, Some(label.to_string()), Err(PolicyError::Load(error))).0
    }

    /// Swap in `result` (with its new source, for a published bundle) or keep the last good;
    /// record the error, count, and tell the callback. Called under `reload_lock`.
    fn settle(
        &self,
        trigger: ReloadTrigger,
        bundle: Option<String>,
        result: Result<(Prepared, Option<BundleSource>), PolicyError>,
    ) -> (ReloadOutcome, Result<(), PolicyError>) {
        let previous = self.current.load().revision.clone();
        let mut last_error = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        let (outcome, ret) = match result {
            Ok((prepared, source)) => {
                let changed = prepared.revision != previous;
                let revision = prepared.revision.clone();
                if let Some(source) = source {
                    self.source.store(Arc::new(source));
                }
                // An unchanged revision keeps the old engine so thread-local clones stay warm.
                if changed {
                    self.current.store(Arc::new(prepared));
                }
                *last_error = None;
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                let o = ReloadOutcome { trigger, previous_revision: previous, revision, changed, error: None, bundle };
                (o, None)
            }
            Err(e) => {
                let text = match &bundle {
                    Some(b) => format!("{b} refused: {e}"),
                    None => e.to_string(),
                };
                *last_error = Some(text.clone());
                self.metrics.reloads.with_label_values(&["error"]).inc();
                tracing::warn!(error = %text, "policy reload failed; keeping the last good bundle");
                let o = ReloadOutcome {
                    trigger,
                    revision: previous.clone(),
                    previous_revision: previous,
                    changed: false,
                    error: Some(text),
                    bundle,
                };
                (o, Some(e))
            }
        };
        drop(last_error);
        let hook = self.on_reload.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            hook(&outcome);
        }
        (outcome, ret.map_or(Ok(()), Err))
    }

    /// Be told about every reload attempt (e.g. to audit it). Replaces any earlier callback.
    pub fn set_on_reload(&self, hook: ReloadHook) {
        *self.on_reload.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Current bundle state.
    pub fn status(&self) -> PolicyStatus {
        let p = self.current.load();
        PolicyStatus {
            revision: p.revision.clone(),
            files: p.files.clone(),
            loaded_at: p.loaded_at.clone(),
            last_error: self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            source: bundle::source_label(&self.source.load()),
        }
    }

    /// Revision serving now.
    pub fn revision(&self) -> String {
        self.current.load().revision.clone()
    }

    /// Where the bundle comes from now.
    pub fn source(&self) -> BundleSource {
        (*self.source.load_full()).clone()
    }
}

/// Text after `policy_error: ` shown to end users: generic on purpose, details go to the log.
fn user_detail(cause: ErrorCause) -> &'static str {
    match cause {
        ErrorCause::Timeout => "policy evaluation timed out; the call was blocked",
        ErrorCause::Engine => "policy evaluation failed; the call was blocked",
        ErrorCause::Undefined => "policy produced no decision; the call was blocked",
        ErrorCause::IllTyped => "policy produced an invalid decision; the call was blocked",
        ErrorCause::Input => "invalid policy input; the call was blocked",
    }
}
