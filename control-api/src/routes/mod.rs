//! Route groups, one module each.

pub mod audit;
pub mod health;
pub mod policies;

use crate::problem::Problem;

/// Unknown paths answer problem+json, like every other control-API error.
pub async fn not_found(uri: http::Uri) -> Problem {
    Problem::not_found(format!("no route {}", uri.path()))
}
