//! The gateway's own S3 endpoint in tests: its address from the log,
//! access keys from `gateway user s3-key`, and the AWS CLI to drive it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{gateway_bin, run_with_timeout, CmdOutput, Gateway};

/// One access key as `gateway user s3-key create` printed it.
#[derive(Debug, Clone)]
pub struct S3Key {
    /// The access key id.
    pub id: String,
    /// The secret access key.
    pub secret: String,
}

/// The S3 endpoint's address, from the gateway's `S3 endpoint on` line.
pub fn endpoint_addr(gw: &Gateway) -> Result<SocketAddr> {
    crate::ops::logged_http_address(gw, "S3 endpoint on ")
        .context("the gateway never logged `S3 endpoint on ...`")
}

/// `gateway user s3-key ARGS -c CONFIG`.
pub fn s3_key_command(config: &Path, args: &[&str]) -> Result<CmdOutput> {
    let mut cmd = Command::new(gateway_bin()?);
    cmd.args(["user", "s3-key"])
        .args(args)
        .arg("-c")
        .arg(config);
    run_with_timeout(cmd, Duration::from_secs(60))
}

/// Issues a key for `user` with `gateway user s3-key create`.
pub fn create_key(config: &Path, user: &str) -> Result<S3Key> {
    let out = s3_key_command(config, &["create", user])?;
    if !out.success() {
        bail!("gateway user s3-key create {user} failed:\n{}", out.text());
    }
    let field = |label: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
    };
    Ok(S3Key {
        id: field("access key id:").context("no access key id printed")?,
        secret: field("secret access key:").context("no secret printed")?,
    })
}

/// The AWS CLI: Debian's (`/usr/bin/aws`, what the test script installs)
/// in preference to any other on PATH.
pub fn aws_bin() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/aws");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("aws")
    }
}

/// `aws --endpoint-url URL ARGS` signed with `key`, with no profile or
/// config file of the machine's user involved.
pub fn aws(endpoint: &str, key: &S3Key, args: &[&str], scratch: &Path) -> Result<CmdOutput> {
    let mut cmd = Command::new(aws_bin());
    cmd.arg("--endpoint-url")
        .arg(endpoint)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", scratch)
        .env("AWS_CONFIG_FILE", scratch.join("aws-config-none"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            scratch.join("aws-credentials-none"),
        )
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_PAGER", "")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    run_with_timeout(cmd, Duration::from_secs(300))
}
