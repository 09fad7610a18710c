//! ClawButler's policy engine: it turns one typed, versioned `decision::PolicyInput` per
//! call into one `decision::Decision` (allow, deny or hold) by evaluating
//! `data.clawbutler.decision` in a prepared regorus engine. Bundles are the embedded default from `policies/` or a directory; each is
//! compiled once per revision (its content hash) and swapped atomically on reload. Anything
//! the engine cannot answer cleanly (undefined, ill-typed or conflicting output, a timeout, an
//! engine error) becomes a deny with reason `policy_error`: the policy fails closed.
//! [`testing`] holds the policy author's toolkit (`policy test`, `policy eval`); [`signed`]
//! the bundles published to a fleet, signed and verified.

mod bundle;
pub mod engine;
mod features;
pub mod metrics;
mod needles;
mod output;
pub mod plugin;
mod private;
mod reads;
pub mod settings;
pub mod signed;
#[cfg(test)]
mod test_rng;
pub mod testing;
mod tool_features;
mod value;
mod vm;
pub mod watch;

pub use engine::{
    BundleSource, EngineOptions, PolicyEngine, PolicyError, PolicyStatus, ReloadHook, ReloadOutcome, ReloadTrigger,
};
pub use settings::PolicySettings;
pub use signed::{Published, SignedBundle};
pub use testing::{eval_input, run_tests, TestReport, TestResult};
pub use watch::WatchGuard;
