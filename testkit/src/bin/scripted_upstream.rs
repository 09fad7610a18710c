//! `scripted-upstream`: run the scripted OpenAI/Anthropic model server on 127.0.0.1 (a free
//! port) and print its base URL; stop with Ctrl-C. A dev tool for load tests and manual
//! trials against a sidecar; never part of the shipped binary.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use testkit::upstream::{ScriptedUpstream, UpstreamOptions};
    let up = ScriptedUpstream::try_start_with(UpstreamOptions { record: false, ..UpstreamOptions::default() }).await?;
    println!("{}", up.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
