//! The `tessera` command: `serve` (the default), `migrate`, `keys`, `clients`, `users`, `registration`,
//! `config`, `policy`, `verifiers`, `audit`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tessera::clock::{Clock, SystemClock};
use tessera::config::{LogFormat, Settings, SigningAlgorithm};
use tessera::{Server, keys, open_store};

#[derive(Parser)]
#[command(name = "tessera", version, about = "A UMA 2.0 authorization server whose decisions are Cedar policies")]
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
    /// Manage clients (UMA clients and resource servers).
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Manage resource owner accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Dynamic registration helpers.
    Registration {
        #[command(subcommand)]
        command: RegistrationCommand,
    },
    /// Validate the configuration and print the effective settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check and test the Cedar policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Check the claim verifier files (`verifiers_dir`).
    Verifiers {
        #[command(subcommand)]
        command: VerifiersCommand,
    },
    /// Read the audit trail of authorization decisions.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the newest decisions, oldest first, one JSON object per line.
    Tail {
        /// How many records.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        /// Only decisions about this resource owner's resources.
        #[arg(long)]
        owner: Option<String>,
    },
}

#[derive(Subcommand)]
enum VerifiersCommand {
    /// Parse and validate every verifier file; exit 1 naming the file and the problem.
    Check,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse and validate every policy against the schema; exit 1 with located errors.
    Check,
    /// Run policy test cases (TOML or JSON files, or folders of them); exit 1 on any mismatch.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
enum ClientsCommand {
    /// Register a client; prints its registration (with the client secret, shown only this once).
    Add {
        /// Human-readable name.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "client_secret_basic")]
        auth_method: String,
        /// Repeat for several (default: client_credentials).
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Space-separated scopes the client may request.
        #[arg(long)]
        scope: Option<String>,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        #[arg(long = "claims-redirect-uri")]
        claims_redirect_uris: Vec<String>,
        /// A file holding the client's public JWK Set (for private_key_jwt).
        #[arg(long)]
        jwks_file: Option<PathBuf>,
        #[arg(long)]
        jwks_uri: Option<String>,
        /// Bind this resource server to a resource owner: its client_credentials tokens with scope
        /// `uma_protection` become PATs for that owner.
        #[arg(long)]
        owner: Option<String>,
    },
    /// List clients (JSON, without secrets).
    List,
    /// Delete a client; its credentials and tokens stop working at once.
    Remove { client_id: String },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a resource owner. The password is read from `--password-file`, or else from the first line
    /// of standard input; `--no-password` makes an account that cannot sign in with a password.
    Add {
        account_id: String,
        #[arg(long, conflicts_with = "no_password")]
        password_file: Option<PathBuf>,
        #[arg(long)]
        no_password: bool,
        /// An attribute `name=value`; repeat for several.
        #[arg(long = "attr")]
        attributes: Vec<String>,
    },
    /// List accounts (JSON, without password hashes).
    List,
    /// Delete an account; its sessions end and its PATs and refresh tokens are revoked.
    Remove { account_id: String },
}

#[derive(Subcommand)]
enum RegistrationCommand {
    /// Issue an initial access token for `registration.mode = "initial_access_token"` (printed once).
    Token {
        /// Lifetime in seconds (default: no expiry).
        #[arg(long)]
        expires_in: Option<i64>,
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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
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
                .map_err(|e| format!("cannot listen on `{}` (setting `listen`): {e}", settings.listen))?;
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
            println!("migrations applied to {} ({})", settings.database_url, store.backend().as_str());
        }
        Command::Keys { command } => {
            let store = open_store(&settings, settings.migrate_on_start).await?;
            keys::ensure_active_keys(&store, clock.now()).await?;
            if let KeysCommand::Rotate { alg } = command {
                let algs = alg.map(|a| vec![a]).unwrap_or_else(|| SigningAlgorithm::ALL.to_vec());
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
            println!("{}", serde_json::to_string_pretty(set.current().published())?);
        }
        Command::Clients { command } => clients(command, &settings, clock.now()).await?,
        Command::Users { command } => users(command, &settings, clock.now()).await?,
        Command::Registration { command: RegistrationCommand::Token { expires_in } } => {
            let store = open_store(&settings, settings.migrate_on_start).await?;
            let token = tessera::oauth::tokens::OpaqueToken::generate().map_err(|_| "the random generator failed")?;
            let now = clock.now();
            let expires_at = match expires_in {
                Some(s) if s > 0 => now.checked_add(s).ok_or("--expires-in is too large")?,
                Some(_) => return Err("--expires-in must be positive".into()),
                None => 0,
            };
            store.insert_initial_access_token(token.digest().as_str(), now, expires_at).await?;
            println!("{}", token.expose());
        }
        Command::Policy { command } => {
            use tessera::policy::cli;
            match command {
                PolicyCommand::Check => println!("{}", cli::check(&settings.policies_dir, &settings.policy_schema)?),
                PolicyCommand::Test { files } => {
                    let report = cli::test(&settings.policies_dir, &settings.policy_schema, &files)?;
                    println!("{}", report.text);
                    report.outcome()?;
                }
            }
        }
        Command::Verifiers { command: VerifiersCommand::Check } => {
            let env = tessera::verifiers::VerifierEnv::from_settings(&settings);
            print!("{}", tessera::verifiers::check_command(&settings.verifiers_dir, &env)?);
        }
        Command::Audit { command: AuditCommand::Tail { limit, owner } } => {
            let store = open_store(&settings, settings.migrate_on_start).await?;
            for entry in tessera::uma::audit::tail(&store, owner.as_deref(), limit).await? {
                println!("{}", serde_json::to_string(&entry)?);
            }
        }
        Command::Config { command: ConfigCommand::Check } => {
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

async fn clients(command: ClientsCommand, settings: &Settings, now: i64) -> Result<(), Box<dyn std::error::Error>> {
    use tessera::oauth::client::{self as oc, ClientSource, RequestedMetadata};
    use tessera::oauth::registration as reg;
    let store = open_store(settings, settings.migrate_on_start).await?;
    match command {
        ClientsCommand::Add {
            name,
            auth_method,
            grant_types,
            scope,
            redirect_uris,
            claims_redirect_uris,
            jwks_file,
            jwks_uri,
            owner,
        } => {
            let jwks = match jwks_file {
                Some(f) => Some(
                    serde_json::from_str(&std::fs::read_to_string(&f)?).map_err(|e| format!("{}: {e}", f.display()))?,
                ),
                None => None,
            };
            let grant_types = if grant_types.is_empty() { vec!["client_credentials".to_owned()] } else { grant_types };
            let req = RequestedMetadata {
                client_name: Some(name),
                token_endpoint_auth_method: Some(auth_method),
                grant_types: Some(grant_types),
                scope,
                redirect_uris: Some(redirect_uris),
                claims_redirect_uris: Some(claims_redirect_uris),
                jwks,
                jwks_uri,
                ..RequestedMetadata::default()
            };
            let fetcher = tessera::oauth::jwks_fetch::JwksFetcher::new(settings.danger_allow_private_fetch);
            let metadata = oc::validate(req).map_err(|e| e.to_string())?;
            let r = reg::register(&store, &fetcher, metadata, ClientSource::Cli, owner, now)
                .await
                .map_err(|e| e.to_string())?;
            let info = reg::client_information(settings, &r.client, r.client_secret.as_ref(), None);
            println!("{}", serde_json::to_string_pretty(&info)?);
            if r.client_secret.is_some() {
                eprintln!("the client secret is shown only now; Tessera keeps only its digest");
            }
        }
        ClientsCommand::List => {
            let mut out = Vec::new();
            for rec in store.list_clients().await? {
                let c = reg::client_from_record(&rec).map_err(|e| e.to_string())?;
                let mut info = reg::client_information(settings, &c, None, None);
                if let Some(o) = info.as_object_mut() {
                    o.insert("source".into(), serde_json::json!(c.source.as_str()));
                }
                out.push(info);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ClientsCommand::Remove { client_id } => {
            if !store.delete_client(&client_id, None).await? {
                return Err(format!("no client `{client_id}`").into());
            }
            eprintln!("removed client `{client_id}`");
        }
    }
    Ok(())
}

async fn users(command: UsersCommand, settings: &Settings, now: i64) -> Result<(), Box<dyn std::error::Error>> {
    let store = open_store(settings, settings.migrate_on_start).await?;
    match command {
        UsersCommand::Add { account_id, password_file, no_password, attributes } => {
            let password = if no_password {
                None
            } else {
                let raw = match password_file {
                    Some(f) => std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?,
                    None => {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line)?;
                        line
                    }
                };
                Some(raw.lines().next().unwrap_or("").to_owned())
            };
            let mut attrs = serde_json::Map::new();
            for a in attributes {
                let (k, v) = a.split_once('=').ok_or_else(|| format!("`{a}` is not name=value"))?;
                attrs.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            tessera::accounts::add_account(&store, &account_id, password.as_deref(), attrs, now).await?;
            eprintln!("added resource owner `{account_id}`");
        }
        UsersCommand::List => {
            let out: Vec<serde_json::Value> = store
                .list_accounts()
                .await?
                .into_iter()
                .map(|a| {
                    serde_json::json!({
                        "account_id": a.account_id,
                        "password": a.password_hash.is_some(),
                        "attributes": serde_json::from_str::<serde_json::Value>(&a.attributes).unwrap_or_default(),
                        "created_at": a.created_at,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        UsersCommand::Remove { account_id } => {
            if !store.delete_account(&account_id, now).await? {
                return Err(format!("no account `{account_id}`").into());
            }
            eprintln!("removed resource owner `{account_id}`");
        }
    }
    Ok(())
}

/// Development conveniences must be loud (STYLE.md rule 9).
fn warn_about_unsafe_settings(settings: &Settings) {
    if settings.registration_mode == tessera::config::RegistrationMode::Open {
        tracing::warn!(
            "registration.mode is \"open\": anyone who can reach this server can register clients; \
             use \"initial_access_token\" in production"
        );
    }
    for c in settings.clients.iter().filter(|c| c.client_secret.is_some()) {
        tracing::warn!(
            client_id = %c.client_id,
            "a client secret is written in the configuration file: fine for demos; register production \
             clients with `tessera clients add` or dynamic registration"
        );
    }
    if settings.danger_allow_private_fetch {
        tracing::warn!("danger_allow_private_fetch is on: client-supplied URLs may reach private addresses");
    }
    if settings.is_loopback_http() {
        tracing::warn!(
            issuer = %settings.issuer,
            "the issuer is plain HTTP on a loopback address: fine for development, never for production"
        );
    }
}
