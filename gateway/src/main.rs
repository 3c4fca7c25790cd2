//! The `gateway` binary: parses the command line and runs one command.

#![forbid(unsafe_code)]

use std::io::BufRead;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use gateway::cli::{remote as remote_cli, s3 as s3_cli, sync as sync_cli};
use gateway::cli::{
    AdminCommand, Cli, ClusterCommand, Command, ConfigCommand, RemoteCommand, S3KeyCommand,
    SyncCommand, UserCommand,
};
use gateway::{config, logging, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let chosen = config::discover::choose(config.as_deref());
            let settings = match config::load(chosen.as_ref().map(|c| c.path.as_path())) {
                Ok(s) => s,
                Err(e) => return config_failed(&e),
            };
            logging::init(settings.log_format);
            match &chosen {
                Some(c) => tracing::info!("config: {c}"),
                None => tracing::info!(
                    "config: the built-in defaults ({})",
                    config::discover::none_found()
                ),
            }
            for warning in &settings.warnings {
                tracing::warn!("{warning}");
            }
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            match runtime.block_on(serve::run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let path = match chosen_config(config.as_deref(), Needs::FileOrDefaults, "config check")
            {
                Ok(p) => p,
                Err(code) => return code,
            };
            match config::load(path.as_deref()) {
                Ok(s) => {
                    for warning in &s.warnings {
                        eprintln!("warning: {warning}");
                    }
                    let source = s
                        .source
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "built-in defaults".to_string());
                    println!(
                        "config OK: {source} ({} user(s), listening on {})",
                        s.users.len(),
                        list(&s.listen)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => config_failed(&e),
            }
        }
        Command::Admin {
            command:
                AdminCommand::NewKey {
                    name,
                    expires,
                    scope,
                },
        } => report(gateway::admin::keys::print_new_key(
            &name,
            expires.as_deref(),
            gateway::config::ApiScope::parse(&scope).unwrap_or(gateway::config::ApiScope::ReadOnly),
        )),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "gateway",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                // A reader that stops early (`gateway man | head`) is no failure.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("error: cannot write the manual page: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Command::Keygen { out, comment } => report(remote_cli::keygen(&out, &comment)),
        Command::Remote { command, config } => {
            let (settings, runtime) = match tool_setup(config.as_deref(), "remote") {
                Ok(x) => x,
                Err(code) => return code,
            };
            report(match command {
                RemoteCommand::List => remote_cli::list(&settings),
                RemoteCommand::Test { name } => {
                    runtime.block_on(remote_cli::test(&settings, &name))
                }
                RemoteCommand::Trust { name } => {
                    runtime.block_on(remote_cli::trust(&settings, &name))
                }
            })
        }
        Command::Cluster { command, config } => {
            let (settings, runtime) = match tool_setup(config.as_deref(), "cluster") {
                Ok(x) => x,
                Err(code) => return code,
            };
            match command {
                ClusterCommand::Status { json } => {
                    report(runtime.block_on(gateway::cli::cluster::status(&settings, json)))
                }
            }
        }
        Command::Sync { command, config } => {
            let (settings, runtime) = match tool_setup(config.as_deref(), "sync") {
                Ok(x) => x,
                Err(code) => return code,
            };
            match command {
                SyncCommand::Run { name, dry_run } => {
                    match runtime.block_on(sync_cli::run(&settings, &name, dry_run)) {
                        Ok(true) => ExitCode::SUCCESS,
                        Ok(false) => ExitCode::FAILURE,
                        Err(e) => {
                            eprintln!("error: {e:#}");
                            ExitCode::FAILURE
                        }
                    }
                }
                SyncCommand::List => report(sync_cli::list(&settings)),
                SyncCommand::History { name, limit } => {
                    report(sync_cli::history(&settings, &name, limit))
                }
            }
        }
        Command::User {
            command: UserCommand::S3Key { command, config },
        } => {
            let path = match chosen_config(config.as_deref(), Needs::FileOrDefaults, "user s3-key")
            {
                Ok(p) => p,
                Err(code) => return code,
            };
            let settings = match config::load(path.as_deref()) {
                Ok(s) => s,
                Err(e) => return config_failed(&e),
            };
            report(match command {
                S3KeyCommand::Create { user } => s3_cli::create(&settings, &user),
                S3KeyCommand::List => s3_cli::list(&settings),
                S3KeyCommand::Revoke { id } => s3_cli::revoke(&settings, &id),
            })
        }
        Command::User {
            command: UserCommand::HashPassword,
        } => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
                eprintln!("error: cannot read the password from standard input: {e}");
                return ExitCode::FAILURE;
            }
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("error: the password is empty");
                return ExitCode::FAILURE;
            }
            match policy::hash_password(password) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Whether a command can run on the built-in defaults.
enum Needs {
    /// A config file (the defaults have no remotes or syncs to act on).
    File,
    /// A config file if there is one, else the built-in defaults.
    FileOrDefaults,
}

/// The config file `command` uses (`--config`, `GATEWAY_CONFIG`, the
/// system file), said on standard error; `None` for the built-in
/// defaults; or the exit code after saying why there is none.
fn chosen_config(
    flag: Option<&std::path::Path>,
    needs: Needs,
    command: &str,
) -> Result<Option<std::path::PathBuf>, ExitCode> {
    match (config::discover::choose(flag), needs) {
        (Some(chosen), _) => {
            eprintln!("using config {chosen}");
            Ok(Some(chosen.path))
        }
        (None, Needs::File) => {
            eprintln!(
                "error: `gateway {command}` needs a config file: {}",
                config::discover::how_to_give_one()
            );
            Err(ExitCode::from(2))
        }
        (None, Needs::FileOrDefaults) => {
            eprintln!(
                "using the built-in defaults ({})",
                config::discover::none_found()
            );
            Ok(None)
        }
    }
}

/// What the admin commands (`remote`, `sync`, `cluster`) need: the
/// validated config file, quiet logging and a runtime; or the exit code
/// after saying why not.
fn tool_setup(
    config: Option<&std::path::Path>,
    command: &str,
) -> Result<(config::Settings, tokio::runtime::Runtime), ExitCode> {
    let path = chosen_config(config, Needs::File, command)?;
    let settings = config::load(path.as_deref()).map_err(|e| config_failed(&e))?;
    logging::init_quiet();
    Ok((settings, runtime()?))
}

/// The multi-threaded tokio runtime, or the exit code after saying why not.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_failed(e: &config::ConfigError) -> ExitCode {
    for problem in &e.0 {
        eprintln!("error: {problem}");
    }
    ExitCode::from(2)
}

fn list(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
