//! A call in flight when the real `clawbutler` binary is SIGKILLed is not lost from the log:
//! its `started` record was written when it was sent, and the next start closes it with an
//! `outcome_unknown` record naming the start. The reproduction: such a call left no
//! audit record at all.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::http::{get, post_json, post_json_streaming};
use testkit::rig::{bearer, SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;

const BIN: &str = env!("CARGO_BIN_EXE_clawbutler");

/// The sidecar binary, killed (SIGKILL) when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use testkit::openclaw::free_port;

/// The real `clawbutler serve` on fixed free ports, its stderr in `log` (the fleet fault tests
/// use it too).
pub(crate) struct Binary {
    config: std::path::PathBuf,
    pub(crate) log: std::path::PathBuf,
    pub(crate) control: String,
    pub(crate) data: String,
}

impl Binary {
    fn new(dir: &std::path::Path, upstream: &str) -> Binary {
        Binary::with(dir, upstream, |c| c)
    }

    /// A config in `dir` (data dir `dir/data`) in front of `upstream`, changed by `edit`.
    pub(crate) fn with(
        dir: &std::path::Path,
        upstream: &str,
        edit: impl FnOnce(SidecarConfig) -> SidecarConfig,
    ) -> Binary {
        let (data, control) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
        let cfg = edit(SidecarConfig::new(&dir.join("data")).listen(&data, &control).upstreams(upstream));
        let config = dir.join("clawbutler.toml");
        std::fs::write(&config, cfg.to_toml()).unwrap();
        Binary {
            config,
            log: dir.join("sidecar.log"),
            control: format!("http://{control}"),
            data: format!("http://{data}"),
        }
    }

    /// Start the binary and wait until it is ready.
    pub(crate) async fn start(&self) -> Proc {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut c = Command::new(BIN);
        c.args(["serve", "--config"]).arg(&self.config).stdout(Stdio::null()).stderr(log);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLAWBUTLER_")) {
            c.env_remove(k);
        }
        let p = Proc(c.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Ok(r)) =
                tokio::time::timeout(Duration::from_secs(1), testkit_get(&format!("{}/readyz", self.control))).await
            {
                if r == 200 {
                    return p;
                }
            }
            assert!(Instant::now() < deadline, "sidecar not ready: {}", std::fs::read_to_string(&self.log).unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every model_call record of agent `main`, oldest first.
    async fn records(&self) -> Vec<Value> {
        let r =
            get(&format!("{}/api/v1/audit?agent=main&kind=model_call&limit=1000", self.control), &bearer(ADMIN)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let mut items = r.json()["items"].as_array().cloned().unwrap();
        items.reverse();
        items
    }

    /// Wait (up to 10 s) until the records listed satisfy `ok`.
    async fn wait_listed(&self, what: &str, ok: impl Fn(&[Value]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let recs = self.records().await;
            if ok(&recs) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "never listed: {what}: {recs:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// GET that reports a refused connection as an error instead of panicking (the binary may not
/// be listening yet).
async fn testkit_get(url: &str) -> Result<u16, ()> {
    let addr = url.trim_start_matches("http://").split('/').next().unwrap_or_default().to_string();
    if tokio::net::TcpStream::connect(&addr).await.is_err() {
        return Err(());
    }
    Ok(get(url, &[]).await.status.as_u16())
}

fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": prompt}]})
}

/// Every start closed exactly once; returns the closing record of each start, by decision id.
fn closings(recs: &[Value]) -> std::collections::HashMap<String, Value> {
    let mut out = std::collections::HashMap::new();
    for s in recs.iter().filter(|r| r["outcome"] == "started") {
        let id = s["decision_id"].as_str().unwrap();
        let closes: Vec<&Value> = recs.iter().filter(|r| r["decision_id"] == id && r["outcome"] != "started").collect();
        assert_eq!(closes.len(), 1, "start {id} closed {} times: {recs:#?}", closes.len());
        assert!(closes[0]["seq"].as_u64() > s["seq"].as_u64());
        if closes[0]["outcome"] == "outcome_unknown" {
            assert_eq!(closes[0]["details"]["start_seq"], s["seq"], "{:?}", closes[0]);
            assert_eq!(closes[0]["subject"], s["subject"]);
            assert_eq!(closes[0]["trace_id"], s["trace_id"]);
        }
        out.insert(id.to_string(), closes[0].clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_at_a_sigkill_are_closed_as_outcome_unknown() {
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::new(dir.path(), &up.base_url());
    let chat_url = format!("{}/a/main/fake/v1/chat/completions", bin.data);
    let mut p = bin.start().await;

    // A call that completes before the kill, a stream in the middle of its answer, and a
    // call the upstream has not answered yet.
    let done = post_json(&chat_url, &[], &chat("done before the kill", false)).await;
    assert_eq!(done.status, 200);
    let done_id = done.header("x-clawbutler-decision-id").unwrap().to_string();
    let mut stream = post_json_streaming(&chat_url, &[], &chat("SLOW stream", true)).await;
    stream.next_chunk().await.unwrap();
    let stream_id = stream.headers["x-clawbutler-decision-id"].to_str().unwrap().to_string();
    let url = chat_url.clone();
    let hang = tokio::spawn(async move { post_json_streaming(&url, &[], &chat("HANG", false)).await.status });
    assert!(up.wait_for_requests(3, Duration::from_secs(5)).await);
    // Past the group commit that writes the start records (listed once written, and a
    // written record outlives a SIGKILL): both calls in flight, and the quick call's end.
    bin.wait_listed("the start records and the quick call's end", |recs| {
        let started = |r: &&Value| r["outcome"] == "started" && r["decision_id"] != done_id.as_str();
        let ended = |r: &&Value| r["outcome"] == "completed" && r["decision_id"] == done_id.as_str();
        recs.iter().filter(started).count() >= 2 && recs.iter().any(|r| ended(&r))
    })
    .await;
    p.0.kill().unwrap(); // SIGKILL
    p.0.wait().unwrap();
    drop(stream);
    hang.abort();

    let p = bin.start().await;
    let recs = bin.records().await;
    let closed = closings(&recs);
    // The quick call has a `started` record only if it ran past a group-commit window; the two
    // still running at the kill had theirs made durable long before it.
    let quick_started = usize::from(closed.contains_key(&done_id));
    assert_eq!(closed.len(), 2 + quick_started, "the calls in flight were started: {recs:#?}");
    let done = recs.iter().filter(|r| r["decision_id"] == done_id && r["outcome"] != "started").collect::<Vec<_>>();
    assert_eq!(done.len(), 1, "{recs:#?}");
    assert_eq!(done[0]["outcome"], "completed");
    assert_eq!(closed[&stream_id]["outcome"], "outcome_unknown");
    let unknown: Vec<&Value> = closed.values().filter(|r| r["outcome"] == "outcome_unknown").collect();
    assert_eq!(unknown.len(), 2, "the stream and the unanswered call");
    assert!(unknown.iter().all(|r| r["agent"] == "main" && r["kind"] == "model_call" && r["actor"] == "system"));
    let v = get(&format!("{}/api/v1/audit/verify", bin.control), &bearer(ADMIN)).await.json();
    assert_eq!(v["ok"], true, "{v}");

    // Variant: killed again with another call in flight; the earlier calls are not closed a
    // second time, the new one is.
    let mut stream = post_json_streaming(&chat_url, &[], &chat("SLOW again", true)).await;
    stream.next_chunk().await.unwrap();
    let again_id = stream.headers["x-clawbutler-decision-id"].to_str().unwrap().to_string();
    bin.wait_listed("the new call's start record", |recs| {
        recs.iter().any(|r| r["outcome"] == "started" && r["decision_id"] == again_id.as_str())
    })
    .await;
    drop(p); // SIGKILL
    drop(stream);
    let _p = bin.start().await;
    let recs = bin.records().await;
    let closed = closings(&recs);
    assert_eq!(closed.len(), 3 + quick_started);
    assert_eq!(closed[&again_id]["outcome"], "outcome_unknown");
    assert_eq!(recs.iter().filter(|r| r["outcome"] == "outcome_unknown").count(), 3);
}
