//! `gateway user s3-key ...`: issue, list and revoke the S3 endpoint's
//! access keys. They live in the state database, so they work on a
//! running gateway at once (a revoked key fails its next request).

use anyhow::{bail, Context, Result};

use crate::cluster::open_state as open_store;
use crate::config::Settings;
use crate::s3::keys::KeyBook;
use crate::state;

fn book(settings: &Settings) -> Result<KeyBook> {
    Ok(KeyBook::new(open_store(settings)?))
}

/// Whether `name` is a user of this gateway (in the config, or created
/// at first start).
fn user_exists(settings: &Settings, name: &str) -> Result<bool> {
    if settings.users.iter().any(|u| u.name == name) {
        return Ok(true);
    }
    let store = open_store(settings)?;
    Ok(state::stored_users(store.as_ref())
        .context("cannot read the users in the state database")?
        .iter()
        .any(|u| u.name == name))
}

/// Issues a key for `user` and prints it (the secret only this once),
/// with the S3 remote lines a partner gateway needs.
pub fn create(settings: &Settings, user: &str) -> Result<()> {
    if !user_exists(settings, user)? {
        bail!("there is no user `{user}` in the config");
    }
    let key = book(settings)?
        .create(user)
        .context("cannot store the new key")?;
    let endpoint = match &settings.s3_endpoint {
        Some(e) => format!(
            "{}://{}",
            if e.tls.is_some() { "https" } else { "http" },
            e.listen
        ),
        None => {
            eprintln!("note: the S3 endpoint is off; set [s3] listen in the config to serve it");
            "https://<this gateway's S3 address>".to_string()
        }
    };
    println!("S3 access key for user `{user}` (the secret is shown only now):");
    println!("  access key id:     {}", key.id);
    println!("  secret access key: {}", key.secret);
    println!();
    println!("On the partner's gateway, as an S3 remote:");
    println!("  [[remotes]]");
    println!("  name = \"<a name for this site>\"");
    println!("  kind = \"s3\"");
    println!("  endpoint = \"{endpoint}\"");
    println!("  bucket = \"default\"");
    println!("  region = \"us-east-1\"   # any region works");
    println!("  access_key_id = \"{}\"", key.id);
    println!("  secret_access_key = \"{}\"", key.secret);
    Ok(())
}

/// Prints every key: id, user, when issued (never the secret).
pub fn list(settings: &Settings) -> Result<()> {
    let keys = book(settings)?.list().context("cannot read the keys")?;
    if keys.is_empty() {
        println!("no S3 access keys (`gateway user s3-key create USER` makes one)");
        return Ok(());
    }
    println!("{:<22} {:<20} ISSUED", "ACCESS KEY ID", "USER");
    for k in keys {
        let issued = jiff::Timestamp::from_second(k.created as i64)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| k.created.to_string());
        let known = if user_exists(settings, &k.user)? {
            ""
        } else {
            "  (user no longer in the config: the key does not work)"
        };
        println!("{:<22} {:<20} {issued}{known}", k.id, k.user);
    }
    Ok(())
}

/// Revokes the key `id`.
pub fn revoke(settings: &Settings, id: &str) -> Result<()> {
    if book(settings)?
        .revoke(id)
        .context("cannot change the keys")?
    {
        println!("revoked {id}: requests signed with it now fail with InvalidAccessKeyId");
        Ok(())
    } else {
        bail!("no S3 access key `{id}` (`gateway user s3-key list` shows them)")
    }
}
