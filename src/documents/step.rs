//! The documents step's job handler (the `drc` lane). One turn reads the event, its
//! registration and its staged files, then works through the trigger's `documenten`:
//!
//! 1. `GET` the document. Already holding this file's `integriteit` and unlocked: done (a
//!    turn that crashed after its upload). Locked by someone: retried later. Newer than the
//!    version sent for signing: dead-lettered (unless configured to upload anyway).
//! 2. Record the intent to lock, then `POST …/lock` and record the lock id: a lock signrelay
//!    takes is always known to it and always released, also after a restart.
//! 3. `GET` again, `PATCH` the new version (or its parts), `POST …/unlock`. A turn that finds
//!    its own `integriteit` already there (a crash after the PATCH) writes no second version;
//!    unfinished parts are resumed.
//!
//! Then each evidence file becomes a new document (with an `identificatie` of its own, found
//! again after a crash instead of created twice) linked to the zaak. Each write the next turn
//! depends on is committed first (`Done.again` with the progress; the lane runs only what is
//! durable).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use prometheus::IntCounterVec;
use serde_json::json;

use crate::event::{SigningEvent, Vendor};
use crate::jobs::{Again, Attempt, Done, Job, JobHandler, Task};
use crate::registry::{Document, Registration};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::zgw::drc::{drc_base, zrc_base, DrcClient, DrcError, Eio, Integriteit};

use super::config::OnNewerVersion;
use super::matching::{match_files, pdf_name};
use super::progress::{HeldLock, Progress, Refusal};
use super::source::{Role, SignedFile, SignedSource, SourceError, Staged, StagingArea};
use super::upload::{create_evidence, put_parts, write_version, NewVersion};

/// What the step is built with.
pub struct StepSettings {
    pub on_newer_version: OnNewerVersion,
    pub parts_above: u64,
    pub bronorganisatie: Option<String>,
    pub auteur: String,
    pub vertrouwelijkheidaanduiding: Option<String>,
    /// A lock that appeared while signrelay's own lock call went unanswered is reported to
    /// an operator after this long.
    pub lost_lock_after: std::time::Duration,
}

pub struct DocumentsStep {
    store: Arc<dyn Store>,
    drc: DrcClient,
    sources: HashMap<Vendor, Arc<dyn SignedSource>>,
    staging: StagingArea,
    settings: StepSettings,
    documents: IntCounterVec,
}

/// How a piece of the turn went.
enum Flow {
    /// On to the next piece within this turn.
    Next,
    /// Commit the progress, then the next turn.
    Save,
    /// The turn ends with this.
    Stop(Attempt),
}

impl DocumentsStep {
    pub fn new(
        store: Arc<dyn Store>,
        drc: DrcClient,
        sources: HashMap<Vendor, Arc<dyn SignedSource>>,
        staging: StagingArea,
        settings: StepSettings,
        metrics: &Metrics,
    ) -> DocumentsStep {
        DocumentsStep {
            store,
            drc,
            sources,
            staging,
            settings,
            documents: metrics.counter_vec(
                "documents_total",
                "Signed documents put into the DRC by vendor and result \
                 (uploaded, already_present, evidence, newer_version)",
                &["vendor", "result"],
            ),
        }
    }

    fn count(&self, vendor: Vendor, result: &str) {
        self.documents
            .with_label_values(&[vendor.as_str(), result])
            .inc();
    }

    async fn turn(
        &self,
        job: &Job,
        event_id: uuid::Uuid,
        p: &mut Progress,
    ) -> Result<Flow, Attempt> {
        let event = match self.store.event(event_id).await {
            Ok(Some(e)) => e,
            Ok(None) => return Err(refused("event ontbreekt in de opslag")),
            Err(e) => return Err(local_retry(e.to_string())),
        };
        let registration = match self
            .store
            .registration(event.vendor, &event.transaction_id)
            .await
        {
            Ok(Some(r)) => r,
            Ok(None) => return self.release_then(p, Attempt::Park).await,
            Err(e) => return Err(local_retry(e.to_string())),
        };
        // A refusal from before a replay is forgotten: the operator asked to try again.
        if p.refusal
            .as_ref()
            .is_some_and(|r| r.at < job.first_queued_at)
        {
            p.refusal = None;
        }
        if let Some(r) = p.refusal.clone() {
            return self
                .release_then(
                    p,
                    Attempt::Refused {
                        reason: r.reason,
                        status: r.status,
                        body: r.body,
                    },
                )
                .await;
        }
        let Some(source) = self.sources.get(&event.vendor) else {
            let reason = format!(
                "{} levert geen ondertekende documenten aan signrelay",
                event.vendor
            );
            return self.release_then(p, refused(&reason)).await;
        };
        let staged = match self.staging.staged(&event, &registration, &**source).await {
            Ok(s) => s,
            Err(SourceError::Unavailable(e)) => {
                return Err(local_retry(format!("ondertekende documenten ophalen: {e}")))
            }
            Err(SourceError::Refused(e)) => return self.release_then(p, refused(&e)).await,
        };
        let docs = &registration.trigger.documenten;
        let files = staged.of_role(Role::Document);
        let matched = match match_files(docs, &files, source.ordered()) {
            Ok(m) => m,
            // A lock held from before (the vendor's files changed since?) is released first.
            Err(e) => return self.release_then(p, refused(&e)).await,
        };
        while p.next < docs.len() {
            let file = files[matched[p.next]];
            match self.document(&event, &docs[p.next], file, &staged, p).await {
                Flow::Next => continue,
                flow => return Ok(flow),
            }
        }
        if let Some(iot) = &registration.trigger.bewijs_informatieobjecttype {
            let evidence = staged.of_role(Role::Evidence);
            while p.evidence_next < evidence.len() {
                let i = p.evidence_next;
                match self
                    .evidence(&event, &registration, iot, i, evidence[i], &staged)
                    .await
                {
                    Ok(()) => p.evidence_next += 1,
                    Err(stop) => return Err(stop),
                }
            }
        }
        self.staging.remove(event.id).await;
        Ok(Flow::Stop(Attempt::Done(Done::default())))
    }

    /// One of the trigger's documents: see the module's steps.
    async fn document(
        &self,
        event: &SigningEvent,
        doc: &Document,
        file: &SignedFile,
        staged: &Staged,
        p: &mut Progress,
    ) -> Flow {
        let eio = match self.drc.get(&doc.url).await {
            Ok(e) => e,
            Err(e) => return Flow::Stop(failed(e, "het document lezen")),
        };
        let ours = eio
            .integriteit
            .as_ref()
            .is_some_and(|i| i.is_sha_256_of(&file.sha256))
            && eio.bestandsomvang == Some(file.size);
        let Some(lock) = p.lock.clone().filter(|l| l.url == doc.url) else {
            return self.before_lock(event, doc, &eio, ours, p).await;
        };
        if !eio.locked {
            // Released before a crash, or broken by someone with the rights to: start over
            // for this document (a version of ours that made it is recognized).
            p.lock = None;
            if ours {
                self.count(event.vendor, "uploaded");
                p.next += 1;
                return Flow::Next;
            }
            return Flow::Save;
        }
        if ours {
            // Our PATCH made it; parts may be left.
            if eio.bestandsdelen.iter().any(|d| !d.voltooid) {
                if let Err(e) =
                    put_parts(&self.drc, &lock.id, &eio.bestandsdelen, &staged.path(file)).await
                {
                    return self.after_lock_error(p, e);
                }
            }
        } else {
            if let Some(reason) = self.newer(doc, &eio) {
                self.count(event.vendor, "newer_version");
                p.refusal = Some(Refusal {
                    reason,
                    status: None,
                    body: None,
                    at: chrono::Utc::now(),
                });
                return Flow::Save;
            }
            let version = NewVersion {
                file,
                path: &staged.path(file),
                bestandsnaam: pdf_name(
                    eio.bestandsnaam
                        .as_deref()
                        .or(doc.bestandsnaam.as_deref())
                        .unwrap_or("document"),
                ),
                integriteit: Integriteit::sha_256(&file.sha256, chrono::Utc::now().date_naive()),
            };
            if let Err(e) = write_version(
                &self.drc,
                &doc.url,
                &lock.id,
                &version,
                self.settings.parts_above,
            )
            .await
            {
                return self.after_lock_error(p, e);
            }
        }
        match self.drc.unlock(&lock.url, &lock.id).await {
            Ok(()) => {}
            // Not ours any more (a forced unlock meanwhile); our version is in.
            Err(e) if matches!(e.code(), Some("incorrect-lock-id") | Some("unlocked")) => {}
            Err(e) => return Flow::Stop(failed(e, "het document ontgrendelen")),
        }
        self.count(event.vendor, "uploaded");
        p.lock = None;
        p.next += 1;
        // Committed before the next document: a stale lock id is never used again.
        Flow::Save
    }

    /// No lock held on `doc`: skip it, wait, refuse, or take the lock (intent first).
    async fn before_lock(
        &self,
        event: &SigningEvent,
        doc: &Document,
        eio: &Eio,
        ours: bool,
        p: &mut Progress,
    ) -> Flow {
        if ours && !eio.locked {
            self.count(event.vendor, "already_present");
            p.next += 1;
            p.locking_since = None;
            return Flow::Next;
        }
        if eio.locked {
            // Locked since signrelay asked for a lock whose answer it has not: its own lock
            // (a crash lost the id), or another client's. Never broken: after a while an
            // operator is asked to look.
            let lost = p.locking_since.is_some_and(|since| {
                (chrono::Utc::now() - since).to_std().unwrap_or_default()
                    >= self.settings.lost_lock_after
            });
            if lost {
                return Flow::Stop(refused(&format!(
                    "document {} blijft vergrendeld sinds signrelay een lock aanvroeg waarvan \
                     het antwoord verloren ging (herstart); ontgrendel het document in de DRC \
                     als niemand anders eraan werkt, en speel daarna deze dead letter af",
                    doc.uuid
                )));
            }
            return Flow::Stop(Attempt::Retry {
                error: format!("document {} is vergrendeld", doc.uuid),
                retry_after: None,
                pause_party: false,
            });
        }
        if let Some(reason) = self.newer(doc, eio) {
            self.count(event.vendor, "newer_version");
            return Flow::Stop(refused(&reason));
        }
        if p.locking_since.is_none() {
            p.locking_since = Some(chrono::Utc::now());
            return Flow::Save;
        }
        match self.drc.lock(&doc.url).await {
            Ok(id) => {
                p.lock = Some(HeldLock {
                    url: doc.url.clone(),
                    id,
                });
                p.locking_since = None;
                Flow::Save
            }
            Err(e) if e.code() == Some("existing-lock") => Flow::Stop(Attempt::Retry {
                error: format!("document {} is vergrendeld door een ander", doc.uuid),
                retry_after: None,
                pause_party: false,
            }),
            Err(e) => Flow::Stop(failed(e, "het document vergrendelen")),
        }
    }

    /// The DRC's version is newer than the one sent for signing (edited meanwhile).
    fn newer(&self, doc: &Document, eio: &Eio) -> Option<String> {
        let sent = doc.versie?;
        (eio.versie > sent && self.settings.on_newer_version == OnNewerVersion::DeadLetter).then(
            || {
                format!(
                    "document gewijzigd tijdens ondertekenen: {} heeft in de DRC versie {}, \
                     ondertekend is versie {sent}",
                    doc.uuid, eio.versie
                )
            },
        )
    }

    /// An upload failed while signrelay holds the lock.
    fn after_lock_error(&self, p: &mut Progress, e: DrcError) -> Flow {
        match e.code() {
            Some("unlocked") | Some("incorrect-lock-id") => {
                // Someone broke our lock: start this document over.
                p.lock = None;
                Flow::Save
            }
            _ => match failed(e, "de nieuwe versie schrijven") {
                // Reported once the lock is released.
                Attempt::Refused {
                    reason,
                    status,
                    body,
                } => {
                    p.refusal = Some(Refusal {
                        reason,
                        status,
                        body,
                        at: chrono::Utc::now(),
                    });
                    Flow::Save
                }
                retry => Flow::Stop(retry),
            },
        }
    }

    /// Releases a lock signrelay holds, then ends with `then`.
    async fn release_then(&self, p: &mut Progress, then: Attempt) -> Result<Flow, Attempt> {
        if let Some(lock) = p.lock.clone() {
            match self.drc.unlock(&lock.url, &lock.id).await {
                Ok(()) => {}
                Err(e) if matches!(e.code(), Some("incorrect-lock-id") | Some("unlocked")) => {}
                Err(e) => return Err(failed(e, "het document ontgrendelen")),
            }
            p.lock = None;
            p.locking_since = None;
            // The release is committed before the step ends.
            return Ok(Flow::Save);
        }
        Err(then)
    }

    /// One evidence file: found again by its `identificatie`, or created; then linked.
    async fn evidence(
        &self,
        event: &SigningEvent,
        registration: &Registration,
        informatieobjecttype: &str,
        index: usize,
        file: &SignedFile,
        staged: &Staged,
    ) -> Result<(), Attempt> {
        let trigger = &registration.trigger;
        let Some(bron) = &self.settings.bronorganisatie else {
            return Err(refused(
                "een bewijsdocument vraagt drc.bronorganisatie in de configuratie",
            ));
        };
        if file.size > self.settings.parts_above {
            return Err(refused(&format!(
                "bewijsdocument van {} bytes is groter dan drc.parts_above_kib",
                file.size
            )));
        }
        let (Some(drc), Some(zrc)) = (
            trigger.documenten.first().and_then(|d| drc_base(&d.url)),
            zrc_base(&trigger.zaak.url),
        ) else {
            return Err(refused(
                "de DRC- of ZRC-URL volgt niet uit documenten[0].url of zaak.url",
            ));
        };
        // At most 40 characters; the same for every turn of this event.
        let identificatie = format!("SR-{}-{index}", event.id.simple());
        let found = self
            .drc
            .find(&drc, bron, &identificatie)
            .await
            .map_err(|e| failed(e, "het bewijsdocument zoeken"))?;
        let eio = match found {
            Some(eio) => eio,
            None => {
                let name = file
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("bewijs-{}.bin", index + 1));
                let mut body = json!({
                    "identificatie": identificatie,
                    "bronorganisatie": bron,
                    "creatiedatum": chrono::Utc::now().date_naive().format("%Y-%m-%d").to_string(),
                    "titel": format!("Ondertekeningsbewijs {}", index + 1),
                    "auteur": self.settings.auteur,
                    "taal": "nld",
                    "informatieobjecttype": informatieobjecttype,
                    "bestandsnaam": name,
                    "formaat": file.mime_type.as_deref().unwrap_or("application/octet-stream"),
                    "integriteit": Integriteit::sha_256(&file.sha256, chrono::Utc::now().date_naive()),
                });
                if let Some(v) = &self.settings.vertrouwelijkheidaanduiding {
                    body["vertrouwelijkheidaanduiding"] = json!(v);
                }
                create_evidence(&self.drc, &drc, body, file, &staged.path(file))
                    .await
                    .map_err(|e| failed(e, "het bewijsdocument aanmaken"))?
            }
        };
        self.drc
            .link(&zrc, &trigger.zaak.url, &eio.url, "Ondertekeningsbewijs")
            .await
            .map_err(|e| failed(e, "het bewijsdocument aan de zaak koppelen"))?;
        self.count(event.vendor, "evidence");
        Ok(())
    }
}

#[async_trait]
impl JobHandler for DocumentsStep {
    async fn attempt(&self, job: &Job) -> Attempt {
        let Task::Documents { event_id, progress } = &job.task else {
            return refused("geen documententaak");
        };
        let mut p = Progress::of(progress);
        match self.turn(job, *event_id, &mut p).await {
            Ok(Flow::Next) | Ok(Flow::Save) => again(&p),
            // What a turn that ends otherwise skipped (documents already in) is found again.
            Ok(Flow::Stop(a)) | Err(a) => a,
        }
    }
}

fn again(p: &Progress) -> Attempt {
    Attempt::Done(Done {
        again: Some(Again {
            at: chrono::Utc::now(),
            data: Some(p.to_value()),
        }),
        ..Done::default()
    })
}

fn refused(reason: &str) -> Attempt {
    Attempt::Refused {
        reason: reason.to_string(),
        status: None,
        body: None,
    }
}

/// A failure on our side (the store, the staging disk): try again later, the DRC is fine.
fn local_retry(error: String) -> Attempt {
    Attempt::Retry {
        error,
        retry_after: None,
        pause_party: false,
    }
}

/// A DRC or ZRC call that failed while doing `what`.
fn failed(e: DrcError, what: &str) -> Attempt {
    match e {
        DrcError::Unavailable {
            retry_after,
            message,
        } => Attempt::Retry {
            error: format!("{what}: {message}"),
            retry_after,
            pause_party: true,
        },
        DrcError::Refused {
            component,
            status: 403,
            code,
            body,
        } => Attempt::Refused {
            reason: format!(
                "{component} weigert signrelay bij {what} (403 {code}): controleer de \
                 autorisaties van de Applicatie"
            ),
            status: Some(403),
            body: Some(body),
        },
        DrcError::Refused {
            component,
            status: 404,
            body,
            ..
        } => Attempt::Refused {
            reason: format!("{component} kent het object niet bij {what} (404)"),
            status: Some(404),
            body: Some(body),
        },
        DrcError::Refused {
            component,
            status,
            code,
            body,
        } => Attempt::Refused {
            reason: format!("{component} weigerde {what} ({status} {code})"),
            status: Some(status),
            body: Some(body),
        },
    }
}
