//! Giving memory back after a load. glibc's allocator keeps what
//! transfers freed (their buffers of a few hundred KiB each) in its
//! per-thread arenas, so without this the process stayed at its peak RSS
//! long after a burst of transfers had ended (bench workload 3). Once no
//! transfer has been open for a moment, the heap is trimmed: the freed
//! pages go back to the system.

use std::time::Duration;

use super::transfers::ActiveTransfers;

/// How often the transfers are looked at; a trim follows within this long
/// of the last transfer ending.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Trims the heap each time the gateway falls idle after transfers ran
/// (never while one is open, so a transfer never waits for it). Ends with
/// the runtime.
pub fn spawn_trim_after_load(transfers: ActiveTransfers) {
    tokio::spawn(when_idle_after_load(transfers, LOOK_EVERY, || {
        // Tens of milliseconds after a large load: off the runtime's workers.
        drop(tokio::task::spawn_blocking(trim_heap));
    }));
}

/// Calls `on_idle` once each time no transfer is open after some ran,
/// looking every `every`.
async fn when_idle_after_load(
    transfers: ActiveTransfers,
    every: Duration,
    mut on_idle: impl FnMut(),
) {
    let mut handled = 0;
    loop {
        tokio::time::sleep(every).await;
        let begun = transfers.begun();
        if begun != handled && transfers.count() == 0 {
            handled = begun;
            on_idle();
        }
    }
}

/// Returns the allocator's free memory to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is
    // safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory on their own (or offer no way to ask).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn trims_once_per_load_and_never_while_a_transfer_is_open() {
        let transfers = ActiveTransfers::default();
        let trims = Arc::new(AtomicUsize::new(0));
        let counted = trims.clone();
        let task = tokio::spawn(when_idle_after_load(
            transfers.clone(),
            Duration::from_millis(10),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
            },
        ));
        let settle = || tokio::time::sleep(Duration::from_millis(80));
        settle().await;
        assert_eq!(trims.load(Ordering::SeqCst), 0, "trimmed before any load");
        let open = transfers.begin();
        settle().await;
        assert_eq!(
            trims.load(Ordering::SeqCst),
            0,
            "trimmed while a transfer was open"
        );
        drop(open);
        settle().await;
        assert_eq!(trims.load(Ordering::SeqCst), 1, "no trim after the load");
        settle().await;
        assert_eq!(
            trims.load(Ordering::SeqCst),
            1,
            "trimmed again with no new load"
        );
        drop(transfers.begin());
        settle().await;
        assert_eq!(
            trims.load(Ordering::SeqCst),
            2,
            "no trim after the second load"
        );
        task.abort();
    }
}
