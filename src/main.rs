//! signrelay's command line: serve, demo, check-config, jwt explain, and offline admin commands.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use signrelay::app::Application;
use signrelay::auth::{AuthConfig, SurfaceAuth};
use signrelay::config::Backend;
use signrelay::config::Config;
use signrelay::store::{EventQuery, PgOptions, PgStore, SledStore, Store, StoreOptions};
use signrelay::vendors::Sections;

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
    #[cfg(feature = "demo")]
    Demo,
    /// Validate the configuration and print it with secrets redacted; resolve each JWT
    /// identity provider and list the key ids it would trust.
    CheckConfig {
        #[arg(long, short, env = "SIGNRELAY_CONFIG")]
        config: PathBuf,
    },
    /// Bearer JWTs from identity providers.
    Jwt {
        #[command(subcommand)]
        action: JwtAction,
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
    /// Store maintenance.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Applies the PostgreSQL store's schema migrations (`store.backend = "postgres"`), one
    /// instance at a time; a deployment step before the new version's instances start.
    Migrate {
        #[arg(long, short, env = "SIGNRELAY_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum JwtAction {
    /// Print a token's header and claims (never its signature) and run every check of each
    /// surface configured with `method = "jwt"`; exits non-zero when a surface rejects it.
    Explain {
        /// The token (a leading `Bearer ` is ignored); `-` reads it from stdin.
        token: String,
        #[arg(long, short, env = "SIGNRELAY_CONFIG")]
        config: PathBuf,
        /// Only this surface (`admin`, or a vendor's, as `check-config` lists them).
        #[arg(long)]
        surface: Option<String>,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copies every record (events and their payloads, registrations, the job queue, parked
    /// events, dead letters, the quarantine) from one store into another, empty one: sled into
    /// PostgreSQL for an installation that outgrows one machine, or back. Stop the instances
    /// first.
    Copy {
        /// The configuration whose store is read.
        #[arg(long)]
        from_config: PathBuf,
        /// The configuration whose (empty) store is written; a PostgreSQL one is migrated
        /// first.
        #[arg(long)]
        to_config: PathBuf,
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
        /// Id of the dead letter (an event's id for an event's step).
        id: Option<uuid::Uuid>,
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

fn main() -> std::process::ExitCode {
    // The vendors' own commands (`signrelay <vendor> <command> --config F`) beside ours.
    let vendor_commands: Vec<(&'static str, clap::Command)> = Sections::names()
        .into_iter()
        .zip(Config::default().vendors.all())
        .filter_map(|(name, v)| v.command().map(|c| (name, c.name(name))))
        .collect();
    let mut command = Cli::command();
    for (_, c) in &vendor_commands {
        command = command.subcommand(c.clone());
    }
    let matches = command.get_matches();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ran = match matches.subcommand() {
        Some((name, m)) if vendor_commands.iter().any(|(n, _)| *n == name) => {
            rt.block_on(run_vendor_command(name, m))
        }
        _ => match Cli::from_arg_matches(&matches) {
            Ok(cli) => rt.block_on(run(cli)),
            Err(e) => e.exit(),
        },
    };
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signrelay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `signrelay <vendor> <command> --config F`: the vendor's own command, with its section of
/// the configuration.
async fn run_vendor_command(vendor: &str, m: &clap::ArgMatches) -> anyhow::Result<()> {
    let Some((_, args)) = m.subcommand() else {
        anyhow::bail!("{vendor}: which command? see `signrelay {vendor} --help`");
    };
    let path = args
        .get_one::<PathBuf>("config")
        .ok_or_else(|| anyhow::anyhow!("--config is required"))?;
    let cfg = Config::load_unvalidated(Some(path))?;
    let settings = cfg.vendor_settings();
    let section = Sections::names()
        .into_iter()
        .zip(cfg.vendors.all())
        .find(|(n, _)| *n == vendor)
        .map(|(_, s)| s)
        .expect("a listed vendor");
    let errs = section.validate(&settings);
    if !errs.is_empty() {
        anyhow::bail!("invalid configuration:\n  - {}", errs.join("\n  - "));
    }
    section.run_command(m, &settings).await
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let cfg = Config::load(Some(&config))?;
            signrelay::telemetry::init_logging(&cfg.log);
            let app = Application::build(cfg).await?;
            app.run_until_stopped().await
        }
        #[cfg(feature = "demo")]
        Command::Demo => signrelay::demo::run().await,
        Command::CheckConfig { config } => {
            // One verdict, the last line: invalid (validation), not usable (a provider that
            // cannot be resolved), or valid (with its warnings counted).
            let cfg = Config::load(Some(&config))?;
            println!("{}", serde_json::to_string_pretty(&cfg.redacted())?);
            let providers = check_identity_providers(&cfg).await?;
            if providers.unresolved > 0 {
                anyhow::bail!(
                    "configuration is not usable: {} identity provider(s) could not be resolved",
                    providers.unresolved
                );
            }
            match providers.warnings {
                0 => eprintln!("configuration is valid"),
                n => eprintln!("configuration is valid, with {n} warning(s) above"),
            }
            Ok(())
        }
        Command::Jwt {
            action:
                JwtAction::Explain {
                    token,
                    config,
                    surface,
                },
        } => jwt_explain(&config, &token, surface.as_deref()).await,
        Command::Events {
            config,
            vendor,
            transaction_id,
            state,
            limit,
        } => {
            let (store, _) = open_offline(&config).await?;
            let q = EventQuery {
                vendor: match vendor {
                    Some(v) => Some(
                        signrelay::event::Vendor::parse(&v)
                            .ok_or_else(|| anyhow::anyhow!("unknown vendor {v}"))?,
                    ),
                    None => None,
                },
                transaction_id: transaction_id
                    .map(|t| signrelay::event::TransactionId::parse(&t))
                    .transpose()?,
                state: state
                    .map(|s| {
                        signrelay::event::RelayStateKind::parse(&s)
                            .ok_or_else(|| anyhow::anyhow!("unknown state {s}"))
                    })
                    .transpose()?,
                after: None,
                limit: Some(limit),
            };
            for e in store.events(&q).await? {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(())
        }
        Command::Store {
            action:
                StoreAction::Copy {
                    from_config,
                    to_config,
                },
        } => {
            let (from, _a) = open_portable(&from_config, false).await?;
            let (to, _b) = open_portable(&to_config, true).await?;
            let counts = signrelay::store::copy::copy(&*from, &*to).await?;
            for (kind, n) in &counts {
                println!("{n:>9} {kind}");
            }
            eprintln!(
                "copied {} records from {} into {}",
                counts.values().sum::<u64>(),
                from_config.display(),
                to_config.display()
            );
            Ok(())
        }
        Command::Migrate { config } => {
            let cfg = Config::load_unvalidated(Some(&config))?;
            if cfg.store.backend != Backend::Postgres {
                anyhow::bail!("store.backend is not \"postgres\": sled needs no migrations");
            }
            let pool = signrelay::store::postgres::schema::pool(&cfg.store.postgres)?;
            let applied = signrelay::store::postgres::migrate(&pool).await?;
            let latest = signrelay::store::postgres::MIGRATIONS
                .last()
                .map_or(0, |m| m.version);
            match applied.as_slice() {
                [] => eprintln!("the schema is up to date (version {latest})"),
                v => eprintln!("applied migrations {v:?}; the schema is at version {latest}"),
            }
            Ok(())
        }
        Command::Quarantine { config } => {
            let (store, _) = open_offline(&config).await?;
            for q in store.quarantined().await? {
                println!("{}", serde_json::to_string(&q)?);
            }
            Ok(())
        }
        Command::Dlq { action } => match action {
            DlqAction::List { config } => {
                let (store, _) = open_offline(&config).await?;
                for d in store.dead_letters().await? {
                    println!("{}", serde_json::to_string(&d.view())?);
                }
                Ok(())
            }
            DlqAction::Replay { config, id, all } => {
                let (store, _) = open_offline(&config).await?;
                let ids: Vec<uuid::Uuid> = match (id, all) {
                    (Some(id), _) => vec![id],
                    (None, true) => store
                        .dead_letters()
                        .await?
                        .iter()
                        .map(|d| d.job.id)
                        .collect(),
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

/// The surfaces (by their metrics name) whose callers authenticate with JWTs.
fn jwt_surfaces(cfg: &Config) -> Vec<(&'static str, &AuthConfig)> {
    let mut all = vec![("admin", &cfg.admin.auth)];
    for v in cfg.vendors.all() {
        all.extend(v.auth_surfaces());
    }
    all.retain(|(_, a)| matches!(a, AuthConfig::Jwt { .. }));
    all
}

/// A surface's JWT checker, with empty key caches.
fn build_jwt(name: &str, auth: &AuthConfig) -> anyhow::Result<Arc<signrelay::auth::jwt::JwtAuth>> {
    auth.validate(&format!("{name}.auth"))
        .map_err(|e| anyhow::anyhow!(e))?;
    match auth.build(None)? {
        SurfaceAuth::Jwt(j) => Ok(j),
        other => anyhow::bail!("{name} uses {}, not jwt", other.method()),
    }
}

/// Fetches every provider's keys: per provider, the key ids it trusts or why it has none.
async fn resolve_keys(jwt: &signrelay::auth::jwt::JwtAuth) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    for p in &jwt.providers {
        out.push(match p.refresh().await {
            Ok(_) => Ok(format!(
                "{}: trusts key ids {}",
                p.cfg.issuer,
                p.key_ids().join(", ")
            )),
            Err(e) => Err(format!("{}: no keys: {e:#}", p.cfg.issuer)),
        });
    }
    out
}

/// What `check-config` found of the identity providers.
struct ProviderReport {
    unresolved: usize,
    warnings: usize,
}

/// Resolves every surface's providers, printing what each would trust, and warns of each
/// provider allowed to fetch its keys over plain HTTP.
async fn check_identity_providers(cfg: &Config) -> anyhow::Result<ProviderReport> {
    let mut report = ProviderReport {
        unresolved: 0,
        warnings: 0,
    };
    for (name, auth) in jwt_surfaces(cfg) {
        eprintln!("{name}: jwt");
        let jwt = build_jwt(name, auth)?;
        for p in jwt.providers.iter().filter(|p| p.cfg.allow_insecure_http) {
            report.warnings += 1;
            eprintln!(
                "  warning: {}: allow_insecure_http = true: discovery and keys may come over \
                 plain HTTP, where anyone on the way can replace them; for tests only",
                p.cfg.issuer
            );
        }
        for line in resolve_keys(&jwt).await {
            report.unresolved += usize::from(line.is_err());
            eprintln!("  {}", line.unwrap_or_else(|e| e));
        }
    }
    Ok(report)
}

/// A token part (0: header, 1: claims) as pretty JSON, if it is base64url JSON.
fn token_part(token: &str, i: usize) -> String {
    use base64::Engine;
    token
        .split('.')
        .nth(i)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| "(not decodable)".into())
}

async fn jwt_explain(
    config: &std::path::Path,
    token: &str,
    only: Option<&str>,
) -> anyhow::Result<()> {
    // Only the JWT settings are needed: other secrets need not resolve on this machine.
    let cfg = Config::load_unvalidated(Some(config))?;
    let mut token = token.to_string();
    if token == "-" {
        token.clear();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut token)?;
    }
    let token = token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    let surfaces: Vec<_> = jwt_surfaces(&cfg)
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|o| o == *name))
        .collect();
    if surfaces.is_empty() {
        anyhow::bail!(
            "no surface{} is configured with method = \"jwt\"",
            only.map(|o| format!(" named {o}")).unwrap_or_default()
        );
    }
    println!("header:\n{}", token_part(token, 0));
    println!("claims:\n{}", token_part(token, 1));
    let mut rejected = Vec::new();
    for (name, auth) in surfaces {
        let jwt = build_jwt(name, auth)?;
        println!("\n{name}:");
        for line in resolve_keys(&jwt).await {
            println!("  keys of {}", line.unwrap_or_else(|e| e));
        }
        let (steps, result) = jwt.explain(token).await;
        for s in &steps {
            let mark = if s.ok { '✓' } else { '✗' };
            println!("  {mark} {:<9} {}", s.check, s.detail);
        }
        match result {
            Ok(v) => println!(
                "  accepted: issuer {}, app {}, tenant {}",
                v.issuer,
                v.app.as_deref().unwrap_or("-"),
                v.tenant.as_deref().unwrap_or("-")
            ),
            Err(f) => {
                if steps.iter().all(|s| s.ok) {
                    // A failure outside the listed checks (e.g. undecodable claims).
                    println!("  ✗ {:<9} {}", "token", f.detail());
                }
                println!("  rejected: {}", f.code());
                rejected.push(format!("{name} ({})", f.code()));
            }
        }
    }
    if !rejected.is_empty() {
        anyhow::bail!("token rejected by {}", rejected.join(", "));
    }
    Ok(())
}

/// A store to copy from or into; a PostgreSQL target is migrated first.
async fn open_portable(
    config: &std::path::Path,
    target: bool,
) -> anyhow::Result<(
    Arc<dyn signrelay::store::copy::Portable>,
    Option<std::thread::JoinHandle<()>>,
)> {
    let cfg = Config::load_unvalidated(Some(config))?;
    if cfg.store.backend == Backend::Postgres {
        let store = PgStore::open(
            &signrelay::config::PostgresConfig {
                migrate: target,
                ..cfg.store.postgres.clone()
            },
            PgOptions {
                policy: Default::default(),
                lease: std::time::Duration::from_secs(cfg.store.postgres.lease_secs),
                scratch: cfg.store.path.clone(),
                min_free_bytes: 0,
            },
        )
        .await?;
        return Ok((Arc::new(store), None));
    }
    let (store, writer) = SledStore::open(&cfg.store.path, StoreOptions::default(), None)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.store.path.display()))?;
    Ok((Arc::new(store), Some(writer)))
}

/// Opens the store for an offline command: sled's of a stopped instance (a running one holds
/// its lock), or the shared PostgreSQL store (running instances may go on).
async fn open_offline(
    config: &std::path::Path,
) -> anyhow::Result<(Arc<dyn Store>, Option<std::thread::JoinHandle<()>>)> {
    let cfg = Config::load_unvalidated(Some(config))?;
    if cfg.store.backend == Backend::Postgres {
        let pg = cfg.store.postgres.clone();
        let store = PgStore::open(
            &signrelay::config::PostgresConfig {
                migrate: false,
                ..pg
            },
            PgOptions {
                policy: Default::default(),
                lease: std::time::Duration::from_secs(cfg.store.postgres.lease_secs),
                scratch: std::env::temp_dir().join(format!("signrelay-{}", std::process::id())),
                min_free_bytes: 0,
            },
        )
        .await?;
        return Ok((Arc::new(store), None));
    }
    let (store, writer) = SledStore::open(&cfg.store.path, StoreOptions::default(), None)
        .map_err(|e| match e {
            signrelay::store::StoreError::Locked(p) => anyhow::anyhow!(
                "the store {p} is in use by a running signrelay; use its admin API (/api/v1/dead-letters) instead"
            ),
            other => anyhow::anyhow!(other),
        })?;
    Ok((Arc::new(store), Some(writer)))
}
