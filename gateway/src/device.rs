//! Ed25519 device identity for gateways off loopback (reference §2.5). The key's 32-byte seed
//! lives in the data dir (mode 0600); the device token the gateway issues after pairing is
//! persisted beside it and used on later connects.

use std::path::{Path, PathBuf};

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::GatewayError;

/// A loaded device key.
pub struct Device {
    key: SigningKey,
    token_path: PathBuf,
}

/// What goes into `connect.params.device`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceProof {
    pub id: String,
    #[serde(rename = "publicKey")]
    pub public_key: String,
    pub signature: String,
    #[serde(rename = "signedAt")]
    pub signed_at: u64,
    pub nonce: String,
}

/// The fields of the connect request that the signature covers.
pub struct SignInput<'a> {
    pub client_id: &'a str,
    pub client_mode: &'a str,
    pub role: &'a str,
    pub scopes: &'a [&'a str],
    pub signed_at: u64,
    /// `auth.token`, else `auth.deviceToken`, else empty.
    pub token: &'a str,
    pub nonce: &'a str,
    pub platform: &'a str,
    pub device_family: &'a str,
}

#[derive(Serialize, Deserialize)]
struct StoredToken {
    device_id: String,
    token: String,
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Device {
    /// Load the key at `path`, creating it (random seed, mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Device, GatewayError> {
        let io = |e: std::io::Error| GatewayError::Device(format!("{}: {e}", path.display()));
        let seed: [u8; 32] = match std::fs::read_to_string(path) {
            Ok(text) => hex::decode(text.trim())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| GatewayError::Device(format!("{}: not a 32-byte hex seed", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed).map_err(|e| GatewayError::Device(format!("randomness: {e}")))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, hex::encode(seed).as_bytes()).map_err(io)?;
                seed
            }
            Err(e) => return Err(io(e)),
        };
        let token_path = path.with_extension("token.json");
        Ok(Device { key: SigningKey::from_bytes(&seed), token_path })
    }

    /// hex(sha256(raw public key)).
    pub fn id(&self) -> String {
        hex::encode(Sha256::digest(self.key.verifying_key().as_bytes()))
    }

    /// The v3 payload string the gateway verifies.
    pub fn payload(&self, s: &SignInput<'_>) -> String {
        format!(
            "v3|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.id(),
            s.client_id,
            s.client_mode,
            s.role,
            s.scopes.join(","),
            s.signed_at,
            s.token,
            s.nonce,
            s.platform.to_lowercase(),
            s.device_family.to_lowercase()
        )
    }

    /// Sign the challenge for this connect.
    pub fn prove(&self, s: &SignInput<'_>) -> DeviceProof {
        let sig = self.key.sign(self.payload(s).as_bytes());
        DeviceProof {
            id: self.id(),
            public_key: b64url(self.key.verifying_key().as_bytes()),
            signature: b64url(&sig.to_bytes()),
            signed_at: s.signed_at,
            nonce: s.nonce.to_string(),
        }
    }

    /// The device token issued earlier for this key, if any.
    pub fn stored_token(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.token_path).ok()?;
        let t: StoredToken = serde_json::from_str(&text).ok()?;
        (t.device_id == self.id()).then_some(t.token)
    }

    /// Persist a device token from `hello-ok.auth.deviceToken`.
    pub fn store_token(&self, token: &str) -> Result<(), GatewayError> {
        let body = serde_json::to_vec(&StoredToken { device_id: self.id(), token: token.to_string() })
            .map_err(|e| GatewayError::Device(e.to_string()))?;
        write_private(&self.token_path, &body)
            .map_err(|e| GatewayError::Device(format!("{}: {e}", self.token_path.display())))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    #[test]
    fn key_is_stable_and_signature_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw/device.key");
        let d = Device::load_or_create(&path).unwrap();
        let d2 = Device::load_or_create(&path).unwrap();
        assert_eq!(d.id(), d2.id(), "same key on reload");
        assert_eq!(d.id().len(), 64);
        let scopes = ["operator.read", "operator.admin"];
        let input = SignInput {
            client_id: "gateway-client",
            client_mode: "backend",
            role: "operator",
            scopes: &scopes,
            signed_at: 1795473282813,
            token: "tok",
            nonce: "n-1",
            platform: "Linux",
            device_family: "",
        };
        let payload = d.payload(&input);
        assert_eq!(
            payload,
            format!(
                "v3|{}|gateway-client|backend|operator|operator.read,operator.admin|1795473282813|tok|n-1|linux|",
                d.id()
            )
        );
        let proof = d.prove(&input);
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let pk: [u8; 32] = engine.decode(&proof.public_key).unwrap().try_into().unwrap();
        let sig: [u8; 64] = engine.decode(&proof.signature).unwrap().try_into().unwrap();
        let vk = VerifyingKey::from_bytes(&pk).unwrap();
        vk.verify(payload.as_bytes(), &Signature::from_bytes(&sig)).unwrap();
        assert_eq!(proof.id, hex::encode(Sha256::digest(pk)));
        assert!(d.stored_token().is_none());
        d.store_token("dt-1").unwrap();
        assert_eq!(d2.stored_token().as_deref(), Some("dt-1"));
    }
}
