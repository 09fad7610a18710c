//! `[fleet]`: off unless the table is present. Everything but the database URL and the
//! sidecar id has a default; the password never sits in the file (it is read from the
//! environment variable `password_env` names).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a sidecar does when it cannot read the fleet's kill flags for longer than
/// `heartbeat_ttl_ms` (docs/fleet.md, "Kill switch").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioned {
    /// Refuse every call until the flags are read again (fail closed; the default).
    #[default]
    RefuseAll,
    /// Keep the last flags read: a fleet kill never lapses, but a kill issued elsewhere
    /// during the partition is not seen until contact returns.
    KeepLast,
}

/// `[fleet]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetSettings {
    /// `postgres://user@host:port/db?sslmode=require` (or key=value form) without a password.
    pub database_url: String,
    /// Environment variable holding the database password (unset or empty: none).
    pub password_env: String,
    /// PEM file of the CA that signed the server's certificate; unset: the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// This sidecar's id in the fleet: unique per sidecar, stable across restarts.
    pub sidecar_id: String,
    /// How often the sidecar writes its heartbeat row.
    pub heartbeat_ms: u64,
    /// How long a sidecar may go without reading the fleet's kill flags before it applies
    /// `partitioned`; also when another sidecar's heartbeat counts as stale in the list.
    pub heartbeat_ttl_ms: u64,
    /// The safety-net poll of the kill flags (LISTEN/NOTIFY wakes the sidecar sooner).
    pub poll_ms: u64,
    /// What to do beyond the TTL without contact.
    pub partitioned: Partitioned,
    /// Connections in the pool (the LISTEN connection is one more).
    pub pool_size: usize,
    /// Connect and query timeout.
    pub timeout_ms: u64,
    /// How long a fleet-budget lease lives: the longest a sidecar cut off from the database
    /// keeps serving fleet-budget calls from it (docs/fleet.md "Fleet budgets").
    pub lease_ttl_ms: u64,
    /// A lease is the headroom split into `live sidecars x lease_parts` shares.
    pub lease_parts: u32,
    /// The most one lease holds, in worst cases of the call that takes it.
    pub lease_max_calls: u32,
    /// How often the audit shipper copies new records to the central audit trail.
    pub audit_ship_ms: u64,
    /// Public keys (64 hex digits each, `clawbutler fleet keygen`) a published policy bundle
    /// must be signed with, any one of them; empty: this sidecar applies no published bundle.
    pub policy_keys: Vec<String>,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            database_url: String::new(),
            password_env: "CLAWBUTLER_FLEET_DB_PASSWORD".into(),
            ca_file: None,
            sidecar_id: String::new(),
            heartbeat_ms: 1_000,
            heartbeat_ttl_ms: 10_000,
            poll_ms: 2_000,
            partitioned: Partitioned::RefuseAll,
            pool_size: 8,
            timeout_ms: 5_000,
            lease_ttl_ms: 30_000,
            lease_parts: 4,
            lease_max_calls: 100,
            audit_ship_ms: 1_000,
            policy_keys: Vec::new(),
        }
    }
}

impl FleetSettings {
    /// Check the values; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.database_url.trim().is_empty() {
            return Err(("fleet.database_url", "required when [fleet] is present".into()));
        }
        let id_ok = !self.sidecar_id.is_empty()
            && self.sidecar_id.len() <= 64
            && self.sidecar_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !id_ok {
            return Err(("fleet.sidecar_id", "required: 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'".into()));
        }
        if self.heartbeat_ms == 0 || self.poll_ms == 0 || self.timeout_ms == 0 || self.audit_ship_ms == 0 {
            return Err(("fleet", "heartbeat_ms, poll_ms, timeout_ms and audit_ship_ms must be above 0".into()));
        }
        if self.heartbeat_ttl_ms <= self.poll_ms.max(self.heartbeat_ms) {
            return Err(("fleet.heartbeat_ttl_ms", "must be above both poll_ms and heartbeat_ms".into()));
        }
        if self.lease_ttl_ms < 100 {
            return Err(("fleet.lease_ttl_ms", "must be at least 100".into()));
        }
        if self.lease_parts == 0 || self.lease_max_calls == 0 {
            return Err(("fleet", "lease_parts and lease_max_calls must be at least 1".into()));
        }
        if self.pool_size == 0 {
            return Err(("fleet.pool_size", "must be at least 1".into()));
        }
        self.policy_keys()?;
        Ok(())
    }
}

impl FleetSettings {
    /// The parsed `policy_keys`.
    pub fn policy_keys(&self) -> Result<Vec<ed25519_dalek::VerifyingKey>, (&'static str, String)> {
        self.policy_keys
            .iter()
            .map(|k| policy::signed::parse_public_key(k).map_err(|e| ("fleet.policy_keys", e.to_string())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> FleetSettings {
        FleetSettings { database_url: "host=127.0.0.1".into(), sidecar_id: "gw-1".into(), ..Default::default() }
    }

    #[test]
    fn validation_names_the_key() {
        assert!(ok().validate().is_ok());
        assert_eq!(FleetSettings { database_url: " ".into(), ..ok() }.validate().unwrap_err().0, "fleet.database_url");
        assert_eq!(FleetSettings { sidecar_id: "a b".into(), ..ok() }.validate().unwrap_err().0, "fleet.sidecar_id");
        let ttl = FleetSettings { heartbeat_ttl_ms: 2_000, poll_ms: 2_000, ..ok() };
        assert_eq!(ttl.validate().unwrap_err().0, "fleet.heartbeat_ttl_ms");
        let keys = FleetSettings { policy_keys: vec!["not-a-key".into()], ..ok() };
        assert_eq!(keys.validate().unwrap_err().0, "fleet.policy_keys");
        let keys = FleetSettings { policy_keys: vec!["11".repeat(32)], ..ok() };
        assert!(keys.validate().is_ok(), "64 hex digits of a valid Ed25519 point");
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_echoing_it() {
        let s = FleetSettings { database_url: "postgres://u:hunter2@127.0.0.1/db".into(), ..ok() };
        let e = crate::Connector::new(&s).err().unwrap().to_string();
        assert!(e.contains("CLAWBUTLER_FLEET_DB_PASSWORD") && !e.contains("hunter2"), "{e}");
    }
}
