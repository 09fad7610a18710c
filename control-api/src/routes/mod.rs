//! Route groups, one module each.

pub mod agent_keys;
pub mod agents;
pub mod approvals;
pub mod audit;
pub mod backups;
pub mod budgets;
pub mod config_history;
pub mod cost;
mod cost_check;
pub mod cron;
pub mod events;
pub mod fleet;
pub mod fleet_policy;
pub mod grants;
pub mod health;
pub mod mcp;
pub mod notifications;
pub mod openapi;
pub mod plugins;
pub mod policies;
pub mod reports;
pub mod savings;
pub mod tokens;
pub mod ui;

use axum::routing::MethodRouter;
use axum::Router;

use crate::problem::Problem;
use crate::AppState;

/// A router that remembers which paths it serves, so the OpenAPI test can walk the real route
/// table: a route added without a spec entry fails that test. Routes that are not API (the
/// UI's files) are added with [`Routes::page`] and are not expected in the spec.
pub struct Routes {
    router: Router<AppState>,
    paths: Vec<&'static str>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes { router: Router::new(), paths: Vec::new() }
    }
}

impl Routes {
    /// An API route (described in `openapi.json`).
    pub fn route(mut self, path: &'static str, methods: MethodRouter<AppState>) -> Routes {
        self.paths.push(path);
        self.router = self.router.route(path, methods);
        self
    }

    /// A non-API route (UI pages and files).
    pub fn page(mut self, path: &'static str, methods: MethodRouter<AppState>) -> Routes {
        self.router = self.router.route(path, methods);
        self
    }

    /// Add another group's routes.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.paths.extend(other.paths);
        self.router = self.router.merge(other.router);
        self
    }

    /// The API paths served, in the order they were added.
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    /// The axum router.
    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// A list's `cursor` that names an id (approvals, grants: UUIDs, as given in `next_cursor`);
/// an empty one means none.
pub fn id_cursor(c: Option<String>) -> Result<Option<String>, Problem> {
    match c.as_deref() {
        None | Some("") => Ok(None),
        Some(v) if uuid::Uuid::parse_str(v).is_ok() => Ok(c),
        Some(_) => Err(Problem::bad_request("cursor must be a next_cursor value (an id)")),
    }
}

/// A list's `limit`, when given, must be 1 to `max`.
pub fn page_limit(limit: Option<usize>, max: usize) -> Result<(), Problem> {
    match limit {
        Some(l) if !(1..=max).contains(&l) => Err(Problem::bad_request(format!("limit must be 1 to {max}"))),
        _ => Ok(()),
    }
}

/// Unknown paths answer problem+json, like every other control-API error.
pub async fn not_found(uri: http::Uri) -> Problem {
    Problem::not_found(format!("no route {}", uri.path()))
}
