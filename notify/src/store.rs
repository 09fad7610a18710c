//! Per-user state: Web Push subscriptions (one per browser or phone, owned by the token that
//! registered it) and notification preferences (per token, per channel).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use decision::Risk;
use serde::{Deserialize, Serialize};

use crate::error::NotifyError;
use crate::event::EventKind;

/// What a browser's `PushSubscription.toJSON()` gives, plus an optional label.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// `expirationTime` from the browser (ignored; push services say 404/410 when gone).
    #[serde(default, rename = "expirationTime")]
    pub expiration_time: Option<serde_json::Value>,
    /// A name for the device ("Alice's phone").
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key (uncompressed point, base64url).
    pub p256dh: String,
    /// The 16-byte authentication secret (base64url).
    pub auth: String,
}

/// A stored subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    /// The token name that registered it: whose preferences apply.
    pub owner: String,
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    pub label: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub last_ok_at: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Subscription {
    /// The endpoint's origin only (the rest of a push URL is a capability: not shown).
    pub fn endpoint_origin(&self) -> String {
        match self.endpoint.parse::<http::Uri>() {
            Ok(u) => {
                format!("{}://{}", u.scheme_str().unwrap_or("?"), u.authority().map(|a| a.as_str()).unwrap_or("?"))
            }
            Err(_) => "?".into(),
        }
    }

    /// The API's view: the endpoint reduced to its origin, no keys.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "owner": self.owner, "endpoint_origin": self.endpoint_origin(), "label": self.label,
            "created_at": self.created_at, "last_ok_at": self.last_ok_at, "last_error": self.last_error,
        })
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=').replace('+', "-").replace('/', "_")).ok()
}

/// Check a subscription from a browser: an HTTPS endpoint (or loopback HTTP when allowed), a
/// valid P-256 point and a 16-byte secret.
pub fn check_subscription(s: &SubscriptionInput, allow_loopback_http: bool) -> Result<(), NotifyError> {
    let bad = |m: &str| Err(NotifyError::Invalid(m.to_string()));
    if s.endpoint.len() > 2048 {
        return bad("endpoint: at most 2048 characters");
    }
    let Ok(u) = s.endpoint.parse::<http::Uri>() else { return bad("endpoint: not a URL") };
    let host = u.host().unwrap_or("");
    let loopback = host == "localhost"
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match u.scheme_str() {
        Some("https") if !host.is_empty() => {}
        Some("http") if allow_loopback_http && loopback => {}
        _ => return bad("endpoint: a push service URL must be https://"),
    }
    match b64(&s.keys.p256dh) {
        Some(k) if k.len() == 65 && p256::PublicKey::from_sec1_bytes(&k).is_ok() => {}
        _ => return bad("keys.p256dh: not a P-256 public key (base64url, 65 bytes)"),
    }
    if b64(&s.keys.auth).map(|a| a.len()) != Some(16) {
        return bad("keys.auth: not a 16-byte secret (base64url)");
    }
    if s.label.as_ref().is_some_and(|l| l.chars().count() > 100) {
        return bad("label: at most 100 characters");
    }
    Ok(())
}

/// Decoded keys of a subscription: (public key, auth secret).
pub fn decode_keys(k: &SubscriptionKeys) -> Option<(p256::PublicKey, [u8; 16])> {
    let pk = p256::PublicKey::from_sec1_bytes(&b64(&k.p256dh)?).ok()?;
    let auth: [u8; 16] = b64(&k.auth)?.try_into().ok()?;
    Some((pk, auth))
}

/// Web Push subscriptions.
#[derive(Clone)]
pub struct PushStore {
    tree: sled::Tree,
}

fn store_err(e: impl std::fmt::Display) -> NotifyError {
    NotifyError::Store(e.to_string())
}

impl PushStore {
    pub fn new(tree: sled::Tree) -> PushStore {
        PushStore { tree }
    }

    pub fn all(&self) -> Vec<Subscription> {
        self.tree.iter().values().filter_map(|v| v.ok()).filter_map(|v| serde_json::from_slice(&v).ok()).collect()
    }

    pub fn get(&self, id: &str) -> Option<Subscription> {
        self.tree.get(id.as_bytes()).ok().flatten().and_then(|v| serde_json::from_slice(&v).ok())
    }

    pub fn put(&self, s: &Subscription) -> Result<(), NotifyError> {
        self.tree.insert(s.id.as_bytes(), serde_json::to_vec(s).map_err(store_err)?).map_err(store_err)?;
        self.tree.flush().map_err(store_err)?;
        Ok(())
    }

    /// Add (or, for an endpoint already registered, replace) a subscription for `owner`.
    pub fn add(
        &self,
        owner: &str,
        input: SubscriptionInput,
        max_per_owner: usize,
    ) -> Result<Subscription, NotifyError> {
        let all = self.all();
        if let Some(old) = all.iter().find(|s| s.endpoint == input.endpoint) {
            self.remove(&old.id)?;
        } else if all.iter().filter(|s| s.owner == owner).count() >= max_per_owner {
            return Err(NotifyError::Invalid(format!(
                "this token already has {max_per_owner} push subscriptions; remove one first"
            )));
        }
        let s = Subscription {
            id: uuid::Uuid::now_v7().to_string(),
            owner: owner.to_string(),
            endpoint: input.endpoint,
            keys: input.keys,
            label: input.label,
            created_at: now(),
            last_ok_at: None,
            last_error: None,
        };
        self.put(&s)?;
        Ok(s)
    }

    pub fn remove(&self, id: &str) -> Result<bool, NotifyError> {
        let had = self.tree.remove(id.as_bytes()).map_err(store_err)?.is_some();
        self.tree.flush().map_err(store_err)?;
        Ok(had)
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A token's wishes for one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPref {
    /// Off: nothing from this channel reaches this person.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Only events at this risk or above.
    #[serde(default = "low")]
    pub min_risk: Risk,
    /// Only these event kinds (names or `prefix.*`; empty: all the routes send).
    #[serde(default)]
    pub events: Vec<String>,
}

fn yes() -> bool {
    true
}

fn low() -> Risk {
    Risk::Low
}

impl ChannelPref {
    /// Whether an event of `kind` and `risk` is wanted.
    pub fn wants(&self, kind: EventKind, risk: Risk) -> bool {
        if kind == EventKind::Test {
            return self.enabled;
        }
        self.enabled
            && risk >= self.min_risk
            && (self.events.is_empty()
                || self.events.iter().any(|p| {
                    p == kind.as_str()
                        || p.strip_suffix(".*").is_some_and(|pre| kind.as_str().starts_with(&format!("{pre}.")))
                }))
    }
}

/// One token's preferences, by channel name (a channel not listed: everything the routes send).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelPref>,
}

impl Preferences {
    pub fn wants(&self, channel: &str, kind: EventKind, risk: Risk) -> bool {
        self.channels.get(channel).is_none_or(|p| p.wants(kind, risk))
    }
}

/// Preferences by token name.
#[derive(Clone)]
pub struct PrefStore {
    tree: sled::Tree,
}

impl PrefStore {
    pub fn new(tree: sled::Tree) -> PrefStore {
        PrefStore { tree }
    }

    pub fn get(&self, owner: &str) -> Preferences {
        self.tree.get(owner.as_bytes()).ok().flatten().and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default()
    }

    pub fn put(&self, owner: &str, p: &Preferences) -> Result<(), NotifyError> {
        self.tree.insert(owner.as_bytes(), serde_json::to_vec(p).map_err(store_err)?).map_err(store_err)?;
        self.tree.flush().map_err(store_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_filter_by_risk_and_kind() {
        let p = ChannelPref { enabled: true, min_risk: Risk::High, events: vec!["approval.*".into()] };
        assert!(p.wants(EventKind::ApprovalCreated, Risk::High));
        assert!(!p.wants(EventKind::ApprovalCreated, Risk::Medium));
        assert!(!p.wants(EventKind::BudgetOpen, Risk::Critical));
        let off = ChannelPref { enabled: false, ..p };
        assert!(!off.wants(EventKind::Test, Risk::Low));
        assert!(Preferences::default().wants("any", EventKind::GatewayDown, Risk::Low));
    }

    #[test]
    fn subscriptions_must_be_https_with_real_keys() {
        let key = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let p256dh = URL_SAFE_NO_PAD.encode(key.public_key().as_affine().to_encoded_point(false).as_bytes());
        let mk = |endpoint: &str, auth: &str| SubscriptionInput {
            endpoint: endpoint.into(),
            keys: SubscriptionKeys { p256dh: p256dh.clone(), auth: auth.into() },
            expiration_time: None,
            label: None,
        };
        let auth = URL_SAFE_NO_PAD.encode([1u8; 16]);
        assert!(check_subscription(&mk("https://push.example/x", &auth), false).is_ok());
        assert!(check_subscription(&mk("http://push.example/x", &auth), true).is_err());
        assert!(check_subscription(&mk("http://127.0.0.1:9/x", &auth), false).is_err());
        assert!(check_subscription(&mk("http://127.0.0.1:9/x", &auth), true).is_ok());
        assert!(check_subscription(&mk("https://push.example/x", "short"), false).is_err());
    }
}
