//! FTP connections for the generic [`Pool`](crate::pool::Pool): opening
//! them, telling whether an idle one still works, closing them with QUIT.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::MutexGuard;

use super::control::Control;
use super::features::Features;
use super::stream::Health;
use super::tls::TlsSetup;
use super::FtpSettings;
use crate::pending::PendingRemovals;
use crate::pool::Connector;
use crate::Result;

/// One pooled control connection. The control channel is strictly one
/// command at a time, so it sits behind a lock that its single user takes.
#[derive(Debug)]
pub struct FtpConnection {
    control: tokio::sync::Mutex<Control>,
}

impl FtpConnection {
    /// The control channel, for one operation.
    pub async fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().await
    }
}

/// Opens connections to one remote and remembers what its server offers.
#[derive(Debug)]
pub struct FtpConnector {
    pub(super) settings: FtpSettings,
    pub(super) tls: Option<TlsSetup>,
    /// The features of the most recently opened connection.
    pub(super) features: Arc<Mutex<Option<Features>>>,
    /// Partial uploads to remove through the next working connection.
    pub(super) removals: PendingRemovals,
}

impl FtpConnector {
    /// The server's features as last seen, if any connection was opened.
    pub fn features(&self) -> Option<Features> {
        self.features
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl Connector for FtpConnector {
    type Connection = FtpConnection;

    async fn connect(&self) -> Result<FtpConnection> {
        match Control::open(&self.settings, self.tls.as_ref()).await {
            Ok(control) => {
                *self.features.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(control.features().clone());
                Ok(FtpConnection {
                    control: tokio::sync::Mutex::new(control),
                })
            }
            Err(e) => {
                let reason = e.connect_failure();
                let err = e
                    .into_backend(&self.settings.name, "connect", "")
                    .with_connect_failure(reason);
                tracing::warn!(remote = %self.settings.name, "connect failed: {}", err.message());
                Err(err)
            }
        }
    }

    /// A connection is usable unless it broke, has a transfer open, or its
    /// socket shows the server closed it. One that is merely suspicious
    /// (unasked bytes, long idle) is checked with NOOP when checked out.
    fn is_usable(&self, connection: &FtpConnection) -> bool {
        match connection.control.try_lock() {
            Ok(control) => control.health() != Health::Closed,
            Err(_) => false,
        }
    }

    async fn close(&self, connection: FtpConnection) {
        connection.control.into_inner().quit().await;
    }
}
