//! Class 2 (medium): a POST trickling its body held a data connection forever (about 1,000
//! of them stopped all traffic), and the control listener had no header-read or idle timeout.
//! Now both listeners have a connection cap, a header-read timeout that is also the
//! keep-alive idle timeout, and a deadline for the whole body, answered with 408 in the
//! caller's shape.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use testkit::http::{get, post_json};
use testkit::rig::{bearer, chat, reply_text, Rig, SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{gauge, parse, read_all};

const CHAT: &str = "/a/main/fake/v1/chat/completions";
const MESSAGES: &str = "/a/main/anth/v1/messages";

/// Open a connection and send a POST head that promises 1,000 body bytes, and one of them.
async fn slow_post(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Keep trickling: one more body byte every `every`, as the attacker did.
fn trickle(mut s: TcpStream, every: Duration) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let (mut r, mut w) = s.split();
        let writer = async {
            loop {
                tokio::time::sleep(every).await;
                if w.write_all(b" ").await.is_err() {
                    // The server hung up; the reader has (or will have) its answer.
                    std::future::pending::<()>().await;
                }
            }
        };
        let mut out = Vec::new();
        let reader = async {
            let mut buf = [0u8; 4096];
            loop {
                match tokio::io::AsyncReadExt::read(&mut r, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::select! {
            _ = writer => {}
            _ = reader => {}
        }
        out
    })
}

/// The real binary, started the way the issue found it: under the usual soft open-file limit
/// of 1,024 (a shell's or a plain service's default), so 1,000 held connections used to run
/// it out of descriptors and stop all traffic.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_thousand_slow_bodies_do_not_stop_a_legitimate_call() {
    use std::io::BufRead;
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A body deadline long enough that every slow connection is still held during the call.
    let cfg = SidecarConfig::new(&dir.path().join("data"))
        .upstreams(&up.base_url())
        .table("[proxy]\nbody_read_timeout_ms = 60000");
    std::fs::write(dir.path().join("c.toml"), cfg.to_toml()).unwrap();
    let script = format!("ulimit -Sn 1024 && exec {} serve --config c.toml", env!("CARGO_BIN_EXE_clawbutler"));
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        .env_remove("CLAWBUTLER_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let child = Child(child);
    let ready = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(out).lines().map_while(Result::ok).find(|l| l.contains(" ready: "))
    })
    .await
    .unwrap()
    .expect("no ready line");
    let addr = |after: &str| -> SocketAddr {
        let rest = &ready[ready.find(after).unwrap() + after.len()..];
        rest.split([' ', ',']).next().unwrap().parse().unwrap()
    };
    let (data, control) = (addr("data http://"), addr("control + UI http://"));

    let mut slow = Vec::with_capacity(1000);
    for i in 0..1000 {
        slow.push(slow_post(data, if i % 2 == 0 { CHAT } else { MESSAGES }).await);
    }
    // They are really held open by the sidecar (accepted, not queued).
    let metric = "clawbutler_connections_open{listener=\"data\"}";
    let mut open = 0;
    for _ in 0..200 {
        let text = get(&format!("http://{control}/metrics"), &[]).await.text();
        open = text.lines().find_map(|l| l.strip_prefix(metric)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        if open >= 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open >= 1000, "only {open} slow connections open");
    let t0 = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        post_json(&format!("http://{data}{CHAT}"), &[], &chat("gpt-4o-mini", "still there?")),
    )
    .await
    .expect("a legitimate call hung behind 1,000 slow bodies");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!reply_text(&r.json()).is_empty());
    eprintln!("legitimate call with 1,000 slow bodies open: {:?}", t0.elapsed());
    // The control listener is as reachable.
    let who = get(&format!("http://{control}/api/v1/whoami"), &bearer(ADMIN)).await;
    assert_eq!(who.status, 200);
    drop(slow);
    drop(child);
}

#[tokio::test]
async fn a_trickled_body_gets_408_in_the_callers_shape_at_the_deadline() {
    let rig = Rig::start("[proxy]\nbody_read_timeout_ms = 1500").await;
    let t0 = Instant::now();
    let openai = trickle(slow_post(rig.sidecar.data_addr, CHAT).await, Duration::from_millis(300));
    let anthropic = trickle(slow_post(rig.sidecar.data_addr, MESSAGES).await, Duration::from_millis(300));
    let (o, a) = (openai.await.unwrap(), anthropic.await.unwrap());
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1400), "answered before the deadline: {took:?}");
    assert!(took < Duration::from_secs(15), "trickling kept the connection past its deadline: {took:?}");
    let o = parse(&o);
    assert_eq!(o.status, 408, "{o:?}");
    assert_eq!(o.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(o.json()["error"]["type"], "request_timeout", "{o:?}");
    assert!(o.json()["error"]["message"].as_str().unwrap().contains("1500 ms"));
    let a = parse(&a);
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.json()["type"], "error");
    assert_eq!(a.json()["error"]["type"], "request_timeout");
    assert_eq!(rig.up.request_count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn the_connection_cap_holds_and_waiting_clients_are_served_as_slots_free() {
    let rig = Rig::start("[proxy]\nmax_connections = 16\nbody_read_timeout_ms = 1000").await;
    let mut slow = Vec::new();
    for _ in 0..48 {
        slow.push(slow_post(rig.sidecar.data_addr, CHAT).await);
    }
    let call = tokio::spawn({
        let url = rig.url(CHAT);
        async move { post_json(&url, &[], &chat("gpt-4o-mini", "queued")).await }
    });
    // Never more than the cap open at once, while 49 clients want in.
    let mut peak = 0;
    while !call.is_finished() {
        peak = peak.max(gauge(&rig, "clawbutler_connections_open{listener=\"data\"}").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(peak <= 16, "{peak} connections open with a cap of 16");
    assert!(peak >= 8, "the cap was never approached ({peak}): the test did not load it");
    let r = tokio::time::timeout(Duration::from_secs(30), call).await.expect("the queued call never ran").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The slow ones waited their turn and then timed out, each with a 408.
    let answers = join_all(slow.iter_mut().map(|s| read_all(s, Duration::from_secs(30)))).await;
    for a in answers {
        assert_eq!(parse(&a).status, 408);
    }
}

#[tokio::test]
async fn the_control_listener_times_out_slow_bodies_silent_clients_and_idle_keep_alives() {
    let rig = Rig::builder()
        .server("control_header_read_timeout_ms = 600\ncontrol_body_read_timeout_ms = 600")
        .table("[proxy]\nheader_read_timeout_ms = 600")
        .start()
        .await;
    // A token POST whose body never completes: 408 problem+json.
    let mut s = TcpStream::connect(rig.sidecar.control_addr).await.unwrap();
    let head = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{",
        rig.sidecar.control_addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let r = parse(&read_all(&mut s, Duration::from_secs(10)).await);
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.header("content-type").as_deref(), Some("application/problem+json"));
    assert_eq!(r.json()["status"], 408);
    // A client that connects and says nothing, on either listener, is closed.
    for addr in [rig.sidecar.control_addr, rig.sidecar.data_addr] {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let got = read_all(&mut s, Duration::from_secs(10)).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        assert!(t0.elapsed() >= Duration::from_millis(500), "closed before the header timeout");
    }
    // An idle keep-alive connection is closed after the same time.
    let mut s = TcpStream::connect(rig.sidecar.control_addr).await.unwrap();
    s.write_all(format!("GET /livez HTTP/1.1\r\nhost: {}\r\n\r\n", rig.sidecar.control_addr).as_bytes()).await.unwrap();
    let got = read_all(&mut s, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got));
}
