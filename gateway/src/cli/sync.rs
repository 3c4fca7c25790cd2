//! `gateway sync run | list | history`: syncs from the command line.
//!
//! `sync run` runs in this process with its own connections to the remote
//! (capped by the remote's `max_connections` and the sync's `parallel`);
//! the same sync's lock keeps it from overlapping a scheduled run of a
//! server using the same state folder.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use backends::LocalBackend;
use tokio::sync::watch;

use crate::cluster::open_state as open_store;
use crate::config::{Settings, SyncSettings};
use crate::remotes::connect_remote;
use crate::sync::records::{Outcome, Records, Trigger};
use crate::sync::run::{self, arrow, side_name, Action, Event, Observer, SyncSides};
use crate::sync::scheduler::next_run;

fn find<'s>(settings: &'s Settings, name: &str) -> Result<&'s SyncSettings> {
    if let Some(s) = settings.syncs.iter().find(|s| s.name == name) {
        return Ok(s);
    }
    let known: Vec<&str> = settings.syncs.iter().map(|s| s.name.as_str()).collect();
    bail!(
        "no sync named `{name}` in {} (declared: {})",
        settings
            .source
            .as_ref()
            .map_or("the built-in defaults".to_string(), |p| p
                .display()
                .to_string()),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )
}

/// The gateway's storage and the sync's remote, as this process reaches
/// them.
fn sides(
    settings: &Settings,
    sync: &SyncSettings,
    store: Arc<dyn crate::state::StateStore>,
) -> Result<SyncSides> {
    let gateway = LocalBackend::open(&settings.storage).with_context(|| {
        format!(
            "cannot open the storage folder {}",
            settings.storage.display()
        )
    })?;
    let remote_settings = settings
        .remote(&sync.remote)
        .with_context(|| format!("sync `{}`: no remote named `{}`", sync.name, sync.remote))?;
    let remote = connect_remote(remote_settings, &settings.dedicated_ips, store)?;
    Ok(SyncSides {
        gateway: Arc::new(gateway),
        remote: remote.backend,
        remote_folders_are_virtual: remote_settings.kind() == crate::config::RemoteKind::S3,
    })
}

/// `gateway sync run NAME [--dry-run]`: returns whether every file went
/// through.
pub async fn run(settings: &Settings, name: &str, dry_run: bool) -> Result<bool> {
    let sync = find(settings, name)?;
    let store = open_store(settings)?;
    let sides = sides(settings, sync, store.clone())?;
    let delete = sync.after_copy == crate::config::AfterCopy::Delete;
    let printer = Printer::new(dry_run, delete);
    if dry_run {
        let actions = run::dry_run(sync, &sides, &printer)
            .await
            .with_context(|| format!("sync `{name}`: cannot plan the run"))?;
        let (mut copies, mut bytes, mut deletes, mut held) = (0u64, 0u64, 0u64, 0u64);
        for a in &actions {
            match a {
                Action::Copy { state, .. } => {
                    copies += 1;
                    bytes += state.size;
                    deletes += u64::from(delete);
                }
                Action::ConfirmAndRemove { .. } => deletes += 1,
                Action::Hold { .. } => held += 1,
            }
        }
        println!(
            "dry run of {name}: {copies} to copy ({bytes} bytes), {deletes} to delete, {held} held"
        );
        return Ok(true);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        if wait_for_interrupt().await {
            let _ = stop_tx.send(true);
        }
    });
    let started = Instant::now();
    let record = run::run(
        sync,
        &sides,
        store.as_ref(),
        Trigger::Manual,
        &printer,
        stop_rx,
    )
    .await?;
    printer.clear_bar();
    let c = &record.counts;
    println!(
        "sync {name} {}: {} copied ({} bytes), {} skipped, {} deleted, {} failed{} in {}",
        record.outcome.as_str(),
        c.copied,
        c.bytes,
        c.skipped,
        c.deleted,
        c.failed,
        vanished(c),
        humantime::format_duration(std::time::Duration::from_millis(
            started.elapsed().as_millis() as u64
        ))
    );
    Ok(record.outcome == Outcome::Succeeded)
}

async fn wait_for_interrupt() -> bool {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return false;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("stopping: no new copies; unfinished ones are discarded");
    true
}

/// Prints a run's events as lines on standard output, with a progress bar
/// on standard error when it is a terminal.
struct Printer {
    dry_run: bool,
    /// `after_copy = delete`: a dry run's copy line is followed by the
    /// source's delete.
    delete_after_copy: bool,
    bar: Option<Mutex<Bar>>,
}

/// The progress bar: files done, bytes moved (during a file, not only
/// between files), the rate since the copies began and the time left.
#[derive(Default)]
struct Bar {
    files: u64,
    bytes: u64,
    done_files: u64,
    /// Bytes that reached their destination, copies in progress included.
    moved_bytes: u64,
    /// When the plan was made (the copies begin).
    started: Option<std::time::Instant>,
    /// When the bar was last drawn (redrawn at most every 100 ms while
    /// bytes move).
    last_drawn: Option<std::time::Instant>,
    drawn: bool,
}

impl Printer {
    fn new(dry_run: bool, delete_after_copy: bool) -> Self {
        let bar = (!dry_run && std::io::stderr().is_terminal()).then(|| Mutex::new(Bar::default()));
        Printer {
            dry_run,
            delete_after_copy,
            bar,
        }
    }

    fn line(&self, text: String) {
        let mut bar = self
            .bar
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(bar) = bar.as_deref_mut() {
            if bar.drawn {
                eprint!("\r\x1b[K");
                bar.drawn = false;
            }
        }
        println!("{text}");
        let _ = std::io::stdout().flush();
        if let Some(bar) = bar.as_deref_mut() {
            draw(bar);
        }
    }

    fn clear_bar(&self) {
        if let Some(bar) = &self.bar {
            let mut bar = bar.lock().unwrap_or_else(|p| p.into_inner());
            if bar.drawn {
                eprint!("\r\x1b[K");
                bar.drawn = false;
            }
        }
    }

    fn progress(&self, f: impl FnOnce(&mut Bar)) {
        if let Some(bar) = &self.bar {
            let mut bar = bar.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut bar);
            draw(&mut bar);
        }
    }

    /// Bytes moved: redraws at most every 100 ms.
    fn moved(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            let mut bar = bar.lock().unwrap_or_else(|p| p.into_inner());
            bar.moved_bytes += bytes;
            let due = bar
                .last_drawn
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(100));
            if due {
                draw(&mut bar);
            }
        }
    }
}

fn draw(bar: &mut Bar) {
    eprint!("\r\x1b[K{}", bar_text(bar, std::time::Instant::now()));
    let _ = std::io::stderr().flush();
    bar.drawn = true;
    bar.last_drawn = Some(std::time::Instant::now());
}

/// `[#####     ] 3/10 files, 1.2 GiB / 4.0 GiB, 85.3 MiB/s, 34s left`.
fn bar_text(bar: &Bar, now: std::time::Instant) -> String {
    const WIDTH: u64 = 30;
    let moved = bar.moved_bytes.min(bar.bytes);
    let filled = (moved * WIDTH)
        .checked_div(bar.bytes)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    let mut text = format!(
        "[{}{}] {}/{} files, {} / {}",
        "#".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize),
        bar.done_files,
        bar.files,
        human_bytes(moved),
        human_bytes(bar.bytes)
    );
    let elapsed = bar
        .started
        .map(|t| now.saturating_duration_since(t).as_secs_f64())
        .unwrap_or(0.0);
    if elapsed >= 0.5 && moved > 0 {
        let rate = moved as f64 / elapsed;
        let left = (bar.bytes - moved) as f64 / rate;
        text += &format!(
            ", {}/s, {} left",
            human_bytes(rate as u64),
            humantime::format_duration(std::time::Duration::from_secs(left.ceil() as u64))
        );
    }
    text
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Observer for Printer {
    fn event(&self, event: &Event) {
        match event {
            Event::Planned { files, bytes } => self.progress(|b| {
                b.files = *files;
                b.bytes = *bytes;
                b.started = Some(std::time::Instant::now());
            }),
            Event::Transferred { bytes } => self.moved(*bytes),
            Event::Action(action) if self.dry_run => match action {
                Action::Copy { path, from, .. } => {
                    self.line(format!("would copy {} {path}", arrow(*from)));
                    if self.delete_after_copy {
                        self.line(format!("would delete {} {path}", side_name(*from)));
                    }
                }
                Action::ConfirmAndRemove { path, from, .. } => {
                    self.line(format!("would delete {} {path}", side_name(*from)));
                }
                Action::Hold { path, why } => self.line(format!("would hold {path} ({why})")),
            },
            Event::Action(Action::Hold { path, why }) => self.line(format!("held {path} ({why})")),
            Event::Action(_) => {}
            Event::Copied { path, from, .. } => {
                self.progress(|b| b.done_files += 1);
                self.line(format!("copied {} {path}", arrow(*from)));
            }
            Event::Deleted { path, side } => {
                self.line(format!("deleted {} {path}", side_name(*side)))
            }
            Event::Skipped { path, why } => self.line(format!("skipped {path} ({why})")),
            Event::Failed { path, error } if path.is_empty() => {
                self.line(format!("failed: {error}"))
            }
            Event::Failed { path, error } => self.line(format!("failed {path}: {error}")),
        }
    }
}

/// `gateway sync list`.
pub fn list(settings: &Settings) -> Result<()> {
    if settings.syncs.is_empty() {
        println!("no syncs configured");
        return Ok(());
    }
    let store = open_store(settings)?;
    let records = Records::new(store.as_ref());
    let mut rows = vec![[
        "NAME".to_string(),
        "DIRECTION".to_string(),
        "REMOTE".to_string(),
        "SCHEDULE".to_string(),
        "NEXT RUN".to_string(),
        "LAST RUN".to_string(),
    ]];
    let now = SystemTime::now();
    for s in &settings.syncs {
        let history = records.history(&s.name)?;
        let holder = records.holder(&s.name)?;
        let last = history.first();
        let next = match next_run(s, last, now) {
            Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
            None => "-".to_string(),
        };
        let last_text = match last {
            Some(r) => format!(
                "{} at {}",
                r.shown_outcome(holder.as_ref()).as_str(),
                humantime::format_rfc3339_seconds(r.started())
            ),
            None => "never".to_string(),
        };
        rows.push([
            s.name.clone(),
            format!("{:?}", s.direction)
                .to_lowercase()
                .replace("twoway", "two_way"),
            format!(
                "{}:{}",
                s.remote,
                if s.remote_path.is_root() {
                    "/"
                } else {
                    s.remote_path.as_str()
                }
            ),
            s.schedule.describe(),
            next,
            last_text,
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == 5 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
    Ok(())
}

/// `gateway sync history NAME`.
pub fn history(settings: &Settings, name: &str, limit: usize) -> Result<()> {
    find(settings, name)?;
    let store = open_store(settings)?;
    let records = Records::new(store.as_ref());
    let holder = records.holder(name)?;
    let runs = records.history(name)?;
    if runs.is_empty() {
        println!("sync {name} has not run yet");
    }
    for r in runs.iter().take(limit) {
        let c = &r.counts;
        println!(
            "{} {} {} {} {} {} copied {} bytes {} skipped {} deleted {} failed{}",
            r.id,
            humantime::format_rfc3339_seconds(r.started()),
            humantime::format_duration(std::time::Duration::from_secs(r.duration().as_secs())),
            r.trigger.as_str(),
            r.shown_outcome(holder.as_ref()).as_str(),
            c.copied,
            c.bytes,
            c.skipped,
            c.deleted,
            c.failed,
            vanished(c)
        );
        if let Some(h) = holder.as_ref().filter(|h| h.run_id == r.id && h.alive()) {
            match &h.node {
                Some(node) => println!("  running in pid {} on node {node}", h.pid),
                None => println!("  running in pid {}", h.pid),
            }
        }
        for e in &r.errors {
            if e.path.is_empty() {
                println!("  error: {}", e.message);
            } else {
                println!("  error {}: {}", e.path, e.message);
            }
        }
        if c.failed > r.errors.len() as u64 {
            println!(
                "  ... and {} more error(s)",
                c.failed - r.errors.len() as u64
            );
        }
    }
    Ok(())
}

/// `, N vanished` when files vanished between the listing and their copy.
fn vanished(c: &crate::sync::records::Counts) -> String {
    if c.vanished > 0 {
        format!(", {} vanished", c.vanished)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_bar_moves_within_a_file_and_shows_rate_and_time_left() {
        let start = Instant::now();
        let mut bar = Bar {
            files: 2,
            bytes: 400 << 20,
            started: Some(start),
            ..Bar::default()
        };
        // Half a file in, no file done yet: the bytes already move the bar.
        bar.moved_bytes = 100 << 20;
        let text = bar_text(&bar, start + Duration::from_secs(2));
        assert!(text.starts_with("[#######        "), "{text}");
        assert!(text.contains("0/2 files, 100.0 MiB / 400.0 MiB"), "{text}");
        assert!(text.contains("50.0 MiB/s, 6s left"), "{text}");
        // Before half a second, no rate is guessed.
        assert!(!bar_text(&bar, start).contains("/s"));
        // Bytes of discarded copies never push the bar past the total.
        bar.moved_bytes = 500 << 20;
        assert!(bar_text(&bar, start + Duration::from_secs(4)).contains("400.0 MiB / 400.0 MiB"));
    }
}
