//! `strata tenant list|create`.

use clap::Subcommand;
use serde_json::json;
use strata_api::proto;

use super::output::{Out, Output};
use super::{ClientOpts, status_error};

#[derive(clap::Args)]
pub struct TenantArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub command: TenantCommand,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// List tenants.
    List,
    /// Create a tenant (nothing changes if it exists).
    Create { name: String },
}

pub async fn run(args: TenantArgs) -> anyhow::Result<()> {
    let mut client = args.client.connect().await?;
    let mut out = Out::default();
    let printed = match args.command {
        TenantCommand::List => {
            let tenants = client
                .list_tenants(proto::ListTenantsRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .tenants;
            match args.client.output {
                Output::Json => out.line(json!({ "tenants": tenants })),
                Output::Human => tenants.iter().try_for_each(|t| out.line(t)),
            }
        }
        TenantCommand::Create { name } => {
            let created = client
                .create_tenant(proto::CreateTenantRequest {
                    tenant: name.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .created;
            match args.client.output {
                Output::Json => out.line(json!({ "tenant": name, "created": created })),
                Output::Human if created => out.line(format_args!("created tenant {name}")),
                Output::Human => out.line(format_args!("tenant {name} already exists")),
            }
        }
    };
    Out::finish(printed.and_then(|()| out.flush()))
}
