-- wrk script for `scripts/load.sh saturate`: the same chat-completion POST as benches/proxy_load.rs.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are a helpful agent."},{"role":"user","content":"Say hello to the benchmark."}]}'
