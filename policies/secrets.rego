# Credential files: shell commands and file tools that touch keys, tokens and .env files.
#
# Cost note: the markers are substrings, so finding them means scanning every string. One
# `strings.replace_n` call (it changes the string exactly when one of its keys occurs) first
# asks whether any marker's telltale part (".", "id_", "/etc/s", "gcloud/credentials") is there
# at all; most commands have none, and only the others pay for the full marker scan.
package clawbutler

_cred_markers := [
	".ssh/", "/.ssh", ".aws/credentials", ".aws/config", ".netrc", ".pgpass", ".git-credentials",
	".docker/config.json", ".kube/config", ".gnupg", "id_rsa", "id_ed25519", "id_ecdsa",
	"/etc/shadow", "/etc/sudoers", ".npmrc", ".pypirc", ".vault-token", "gcloud/credentials",
	"application_default_credentials.json",
]

# .env files hold secrets; their checked-in templates do not.
_env_templates := {".env.example", ".env.sample", ".env.template", ".env.dist"}

is_credential_path(s) if {
	some m in _cred_markers
	contains(s, m)
}

is_credential_path(s) if {
	parts := split(s, "/")
	b := parts[count(parts) - 1]
	_dotenv(b)
}

_dotenv(b) if b == ".env"

_dotenv(b) if {
	startswith(b, ".env.")
	not b in _env_templates
}

# Strings that may name a file: the command's words, and path-like tool arguments.
_file_strings contains t if {
	some t in raw_tokens
}

# Declared to the engine, which gathers the strings under these argument names once per tool
# call and looks for `feature_substrings` in them (`input.tool.arg_features`, docs/policy-input.md
# §1); `tool_arg_features_derived` derives the same without it (a unit test checks both agree).
tool_path_keys := _path_keys

_path_keys := {"path", "file_path", "filepath", "filePath", "file", "filename", "paths", "files", "target", "source", "destination", "dest", "src", "cwd", "dir", "directory"}

_tool_path_strings := input.tool.arg_features.paths if {
	input.tool.arg_features
} else := _d_tool_arg_paths

tool_arg_features_derived := {
	"paths": _d_tool_arg_paths,
	"hits": {group: found |
		some group, members in feature_substrings
		found := {m | some m in members; some s in _d_tool_arg_paths; contains(s, m)}
		found != set()
	},
}

_d_tool_arg_paths := {s |
	input.kind in {"tool_call", "plugin"}
	is_object(input.tool.args)
	some k, v in input.tool.args
	k in _path_keys
	some s in _strings(v)
}

_file_strings contains s if {
	some s in _tool_path_strings
}

# Plugin-gate file tools: the paths the engine resolved (apply_patch's targets included).
_file_strings contains s if {
	input.kind == "plugin"
	some s in input.plugin.paths
}

_strings(v) := {v} if is_string(v)

_strings(v) := {s | some s in v; is_string(s)} if is_array(v)

# Every marker, plus ".env", contains one of these keys.
_secret_telltales := {".": "", "id_": "", "/etc/s": "", "gcloud/credentials": ""}

# Every marker, plus ".env" (the dotenv files).
_secret_hints := {
	".ssh/": "", "/.ssh": "", ".aws/credentials": "", ".aws/config": "", ".netrc": "", ".pgpass": "",
	".git-credentials": "", ".docker/config.json": "", ".kube/config": "", ".gnupg": "", "id_rsa": "",
	"id_ed25519": "", "id_ecdsa": "", "/etc/shadow": "", "/etc/sudoers": "", ".npmrc": "", ".pypirc": "",
	".vault-token": "", "gcloud/credentials": "", "application_default_credentials.json": "", ".env": "",
}

# A marker can only occur inside one word (markers have no spaces or shell operators), so the
# whole command line stands for its words here. With features the engine's `hits` tell (they
# are found in the lower-cased text, so they may say yes where the command's case says no:
# this is a gate, `credential_paths` decides). One `else` chain: a rule with several bodies
# evaluates all of them.
_maybe_secret := true if {
	input.kind == "exec"
	input.exec.features.hits.secrets
} else := false if {
	input.kind == "exec"
	input.exec.features.hits
} else := true if {
	input.tool.features.hits.secrets
} else := true if {
	# A hint in a path-like tool argument (the engine's `arg_features`, found as written, like
	# the `strings.replace_n` branch below; `feature_substrings.secrets` are `_secret_hints`).
	input.tool.arg_features.hits.secrets
} else := false if {
	# None there, and no command (most MCP calls): the branches below cannot hold either.
	input.kind == "tool_call"
	input.tool.arg_features
	not is_string(input.tool.args.command)
} else := _maybe_secret_scan

# The text scans of `_maybe_secret`, in a rule of their own: their registers (the widest of the
# chain) would otherwise be reset by every branch above as well (see `_hold_rest`).
_maybe_secret_scan := true if {
	strings.replace_n(_secret_telltales, command) != command
	strings.replace_n(_secret_hints, command) != command
} else := true if {
	input.kind != "exec"
	some s in _tool_path_strings
	strings.replace_n(_secret_hints, s) != s
} else := true if {
	input.kind == "plugin"
	some s in input.plugin.paths
	strings.replace_n(_secret_hints, s) != s
}

credential_paths contains s if {
	_maybe_secret
	some s in _file_strings
	is_credential_path(s)
}

secret_holds contains f if {
	_maybe_secret
	count(credential_paths) > 0
	paths := sort(credential_paths)
	f := {
		"rule": "secrets.credential_access",
		"reason": "Access to a credential file (SSH keys, cloud credentials, .env) needs a human's approval",
		"risk": "high",
		"mask": paths,
	}
}
