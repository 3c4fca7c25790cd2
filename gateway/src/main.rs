//! The `gateway` binary: parses the command line and runs one command.

#![forbid(unsafe_code)]

use std::io::BufRead;
use std::process::ExitCode;

use clap::Parser;
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
            let settings = match config::load(config.as_deref()) {
                Ok(s) => s,
                Err(e) => return config_failed(&e),
            };
            logging::init(settings.log_format);
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
        } => match config::load(config.as_deref()) {
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
        },
        Command::Admin {
            command: AdminCommand::NewKey { name, expires },
        } => report(gateway::admin::keys::print_new_key(
            &name,
            expires.as_deref(),
        )),
        Command::Keygen { out, comment } => report(remote_cli::keygen(&out, &comment)),
        Command::Remote { command, config } => {
            let (settings, runtime) = match tool_setup(config.as_deref()) {
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
            let (settings, runtime) = match tool_setup(config.as_deref()) {
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
            let (settings, runtime) = match tool_setup(config.as_deref()) {
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
            let settings = match config::load(config.as_deref()) {
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

/// What the admin commands (`remote`, `sync`) need: the validated config,
/// quiet logging and a runtime; or the exit code after saying why not.
fn tool_setup(
    config: Option<&std::path::Path>,
) -> Result<(config::Settings, tokio::runtime::Runtime), ExitCode> {
    let settings = config::load(config).map_err(|e| config_failed(&e))?;
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
