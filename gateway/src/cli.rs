//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// An SFTP gateway that carries file operations out to SFTP, FTP/FTPS and
/// S3-compatible servers.
#[derive(Debug, Parser)]
#[command(name = "gateway", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the SFTP server (built-in defaults when no config is given).
    Serve {
        /// The TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Configuration tools.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// User tools.
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
}

/// `gateway config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and name the key, file and line of every problem.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// `gateway user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Read a password from standard input and print its argon2 hash for the config file.
    HashPassword,
}
