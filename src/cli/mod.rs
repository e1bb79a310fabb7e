//! The command line: `serve`, `check-config`, `keys generate|rotate|reseal`, `store reindex`,
//! `admin ...` (the admin API's client).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::crypto::fresh_key_id;
use crate::crypto::rotation::{KeyKind, Step, rotate};
use crate::crypto::seal::KeyRing;
use crate::crypto::signing::SigningKeys;
use crate::oauth::vault::Vault;
use crate::settings::StoreChoice;
use crate::settings::{self, Built, Profile};
use crate::startup::Application;
use crate::store::RedisStore;
use crate::telemetry;

mod admin;

#[derive(Debug, Parser)]
#[command(name = "tether", version, about = "OAuth 2.1 delegation broker for MCP servers")]
pub struct Cli {
    /// Configuration file layered over the embedded defaults.
    #[arg(long, global = true, env = "TETHER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server.
    Serve,
    /// Validate the configuration and report every problem by key.
    CheckConfig,
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The admin API: list and revoke grants, show users, tail the audit trail.
    Admin(admin::AdminArgs),
    /// Store maintenance.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// The provider catalogue: presets for `[providers.<id>] preset = "..."`.
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
    },
    /// Exit 0 when `url` answers 200 within 2 s (container health checks: the image has no curl).
    Healthcheck {
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print fresh encryption and signing keys in the form the configuration expects.
    Generate,
    /// Print the configured key list after one rotation step (publish, activate, retire).
    ///
    /// Roll each step out to every replica before the next one. The new list goes where the
    /// current one comes from (the environment variable or the `keys.*_file` file).
    Rotate {
        #[arg(value_enum)]
        kind: KindArg,
        #[arg(value_enum)]
        step: StepArg,
        /// The key to activate (default: the newest) or to retire (default: all but the active one).
        #[arg(long, value_name = "KEY_ID")]
        key: Option<String>,
        /// Print only the new value (for a file or a Secret), not `NAME=value`.
        #[arg(long)]
        value_only: bool,
    },
    /// Re-seal every stored grant under the active encryption key (Redis store), so that old
    /// encryption keys can be retired. Safe while Tether serves.
    Reseal {
        /// Only count the grants sealed under other keys.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Lists every stored grant in the admin API's listings (grants written by versions
    /// before the listings existed). Safe while Tether serves; run it once after upgrading.
    Reindex,
    /// Rewrites every stored grant and connection in the record format `store.write_schema`
    /// names (2: compact; 1: back to what earlier versions read). Safe while Tether serves and
    /// on Redis Cluster; resumable (`--cursor`), and records already in the format are skipped.
    Migrate {
        /// Only count what would be rewritten.
        #[arg(long)]
        dry_run: bool,
        /// Continue from this cursor (printed after each page).
        #[arg(long, default_value_t = 0)]
        cursor: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Every preset with its variables and setup notes (or one, by name).
    List {
        /// Only this preset.
        name: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Signing,
    Encryption,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StepArg {
    /// Add a new key that every replica accepts but none uses yet.
    Publish,
    /// Make the newest (or --key) key the one that signs or seals.
    Activate,
    /// Drop the keys that are no longer active (or --key).
    Retire,
}

/// `tether providers list [name]`.
#[allow(clippy::print_stdout)] // the command's output
fn list_presets(only: Option<&str>) -> ExitCode {
    let presets: Vec<_> =
        crate::settings::presets::all().into_iter().filter(|p| only.is_none_or(|n| n == p.name)).collect();
    if presets.is_empty() {
        eprintln!("no preset named {}", only.unwrap_or_default());
        return ExitCode::FAILURE;
    }
    for preset in presets {
        println!("{} ({})", preset.name, preset.display_name);
        println!(
            "  [providers.<id>]\n  preset = \"{}\"\n  client_id = \"...\"\n  client_secret_file = \"...\"",
            preset.name
        );
        for (name, variable) in &preset.variables {
            match &variable.default {
                Some(default) => println!("  variables.{name} = \"{default}\"   (default) {}", variable.description),
                None => println!("  variables.{name} = \"...\"   (required) {}", variable.description),
            }
        }
        for line in preset.notes.trim().lines() {
            println!("  | {line}");
        }
        println!();
    }
    ExitCode::SUCCESS
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Command::Keys { command: KeysCommand::Generate } => generate_keys(clock.now()),
        Command::Keys { command: KeysCommand::Rotate { kind, step, key, value_only } } => {
            rotate_keys(cli.config.as_deref(), kind, step, key.as_deref(), value_only, clock.now())
        }
        Command::Keys { command: KeysCommand::Reseal { dry_run } } => reseal(cli.config, dry_run, clock.now()).await,
        Command::Admin(args) => admin::run(args).await,
        Command::Store { command: StoreCommand::Reindex } => reindex(cli.config, clock.now()).await,
        Command::Store { command: StoreCommand::Migrate { dry_run, cursor } } => {
            // Boxed: the command's future would make `run`'s too deep for the compiler's layout queries.
            Box::pin(migrate(cli.config, dry_run, cursor, clock.now())).await
        }
        Command::Providers { command: ProvidersCommand::List { name } } => Ok(list_presets(name.as_deref())),
        Command::Healthcheck { url } => {
            let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(2)).build()?;
            Ok(match client.get(&url).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::OK => ExitCode::SUCCESS,
                Ok(response) => {
                    eprintln!("tether healthcheck: {url} answered {}", response.status());
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("tether healthcheck: {url}: {e}");
                    ExitCode::FAILURE
                }
            })
        }
        Command::CheckConfig => match load(cli.config, clock.now()) {
            Ok((built, _)) => {
                for warning in &built.warnings {
                    eprintln!("warning: {warning}");
                }
                eprintln!(
                    "configuration OK: issuer {}, {} provider(s), {} resource(s), profile {:?}",
                    built.issuer,
                    built.providers.len(),
                    built.registry.resources().len(),
                    built.profile
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(message) => {
                eprint!("{message}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Serve => {
            let built = match load(cli.config, clock.now()) {
                Ok(built) => built,
                Err(message) => {
                    eprint!("{message}");
                    eprintln!("tether: refusing to start");
                    return Ok(ExitCode::from(2));
                }
            };
            serve(built, clock).await
        }
    }
}

fn load(config: Option<PathBuf>, now: i64) -> Result<(Built, settings::LogSettings), String> {
    settings::load_and_build(config.as_deref(), now).map_err(|e| e.to_string())
}

async fn serve((built, log): (Built, settings::LogSettings), clock: Arc<dyn Clock>) -> anyhow::Result<ExitCode> {
    let telemetry = telemetry::init(log.format, &log.level);
    if built.profile == Profile::Development && built.warnings.iter().any(|w| w.contains("ephemeral")) {
        eprintln!("\n  *** DEVELOPMENT: EPHEMERAL KEYS. Tokens and grants die with this process. ***");
        eprintln!("  *** Run `tether keys generate` and configure keys for anything real.      ***\n");
    }
    for warning in &built.warnings {
        tracing::warn!("{warning}");
    }
    let issuer = built.issuer.clone();
    let app = Application::build(built, clock)?;
    tracing::info!(%issuer, port = app.port(), admin_port = app.admin_port(), "tether listening");
    let served = app.run_until_stopped().await;
    tracing::info!("tether stopped");
    telemetry.shutdown().await;
    served?;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)] // the command's output is the keys
fn generate_keys(now: i64) -> anyhow::Result<ExitCode> {
    let id = fresh_key_id(now);
    let encryption = KeyRing::generate_spec(&id);
    let signing = SigningKeys::generate_spec(&id).map_err(|e| anyhow::anyhow!("cannot generate a signing key: {e}"))?;
    println!("# Tether keys, generated with `tether keys generate`. Keep them secret.");
    println!("# Set them in the environment (or write each value to a file named by keys.*_file).");
    println!("# To rotate, put the new key first and keep the old ones after it, comma-separated:");
    println!("# the first key encrypts/signs, all keys decrypt/verify.");
    println!("TETHER__KEYS__ENCRYPTION={encryption}");
    println!("TETHER__KEYS__SIGNING={signing}");
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)] // the command's output is the new key list
fn rotate_keys(
    config: Option<&std::path::Path>,
    kind: KindArg,
    step: StepArg,
    key: Option<&str>,
    value_only: bool,
    now: i64,
) -> anyhow::Result<ExitCode> {
    use secrecy::ExposeSecret;
    let (kind, name) = match kind {
        KindArg::Signing => (KeyKind::Signing, "signing"),
        KindArg::Encryption => (KeyKind::Encryption, "encryption"),
    };
    let step = match step {
        StepArg::Publish => Step::Publish,
        StepArg::Activate => Step::Activate,
        StepArg::Retire => Step::Retire,
    };
    let settings = match settings::load(config) {
        Ok(settings) => settings,
        Err(errors) => {
            eprint!("{errors}");
            return Ok(ExitCode::from(2));
        }
    };
    let configured = match settings::configured_keys(&settings, kind) {
        Ok(Some(configured)) => configured,
        Ok(None) => {
            eprintln!("no {name} keys are configured (keys.{name} or keys.{name}_file): nothing to rotate.");
            eprintln!("Generate the first ones with `tether keys generate`.");
            return Ok(ExitCode::from(2));
        }
        Err(errors) => {
            eprint!("{errors}");
            return Ok(ExitCode::from(2));
        }
    };
    let (spec, source) = configured;
    let rotated = match rotate(kind, &spec, step, key, now) {
        Ok(rotated) => rotated,
        Err(e) => {
            eprintln!("tether keys rotate {name}: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let env = settings::env_name(&format!("keys.{name}"));
    if value_only {
        println!("{}", rotated.spec.expose_secret());
    } else {
        println!("{env}={}", rotated.spec.expose_secret());
    }
    let changed = rotated.changed.join(", ");
    let active = rotated.ids.first().cloned().unwrap_or_default();
    eprintln!("# {name} keys now: {} (active: {active})", rotated.ids.join(", "));
    eprintln!("# Put this value where the current one comes from ({source}) and roll it out to every replica.");
    let access_ttl =
        settings.tokens.access_token_ttl_secs + crate::oauth::introspection::EXP_LEEWAY_SECS.unsigned_abs();
    let refresh_ttl = settings.tokens.refresh_token_ttl_secs;
    let next = match (kind, step) {
        (KeyKind::Signing, Step::Publish) => format!(
            "Published {changed}: the JWKS lists it, nothing signs with it yet. Once every replica runs this list (and MCP servers caching the JWKS have refreshed it), run `tether keys rotate signing activate`."
        ),
        (KeyKind::Signing, Step::Activate) => format!(
            "{active} signs new access tokens; the others still verify. Once every replica runs this list, wait {access_ttl} s (tokens.access_token_ttl_secs plus the 5 s exp leeway) for tokens signed by the old key to expire, then run `tether keys rotate signing retire`."
        ),
        (KeyKind::Encryption, Step::Publish) => format!(
            "Added {changed}: every replica can open what it will seal, nothing seals with it yet. Once every replica runs this list, run `tether keys rotate encryption activate`."
        ),
        (KeyKind::Encryption, Step::Activate) => format!(
            "{active} seals; grants sealed under older keys are re-sealed when next used. Once every replica runs this list, run `tether keys reseal` (or wait tokens.refresh_token_ttl_secs, {refresh_ttl} s, for unused grants to lapse), then `tether keys rotate encryption retire`. Remembered consents signed with an old key are asked again after it is retired."
        ),
        (_, Step::Retire) => format!(
            "Retired {changed}. For encryption keys, check first that `tether keys reseal --dry-run` reports no grant under it: those grants could no longer be opened."
        ),
    };
    eprintln!("# {next}");
    Ok(ExitCode::SUCCESS)
}

/// The Redis store the configuration names, or why there is none to work on.
fn redis_store(config: Option<PathBuf>, now: i64, command: &str) -> Result<(RedisStore, Built), ExitCode> {
    let (built, _) = load(config, now).map_err(|message| {
        eprint!("{message}");
        ExitCode::from(2)
    })?;
    let StoreChoice::Redis { target, prefix, timeout, schema } = &built.store else {
        eprintln!("tether {command}: the memory store lives inside the server process; nothing to do from outside it.");
        return Err(ExitCode::from(2));
    };
    let store = RedisStore::connect(target, prefix, *timeout)
        .map_err(|e| {
            eprintln!("tether {command}: {e}");
            ExitCode::FAILURE
        })?
        .with_write_schema(*schema);
    Ok((store, built))
}

#[allow(clippy::print_stdout)] // the report is the command's output
async fn reindex(config: Option<PathBuf>, now: i64) -> anyhow::Result<ExitCode> {
    let (store, built) = match redis_store(config, now, "store reindex") {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let ttl = built.lifetimes.refresh_token + built.lifetimes.tombstone;
    let report = crate::oauth::admin::reindex(&store, &store, ttl).await?;
    println!("{} grants listed ({} were gone by the time they were read)", report.0, report.1);
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)] // the report is the command's output
async fn migrate(config: Option<PathBuf>, dry_run: bool, mut cursor: u64, now: i64) -> anyhow::Result<ExitCode> {
    let (store, _) = match redis_store(config, now, "store migrate") {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let format = store.write_schema().number();
    let mut report = crate::store::MigrationReport::default();
    loop {
        cursor = match store.migrate_page(cursor, dry_run, &mut report).await {
            Ok(next) => next,
            Err(e) => {
                eprintln!("tether store migrate: {e}; run it again with --cursor {cursor} to continue from here");
                return Ok(ExitCode::FAILURE);
            }
        };
        if cursor == 0 {
            break;
        }
        eprintln!(
            "# {} grants, {} connections so far; --cursor {cursor} continues from here",
            report.grants, report.connections
        );
    }
    let verb = if dry_run { "to rewrite" } else { "rewritten" };
    println!(
        "record format {format}: {} grants and {} connections {verb}, {} already in it, {} changed while being read (run again), {} unreadable (left as they are)",
        report.grants, report.connections, report.current, report.raced, report.unreadable
    );
    Ok(match (report.unreadable, report.raced) {
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(3),
        _ => ExitCode::FAILURE,
    })
}

#[allow(clippy::print_stdout)] // the report is the command's output
async fn reseal(config: Option<PathBuf>, dry_run: bool, now: i64) -> anyhow::Result<ExitCode> {
    let (built, _) = match load(config, now) {
        Ok(built) => built,
        Err(message) => {
            eprint!("{message}");
            return Ok(ExitCode::from(2));
        }
    };
    let StoreChoice::Redis { target, prefix, timeout, schema } = &built.store else {
        eprintln!(
            "tether keys reseal: the memory store lives inside the server process; re-sealing happens as grants are read."
        );
        return Ok(ExitCode::from(2));
    };
    if built.warnings.iter().any(|w| w.contains("keys.encryption")) {
        eprintln!("tether keys reseal: no encryption keys are configured.");
        return Ok(ExitCode::from(2));
    }
    let store = RedisStore::connect(target, prefix, *timeout)?.with_write_schema(*schema);
    let vault = Vault::new(built.keyring);
    let report = crate::oauth::vault::reseal_all(&store, &vault, dry_run).await?;
    let verb = if dry_run { "to re-seal" } else { "re-sealed" };
    println!(
        "{} grants: {} {verb} under {}, {} already under it, {} unreadable (sealed under a key not configured), {} updated concurrently",
        report.grants,
        report.resealed,
        vault.keys().active_key_id(),
        report.current,
        report.unreadable,
        report.raced
    );
    Ok(if report.unreadable > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
