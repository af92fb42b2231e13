//! `strata tenant`: tenants are managed through the HTTP API only.
//!
//! The gRPC API scopes every call to a tenant but has no call to create or
//! list tenants, and the client speaks only gRPC, so these commands say where
//! to go instead of failing obscurely.

use clap::Subcommand;

use super::{ClientOpts, server_url};

#[derive(clap::Args)]
pub struct TenantArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub command: TenantCommand,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// List tenants (HTTP API: GET /v1/tenants).
    List,
    /// Create a tenant (HTTP API: PUT /v1/tenants/{name}).
    Create { name: String },
}

pub async fn run(args: TenantArgs) -> anyhow::Result<()> {
    let base = server_url(&args.client.server);
    let base = base.trim_end_matches('/');
    let (method, path) = match &args.command {
        TenantCommand::List => ("GET", "/v1/tenants".to_string()),
        TenantCommand::Create { name } => ("PUT", format!("/v1/tenants/{name}")),
    };
    anyhow::bail!(
        "unsupported: the gRPC API has no tenant calls; use the HTTP API: \
         {method} {path} (curl -X {method} {base}{path})"
    )
}
