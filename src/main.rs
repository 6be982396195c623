//! signrelay's command line: serve, demo, check-config, and offline admin commands.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use signrelay::app::Application;
use signrelay::config::Config;
use signrelay::store::{EventQuery, SledStore, Store, StoreOptions};

#[derive(Parser)]
#[command(
    name = "signrelay",
    version,
    about = "Relays signing-vendor callbacks to the ZGW NRC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        #[arg(long, short, env = "SIGNRELAY_CONFIG")]
        config: PathBuf,
    },
    /// Run the whole job end to end on embedded defaults: a temporary store, an NRC stand-in
    /// and scripted vendor callbacks; prints what reached the NRC.
    Demo,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig {
        #[arg(long, short, env = "SIGNRELAY_CONFIG")]
        config: PathBuf,
    },
    /// Recorded events (reads the store of a stopped instance).
    Events {
        #[arg(long, short, env = "SIGNRELAY_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        transaction_id: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Dead letters (works on the store of a stopped instance).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Callbacks that could not be processed (reads the store of a stopped instance).
    Quarantine {
        #[arg(long, short, env = "SIGNRELAY_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// List dead letters.
    List {
        #[arg(long, short, env = "SIGNRELAY_CONFIG")]
        config: PathBuf,
    },
    /// Move dead letters back into the outbox; delivered at the next start.
    Replay {
        #[arg(long, short, env = "SIGNRELAY_CONFIG")]
        config: PathBuf,
        /// Event id of the dead letter.
        id: Option<uuid::Uuid>,
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signrelay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let cfg = Config::load(Some(&config))?;
            signrelay::telemetry::init_logging(&cfg.log);
            let app = Application::build(cfg).await?;
            app.run_until_stopped().await
        }
        Command::Demo => signrelay::demo::run().await,
        Command::CheckConfig { config } => {
            let cfg = Config::load(Some(&config))?;
            println!("{}", serde_json::to_string_pretty(&cfg.redacted())?);
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::Events {
            config,
            vendor,
            transaction_id,
            state,
            limit,
        } => {
            let (store, _) = open_offline(&config)?;
            let q = EventQuery {
                vendor: match vendor {
                    Some(v) => Some(
                        signrelay::event::Vendor::parse(&v)
                            .ok_or_else(|| anyhow::anyhow!("unknown vendor {v}"))?,
                    ),
                    None => None,
                },
                transaction_id,
                state,
                after: None,
                limit: Some(limit),
            };
            for e in store.events(&q)? {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(())
        }
        Command::Quarantine { config } => {
            let (store, _) = open_offline(&config)?;
            for q in store.quarantined()? {
                println!("{}", serde_json::to_string(&q)?);
            }
            Ok(())
        }
        Command::Dlq { action } => match action {
            DlqAction::List { config } => {
                let (store, _) = open_offline(&config)?;
                for d in store.dead_letters()? {
                    println!("{}", serde_json::to_string(&d)?);
                }
                Ok(())
            }
            DlqAction::Replay { config, id, all } => {
                let (store, _) = open_offline(&config)?;
                let ids: Vec<uuid::Uuid> = match (id, all) {
                    (Some(id), _) => vec![id],
                    (None, true) => store.dead_letters()?.iter().map(|d| d.event_id).collect(),
                    (None, false) => anyhow::bail!("give a dead letter id or --all"),
                };
                for id in &ids {
                    store
                        .replay(*id)
                        .await
                        .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
                    println!("replayed {id}");
                }
                eprintln!("{} dead letter(s) back in the outbox", ids.len());
                Ok(())
            }
        },
    }
}

/// Opens the store of a stopped instance; a running one holds its lock.
fn open_offline(
    config: &std::path::Path,
) -> anyhow::Result<(Arc<SledStore>, std::thread::JoinHandle<()>)> {
    let cfg = Config::load_unvalidated(Some(config))?;
    let (store, writer) = SledStore::open(&cfg.store.path, StoreOptions::default(), None)
        .map_err(|e| match e {
            signrelay::store::StoreError::Locked(p) => anyhow::anyhow!(
                "the store {p} is in use by a running signrelay; use its admin API (/api/v1/dead-letters) instead"
            ),
            other => anyhow::anyhow!(other),
        })?;
    Ok((Arc::new(store), writer))
}
