//! Recovery mode pages (R3.3–R3.5): upload and check the configuration archive, activate
//! it ("fetch data from the other node" or "destroy all data on the replicated device",
//! the latter confirmed by typing the cluster name), and follow the activation on a page
//! that reloads itself (no JavaScript).
//!
//! clusterd checks the upload (decrypting it once) and keeps the checked archive for
//! the session that uploaded it; activation stages that copy and runs the activation in
//! clusterd, whose typed progress this page shows in the operator's language. A refused
//! upload or activation changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tandem_api::{
    ActivationEvent, ActivationView, ArchiveSummary, DataChoice, JobState, Reply, Request,
};

use crate::app::App;
use crate::i18n::Lang;
use crate::login::same;
use crate::page::{Frame, csrf_message, error_p, esc, page};
use crate::refusal::{problems_html, refusal_html};
use crate::visit::{Posted, Recovery, Visit};
use crate::web::UPLOAD_LIMIT;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/upload",
            get(upload_page)
                .post(upload)
                .layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route("/activate", post(activate))
        .route("/progress", get(progress))
}

fn frame<'a>(app: &'a App, path: &'a str, v: &'a Visit) -> Frame<'a> {
    Frame {
        lang: v.lang,
        node: &app.node,
        path,
        csrf: Some(v.csrf.as_str()),
        cluster_menu: false,
        refresh: None,
    }
}

fn summary_html(lang: Lang, s: &ArchiveSummary) -> String {
    let nodes: String = s
        .nodes
        .iter()
        .map(|(n, h, a)| format!("<li>{}: {}, {}</li>", esc(n), esc(h), esc(a)))
        .collect();
    let warnings = crate::page::warnings_html(&s.warnings);
    let enc = if s.encrypted {
        lang.t("encrypted", "verschlüsselt")
    } else {
        lang.t("NOT encrypted", "NICHT verschlüsselt")
    };
    lang.f(
        format!(
            "<p class=\"ok\">The archive is valid.</p><p>Cluster <b>{name}</b> ({id}), written {created} by {product}, {enc}.</p><ul>{nodes}</ul>{warnings}",
            name = esc(&s.cluster_name),
            id = esc(&s.cluster_id),
            created = esc(&s.created),
            product = esc(&s.product_version),
        ),
        format!(
            "<p class=\"ok\">Das Archiv ist gültig.</p><p>Cluster <b>{name}</b> ({id}), erstellt {created} von {product}, {enc}.</p><ul>{nodes}</ul>{warnings}",
            name = esc(&s.cluster_name),
            id = esc(&s.cluster_id),
            created = esc(&s.created),
            product = esc(&s.product_version),
        ),
    )
}

fn activate_form(lang: Lang, csrf: &str, s: &ArchiveSummary) -> String {
    let name = esc(&s.cluster_name);
    format!(
        "<h2>{h}</h2><form method=\"post\" action=\"/activate\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <fieldset><legend>{legend}</legend>\
         <p><label><input type=\"radio\" name=\"choice\" value=\"fetch\" checked> {fetch}</label></p>\
         <p><label><input type=\"radio\" name=\"choice\" value=\"destroy\"> {destroy}</label></p>\
         <p><label>{confirm} <input name=\"confirm\" autocomplete=\"off\"></label></p>\
         </fieldset><p class=\"note\">{note}</p>\
         <p><button type=\"submit\">{go}</button></p></form>",
        h = lang.t("Activate", "Aktivieren"),
        csrf = esc(csrf),
        legend = lang.t(
            "What happens to the replicated data area (/vz)",
            "Was mit dem replizierten Datenbereich (/vz) geschieht"
        ),
        fetch = lang.t(
            "<b>Fetch data from the other node</b>: only this node was reinstalled; a full copy follows and may take hours.",
            "<b>Daten vom anderen Knoten holen</b>: Nur dieser Knoten wurde neu installiert; eine vollständige Kopie folgt und kann Stunden dauern."
        ),
        destroy = lang.t(
            "<b>Destroy all data on the replicated device</b>: both nodes were reinstalled; a new, empty data area is created.",
            "<b>Alle Daten auf dem replizierten Gerät löschen</b>: Beide Knoten wurden neu installiert; ein neuer, leerer Datenbereich wird angelegt."
        ),
        confirm = lang.f(
            format!("To destroy, type the cluster name <b>{name}</b>:"),
            format!("Zum Löschen den Clusternamen <b>{name}</b> eingeben:")
        ),
        note = lang.t(
            "Activating restarts the cluster manager; the node then leaves the recovery address for its configured address. Both nodes reinstalled: activate the node that fetches first, then destroy on the other.",
            "Das Aktivieren startet den Clustermanager neu; der Knoten wechselt danach von der Wiederherstellungsadresse auf seine konfigurierte Adresse. Beide Knoten neu installiert: zuerst den Knoten aktivieren, der die Daten holt, dann auf dem anderen löschen."
        ),
        go = lang.t("Activate", "Aktivieren"),
    )
}

/// The upload page with `message` on top, the upload form, and the checked archive's
/// activation form when there is one.
fn upload_view(
    app: &App,
    v: &Visit,
    checked: Option<&ArchiveSummary>,
    status: StatusCode,
    message: &str,
) -> Response {
    let lang = v.lang;
    let csrf = v.csrf.as_str();
    let activate = checked
        .as_ref()
        .map(|c| {
            format!(
                "{}{}<hr>",
                summary_html(lang, c),
                activate_form(lang, csrf, c)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{message}{activate}<p>{intro}</p>\
         <form method=\"post\" action=\"/upload\" enctype=\"multipart/form-data\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label>{archive} <input type=\"file\" name=\"archive\" required></label></p>\
         <p><label>{pass} <input type=\"password\" name=\"passphrase\" autocomplete=\"off\"></label></p>\
         <p><button type=\"submit\">{go}</button></p></form>",
        intro = lang.t(
            "This node runs in recovery mode. Upload the cluster configuration archive (<code>tkcluster_*.tar</code>) downloaded from the running cluster, then activate it.",
            "Dieser Knoten läuft im Wiederherstellungsmodus. Laden Sie das Konfigurationsarchiv des Clusters (<code>tkcluster_*.tar</code>) hoch, das vom laufenden Cluster heruntergeladen wurde, und aktivieren Sie es dann."
        ),
        csrf = esc(csrf),
        archive = lang.t("Archive", "Archiv"),
        pass = lang.t("Passphrase", "Passphrase"),
        go = lang.t("Upload and check", "Hochladen und prüfen"),
    );
    let title = lang.t(
        "Upload the cluster configuration",
        "Clusterkonfiguration hochladen",
    );
    (status, Html(page(&frame(app, "/upload", v), title, &body))).into_response()
}

/// The archive this session checked last, as clusterd keeps it.
async fn checked(app: &Arc<App>, v: &Visit) -> Option<ArchiveSummary> {
    match app.ask(Some(&v.token), Request::CheckedArchive).await {
        Ok(Reply::Checked(s)) => Some(s),
        _ => None,
    }
}

async fn upload_page(State(app): State<Arc<App>>, Recovery(v): Recovery) -> Response {
    if app.configured().await {
        let msg = error_p(v.lang.t(
            "This node is configured: the recovery pages are closed. Log in again with the management password.",
            "Dieser Knoten ist konfiguriert: Die Wiederherstellungsseiten sind geschlossen. Melden Sie sich erneut mit dem Verwaltungspasswort an.",
        ));
        return upload_view(&app, &v, None, StatusCode::CONFLICT, &msg);
    }
    let c = checked(&app, &v).await;
    upload_view(&app, &v, c.as_ref(), StatusCode::OK, "")
}

async fn upload(
    State(app): State<Arc<App>>,
    Recovery(v): Recovery,
    mut form: Multipart,
) -> Response {
    let lang = v.lang;
    let too_large = || {
        lang.f(
            format!(
                "archive: the upload is larger than {} MiB, was cut off, or is not a complete form",
                UPLOAD_LIMIT >> 20
            ),
            format!(
                "Archiv: Der Upload ist größer als {} MiB, wurde abgebrochen oder ist kein vollständiges Formular",
                UPLOAD_LIMIT >> 20
            ),
        )
    };
    let (mut token, mut passphrase, mut archive) = (None, None, None);
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let bytes = match field.bytes().await {
                    Ok(b) => b,
                    Err(e) => {
                        let msg = problems_html(lang, &[too_large()]);
                        return upload_view(&app, &v, None, e.status(), &msg);
                    }
                };
                match name.as_str() {
                    "csrf" => token = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "passphrase" => passphrase = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "archive" => archive = Some(bytes.to_vec()),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => {
                // 413 when the body limit cut it off, 400 for a broken form.
                let msg = problems_html(lang, &[too_large()]);
                return upload_view(&app, &v, None, e.status(), &msg);
            }
        }
    }
    if !token.is_some_and(|t| same(&t, v.csrf.as_str())) {
        let msg = error_p(csrf_message(lang));
        let c = checked(&app, &v).await;
        return upload_view(&app, &v, c.as_ref(), StatusCode::FORBIDDEN, &msg);
    }
    let Some(archive) = archive.filter(|a| !a.is_empty()) else {
        let msg = problems_html(
            lang,
            &[lang
                .t(
                    "archive: no file was chosen",
                    "Archiv: Es wurde keine Datei ausgewählt",
                )
                .to_owned()],
        );
        return upload_view(&app, &v, None, StatusCode::BAD_REQUEST, &msg);
    };
    let passphrase = passphrase.filter(|p| !p.is_empty());
    let req = Request::CheckArchive {
        passphrase: passphrase.map(Into::into),
    };
    match app.ask_with(Some(&v.token), req, archive).await {
        Ok((Reply::Checked(summary), _)) => {
            upload_view(&app, &v, Some(&summary), StatusCode::OK, "")
        }
        // A refused upload also forgets an earlier checked archive (clusterd does):
        // what is shown for activation is always the last upload.
        Ok((Reply::Refused(r), _)) => {
            let (status, msg) = refusal_html(lang, &r);
            upload_view(&app, &v, None, status, &msg)
        }
        Ok((other, _)) => unexpected(&app, &v, &format!("{other:?}")),
        Err(e) => unexpected(&app, &v, &e.0),
    }
}

fn unexpected(app: &App, v: &Visit, what: &str) -> Response {
    let lang = v.lang;
    let msg = error_p(&lang.f(
        format!("The cluster daemon answered unexpectedly or not at all ({what}). Nothing was changed."),
        format!("Der Clusterdienst hat unerwartet oder gar nicht geantwortet ({what}). Es wurde nichts geändert."),
    ));
    upload_view(app, v, None, StatusCode::INTERNAL_SERVER_ERROR, &msg)
}

/// The activation form.
#[derive(Debug, Deserialize)]
pub struct ActivateForm {
    #[serde(default)]
    choice: String,
    #[serde(default)]
    confirm: String,
}

async fn activate(
    State(app): State<Arc<App>>,
    Posted {
        visit: Recovery(v),
        form,
    }: Posted<Recovery, ActivateForm>,
) -> Response {
    let lang = v.lang;
    let c = checked(&app, &v).await;
    let Some(choice) = DataChoice::from_form(&form.choice) else {
        let msg = error_p(lang.t(
            "Choose one of the two ways to activate: fetch the data from the other node, or destroy all data on the replicated device. Nothing was changed.",
            "Wählen Sie eine der beiden Arten der Aktivierung: Daten vom anderen Knoten holen oder alle Daten auf dem replizierten Gerät löschen. Es wurde nichts geändert.",
        ));
        return upload_view(&app, &v, c.as_ref(), StatusCode::BAD_REQUEST, &msg);
    };
    let req = Request::Activate {
        choice,
        confirm_name: form.confirm,
    };
    match app.ask(Some(&v.token), req).await {
        Ok(Reply::ActivationStarted) => Redirect::to("/progress").into_response(),
        Ok(Reply::Refused(r)) => {
            let (status, msg) = refusal_html(lang, &r);
            upload_view(&app, &v, c.as_ref(), status, &msg)
        }
        Ok(other) => unexpected(&app, &v, &format!("{other:?}")),
        Err(e) => unexpected(&app, &v, &e.0),
    }
}

/// One step of the activation in the operator's language.
#[must_use]
pub fn event_text(lang: Lang, e: &ActivationEvent) -> String {
    if lang == Lang::En {
        return e.to_string();
    }
    match e {
        ActivationEvent::Started {
            cluster,
            hostname,
            node,
        } => format!("Aktivierung von {cluster} als {hostname} ({node})"),
        ActivationEvent::Crossover { nic, address } => format!("Crossover {nic}: {address}"),
        ActivationEvent::WaitingForPeer {
            resource,
            backing,
            peer,
            endpoint,
        } => format!(
            "Replikation {resource} auf {backing} eingerichtet; warte auf {peer} über die Crossover-Verbindung ({endpoint})"
        ),
        ActivationEvent::PeerMissing => "Der andere Knoten ist noch nicht verbunden: Setzen Sie die Aktivierung auf dem anderen Knoten fort oder prüfen Sie das Crossover-Kabel".to_owned(),
        ActivationEvent::GoingOnAlone { peer } => format!(
            "{peer} ist nicht verbunden: Es geht allein weiter; er erhält eine vollständige Kopie, wenn er mit „Daten vom anderen Knoten holen“ aktiviert wird"
        ),
        ActivationEvent::CreatingFilesystem => {
            "Das Dateisystem des Datenbereichs wird angelegt".to_owned()
        }
        ActivationEvent::ServiceVe { hostname, address } => {
            format!("Dienst-VE 1 ({hostname}, {address}) angelegt")
        }
        ActivationEvent::DataAreaCreated => "Datenbereich angelegt".to_owned(),
        ActivationEvent::CopyStarted => {
            "Vollständige Kopie des Datenbereichs vom anderen Knoten".to_owned()
        }
        ActivationEvent::CopyProgress { replication } => format!("Replikation: {replication}"),
        ActivationEvent::CopyComplete => "Die Kopie des Datenbereichs ist vollständig".to_owned(),
        ActivationEvent::Committed => "Konfiguration aktiviert".to_owned(),
    }
}

fn progress_body(lang: Lang, v: &ActivationView) -> String {
    let mut body = String::new();
    let waiting_for_peer = v.peer_missing();
    match &v.state {
        JobState::Idle => {
            return lang
                .t(
                    "<p>No activation has been started. <a href=\"/upload\">Upload the configuration archive</a>.</p>",
                    "<p>Es wurde keine Aktivierung gestartet. <a href=\"/upload\">Konfigurationsarchiv hochladen</a>.</p>",
                )
                .to_owned();
        }
        JobState::Running => {
            body.push_str(lang.t(
                "<p><b>Activation is running.</b> This page reloads itself every few seconds.</p>",
                "<p><b>Die Aktivierung läuft.</b> Diese Seite lädt sich alle paar Sekunden neu.</p>",
            ));
            if waiting_for_peer {
                body.push_str(&format!(
                    "<p class=\"warn\" role=\"status\">{}</p>",
                    lang.t(
                        "The other node is not connected: continue activation on the other node or check the crossover cable.",
                        "Der andere Knoten ist nicht verbunden: Setzen Sie die Aktivierung auf dem anderen Knoten fort oder prüfen Sie das Crossover-Kabel."
                    )
                ));
            }
        }
        JobState::Succeeded => {
            body.push_str(lang.t(
                "<p class=\"ok\">Activation finished: the configuration is committed.</p>",
                "<p class=\"ok\">Die Aktivierung ist abgeschlossen: Die Konfiguration ist übernommen.</p>",
            ));
            if let Some(url) = &v.new_url {
                let u = esc(url);
                body.push_str(&lang.f(
                    format!("<p>The new address of this node's console: <a href=\"{u}\">{u}</a> (its configured external address). In a few seconds the node leaves the recovery network and answers there (connect this laptop to the company LAN); log in with the management password.</p>"),
                    format!("<p>Die neue Adresse der Konsole dieses Knotens: <a href=\"{u}\">{u}</a> (seine konfigurierte externe Adresse). In wenigen Sekunden verlässt der Knoten das Wiederherstellungsnetz und antwortet dort (Laptop mit dem Firmennetz verbinden); melden Sie sich mit dem Verwaltungspasswort an.</p>"),
                ));
            }
        }
        JobState::Failed { error } => {
            body.push_str(&error_p(&lang.f(
                format!("Activation stopped: {error}. The node stays in recovery mode; no configuration was committed."),
                format!("Die Aktivierung wurde abgebrochen: {error}. Der Knoten bleibt im Wiederherstellungsmodus; es wurde keine Konfiguration übernommen."),
            )));
            if waiting_for_peer {
                body.push_str(&format!(
                    "<p class=\"warn\">{}</p>",
                    lang.t(
                        "The other node never connected: continue activation on the other node or check the crossover cable, then activate here again.",
                        "Der andere Knoten hat sich nicht verbunden: Setzen Sie die Aktivierung auf dem anderen Knoten fort oder prüfen Sie das Crossover-Kabel und aktivieren Sie hier dann erneut."
                    )
                ));
            }
            body.push_str(lang.t(
                "<p>What to do next: read the steps below, remove the cause, then <a href=\"/upload\">upload and activate again</a>.</p>",
                "<p>Wie es weitergeht: Lesen Sie die Schritte unten, beheben Sie die Ursache und <a href=\"/upload\">laden Sie das Archiv erneut hoch und aktivieren Sie es</a>.</p>",
            ));
        }
    }
    let steps: String = v
        .events
        .iter()
        .map(|e| format!("<li>{}</li>", esc(&event_text(lang, e))))
        .collect();
    body.push_str(&format!(
        "<h2>{}</h2><ol id=\"steps\">{steps}</ol>",
        lang.t("Steps", "Schritte")
    ));
    body
}

async fn progress(State(app): State<Arc<App>>, Recovery(v): Recovery) -> Response {
    let lang = v.lang;
    let (body, running) = match app.ask(Some(&v.token), Request::Activation).await {
        Ok(Reply::Activation(a)) => (progress_body(lang, &a), a.state == JobState::Running),
        Ok(Reply::Refused(r)) => (refusal_html(lang, &r).1, false),
        Ok(other) => (error_p(&format!("{other:?}")), false),
        Err(e) => (error_p(&e.0), false),
    };
    let mut f = frame(&app, "/progress", &v);
    f.refresh = running.then_some(2);
    Html(page(&f, lang.t("Activation", "Aktivierung"), &body)).into_response()
}
