//! The command line: its grammar here, and a file per command group whose
//! functions print what the library functions they call return.

pub mod cluster;
pub mod remote;
pub mod s3;
pub mod sync;

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
        /// The TOML config file (else $GATEWAY_CONFIG, else /etc/gateway/config.toml).
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
    /// Remote servers: list, test, trust a new host key.
    Remote {
        /// What to do.
        #[command(subcommand)]
        command: RemoteCommand,
        /// The TOML config file (else $GATEWAY_CONFIG, else /etc/gateway/config.toml).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Syncs: run one now (or plan it), list them, show a sync's runs.
    Sync {
        /// What to do.
        #[command(subcommand)]
        command: SyncCommand,
        /// The TOML config file (else $GATEWAY_CONFIG, else /etc/gateway/config.toml).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Several nodes on one PostgreSQL state database.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        command: ClusterCommand,
        /// The TOML config file (else $GATEWAY_CONFIG, else /etc/gateway/config.toml).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Admin API tools.
    Admin {
        /// What to do.
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `gateway man > gateway.1`).
    Man,
    /// Generate an RSA-4096 key pair for logging in to a remote server.
    Keygen {
        /// Where to write the private key (the public key goes to PATH.pub).
        #[arg(long)]
        out: PathBuf,
        /// Comment stored with the key.
        #[arg(long, default_value = "gateway")]
        comment: String,
    },
}

/// `gateway cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The nodes seen recently and, per remote, the connection slots each
    /// node holds.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `gateway remote ...`.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Each remote with its state, pinned host key and connection limit.
    List,
    /// Connect, log in and list the remote root; report the source address,
    /// host key and round-trip time, or one clear reason for failure.
    Test {
        /// The remote's name.
        name: String,
    },
    /// Pin the host key the remote presents now and re-enable it.
    Trust {
        /// The remote's name.
        name: String,
    },
}

/// `gateway sync ...`.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Run a sync now and print what it does; exit status 1 if any file failed.
    Run {
        /// The sync's name.
        name: String,
        /// Print what a run would do now, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Each sync with its schedule, next run and last outcome.
    List,
    /// A sync's runs, newest first, with their errors.
    History {
        /// The sync's name.
        name: String,
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// `gateway config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and name the key, file and line of every problem.
    Check {
        /// The TOML config file (else $GATEWAY_CONFIG, else /etc/gateway/config.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// `gateway user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Read a password from standard input and print its argon2 hash for the config file.
    HashPassword,
    /// Access keys of the S3 endpoint: create (prints the secret once), list, revoke.
    S3Key {
        /// What to do.
        #[command(subcommand)]
        command: S3KeyCommand,
        /// The TOML config file (else $GATEWAY_CONFIG, else /etc/gateway/config.toml).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
}

/// `gateway user s3-key ...`.
#[derive(Debug, Subcommand)]
pub enum S3KeyCommand {
    /// Issue a key for a user; prints its id and secret once, with the S3
    /// remote lines for the partner's gateway.
    Create {
        /// The user whose tree and permissions the key gives.
        user: String,
    },
    /// Every key with its user and when it was issued (never the secret).
    List,
    /// Revoke a key: its next request fails with InvalidAccessKeyId.
    Revoke {
        /// The access key id.
        id: String,
    },
}

/// `gateway admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Make a new admin API key: prints the key once and the
    /// `[[admin.keys]]` lines (with only its hash) for the config file.
    NewKey {
        /// A name for the key (who or what uses it).
        name: String,
        /// When the key stops working, as an RFC 3339 time
        /// (2027-01-31T00:00:00Z); never when left out.
        #[arg(long)]
        expires: Option<String>,
        /// What the key may do: `read-only` (every GET: dashboards,
        /// monitoring), `operator` (also test, trust a host key, run a
        /// sync now) or `admin` (also reload the config).
        #[arg(long, default_value = "read-only", value_parser = ["read-only", "operator", "admin"])]
        scope: String,
    },
}
