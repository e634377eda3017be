//! The `switchboard` command.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::config::Config;
use switchboard::server::{self, App};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "The realtime hub of an enterprise social network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the hub.
    Serve {
        /// A TOML configuration file (defaults apply without one).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides `listen`), e.g. 127.0.0.1:3000.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Prints a token for a user, signed with the configured HS256 secret
    /// (or the development secret), for development and tests.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
        /// How long the token is valid: 30s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Prints the configuration's reference, or checks a configuration file.
    Config {
        #[command(flatten)]
        action: ConfigAction,
    },
    /// Prints the components' event contract, generated from the hub's
    /// types: what `docs/events.schema.json` and `web/src/contract.ts` hold.
    Contract {
        /// The JSON Schema document (as served at
        /// `/api/v1/events.schema.json`).
        #[arg(
            long,
            conflicts_with = "typescript",
            required_unless_present = "typescript"
        )]
        schema: bool,
        /// The TypeScript declarations for socket.io-client's typed sockets.
        #[arg(long)]
        typescript: bool,
    },
}

/// What `switchboard config` does: one of its flags.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct ConfigAction {
    /// Prints every key with its default value and what it does, as a
    /// TOML file (the `SWITCHBOARD_*` variable of each key beside it).
    #[arg(long)]
    default: bool,
    /// Checks FILE (with the `SWITCHBOARD_*` variables set now) and exits:
    /// 0 if the hub would take it, else 1 with the key at fault.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
}

/// Parses `30s`, `15m`, `1h`, `7d`.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 30s, 15m, 1h, 7d"))?;
    let seconds = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?}: out of range"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen } => {
            let mut config = Config::load(config.as_deref(), std::env::vars())?;
            if let Some(listen) = listen {
                config.listen = vec![listen];
                config.settle_dev_mode();
            }
            init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(serve(config))
        }
        Command::Token { user, ttl, config } => {
            let config = Config::load(config.as_deref(), std::env::vars())?;
            if config.rs256_only() {
                anyhow::bail!(
                    "tokens are verified with RS256 keys here: issue them with your identity provider"
                );
            }
            let dev_secret = std::path::Path::new(&config.data_dir).join("dev-secret");
            let creates = config.auth.hs256_secret.is_empty() && !dev_secret.exists();
            let secret = server::signing_secret(&config)?;
            if creates {
                // `token` has no log to show the hub's warning in.
                eprintln!(
                    "warning: generated a development secret in {} (not for production)",
                    dev_secret.display()
                );
            }
            let token = hub::identity::issue(&secret, &user, ttl).context("signing the token")?;
            println!("{token}");
            Ok(())
        }
        Command::Config { action } => {
            if let Some(path) = action.check {
                Config::load(Some(&path), std::env::vars())?;
                println!("{}: ok", path.display());
            } else if action.default {
                print!("{}", switchboard::config::reference::default_toml());
            }
            Ok(())
        }
        Command::Contract { schema, .. } => {
            // The texts end with their newline already.
            if schema {
                print!("{}", switchboard::contract::document_text());
            } else {
                print!("{}", switchboard::contract::typescript_text());
            }
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Listen for SIGTERM before announcing the port: a signal that arrives
    // right after start must drain, not kill.
    let shutdown = shutdown_signal().context("installing the signal handlers")?;
    let mut shutdown = std::pin::pin!(shutdown);
    // Opening the store may wait (a PostgreSQL migration lock another node
    // holds): a signal meanwhile stops the start.
    let app = tokio::select! {
        app = App::new(&config) => app?,
        _ = &mut shutdown => {
            tracing::info!("signal received while starting: not started");
            return Ok(());
        }
    };
    let listeners = server::Listeners::bind(&config).await?;
    for listener in &listeners.public {
        // Scripts and tests read this line to learn the port.
        println!("listening on {}", listener.local_addr()?);
    }
    for listener in &listeners.admin {
        println!("operator endpoints on {}", listener.local_addr()?);
    }
    if app.web.is_some()
        && let Some(listener) = listeners.public.first()
    {
        let mut addr = listener.local_addr()?;
        // A wildcard address is no place to browse to.
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        println!("open http://{addr}/ in a browser");
        if app.dev.is_some() {
            // Beside the URL, where whoever started it looks (the log's
            // warning may be filtered out).
            println!(
                "dev mode: anyone who reaches this address can sign in as any user \
                 (not for production)"
            );
        }
    }
    server::run(listeners, &config, app, shutdown).await
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C); the handlers are installed at
/// once, not when the future is first polled.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

fn init_logging(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
