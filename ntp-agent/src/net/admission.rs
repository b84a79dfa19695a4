//! Admission for the agent's stream listeners (the control socket,
//! `/metrics`): a fixed number of connections open at once, the newest
//! preferred. When the table is full, a new connection pushes out the
//! oldest one, so a pile of idle or half-sent connections cannot lock out
//! the operator's `status` or the next scrape, and the agent never holds
//! more descriptors than the cap. Failed accepts (out of descriptors) back
//! off instead of spinning.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::oneshot;

/// After a failed accept (e.g. EMFILE): the error repeats at once while
/// the cause lasts.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The open connections of one listener, oldest first.
#[derive(Clone)]
pub struct Admission {
    what: &'static str,
    cap: usize,
    inner: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    next: u64,
    /// Each open connection's eviction notice, by age.
    conns: BTreeMap<u64, oneshot::Sender<()>>,
    evicted: u64,
}

/// One admitted connection: its place in the table until dropped.
pub struct Ticket {
    id: u64,
    evict: oneshot::Receiver<()>,
    inner: Arc<Mutex<Open>>,
}

impl Admission {
    /// `what` names the listener in the log; `cap` ≥ 1.
    pub fn new(what: &'static str, cap: usize) -> Self {
        Self {
            what,
            cap: cap.max(1),
            inner: Arc::default(),
        }
    }

    /// Admits a connection, pushing out the oldest one if the table is full.
    pub fn admit(&self) -> Ticket {
        let mut open = self.inner.lock().expect("admission lock poisoned");
        while open.conns.len() >= self.cap {
            if let Some((_, oldest)) = open.conns.pop_first() {
                let _ = oldest.send(());
                open.evicted += 1;
                if open.evicted.is_power_of_two() {
                    tracing::warn!(
                        "{}: more than {} connections at once; the oldest is closed for each new one ({} so far)",
                        self.what,
                        self.cap,
                        open.evicted
                    );
                }
            }
        }
        let id = open.next;
        open.next += 1;
        let (tx, evict) = oneshot::channel();
        open.conns.insert(id, tx);
        Ticket {
            id,
            evict,
            inner: self.inner.clone(),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner
            .lock()
            .expect("admission lock poisoned")
            .conns
            .len()
    }

    /// Connections closed to make room so far.
    pub fn evicted(&self) -> u64 {
        self.inner.lock().expect("admission lock poisoned").evicted
    }

    /// The next connection `accept` yields, admitted. A failed accept
    /// (out of descriptors) is logged once per streak at warn and retried
    /// after [`ACCEPT_BACKOFF`] instead of spinning.
    pub async fn next<S, F>(&self, mut accept: impl FnMut() -> F) -> (S, Ticket)
    where
        F: Future<Output = std::io::Result<S>>,
    {
        let mut failures = 0u64;
        loop {
            match accept().await {
                Ok(stream) => return (stream, self.admit()),
                Err(e) if failures == 0 => tracing::warn!(
                    "{}: accept failed: {e}; retrying every {} ms",
                    self.what,
                    ACCEPT_BACKOFF.as_millis()
                ),
                Err(e) => tracing::debug!("{}: accept failed again: {e}", self.what),
            }
            failures += 1;
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
    }
}

impl Ticket {
    /// Runs the connection until it ends (`Some`) or is pushed out (`None`).
    pub async fn serve<F: Future>(mut self, conn: F) -> Option<F::Output> {
        tokio::select! {
            out = conn => Some(out),
            _ = &mut self.evict => None,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut open) = self.inner.lock() {
            open.conns.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_newest_connections_stay_and_the_table_is_bounded() {
        let admission = Admission::new("test", 2);
        let first = admission.admit();
        let second = admission.admit();
        let third = admission.admit();
        assert_eq!(admission.open(), 2);
        assert_eq!(admission.evicted(), 1);
        let pending = std::future::pending::<()>;
        assert_eq!(first.serve(pending()).await, None, "the oldest goes");
        assert_eq!(second.serve(async { 7 }).await, Some(7));
        assert_eq!(admission.open(), 1, "a finished connection frees its place");
        drop(third);
        assert_eq!(admission.open(), 0);
        for _ in 0..1000 {
            std::mem::forget(admission.admit());
        }
        assert_eq!(admission.open(), 2);
    }
}
