#!/usr/bin/env python3
"""Regenerate gateway/src/attach/openclaw_providers.json from an installed OpenClaw.

attach needs, for each of OpenClaw's bundled model providers, what a sidecar provider
replacing it must declare (API kind, the vendor's base URL, the model ids with their context
window, output cap and prices) and which environment variable holds its key. OpenClaw keeps
these facts in each bundled plugin's manifest (`modelCatalog`, `setup.providers[].envVars`);
its gateway API does not expose prices or output caps (`models.list` strips them), so
ClawButler ships this table for the OpenClaw version it targets. A unit test
(`attach::catalog::tests`) compares it with the installed OpenClaw when there is one.

Usage: python3 scripts/openclaw-catalog.py [OPENCLAW_PACKAGE_DIR] > gateway/src/attach/openclaw_providers.json
"""
import json
import os
import sys

VERSION = "2026.9.6"
WIREABLE_APIS = {"openai-completions", "openai-responses", "anthropic-messages"}
MODEL_KEYS = ["id", "name", "api", "baseUrl", "reasoning", "input", "cost", "contextWindow",
              "contextTokens", "maxTokens", "thinkingLevelMap", "compat", "mediaInput", "params", "headers"]

# Bundled providers with no static catalog, or one the sidecar cannot stand in for: why.
NOT_WIREABLE = {
    "claude-cli": "runs the Claude Code CLI on the gateway host (no HTTP API call to route)",
    "google": "speaks the Gemini API (google-generative-ai); the sidecar proxies the OpenAI and Anthropic APIs only",
    "google-vertex": "speaks the Vertex AI API; the sidecar proxies the OpenAI and Anthropic APIs only",
    "google-gemini-cli": "runs the Gemini CLI on the gateway host (no HTTP API call to route)",
    "github-copilot": "signs in with a GitHub device login that OpenClaw exchanges for short-lived tokens; the sidecar cannot hold that credential",
    "ollama": "speaks the Ollama API; define an OpenAI-compatible models.providers entry for the server instead",
    "ollama-cloud": "speaks the Ollama API; the sidecar proxies the OpenAI and Anthropic APIs only",
    "clawrouter": "is itself a routing service with its own catalog protocol, not a model API",
    "apple-fm": "runs on the device itself (no network call to route)",
    "microsoft-foundry": "authenticates with Entra ID (az login), which the sidecar cannot hold",
    "fal": "is a media-generation service, not a chat model API",
    "openrouter": "has no static model catalog in OpenClaw (models are discovered at run time); add it as models.providers.openrouter with baseUrl, api and models, then re-run attach",
    "minimax": "has no static model catalog in OpenClaw (models are discovered at run time); add it as models.providers.minimax with baseUrl, api and models, then re-run attach",
    "minimax-portal": "signs in with OAuth, which the sidecar cannot hold",
    "copilot-proxy": "is a local proxy whose base URL you choose; add it as models.providers.copilot-proxy with baseUrl, then re-run attach",
    "litellm": "is a self-hosted gateway whose base URL you choose; add it as models.providers.litellm with baseUrl, api and models, then re-run attach",
    "lmstudio": "is a self-hosted server whose base URL you choose; add it as models.providers.lmstudio with baseUrl, api and models, then re-run attach",
    "vllm": "is a self-hosted server whose base URL you choose; add it as models.providers.vllm with baseUrl, api and models, then re-run attach",
    "sglang": "is a self-hosted server whose base URL you choose; add it as models.providers.sglang with baseUrl, api and models, then re-run attach",
}


def key_env(env_vars):
    for v in env_vars:
        if "API_KEY" in v:
            return v
    return env_vars[0] if env_vars else None


def main():
    pkg = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        f"~/.cache/clawbutler/openclaw-{VERSION}/node_modules/openclaw")
    ext = os.path.join(pkg, "dist", "extensions")
    providers = {}
    for plugin in sorted(os.listdir(ext)):
        path = os.path.join(ext, plugin, "openclaw.plugin.json")
        if not os.path.exists(path):
            continue
        m = json.load(open(path))
        envs = {p["id"]: p.get("envVars") or [] for p in (m.get("setup") or {}).get("providers") or []}
        catalog = (m.get("modelCatalog") or {}).get("providers") or {}
        for pid in sorted(set(m.get("providers") or []) | set(catalog)):
            c = catalog.get(pid) or {}
            entry = {"plugin": plugin}
            if pid in NOT_WIREABLE:
                entry["notWireable"] = NOT_WIREABLE[pid]
            elif c.get("api") in WIREABLE_APIS and c.get("baseUrl") and c.get("models"):
                entry.update({"api": c["api"], "baseUrl": c["baseUrl"], "envVars": envs.get(pid, []),
                              "apiKeyEnv": key_env(envs.get(pid, []))})
                if c.get("defaultUtilityModel"):
                    entry["utilityModel"] = c["defaultUtilityModel"]
                entry["models"] = [{k: x[k] for k in MODEL_KEYS if k in x} for x in c["models"]]
            else:
                entry["notWireable"] = f"has no static catalog with an OpenAI or Anthropic API in OpenClaw {VERSION}"
            providers[pid] = entry
    json.dump({"openclaw": VERSION, "providers": providers}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


main()
