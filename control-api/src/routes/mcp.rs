//! `GET /api/v1/mcp/servers` (viewer): every configured MCP server with its health (state,
//! reason, since), the tools it listed last and the sessions using it; never header or
//! environment values (docs/mcp.md). Without an MCP endpoint the list is empty. The MCP
//! tokens' routes are in `agent_keys.rs`.

use axum::extract::State;
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The MCP routes.
pub fn routes() -> Routes {
    Routes::default().route("/api/v1/mcp/servers", get(servers))
}

async fn servers(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let items = s.mcp.as_ref().map(|m| m.servers()).unwrap_or_else(|| json!([]));
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}
