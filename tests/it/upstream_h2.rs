//! HTTP/2 to an upstream that offers it. A real nginx on 127.0.0.1 serves TLS under a CA this
//! test makes (trusted through `[proxy] ca_file`) with `http2` on, and answers the fixed chat
//! completion the saturation benchmark uses; its access log records the protocol and the
//! connection of every request. Needs nginx (`scripts/install-sre-tools.sh`) and python3 with
//! `cryptography` (`scripts/install-smtp.sh`); without them it skips, unless `CLAWBUTLER_E2E=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::http::post_json;
use testkit::rig::{Rig, SidecarConfig};

const REPLY: &str = r#"{"id":"chatcmpl-h2","object":"chat.completion","created":1767225600,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello over h2."},"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":4,"total_tokens":28}}"#;

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found =
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]).map(|d| d.join("nginx")).find(|p| p.is_file());
    if found.is_none() {
        let msg = "upstream_h2: nginx is missing (run scripts/install-sre-tools.sh)";
        assert!(!testkit::openclaw::e2e_required(), "{msg}; CLAWBUTLER_E2E=1 makes this a failure");
        eprintln!("SKIPPED {msg}");
    }
    found
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 (`server.pem`, `server.key`) in `dir`,
/// made by the e-mail test's helper.
fn make_certs(dir: &Path) {
    let helpers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/notify");
    let code = format!(
        "import sys; sys.path.insert(0, {:?}); from smtp_server import make_certs; make_certs({:?})",
        helpers.display().to_string(),
        dir.display().to_string()
    );
    // The Debian python that `scripts/install-smtp.sh` gives `cryptography` (and aiosmtpd).
    let py = std::env::var("CLAWBUTLER_SMTP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let out = Command::new(py).args(["-c", &code]).output().expect("python3");
    assert!(out.status.success(), "making certificates: {}", String::from_utf8_lossy(&out.stderr));
}

/// nginx with TLS and HTTP/2 on a free port, its access log `<protocol> <connection>` per line.
/// One process (`master_process off`), so stopping the child stops nginx: no orphaned worker.
async fn start_nginx(bin: &Path, dir: &Path) -> (Nginx, u16) {
    let port = testkit::openclaw::free_port();
    let d = dir.display();
    let conf = format!(
        "master_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  log_format proto '$server_protocol $connection';\n  access_log {d}/access.log proto;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {d}/server.pem;\n\
         ssl_certificate_key {d}/server.key;\n    location = /v1/chat/completions {{\n\
         default_type application/json;\n      return 200 '{REPLY}';\n    }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (nginx, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx did not listen on {port}: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
}

fn upstream(port: u16) -> String {
    format!("[[upstreams]]\nname = \"tls\"\nkind = \"openai\"\nurl = \"https://127.0.0.1:{port}/v1\"\n")
}

fn call() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn an_upstream_offering_http2_gets_it_over_tls_under_a_private_ca() {
    let Some(bin) = nginx_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let (_nginx, port) = start_nginx(&bin, dir.path()).await;
    let ca = dir.path().join("ca.pem");
    let rig = Rig::start(&format!("[proxy]\nca_file = {:?}\n{}", ca.display().to_string(), upstream(port))).await;

    // Calls one after another and twenty at once: every one answered with nginx's reply.
    let url = rig.url("/a/main/tls/v1/chat/completions");
    for _ in 0..5 {
        let r = post_json(&url, &[], &call()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello over h2.");
    }
    let many = (0..20).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { post_json(&url, &[], &call()).await.status })
    });
    for s in futures_util::future::join_all(many).await {
        assert_eq!(s.unwrap(), 200);
    }

    // nginx saw HTTP/2 on every request, over a few multiplexed connections (at most one per
    // connection thread's pool), not one connection per call in flight.
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 25, "{log}");
    assert!(lines.iter().all(|l| l.starts_with("HTTP/2.0 ")), "{log}");
    let conns: std::collections::HashSet<&str> = lines.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(conns.len() <= threads, "{} connections for 25 calls: {log}", conns.len());

    // The calls were metered as usual: usage read from the reply, in the audit log.
    let ends = rig.model_calls("main", 25).await;
    assert!(ends.iter().all(|r| r["usage"]["output_tokens"] == 4), "{ends:#?}");

    // Without the CA file the same upstream is not trusted: 502 in the caller's shape.
    let other = tempfile::tempdir().unwrap();
    let cfg = SidecarConfig::new(&other.path().join("data")).table(&upstream(port));
    let plain = clawbutler::app::Sidecar::start(cfg.build()).await.unwrap();
    let r = post_json(&format!("http://{}/a/main/tls/v1/chat/completions", plain.data_addr), &[], &call()).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap_or("").contains("certificate"), "{}", r.text());
    plain.shutdown().await;

    // A CA file that holds no certificate is refused at start, naming the key.
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let bad = SidecarConfig::new(&other.path().join("data2"))
        .table(&format!("[proxy]\nca_file = {:?}\n", dir.path().join("empty.pem").display().to_string()));
    let err = clawbutler::app::Sidecar::start(bad.build()).await.err().expect("refused");
    assert!(err.to_string().contains("proxy.ca_file"), "{err}");
}
