//! The scripted server's own behaviour, so it cannot drift from the real APIs it stands in for.

use super::*;
use serde_json::json;

fn chat_body(prompt: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a test."},
        {"role": "user", "content": prompt},
    ]})
}

async fn run(reply: Reply) -> (StatusCode, Bytes) {
    (reply.status, reply.body.into_bytes().await)
}

/// `(event name, data)` for each SSE frame.
fn frames(body: &[u8]) -> Vec<(Option<String>, String)> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with("\n\n"), "stream must end with a blank line: {text:?}");
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let mut name = None;
            let mut data = String::new();
            for line in f.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d.to_owned();
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data)
        })
        .collect()
}

fn json_frames(body: &[u8]) -> Vec<Value> {
    frames(body).into_iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(&d).unwrap()).collect()
}

fn opts() -> UpstreamOptions {
    UpstreamOptions::default()
}

#[tokio::test]
async fn chat_stream_with_include_usage_ends_with_a_usage_chunk_and_null_usage_elsewhere() {
    let mut body = chat_body("hi there");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, bytes) = run(openai::chat(&body, &opts())).await;
    assert_eq!(status, StatusCode::OK);
    let raw = frames(&bytes);
    assert_eq!(raw.last().unwrap().1, "[DONE]");
    let chunks = json_frames(&bytes);
    let (last, rest) = chunks.split_last().unwrap();
    for c in rest {
        assert_eq!(c["usage"], Value::Null, "every chunk but the last carries usage:null: {c}");
        assert!(c.as_object().unwrap().contains_key("usage"));
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], json!(5), "{DEFAULT_REPLY:?} has 5 words");
    let prompt_tokens = last["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(prompt_tokens, ("You are a test.".len() + "hi there".len()).div_ceil(4) as u64);
    assert_eq!(last["usage"]["total_tokens"].as_u64().unwrap(), prompt_tokens + 5);
    let text: String = rest.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, DEFAULT_REPLY);
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_field_at_all() {
    for stream_options in [None, Some(json!({"include_usage": false}))] {
        let mut body = chat_body("hi there");
        body["stream"] = json!(true);
        if let Some(so) = stream_options {
            body["stream_options"] = so;
        }
        let (_, bytes) = run(openai::chat(&body, &opts())).await;
        let chunks = json_frames(&bytes);
        assert!(chunks.iter().all(|c| !c.as_object().unwrap().contains_key("usage")));
        assert!(chunks.iter().all(|c| c["choices"].as_array().unwrap().len() == 1));
        assert_eq!(frames(&bytes).last().unwrap().1, "[DONE]");
    }
}

#[tokio::test]
async fn same_conversation_gives_the_same_bytes_whatever_the_other_fields() {
    let a = chat_body("determinism please");
    let mut b = a.clone();
    b["tools"] = json!([{"type": "function", "function": {"name": "x"}}]);
    b["max_completion_tokens"] = json!(99);
    let (_, ba) = run(openai::chat(&a, &opts())).await;
    let (_, bb) = run(openai::chat(&b, &opts())).await;
    assert_eq!(ba, bb);

    let mut sa = a.clone();
    sa["stream"] = json!(true);
    let mut sb = sa.clone();
    sb["stream_options"] = json!({"include_usage": true});
    let ca = json_frames(&run(openai::chat(&sa, &opts())).await.1);
    let cb = json_frames(&run(openai::chat(&sb, &opts())).await.1);
    assert_eq!(ca[0]["id"], cb[0]["id"]);
    assert_eq!(ca[0]["created"], cb[0]["created"]);

    let mut other = a.clone();
    other["messages"][1]["content"] = json!("a different prompt");
    let (_, bo) = run(openai::chat(&other, &opts())).await;
    let (ja, jo): (Value, Value) = (serde_json::from_slice(&ba).unwrap(), serde_json::from_slice(&bo).unwrap());
    assert_ne!(ja["id"], jo["id"]);
}

#[tokio::test]
async fn openclaw_internal_context_message_is_not_the_prompt() {
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "[Mon 2026-11-23 22:39 UTC] RUN_EXEC: echo hi"}]},
        {"role": "user", "content": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>> FAIL500 HANG"},
    ]});
    let (status, bytes) = run(openai::chat(&body, &opts())).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "exec");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"command": "echo hi"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn run_exec_answers_text_once_the_tool_result_is_back() {
    let long = "x".repeat(300);
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "RUN_EXEC: ls"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "exec", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": long},
    ]});
    let v: Value = serde_json::from_slice(&run(openai::chat(&body, &opts())).await.1).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], format!("exec finished: {}", "x".repeat(200)));
    // A new RUN_EXEC prompt after that result asks again.
    let mut again = body.clone();
    again["messages"].as_array_mut().unwrap().push(json!({"role": "user", "content": "RUN_EXEC: pwd"}));
    let v: Value = serde_json::from_slice(&run(openai::chat(&again, &opts())).await.1).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn run_tool_calls_any_tool_and_reports_its_result() {
    let body = chat_body(r#"please RUN_TOOL:write {"path": "/tmp/x y", "content": "a b"}"#);
    let v: Value = serde_json::from_slice(&run(openai::chat(&body, &opts())).await.1).unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "write");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"path": "/tmp/x y", "content": "a b"}));
    let patch = chat_body("RUN_TOOL:apply_patch *** Begin Patch");
    let v: Value = serde_json::from_slice(&run(openai::chat(&patch, &opts())).await.1).unwrap();
    let args = v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap().to_string();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"input": "*** Begin Patch"}));
    let done = json!({"model": "m", "messages": [
        {"role": "user", "content": "RUN_TOOL:message {\"target\": \"+1555\"}"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "message", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ClawButler policy blocked this message call"},
    ]});
    let v: Value = serde_json::from_slice(&run(openai::chat(&done, &opts())).await.1).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "tool message finished: ClawButler policy blocked this message call"
    );
    // Anthropic's shape carries the same call.
    let anth = json!({"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [
        {"role": "user", "content": "RUN_TOOL:web_fetch {\"url\": \"https://x.y\"}"}]});
    let v: Value = serde_json::from_slice(&run(anthropic::messages(&anth, &opts())).await.1).unwrap();
    assert_eq!(v["content"][0]["name"], "web_fetch");
    assert_eq!(v["content"][0]["input"]["url"], "https://x.y");
}

#[tokio::test]
async fn chat_stream_tool_call_arguments_reassemble() {
    let mut body = chat_body("RUN_EXEC: echo 'a b' && ls -la");
    body["stream"] = json!(true);
    let chunks = json_frames(&run(openai::chat(&body, &opts())).await.1);
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"command": "echo 'a b' && ls -la"}));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn failures_use_the_route_shape() {
    let (s, b) = run(openai::chat(&chat_body("please FAIL500"), &opts())).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["error"]["type"], "server_error");
    let (s, b) = run(openai::chat(&chat_body("FAIL429"), &opts())).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["error"]["code"], "rate_limit_exceeded");
    let anth =
        json!({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "FAIL429"}]});
    let (s, b) = run(anthropic::messages(&anth, &opts())).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("rate_limit_error")));
}

#[tokio::test]
async fn daily_limit_refuses_only_the_named_model_with_a_retry_after() {
    let limited = openai::chat(&chat_body("hi DAILY_LIMIT:gpt-4o-mini"), &opts());
    assert_eq!((limited.status, limited.retry_after), (StatusCode::TOO_MANY_REQUESTS, Some(3600)));
    let v: Value = serde_json::from_slice(&run(limited).await.1).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("daily limit reached"), "{v}");
    let other = openai::chat(&chat_body("hi DAILY_LIMIT:claude-sonnet-5"), &opts());
    assert_eq!((other.status, other.retry_after), (StatusCode::OK, None), "another model is answered");
    let anth = json!({"model": "claude-sonnet-5", "max_tokens": 10,
                      "messages": [{"role": "user", "content": "DAILY_LIMIT:claude-sonnet-5"}]});
    let r = anthropic::messages(&anth, &opts());
    assert_eq!((r.status, r.retry_after), (StatusCode::TOO_MANY_REQUESTS, Some(3600)));
    let v: Value = serde_json::from_slice(&run(r).await.1).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("daily limit reached"), "{v}");
}

#[tokio::test]
async fn anthropic_stream_has_the_real_event_sequence_and_usage() {
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 100, "stream": true,
        "system": [{"type": "text", "text": "sys"}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello MARK:abc CACHED"},
            {"type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>> ignored"}]}]});
    let (_, bytes) = run(anthropic::messages(&body, &opts())).await;
    let f = frames(&bytes);
    let names: Vec<&str> = f.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    let data: Vec<Value> = f.iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    for ((n, _), d) in f.iter().zip(&data) {
        assert_eq!(d["type"].as_str(), n.as_deref(), "data.type matches the event line");
    }
    let usage = &data[0]["message"]["usage"];
    assert_eq!(usage["output_tokens"], 1);
    let total_chars = "sys".len()
        + "hello MARK:abc CACHED".len()
        + "\n".len()
        + "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>> ignored".len();
    let input = total_chars.div_ceil(4) as u64;
    assert_eq!(usage["cache_read_input_tokens"].as_u64().unwrap(), input / 2);
    assert_eq!(usage["input_tokens"].as_u64().unwrap(), input - input / 2);
    let text: String = data.iter().filter_map(|d| d["delta"]["text"].as_str()).collect();
    assert_eq!(text, format!("{DEFAULT_REPLY} [abc]"));
    let delta = &data[data.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 6);
}

#[tokio::test]
async fn anthropic_tool_use_then_tool_result() {
    let first = json!({"model": "claude-haiku-4-5", "max_tokens": 100,
        "messages": [{"role": "user", "content": "RUN_EXEC: uname -a"}]});
    let v: Value = serde_json::from_slice(&run(anthropic::messages(&first, &opts())).await.1).unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][0]["input"], json!({"command": "uname -a"}));
    let mut second = first.clone();
    let msgs = second["messages"].as_array_mut().unwrap();
    msgs.push(json!({"role": "assistant", "content": v["content"].clone()}));
    msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "Linux box"}]}]}));
    second["stream"] = json!(true);
    let data = json_frames(&run(anthropic::messages(&second, &opts())).await.1);
    let text: String = data.iter().filter_map(|d| d["delta"]["text"].as_str()).collect();
    assert_eq!(text, "exec finished: Linux box");
}

#[tokio::test]
async fn responses_stream_events_and_usage() {
    let body = json!({"model": "gpt-4o-mini", "stream": true, "instructions": "be brief",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello"}]}]});
    let (_, bytes) = run(responses::responses(&body, &opts(), &Memory::default())).await;
    let f = frames(&bytes);
    let names: Vec<&str> = f.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let data: Vec<Value> = f.iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let text: String = data
        .iter()
        .filter(|d| d["type"] == "response.output_text.delta")
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, DEFAULT_REPLY);
    let usage = &data.last().unwrap()["response"]["usage"];
    assert_eq!(usage["input_tokens"].as_u64().unwrap(), ("be brief".len() + "hello".len()).div_ceil(4) as u64);
    assert_eq!(usage["output_tokens"], 5);
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert!(usage["output_tokens_details"].is_object());
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), usage["input_tokens"].as_u64().unwrap() + 5);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["sequence_number"].as_u64().unwrap(), i as u64);
    }
}

#[tokio::test]
async fn chat_bills_every_choice_and_honours_the_output_cap() {
    let mut body = chat_body("hi");
    body["n"] = json!(3);
    let v: Value = serde_json::from_slice(&run(openai::chat(&body, &opts())).await.1).unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 3);
    assert_eq!(v["usage"]["completion_tokens"], 15, "5 words x 3 choices");
    body["max_tokens"] = json!(2);
    body["max_completion_tokens"] = json!(4);
    let v: Value = serde_json::from_slice(&run(openai::chat(&body, &opts())).await.1).unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 6, "max_tokens wins, as on compat servers");
    assert_eq!(v["choices"][2]["finish_reason"], "length");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = json_frames(&run(openai::chat(&body, &opts())).await.1);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 6);
    let indexes: std::collections::BTreeSet<u64> =
        chunks.iter().filter_map(|c| c["choices"][0]["index"].as_u64()).collect();
    assert_eq!(indexes.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[tokio::test]
async fn media_stored_context_and_searches_are_billed_as_input() {
    let text_only =
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "what is it"}]}]});
    let mut with_image = text_only.clone();
    with_image["messages"][0]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "image_url", "image_url": {"url": "https://x/a.png"}}));
    let usage = |b: &Bytes| serde_json::from_slice::<Value>(b).unwrap()["usage"]["prompt_tokens"].as_u64().unwrap();
    let plain = usage(&run(openai::chat(&text_only, &opts())).await.1);
    assert_eq!(usage(&run(openai::chat(&with_image, &opts())).await.1), plain + IMAGE_TOKENS);
    // A previous response's whole context is billed again; an unknown one is a 400.
    let mem = Memory::default();
    let first = json!({"model": "m", "input": "word ".repeat(400)});
    let v: Value = serde_json::from_slice(&run(responses::responses(&first, &opts(), &mem)).await.1).unwrap();
    let context = v["usage"]["input_tokens"].as_u64().unwrap() + v["usage"]["output_tokens"].as_u64().unwrap();
    let next = json!({"model": "m", "input": "go", "previous_response_id": v["id"]});
    let w: Value = serde_json::from_slice(&run(responses::responses(&next, &opts(), &mem)).await.1).unwrap();
    assert_eq!(w["usage"]["input_tokens"].as_u64().unwrap(), 1 + context);
    let (status, b) = run(responses::responses(
        &json!({"model": "m", "input": "x", "previous_response_id": "resp_nope"}),
        &opts(),
        &mem,
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).contains("previous_response_not_found"));
    // Web search: SEARCHES:3 capped at max_tool_calls 2, each adding its results as input.
    let s = json!({"model": "m", "input": "SEARCHES:3 x", "tools": [{"type": "web_search"}], "max_tool_calls": 2});
    let v: Value = serde_json::from_slice(&run(responses::responses(&s, &opts(), &mem)).await.1).unwrap();
    let calls = v["output"].as_array().unwrap().iter().filter(|o| o["type"] == "web_search_call").count();
    assert_eq!(calls, 2);
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() >= 2 * SEARCH_TOKENS);
    let a = json!({"model": "m", "max_tokens": 9, "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
                   "messages": [{"role": "user", "content": "SEARCHES:4 x"}]});
    let v: Value = serde_json::from_slice(&run(anthropic::messages(&a, &opts())).await.1).unwrap();
    assert_eq!(v["usage"]["server_tool_use"]["web_search_requests"], 1);
}

/// A raw HTTP/1.1 client over hyper's connection API.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &Value,
) -> (hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>, Request<http_body_util::Full<Bytes>>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .unwrap();
    (sender, req)
}

#[tokio::test]
async fn server_records_requests_and_counts_completed_and_cancelled_streams() {
    let up = ScriptedUpstream::start_with(UpstreamOptions {
        slow_interval: Duration::from_millis(20),
        slow_duration: Duration::from_secs(30),
        ..UpstreamOptions::default()
    })
    .await;
    assert!(up.base_url().starts_with("http://127.0.0.1:"));

    let mut body = chat_body("hello");
    body["stream"] = json!(true);
    let (mut tx, req) = send(up.addr(), Method::POST, "/v1/chat/completions?x=1", &body).await;
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream; charset=utf-8");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.ends_with(b"data: [DONE]\n\n"));
    assert!(up.wait_for_completed(1, Duration::from_secs(5)).await);

    let recs = up.requests();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].path, "/v1/chat/completions?x=1");
    assert_eq!(recs[0].headers["content-type"], "application/json");
    assert_eq!(recs[0].json().unwrap(), body);
    assert_eq!(recs[0].usage.unwrap().output_tokens, 5);

    // A SLOW stream whose client goes away mid-stream counts as cancelled.
    body["messages"][1]["content"] = json!("SLOW please");
    let (mut tx, req) = send(up.addr(), Method::POST, "/v1/chat/completions", &body).await;
    let resp = tx.send_request(req).await.unwrap();
    let mut b = resp.into_body();
    let first = b.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some());
    drop(b);
    drop(tx);
    assert!(up.wait_for_cancelled(1, Duration::from_secs(5)).await, "cancelled={}", up.cancelled_streams());
    assert_eq!(up.completed_streams(), 1);
    assert_eq!(up.request_count(), 2);

    let (mut tx, req) = send(up.addr(), Method::GET, "/v1/models", &json!(null)).await;
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["object"], "list");
    up.shutdown().await;
}

#[tokio::test]
async fn hang_sends_no_headers_and_shutdown_frees_it() {
    let up = ScriptedUpstream::start().await;
    let (mut tx, req) = send(
        up.addr(),
        Method::POST,
        "/v1/messages",
        &json!({"model": "m", "messages": [{"role": "user", "content": "HANG"}]}),
    )
    .await;
    let pending = tokio::spawn(async move { tx.send_request(req).await });
    assert!(up.wait_for_requests(1, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished(), "HANG must not answer");
    let addr = up.addr();
    up.shutdown().await;
    let res = tokio::time::timeout(Duration::from_secs(5), pending).await.unwrap().unwrap();
    assert!(res.is_err(), "the hung request fails once the server stops");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "port closed after shutdown");
}

#[tokio::test]
async fn bad_json_and_unknown_routes_get_openai_or_anthropic_errors() {
    assert_eq!(
        route(&Method::POST, "/v1/chat/completions", b"{", &opts(), &Memory::default()).status,
        StatusCode::BAD_REQUEST
    );
    let r = route(&Method::POST, "/v1/messages", b"nope", &opts(), &Memory::default());
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&r.body.into_bytes().await).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["type"], "error");
    assert_eq!(route(&Method::GET, "/v1/nothing", b"", &opts(), &Memory::default()).status, StatusCode::NOT_FOUND);
    let e = route(&Method::POST, "/v1/embeddings", br#"{"model":"e","input":["a","b"]}"#, &opts(), &Memory::default());
    let v: Value = serde_json::from_slice(&e.body.into_bytes().await).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 16);
}
