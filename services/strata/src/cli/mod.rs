//! The command-line client: talks to a server over gRPC.

pub mod cluster;
pub mod consume;
pub mod group;
pub mod meta;
pub mod output;
pub mod produce;
pub mod tenant;
pub mod topic;

use std::time::Duration;

use anyhow::anyhow;
use strata_api::ApiError;
use strata_api::proto::strata_client::StrataClient;
use tonic::transport::{Channel, Endpoint};

pub use output::Output;

pub type Client = StrataClient<Channel>;

/// Largest response the client accepts; reads are bounded far lower by the server.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Options every client command takes.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientOpts {
    /// The server's gRPC address.
    #[arg(
        long,
        env = "STRATA_SERVER",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub server: String,
    /// The tenant to work in.
    #[arg(long, env = "STRATA_TENANT", default_value = "default", global = true)]
    pub tenant: String,
    /// How to print results.
    #[arg(long, value_enum, default_value_t = Output::Human, global = true, alias = "format")]
    pub output: Output,
}

impl ClientOpts {
    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.server).await
    }
}

/// Accepts `host:port` as well as a full URL.
pub fn server_url(server: &str) -> String {
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

/// Opens one HTTP/2 connection to the server.
pub async fn connect(server: &str) -> anyhow::Result<Client> {
    let url = server_url(server);
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| {
            anyhow!(
                "bad_request: invalid server address {url:?}: {}",
                error_chain(&e)
            )
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow!("unavailable: cannot connect to {url}: {}", error_chain(&e)))?;
    Ok(StrataClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

/// An error and its causes on one line: transport errors say little at the top.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A failed call as `<code>: <message>`, with Strata's error code when the
/// server sent one and the gRPC code otherwise (transport failures, proxies).
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow!("{}", status_text(&status))
}

pub fn status_text(status: &tonic::Status) -> String {
    if status.details().is_empty() {
        format!("{}: {}", grpc_code_name(status.code()), status.message())
    } else {
        // Strata's own code and message, as the HTTP API reports them.
        ApiError::from_status(status).to_string()
    }
}

/// `DeadlineExceeded` → `deadline_exceeded`, like Strata's own codes.
fn grpc_code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_api::ErrorCode;

    #[derive(clap::Parser)]
    enum TestCli {
        Tenant(tenant::TenantArgs),
        Topic(topic::TopicArgs),
        Produce(produce::ProduceArgs),
        Consume(consume::ConsumeArgs),
        Group(group::GroupArgs),
        Bench(crate::bench::BenchArgs),
    }

    #[test]
    fn command_line_definitions_are_valid() {
        use clap::{CommandFactory, Parser};
        TestCli::command().debug_assert();
        // Common options go before or after the subcommand.
        let parsed = TestCli::try_parse_from([
            "strata", "topic", "--output", "json", "create", "t", "-p", "3", "--server", "h:1",
        ]);
        let Ok(TestCli::Topic(args)) = parsed else {
            panic!("topic create did not parse")
        };
        assert_eq!(
            (args.client.output, args.client.server.as_str()),
            (Output::Json, "h:1")
        );
        assert!(matches!(
            args.command,
            topic::TopicCommand::Create { partitions: 3, .. }
        ));
        let parsed =
            TestCli::try_parse_from(["strata", "consume", "t", "--format", "json", "-n", "5"]);
        assert!(
            matches!(parsed, Ok(TestCli::Consume(c)) if c.client.output == Output::Json && c.max_records == Some(5))
        );
        assert!(TestCli::try_parse_from(["strata", "produce", "t", "--batch", "0"]).is_err());
    }

    #[test]
    fn server_addresses_get_a_scheme() {
        assert_eq!(server_url("127.0.0.1:7070"), "http://127.0.0.1:7070");
        assert_eq!(server_url("https://x:1"), "https://x:1");
    }

    #[test]
    fn errors_read_code_then_message() {
        let status: tonic::Status =
            ApiError::new(ErrorCode::TopicNotFound, "topic orders does not exist").into();
        assert_eq!(
            status_text(&status),
            "topic_not_found: topic orders does not exist"
        );
        let status = tonic::Status::deadline_exceeded("too slow");
        assert_eq!(status_text(&status), "deadline_exceeded: too slow");
        assert_eq!(grpc_code_name(tonic::Code::Unavailable), "unavailable");
    }
}
