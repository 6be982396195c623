//! Relay out: the worker that runs the job queue, one lane per remote party (`worker.rs`), and
//! the NRC's own job handler with its kanaal bootstrap (`notify.rs`). Vendors bring the
//! handlers of their own jobs.

pub mod notify;
pub mod worker;

pub use notify::{ensure_kanaal, KanaalSettings, NotifyNrc, RelaySettings};
