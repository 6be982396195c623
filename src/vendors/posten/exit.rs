//! The signer's browser comes back from Posten through an exit URL,
//! `{base}/direct/{reference}/completion|rejection|error?status_query_token=…`. signrelay
//! records the token durably (a status fetch job), waits a short while for the status, and
//! sends the browser on (`303 See Other`) to the landing page for the outcome: the case
//! application's, or a plain built-in one. The browser never waits on a slow Posten, a reload
//! or a second tab is harmless, no cookie is set, and the token goes nowhere but Posten.

use std::time::Duration;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::board::{Board, Seen};
use super::config::Landing;
use super::jobs::{Exit, PostenJob};
use crate::event::{Outcome, TransactionId, Vendor};
use crate::intake::Intake;
use crate::jobs::{Job, Party};
use crate::rules::TerminalOutcome;
use crate::store::Enqueued;

pub const SURFACE: &str = "posten.exit";

/// What the browser is shown, and the `uitkomst` a case application's page is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Voltooid,
    Afgebroken,
    Fout,
    InBehandeling,
    Ongeldig,
}

impl Page {
    pub fn uitkomst(self) -> &'static str {
        match self {
            Page::Voltooid => "voltooid",
            Page::Afgebroken => "afgebroken",
            Page::Fout => "fout",
            Page::InBehandeling => "in_behandeling",
            Page::Ongeldig => "ongeldig",
        }
    }

    fn parse(s: &str) -> Option<Page> {
        [
            Page::Voltooid,
            Page::Afgebroken,
            Page::Fout,
            Page::InBehandeling,
            Page::Ongeldig,
        ]
        .into_iter()
        .find(|p| p.uitkomst() == s)
    }

    fn title(self) -> &'static str {
        match self {
            Page::Voltooid => "Ondertekening voltooid",
            Page::Afgebroken => "Ondertekening niet voltooid",
            Page::Fout => "Er ging iets mis bij het ondertekenen",
            Page::InBehandeling => "Uw ondertekening wordt verwerkt",
            Page::Ongeldig => "Deze link is ongeldig of verlopen",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Page::Voltooid => "Bedankt. Het document is ondertekend. U kunt dit venster sluiten.",
            Page::Afgebroken => "De ondertekening is afgebroken: geweigerd, verlopen of niet gelukt. De organisatie die u het document stuurde, hoort dit en neemt zo nodig contact met u op.",
            Page::Fout => "Door een technische fout is het document niet ondertekend. De organisatie die u het document stuurde, hoort dit en neemt zo nodig contact met u op.",
            Page::InBehandeling => "Dit kan even duren. U kunt dit venster sluiten: de organisatie die u het document stuurde, ontvangt de uitkomst vanzelf.",
            Page::Ongeldig => "Deze pagina is niet via een geldige ondertekening bereikt. Gebruik de link uit het bericht van de organisatie die u het document stuurde.",
        }
    }

    /// The case application's page for it, if configured.
    fn configured(self, landing: &Landing) -> Option<&str> {
        match self {
            Page::Voltooid => landing.completed_url.as_deref(),
            Page::Afgebroken => landing.rejected_url.as_deref(),
            Page::Fout => landing.error_url.as_deref(),
            Page::InBehandeling => landing.processing_url.as_deref(),
            Page::Ongeldig => None,
        }
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Headers every page and redirect carries: nothing cached, no referrer (an exit URL holds a
/// token), no cookies, nothing from elsewhere.
fn guarded(status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut r = HttpResponse::build(status);
    r.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ));
    r
}

/// A small, accessible page in Dutch, without external assets.
pub fn page(p: Page, transactie: Option<&str>, status: StatusCode) -> HttpResponse {
    let kenmerk = transactie
        .map(|t| {
            format!(
                "<p>Kenmerk: <code>{}</code></p>",
                escape(&t.chars().take(256).collect::<String>())
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"nl\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1b1b1b;background:#fff}}h1{{font-size:1.6rem}}code{{font-size:1rem}}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n<p>{text}</p>\n{kenmerk}\n</main>\n</body>\n</html>\n",
        title = p.title(),
        text = p.text(),
    );
    guarded(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// What the exit routes share.
pub struct ExitState {
    pub intake: Intake,
    pub board: Board,
    pub landing: Landing,
    pub base_path: String,
    pub redirect_wait: Duration,
}

#[derive(Deserialize)]
pub struct TokenQuery {
    status_query_token: Option<String>,
}

/// A status query token as Posten issues them: URL-safe, bounded.
fn plausible_token(t: &str) -> bool {
    (8..=1024).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'='))
}

/// Where the browser goes for `page`: the case application's page, or the built-in one.
fn location(state: &ExitState, p: Page, tx: &str) -> String {
    match p
        .configured(&state.landing)
        .and_then(|u| url::Url::parse(u).ok())
    {
        Some(mut u) => {
            u.query_pairs_mut()
                .append_pair("transactie", tx)
                .append_pair("uitkomst", p.uitkomst());
            u.to_string()
        }
        None => {
            let mut u = url::Url::parse("http://x/").expect("a URL");
            u.set_path(&format!("{}/landing/{}", state.base_path, p.uitkomst()));
            u.query_pairs_mut().append_pair("transactie", tx);
            format!("{}?{}", u.path(), u.query().unwrap_or_default())
        }
    }
}

fn redirect(state: &ExitState, p: Page, tx: &str) -> HttpResponse {
    guarded(StatusCode::SEE_OTHER)
        .insert_header((header::LOCATION, location(state, p, tx)))
        .finish()
}

fn count(state: &ExitState, result: &str) {
    state
        .intake
        .metrics
        .callback(Vendor::Posten.as_str(), SURFACE, result);
}

/// `GET {base}/direct/{reference}/{exit}?status_query_token=…`.
pub async fn exit_url(req: HttpRequest, state: web::Data<ExitState>) -> HttpResponse {
    let info = req.match_info();
    let parsed = (
        info.get("reference")
            .and_then(|r| TransactionId::parse(r).ok()),
        info.get("exit").and_then(Exit::parse),
    );
    let (Some(tx), Some(exit)) = parsed else {
        count(&state, "invalid");
        return page(Page::Ongeldig, None, StatusCode::NOT_FOUND);
    };
    // Parsed here, so that a malformed query gets the page too, not actix's text.
    let query = web::Query::<TokenQuery>::from_query(req.query_string()).ok();
    let token = query
        .as_ref()
        .and_then(|q| q.status_query_token.as_deref())
        .filter(|t| plausible_token(t));
    let Some(token) = token else {
        count(&state, "invalid");
        return page(Page::Ongeldig, None, StatusCode::BAD_REQUEST);
    };
    // The token is recorded before anything else happens with it; a reload finds the job.
    let once = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(format!("{tx}\0{token}").as_bytes());
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        format!("posten/exit/{hex}")
    };
    let job = Job::new(
        PostenJob::Fetch {
            reference: tx.to_string(),
            exit,
            token: token.to_string(),
        }
        .task(),
        chrono::Utc::now(),
    );
    let enqueued = state.intake.store.enqueue(job, Some(once)).await;
    state.intake.health.store_result(enqueued.is_ok());
    let (id, result) = match enqueued {
        Ok(Enqueued::New(id)) => (id, "recorded"),
        Ok(Enqueued::Existing(id)) => (id, "duplicate"),
        Err(e) => {
            count(&state, "retry_later");
            tracing::error!(error = %e, "Posten exit not recorded");
            return page(
                Page::InBehandeling,
                Some(tx.as_str()),
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    count(&state, result);
    crate::telemetry::note(|n| {
        // A token recorded (its status follows as a callback of its own), not an event.
        n.result = Some("exit");
        n.vendor = Some(Vendor::Posten.as_str());
        n.transaction_id = Some(tx.to_string());
    });
    state.intake.wakers.wake(Party::Vendor(Vendor::Posten));
    let seen = match state.board.wait(id, state.redirect_wait).await {
        Some(s) => Some(s),
        // Fetched before (a reload after a restart): what the store knows.
        None => match state
            .intake
            .store
            .transaction_state(Vendor::Posten, &tx)
            .await
        {
            Ok(t) => t.terminal.map(|o| {
                Seen::Outcome(match o {
                    TerminalOutcome::Completed => Outcome::Completed,
                    TerminalOutcome::Aborted => Outcome::Aborted {
                        reason: String::new(),
                    },
                })
            }),
            Err(_) => None,
        },
    };
    let p = match seen {
        Some(Seen::Outcome(Outcome::Completed)) => Page::Voltooid,
        Some(Seen::Outcome(Outcome::Aborted { .. })) if exit == Exit::Error => Page::Fout,
        Some(Seen::Outcome(Outcome::Aborted { .. })) => Page::Afgebroken,
        Some(Seen::Invalid) => return redirect_invalid(&state),
        _ => Page::InBehandeling,
    };
    crate::telemetry::note(|n| n.verdict = Some(p.uitkomst()));
    redirect(&state, p, tx.as_str())
}

/// A forged or used-up exit URL: the plain error page, never the case application's.
fn redirect_invalid(state: &ExitState) -> HttpResponse {
    let to = format!("{}/landing/{}", state.base_path, Page::Ongeldig.uitkomst());
    guarded(StatusCode::SEE_OTHER)
        .insert_header((header::LOCATION, to))
        .finish()
}

#[derive(Deserialize)]
pub struct LandingQuery {
    transactie: Option<String>,
}

/// `GET {base}/landing/{uitkomst}`: the built-in landing pages.
pub async fn landing(req: HttpRequest) -> HttpResponse {
    let q = web::Query::<LandingQuery>::from_query(req.query_string()).ok();
    let transactie = q.as_ref().and_then(|q| q.transactie.as_deref());
    match req.match_info().get("uitkomst").and_then(Page::parse) {
        Some(p) => page(p, transactie, StatusCode::OK),
        None => page(Page::Ongeldig, None, StatusCode::NOT_FOUND),
    }
}

/// Anything else under the base path: the plain error page.
pub async fn not_found() -> HttpResponse {
    page(Page::Ongeldig, None, StatusCode::NOT_FOUND)
}
