//! Relay out: the worker that runs the job queue, one lane per remote party (`worker.rs`), the
//! NRC's own job handler (`notify.rs`), the kanaal it publishes on (`kanaal.rs`) and the page
//! that documents that kanaal (`kanaal_page.rs`). Vendors bring the handlers of their own jobs.

pub mod kanaal;
pub mod kanaal_page;
pub mod notify;
pub mod worker;

pub use kanaal::{KanaalKeeper, KanaalSettings};
pub use notify::{NotifyNrc, RelaySettings};
