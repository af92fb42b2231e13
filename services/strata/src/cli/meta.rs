//! `strata meta restore`: seeds a new node's data directory with the
//! metadata of the newest snapshot in the bucket, so a cluster can be
//! rebuilt from the bucket alone. The node imports it when it starts a new
//! metadata group (the same path a single-node metadata file takes).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;

#[derive(clap::Args)]
pub struct MetaArgs {
    #[command(subcommand)]
    pub command: MetaCommand,
}

#[derive(Subcommand)]
pub enum MetaCommand {
    /// Write the bucket's newest metadata snapshot into a fresh data directory.
    Restore {
        /// The cluster's object store (`s3://BUCKET[/PREFIX]` or `file:///DIR`).
        #[arg(long, env = "STRATA_OBJECT_STORE")]
        object_store: String,
        /// The new node's data directory (must hold no metadata group yet).
        #[arg(long, env = "STRATA_DATA_DIR", default_value = "strata-data")]
        data_dir: PathBuf,
    },
}

pub async fn run(args: MetaArgs) -> anyhow::Result<()> {
    let MetaCommand::Restore {
        object_store,
        data_dir,
    } = args.command;
    anyhow::ensure!(
        !data_dir.join("meta").join("raft.redb").exists(),
        "{} already holds a metadata group; restore into a fresh directory",
        data_dir.display()
    );
    let handle = strata_tier::store::open(&object_store, &data_dir)
        .with_context(|| format!("cannot open the object store {object_store}"))?;
    let store: PrefixStore<std::sync::Arc<dyn ObjectStore>> =
        PrefixStore::new(handle.store().clone(), handle.prefix().clone());
    let snapshot = strata_meta::snapshots::latest(&store)
        .await
        .context("cannot read metadata snapshots from the bucket")?
        .with_context(|| format!("no metadata snapshot in {object_store}"))?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join("metadata.json");
    strata_broker::LocalMetadataStore::save(&path, &snapshot.state.metadata)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let topics = snapshot.state.metadata.all_topics().count();
    println!(
        "restored metadata up to log index {} ({topics} topics) into {}",
        snapshot.meta.last_log_id.map_or(0, |l| l.index),
        path.display()
    );
    Ok(())
}
