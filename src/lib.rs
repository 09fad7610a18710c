//! The `clawbutler` binary's library half: the configuration (`clawbutler.toml`), the
//! assembly of a running sidecar from the workspace crates (`app`), and the command line
//! (`serve` plus the tools that work against a running sidecar through its control API).

pub mod app;
pub mod cli;
pub mod config;
mod config_ranges;
pub mod data;
pub mod notify;
pub mod os;
