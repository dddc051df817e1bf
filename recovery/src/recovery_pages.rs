//! Recovery mode pages (R3.3–R3.5): upload and check the configuration archive, activate
//! it ("fetch data from the other node" or "destroy all data on the replicated device",
//! the latter confirmed by typing the cluster name), and follow the activation on a page
//! that reloads itself (no JavaScript).
//!
//! The checked archive stays in the session (in the unprivileged process's memory) until
//! activation; activation hands it to the privileged side, which checks it again,
//! stages it and starts `tandem activate`. A refused upload or activation changes
//! nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::helper::{Call, Refusal, Reply};
use crate::i18n::Lang;
use crate::job::{DataChoice, JobState, JobView};
use crate::web::{
    App, Auth, Checked, Frame, UPLOAD_LIMIT, auth, csrf_message, error_p, esc, page, same,
};

/// The text `tandem activate` prints while the other node is missing (R3.5).
pub const PEER_MISSING: &str = "continue activation on the other node or check the crossover cable";

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

/// A recovery-mode session, or where to go instead.
fn recovery_auth(app: &App, headers: &HeaderMap) -> Result<Auth, Redirect> {
    let a = auth(app, headers)?;
    if a.cluster {
        return Err(Redirect::to("/home"));
    }
    Ok(a)
}

fn frame<'a>(app: &'a App, lang: Lang, path: &'a str, a: &'a Auth) -> Frame<'a> {
    Frame {
        lang,
        node: &app.node,
        path,
        csrf: Some(&a.csrf),
        cluster_menu: false,
        refresh: None,
    }
}

fn summary_html(lang: Lang, c: &Checked) -> String {
    let s = &c.summary;
    let nodes: String = s
        .nodes
        .iter()
        .map(|(n, h, a)| format!("<li>{}: {}, {}</li>", esc(n), esc(h), esc(a)))
        .collect();
    let warnings: String = s
        .warnings
        .iter()
        .map(|w| format!("<p class=\"warn\">{}</p>", esc(w)))
        .collect();
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

fn activate_form(lang: Lang, csrf: &str, c: &Checked) -> String {
    let name = esc(&c.summary.cluster_name);
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
fn upload_view(app: &App, lang: Lang, a: &Auth, status: StatusCode, message: &str) -> Response {
    let checked = app.with_session(&a.id, |s| s.checked.clone()).flatten();
    let activate = checked
        .as_ref()
        .map(|c| {
            format!(
                "{}{}<hr>",
                summary_html(lang, c),
                activate_form(lang, &a.csrf, c)
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
        csrf = esc(&a.csrf),
        archive = lang.t("Archive", "Archiv"),
        pass = lang.t("Passphrase", "Passphrase"),
        go = lang.t("Upload and check", "Hochladen und prüfen"),
    );
    let title = lang.t(
        "Upload the cluster configuration",
        "Clusterkonfiguration hochladen",
    );
    (
        status,
        Html(page(&frame(app, lang, "/upload", a), title, &body)),
    )
        .into_response()
}

async fn upload_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match recovery_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    if app.configured().await {
        let msg = error_p(lang.t(
            "This node is configured: the recovery pages are closed. Log in again with the management password.",
            "Dieser Knoten ist konfiguriert: Die Wiederherstellungsseiten sind geschlossen. Melden Sie sich erneut mit dem Verwaltungspasswort an.",
        ));
        return upload_view(&app, lang, &a, StatusCode::CONFLICT, &msg);
    }
    upload_view(&app, lang, &a, StatusCode::OK, "")
}

fn problems_html(lang: Lang, problems: &[String]) -> String {
    let items: String = problems
        .iter()
        .map(|p| format!("<li>{}</li>", esc(p)))
        .collect();
    format!(
        "{}<ul>{items}</ul>",
        error_p(lang.t(
            "The archive was refused. Nothing was changed.",
            "Das Archiv wurde abgelehnt. Es wurde nichts geändert."
        ))
    )
}

/// A refusal of the privileged side, in the operator's language.
pub(crate) fn refusal_html(lang: Lang, r: &Refusal) -> (StatusCode, String) {
    match r {
        Refusal::Archive(ps) => (StatusCode::BAD_REQUEST, problems_html(lang, ps)),
        Refusal::Configured => (
            StatusCode::CONFLICT,
            error_p(lang.t(
                "This node is already configured: activation is only for a node in recovery mode. Nothing was changed.",
                "Dieser Knoten ist bereits konfiguriert: Aktivieren ist nur im Wiederherstellungsmodus möglich. Es wurde nichts geändert.",
            )),
        ),
        Refusal::NotConfigured => (
            StatusCode::CONFLICT,
            error_p(lang.t(
                "This node is not configured yet.",
                "Dieser Knoten ist noch nicht konfiguriert.",
            )),
        ),
        Refusal::Running => (
            StatusCode::CONFLICT,
            format!(
                "{}<p><a href=\"/progress\">{}</a></p>",
                error_p(lang.t(
                    "An activation is already running. Nothing was changed.",
                    "Eine Aktivierung läuft bereits. Es wurde nichts geändert.",
                )),
                lang.t("Show its progress", "Fortschritt anzeigen")
            ),
        ),
        Refusal::NameMismatch { expected } => (
            StatusCode::BAD_REQUEST,
            error_p(&lang.f(
                format!("To destroy the data, type the cluster name exactly as shown: {expected}. Nothing was changed."),
                format!("Um die Daten zu löschen, geben Sie den Clusternamen genau wie angezeigt ein: {expected}. Es wurde nichts geändert."),
            )),
        ),
        Refusal::NoDataArea => (
            StatusCode::OK,
            format!(
                "<p class=\"note\">{}</p>",
                lang.t(
                    "The data area /vz is not mounted on this node: the VEs run on the active node. Open the console there to see them.",
                    "Der Datenbereich /vz ist auf diesem Knoten nicht eingehängt: Die VEs laufen auf dem aktiven Knoten. Öffnen Sie dort die Konsole, um sie zu sehen.",
                )
            ),
        ),
        Refusal::NoVe101 => (
            StatusCode::CONFLICT,
            error_p(lang.t(
                "The configuration has no VE 101 (ves.ve101 with host name and address). Nothing was changed. Add it to the configuration and import it on both nodes first.",
                "Die Konfiguration enthält keine VE 101 (ves.ve101 mit Hostname und Adresse). Es wurde nichts geändert. Nehmen Sie sie zuerst in die Konfiguration auf und importieren Sie diese auf beiden Knoten.",
            )),
        ),
        Refusal::BadTemplate { name, available } => (
            StatusCode::BAD_REQUEST,
            error_p(&lang.f(
                format!(
                    "There is no OS template {name:?} to choose. Nothing was changed. Choose one of the list: {}.",
                    available.join(", ")
                ),
                format!(
                    "Eine OS-Vorlage {name:?} steht nicht zur Wahl. Es wurde nichts geändert. Wählen Sie eine aus der Liste: {}.",
                    available.join(", ")
                ),
            )),
        ),
        Refusal::VeExists(id) => (
            StatusCode::CONFLICT,
            error_p(&lang.f(
                format!("VE {id} exists already (its file or its root filesystem is there). Nothing was changed. The VE list shows its state."),
                format!("VE {id} gibt es bereits (ihre Datei oder ihr Wurzeldateisystem ist vorhanden). Es wurde nichts geändert. Die VE-Liste zeigt ihren Zustand."),
            )),
        ),
        Refusal::InstallRunning => (
            StatusCode::CONFLICT,
            format!(
                "{}<p><a href=\"{}\">{}</a></p>",
                error_p(lang.t(
                    "An installation of VE 101 is already running. Nothing else was started.",
                    "Eine Installation von VE 101 läuft bereits. Es wurde nichts weiteres gestartet.",
                )),
                crate::cluster::INSTALL_PROGRESS,
                lang.t("Show its progress", "Fortschritt anzeigen")
            ),
        ),
        Refusal::BadSecret => (
            StatusCode::BAD_REQUEST,
            error_p(&lang.f(
                format!(
                    "The passphrase must have {} to {} characters. Nothing was changed.",
                    crate::helper::MIN_EXPORT_PASSPHRASE,
                    crate::helper::MAX_SECRET
                ),
                format!(
                    "Die Passphrase muss {} bis {} Zeichen haben. Es wurde nichts geändert.",
                    crate::helper::MIN_EXPORT_PASSPHRASE,
                    crate::helper::MAX_SECRET
                ),
            )),
        ),
        Refusal::Failed(m) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_p(&lang.f(
                format!("{m}. Nothing was changed; try again, and if it persists restart the node."),
                format!("{m}. Es wurde nichts geändert; versuchen Sie es erneut und starten Sie den Knoten neu, wenn der Fehler bleibt."),
            )),
        ),
    }
}

async fn upload(State(app): State<Arc<App>>, headers: HeaderMap, mut form: Multipart) -> Response {
    let a = match recovery_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
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
                        return upload_view(&app, lang, &a, e.status(), &msg);
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
                return upload_view(&app, lang, &a, e.status(), &msg);
            }
        }
    }
    if !token.is_some_and(|t| same(&t, &a.csrf)) {
        let msg = error_p(csrf_message(lang));
        return upload_view(&app, lang, &a, StatusCode::FORBIDDEN, &msg);
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
        return upload_view(&app, lang, &a, StatusCode::BAD_REQUEST, &msg);
    };
    let passphrase = passphrase.filter(|p| !p.is_empty());
    let archive = Arc::new(archive);
    let call = Call::Check {
        passphrase: passphrase.clone(),
    };
    match app.ask(call, archive.to_vec()).await.0 {
        Reply::Checked(summary) => {
            let checked = Checked {
                archive,
                passphrase,
                summary,
            };
            app.with_session(&a.id, |s| s.checked = Some(checked));
            upload_view(&app, lang, &a, StatusCode::OK, "")
        }
        Reply::Refused(r) => {
            // A refused upload also forgets an earlier checked archive: what is shown
            // for activation is always the last upload.
            app.with_session(&a.id, |s| s.checked = None);
            let (status, msg) = refusal_html(lang, &r);
            upload_view(&app, lang, &a, status, &msg)
        }
        other => unexpected(&app, lang, &a, &other),
    }
}

fn unexpected(app: &App, lang: Lang, a: &Auth, reply: &Reply) -> Response {
    let msg = error_p(&lang.f(
        format!("The privileged side answered something unexpected ({reply:?}). Nothing was changed."),
        format!("Die privilegierte Seite hat unerwartet geantwortet ({reply:?}). Es wurde nichts geändert."),
    ));
    upload_view(app, lang, a, StatusCode::INTERNAL_SERVER_ERROR, &msg)
}

/// The activation form.
#[derive(Debug, Deserialize)]
pub struct ActivateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    choice: String,
    #[serde(default)]
    confirm: String,
}

async fn activate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<ActivateForm>,
) -> Response {
    let a = match recovery_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    if !same(&form.csrf, &a.csrf) {
        let msg = error_p(csrf_message(lang));
        return upload_view(&app, lang, &a, StatusCode::FORBIDDEN, &msg);
    }
    let Some(choice) = DataChoice::from_form(&form.choice) else {
        let msg = error_p(lang.t(
            "Choose one of the two ways to activate: fetch the data from the other node, or destroy all data on the replicated device. Nothing was changed.",
            "Wählen Sie eine der beiden Arten der Aktivierung: Daten vom anderen Knoten holen oder alle Daten auf dem replizierten Gerät löschen. Es wurde nichts geändert.",
        ));
        return upload_view(&app, lang, &a, StatusCode::BAD_REQUEST, &msg);
    };
    let Some(checked) = app.with_session(&a.id, |s| s.checked.clone()).flatten() else {
        let msg = error_p(lang.t(
            "Upload and check the configuration archive first. Nothing was changed.",
            "Laden Sie zuerst das Konfigurationsarchiv hoch und lassen Sie es prüfen. Es wurde nichts geändert.",
        ));
        return upload_view(&app, lang, &a, StatusCode::BAD_REQUEST, &msg);
    };
    let call = Call::Activate {
        passphrase: checked.passphrase.clone(),
        choice,
        confirm_name: form.confirm,
    };
    match app.ask(call, checked.archive.to_vec()).await.0 {
        Reply::Started => Redirect::to("/progress").into_response(),
        Reply::Refused(r) => {
            let (status, msg) = refusal_html(lang, &r);
            upload_view(&app, lang, &a, status, &msg)
        }
        other => unexpected(&app, lang, &a, &other),
    }
}

fn progress_body(lang: Lang, v: &JobView) -> String {
    let mut body = String::new();
    let waiting_for_peer = v.lines.iter().any(|l| l.contains(PEER_MISSING));
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
                    format!("<p>The new address of this node's console: <a href=\"{u}\">{u}</a> (its configured external address). In about ten seconds the node leaves the recovery network and answers there (connect this laptop to the company LAN); log in with the management password.</p>"),
                    format!("<p>Die neue Adresse der Konsole dieses Knotens: <a href=\"{u}\">{u}</a> (seine konfigurierte externe Adresse). In etwa zehn Sekunden verlässt der Knoten das Wiederherstellungsnetz und antwortet dort (Laptop mit dem Firmennetz verbinden); melden Sie sich mit dem Verwaltungspasswort an.</p>"),
                ));
            }
        }
        JobState::Failed { code } => {
            let code = code.map_or_else(|| "-".to_owned(), |c| c.to_string());
            body.push_str(&error_p(&lang.f(
                format!("Activation stopped (exit code {code}). The node stays in recovery mode; no configuration was committed."),
                format!("Die Aktivierung wurde abgebrochen (Exit-Code {code}). Der Knoten bleibt im Wiederherstellungsmodus; es wurde keine Konfiguration übernommen."),
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
                "<p>What to do next: read the last lines below, remove the cause, then <a href=\"/upload\">upload and activate again</a>.</p>",
                "<p>Wie es weitergeht: Lesen Sie die letzten Zeilen unten, beheben Sie die Ursache und <a href=\"/upload\">laden Sie das Archiv erneut hoch und aktivieren Sie es</a>.</p>",
            ));
        }
    }
    let lines: String = v.lines.iter().map(|l| format!("{}\n", esc(l))).collect();
    body.push_str(&format!(
        "<h2>{}</h2><pre>{lines}</pre>",
        lang.t("Output", "Ausgabe")
    ));
    body
}

async fn progress(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match recovery_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let (body, running) = match app.ask(Call::Job, Vec::new()).await.0 {
        Reply::Job(v) => (progress_body(lang, &v), v.state == JobState::Running),
        Reply::Refused(r) => (refusal_html(lang, &r).1, false),
        other => (error_p(&format!("{other:?}")), false),
    };
    let mut f = frame(&app, lang, "/progress", &a);
    f.refresh = running.then_some(2);
    Html(page(&f, lang.t("Activation", "Aktivierung"), &body)).into_response()
}
