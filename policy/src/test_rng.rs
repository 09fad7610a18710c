//! A seeded xorshift generator for the property-style unit tests (no extra dependency).

/// `next(n)` returns a pseudo-random index below `n`, the same sequence for the same seed.
pub(crate) fn seeded(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}
