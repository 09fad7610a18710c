//! Strings the text rules are known to leave alone, remembered per thread.
//!
//! A record's masking walk runs the rule set over every string and object key of its subject
//! and details, its agent, reason and actor: ~20 strings per model call, nearly all of them the
//! same from call to call (field names, upstream and model names, the rule's reason). Each
//! `RegexSet::is_match` scans the whole string; a lookup here is a hash and one comparison.
//!
//! Invariants that keep this exactly as strict as the rules:
//! - only a string the rule set did not match is ever stored ([`remember`] is called after
//!   `is_match` said no), and the rules never change while the process runs (`rules()` is
//!   built once), so a string found here would not be matched now either;
//! - a hit compares the whole string byte for byte (the hash only picks the slot), so another
//!   string can never be taken for a stored one;
//! - literals from policy obligations and secret-named keys are applied outside this cache,
//!   on every call.
//!
//! Direct-mapped and fixed-size: a new string overwrites whatever shared its slot, nothing is
//! allocated, and strings longer than [`MAX_LEN`] (prompts, arguments) are never stored.

use std::cell::RefCell;
use std::hash::BuildHasher;

/// Longest string stored (bytes); longer ones are always scanned.
pub(super) const MAX_LEN: usize = 48;
const SLOTS: usize = 256;

struct Slot {
    /// 0 = empty (the empty string is never stored).
    len: u8,
    bytes: [u8; MAX_LEN],
}

struct Cache {
    hasher: foldhash::fast::RandomState,
    slots: Box<[Slot]>,
}

impl Cache {
    fn new() -> Cache {
        let slots = (0..SLOTS).map(|_| Slot { len: 0, bytes: [0; MAX_LEN] }).collect();
        Cache { hasher: foldhash::fast::RandomState::default(), slots }
    }

    fn slot(&self, s: &str) -> usize {
        // Truncation is the point: the low bits pick one of SLOTS (a power of two).
        (self.hasher.hash_one(s.as_bytes()) as usize) & (SLOTS - 1)
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::new());
}

fn storable(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_LEN
}

/// Whether `s` is a string this thread already found clean.
pub(super) fn known(s: &str) -> bool {
    if !storable(s) {
        return false;
    }
    CACHE.with(|c| {
        let c = c.borrow();
        let slot = &c.slots[c.slot(s)];
        usize::from(slot.len) == s.len() && &slot.bytes[..s.len()] == s.as_bytes()
    })
}

/// Remember `s`, which the text rules did not match.
pub(super) fn remember(s: &str) {
    if !storable(s) {
        return;
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let i = c.slot(s);
        let slot = &mut c.slots[i];
        // storable: 1..=MAX_LEN, so it fits a u8.
        let Ok(len) = u8::try_from(s.len()) else { return };
        slot.bytes[..s.len()].copy_from_slice(s.as_bytes());
        slot.len = len;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_bytes_hit() {
        assert!(!known("upstream"));
        remember("upstream");
        assert!(known("upstream"));
        assert!(!known("upstreaM"));
        assert!(!known("upstrea"));
        assert!(!known("upstream "));
        // Too long or empty: never stored, never a hit.
        let long = "x".repeat(MAX_LEN + 1);
        remember(&long);
        assert!(!known(&long));
        remember("");
        assert!(!known(""));
        let exact = "y".repeat(MAX_LEN);
        remember(&exact);
        assert!(known(&exact));
    }

    #[test]
    fn a_string_sharing_a_slot_replaces_the_last_and_neither_is_taken_for_the_other() {
        // Many more strings than slots: every slot is overwritten many times over.
        let strings: Vec<String> = (0..SLOTS * 8).map(|i| format!("field_{i}")).collect();
        for s in &strings {
            remember(s);
            assert!(known(s));
        }
        let mut hits = 0;
        for s in &strings {
            hits += usize::from(known(s));
        }
        assert!(hits <= SLOTS, "{hits} hits from {SLOTS} slots");
        // Strings never remembered never hit, whatever their slot holds.
        for i in 0..SLOTS * 8 {
            assert!(!known(&format!("other_{i}")));
        }
    }

    #[test]
    fn each_thread_has_its_own() {
        remember("only-here");
        assert!(known("only-here"));
        assert!(!std::thread::spawn(|| known("only-here")).join().unwrap());
    }
}
