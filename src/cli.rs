//! The command line: `serve`, `check-config`, `keys generate`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::crypto::fresh_key_id;
use crate::crypto::seal::KeyRing;
use crate::crypto::signing::SigningKeys;
use crate::settings::{self, Built, Profile};
use crate::startup::Application;
use crate::telemetry;

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
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print fresh encryption and signing keys in the form the configuration expects.
    Generate,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Command::Keys { command: KeysCommand::Generate } => generate_keys(clock.now()),
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
    telemetry::init(log.format, &log.level);
    if built.profile == Profile::Development && built.warnings.iter().any(|w| w.contains("ephemeral")) {
        eprintln!("\n  *** DEVELOPMENT: EPHEMERAL KEYS. Tokens and grants die with this process. ***");
        eprintln!("  *** Run `tether keys generate` and configure keys for anything real.      ***\n");
    }
    for warning in &built.warnings {
        tracing::warn!("{warning}");
    }
    let issuer = built.issuer.clone();
    let app = Application::build(built, clock)?;
    tracing::info!(%issuer, port = app.port(), "tether listening");
    app.run_until_stopped().await?;
    tracing::info!("tether stopped");
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
