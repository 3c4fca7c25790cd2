//! A real browser for the console tests: Debian's `chromium` in headless
//! mode, driven through Debian's `chromedriver` over the W3C WebDriver
//! protocol (plain JSON over HTTP/1.1 on loopback, so no client crate).
//! Each [`Browser`] starts its own chromedriver and profile and stops both
//! when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::sshd::free_port;

/// The W3C element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The browser binary (`GW_CHROMIUM` overrides).
pub fn chromium_path() -> PathBuf {
    std::env::var_os("GW_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The driver binary (`GW_CHROMEDRIVER` overrides).
pub fn chromedriver_path() -> PathBuf {
    std::env::var_os("GW_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// Why the browser tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    for path in [chromium_path(), chromedriver_path()] {
        if !path.exists() {
            return Some(format!(
                "{} is missing (Debian packages chromium and chromium-driver; scripts/test.sh installs them)",
                path.display()
            ));
        }
    }
    None
}

/// One headless chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: tempfile::TempDir,
    shots: PathBuf,
    taken: usize,
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a 1280x800
    /// window; screenshots go to `shots`.
    pub fn start(shots: &Path) -> Result<Browser> {
        std::fs::create_dir_all(shots)?;
        let port = free_port()?;
        let profile = tempfile::Builder::new().prefix("gw-chromium-").tempdir()?;
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new(chromedriver_path())
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", chromedriver_path().display()))?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile,
            shots: shots.to_path_buf(),
            taken: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.request("GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,800",
            &format!(
                "--user-data-dir={}",
                browser.profile.path().join("p").display()
            ),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium_path(), "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = browser
            .request("POST", "/session", Some(caps))
            .context("chromedriver could not start chromium")?;
        browser.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {v}"))?
            .to_string();
        Ok(browser)
    }

    /// Opens `url`.
    pub fn goto(&mut self, url: &str) -> Result<()> {
        self.command("POST", "url", json!({ "url": url }))?;
        Ok(())
    }

    /// The page's URL now.
    pub fn url(&mut self) -> Result<String> {
        Ok(self
            .command("GET", "url", Value::Null)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The first element matching `css`.
    pub fn find(&mut self, css: &str) -> Result<String> {
        let v = self
            .command(
                "POST",
                "element",
                json!({"using": "css selector", "value": css}),
            )
            .with_context(|| format!("no element `{css}`"))?;
        v[ELEMENT_KEY]
            .as_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("no element reference in {v}"))
    }

    /// Clicks the first element matching `css`.
    pub fn click(&mut self, css: &str) -> Result<()> {
        let id = self.find(css)?;
        self.command("POST", &format!("element/{id}/click"), json!({}))
            .with_context(|| format!("cannot click `{css}`"))?;
        Ok(())
    }

    /// Types `text` into the first element matching `css`.
    pub fn type_into(&mut self, css: &str, text: &str) -> Result<()> {
        let id = self.find(css)?;
        self.command(
            "POST",
            &format!("element/{id}/value"),
            json!({ "text": text }),
        )?;
        Ok(())
    }

    /// The visible text of the first element matching `css`.
    pub fn text(&mut self, css: &str) -> Result<String> {
        let id = self.find(css)?;
        Ok(self
            .command("GET", &format!("element/{id}/text"), Value::Null)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns its value.
    pub fn eval(&mut self, script: &str, args: Value) -> Result<Value> {
        self.command(
            "POST",
            "execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    /// Polls `check` until it gives `Some`, for at most `timeout`.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&mut Browser) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            match check(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("timeout").ok();
                bail!(
                    "timed out after {timeout:?} waiting for {what} (last error: {last}; screenshot {shot:?})"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a PNG of the window as `NN-name.png` in the screenshots
    /// folder and returns its path.
    pub fn screenshot(&mut self, name: &str) -> Result<PathBuf> {
        use base64::Engine;
        let v = self.command("GET", "screenshot", Value::Null)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .context("the screenshot is not base64")?;
        self.taken += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// The browser's console messages since the last call (CSP
    /// violations and script errors show here).
    pub fn console_messages(&mut self) -> Result<Vec<String>> {
        let v = self.command("POST", "se/log", json!({"type": "browser"}))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        format!(
                            "{} {}",
                            m["level"].as_str().unwrap_or(""),
                            m["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A WebDriver command of this session.
    fn command(&mut self, method: &str, path: &str, body: Value) -> Result<Value> {
        let body = (!body.is_null()).then_some(body);
        let path = format!("/session/{}/{path}", self.session);
        self.request(method, &path, body)
    }

    /// One WebDriver request; its `value`, or the driver's error.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        // chromedriver keeps the connection open despite `Connection:
        // close`: read the head, then exactly the body it announces.
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut buf)?;
            if n == 0 {
                bail!("chromedriver closed the connection before answering");
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
        let mut body_bytes = raw[head_end + 4..].to_vec();
        let length = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        });
        match length {
            Some(len) => {
                while body_bytes.len() < len {
                    let n = stream.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    body_bytes.extend_from_slice(&buf[..n]);
                }
            }
            None => {
                stream.read_to_end(&mut body_bytes)?;
            }
        }
        let rest = String::from_utf8_lossy(&body_bytes).to_string();
        let content = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(&rest)
        } else {
            rest
        };
        let v: Value = serde_json::from_str(&content)
            .with_context(|| format!("chromedriver answered {head}: {content}"))?;
        let value = v["value"].clone();
        if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
            bail!(
                "{error}: {}",
                value["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            );
        }
        Ok(value)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.request("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A chunked HTTP body joined.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
