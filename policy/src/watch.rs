//! Reload on file change: a debounced recursive watch of the bundle directory. Editors write
//! files in bursts (temp file, rename, chmod), so changes are coalesced before one reload.

use std::sync::{Arc, Weak};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};

use crate::engine::{BundleSource, PolicyEngine, PolicyError, ReloadTrigger};

/// Quiet time after the last change before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watcher alive; dropping it stops watching.
pub struct WatchGuard {
    _debouncer: Option<Debouncer<notify::RecommendedWatcher>>,
}

impl WatchGuard {
    /// True when a directory is actually watched (false for the embedded bundle).
    pub fn is_active(&self) -> bool {
        self._debouncer.is_some()
    }
}

impl PolicyEngine {
    /// Watch the bundle directory and reload (trigger `watch`) after changes to `.rego` or
    /// `.json` files. The embedded bundle cannot change: the guard is then inactive. The watcher
    /// holds only a weak reference, so it never keeps the engine alive.
    pub fn watch(self: &Arc<Self>) -> Result<WatchGuard, PolicyError> {
        let BundleSource::Dir(dir) = self.source() else {
            return Ok(WatchGuard { _debouncer: None });
        };
        let weak: Weak<PolicyEngine> = Arc::downgrade(self);
        let mut debouncer = new_debouncer(DEBOUNCE, move |res: DebounceEventResult| {
            let Some(engine) = weak.upgrade() else { return };
            match res {
                Ok(events) => {
                    let relevant = events.iter().any(|e| {
                        let name = e.path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                        !name.starts_with('.') && (name.ends_with(".rego") || name.ends_with(".json"))
                    });
                    if relevant {
                        // The outcome reaches the on_reload hook and status(); nothing to do here.
                        let _ = engine.reload_by(ReloadTrigger::Watch);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "policy watcher error"),
            }
        })
        .map_err(|e| PolicyError::Watch(e.to_string()))?;
        debouncer
            .watcher()
            .watch(&dir, RecursiveMode::Recursive)
            .map_err(|e| PolicyError::Watch(format!("{}: {e}", dir.display())))?;
        Ok(WatchGuard { _debouncer: Some(debouncer) })
    }
}
