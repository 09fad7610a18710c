# Shell commands: exec approvals, and tool calls that carry a shell command (OpenClaw's exec
# tool through the plugin gate, MCP shell tools). Matching is on words, not a shell parser:
# it errs towards holding, and a grant or an edited rule clears false positives.
package clawbutler

# The command line under decision.
command := input.exec.command if {
	input.kind == "exec"
	input.exec.command != ""
}

command := concat(" ", input.exec.argv) if {
	input.kind == "exec"
	input.exec.command == ""
}

command := input.tool.args.command if {
	input.kind in {"tool_call", "plugin"}
	is_string(input.tool.args.command)
}

# Shell operators become separate words: "a;b" -> "a ; b". `||` is not a pipe.
_spaced := replace(replace(replace(replace(replace(replace(command, "\t", " "), "\n", " "), ";", " ; "), "&&", " && "), "||", " ; "), "|", " | ")

# Words as written (paths keep their case) and lower-cased.
raw_tokens := [t | some t in split(_spaced, " "); t != ""]

_lc := lower(command)

_tokens := [lower(t) | some t in raw_tokens]

_token_set := {t | some t in _tokens}

# Program names: the last path element of every word, so /usr/bin/sudo counts as sudo.
_words := {w |
	some t in _tokens
	parts := split(t, "/")
	w := parts[count(parts) - 1]
}

_hold(rule, reason, risk) := {"rule": rule, "reason": reason, "risk": risk}

exec_holds contains _hold("exec.destructive_rm", "Recursive delete (rm -r / rm -rf) needs a human's approval", _rm_risk) if {
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

exec_holds contains _hold("exec.privilege_escalation", "Running a command as another user (sudo/su/doas) needs a human's approval", "high") if {
	count(_words & {"sudo", "su", "doas", "pkexec"}) > 0
}

_shells := {"sh", "bash", "zsh", "dash", "ksh", "fish", "python", "python3", "perl", "ruby", "node", "sudo"}

_downloaders := {"curl", "wget", "fetch"}

exec_holds contains _hold("exec.remote_script", "Running a downloaded script (curl | sh, wget | bash) needs a human's approval", "critical") if {
	"|" in _token_set
	some i, t in _tokens
	t == "|"
	_tokens[i + 1] in _shells
	some j, d in _tokens
	j < i
	d in _downloaders
}

exec_holds contains _hold("exec.remote_script", "Running a downloaded script (curl | sh, wget | bash) needs a human's approval", "critical") if {
	some marker in ["$(curl", "$(wget", "<(curl", "<(wget", "`curl", "`wget"]
	contains(_lc, marker)
}

exec_holds contains _hold("exec.chmod_world_writable", "Making files writable by everyone (chmod 777) needs a human's approval", "high") if {
	"chmod" in _words
	some t in _tokens
	t in {"777", "0777", "666", "0666", "a+rwx", "ugo+rwx", "a+w", "o+w", "o+rwx"}
}

exec_holds contains _hold("exec.disk_format", "Formatting or wiping a disk (mkfs, wipefs) needs a human's approval", "critical") if {
	some w in _words
	startswith(w, "mkfs")
}

exec_holds contains _hold("exec.disk_format", "Formatting or wiping a disk (mkfs, wipefs) needs a human's approval", "critical") if "wipefs" in _words

exec_holds contains _hold("exec.raw_disk_write", "Writing to a raw device (dd of=/dev/...) needs a human's approval", "critical") if {
	"dd" in _words
	some t in _tokens
	startswith(t, "of=/dev/")
	not t in {"of=/dev/null", "of=/dev/stdout", "of=/dev/stderr"}
}

exec_holds contains _hold("exec.outbound_message", "Sending mail from the shell needs a human's approval", "high") if {
	count(_words & {"sendmail", "mail", "mailx", "mutt", "msmtp"}) > 0
}

_pay_words := {"pay", "payment", "payments", "payout", "payouts", "transfer", "transfers", "charge", "charges", "refund", "refunds", "purchase", "checkout", "invoice", "invoices", "withdraw"}

exec_holds contains _hold("exec.payment", "Commands that move money (payments, transfers, charges) need a human's approval", "high") if {
	count(_token_set & _pay_words) > 0
}

exec_holds contains _hold("exec.payment", "Commands that move money (payments, transfers, charges) need a human's approval", "high") if {
	some marker in ["stripe", "paypal", "braintree", "adyen"]
	contains(_lc, marker)
}

exec_holds contains f if {
	some p in cfg.high_risk_commands
	glob_or_exact(p, command)
	f := _hold("exec.high_risk_configured", sprintf("Commands matching '%s' need a human's approval (configured)", [p]), "high")
}

# Workspace: input.exec.workspace plus configured roots. Without any root nothing is checked.
workspace_roots := array.concat([w | w := input.exec.workspace; is_string(w); w != ""], cfg.workspace_roots)

under_workspace(p) if {
	some r in workspace_roots
	_path_under(p, r)
}

_path_under(p, r) if p == r

_path_under(p, r) if p == trim_right(r, "/")

_path_under(p, r) if startswith(p, concat("", [trim_right(r, "/"), "/"]))

_harmless_targets := {"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"}

_write_programs := {"rm", "rmdir", "mv", "cp", "tee", "touch", "mkdir", "ln", "chmod", "chown", "chgrp", "truncate", "install", "rsync", "dd", "shred", "unlink", "scp"}

# Absolute or home paths named by a command that writes; redirection targets of any command.
written_paths contains p if {
	count(_words & _write_programs) > 0
	some t in raw_tokens
	p := trim_prefix(t, "of=")
	_absolute(p)
}

written_paths contains p if {
	contains(command, ">")
	some i, t in raw_tokens
	t in {">", ">>", "1>", "2>", "&>"}
	p := raw_tokens[i + 1]
}

written_paths contains p if {
	contains(command, ">")
	some t in raw_tokens
	some op in [">>", ">"]
	startswith(t, op)
	p := trim_left(t, ">")
	p != ""
	not startswith(p, "&")
}

_absolute(p) if startswith(p, "/")

_absolute(p) if startswith(p, "~")

exec_holds contains f if {
	count(workspace_roots) > 0
	some p in written_paths
	_absolute(p)
	not p in _harmless_targets
	not under_workspace(p)
	f := _hold("exec.write_outside_workspace", sprintf("Writing to %s, outside the agent's workspace, needs a human's approval", [p]), "high")
}

exec_holds contains f if {
	input.kind == "exec"
	count(workspace_roots) > 0
	cwd := input.exec.cwd
	is_string(cwd)
	cwd != ""
	not under_workspace(cwd)
	f := _hold("exec.outside_workspace", sprintf("Running a command in %s, outside the agent's workspace, needs a human's approval", [cwd]), "medium")
}
