# Shell commands: exec approvals, and tool calls that carry a shell command (OpenClaw's exec
# tool through the plugin gate, MCP shell tools). Matching is on words, not a shell parser:
# it errs towards holding, and a grant or an edited rule clears false positives.
#
# Cost note: every rule call, builtin call and loop step costs a fraction of a microsecond,
# and a decision runs on every command. So the word rules (in `_word_holds`) are gated: the
# engine reports which trigger words (`feature_words`) and which substrings
# (`feature_substrings`) occur in the command, and only when one of them is there do the rules
# walk the words. Most commands name none of them.
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
} else := input.tool.features.text if {
	input.tool.features
} else := _d_text

# Words as written (paths keep their case) and lower-cased.
raw_tokens := input.exec.features.raw_tokens if {
	input.kind == "exec"
	input.exec.features
} else := input.tool.features.raw_tokens if {
	input.tool.features
} else := _d_raw_tokens

_tokens := input.exec.features.tokens if {
	input.kind == "exec"
	input.exec.features
} else := input.tool.features.tokens if {
	input.tool.features
} else := _d_tokens

_token_set := {t | some t in _tokens}

# Program names: the last path element of every word, so /usr/bin/sudo counts as sudo.
_words := input.exec.features.words if {
	input.kind == "exec"
	input.exec.features
} else := input.tool.features.words if {
	input.tool.features
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

# Redirection targets as written: every piece of a word after a `>` that does not name a
# descriptor (`>out`, `2>>log`, `x>/tmp/y`, not `2>&1`), and the word after one ending in `>`
# (`>`, `2>`, `&>>`). Words, not a shell parser: `a->b` counts `b`, which errs towards holding.
_d_redirects := {p |
	some t in _d_raw_tokens
	parts := split(t, ">")
	some i, p in parts
	i > 0
	p != ""
	not startswith(p, "&")
} | {p |
	some i, t in _d_raw_tokens
	endswith(t, ">")
	p := _d_raw_tokens[i + 1]
}

# Absolute and home paths among the words as written, and the values of `name=value` words
# that are such paths (`of=/dev/sda`, `--output=/tmp/x`).
_d_paths := {t | some t in _d_raw_tokens; _absolute(t)} | {p |
	some t in _d_raw_tokens
	parts := split(t, "=")
	count(parts) > 1
	p := concat("=", array.slice(parts, 1, count(parts)))
	_absolute(p)
}

_d_flags := {t | some t in _d_tokens; startswith(t, "-")}

# Every path of `_d_paths` is the workspace or below it (true when there is none).
_d_paths_in_workspace := true if {
	_d_paths == set()
} else := true if {
	ws := input.exec.workspace
	is_string(ws)
	ws != ""
	every p in _d_paths {
		startswith(concat("", [p, "/"]), concat("", [ws, "/"]))
	}
} else := false

exec_features_derived := {
	"text": _d_text, "tokens": _d_tokens, "raw_tokens": _d_raw_tokens, "words": _d_words,
	"program": _d_program, "flags": _d_flags, "operators": _d_operators, "redirects": _d_redirects,
	"paths": _d_paths, "paths_in_workspace": _d_paths_in_workspace,
	"cwd_in_workspace": _d_cwd_in_workspace,
	"triggers": {family: found |
		some family, members in feature_words
		found := _d_words & members
		found != set()
	},
	"hits": {group: found |
		some group, members in feature_substrings
		found := {m | some m in members; contains(_d_text, m)}
		found != set()
	},
}

# Declared to the engine, which reports for every exec command, per group, the trigger words
# among its words (`features.triggers`, e.g. `{"rm": {"rm"}, "write": {"rm"}}`) and the
# substrings that occur in its lower-cased text (`features.hits`, e.g. `{"secrets": {".env"}}`),
# found in Rust (docs/policy-input.md §1). Both must be constants. The word groups are the rule
# families of `_trigger_words`, the substring groups the word rules' markers and the credential
# hints (tests check all three).
feature_words := {
	"rm": {"rm"},
	"privilege": {"sudo", "su", "doas", "pkexec"},
	"chmod": {"chmod"},
	"disk": {"wipefs"},
	"dd": {"dd"},
	"mail": {"sendmail", "mail", "mailx", "mutt", "msmtp"},
	"download": {"curl", "wget", "fetch"},
	"payment": {
		"pay", "payment", "payments", "payout", "payouts", "transfer", "transfers", "charge", "charges",
		"refund", "refunds", "purchase", "checkout", "invoice", "invoices", "withdraw",
	},
	"write": {
		"rm", "chmod", "dd", "rmdir", "mv", "cp", "tee", "touch", "mkdir", "ln", "chown", "chgrp",
		"truncate", "install", "rsync", "shred", "unlink", "scp",
	},
}

feature_substrings := {
	"markers": {"curl", "wget", "stripe", "paypal", "braintree", "adyen", "mkfs"},
	"secrets": {
		".ssh/", "/.ssh", ".aws/credentials", ".aws/config", ".netrc", ".pgpass", ".git-credentials",
		".docker/config.json", ".kube/config", ".gnupg", "id_rsa", "id_ed25519", "id_ecdsa", "/etc/shadow",
		"/etc/sudoers", ".npmrc", ".pypirc", ".vault-token", "gcloud/credentials",
		"application_default_credentials.json", ".env",
	},
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

# Rule families whose words occur. With features: the groups of the engine's `triggers` (no
# loop over the command). Without: one pass over the gate text's pieces.
# (Every trigger word is a program name: a token naming one has no "/", so it is in _words.)
# (The engine leaves `triggers` out when the bundle's declaration is malformed: then this falls
# back too, rather than finding no family. The field is tested, not bound to a variable: with a
# binding, regorus's bytecode VM did not fall through to the `else`, where its interpreter does.)
_families := object.keys(input.exec.features.triggers) if {
	input.kind == "exec"
	input.exec.features.triggers
} else := object.keys(input.tool.features.triggers) if {
	input.tool.features.triggers
} else := {f |
	some w in split(_gate_text, " ")
	some f in _trigger_words[w]
}

# Substrings some rules look for anywhere in a word; the rules re-check which one. (No marker
# contains a space or shell operator, so the spaced text has one exactly when the command does.)
_markers := {"curl": "", "wget": "", "stripe": "", "paypal": "", "braintree": "", "adyen": "", "mkfs": ""}

# With features, the engine's `hits` tell; without, one `strings.replace_n` call (it changes the
# text exactly when one of its keys occurs).
_has_markers := true if {
	input.kind == "exec"
	input.exec.features.hits.markers
} else := false if {
	input.kind == "exec"
	input.exec.features.hits
} else := true if {
	input.tool.features.hits.markers
} else := false if {
	input.tool.features.hits
} else := strings.replace_n(_markers, _lc_spaced) != _lc_spaced

_hold(rule, reason, risk) := {"rule": rule, "reason": reason, "risk": risk}

# The word rules below add to _word_holds, which is only looked at when the gate found one of
# their words or markers: a command without any costs one body here, not one per rule.
exec_holds contains f if {
	_gate_hit
	some f in _word_holds
}

# An `else` chain, not two bodies: a hit on the words skips the marker scan. The "write" family
# has no word rule (it feeds `written_paths`), so cp, mv, mkdir, touch, ... skip the word rules.
_gate_hit := true if _families - {"write"} != set() else := _has_markers

# Every definition of a partial rule is evaluated, so the word rules come in three groups: the
# families many allowed commands name (rm, chmod, download) have their rules here; the rules of
# the rarer families (`_rare_word_holds`) and of the markers (`_marker_word_holds`) are looked at
# only when one of theirs occurs. (The families are listed here once more, as a literal: a rule
# holding them would be a rule call on every such command; a test checks the list.)
_word_holds contains f if {
	_families & {"privilege", "disk", "dd", "mail", "payment"} != set()
	some f in _rare_word_holds
}

_word_holds contains f if {
	_has_markers
	some f in _marker_word_holds
}

_word_holds contains _hold("exec.destructive_rm", "Recursive delete (rm -r / rm -rf) needs a human's approval", _rm_risk) if {
	"rm" in _families
	"rm" in _words
	_recursive
}

# A recursive flag: `r` in a group of short flags (-r, -rf, -fR), or --recursive. (The loop is
# written out, over the option words only: a function call per word costs several times its
# tests.)
_recursive if "--recursive" in _flags

_recursive if {
	some t in _flags
	not startswith(t, "--")
	contains(t, "r")
}

# The words starting with "-" (`features.flags`).
_flags := input.exec.features.flags if {
	input.kind == "exec"
	input.exec.features
} else := input.tool.features.flags if {
	input.tool.features
} else := _d_flags

_rm_everything := {"/", "/*", "~", "~/", "~/*", "*", ".", "..", "$home", "${home}"}

default _rm_risk := "high"

_rm_risk := "critical" if {
	some t in _tokens
	t in _rm_everything
}

_rare_word_holds contains _hold("exec.privilege_escalation", "Running a command as another user (sudo/su/doas) needs a human's approval", "high") if {
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

_marker_word_holds contains _hold("exec.remote_script", "Running a downloaded script (curl | sh, wget | bash) needs a human's approval", "critical") if {
	some marker in ["$(curl", "$(wget", "<(curl", "<(wget", "`curl", "`wget"]
	contains(_lc_spaced, marker)
}

_word_holds contains _hold("exec.chmod_world_writable", "Making files writable by everyone (chmod 777) needs a human's approval", "high") if {
	"chmod" in _families
	"chmod" in _words
	# One set operation, not a loop over the words (a mode is never a path, so it is its own
	# last path element).
	_words & {"777", "0777", "666", "0666", "a+rwx", "ugo+rwx", "a+w", "o+w", "o+rwx"} != set()
}

_marker_word_holds contains _hold("exec.disk_format", "Formatting or wiping a disk (mkfs, wipefs) needs a human's approval", "critical") if {
	some w in _words
	startswith(w, "mkfs")
}

_rare_word_holds contains _hold("exec.disk_format", "Formatting or wiping a disk (mkfs, wipefs) needs a human's approval", "critical") if {
	"disk" in _families
	"wipefs" in _words
}

_rare_word_holds contains _hold("exec.raw_disk_write", "Writing to a raw device (dd of=/dev/...) needs a human's approval", "critical") if {
	"dd" in _families
	"dd" in _words
	some t in _tokens
	startswith(t, "of=/dev/")
	not t in {"of=/dev/null", "of=/dev/stdout", "of=/dev/stderr"}
}

_rare_word_holds contains _hold("exec.outbound_message", "Sending mail from the shell needs a human's approval", "high") if {
	"mail" in _families
	count(_words & {"sendmail", "mail", "mailx", "mutt", "msmtp"}) > 0
}

_pay_words := {"pay", "payment", "payments", "payout", "payouts", "transfer", "transfers", "charge", "charges", "refund", "refunds", "purchase", "checkout", "invoice", "invoices", "withdraw"}

_rare_word_holds contains _hold("exec.payment", "Commands that move money (payments, transfers, charges) need a human's approval", "high") if {
	"payment" in _families
	count(_token_set & _pay_words) > 0
}

_marker_word_holds contains _hold("exec.payment", "Commands that move money (payments, transfers, charges) need a human's approval", "high") if {
	some marker in ["stripe", "paypal", "braintree", "adyen"]
	contains(_lc_spaced, marker)
}

# The config key read directly (absent = no patterns): one rule call less on every command.
exec_holds contains f if {
	some p in data.clawbutler.config.high_risk_commands
	glob_or_exact(p, command)
	f := _hold("exec.high_risk_configured", sprintf("Commands matching '%s' need a human's approval (configured)", [p]), "high")
}

# Workspace: the agent's (input.exec.workspace, or input.plugin.workspace for plugin-gate calls)
# plus configured roots. Without any root nothing is checked.
workspace_roots := array.concat([w | w := _agent_workspace; is_string(w); w != ""], cfg_workspace_roots)

_agent_workspace := input.exec.workspace if input.kind == "exec" else := input.plugin.workspace if input.kind == "plugin"

# The agent's own workspace first (the usual answer, and cheap when it has no trailing "/"),
# then the configured roots.
under_workspace(p) := true if {
	startswith(concat("", [p, "/"]), _ws_slash)
} else := true if {
	_path_under(p, _agent_workspace)
} else := true if {
	some r in cfg_workspace_roots
	_path_under(p, r)
}

# The agent's workspace + "/", once per decision.
_ws_slash := concat("", [ws, "/"]) if {
	input.kind == "exec"
	ws := input.exec.workspace
	is_string(ws)
	ws != ""
} else := concat("", [ws, "/"]) if {
	input.kind == "plugin"
	ws := input.plugin.workspace
	is_string(ws)
	ws != ""
}

# `p + "/"` starts with `r` (trailing "/" trimmed) + "/": covers p == r and trailing slashes on
# either side, and /home/u/proj2 is not under /home/u/proj.
_path_under(p, r) if {
	is_string(r)
	r != ""
	startswith(concat("", [p, "/"]), concat("", [trim_right(r, "/"), "/"]))
}

_harmless_targets := {"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty", "/dev/zero", "/dev/random", "/dev/urandom"}

_write_programs := {"rm", "rmdir", "mv", "cp", "tee", "touch", "mkdir", "ln", "chmod", "chown", "chgrp", "truncate", "install", "rsync", "dd", "shred", "unlink", "scp"}

# Absolute or home paths named by a command that writes; redirection targets of any command.
written_paths contains p if {
	some p in _paths
	"write" in _families
	count(_words & _write_programs) > 0
}

_paths := input.exec.features.paths if {
	input.kind == "exec"
	input.exec.features
} else := input.tool.features.paths if {
	input.tool.features
} else := _d_paths

_redirects := ">" in input.exec.features.operators if {
	input.kind == "exec"
	input.exec.features
} else := ">" in input.tool.features.operators if {
	input.tool.features
} else := contains(command, ">")

# Redirection targets (`_d_redirects`), from the engine when it derived them.
written_paths contains p if {
	_redirects
	some p in _redirect_targets
}

_redirect_targets := input.exec.features.redirects if {
	input.kind == "exec"
	input.exec.features
} else := input.tool.features.redirects if {
	input.tool.features
} else := _d_redirects

# One body (a function with two definitions evaluates both).
_absolute(p) if substring(p, 0, 1) in {"/", "~"}

# Most commands neither run a writing program nor redirect: `_may_write` spares them the
# three `written_paths` bodies.
_may_write := true if "write" in _families else := _redirects

exec_holds contains f if {
	_may_write
	some p in written_paths
	# Cheapest first: most written paths are relative or inside the workspace; the roots are
	# gathered last.
	_absolute(p)
	not p in _harmless_targets
	not under_workspace(p)
	count(workspace_roots) > 0
	f := _hold("exec.write_outside_workspace", sprintf("Writing to %s, outside the agent's workspace, needs a human's approval", [p]), "high")
}

# A cwd inside the workspace (the usual case) fails at the engine's `cwd_in_workspace` (the first
# branch of `under_workspace`; without features the test is undefined, so `not` passes it on),
# or at `not under_workspace`, before the roots are gathered.
exec_holds contains f if {
	input.kind == "exec"
	not input.exec.features.cwd_in_workspace
	cwd := input.exec.cwd
	is_string(cwd)
	cwd != ""
	not under_workspace(cwd)
	workspace_roots != []
	f := _hold("exec.outside_workspace", sprintf("Running a command in %s, outside the agent's workspace, needs a human's approval", [cwd]), "medium")
}

# The plugin gate's exec tool runs in `workdir` (default: the workspace).
exec_holds contains f if {
	input.kind == "plugin"
	cwd := input.tool.args.workdir
	is_string(cwd)
	_absolute(cwd)
	not under_workspace(cwd)
	workspace_roots != []
	f := _hold("exec.outside_workspace", sprintf("Running a command in %s, outside the agent's workspace, needs a human's approval", [cwd]), "medium")
}
