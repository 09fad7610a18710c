//! The sidecar's HTTP hop with nothing behind it: ClawButler's own listener (the same accept
//! loop, connection threads, timeouts and spin setting the data listener uses) in front of a
//! pooled hyper client per thread, forwarding each request upstream and its reply back. It
//! reads the whole request body first, as the sidecar must before it decides, and streams the
//! reply. No policy, audit, budget, metering or metrics.
//!
//! `scripts/saturate.sh` runs it beside the sidecar, so the CPU per call the Rust HTTP stack
//! alone costs on the host is measured in the same run as the sidecar's (docs/performance.md,
//! "Saturation"). It is a benchmark tool, not part of the product:
//!
//! ```text
//! cargo build --release -p listener --example bare_hop
//! target/release/examples/bare_hop 127.0.0.1:18095 http://127.0.0.1:18090
//! ```

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use listener::{ConnThreads, Limits, Listener, TimedBody};

// The sidecar's allocator, so the hop is measured as the sidecar runs it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Body = BoxBody<Bytes, listener::BoxError>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

thread_local! {
    // One pool per connection thread, as the sidecar's `Clients` keeps them.
    static CLIENT: HttpClient = pooled();
}

fn pooled() -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(http)
}

/// hyper's own early answers (400, 414, 431) as plain text.
fn plain_error(status: StatusCode, _line: &[u8]) -> (&'static str, String) {
    ("text/plain", format!("{status}\n"))
}

fn bad_gateway(e: impl std::fmt::Display) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("bare_hop: {e}\n"))).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

async fn hop(upstream: Uri, req: Request<TimedBody>) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(bad_gateway(e)),
    };
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = match format!("{upstream}{}", pq.trim_start_matches('/')).parse::<Uri>() {
        Ok(u) => u,
        Err(e) => return Ok(bad_gateway(e)),
    };
    parts.uri = uri;
    let sent = CLIENT.with(|c| c.request(Request::from_parts(parts, Full::new(body))));
    Ok(match sent.await {
        Ok(res) => res.map(|b| b.map_err(listener::BoxError::from).boxed()),
        Err(e) => bad_gateway(e),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: bare_hop <listen addr> <upstream base URL>".into());
    };
    let upstream: Uri = format!("{}/", upstream.trim_end_matches('/')).parse()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let tcp = tokio::net::TcpListener::bind(&listen).await?;
        let cfg = Listener {
            name: "data",
            limits: Limits {
                max_connections: 4096,
                header_read_timeout: Duration::from_secs(30),
                body_read_timeout: Duration::from_secs(60),
            },
            error_page: plain_error,
            open: None,
            grace: Duration::from_secs(1),
            // The sidecar's defaults: one connection thread per CPU, awake 200 us for an answer.
            threads: Some(ConnThreads::start("hop", threads, Duration::from_micros(200))?),
        };
        let svc = tower::service_fn(move |req| hop(upstream.clone(), req));
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        println!("bare_hop: listening on {listen}");
        listener::serve(tcp, svc, cfg, shutdown).await;
        Ok(())
    })
}
