# Shell commands: exec approvals, and tool calls that carry a shell command (OpenClaw's exec
# tool through the plugin gate, MCP shell tools). Matching is on words, not a shell parser:
# it errs towards holding, and a grant or an edited rule clears false positives.
#
# Cost note: every builtin call and every loop step costs a fraction of a microsecond, and a
# decision runs on every command. So the word rules (in `_word_holds`) are gated: one pass
# looks every word up in `_trigger_words`, one `strings.replace_n` call looks for the
# substrings (it changes the string exactly when one of its keys occurs), and only when one
# of them is there do the rules walk the words. Most commands name none of them.
package clawbutler

# The command line under decision (an `else` chain: the first branch that holds wins, the
# others are not evaluated).
command := input.exec.command if {
	input.kind == "exec"
	input.exec.command != ""
} else := concat(" ", input.exec.argv) if {
	input.kind == "exec"
	input.exec.command == ""
} else := input.tool.args.command if {
	input.kind in {"tool_call", "plugin"}
	is_string(input.tool.args.command)
}

# Command features (docs/policy-input.md, `exec.features`): the engine derives them in Rust
# for exec calls, so a decision does not split the command in Rego. Without them (tool calls
# carrying a command, `with input as` in tests) the `_d_*` rules derive the same values here;
# `exec_features_derived` gathers them so a unit test can check both agree.
# Each reads the field directly (a rule reference costs about as much as a builtin call).
_lc_spaced := input.exec.features.text if {
	input.kind == "exec"
	input.exec.features
} else := _d_text

# Words as written (paths keep their case; only needed on rare paths, so not a feature) and
# lower-cased.
raw_tokens := _d_raw_tokens

_tokens := input.exec.features.tokens if {
	input.kind == "exec"
	input.exec.features
} else := _d_tokens

_token_set := {t | some t in _tokens}

# Program names: the last path element of every word, so /usr/bin/sudo counts as sudo.
_words := input.exec.features.words if {
	input.kind == "exec"
	input.exec.features
} else := _d_words

# Shell operators become separate words: "a;b" -> "a ; b". `||` is not a pipe.
_spaced := strings.replace_n(
	{"\t": " ", "\n": " ", ";": " ; ", "&&": " && ", "|": " | "},
	replace(command, "||", " ; "),
)

_d_text := lower(_spaced)

_d_raw_tokens := [t | some t in split(_spaced, " "); t != ""]

_d_tokens := [t | some t in split(_d_text, " "); t != ""]

_d_words := {w |
	some t in _d_tokens
	parts := split(t, "/")
	w := parts[count(parts) - 1]
}

_d_program := w if {
	parts := split(_d_tokens[0], "/")
	w := parts[count(parts) - 1]
} else := ""

_d_operators := {op | some op in ["|", "||", "&&", ";", "&", ">", "<", "$(", "`"]; contains(command, op)}

# `cwd` is the workspace or below it (the first branch of `under_workspace`).
_d_cwd_in_workspace := true if {
	ws := input.exec.workspace
	is_string(ws)
	ws != ""
	cwd := input.exec.cwd
	is_string(cwd)
	startswith(concat("", [cwd, "/"]), concat("", [ws, "/"]))
} else := false

exec_features_derived := {
	"operators": _d_operators, "program": _d_program, "tokens": _d_tokens, "words": _d_words,
	"text": _d_text, "cwd_in_workspace": _d_cwd_in_workspace,
}

# The gate text: lower-cased, with every shell separator (space, tab, newline, `;`, `&`, `|`)
# turned into a space and a space after every "/". Split on spaces, its pieces include every
# word of _tokens and every program name of _words (it splits at more places, so a rule that
# sees its word here re-checks it on _tokens / _words: the gate never decides on its own).
_gate_text := strings.replace_n({"\t": " ", "\n": " ", "&": " ", ";": " ", "/": "/ ", "|": " "}, lower(command))

# The words the rules below look for, with the rule families that want them. Program names
# are matched as last path elements; the payment and downloader words are re-checked as whole
# words by their rules.
_trigger_words := {
	"rm": ["rm", "write"], "sudo": ["privilege"], "su": ["privilege"], "doas": ["privilege"],
	"pkexec": ["privilege"], "chmod": ["chmod", "write"], "wipefs": ["disk"], "dd": ["dd", "write"],
	"sendmail": ["mail"], "mail": ["mail"], "mailx": ["mail"], "mutt": ["mail"], "msmtp": ["mail"],
	"curl": ["download"], "wget": ["download"], "fetch": ["download"],
	"pay": ["payment"], "payment": ["payment"], "payments": ["payment"], "payout": ["payment"],
	"payouts": ["payment"], "transfer": ["payment"], "transfers": ["payment"], "charge": ["payment"],
	"charges": ["payment"], "refund": ["payment"], "refunds": ["payment"], "purchase": ["payment"],
	"checkout": ["payment"], "invoice": ["payment"], "invoices": ["payment"], "withdraw": ["payment"],
	"rmdir": ["write"], "mv": ["write"], "cp": ["write"], "tee": ["write"], "touch": ["write"],
	"mkdir": ["write"], "ln": ["write"], "chown": ["write"], "chgrp": ["write"], "truncate": ["write"],
	"install": ["write"], "rsync": ["write"], "shred": ["write"], "unlink": ["write"], "scp": ["write"],
}

# The keys of _trigger_words as a literal set (object.keys would build it on every call);
# a test checks they stay equal.
_trigger_keys := {
	"rm", "sudo", "su", "doas", "pkexec", "chmod", "wipefs", "dd", "sendmail", "mail", "mailx",
	"mutt", "msmtp", "curl", "wget", "fetch", "pay", "payment", "payments", "payout", "payouts",
	"transfer", "transfers", "charge", "charges", "refund", "refunds", "purchase", "checkout",
	"invoice", "invoices", "withdraw", "rmdir", "mv", "cp", "tee", "touch", "mkdir", "ln",
	"chown", "chgrp", "truncate", "install", "rsync", "shred", "unlink", "scp"
}

# Rule families whose words occur. With features: only the words that are trigger words (a
# set intersection, no loop over the command). Without: one pass over the gate text's pieces.
# (Every trigger word is a program name: a token naming one has no "/", so it is in _words.)
_families := {f | some w in input.exec.features.words & _trigger_keys; some f in _trigger_words[w]} if {
	input.kind == "exec"
	input.exec.features
} else := {f |
	some w in split(_gate_text, " ")
	some f in _trigger_words[w]
}

# Substrings some rules look for anywhere in a word; the rules re-check which one. (No marker
# contains a space or shell operator, so the spaced text has one exactly when the command does.)
_markers := {"curl": "", "wget": "", "stripe": "", "paypal": "", "braintree": "", "adyen": "", "mkfs": ""}

_has_markers if strings.replace_n(_markers, _lc_spaced) != _lc_spaced

# The fast path for the usual exec call, on the engine-derived features: when it holds, no rule
# of `exec_holds` or `secret_holds` can add a finding, so decision.rego skips them all (about a
# dozen rule evaluations). It is a sufficient condition only: when it fails, every rule runs.
# Why each test suffices: no trigger word means `_families` is empty; no marker means
# `_has_markers` fails (so `_word_holds` is never looked at); no ">" and no writing program
# means `written_paths` is never looked at; no configured high-risk commands; a `cwd` under the
# workspace (`cwd_in_workspace`: the first branch of `under_workspace`); no credential hint
# (`_plain_blockers`).
# Tested by the engine's VM-vs-interpreter test: the interpreter, without features, never
# takes this path, and both must decide alike.
_exec_plain if {
	input.kind == "exec"
	f := input.exec.features
	f.words & _trigger_keys == set()
	not ">" in f.operators
	# `cfg_high_risk_commands == []` (absent means []), read directly: one rule call less.
	not data.clawbutler.config.high_risk_commands != []
	f.cwd_in_workspace
	_no_blockers(f.text)
}

# No key of `_plain_blockers` in `t`. `strings.replace_n` copies the text once per key, so the
# eleven keys of `_plain_telltales` go first: most commands have none of them, and a text
# without them has no blocker (each blocker contains a marker or a telltale).
_no_blockers(t) := true if {
	strings.replace_n(_plain_telltales, t) == t
} else := strings.replace_n(_plain_blockers, t) == t

# `_markers` and `_secret_telltales` (secrets.rego); a test checks it.
_plain_telltales := {
	"curl": "", "wget": "", "stripe": "", "paypal": "", "braintree": "", "adyen": "", "mkfs": "",
	".": "", "id_": "", "/etc/s": "", "gcloud/credentials": "",
}

# `_markers` and `_secret_hints` (secrets.rego) in one object, so the fast path scans the text
# once: no key occurs exactly when `_has_markers` fails and `_maybe_secret` fails (every hint
# contains a telltale, so "no telltale or no hint" is "no hint"). Hints are lower-case, so the
# lower-cased text has one whenever the command does. A test checks it is the union.
_plain_blockers := {
	"curl": "", "wget": "", "stripe": "", "paypal": "", "braintree": "", "adyen": "", "mkfs": "",
	".ssh/": "", "/.ssh": "", ".aws/credentials": "", ".aws/config": "", ".netrc": "", ".pgpass": "",
	".git-credentials": "", ".docker/config.json": "", ".kube/config": "", ".gnupg": "", "id_rsa": "",
	"id_ed25519": "", "id_ecdsa": "", "/etc/shadow": "", "/etc/sudoers": "", ".npmrc": "", ".pypirc": "",
	".vault-token": "", "gcloud/credentials": "", "application_default_credentials.json": "", ".env": "",
}

_hold(rule, reason, risk) := {"rule": rule, "reason": reason, "risk": risk}

# The word rules below add to _word_holds, which is only looked at when the gate found one of
# their words or markers: a command without any costs one body here, not one per rule.
exec_holds contains f if {
	_gate_hit
	some f in _word_holds
}

# An `else` chain, not two bodies: a hit on the words skips the marker scan.
_gate_hit := true if _families != set() else := _has_markers

_word_holds contains _hold("exec.destructive_rm", "Recursive delete (rm -r / rm -rf) needs a human's approval", _rm_risk) if {
	"rm" in _families
	"rm" in _words
	some t in _tokens
	_recursive_flag(t)
}

_recursive_flag(t) if {
	startswith(t, "-")
	not startswith(t, "--")
	contains(t, "r")
}

_recursive_flag(t) if t == "--recursive"

_rm_everything := {"/", "/*", "~", "~/", "~/*", "*", ".", "..", "$home", "${home}"}

default _rm_risk := "high"

_rm_risk := "critical" if {
	some t in _tokens
	t in _rm_everything
}

_word_holds contains _hold("exec.privilege_escalation", "Running a command as another user (sudo/su/doas) needs a human's approval", "high") if {
	"privilege" in _families
	count(_words & {"sudo", "su", "doas", "pkexec"}) > 0
}

_shells := {"sh", "bash", "zsh", "dash", "ksh", "fish", "python", "python3", "perl", "ruby", "node", "sudo"}

_downloaders := {"curl", "wget", "fetch"}

# A downloader word before a pipe into a shell.
_word_holds contains _hold("exec.remote_script", "Running a downloaded script (curl | sh, wget | bash) needs a human's approval", "critical") if {
	"download" in _families
	"|" in _token_set
	some i, t in _tokens
	t == "|"
	_tokens[i + 1] in _shells
	some j, d in _tokens
	j < i
	d in _downloaders
}

_word_holds contains _hold("exec.remote_script", "Running a downloaded script (curl | sh, wget | bash) needs a human's approval", "critical") if {
	_has_markers
	some marker in ["$(curl", "$(wget", "<(curl", "<(wget", "`curl", "`wget"]
	contains(_lc_spaced, marker)
}

_word_holds contains _hold("exec.chmod_world_writable", "Making files writable by everyone (chmod 777) needs a human's approval", "high") if {
	"chmod" in _families
	"chmod" in _words
	some t in _tokens
	t in {"777", "0777", "666", "0666", "a+rwx", "ugo+rwx", "a+w", "o+w", "o+rwx"}
}

_word_holds contains _hold("exec.disk_format", "Formatting or wiping a disk (mkfs, wipefs) needs a human's approval", "critical") if {
	_has_markers
	some w in _words
	startswith(w, "mkfs")
}

_word_holds contains _hold("exec.disk_format", "Formatting or wiping a disk (mkfs, wipefs) needs a human's approval", "critical") if {
	"disk" in _families
	"wipefs" in _words
}

_word_holds contains _hold("exec.raw_disk_write", "Writing to a raw device (dd of=/dev/...) needs a human's approval", "critical") if {
	"dd" in _families
	"dd" in _words
	some t in _tokens
	startswith(t, "of=/dev/")
	not t in {"of=/dev/null", "of=/dev/stdout", "of=/dev/stderr"}
}

_word_holds contains _hold("exec.outbound_message", "Sending mail from the shell needs a human's approval", "high") if {
	"mail" in _families
	count(_words & {"sendmail", "mail", "mailx", "mutt", "msmtp"}) > 0
}

_pay_words := {"pay", "payment", "payments", "payout", "payouts", "transfer", "transfers", "charge", "charges", "refund", "refunds", "purchase", "checkout", "invoice", "invoices", "withdraw"}

_word_holds contains _hold("exec.payment", "Commands that move money (payments, transfers, charges) need a human's approval", "high") if {
	"payment" in _families
	count(_token_set & _pay_words) > 0
}

_word_holds contains _hold("exec.payment", "Commands that move money (payments, transfers, charges) need a human's approval", "high") if {
	_has_markers
	some marker in ["stripe", "paypal", "braintree", "adyen"]
	contains(_lc_spaced, marker)
}

exec_holds contains f if {
	some p in cfg_high_risk_commands
	glob_or_exact(p, command)
	f := _hold("exec.high_risk_configured", sprintf("Commands matching '%s' need a human's approval (configured)", [p]), "high")
}

# Workspace: input.exec.workspace plus configured roots. Without any root nothing is checked.
workspace_roots := array.concat([w | w := input.exec.workspace; is_string(w); w != ""], cfg_workspace_roots)

# The agent's own workspace first (the usual answer, and cheap when it has no trailing "/"),
# then the configured roots.
under_workspace(p) := true if {
	ws := input.exec.workspace
	is_string(ws)
	ws != ""
	startswith(concat("", [p, "/"]), concat("", [ws, "/"]))
} else := true if {
	_path_under(p, input.exec.workspace)
} else := true if {
	some r in cfg_workspace_roots
	_path_under(p, r)
}

# `p + "/"` starts with `r` (trailing "/" trimmed) + "/": covers p == r and trailing slashes on
# either side, and /home/u/proj2 is not under /home/u/proj.
_path_under(p, r) if {
	is_string(r)
	r != ""
	startswith(concat("", [p, "/"]), concat("", [trim_right(r, "/"), "/"]))
}

_harmless_targets := {"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"}

_write_programs := {"rm", "rmdir", "mv", "cp", "tee", "touch", "mkdir", "ln", "chmod", "chown", "chgrp", "truncate", "install", "rsync", "dd", "shred", "unlink", "scp"}

# Absolute or home paths named by a command that writes; redirection targets of any command.
written_paths contains p if {
	"write" in _families
	count(_words & _write_programs) > 0
	some t in raw_tokens
	p := trim_prefix(t, "of=")
	_absolute(p)
}

_redirects := ">" in input.exec.features.operators if {
	input.kind == "exec"
	input.exec.features
} else := contains(command, ">")

written_paths contains p if {
	_redirects
	some i, t in raw_tokens
	t in {">", ">>", "1>", "2>", "&>"}
	p := raw_tokens[i + 1]
}

written_paths contains p if {
	_redirects
	some t in raw_tokens
	some op in [">>", ">"]
	startswith(t, op)
	p := trim_left(t, ">")
	p != ""
	not startswith(p, "&")
}

_absolute(p) if startswith(p, "/")

_absolute(p) if startswith(p, "~")

# Most commands neither run a writing program nor redirect: `_may_write` spares them the
# three `written_paths` bodies.
_may_write := true if "write" in _families else := _redirects

exec_holds contains f if {
	_may_write
	some p in written_paths
	count(workspace_roots) > 0
	_absolute(p)
	not p in _harmless_targets
	not under_workspace(p)
	f := _hold("exec.write_outside_workspace", sprintf("Writing to %s, outside the agent's workspace, needs a human's approval", [p]), "high")
}

# `not under_workspace` first: a cwd inside the workspace (the usual case) fails there, before
# the roots are gathered.
exec_holds contains f if {
	input.kind == "exec"
	cwd := input.exec.cwd
	is_string(cwd)
	cwd != ""
	not under_workspace(cwd)
	workspace_roots != []
	f := _hold("exec.outside_workspace", sprintf("Running a command in %s, outside the agent's workspace, needs a human's approval", [cwd]), "medium")
}
