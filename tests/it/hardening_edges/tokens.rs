//! Class 7 (low): token names accepted control characters, HTML and duplicates (a viewer
//! could be named like the admin). Now names are checked (printable, 1 to 64 characters, no
//! markup, no invisible formatting) and unique without case, and the answer that carries a
//! new token's secret says `Cache-Control: no-store`.

use serde_json::json;
use testkit::http::{get, post_json};
use testkit::rig::{bearer, Rig, ADMIN};

#[tokio::test]
async fn token_names_are_checked_unique_and_the_secret_is_never_cached() {
    let rig = Rig::start("").await;
    let url = rig.control("/api/v1/tokens");
    let create = |name: serde_json::Value| {
        let url = url.clone();
        async move { post_json(&url, &bearer(ADMIN), &json!({"name": name, "role": "viewer"})).await }
    };
    let ok = create(json!("Ops viewer")).await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    // Names that would lie in a list, a log line or the audit log.
    for bad in [
        json!("seeded\u{0}-admin"),
        json!("line\nbreak"),
        json!("bell\u{7}"),
        json!("<img src=x onerror=alert(1)>"),
        json!("Tom & Jerry"),
        json!("seeded-admin\u{202E}"),
        json!("zero\u{200B}width"),
        json!(" padded"),
        json!(""),
        json!("x".repeat(65)),
    ] {
        let r = create(bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(r.json()["detail"].as_str().unwrap().starts_with("token name"), "{}", r.text());
    }
    // The admin's own name, in any case, and a name taken a moment ago: 409.
    for dup in ["seeded-admin", "SEEDED-ADMIN", "ops viewer"] {
        let r = create(json!(dup)).await;
        assert_eq!(r.status, 409, "{dup}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let list = get(&url, &bearer(ADMIN)).await.json();
    let mut names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, vec!["Ops viewer", "seeded-admin"], "only the valid, unique names exist");
}
