//! The `clawbutler` binary's library half: configuration, assembly of the sidecar from the
//! workspace crates (`proxy`, `policy`, `audit`, `control-api`), the command line, and the
//! test kit (the scripted model server used by tests and the load benchmark).

pub mod app;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod testkit;
