//! The `tessera` command: `serve` (the default), `migrate`, `keys list|rotate`, `config check`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tessera::clock::{Clock, SystemClock};
use tessera::config::{LogFormat, Settings, SigningAlgorithm};
use tessera::{Server, keys, open_store};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "A UMA 2.0 authorization server whose decisions are Cedar policies"
)]
struct Cli {
    /// Configuration file (TOML). Default: `tessera.toml` in the working directory, if present.
    #[arg(long, short, global = true, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the authorization server (the default).
    Serve,
    /// Bring the database schema up to date, then exit (for clustered installs).
    Migrate,
    /// Manage the signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Validate the configuration and print the effective settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the published keys (JSON).
    List,
    /// Add a new active key and retire the current one; its public key stays published until every
    /// token it signed has expired.
    Rotate {
        /// Only this algorithm (default: every algorithm).
        #[arg(long, value_parser = parse_alg)]
        alg: Option<SigningAlgorithm>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Exit 0 if the configuration is valid, 2 with the reason otherwise.
    Check,
}

fn parse_alg(s: &str) -> Result<SigningAlgorithm, String> {
    SigningAlgorithm::parse(s).ok_or_else(|| format!("`{s}` is not one of ES256, RS256"))
}

/// Exit codes: 2 for a configuration error, 1 for anything else that stops the command.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tessera: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tessera: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tessera: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::new(&settings.log);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(command: Command, settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let clock = SystemClock;
    match command {
        Command::Serve => {
            warn_about_unsafe_settings(&settings);
            let listener = tokio::net::TcpListener::bind(settings.listen)
                .await
                .map_err(|e| {
                    format!(
                        "cannot listen on `{}` (setting `listen`): {e}",
                        settings.listen
                    )
                })?;
            let bound = listener.local_addr()?;
            let server = Server::build(settings.clone(), Arc::new(clock)).await?;
            tracing::info!(
                issuer = %settings.issuer,
                listen = %bound,
                database = %settings.database_url,
                backend = server.state().store.backend().as_str(),
                "tessera is serving"
            );
            server.serve(listener, tessera::shutdown_signal()).await?;
        }
        Command::Migrate => {
            let store = open_store(&settings, true).await?;
            println!(
                "migrations applied to {} ({})",
                settings.database_url,
                store.backend().as_str()
            );
        }
        Command::Keys { command } => {
            let store = open_store(&settings, settings.migrate_on_start).await?;
            keys::ensure_active_keys(&store, clock.now()).await?;
            if let KeysCommand::Rotate { alg } = command {
                let algs = alg
                    .map(|a| vec![a])
                    .unwrap_or_else(|| SigningAlgorithm::ALL.to_vec());
                for a in algs {
                    let kid = keys::rotate(&store, a, clock.now()).await?;
                    eprintln!("rotated {a}: new active key `{kid}`");
                }
                let pruned = keys::prune(&store, &settings, clock.now()).await?;
                if pruned > 0 {
                    eprintln!("deleted {pruned} retired key(s) no longer published");
                }
            }
            let set = keys::Keys::load(&store, &settings, clock.now()).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(set.current().published())?
            );
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            println!("configuration is valid");
            println!("  issuer            {}", settings.issuer);
            println!("  listen            {}", settings.listen);
            println!("  database          {}", settings.database_url);
            println!("  signing algorithm {}", settings.signing_algorithm);
            println!("  policies          {}", settings.policies_dir.display());
            println!("  verifiers         {}", settings.verifiers_dir.display());
        }
    }
    Ok(())
}

/// Development conveniences must be loud (STYLE.md rule 9).
fn warn_about_unsafe_settings(settings: &Settings) {
    if settings.is_loopback_http() {
        tracing::warn!(
            issuer = %settings.issuer,
            "the issuer is plain HTTP on a loopback address: fine for development, never for production"
        );
    }
}
