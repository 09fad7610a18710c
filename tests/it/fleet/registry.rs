//! Migrations, the sidecar registry and the `[fleet]` start checks.

use std::time::Duration;

use clawbutler::app::Sidecar;
use testkit::http::get;
use testkit::postgres::PgCluster;
use testkit::rig::{bearer, Rig, SidecarConfig, ADMIN};

#[tokio::test]
async fn three_sidecars_register_and_each_lists_all_with_heartbeats() {
    let Some(pg) = PgCluster::start_or_skip("fleet registry") else { return };
    let rigs = pg.sidecars(3, "heartbeat_ms = 200\nheartbeat_ttl_ms = 3000\npoll_ms = 500", "").await;
    assert_eq!(pg.psql("SELECT max(version) FROM fleet_schema").trim(), ::fleet::SCHEMA_VERSION.to_string());
    tokio::time::sleep(Duration::from_millis(600)).await;
    for rig in &rigs {
        let r = get(&rig.control("/api/v1/fleet/sidecars"), &bearer(ADMIN)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let items = v["items"].as_array().unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["sc-a", "sc-b", "sc-c"]);
        for i in items {
            assert_eq!(i["version"], env!("CARGO_PKG_VERSION"));
            assert_eq!(i["stale"], false, "{i}");
            assert!(i["heartbeat_age_ms"].as_i64().unwrap() < 3000, "{i}");
        }
    }

    // A stopped sidecar's heartbeat goes stale in everyone's list.
    let mut rigs = rigs;
    let c = rigs.pop().unwrap();
    c.sidecar.shutdown().await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let v = get(&rigs[0].control("/api/v1/fleet/sidecars"), &bearer(ADMIN)).await.json();
    let c_row = v["items"].as_array().unwrap().iter().find(|i| i["id"] == "sc-c").cloned().unwrap();
    assert_eq!(c_row["stale"], true, "{c_row}");

    // Migrations are idempotent: a restart of the same sidecar applies nothing new.
    let a = rigs.remove(0);
    let cfg = a.cfg.clone();
    let a = a.restart_with(cfg).await;
    assert_eq!(pg.psql("SELECT count(*) FROM fleet_schema").trim(), ::fleet::SCHEMA_VERSION.to_string());

    // A schema newer than this binary is refused at start, naming both versions.
    pg.psql("INSERT INTO fleet_schema (version) VALUES (999)");
    let dir = tempfile::tempdir().unwrap();
    let cfg = SidecarConfig::new(&dir.path().join("data")).table(&pg.fleet_table("sc-new", ""));
    let err = Sidecar::start(cfg.build()).await.err().expect("a newer schema must be refused").to_string();
    assert!(err.contains("999") && err.contains("newer than this binary"), "{err}");
    drop(a);
}

#[tokio::test]
async fn without_fleet_the_routes_answer_404_and_a_url_with_a_password_is_refused() {
    let rig = Rig::start("").await;
    let r = get(&rig.control("/api/v1/fleet/sidecars"), &bearer(ADMIN)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("fleet mode is off"), "{}", r.text());

    let dir = tempfile::tempdir().unwrap();
    let table = "[fleet]\ndatabase_url = \"postgres://postgres:hunter2@127.0.0.1:1/db\"\nsidecar_id = \"x\"\n";
    let cfg = SidecarConfig::new(&dir.path().join("data")).table(table);
    let err = Sidecar::start(cfg.build()).await.err().expect("a password in the URL must be refused").to_string();
    assert!(err.contains("CLAWBUTLER_FLEET_DB_PASSWORD") && !err.contains("hunter2"), "{err}");

    let table = "[fleet]\ndatabase_url = \"host=127.0.0.1\"\n";
    let cfg = SidecarConfig::new(&dir.path().join("data2")).table(table);
    let err = clawbutler::config::Config::from_toml_str(&cfg.to_toml()).and_then(|c| c.validate().map(|_| c));
    assert!(err.err().unwrap().to_string().contains("fleet.sidecar_id"));
}
