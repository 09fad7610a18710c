//! VAPID (RFC 8292): the application server's P-256 key, generated on first start and kept in
//! `notify-vapid.key` (the 32-byte private scalar, base64url, 0600) in the data dir, and the
//! ES256 JWT that signs every push request (`Authorization: vapid t=<jwt>, k=<public key>`).

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;

/// The server's VAPID key.
#[derive(Clone)]
pub struct VapidKey {
    signing: SigningKey,
    /// Uncompressed public point (65 bytes), base64url: the browser's `applicationServerKey`.
    pub public_b64: String,
}

impl VapidKey {
    /// Load the key file, or create it.
    pub fn load_or_create(path: &Path) -> std::io::Result<VapidKey> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {m}", path.display()));
        let secret = match std::fs::read_to_string(path) {
            Ok(text) => {
                let raw = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad("not base64url"))?;
                p256::SecretKey::from_slice(&raw).map_err(|_| bad("not a P-256 private key"))?
            }
            Err(_) => {
                let secret = loop {
                    let mut b = [0u8; 32];
                    getrandom::getrandom(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
                    // A random 32-byte string is a valid scalar except with negligible chance.
                    if let Ok(k) = p256::SecretKey::from_slice(&b) {
                        break k;
                    }
                };
                crate::link::write_private(path, URL_SAFE_NO_PAD.encode(secret.to_bytes()).as_bytes())?;
                secret
            }
        };
        let public = secret.public_key().as_affine().to_encoded_point(false);
        Ok(VapidKey { signing: SigningKey::from(&secret), public_b64: URL_SAFE_NO_PAD.encode(public.as_bytes()) })
    }

    /// The `Authorization` header value for a push to `endpoint` (its origin is the JWT's
    /// `aud`), valid for 12 hours.
    pub fn authorization(&self, endpoint: &http::Uri, subject: &str, now_unix: i64) -> Option<String> {
        let origin = format!("{}://{}", endpoint.scheme_str()?, endpoint.authority()?.as_str());
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({"aud": origin, "exp": now_unix + 12 * 3600, "sub": subject});
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let sig: Signature = self.signing.sign(signing_input.as_bytes());
        let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        Some(format!("vapid t={jwt}, k={}", self.public_b64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    #[test]
    fn the_jwt_verifies_with_the_public_key() {
        let d = tempfile::tempdir().unwrap();
        let k = VapidKey::load_or_create(&d.path().join("v")).unwrap();
        assert_eq!(VapidKey::load_or_create(&d.path().join("v")).unwrap().public_b64, k.public_b64);
        let auth = k.authorization(&"https://push.example.net:8443/x/y".parse().unwrap(), "mailto:a@b", 100).unwrap();
        let (t, key) = auth.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
        let vk = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(key).unwrap()).unwrap();
        let (input, sig) = t.rsplit_once('.').unwrap();
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
        vk.verify(input.as_bytes(), &sig).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        assert_eq!(claims["exp"], 100 + 12 * 3600);
    }
}
