//! Console logins: a browser that presented a valid API key gets a random
//! session id (its cookie) and a CSRF token (sent back by the page's
//! script with every action). Sessions live in memory only: a restart
//! logs everyone out, which is the safe direction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// How long a console login lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Most sessions kept at once; the oldest go first beyond it.
pub const MAX_SESSIONS: usize = 1000;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    /// The SHA-256 of the API key it logged in with (checked again on
    /// every request, so a revoked key ends the session).
    pub key_hash: [u8; 32],
    /// The token every state-changing request must carry.
    pub csrf_token: String,
    /// When it ends.
    pub expires: Instant,
}

/// Every console session of this process.
#[derive(Debug, Default)]
pub struct ConsoleSessions {
    sessions: Mutex<HashMap<String, ConsoleSession>>,
}

impl ConsoleSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ConsoleSession>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for the key with `key_hash`; returns its id.
    pub fn start(&self, key_hash: [u8; 32], now: Instant) -> (String, ConsoleSession) {
        let id = random_token();
        let session = ConsoleSession {
            key_hash,
            csrf_token: random_token(),
            expires: now + SESSION_LIFETIME,
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        while sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session with `id`, if any.
    pub fn get(&self, id: &str, now: Instant) -> Option<ConsoleSession> {
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session with `id`.
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }
}

impl ConsoleSession {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented.len() == self.csrf_token.len()
            && bool::from(presented.as_bytes().ct_eq(self.csrf_token.as_bytes()))
    }
}

/// 32 random bytes as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // The thread RNG is seeded from the OS too.
        use rand::RngExt;
        rand::rng().fill(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let s = ConsoleSessions::default();
        let now = Instant::now();
        let (id, session) = s.start([1; 32], now);
        assert_eq!(id.len(), 64);
        assert!(s.get(&id, now).is_some());
        assert!(session.csrf_matches(&session.csrf_token));
        assert!(!session.csrf_matches("x"));
        assert!(!session.csrf_matches(&"0".repeat(64)));
        assert!(s.get(&id, now + SESSION_LIFETIME).is_none(), "expired");
        let (id2, _) = s.start([1; 32], now);
        s.end(&id2);
        assert!(s.get(&id2, now).is_none());
        assert!(s.get("nope", now).is_none());
    }
}
