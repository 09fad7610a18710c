//! What the gate remembers between requests, bounded: per OpenClaw run, the trace it belongs
//! to and what its turn check saw (tool-call reports carry no trace, model-call reports no
//! agent); per tool call, how long its decision took (OpenClaw's reported duration includes
//! the hold) and the answer, so a retried request (same run and tool-call id, the plugin's
//! idempotency key) gets the same answer instead of a second decision.
//!
//! Both maps forget their oldest entries past a fixed size: memory is bounded whatever the
//! traffic, and what is forgotten only makes a later report less precise.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::wire::ToolAnswer;

/// Runs remembered.
const MAX_RUNS: usize = 4096;
/// Tool calls remembered.
const MAX_CALLS: usize = 16_384;
/// How long a final answer is replayed for a retry.
const REPLAY_FOR: Duration = Duration::from_secs(600);

/// A map that forgets its oldest insertions past `cap`.
struct Bounded<K, V> {
    cap: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Bounded { cap, map: HashMap::new(), order: VecDeque::new() }
    }

    fn entry(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&k) {
            while self.map.len() >= self.cap {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(k.clone());
        }
        self.map.entry(k).or_insert_with(make)
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }
}

/// One run, as far as the gate saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    pub agent: Option<String>,
    pub session: Option<String>,
    pub trace_id: Option<String>,
    pub workspace: Option<String>,
    pub trigger: Option<String>,
    pub channel: Option<String>,
    /// Model calls OpenClaw reported for the run (`model_call` reports).
    pub model_calls: u32,
}

/// One tool call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Call {
    pub trace_id: Option<String>,
    /// Time the gate spent on it, holds included (what OpenClaw's duration also counts).
    pub gate_ms: f64,
    pub decision_id: Option<String>,
    /// The final answer and when it was given.
    pub answer: Option<(ToolAnswer, Instant)>,
}

type CallKey = (String, String);

/// See the module docs.
pub(crate) struct Memory {
    runs: Mutex<Bounded<String, Run>>,
    calls: Mutex<Bounded<CallKey, Call>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Memory {
    pub fn new() -> Memory {
        Memory { runs: Mutex::new(Bounded::new(MAX_RUNS)), calls: Mutex::new(Bounded::new(MAX_CALLS)) }
    }

    /// Update (or start) what is known of `run_id`.
    pub fn run(&self, run_id: &str, f: impl FnOnce(&mut Run)) {
        let mut runs = lock(&self.runs);
        f(runs.entry(run_id.to_string(), Run::default));
    }

    /// What is known of `run_id`.
    pub fn get_run(&self, run_id: &str) -> Option<Run> {
        lock(&self.runs).get(&run_id.to_string()).cloned()
    }

    /// Update (or start) what is known of a tool call.
    pub fn call(&self, run_id: &str, call_id: &str, f: impl FnOnce(&mut Call)) {
        let mut calls = lock(&self.calls);
        f(calls.entry(key(run_id, call_id), Call::default));
    }

    /// What is known of a tool call.
    pub fn get_call(&self, run_id: &str, call_id: &str) -> Option<Call> {
        lock(&self.calls).get(&key(run_id, call_id)).cloned()
    }

    /// The answer already given to this tool call, if recent (a retry gets it again).
    pub fn replay(&self, run_id: &str, call_id: &str) -> Option<ToolAnswer> {
        let calls = lock(&self.calls);
        let (a, at) = calls.get(&key(run_id, call_id))?.answer.as_ref()?;
        (at.elapsed() < REPLAY_FOR).then(|| a.clone())
    }
}

fn key(run_id: &str, call_id: &str) -> CallKey {
    governance::plugin::call_key(run_id, call_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_forgets_the_oldest() {
        let mut b = Bounded::new(2);
        *b.entry("a", || 0) += 1;
        *b.entry("b", || 0) += 1;
        *b.entry("a", || 0) += 1;
        *b.entry("c", || 0) += 1;
        assert_eq!((b.get(&"a"), b.get(&"b"), b.get(&"c")), (None, Some(&1), Some(&1)));
        assert_eq!(b.map.len(), 2);
    }

    #[test]
    fn answers_replay_by_run_and_call() {
        let m = Memory::new();
        assert!(m.replay("r", "call_1").is_none());
        m.call("r", "call_1", |c| c.answer = Some((ToolAnswer::new("allow", "d1", "allow.plugin"), Instant::now())));
        assert_eq!(m.replay("r", "call1").map(|a| a.decision_id), Some("d1".to_string()));
        m.run("r", |r| r.model_calls += 1);
        m.run("r", |r| r.model_calls += 1);
        assert_eq!(m.get_run("r").map(|r| r.model_calls), Some(2));
    }
}
