//! Which key must have signed each checkpoint, across rotations (used by `verify`).
//!
//! The first checkpoint checked must be signed by a key the verifier was given (the trusted
//! set: `--pubkey`, or the keys stored next to the log). A rotation checkpoint (`next_key`),
//! signed by the key in force, hands over to the key it names; from then on only that key is
//! accepted, so a checkpoint signed with a retired key after its retirement is refused, and a
//! key no rotation introduced is refused even if it is in the trusted set.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::Checkpoint;
use crate::keys;

/// See the module docs.
pub(crate) struct KeyChain<'a> {
    trusted: &'a [VerifyingKey],
    active: Option<(VerifyingKey, String)>,
    /// Retired key id -> the rotation checkpoint that retired it.
    retired: BTreeMap<String, u64>,
    /// Key ids in the order they signed.
    pub used: Vec<String>,
}

impl<'a> KeyChain<'a> {
    pub fn new(trusted: &'a [VerifyingKey]) -> Self {
        KeyChain { trusted, active: None, retired: BTreeMap::new(), used: Vec::new() }
    }

    /// Check one checkpoint's signer and signature (in order); follows a rotation it makes.
    pub fn check(&mut self, c: &Checkpoint) -> Result<(), String> {
        let (key, id) = match &self.active {
            Some(a) => a.clone(),
            None => {
                let k = self.trusted.iter().find(|k| keys::key_id(k) == c.key_id).ok_or_else(|| {
                    let given: Vec<String> = self.trusted.iter().map(keys::key_id).collect();
                    format!(
                        "signed with key {}, which is not among the given public keys ({})",
                        c.key_id,
                        given.join(", ")
                    )
                })?;
                self.used.push(c.key_id.clone());
                (*k, c.key_id.clone())
            }
        };
        if c.key_id != id {
            return Err(match self.retired.get(&c.key_id) {
                Some(at) => format!(
                    "signed with key {}, which was retired at checkpoint {at} (key {id} signs from there on)",
                    c.key_id
                ),
                None => format!(
                    "signed with key {}, but key {id} is in force and no rotation introduced {}",
                    c.key_id, c.key_id
                ),
            });
        }
        if !c.signature_ok(&key) {
            return Err(format!("signature invalid for key {id}"));
        }
        self.active = Some((key, id.clone()));
        if let Some(next) = &c.next_key {
            let mut raw = [0u8; 32];
            let nk = hex::decode_to_slice(next, &mut raw)
                .ok()
                .and_then(|()| VerifyingKey::from_bytes(&raw).ok())
                .ok_or_else(|| "next_key is not an Ed25519 public key".to_string())?;
            let nid = keys::key_id(&nk);
            self.retired.insert(id, c.checkpoint);
            self.used.push(nid.clone());
            self.active = Some((nk, nid));
        }
        Ok(())
    }
}
