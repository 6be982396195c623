//! The kanaal's documentation page (`GET /kanalen/{kanaal}`): what signrelay publishes on it
//! (resource, acties, kenmerken). By default the kanaal's `documentatieLink` points here, so
//! that an NRC that fetches the link when the kanaal is created (Open Notificaties requires a
//! 200) can reach it without the internet. Public: it describes the kanaal, nothing more.

use actix_web::{web, HttpResponse};

/// What the page describes.
#[derive(Debug, Clone)]
pub struct KanaalPage {
    pub kanaal: String,
    pub filters: Vec<String>,
    /// The actie of Progress events, when they are relayed.
    pub progress_actie: Option<String>,
}

/// The route of the page of `kanaal`, below `server.public_url`.
pub fn path(kanaal: &str) -> String {
    format!("/kanalen/{kanaal}")
}

pub fn configure(cfg: &mut web::ServiceConfig, page: web::Data<KanaalPage>) {
    cfg.app_data(page)
        .route("/kanalen/{kanaal}", web::get().to(serve));
}

async fn serve(kanaal: web::Path<String>, page: web::Data<KanaalPage>) -> HttpResponse {
    if *kanaal != page.kanaal {
        return crate::problem::Problem::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
        )
        .detail("no such kanaal")
        .respond();
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.html())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl KanaalPage {
    pub fn html(&self) -> String {
        let k = escape(&self.kanaal);
        let mut acties = String::from(
            "<li><code>OndertekenenVoltooid</code>: alle ondertekenaars hebben ondertekend.</li>\n\
             <li><code>OndertekenenAfgebroken</code>: de ondertekening is afgebroken \
             (geweigerd, ingetrokken, verlopen); kenmerk <code>reden</code> zegt waarom.</li>\n",
        );
        if let Some(a) = &self.progress_actie {
            acties.push_str(&format!(
                "<li><code>{}</code>: een ondertekenaar of stap is klaar; de ondertekening \
                 loopt nog.</li>\n",
                escape(a)
            ));
        }
        let kenmerken: String = self
            .filters
            .iter()
            .map(|f| {
                let what = match f.as_str() {
                    "transaction_id" => {
                        "de transactie bij de ondertekendienst, zoals de zaakapplicatie haar \
                         registreerde (altijd aanwezig)"
                    }
                    "reden" => {
                        "waarom de ondertekening is afgebroken (alleen bij OndertekenenAfgebroken)"
                    }
                    _ => "filter van dit kanaal",
                };
                format!("<li><code>{}</code>: {what}</li>\n", escape(f))
            })
            .collect();
        format!(
            "<!doctype html>\n<html lang=\"nl\">\n<head><meta charset=\"utf-8\">\
             <title>Kanaal {k}</title></head>\n<body>\n\
             <h1>Kanaal <code>{k}</code></h1>\n\
             <p>Notificaties van signrelay over de ondertekening van documenten van een zaak \
             (het ZGW-patroon ondertekenen): de uitkomst bij de ondertekendienst.</p>\n\
             <h2>Resource</h2>\n<p><code>zaak</code>: <code>hoofdObject</code> en \
             <code>resourceUrl</code> zijn de URL van de zaak.</p>\n\
             <h2>Acties</h2>\n<ul>\n{acties}</ul>\n\
             <h2>Kenmerken</h2>\n<ul>\n{kenmerken}</ul>\n\
             <p>Open Notificaties levert kenmerken aan abonnees in camelCase \
             (<code>transaction_id</code> wordt <code>transactionId</code>); een filter \
             geschreven als <code>transaction_id</code> past nog steeds.</p>\n\
             </body>\n</html>\n"
        )
    }
}
