//! E-mail over SMTP to a real server: Python's `aiosmtpd` on 127.0.0.1 (installed by
//! `scripts/install-smtp.sh`, which this test runs), with STARTTLS required and AUTH required
//! after it, under a CA the test server makes (the channel trusts it through `ca_file`). A
//! held call sends the approval e-mail; the test reads it as the server parsed it and opens
//! its action link, which works once. A wrong password is a failed delivery, not a hang.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::{assert_single_use, link_token, rig, secret_file, wait_deliveries, LEAKED_KEY};

/// A running `smtp_server.py`: its port, CA file, and the messages it accepted.
struct Smtp {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    ca: String,
    mail: mpsc::Receiver<Value>,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Make sure aiosmtpd is there (install it if not); `None` (skip) only without
/// `CLAWBUTLER_E2E=1`.
fn prerequisites() -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = std::env::var("CLAWBUTLER_SMTP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let out = Command::new("bash").arg(root.join("scripts/install-smtp.sh")).output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    if ok {
        return Some(py);
    }
    let why = match out {
        Ok(o) => String::from_utf8_lossy(&o.stderr).to_string(),
        Err(e) => e.to_string(),
    };
    let msg = format!("notify::email: scripts/install-smtp.sh could not provide aiosmtpd: {why}");
    assert!(std::env::var("CLAWBUTLER_E2E").as_deref() != Ok("1"), "{msg}; CLAWBUTLER_E2E=1 makes this a failure");
    eprintln!("SKIPPED {msg}");
    None
}

fn start_smtp(py: &str, dir: &Path, user: &str, password: &str) -> Smtp {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/notify/smtp_server.py");
    let mut child = Command::new(py)
        .arg(script)
        .arg(dir)
        .arg(user)
        .arg(password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start smtp_server.py");
    let stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("smtp_server.py said nothing").unwrap();
    let port: u16 = first.strip_prefix("READY ").unwrap_or_else(|| panic!("smtp_server.py: {first}")).parse().unwrap();
    let (tx, mail) = mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                let _ = tx.send(v);
            }
        }
    });
    Smtp { child, _stdin: stdin, port, ca: dir.join("ca.pem").display().to_string(), mail }
}

fn channel(name: &str, s: &Smtp, user: &str, pw_file: &str) -> String {
    format!(
        r#"[[notify.channels]]
name = "{name}"
kind = "email"
host = "127.0.0.1"
port = {}
tls = "starttls"
username = "{user}"
password_file = "{pw_file}"
ca_file = "{}"
from = "ClawButler <butler@example.test>"
to = ["Approver One <approver@example.test>", "oncall@example.test"]
"#,
        s.port, s.ca
    )
}

#[tokio::test]
async fn an_approval_email_over_starttls_with_auth_carries_a_single_use_link() {
    let Some(py) = prerequisites() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let smtp = start_smtp(&py, tmp.path(), "butler", "s3cret-smtp-pw");
    let good = secret_file(tmp.path(), "smtp.pw", "s3cret-smtp-pw");
    let bad = secret_file(tmp.path(), "smtp-wrong.pw", "not-the-password");
    let rig = rig(&format!(
        "[notify]\nretry_max = 1\nretry_initial_ms = 100\n{}{}[[notify.routes]]\nid = \"mail\"\nevents = [\"approval.created\"]\nchannels = [\"mail\"]\n[[notify.routes]]\nid = \"bad-mail\"\nevents = [\"test\"]\nchannels = [\"wrong-password\"]\n",
        channel("mail", &smtp, "butler", &good),
        channel("wrong-password", &smtp, "butler", &bad)
    ))
    .await;

    let _held = rig.call("main", "needs-approval-mail", &format!("Rotate {LEAKED_KEY} now"));
    let a = rig.wait_pending("main", 1).await.remove(0);
    let id = a["id"].as_str().unwrap();
    let m = tokio::task::spawn_blocking(move || smtp.mail.recv_timeout(Duration::from_secs(15)).map(|m| (m, smtp)))
        .await
        .unwrap();
    let (m, _smtp) = m.expect("the SMTP server received the approval e-mail");
    assert_eq!((m["tls"].as_bool(), m["authenticated"].as_bool()), (Some(true), Some(true)), "{m}");
    assert_eq!(m["login"], "butler");
    assert_eq!(m["mail_from"], "butler@example.test");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["approver@example.test", "oncall@example.test"]));
    assert_eq!(m["content_type"], "text/plain");
    let subject = m["subject"].as_str().unwrap();
    assert!(subject.starts_with("[HIGH] ") && subject.contains("main"), "{subject}");
    let text = m["text"].as_str().unwrap();
    for want in ["Agent: main", "needs-approval-mail", "Cost estimate:", "Time left:", "the link works once"] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains("Zq3vT8wLm2Xc9Rk4") && !subject.contains("Zq3vT8wLm2Xc9Rk4"), "{text}");
    let link = text.split_whitespace().find(|w| w.contains("/n/")).expect("an action link in the e-mail");
    assert!(link.starts_with(&format!("http://{}/n/", rig.sidecar.control_addr)), "{link}");
    assert_single_use(&rig, &link_token(link), id).await;
    let log = wait_deliveries(&rig, "channel=mail", 1).await;
    assert_eq!((log[0]["status"].as_str(), log[0]["attempts"].as_u64()), (Some("delivered"), Some(1)), "{log:#?}");

    // A wrong password: the server refuses AUTH for good, so one attempt, logged as failed.
    let r = testkit::http::post_json(
        &rig.control("/api/v1/notifications/routes/bad-mail/test"),
        &testkit::rig::bearer(testkit::rig::ADMIN),
        &Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let item = &r.json()["items"][0];
    assert_eq!(item["status"], "failed", "{item}");
    let err = item["last_error"].as_str().unwrap();
    assert!(err.contains("535") && !err.contains("not-the-password"), "{item}");
}

#[tokio::test]
async fn an_smtp_server_that_stops_answering_is_a_timed_out_attempt_not_a_stuck_delivery() {
    // A server that accepts and never greets: each attempt ends at timeout_ms, then retries.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let pw = secret_file(tmp.path(), "pw", "x");
    let rig = rig(&format!(
        "[notify]\ntimeout_ms = 400\nretry_max = 1\nretry_initial_ms = 100\n[[notify.channels]]\nname = \"mail\"\nkind = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"u\"\npassword_file = \"{pw}\"\nfrom = \"butler@example.test\"\nto = [\"a@example.test\"]\n[[notify.routes]]\nid = \"mail\"\nevents = [\"approval.created\"]\nchannels = [\"mail\"]\n"
    ))
    .await;
    let _held = rig.call("main", "needs-approval-1", "hello");
    rig.wait_pending("main", 1).await;
    let t0 = std::time::Instant::now();
    let log = wait_deliveries(&rig, "channel=mail&status=failed", 1).await;
    assert!(t0.elapsed() < Duration::from_secs(5), "gave up after {:?}", t0.elapsed());
    assert_eq!(log[0]["attempts"], 2, "{log:#?}");
    assert_eq!(log[0]["last_error"], "no answer within the timeout");
    hold.abort();
}
