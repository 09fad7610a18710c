//! Notifications in a real browser (Debian's headless Chromium over WebDriver, the helpers of
//! `ui_browser`): the action link from a Slack message opens the approval in the console after
//! sign-in, where it is approved and the held call completes; the same link then shows the
//! "already used" page. On the Notifications page an admin sees the config route, creates a
//! route, test-sends it (the receiver gets it) and sees the deliveries in the log. Screenshots
//! land in `target/ui-artifacts/`.

use std::time::Duration;

use serde_json::json;
use testkit::http::get;
use testkit::rig::{bearer, ADMIN};

use super::receiver::Receiver;
use super::rig;
use crate::ui_browser::{browser_paths, Browser, Driver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_link_opens_the_approval_after_sign_in_and_the_page_manages_routes() {
    let Some((chromium, driver_bin)) = browser_paths() else { return };
    let recv = Receiver::ok().await;
    let rig = rig(&format!(
        "[notify]\n[[notify.channels]]\nname = \"team\"\nkind = \"slack\"\nurl = \"{}\"\n\
         [[notify.routes]]\nid = \"approvers\"\nevents = [\"approval.created\"]\nchannels = [\"team\"]\nburst_ms = 0\n",
        recv.url("/slack")
    ))
    .await;
    let held = rig.call("main", "needs-approval-browser", "hello");
    let a = rig.wait_pending("main", 1).await.remove(0);
    let id = a["id"].as_str().unwrap().to_string();
    let msg = recv.next(Duration::from_secs(5)).await.expect("the Slack message");
    let link = msg.json()["blocks"][2]["elements"][0]["url"].as_str().unwrap().to_string();
    assert!(link.starts_with(&format!("http://{}/n/", rig.sidecar.control_addr)), "{link}");

    let driver = Driver::start(&driver_bin).await;
    let b = Browser::open(&driver, &chromium).await;
    // Not signed in: the link is used and leads to the console, which asks for a token first.
    b.goto(&link).await;
    b.wait_js("redirect to the approval", &format!("location.hash === '#/approvals/{id}'")).await;
    b.type_into("[data-testid=token]", ADMIN).await;
    b.click("[data-testid=signin]").await;
    b.find("[data-testid=focus] [data-testid=approval]").await;
    let card = b.text("[data-testid=focus] [data-testid=approval]").await;
    assert!(card.contains("needs-approval-browser") && card.contains("@main"), "{card}");
    b.screenshot("notify-link-opened.png").await;
    b.click("[data-testid=focus] [data-testid=allow-once]").await;
    let r = tokio::time::timeout(Duration::from_secs(15), held).await.expect("the held call completes").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // The same link again: refused, and it says why.
    b.goto(&link).await;
    b.find("[data-testid=link-refused]").await;
    assert_eq!(
        b.js("return document.querySelector('[data-testid=link-refused]').dataset.reason", json!([])).await,
        "used"
    );
    assert!(b.text("[data-testid=link-refused]").await.contains("already used"));
    b.screenshot("notify-link-used.png").await;

    // The Notifications page: the config route, a new route made here, a test send, the log.
    b.goto(&format!("http://{}/#/notifications", rig.sidecar.control_addr)).await;
    b.find("[data-testid=route][data-id=approvers]").await;
    assert!(b.text("[data-testid=route][data-id=approvers]").await.contains("approval.created"));
    b.click("[data-testid=route-new]").await;
    b.type_into("[data-testid=route-id]", "ui-made").await;
    b.type_into("[data-testid=route-events]", "approval.*, budget.open").await;
    b.click("[data-testid=route-channel-team]").await;
    b.click("[data-testid=route-save]").await;
    b.find("[data-testid=route][data-id=ui-made]").await;
    let made = get(&rig.control("/api/v1/notifications/routes/ui-made"), &bearer(ADMIN)).await.json();
    assert_eq!((made["source"].as_str(), made["channels"].clone()), (Some("api"), json!(["team"])), "{made}");
    assert_eq!(made["events"], json!(["approval.*", "budget.open"]));
    b.click("[data-testid=route][data-id=ui-made] [data-testid=route-test]").await;
    let t = recv.next(Duration::from_secs(5)).await.expect("the test message");
    assert!(t.json()["text"].as_str().unwrap().contains("Test message for route 'ui-made'"), "{}", t.text());
    b.wait_js(
        "deliveries in the log",
        "document.querySelectorAll('[data-testid=delivery][data-status=delivered]').length >= 2",
    )
    .await;
    b.screenshot("notify-page.png").await;
    b.close().await;
}
