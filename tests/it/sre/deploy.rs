//! The deployment files: the hardened systemd unit (verified and scored by
//! `systemd-analyze`), the sidecar's sd_notify readiness under `Type=notify`, and the
//! Kubernetes manifests (`deploy/kubernetes/`).

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::http::get;
use testkit::rig::SidecarConfig;

use super::{repo, run, tool};

const BIN: &str = env!("CARGO_BIN_EXE_clawbutler");

/// The lowest (best) exposure `systemd-analyze security` gives the unit; measured 1.2.
const MAX_EXPOSURE: f64 = 2.0;

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(repo().join("deploy/clawbutler.service")).unwrap();
    for line in [
        "Type=notify",
        "NoNewPrivileges=true",
        "CapabilityBoundingSet=\n",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "ReadWritePaths=/var/lib/clawbutler",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=true",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ] {
        assert!(unit.contains(line), "deploy/clawbutler.service lacks {line:?}");
    }
    let Some(analyze) = tool("systemd_unit_verifies_and_is_hardened", "systemd-analyze") else { return };
    // The unit as installed, with ExecStart pointing at the binary this test run built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clawbutler.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/clawbutler", BIN)).unwrap();
    let (ok, out) = run(Command::new(&analyze).arg("verify").arg(&path));
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify:\n{out}");
    let (_, out) = run(Command::new(&analyze).args(["security", "--offline=true", "--no-pager"]).arg(&path));
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for clawbutler.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}:\n{out}");
}

/// Receive one datagram from the notify socket (up to 60 s: a debug binary starting on a
/// loaded CI machine).
fn recv(sock: &UnixDatagram) -> std::io::Result<String> {
    let mut buf = [0u8; 1024];
    let n = sock.recv(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn the_binary_reports_readiness_and_stopping_over_sd_notify() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("clawbutler.toml");
    std::fs::write(&cfg, SidecarConfig::new(&dir.path().join("data")).to_toml()).unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // The sidecar's log goes to a file so a start that never reports READY says why.
    let log = dir.path().join("serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("CLAWBUTLER_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let ready = recv(&sock).unwrap_or_else(|e| {
        panic!(
            "no sd_notify message within 60 s ({e}); the sidecar exited: {:?}; its log:\n{}",
            child.try_wait(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains(&format!("MAINPID={}", child.id())), "{ready}");
    // Once READY is out, SIGTERM is already caught (a `systemctl restart` right after the
    // start must still get STOPPING and the graceful shutdown, not the default action).
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).map(str::trim).unwrap_or_default();
    let caught = u64::from_str_radix(caught, 16).unwrap_or_else(|e| panic!("SigCgt {caught:?}: {e}"));
    for (name, n) in [("SIGTERM", 15), ("SIGINT", 2), ("SIGHUP", 1)] {
        assert_ne!(caught & (1 << (n - 1)), 0, "{name} not caught when READY was sent:\n{status}");
    }
    // READY means serving: the control listener named in STATUS answers at once.
    let control = ready.split("control on ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
    let control = control.trim_end_matches(',');
    assert_eq!(get(&format!("http://{control}/readyz"), &[]).await.status, 200, "{ready}");
    assert_eq!(get(&format!("http://{control}/livez"), &[]).await.status, 200);

    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let stopping = recv(&sock).expect("no STOPPING message within 60 s of SIGTERM");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
}

/// Every document of every file in `deploy/kubernetes/` (kustomization excluded), by kind.
fn manifests() -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    let dir = repo().join("deploy/kubernetes");
    let kust: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap()).unwrap();
    let mut out = Vec::new();
    for f in kust["resources"].as_sequence().unwrap() {
        let f = f.as_str().unwrap();
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("kustomization names {f}: {e}"));
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = serde_yaml_ng::Value::deserialize(doc).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(v["apiVersion"].as_str().is_some() && v["kind"].as_str().is_some(), "{f}: no apiVersion/kind");
            assert!(v["metadata"]["name"].as_str().is_some(), "{f}: no metadata.name");
            out.push(v);
        }
    }
    // Every file in the directory is in the kustomization (none forgotten).
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            name == "kustomization.yaml"
                || kust["resources"].as_sequence().unwrap().iter().any(|r| r.as_str() == Some(&name)),
            "{name} is not in kustomization.yaml"
        );
    }
    out
}

fn one<'a>(all: &'a [serde_yaml_ng::Value], kind: &str) -> &'a serde_yaml_ng::Value {
    let found: Vec<_> = all.iter().filter(|v| v["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

#[test]
fn kubernetes_manifests_run_clawbutler_as_a_restricted_native_sidecar() {
    let all = manifests();
    let deploy = one(&all, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    // The native sidecar: an init container that restarts always.
    let sidecars = pod["initContainers"].as_sequence().unwrap();
    let cb = sidecars.iter().find(|c| c["name"].as_str() == Some("clawbutler")).expect("clawbutler init container");
    assert_eq!(cb["restartPolicy"].as_str(), Some("Always"));
    assert!(pod["containers"].as_sequence().unwrap().iter().any(|c| c["name"].as_str() == Some("openclaw")));
    // Probes on the control port's /livez and /readyz.
    assert_eq!(cb["startupProbe"]["httpGet"]["path"].as_str(), Some("/livez"));
    assert_eq!(cb["livenessProbe"]["httpGet"]["path"].as_str(), Some("/livez"));
    assert_eq!(cb["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    for p in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(cb[p]["httpGet"]["port"].as_str(), Some("control"), "{p}");
    }
    assert_eq!(cb["ports"][0]["containerPort"].as_u64(), Some(8788));
    // Resources and the restricted security context (Pod Security Standard "restricted").
    for k in ["cpu", "memory"] {
        assert!(cb["resources"]["requests"][k].as_str().is_some(), "requests.{k}");
    }
    assert!(cb["resources"]["limits"]["memory"].as_str().is_some());
    let sc = &cb["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(sc["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
    for c in pod["containers"].as_sequence().unwrap() {
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"].as_bool(), Some(false), "{:?}", c["name"]);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0].as_str(), Some("ALL"));
    }
    // Volumes: the data dir on the PVC, the config from the ConfigMap; both exist.
    let pvc = one(&all, "PersistentVolumeClaim");
    let cm = one(&all, "ConfigMap");
    let secret = one(&all, "Secret");
    let volumes = pod["volumes"].as_sequence().unwrap();
    let claim = volumes.iter().find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str()).unwrap();
    assert_eq!(Some(claim), pvc["metadata"]["name"].as_str());
    let cm_name = volumes.iter().find_map(|v| v["configMap"]["name"].as_str()).unwrap();
    assert_eq!(Some(cm_name), cm["metadata"]["name"].as_str());
    let mounts = cb["volumeMounts"].as_sequence().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"].as_str() == Some("/var/lib/clawbutler")));
    // The config the sidecar reads is a valid clawbutler.toml, with the data dir on the volume,
    // the data listener on localhost only, and every key variable it names in the Secret.
    let toml = cm["data"]["clawbutler.toml"].as_str().unwrap();
    let cfg = clawbutler::config::Config::from_toml_str(toml).unwrap_or_else(|e| panic!("configmap.yaml: {e}"));
    assert_eq!(cfg.server.data_dir, std::path::Path::new("/var/lib/clawbutler"));
    assert!(cfg.server.listen.starts_with("127.0.0.1:"), "{}", cfg.server.listen);
    let keys = secret["stringData"].as_mapping().unwrap();
    for line in toml.lines().filter(|l| l.contains("_env =")) {
        let var = line.split('"').nth(1).unwrap();
        assert!(keys.contains_key(var), "{var} (named in clawbutler.toml) is not in the Secret");
    }
    assert!(cb["envFrom"][0]["secretRef"]["name"].as_str() == secret["metadata"]["name"].as_str());
    // Scraped as job "clawbutler" (what the shipped rules expect), through a Service port.
    let sm = one(&all, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"].as_str(), Some("control"));
    assert_eq!(sm["spec"]["endpoints"][0]["relabelings"][0]["replacement"].as_str(), Some("clawbutler"));
    let svc = one(&all, "Service");
    assert!(svc["spec"]["ports"].as_sequence().unwrap().iter().any(|p| p["name"].as_str() == Some("control")));
    // Egress limited to DNS and HTTPS outside private ranges.
    let np = one(&all, "NetworkPolicy");
    assert!(np["spec"]["policyTypes"].as_sequence().unwrap().iter().any(|t| t.as_str() == Some("Egress")));
    let egress = np["spec"]["egress"].as_sequence().unwrap();
    let ports: Vec<u64> = egress
        .iter()
        .flat_map(|e| e["ports"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert!(ports.iter().all(|p| [53, 443].contains(p)), "{ports:?}");
}

/// `buildah` with its storage in `dir` (vfs: works without overlay or fuse, as here).
fn buildah(bin: &std::path::Path, dir: &std::path::Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["--storage-driver", "vfs", "--root"]).arg(dir.join("root")).arg("--runroot").arg(dir.join("run"));
    c
}

#[tokio::test]
async fn container_image_builds_offline_runs_as_non_root_and_answers_livez() {
    let Some(bh) = tool("container_image_builds_offline_runs_as_non_root_and_answers_livez", "buildah") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = format!(
        "--storage-driver vfs --root {} --runroot {}",
        dir.path().join("root").display(),
        dir.path().join("run").display()
    );
    let tag = "localhost/clawbutler:it";
    let (ok, out) = run(Command::new("bash")
        .arg(repo().join("deploy/container/build.sh"))
        .args([BIN, tag])
        .env("BUILDAH_OPTS", &opts));
    assert!(ok, "build.sh:\n{out}");
    let (ok, out) = run(buildah(&bh, dir.path()).args(["inspect", "--type", "image", tag]));
    assert!(ok, "{out}");
    let img: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &img["Docker"]["config"];
    assert_eq!(c["User"], "10001:10001");
    assert_eq!(c["Entrypoint"][0], "/usr/local/bin/clawbutler");
    assert!(c["Volumes"].get("/var/lib/clawbutler").is_some(), "{c}");
    let hc: Vec<&str> = c["Healthcheck"]["Test"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(&hc[..3], ["CMD", "/usr/local/bin/clawbutler", "health"]);

    // Run it (chroot isolation, the host's loopback) and ask /livez from outside, then run
    // the image's own healthcheck command inside.
    let (ok, ctr) = run(buildah(&bh, dir.path()).args(["from", tag]));
    assert!(ok, "{ctr}");
    let ctr = ctr.trim().lines().last().unwrap().to_string();
    // Below the ephemeral range: the container binds them seconds later.
    let (data, control) = (testkit::openclaw::free_port(), testkit::openclaw::free_port());
    let mut serve = buildah(&bh, dir.path())
        .args(["run", "--isolation", "chroot", "--network", "host"])
        .args(["--env", &format!("CLAWBUTLER_LISTEN=127.0.0.1:{data}")])
        .args(["--env", &format!("CLAWBUTLER_CONTROL_LISTEN=127.0.0.1:{control}")])
        .args(["--env", "CLAWBUTLER_ADMIN_TOKEN=container-test-admin-token"])
        .arg(&ctr)
        .args(["--", "/usr/local/bin/clawbutler", "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", control)).is_err() {
        if let Some(st) = serve.try_wait().unwrap() {
            panic!("the container exited: {st}: {}", run(buildah(&bh, dir.path()).args(["rm", "--all"])).1);
        }
        assert!(Instant::now() < deadline, "the container's control listener never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let live = get(&format!("http://127.0.0.1:{control}/livez"), &[]).await;
    assert_eq!(live.status, 200, "{}", live.text());
    let ready = get(&format!("http://127.0.0.1:{control}/readyz"), &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let (ok, out) = run(buildah(&bh, dir.path())
        .args(["run", "--isolation", "chroot", "--network", "host", &ctr, "--"])
        .args(hc[1..].iter().map(|s| s.replace("127.0.0.1:8788", &format!("127.0.0.1:{control}")))));
    assert!(ok && out.contains("live"), "healthcheck command: {out}");
    // The sidecar process runs as the image's user, not root.
    let uids: Vec<u32> = descendants(serve.id())
        .into_iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "clawbutler"))
        .filter_map(uid_of)
        .collect();
    assert_eq!(uids, vec![10001], "uid of the sidecar process in the container");

    let _ = Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while serve.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = run(buildah(&bh, dir.path()).args(["rm", "--all"]));
    let _ = run(buildah(&bh, dir.path()).args(["rmi", "--all", "--force"]));
}

/// Every process below `pid` (from /proc).
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
            // The field after the `(comm)` (which may hold spaces): state, then ppid.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(parent) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// The real uid of a process.
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}
