//! Route groups, one module each.

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod budgets;
pub mod events;
pub mod grants;
pub mod health;
pub mod openapi;
pub mod policies;
pub mod tokens;
pub mod ui;

use crate::problem::Problem;

/// Unknown paths answer problem+json, like every other control-API error.
pub async fn not_found(uri: http::Uri) -> Problem {
    Problem::not_found(format!("no route {}", uri.path()))
}
