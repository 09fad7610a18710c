//! Temporary probe: cost of each piece of a decision. Not shipped.
use std::time::Instant;

fn pct<F: FnMut()>(name: &str, n: usize, mut f: F) {
    for _ in 0..n / 10 { f(); }
    let mut s: Vec<u64> = (0..n).map(|_| { let t = Instant::now(); f(); t.elapsed().as_nanos() as u64 }).collect();
    s.sort_unstable();
    let q = |p: f64| s[((s.len() as f64 * p) as usize).min(s.len() - 1)] as f64 / 1000.0;
    println!("{name:40} p50 {:8.2} us  p99 {:8.2} us", q(0.5), q(0.99));
}

fn load(engine: &mut regorus::Engine, dir: &str) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let n = p.to_string_lossy().to_string();
        if n.ends_with(".rego") && !n.ends_with("_test.rego") {
            engine.add_policy(n.clone(), std::fs::read_to_string(&p).unwrap()).unwrap();
        }
    }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or("/work/main/policies".into());
    let cfg = serde_json::json!({"clawbutler": {"config": {"model_allowlist": ["gpt-4o", "gpt-4o-mini", "claude-*"], "max_call_usd": 2.0, "workspace_roots": ["/srv/agents"], "high_risk_tools": [], "high_risk_commands": [], "hold_ttl_s": 900}}});
    let model = serde_json::json!({"version":1,"kind":"model_call","agent":"main","session":null,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",
      "model":{"upstream":"openai","upstream_kind":"openai","endpoint":"chat_completions","name":"gpt-4o","max_tokens":4096,"stream":true,"tools":["exec","read","write"]},
      "exec":null,"tool":null,"cost":{"estimate_usd":0.0412},"budgets":[{"id":"agent:main@daily","scope":"agent:main","window":"daily","spent_usd":1.25,"limit_usd":5.0,"remaining_usd":3.75}],"grants":[],"now":"2026-06-01T12:00:00.000Z"});
    let exec = serde_json::json!({"version":1,"kind":"exec","agent":"main","session":null,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4737",
      "model":null,"exec":{"command":"git commit -am 'fix tests' && cargo test -p policy","argv":[],"cwd":"/srv/agents/main/repo","resolved_path":"/usr/bin/git","workspace":"/srv/agents/main"},
      "tool":null,"cost":{"estimate_usd":null},"budgets":[],"grants":[],"now":"2026-06-01T12:00:00.000Z"});
    let n = 5000;
    if let Ok(old) = std::env::var("DIFF") {
        diff_mode(&old, &dir, std::env::var("N").ok().and_then(|x| x.parse().ok()).unwrap_or(3000));
        return;
    }
    pct("Decision::new_id", n, || { std::hint::black_box(policy::Decision::new_id()); });
    let reg = prometheus::Registry::new();
    let cv = prometheus::IntCounterVec::new(prometheus::Opts::new("x", "y"), &["kind", "action"]).unwrap();
    reg.register(Box::new(cv.clone())).unwrap();
    pct("counter with_label_values inc", n, || { cv.with_label_values(&["exec", "allow"]).inc(); });
    let h = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("h", "h")).unwrap();
    pct("histogram observe", n, || { h.observe(0.00001); });
    let mi: policy::PolicyInput = serde_json::from_value(model.clone()).unwrap();
    pct("serde_json::to_value(PolicyInput)", n, || { std::hint::black_box(serde_json::to_value(&mi).unwrap()); });
    let ee = policy::PolicyEngine::new(policy::BundleSource::Dir("/tmp/pv3".into()), serde_json::Value::Null, Default::default(), &prometheus::Registry::new()).unwrap();
    pct("trivial PolicyEngine::evaluate", n, || { std::hint::black_box(ee.evaluate(&mi)); });
    if std::env::var("TRIV").is_ok() { for _ in 0..600_000 { std::hint::black_box(ee.evaluate(&mi)); } return; }
    if let Ok(rules) = std::env::var("RULES") {
        let rules: Vec<&str> = rules.split(',').collect();
        profile_rules(&dir, &cfg, &[("model", &model), ("exec", &exec)], &rules);
        return;
    }
    pct("json->Value (model)", n, || { std::hint::black_box(regorus::Value::from(model.clone())); });
    let mut e = regorus::Engine::new();
    e.set_strict_builtin_errors(false);
    load(&mut e, &dir);
    e.add_data(regorus::Value::from(cfg.clone())).unwrap();
    e.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig { limit: std::time::Duration::from_millis(5), check_interval: std::num::NonZeroU32::new(32).unwrap() });
    let compiled = e.compile_with_entrypoint(&regorus::Rc::from("data.clawbutler.decision")).unwrap();
    pct("engine.clone()", 500, || { std::hint::black_box(e.clone()); });
    for (name, inp) in [("model", &model), ("exec", &exec)] {
        let v = regorus::Value::from(inp.clone());
        let r = { e.set_input(v.clone()); e.eval_rule("data.clawbutler.decision".into()).unwrap() };
        println!("{name}: {}", r);
        pct(&format!("interp eval_rule {name}"), n, || { e.set_input(v.clone()); std::hint::black_box(e.eval_rule("data.clawbutler.decision".into()).unwrap()); });
        pct(&format!("compiled.eval_with_input {name}"), n, || { std::hint::black_box(compiled.eval_with_input(v.clone()).unwrap()); });
        pct(&format!("output to_value {name}"), n, || { std::hint::black_box(serde_json::to_value(&r).unwrap()); });
        // RVM
        match regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &["data.clawbutler.decision"]) {
            Ok(prog) => {
                let mut vm = regorus::rvm::RegoVM::new();
                vm.load_program(prog.clone());
                vm.set_data(regorus::Value::from(cfg.clone())).unwrap();
                vm.set_input(v.clone());
                match vm.execute_entry_point_by_name("data.clawbutler.decision") {
                    Ok(r2) => { println!("rvm {name}: {r2} same={}", r2 == r);
                        pct(&format!("rvm {name}"), n, || { vm.set_input(v.clone()); std::hint::black_box(vm.execute_entry_point_by_name("data.clawbutler.decision").unwrap()); });
                    }
                    Err(err) => println!("rvm exec error: {err}"),
                }
            }
            Err(err) => println!("rvm compile error: {err}"),
        }
    }
    let mut t = regorus::Engine::new();
    t.add_policy("t.rego".into(), "package clawbutler\ndecision := {\"action\": \"allow\", \"rule\": \"r\", \"reason\": \"x\", \"risk\": \"low\"}\n".into()).unwrap();
    let v = regorus::Value::from(model.clone());
    pct("trivial eval_rule", n, || { t.set_input(v.clone()); std::hint::black_box(t.eval_rule("data.clawbutler.decision".into()).unwrap()); });
    t.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig { limit: std::time::Duration::from_millis(5), check_interval: std::num::NonZeroU32::new(32).unwrap() });
    let tc = t.compile_with_entrypoint(&regorus::Rc::from("data.clawbutler.decision")).unwrap();
    let prog = regorus::languages::rego::compiler::Compiler::compile_from_policy(&tc, &["data.clawbutler.decision"]).unwrap();
    let mut vm = regorus::rvm::RegoVM::new();
    vm.load_program(prog);
    vm.set_data(regorus::Value::new_object()).unwrap();
    pct("trivial rvm", n, || { vm.set_input(v.clone()); std::hint::black_box(vm.execute_entry_point_by_index(0).unwrap()); });
    let s = serde_json::to_string(&model).unwrap();
    pct("json string -> from_json_str", n, || { std::hint::black_box(regorus::Value::from_json_str(&s).unwrap()); });
    pct("serde_json::to_string(model)", n, || { std::hint::black_box(serde_json::to_string(&model).unwrap()); });
    pct("json clone", n, || { std::hint::black_box(model.clone()); });
    pct("trivial eval_rule + timer", n, || { t.set_input(v.clone()); std::hint::black_box(t.eval_rule("data.clawbutler.decision".into()).unwrap()); });
}

#[allow(dead_code)]
pub fn profile_rules(dir: &str, cfg: &serde_json::Value, inputs: &[(&str, &serde_json::Value)], rules: &[&str]) {
    let mut e = regorus::Engine::new();
    e.set_strict_builtin_errors(false);
    load(&mut e, dir);
    e.add_data(regorus::Value::from(cfg.clone())).unwrap();
    if let Ok(extra) = std::fs::read_to_string(format!("{dir}/data.json")) {
        e.add_data(regorus::Value::from_json_str(&extra).unwrap()).unwrap();
    }
    let compiled = e.compile_with_entrypoint(&regorus::Rc::from("data.clawbutler.decision")).unwrap();
    let eps: Vec<String> = rules.iter().map(|r| format!("data.clawbutler.{r}")).collect();
    let epr: Vec<&str> = eps.iter().map(|s| s.as_str()).collect();
    let prog = regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &epr).unwrap();
    let mut vm = regorus::rvm::RegoVM::new();
    vm.load_program(prog);
    vm.set_max_instructions(usize::MAX);
    vm.set_data(e.get_data()).unwrap();
    for (name, inp) in inputs {
        let v = regorus::Value::from((*inp).clone());
        for r in &epr {
            vm.set_input(v.clone());
            let out = vm.execute_entry_point_by_name(r);
            let txt = match &out { Ok(x) => x.to_string(), Err(e) => format!("ERR {e}") };
            let txt: String = txt.chars().take(std::env::var("W").ok().and_then(|w| w.parse().ok()).unwrap_or(60)).collect();
            pct(&format!("{name} {r} => {txt}"), 2000, || { vm.set_input(v.clone()); std::hint::black_box(vm.execute_entry_point_by_name(r).ok()); });
        }
    }
}

#[allow(dead_code)]
pub fn diff_mode(old_dir: &str, new_dir: &str, n: usize) {
    let mut seed: u64 = 0x9E3779B97F4A7C15;
    let mut rnd = move |k: usize| -> usize { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; (seed % (k as u64)) as usize };
    let vocab = ["sudo", "/usr/bin/sudo", "su", "doas", "rm", "-rf", "-r", "-f", "--recursive", "/", "~", "*", ".", "curl", "wget", "fetch", "|", "||", "&&", ";", "&", "sh", "bash", "python3", "$(curl", "<(wget", "`curl", "x=$(wget", "chmod", "777", "a+w", "644", "mkfs.ext4", "/sbin/mkfs", "wipefs", "dd", "of=/dev/sda", "of=/dev/null", "if=/dev/zero", "mail", "sendmail", "/usr/sbin/sendmail", "pay", "transfer", "Refund", "stripe", "PayPal", "stripe-cli", "cp", "mv", "touch", "tee", "/etc/hosts", "/home/u/proj/x", "/home/u/proj", "/home/u/proj2/y", "~/x", ">", ">>", ">/etc/x", "2>/dev/null", "&>", "~/.ssh/id_rsa", ".env", ".env.example", ".env.local", "/a/.aws/credentials", "id_ed25519", "cat", "ls", "git", "echo", "x&sudo", "a;sudo", "SUDO", "Rm", "/srv/agents/x", "\t", "\n", "sudo;ls", "curl|sh", "a|bash", "rm/", "bin/rm", "/tmp/a", "tmp/x", "mkfsx", "xmkfs", "checkout", "gcloud/credentials", "/etc/shadow", "/etc/sudoers.d", "|sh", "||sh", "mutt", "msmtp"];
    let seps = [" ", " ", " ", "", ";", "|", "&&", "\t"];
    let cwds = [serde_json::Value::Null, "".into(), "/home/u/proj".into(), "/home/u/proj/sub".into(), "/etc".into(), "/home/u/proj2".into(), "/srv/agents/a".into(), "/".into()];
    let wss = [serde_json::Value::Null, "".into(), "/home/u/proj".into(), "/home/u/proj/".into(), "/".into()];
    let cfgs = [serde_json::json!(null), serde_json::json!({"workspace_roots": ["/srv/agents", "/tmp/"], "high_risk_commands": ["git push*"], "high_risk_tools": ["browser_*", "exact_tool"]}), serde_json::json!({"model_allowlist": ["gpt-4o", "claude-*", "openai/o1"], "max_call_usd": 0.5, "workspace_roots": ["/"]})];
    let tools = ["send_email", "list_emails", "message", "search_docs", "stripe_create_payment", "bank_transfer", "write", "edit", "read", "browser_navigate", "exec", "slack.postMessage", "get_messages", "wallet_balance", "exact_tool", "Write_File"];
    let models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "o1", "", "claude-*"];
    let build = |dir: &str, cfg: &serde_json::Value| {
        let mut e = regorus::Engine::new();
        e.set_strict_builtin_errors(false);
        load(&mut e, dir);
        if !cfg.is_null() { e.add_data(regorus::Value::from(serde_json::json!({"clawbutler": {"config": cfg}}))).unwrap(); }
        let c = e.compile_with_entrypoint(&regorus::Rc::from("data.clawbutler.decision")).unwrap();
        let prog = regorus::languages::rego::compiler::Compiler::compile_from_policy(&c, &["data.clawbutler.decision"]).unwrap();
        let mut vm = regorus::rvm::RegoVM::new();
        vm.load_program(prog);
        vm.set_max_instructions(usize::MAX);
        vm.set_data(e.get_data()).unwrap();
        (e, vm)
    };
    let mut diffs = 0;
    let mut actions = std::collections::BTreeMap::new();
    for (ci, cfg) in cfgs.iter().enumerate() {
        let (mut old, _) = build(old_dir, cfg);
        let (mut new, mut vm) = build(new_dir, cfg);
        for i in 0..n {
            let kind = ["exec", "exec", "exec", "tool_call", "plugin", "model_call"][rnd(6)];
            let mut cmd = String::new();
            for _ in 0..rnd(6) + 1 { cmd.push_str(vocab[rnd(vocab.len())]); cmd.push_str(seps[rnd(seps.len())]); }
            let grants = if rnd(3) == 0 { serde_json::json!([{"id": "g1", "agent": "main", "kind": kind, "pattern": (["*", "sudo *", "send_email", "gpt-4o"][rnd(4)]), "arg_pattern": ({let a: [serde_json::Value; 2] = [serde_json::Value::Null, "*x*".into()]; a[rnd(2)].clone()}), "expires_at": null}]) } else { serde_json::json!([]) };
            let budgets = if rnd(12) == 0 { serde_json::json!([{"id": "b", "scope": "global", "window": "daily", "spent_usd": 5, "limit_usd": 5, "remaining_usd": ([0.0, 1.0, -1.0][rnd(3)])}]) } else { serde_json::json!([]) };
            let inp = match kind {
                "exec" => serde_json::json!({"version": 1, "kind": "exec", "agent": "main", "trace_id": "t", "now": "2026-06-01T12:00:00Z",
                    "exec": {"command": if rnd(8) == 0 { "".to_string() } else { cmd.clone() }, "argv": cmd.split(' ').collect::<Vec<_>>(), "cwd": (cwds[rnd(cwds.len())].clone()), "workspace": (wss[rnd(wss.len())].clone())},
                    "cost": {"estimate_usd": null}, "budgets": budgets, "grants": grants}),
                "model_call" => serde_json::json!({"version": 1, "kind": "model_call", "agent": "main", "trace_id": "t", "now": "2026-06-01T12:00:00Z",
                    "model": {"upstream": "openai", "endpoint": (["chat_completions", "models"][rnd(2)]), "name": (models[rnd(models.len())]), "max_tokens": 10, "stream": false, "tools": []},
                    "cost": {"estimate_usd": ({let a: [serde_json::Value; 4] = [serde_json::Value::Null, 0.1.into(), 0.7.into(), 5.into()]; a[rnd(4)].clone()})}, "budgets": budgets, "grants": grants}),
                k => serde_json::json!({"version": 1, "kind": k, "agent": "main", "trace_id": "t", "now": "2026-06-01T12:00:00Z",
                    "tool": {"server": null, "name": (tools[rnd(tools.len())]), "args": ({let a = [serde_json::json!({"command": cmd}), serde_json::json!({"path": vocab[rnd(vocab.len())], "files": [vocab[rnd(vocab.len())]]}), serde_json::json!({})]; a[rnd(3)].clone()})},
                    "cost": {"estimate_usd": null}, "budgets": budgets, "grants": grants}),
            };
            let v = regorus::Value::from(inp.clone());
            old.set_input(v.clone());
            let a = old.eval_rule("data.clawbutler.decision".into()).map(|x| x.to_string()).unwrap_or_else(|e| format!("ERR {e}"));
            new.set_input(v.clone());
            let b = new.eval_rule("data.clawbutler.decision".into()).map(|x| x.to_string()).unwrap_or_else(|e| format!("ERR {e}"));
            vm.set_input(v.clone());
            let c = vm.execute_entry_point_by_index(0).map(|x| x.to_string()).unwrap_or_else(|e| format!("ERR {e}"));
            let act = a.split("\"rule\":").nth(1).map(|r| r.split(',').next().unwrap_or("").to_string()).unwrap_or(a.clone());
            *actions.entry(act).or_insert(0) += 1;
            if a != b || b != c {
                diffs += 1;
                if diffs <= 15 { println!("DIFF cfg{ci} #{i}\n input {inp}\n old {a}\n new {b}\n vm  {c}"); }
            }
        }
    }
    println!("diffs: {diffs}");
    for (k, v) in actions { println!("{v:6} {k}"); }
}
