//! The fleet schema, versioned. Every start applies what is missing in one transaction under
//! one advisory lock (so sidecars starting together do not race; all or nothing), and
//! refuses a database whose schema is newer than this binary knows. Applied versions are
//! never edited: a change is a new version.

use deadpool_postgres::Pool;

use crate::FleetError;

/// Advisory lock key of the migrations (any constant; "cbfleet" in ASCII).
const LOCK: i64 = 0x0063_6266_6c65_6574;

/// Every migration, oldest first; the index + 1 is the version.
const MIGRATIONS: &[&str] = &[
    // 1: the sidecar registry and the kill switch.
    r#"
    CREATE TABLE fleet_sidecar (
        sidecar_id     text PRIMARY KEY,
        version        text NOT NULL,
        started_at     timestamptz NOT NULL,
        last_heartbeat timestamptz NOT NULL
    );
    CREATE TABLE fleet_control (
        scope      text PRIMARY KEY,          -- 'global' or 'agent:<id>'
        killed     boolean NOT NULL,
        epoch      bigint NOT NULL DEFAULT 1, -- + 1 on every change
        reason     text NOT NULL,
        updated_by text NOT NULL,
        sidecar_id text NOT NULL,             -- where the change was made
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    "#,
    // 2: fleet budgets and their leases (amounts in micro-USD).
    r#"
    CREATE TABLE fleet_budget (
        budget_id   text PRIMARY KEY,                 -- e.g. 'team:payments@daily:2026-12-03'
        limit_micro bigint NOT NULL CHECK (limit_micro >= 0),
        spent_micro bigint NOT NULL DEFAULT 0,        -- settled real cost
        held_micro  bigint NOT NULL DEFAULT 0 CHECK (held_micro >= 0)  -- sum of open leases
    );
    CREATE TABLE fleet_lease (
        lease_id     text PRIMARY KEY,                -- minted by the sidecar, reused on every retry
        sidecar_id   text NOT NULL,
        budget_ids   text[] NOT NULL,                 -- sorted; the same amount is held on each
        amount_micro bigint NOT NULL CHECK (amount_micro > 0),
        used_micro   bigint,
        state        text NOT NULL DEFAULT 'open',    -- open | settled
        expires_at   timestamptz NOT NULL
    );
    "#,
    // 3: the expiry sweeper's scan (docs/fleet.md "Fleet budgets"); `state` gains 'expired'
    // (charged in full by the sweeper, refunded once by a late settle).
    r#"
    CREATE INDEX fleet_lease_open_expiry ON fleet_lease (expires_at) WHERE state = 'open';
    "#,
    // 4: the shared approval inbox (docs/fleet.md "Shared approval inbox") and the answers
    // stored for Idempotency-Keys, so a retry on any sidecar replays the first answer.
    r#"
    CREATE TABLE fleet_approval (
        approval_id text PRIMARY KEY,       -- UUID v7: text order is creation order
        sidecar_id  text NOT NULL,          -- the sidecar holding the call
        agent       text NOT NULL,
        kind        text NOT NULL,
        risk        text NOT NULL,
        state       text NOT NULL,          -- pending | allowed | denied | expired | cancelled
        version     bigint NOT NULL,
        expires_at  timestamptz NOT NULL,   -- no decision is taken past it (database clock)
        decided_by  text,
        decided_via text,                   -- the sidecar whose API took a human decision
        decided_at  timestamptz,
        grant_scope jsonb,                  -- allow-always: the grant the holding sidecar creates
        body        jsonb NOT NULL          -- the approval as the API shows it
    );
    CREATE INDEX fleet_approval_pending ON fleet_approval (sidecar_id) WHERE state = 'pending';
    CREATE TABLE fleet_approval_idem (
        key       text PRIMARY KEY,         -- '<approval id> <Idempotency-Key>'
        body_hash text NOT NULL,            -- sha256 of the request body
        status    int NOT NULL,
        body      text NOT NULL,            -- the answer, byte for byte
        stored_at timestamptz NOT NULL DEFAULT now()
    );
    -- The fleet view: each sidecar's gateway link as of its last heartbeat (NULL: no link
    -- configured).
    ALTER TABLE fleet_sidecar ADD COLUMN gateway_link text;
    "#,
    // 5: policy rollout (docs/fleet.md "Policy rollout"): the signed bundles published, and
    // what each sidecar serves.
    r#"
    CREATE TABLE fleet_policy (
        seq          bigserial PRIMARY KEY,
        digest       text NOT NULL,          -- sha256 of the files and published_at (signed)
        files        jsonb NOT NULL,         -- [{path, contents}], tests included
        published_at text NOT NULL,          -- RFC 3339 as signed, publisher's clock
        signature    text NOT NULL,          -- Ed25519 (hex) by a fleet policy key
        published_by text NOT NULL,          -- the token name on the publishing API
        via_sidecar  text NOT NULL,
        stored_at    timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE fleet_policy_state (
        sidecar_id  text PRIMARY KEY,
        revision    text NOT NULL,           -- the revision serving (decisions' bundle_revision)
        applied_seq bigint,                  -- the fleet bundle serving; NULL: its own bundle
        refused_seq bigint,                  -- the newest bundle it refused, and why
        error       text,
        updated_at  timestamptz NOT NULL
    );
    "#,
    // 6: the central audit trail (docs/fleet.md "Central audit"): each sidecar's records and
    // checkpoints as their stored lines, byte for byte (the chain hashes and signatures cover
    // them), a few columns pulled out for search, and where each sidecar's shipper stands.
    r#"
    CREATE TABLE fleet_audit_record (
        sidecar_id text NOT NULL,
        seq        bigint NOT NULL,
        ts         timestamptz NOT NULL,
        kind       text,
        agent      text,
        action     text,
        risk       text,
        trace_id   text,
        line       text NOT NULL,
        PRIMARY KEY (sidecar_id, seq)
    );
    CREATE INDEX fleet_audit_record_ts ON fleet_audit_record (ts DESC, sidecar_id DESC, seq DESC);
    CREATE INDEX fleet_audit_record_trace ON fleet_audit_record (trace_id) WHERE trace_id IS NOT NULL;
    CREATE TABLE fleet_audit_checkpoint (
        sidecar_id text NOT NULL,
        checkpoint bigint NOT NULL,
        line       text NOT NULL,
        PRIMARY KEY (sidecar_id, checkpoint)
    );
    CREATE TABLE fleet_audit_shipper (
        sidecar_id  text PRIMARY KEY,
        public_keys text NOT NULL,               -- hex, oldest first: the keys its log signs with
        local_head  bigint NOT NULL,             -- its log's last durable seq, as last reported
        shipped_seq bigint NOT NULL,
        lag_seconds double precision NOT NULL,   -- age of its oldest record not yet shipped
        updated_at  timestamptz NOT NULL DEFAULT now()
    );
    "#,
    // 7: fleet-wide grants (docs/fleet.md "Fleet-wide grants"): every sidecar applies every
    // row; a revocation deletes it.
    r#"
    CREATE TABLE fleet_grant (
        grant_id    text PRIMARY KEY,        -- UUID v7 (an allow-always: the decision's grant id)
        sidecar_id  text NOT NULL,           -- the sidecar whose API created it
        agent       text NOT NULL,
        kind        text NOT NULL,
        approval_id text,                    -- the allow-always decision that created it
        expires_at  timestamptz,             -- NULL: until revoked (each sidecar checks it)
        body        jsonb NOT NULL,          -- the grant as the API shows it
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX fleet_grant_agent ON fleet_grant (agent);
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Apply missing migrations; returns the schema version now in force.
pub async fn migrate(pool: &Pool) -> Result<i32, FleetError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The lock first: two sidecars creating `fleet_schema` at once would otherwise collide.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS fleet_schema (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let found: i32 = tx.query_one("SELECT coalesce(max(version), 0) FROM fleet_schema", &[]).await?.get(0);
    if found > SCHEMA_VERSION {
        return Err(FleetError::SchemaTooNew { found, known: SCHEMA_VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let v = i as i32 + 1;
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO fleet_schema (version) VALUES ($1)", &[&v]).await?;
        tracing::info!(version = v, "fleet schema migrated");
    }
    tx.commit().await?;
    Ok(SCHEMA_VERSION)
}
