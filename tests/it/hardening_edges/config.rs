//! Class 8 (low): `upstream_timeout_ms = 0` was accepted (then every call 504s), huge limits
//! were silently clamped, an empty admin token was silently ignored, and a `data_dir` that is
//! a file failed with "File exists (os 17)" without the path. Now every numeric key has a
//! range, and each refusal names the key (and the file or path).

use std::process::Command;

use clawbutler::app::Sidecar;
use clawbutler::config::Config;
use testkit::rig::SidecarConfig;

const BIN: &str = env!("CARGO_BIN_EXE_clawbutler");

fn refused(toml: &str) -> String {
    Config::from_toml_str(toml).map(|_| ()).expect_err(toml).to_string()
}

#[tokio::test]
async fn bad_numbers_empty_admin_tokens_and_a_file_as_data_dir_are_refused_by_name() {
    for (toml, key) in [
        ("[proxy]\nupstream_timeout_ms = 0", "proxy.upstream_timeout_ms"),
        ("[proxy]\nconnect_timeout_ms = 0", "proxy.connect_timeout_ms"),
        ("[proxy]\nmax_body_bytes = 1099511627776", "proxy.max_body_bytes"),
        ("[proxy]\nmax_connections = 0", "proxy.max_connections"),
        ("[proxy]\nstream_idle_timeout_ms = 9223372036854775807", "proxy.stream_idle_timeout_ms"),
        ("[server]\ncontrol_header_read_timeout_ms = 0", "server.control_header_read_timeout_ms"),
        ("[approvals]\nevents_heartbeat_ms = 0", "approvals.events_heartbeat_ms"),
        ("[audit]\nbroadcast_capacity = 0", "audit.broadcast_capacity"),
        ("[audit]\nsearch_scan_limit = 0", "audit.search_scan_limit"),
        ("[policies]\neval_timeout_ms = 0", "policies.eval_timeout_ms"),
    ] {
        let e = refused(toml);
        assert!(e.starts_with(&format!("{key}: ")), "{toml}: {e}");
        assert!(e.contains("out of range: give"), "{e}");
    }
    for (toml, why) in [
        ("[auth]\nadmin_token = \"\"", "is empty"),
        ("[auth]\nadmin_token = \"short\"", "shorter than 16"),
        ("[auth]\nadmin_token = \"has a space in the middle\"", "white space"),
    ] {
        let e = refused(toml);
        assert!(e.starts_with("auth.admin_token: ") && e.contains(why), "{toml}: {e}");
    }

    // A data dir that is a file: the key and the path.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let e = match Sidecar::start(SidecarConfig::new(&file).build()).await {
        Ok(_) => panic!("a file was taken as the data dir"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("server.data_dir") && e.contains(&file.display().to_string()), "{e}");

    // The binary says the same on stderr, naming the config file too, and refuses an empty
    // CLAWBUTLER_ADMIN_TOKEN instead of ignoring it.
    let conf = dir.path().join("c.toml");
    std::fs::write(
        &conf,
        "[server]\nlisten = \"127.0.0.1:0\"\ncontrol_listen = \"127.0.0.1:0\"\n[proxy]\nupstream_timeout_ms = 0\n",
    )
    .unwrap();
    let out =
        Command::new(BIN).args(["serve", "--config"]).arg(&conf).env_remove("CLAWBUTLER_ADMIN_TOKEN").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("proxy.upstream_timeout_ms") && err.contains(&conf.display().to_string()), "{err}");
    std::fs::write(&conf, "[server]\nlisten = \"127.0.0.1:0\"\ncontrol_listen = \"127.0.0.1:0\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&conf)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .env("CLAWBUTLER_ADMIN_TOKEN", "")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("CLAWBUTLER_ADMIN_TOKEN") && err.contains("is empty"), "{err}");
}
