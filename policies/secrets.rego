# Credential files: shell commands and file tools that touch keys, tokens and .env files.
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

# Strings that name files in this call: the command's words, and path-like tool arguments.
_file_strings contains t if {
	some t in raw_tokens
}

_path_keys := {"path", "file_path", "filepath", "filePath", "file", "filename", "paths", "files", "target", "source", "destination", "dest", "src", "cwd", "dir", "directory"}

_file_strings contains s if {
	input.kind in {"tool_call", "plugin"}
	is_object(input.tool.args)
	some k, v in input.tool.args
	k in _path_keys
	some s in _strings(v)
}

_strings(v) := {v} if is_string(v)

_strings(v) := {s | some s in v; is_string(s)} if is_array(v)

# One pass over all the strings first: most calls name no secret, and checking every word
# against every marker is the most expensive thing this bundle would otherwise do.
_secret_hints := array.concat(_cred_markers, [".env"])

_maybe_secret if {
	haystack := concat("\n", _file_strings)
	some m in _secret_hints
	contains(haystack, m)
}

credential_paths contains s if {
	_maybe_secret
	some s in _file_strings
	is_credential_path(s)
}

secret_holds contains f if {
	count(credential_paths) > 0
	paths := sort(credential_paths)
	f := {
		"rule": "secrets.credential_access",
		"reason": "Access to a credential file (SSH keys, cloud credentials, .env) needs a human's approval",
		"risk": "high",
		"mask": paths,
	}
}
