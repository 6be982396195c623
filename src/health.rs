//! What readiness and the vendors' status pings report: is the store writable, is the relay
//! worker alive, does the NRC's kanaal exist, do the remote parties accept signrelay.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use crate::jobs::Party;
use crate::store::Store;

/// The relay counts as stuck when its loop has not ticked for this long.
const RELAY_STALL: i64 = 30;

#[derive(Debug, Default)]
pub struct Health {
    store_ok: AtomicBool,
    relay_enabled: AtomicBool,
    relay_tick: AtomicI64,
    /// Why the kanaal is not (known to be) there; `None` when it is, or is not signrelay's
    /// to check.
    kanaal: Mutex<Option<String>>,
    /// Parties that refuse signrelay itself (credentials, rights), with their answer.
    refusals: Mutex<BTreeMap<Party, String>>,
}

impl Health {
    pub fn new(relay_enabled: bool) -> Arc<Health> {
        let h = Health::default();
        h.store_ok.store(true, Ordering::Relaxed);
        h.relay_enabled.store(relay_enabled, Ordering::Relaxed);
        h.relay_tick
            .store(Utc::now().timestamp(), Ordering::Relaxed);
        Arc::new(h)
    }

    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Relaxed)
    }

    /// The store takes new work: its last write (or probe) succeeded, and its disk has room
    /// above the floor now. Free space is asked on every call (one `statvfs`), so a filling
    /// disk shows at once rather than at the next probe.
    pub fn store_writable(&self, store: &dyn Store) -> bool {
        self.store_ok() && store.room().is_ok()
    }

    /// Any durable write reports here, so a failing disk shows before the next probe.
    pub fn store_result(&self, ok: bool) {
        self.store_ok.store(ok, Ordering::Relaxed);
    }

    pub fn relay_tick(&self) {
        self.relay_tick
            .store(Utc::now().timestamp(), Ordering::Relaxed);
    }

    pub fn relay_ok(&self) -> bool {
        !self.relay_enabled.load(Ordering::Relaxed)
            || Utc::now().timestamp() - self.relay_tick.load(Ordering::Relaxed) < RELAY_STALL
    }

    /// The kanaal's state: `Err(reason)` while it is not known to exist.
    pub fn kanaal(&self, state: Result<(), String>) {
        *self.kanaal.lock().unwrap_or_else(|p| p.into_inner()) = state.err();
    }

    /// Why the kanaal is not ready, if it is not.
    pub fn kanaal_problem(&self) -> Option<String> {
        self.kanaal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A party's refusal of signrelay (`None`: it accepts again).
    pub fn party_refusal(&self, party: Party, refusal: Option<String>) {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        match refusal {
            Some(why) => r.insert(party, why),
            None => r.remove(&party),
        };
    }

    /// The parties that refuse signrelay, with their answer.
    pub fn refusals(&self) -> BTreeMap<Party, String> {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Probes the store with a durable write every `every` until the task is dropped.
    pub async fn probe_store(self: Arc<Self>, store: Arc<dyn Store>, every: Duration) {
        loop {
            let ok = store.probe().await.is_ok();
            if ok != self.store_ok() {
                if ok {
                    tracing::info!("store is writable again");
                } else {
                    tracing::error!("store is not writable");
                }
            }
            self.store_result(ok);
            tokio::time::sleep(every).await;
        }
    }
}
