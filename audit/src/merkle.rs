//! RFC 6962 (Certificate Transparency) Merkle tree hash over record hashes.
//!
//! Leaf = sha256(0x00 || 32-byte record hash), node = sha256(0x01 || left || right); the tree
//! splits at the largest power of two below the leaf count, which is the same as pairing
//! bottom-up and promoting an unpaired last node unchanged. Empty tree = sha256("").

use sha2::{Digest, Sha256};

/// Merkle tree hash of `leaves` (each a record's raw 32-byte hash).
pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.is_empty() {
        return Sha256::digest([]).into();
    }
    let mut level: Vec<[u8; 32]> = leaves
        .iter()
        .map(|l| {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(l);
            h.finalize().into()
        })
        .collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [l, r] => {
                    let mut h = Sha256::new();
                    h.update([1u8]);
                    h.update(l);
                    h.update(r);
                    next.push(h.finalize().into());
                }
                [single] => next.push(*single),
                _ => {}
            }
        }
        level = next;
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recursive definition straight from RFC 6962 §2.1, to check the iterative one.
    fn mth(d: &[[u8; 32]]) -> [u8; 32] {
        match d.len() {
            0 => Sha256::digest([]).into(),
            1 => Sha256::new().chain_update([0u8]).chain_update(d[0]).finalize().into(),
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                Sha256::new()
                    .chain_update([1u8])
                    .chain_update(mth(&d[..k]))
                    .chain_update(mth(&d[k..]))
                    .finalize()
                    .into()
            }
        }
    }

    #[test]
    fn matches_rfc6962_recursive_definition() {
        let leaves: Vec<[u8; 32]> = (0u8..40).map(|i| Sha256::digest([i]).into()).collect();
        for n in 0..leaves.len() {
            assert_eq!(root(&leaves[..n]), mth(&leaves[..n]), "n={n}");
        }
    }
}
