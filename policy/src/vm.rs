//! The evaluator behind one compiled revision. The decision rule is compiled once per revision
//! to regorus's bytecode VM (RVM), which evaluates a decision several times faster than the
//! tree-walking interpreter; a bundle the RVM compiler cannot handle falls back to the
//! interpreter, so any bundle that compiles keeps serving. Each thread owns its own evaluator
//! (see `engine.rs`), built from the shared [`Compiled`] template as a deep copy, so no
//! reference count is written by two threads' decisions (`private.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::VmError;
use regorus::rvm::{Program, RegoVM};

use crate::bundle::DECISION_RULE;
use crate::metrics::ErrorCause;

/// Bytecode for `data.clawbutler.decision` plus the data document it reads.
struct Bytecode {
    program: Arc<Program>,
    data: regorus::Value,
    timer: regorus::utils::limits::ExecutionTimerConfig,
}

/// What every thread builds its evaluator from.
pub(crate) struct Compiled {
    /// `None` when the RVM compiler refused the bundle: the interpreter serves every call.
    bytecode: Option<Bytecode>,
    /// The prepared interpreter; locked only when a thread needs a fresh clone.
    interpreter: Mutex<regorus::Engine>,
}

impl Compiled {
    /// Compile the decision rule of `engine` (prepared by `bundle::prepare`, which returned
    /// `policy`) to bytecode, or keep only the interpreter when the RVM compiler refuses it.
    pub(crate) fn new(engine: regorus::Engine, policy: &regorus::CompiledPolicy, timeout: Duration) -> Compiled {
        let bytecode = match Compiler::compile_from_policy(policy, &[DECISION_RULE]) {
            Ok(program) => {
                let data = engine.get_data();
                // Check once that the data fits the program, so a thread's VM cannot fail later.
                let mut probe = RegoVM::new();
                probe.load_program(program.clone());
                match probe.set_data(data.clone()) {
                    Ok(()) => Some(Bytecode { program, data, timer: crate::engine::timer_config(timeout) }),
                    Err(e) => {
                        tracing::info!(error = %e, "policy data does not fit the RVM program; using the interpreter");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "bundle not supported by the RVM compiler; using the interpreter");
                None
            }
        };
        Compiled { bytecode, interpreter: Mutex::new(engine) }
    }

    /// A fresh evaluator for one thread.
    pub(crate) fn worker(&self) -> Result<Worker, String> {
        let vm = match &self.bytecode {
            Some(b) => {
                // A copy of its own, so the reference counts its evaluations touch are this
                // thread's alone (`private.rs`).
                let mut vm = RegoVM::new();
                vm.load_program(Arc::new(crate::private::program(&b.program)));
                vm.set_data(crate::private::value(&b.data)).map_err(|e| format!("{e}"))?;
                // The time limit bounds the work; the RVM's default instruction cap (25k) would
                // otherwise deny long but legitimate commands.
                vm.set_max_instructions(usize::MAX);
                vm.set_strict_builtin_errors(false);
                vm.set_execution_timer_config(Some(b.timer));
                Some(Box::new(vm))
            }
            None => None,
        };
        Ok(Worker { vm, interpreter: None })
    }

    fn interpreter(&self) -> regorus::Engine {
        self.interpreter.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The shipped bundle's decision rule as bytecode (no config).
    #[cfg(test)]
    pub(crate) fn shipped_program() -> Arc<Program> {
        let files = crate::bundle::read_files(&crate::engine::BundleSource::Embedded).unwrap();
        let mut engine = crate::bundle::build_engine(&files, &serde_json::Value::Null, false).unwrap();
        let policy = crate::bundle::prepare(&mut engine).unwrap();
        Compiler::compile_from_policy(&policy, &[DECISION_RULE]).unwrap()
    }

    /// True when decisions run on the bytecode VM.
    #[cfg(test)]
    pub(crate) fn is_vm(&self) -> bool {
        self.bytecode.is_some()
    }
}

/// One thread's evaluator.
pub(crate) struct Worker {
    vm: Option<Box<RegoVM>>,
    /// Cloned on first use: serves every call without bytecode, and re-checks the VM's
    /// undefined answers.
    interpreter: Option<Box<regorus::Engine>>,
}

impl Worker {
    /// Evaluate the decision rule for `input`. `Ok(Undefined)` when the rule has no value.
    pub(crate) fn eval(
        &mut self,
        compiled: &Compiled,
        input: regorus::Value,
    ) -> Result<regorus::Value, (ErrorCause, String)> {
        if let Some(vm) = self.vm.as_mut() {
            vm.set_input(input.clone());
            // The program has exactly one entry point: the decision rule.
            let out = vm.execute_entry_point_by_index(0).map_err(|e| match e {
                VmError::TimeLimitExceeded { .. } => (ErrorCause::Timeout, e.to_string()),
                other => (ErrorCause::Engine, other.to_string()),
            })?;
            // The RVM reports conflicting values of a complete rule as undefined, where the
            // interpreter names the conflict: an undefined answer (a failure path, never a
            // served decision) is re-evaluated by the interpreter so its error is reported.
            if !matches!(out, regorus::Value::Undefined) {
                return Ok(out);
            }
        }
        let engine = self.interpreter.get_or_insert_with(|| Box::new(compiled.interpreter()));
        engine.set_input(input);
        engine.eval_rule(DECISION_RULE.to_string()).map_err(|e| {
            let cause = if e.downcast_ref::<regorus::LimitError>().is_some() {
                ErrorCause::Timeout
            } else {
                ErrorCause::Engine
            };
            (cause, format!("{e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle;
    use crate::engine::BundleSource;

    /// The first branch of `hold_findings` in the shipped decision.rego (the exec fast path).
    const FAST_PATH: &str = r#"input.kind == "exec"
        f := input.exec.features
        f.triggers == {}
        f.hits == {}
        every p in f.redirects { not data.clawbutler._absolute(p) }
        not data.clawbutler.config.high_risk_commands != []
        f.cwd_in_workspace"#;

    /// The serving VM must decide exactly as the interpreter that runs the Rego tests.
    #[test]
    fn vm_and_interpreter_agree_on_the_shipped_bundle() {
        let words = [
            "sudo",
            "/usr/bin/sudo",
            "rm",
            "-rf",
            "--recursive",
            "/",
            "curl",
            "wget",
            "|",
            "||",
            "&&",
            ";",
            "sh",
            "$(curl",
            "chmod",
            "777",
            "mkfs.ext4",
            "wipefs",
            "dd",
            "of=/dev/sda",
            "mail",
            "pay",
            "Stripe",
            "cp",
            "/etc/hosts",
            "/home/u/proj/x",
            ">",
            ">/etc/x",
            "~/.ssh/id_rsa",
            ".env",
            ".env.example",
            "cat",
            "git",
            "x&sudo",
            "pseudo",
            "/opt/sudo/bin",
            "\t",
            "bin/mkfs",
            "2>/etc/x",
            "x>>/home/u/proj/y",
            "2>",
            "&>",
            ">&2",
            "2>&1",
            "out.log",
            "~/out",
        ];
        let mut next = crate::test_rng::seeded(0x2545_F491_4F6C_DD1Du64);
        let files = bundle::read_files(&BundleSource::Embedded).unwrap();
        for config in [
            serde_json::Value::Null,
            serde_json::json!({"model_allowlist": ["gpt-4o", "claude-*"], "max_call_usd": 0.5,
                "workspace_roots": ["/srv/agents/"], "high_risk_commands": ["git push*"], "high_risk_tools": ["browser_*"],
                "tool_result_secrets": "pass", "outbound_tools": ["fetch_*"]}),
        ] {
            let mut engine = bundle::build_engine(&files, &config, false).unwrap();
            let policy = bundle::prepare(&mut engine).unwrap();
            let needles = crate::needles::Needles::from_engine(&engine);
            let mut interpreter = engine.clone();
            let compiled = Compiled::new(engine, &policy, Duration::from_millis(500));
            assert!(compiled.is_vm());
            let mut worker = compiled.worker().unwrap();
            let mut fast_path = 0;
            for i in 0..600 {
                let command: Vec<&str> = (0..1 + next(5)).map(|_| words[next(words.len())]).collect();
                let command = command.join([" ", "", ";"][next(3)].to_string().as_str());
                let grants = if next(3) == 0 {
                    serde_json::json!([{"id": "g1", "agent": "main", "kind": "exec", "pattern": "sudo *"}])
                } else {
                    serde_json::json!([])
                };
                let input = match i % 5 {
                    4 => serde_json::json!({"kind": "plugin", "agent": "main", "now": "2026-06-01T12:00:00Z",
                        "tool": {"server": null, "name": "x",
                            "args": {"command": command, "path": (words[next(words.len())]),
                                "target": (["+1555", "@team"][next(2)]), "url": (["https://a.b/x", "file:///etc"][next(2)])}},
                        "plugin": {"tool_name": (["exec", "write", "message", "web_fetch", "mail__send_email", "cb-main__x",
                            "sessions_spawn", "tool_call", "read", "apply_patch"][next(10)]),
                            "workspace": (["/home/u/proj", ""][next(2)]), "derived_paths": []},
                        "cost": {"estimate_usd": null}, "budgets": [], "grants": grants}),
                    0 | 1 => serde_json::json!({"kind": "exec", "agent": "main", "now": "2026-06-01T12:00:00Z",
                        "exec": {"command": command, "argv": [], "cwd": "/home/u/proj", "workspace": "/home/u/proj"},
                        "cost": {"estimate_usd": null}, "budgets": [], "grants": grants}),
                    // MCP calls: with or without a command or a path-like argument, names that
                    // open the tool rules' gate (`name_features`) and names that do not.
                    2 => {
                        let mut args = serde_json::json!({"text": "hi", "url": (["https://a.b/x", "x"][next(2)])});
                        if next(2) == 0 {
                            args["command"] = serde_json::json!(command);
                        }
                        if next(2) == 0 {
                            args[["path", "filePath", "paths"][next(3)]] = serde_json::json!(words[next(words.len())]);
                        }
                        serde_json::json!({"kind": "tool_call", "agent": "main", "now": "2026-06-01T12:00:00Z",
                            "tool": {"server": "s", "name": (["send_email", "write", "bank_transfer", "exec", "browser_x",
                                "echo", "read_file", "List_Emails", "pay", "Stripe.charge", "write_file", "fetch_url"][next(12)]),
                                "args": args},
                            "mcp": {"phase": "call", "calls": [], "secret_seen": next(2) == 0},
                            "cost": {"estimate_usd": null}, "budgets": [], "grants": []})
                    }
                    _ => serde_json::json!({"kind": "model_call", "agent": "main", "now": "2026-06-01T12:00:00Z",
                        "model": {"upstream": "openai", "endpoint": "chat_completions",
                            "name": (["gpt-4o", "o1", "claude-3"][next(3)])},
                        "cost": {"estimate_usd": ([0.1, 0.9][next(2)])},
                        "budgets": [{"id": "b", "scope": "global", "window": "daily", "spent_usd": 1,
                            "limit_usd": 1, "remaining_usd": ([0.0, 0.5][next(2)])}], "grants": []}),
                };
                // Plugin facts are derived in Rust only (no Rego fallback): the interpreter gets
                // them too, but not the command or tool features.
                let value = if input["kind"] == "plugin" {
                    let mut v = crate::features::attach_to_json(&input, &needles);
                    let root = v.as_object_mut().unwrap();
                    let tool = root.get_mut(&regorus::Value::from("tool")).unwrap().as_object_mut().unwrap();
                    for field in ["features", "name_features", "arg_features"] {
                        tool.remove(&regorus::Value::from(field));
                    }
                    v
                } else {
                    regorus::Value::from(input.clone())
                };
                interpreter.set_input(value.clone());
                let expected = interpreter.eval_rule(DECISION_RULE.to_string()).unwrap();
                assert_ne!(expected, regorus::Value::Undefined, "{input}");
                // The VM gets the engine-derived features (and may take the fast paths of
                // `hold_findings`); the interpreter derives them in Rego and evaluates every rule.
                let with_features = crate::features::attach_to_json(&input, &needles);
                interpreter.set_input(with_features.clone());
                // The conditions of `hold_findings`'s first branch (decision.rego).
                let plain = interpreter.eval_query(FAST_PATH.to_string(), false).unwrap();
                if !plain.result.is_empty() {
                    fast_path += 1;
                }
                assert_eq!(worker.eval(&compiled, with_features).unwrap(), expected, "{input}");
            }
            assert!(fast_path > 0 || config != serde_json::Value::Null, "the fast path was never taken");
        }
    }
}
