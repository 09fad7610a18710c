//! End to end: config safety's figures (`docs/config-safety.md`, "Measured") on a real OpenClaw
//! 2026.9.6 gateway with 50 agents: how long the first snapshot and a re-read take, and what the
//! versions weigh. The set-up helpers are `e2e_config_safety`'s.
//!
//! Needs `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::rig::ADMIN;
use testkit::upstream::ScriptedUpstream;

use crate::e2e_config_safety::{link_sidecar, model, openclaw_config, outside_patch, wait_until, Api};

/// Figures for `docs/config-safety.md` "Measured": a real gateway with 50 agents, each on its
/// own sidecar provider with a tool policy and a SOUL.md. The first snapshot (51 slices), a
/// re-read that finds nothing changed, a change touching every agent, and the bytes stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_a_50_agent_gateway_are_timed_and_sized() {
    let Some(install) = find_or_skip("snapshots_of_a_50_agent_gateway_are_timed_and_sized") else { return };
    const N: usize = 50;
    let up = ScriptedUpstream::start().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut config = openclaw_config(data, &up.base_url());
    for i in 0..N {
        let id = format!("a{i:02}");
        config["models"]["providers"][format!("cb-{id}")] = json!({
            "baseUrl": format!("http://{data}/a/{id}/fake/v1"), "apiKey": format!("k-{id}"),
            "api": "openai-completions", "models": [model("gpt-4o-mini")]});
        config["agents"]["entries"][&id] = json!({"name": format!("Agent {i}"), "model": format!("cb-{id}/gpt-4o-mini"),
            "modelPolicy": {"allow": [format!("cb-{id}/*")]}, "tools": {"deny": ["exec"]}});
    }
    let gw = Gateway::start(&install, config).await;
    const ENV: &str = "CLAWBUTLER_E2E_CONFIG_FIGURES_TOKEN";
    std::env::set_var(ENV, gw.token());
    let setup = tempfile::tempdir().unwrap();
    let (other, stop_other) = gateway::attach::connect(&gw.ws_url(), ENV, setup.path()).await.expect("2nd client");
    let soul = "You answer tickets for the support desk. Be brief, cite the runbook, never promise refunds.\n";
    for i in 0..N {
        let p = json!({"agentId": format!("a{i:02}"), "name": "SOUL.md", "content": soul});
        other.call("agents.files.set", p).await.expect("agents.files.set");
    }

    let t0 = Instant::now();
    let (sidecar, _dir) = link_sidecar(&gw, ENV, data, &up).await;
    let api = Api { control: sidecar.control_addr };
    let last = format!("a{:02}", N - 1);
    let first = wait_until("version 1 of every agent", Duration::from_secs(60), || async {
        !api.versions(&last).await.is_empty() && !api.versions("@global").await.is_empty()
    })
    .await;
    let with_start = t0.elapsed();
    let mut bytes = 0;
    for id in (0..N).map(|i| format!("a{i:02}")).chain(["main".to_string(), "ops".to_string(), "@global".to_string()]) {
        let r = testkit::http::get(
            &format!("http://{}/api/v1/agents/{id}/config/versions/1", api.control),
            &[("authorization", &format!("Bearer {ADMIN}"))],
        )
        .await;
        assert_eq!(r.status.as_u16(), 200, "{id}");
        bytes += r.body.len();
    }
    let (_, v1) = api.get("/api/v1/agents/a07/config/versions/1").await;
    assert_eq!(v1["content"]["$workspace_files"]["SOUL.md"], soul, "{v1}");

    // Nothing changed: each drift check re-reads everything (config, exec approvals, 50 file
    // lists) and stores nothing.
    let mut unchanged = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (code, d) = api.get("/api/v1/agents/a00/config/versions/drift").await;
        assert_eq!((code, d["drifted"].as_bool()), (200, Some(false)), "{d}");
        unchanged.push(t.elapsed());
    }
    unchanged.sort();
    assert_eq!(api.versions("a00").await.len(), 1, "an unchanged re-read stores nothing");

    // One outside patch renaming every agent: 50 new versions.
    let mut rename = json!({"agents": {"entries": {}}});
    for i in 0..N {
        rename["agents"]["entries"][format!("a{i:02}")] = json!({"name": format!("Desk {i}")});
    }
    outside_patch(&other, rename, &[]).await;
    let changed = wait_until("version 2 of every agent", Duration::from_secs(60), || async {
        api.versions(&last).await.first().is_some_and(|v| v["version"] == 2)
    })
    .await;
    eprintln!(
        "50-agent gateway: first snapshot stored {} slices {first:?} after the sidecar started ({:?} incl. start), \
         {bytes} bytes of version JSON; unchanged re-read median {:?} (min {:?}, max {:?}); \
         a change to every agent stored within {changed:?} of the patch answering",
        N + 3,
        with_start,
        unchanged[2],
        unchanged[0],
        unchanged[4]
    );
    assert!(unchanged[2] < Duration::from_secs(10), "an unchanged snapshot of 50 agents takes {:?}", unchanged[2]);

    let _ = stop_other.send(true);
    sidecar.shutdown().await;
    drop(gw);
    up.shutdown().await;
}
