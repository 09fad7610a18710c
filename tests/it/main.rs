//! The integration and end-to-end tests: one test binary (so a full test build links the
//! sidecar once), one module per area. In-process tests start a sidecar from
//! `testkit::rig`; the e2e modules (`e2e_*`, `smoke_binary`, `ui_browser`) drive the real
//! binary, a real OpenClaw gateway and a real Chromium, and fail rather than skip when
//! `CLAWBUTLER_E2E=1` and a prerequisite is missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

mod approvals_api;
mod approvals_events;
mod approvals_restart;
mod audit_failure;
mod audit_rotation;
mod backup_hold;
mod budgets;
mod contracts;
mod cost;
mod e2e_attach;
mod e2e_attach_tools;
mod e2e_backups;
mod e2e_config_figures;
mod e2e_config_safety;
mod e2e_config_ui;
mod e2e_cost_check;
mod e2e_cron;
mod e2e_gateway;
mod e2e_openclaw;
mod e2e_savings;
mod e2e_task_type;
mod fleet;
mod gateway_link;
mod hardening_edges;
mod hardening_identity;
mod hardening_money;
mod health;
mod load_shedding;
mod mcp;
mod notify;
mod plugin_gate;
mod policy_reload;
mod proxy_model_path;
mod reports;
mod smoke_binary;
mod sre;
mod ui_browser;
mod upstream_h2;
