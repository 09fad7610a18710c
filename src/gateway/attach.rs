//! `clawbutler attach` / `detach` (filled in below).
