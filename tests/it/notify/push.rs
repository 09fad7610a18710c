//! Web Push to a push service on loopback, the way a browser subscription receives it: the
//! test plays the browser (its own P-256 key pair and auth secret, registered through the API)
//! and the push service (a receiver answering 201). It checks the VAPID `Authorization` (an
//! ES256 JWT whose key is the one the API publishes, `aud` the endpoint's origin, `exp` within
//! 24 h) and decrypts the body per RFC 8291 / RFC 8188 with the subscription's private key,
//! written out here from the RFCs (not with the crate the sidecar encrypts with). A
//! subscription the push service says is gone (410) is removed.

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{json, Value};
use sha2::Sha256;
use testkit::http::{get, post_json};
use testkit::rig::{bearer, ADMIN};

use super::receiver::Receiver;
use super::{rig, wait_deliveries, LEAKED_KEY};

/// RFC 8291 section 3 and RFC 8188: the user agent's side.
fn decrypt(body: &[u8], ua_secret: &p256::SecretKey, auth: &[u8; 16]) -> Vec<u8> {
    // Header: salt (16) | rs (4, big endian) | idlen (1) | keyid (the sender's public key).
    let salt = &body[..16];
    let rs = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
    let idlen = body[20] as usize;
    assert_eq!(idlen, 65, "keyid is the uncompressed application-server public key");
    let as_public = p256::PublicKey::from_sec1_bytes(&body[21..21 + idlen]).unwrap();
    let record = &body[21 + idlen..];
    assert!(record.len() <= rs, "one record");
    let ua_public = ua_secret.public_key().to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
    // IKM = HKDF(salt = auth, ikm = ecdh, info = "WebPush: info" 0x00 ua_public as_public, 32)
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(ua_public.as_bytes());
    info.extend_from_slice(as_public.to_encoded_point(false).as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes()).expand(&info, &mut ikm).unwrap();
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).unwrap();
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).unwrap();
    let plain = Aes128Gcm::new_from_slice(&cek).unwrap().decrypt(Nonce::from_slice(&nonce), record).unwrap();
    // The last record ends with the delimiter 0x02, then zero padding.
    let end = plain.iter().rposition(|b| *b != 0).unwrap();
    assert_eq!(plain[end], 2, "last-record delimiter");
    plain[..end].to_vec()
}

/// Check `vapid t=<jwt>, k=<key>`: the key is the published one, the JWT verifies under it,
/// `aud` is the push service's origin.
fn check_vapid(header: &str, published: &str, origin: &str) -> Value {
    let (jwt, k) = header.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
    assert_eq!(k, published, "the VAPID key is the one the UI subscribes with");
    let vk = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
    vk.verify(input.as_bytes(), &sig).expect("the VAPID JWT verifies");
    let (h, c) = input.split_once('.').unwrap();
    let head: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    assert_eq!(head["alg"], "ES256");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap();
    assert_eq!(claims["aud"], origin);
    let exp = claims["exp"].as_i64().unwrap() - chrono::Utc::now().timestamp();
    assert!(exp > 0 && exp <= 24 * 3600, "exp {exp} s ahead (RFC 8292: at most 24 h)");
    claims
}

#[tokio::test]
async fn a_push_reaches_the_subscribed_browser_encrypted_and_vapid_signed() {
    let service = Receiver::start(Arc::new(|_| (201, String::new()))).await;
    let rig = rig("[notify]\n[notify.push]\nallow_loopback_http = true\nsubject = \"mailto:ops@example.test\"\n\
         [[notify.channels]]\nname = \"browser\"\nkind = \"push\"\n\
         [[notify.routes]]\nid = \"push\"\nevents = [\"approval.created\"]\nchannels = [\"browser\"]\n")
    .await;
    let approver = rig.token("approver", "april").await;
    let published = get(&rig.control("/api/v1/notifications"), &bearer(&approver)).await.json()["push_public_key"]
        .as_str()
        .unwrap()
        .to_string();

    // The "browser": a key pair and an auth secret, registered as the UI's push.js does.
    let ua_secret = p256::SecretKey::from_slice(&<Sha256 as sha2::Digest>::digest(b"april's phone")).unwrap();
    let auth = [7u8, 1, 4, 9, 2, 6, 5, 3, 8, 0, 11, 13, 12, 15, 14, 10];
    let sub = json!({
        "endpoint": service.url("/push/v2/device-abc"),
        "keys": {
            "p256dh": URL_SAFE_NO_PAD.encode(ua_secret.public_key().to_encoded_point(false).as_bytes()),
            "auth": URL_SAFE_NO_PAD.encode(auth),
        },
        "label": "April's phone",
    });
    let r = post_json(&rig.control("/api/v1/notifications/push/subscriptions"), &bearer(&approver), &sub).await;
    assert_eq!(r.status, 201, "{}", r.text());

    let _held = rig.call("main", "needs-approval-push", &format!("use {LEAKED_KEY}"));
    let a = rig.wait_pending("main", 1).await.remove(0);
    let g = service.next(Duration::from_secs(5)).await.expect("a push request");
    assert_eq!((g.method.as_str(), g.path.as_str()), ("POST", "/push/v2/device-abc"));
    assert_eq!(g.header("content-encoding"), Some("aes128gcm"));
    assert_eq!(g.header("urgency"), Some("high"), "an approval is urgent");
    assert!(g.header("ttl").is_some_and(|t| t.parse::<u32>().is_ok()));
    let claims = check_vapid(g.header("authorization").unwrap(), &published, &service.url(""));
    assert_eq!(claims["sub"], "mailto:ops@example.test");
    assert!(!g.text().contains("needs-approval-push"), "the body is encrypted");

    let plain = decrypt(&g.body, &ua_secret, &auth);
    let msg: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(msg["event"], "approval.created");
    assert_eq!(msg["tag"], a["id"], "one notification per approval on the device");
    assert!(msg["title"].as_str().unwrap().starts_with("[HIGH] "), "{msg}");
    assert!(msg["body"].as_str().unwrap().contains("needs-approval-push"), "{msg}");
    assert!(!String::from_utf8_lossy(&plain).contains("Zq3vT8wLm2Xc9Rk4"), "{msg}");
    let url = msg["url"].as_str().unwrap();
    let (status, loc, _) = super::open_link(&rig, &super::link_token(url)).await;
    assert_eq!((status, loc), (303, Some(format!("/#/approvals/{}", a["id"].as_str().unwrap()))));
    let log = wait_deliveries(&rig, "channel=browser", 1).await;
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["last_error"], "1 of 1 devices", "{log:#?}");

    // The push service says the subscription is gone: it is removed, and nobody is left.
    service.script(&[410]);
    let _second = rig.call("other", "needs-approval-push", "again");
    assert_eq!(service.next(Duration::from_secs(5)).await.unwrap().status, 410);
    let subs = get(&rig.control("/api/v1/notifications/push/subscriptions"), &bearer(&approver)).await;
    let mut left = subs.json()["items"].as_array().unwrap().len();
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = get(&rig.control("/api/v1/notifications/push/subscriptions"), &bearer(&approver)).await.json()["items"]
            .as_array()
            .unwrap()
            .len();
    }
    assert_eq!(left, 0, "a 410 removes the subscription");
    let all = get(&rig.control("/api/v1/notifications/push/subscriptions?all=true"), &bearer(ADMIN)).await;
    assert_eq!(all.json()["items"].as_array().unwrap().len(), 0);
}
