//! The Maintenance page (R9.8): switchover; the configuration archive's download,
//! encrypted with a passphrase typed here (clusterd allows it only while both nodes run
//! normally, R3.1); the backup of the template cache on the node that holds the data
//! area; remote support ([`super::support`]); and restart or shutdown of this node only (the other node from its own
//! console), after a warning from clusterd's status of what happens to the services.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tandem_api::{
    BackupView, CopyOutcome, MAX_SECRET, MIN_EXPORT_PASSPHRASE, PowerAction, Refusal, Reply,
    Request, StatusJson,
};

use super::{ask_reply, get_status, no_daemon, render};
use crate::app::App;
use crate::i18n::Lang;
use crate::page::{Frame, error_p, esc, page};
use crate::refusal::refusal_html;
use crate::visit::{Cluster, Posted, Visit};

fn maintenance_body(lang: Lang, csrf: &str, message: &str, power: &str) -> String {
    let csrf = esc(csrf);
    format!(
        "{message}<h2>{sw}</h2><p>{sw_text}</p>\
         <form method=\"post\" action=\"/maintenance/switchover\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label><input type=\"checkbox\" name=\"confirm\" value=\"yes\"> {sw_confirm}</label></p>\
         <p><button type=\"submit\">{sw_go}</button></p></form>\
         <h2>{ex}</h2><p>{ex_text}</p>\
         <form method=\"post\" action=\"/maintenance/export\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label>{pass} <input type=\"password\" name=\"passphrase\" autocomplete=\"new-password\"></label></p>\
         <p><label>{pass2} <input type=\"password\" name=\"passphrase2\" autocomplete=\"new-password\"></label></p>\
         <p><button type=\"submit\">{ex_go}</button></p></form>\
         <h2>{tc}</h2><p>{tc_text}</p>\
         <form id=\"backup-templates\" method=\"post\" action=\"/maintenance/backup-templates\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><button type=\"submit\">{tc_go}</button></p></form>{power}",
        sw = lang.t("Switchover", "Übergabe (Switchover)"),
        sw_text = lang.t(
            "The VEs stop on the active node and then start on the other one.",
            "Die VEs halten auf dem aktiven Knoten an und starten dann auf dem anderen."
        ),
        sw_confirm = lang.t(
            "Yes, move the services to the other node now",
            "Ja, die Dienste jetzt auf den anderen Knoten verschieben"
        ),
        sw_go = lang.t("Switch over", "Übergeben"),
        ex = lang.t("Configuration archive", "Konfigurationsarchiv"),
        ex_text = lang.f(
            format!("Download the whole cluster configuration as one file, encrypted with a passphrase ({MIN_EXPORT_PASSPHRASE} characters or more). Keep file and passphrase apart: without them a reinstalled cluster cannot be brought into service."),
            format!("Die ganze Clusterkonfiguration als eine Datei herunterladen, verschlüsselt mit einer Passphrase (mindestens {MIN_EXPORT_PASSPHRASE} Zeichen). Datei und Passphrase getrennt aufbewahren: Ohne sie lässt sich ein neu installierter Cluster nicht in Betrieb nehmen."),
        ),
        pass = lang.t("Passphrase", "Passphrase"),
        pass2 = lang.t("Passphrase again", "Passphrase wiederholen"),
        ex_go = lang.t("Download", "Herunterladen"),
        tc = lang.t("Template cache", "Vorlagen-Cache"),
        tc_text = lang.t(
            "Copy every OS template of the data area (/vz/template) into /vz/backups/templatecache. A template whose backup is identical is left alone, a changed one is replaced. This works on the active node, where the data area is mounted. The built-in template tandem-minimal has no file and needs no backup.",
            "Jede OS-Vorlage des Datenbereichs (/vz/template) nach /vz/backups/templatecache kopieren. Eine Vorlage mit gleicher Sicherung bleibt unberührt, eine geänderte wird ersetzt. Das geht auf dem aktiven Knoten, wo der Datenbereich eingehängt ist. Die eingebaute Vorlage tandem-minimal hat keine Datei und braucht keine Sicherung.",
        ),
        tc_go = lang.t("Back up template cache", "Vorlagen-Cache sichern"),
    )
}

/// A size for people: bytes, KiB, MiB or GiB with one decimal.
pub(super) fn size_text(lang: Lang, bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    let Some((div, unit)) = UNITS.iter().find(|(d, _)| bytes >= *d) else {
        return format!("{bytes} {}", lang.t("bytes", "Bytes"));
    };
    // One decimal, rounded down, without floating point.
    let tenths = bytes.saturating_mul(10) / div;
    let sep = lang.t(".", ",");
    format!("{}{sep}{} {unit}", tenths / 10, tenths % 10)
}

/// What a backup of the template cache did: each template and its outcome, and where
/// and why it stopped when it did.
fn backup_html(lang: Lang, v: &BackupView) -> String {
    let n = |o: CopyOutcome| v.copies.iter().filter(|c| c.outcome == o).count();
    let (copied, replaced, unchanged) = (
        n(CopyOutcome::Copied),
        n(CopyOutcome::Replaced),
        n(CopyOutcome::Unchanged),
    );
    let total = size_text(lang, v.copies.iter().map(|c| c.bytes).sum());
    let dir = esc(&v.backup_dir);
    let head = match &v.failure {
        None if v.copies.is_empty() => format!(
            "<p class=\"ok\" role=\"status\">{}</p>",
            lang.f(
                format!("There are no OS templates in {}: nothing was backed up. The built-in template tandem-minimal needs no backup.", esc(&v.template_dir)),
                format!("In {} gibt es keine OS-Vorlagen: Es wurde nichts gesichert. Die eingebaute Vorlage tandem-minimal braucht keine Sicherung.", esc(&v.template_dir)),
            )
        ),
        None => {
            let count = v.copies.len();
            let (en, de) = if count == 1 {
                ("template", "Vorlage")
            } else {
                ("templates", "Vorlagen")
            };
            format!(
                "<p class=\"ok\" role=\"status\">{}</p>",
                lang.f(
                    format!("The template cache is backed up in {dir}: {count} {en}, {total}; {copied} copied, {replaced} replaced, {unchanged} unchanged."),
                    format!("Der Vorlagen-Cache ist in {dir} gesichert: {count} {de}, {total}; {copied} kopiert, {replaced} ersetzt, {unchanged} unverändert."),
                )
            )
        }
        Some(f) => {
            let next = if f.disk_full {
                lang.t(
                    "The data area is full. Free space in /vz (for example backups in /vz/backups or VEs no longer needed), then back up the template cache again.",
                    "Der Datenbereich ist voll. Schaffen Sie Platz in /vz (etwa Sicherungen in /vz/backups oder nicht mehr benötigte VEs) und sichern Sie den Vorlagen-Cache dann erneut.",
                )
            } else {
                lang.t(
                    "Correct the cause, then back up the template cache again; templates already backed up are then left alone.",
                    "Beheben Sie die Ursache und sichern Sie den Vorlagen-Cache dann erneut; bereits gesicherte Vorlagen bleiben dabei unberührt.",
                )
            };
            format!(
                "{}<p class=\"warn\">{next}</p>",
                error_p(&lang.f(
                    format!("The backup of the template cache stopped: {}. The template being copied was not written (its unfinished copy was removed, an older backup of it is kept); the templates listed below are backed up completely, the others were not tried.", f.message),
                    format!("Die Sicherung des Vorlagen-Caches wurde abgebrochen: {}. Die gerade kopierte Vorlage wurde nicht geschrieben (ihre unfertige Kopie wurde entfernt, eine ältere Sicherung bleibt erhalten); die unten aufgeführten Vorlagen sind vollständig gesichert, die übrigen wurden nicht versucht.", f.message),
                ))
            )
        }
    };
    let rows: String = v
        .copies
        .iter()
        .map(|c| {
            let outcome = match c.outcome {
                CopyOutcome::Copied => lang.t("copied", "kopiert"),
                CopyOutcome::Replaced => lang.t("replaced", "ersetzt"),
                CopyOutcome::Unchanged => lang.t("unchanged", "unverändert"),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{outcome}</td></tr>",
                esc(&c.file),
                size_text(lang, c.bytes)
            )
        })
        .collect();
    let table = if rows.is_empty() {
        String::new()
    } else {
        format!(
            "<table id=\"template-backup\"><tr><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
            lang.t("template", "Vorlage"),
            lang.t("size", "Größe"),
            lang.t("result", "Ergebnis"),
        )
    };
    format!(
        "<h2>{}</h2>{head}{table}",
        lang.t("Template cache backup", "Sicherung des Vorlagen-Caches")
    )
}

/// The other node's name when clusterd cannot tell.
fn other_node(node: &str) -> &'static str {
    if node == "node1" { "node2" } else { "node1" }
}

/// What a restart or shutdown of this node does to the services, from clusterd's
/// status taken just before.
fn power_effect(lang: Lang, node: &str, status: &Result<StatusJson, String>) -> String {
    let node = esc(node);
    match status {
        Ok(s) => {
            let other = esc(&s.peer.node);
            let role = esc(&s.role);
            match (s.role == "active", s.peer.alive) {
                (true, true) => lang.f(
                    format!("This node ({node}) is <b>active</b>: it runs the services. On the way down clusterd releases them and {other} takes them over, a switchover in effect: the services are interrupted while the VEs stop here and start on {other}."),
                    format!("Dieser Knoten ({node}) ist <b>aktiv</b>: Er betreibt die Dienste. Beim Herunterfahren gibt clusterd sie frei und {other} übernimmt sie, wie bei einer Übergabe: Die Dienste sind unterbrochen, während die VEs hier anhalten und auf {other} starten."),
                ),
                (true, false) => lang.f(
                    format!("This node ({node}) is <b>active</b> and the other node ({other}) is <b>not reachable</b>: restarting or shutting down <b>stops the services</b>, and no node takes them over. After a restart they come back with this node; after a shutdown only when a node is switched on again."),
                    format!("Dieser Knoten ({node}) ist <b>aktiv</b> und der andere Knoten ({other}) ist <b>nicht erreichbar</b>: Neustart oder Herunterfahren <b>beendet die Dienste</b>, und kein Knoten übernimmt sie. Nach einem Neustart kommen sie mit diesem Knoten zurück, nach dem Herunterfahren erst, wenn ein Knoten wieder eingeschaltet wird."),
                ),
                (false, true) => lang.f(
                    format!("This node ({node}) is <b>{role}</b>: the services run on {other} and go on running there. While this node is down the services have no standby node; replication catches up when it is back."),
                    format!("Dieser Knoten ({node}) ist <b>{role}</b>: Die Dienste laufen auf {other} und laufen dort weiter. Solange dieser Knoten fehlt, haben die Dienste keinen Ersatzknoten; die Replikation holt nach, wenn er zurück ist."),
                ),
                (false, false) => lang.f(
                    format!("This node ({node}) is <b>{role}</b> and the other node ({other}) is <b>not reachable</b>: the services run on neither node now, and none will run while this node is down."),
                    format!("Dieser Knoten ({node}) ist <b>{role}</b> und der andere Knoten ({other}) ist <b>nicht erreichbar</b>: Die Dienste laufen derzeit auf keinem Knoten, und solange dieser Knoten fehlt, läuft keiner."),
                ),
            }
        }
        Err(e) => lang.f(
            format!("The cluster daemon does not answer ({}), so it is unknown whether this node ({node}) runs the services. If it does, they stop unless the other node takes them over.", esc(e)),
            format!("Der Clusterdienst antwortet nicht ({}), daher ist unbekannt, ob dieser Knoten ({node}) die Dienste betreibt. Falls ja, enden sie, sofern der andere Knoten sie nicht übernimmt.", esc(e)),
        ),
    }
}

/// The restart and shutdown forms, after the warning.
fn power_html(lang: Lang, csrf: &str, node: &str, status: &Result<StatusJson, String>) -> String {
    let csrf = esc(csrf);
    let other = match status {
        Ok(s) => esc(&s.peer.node),
        Err(_) => other_node(node).to_owned(),
    };
    let n = esc(node);
    let form = |action: &str, confirm: String, go: &str| {
        format!(
            "<form id=\"{action}\" method=\"post\" action=\"/maintenance/power\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"action\" value=\"{action}\">\
             <p><label><input type=\"checkbox\" name=\"confirm\" value=\"yes\"> {confirm}</label></p>\
             <p><button type=\"submit\">{go}</button></p></form>"
        )
    };
    format!(
        "<h2>{title}</h2><p class=\"warn\" role=\"note\">{effect}</p>\
         <h3>{rb}</h3><p>{rb_text}</p>{rb_form}\
         <h3>{off}</h3><p>{off_text}</p>{off_form}\
         <p class=\"note\">{other_text}</p>",
        title = lang.t("Restart or shut down this node", "Diesen Knoten neu starten oder herunterfahren"),
        effect = power_effect(lang, node, status),
        rb = lang.t("Restart this node", "Diesen Knoten neu starten"),
        rb_text = lang.t(
            "The node stops its services and programs, restarts, and joins the cluster again. The console is back at the same address after about a minute.",
            "Der Knoten beendet seine Dienste und Programme, startet neu und tritt dem Cluster wieder bei. Die Konsole ist nach etwa einer Minute unter derselben Adresse wieder erreichbar.",
        ),
        rb_form = form(
            "reboot",
            lang.f(format!("Yes, restart {n} now"), format!("Ja, {n} jetzt neu starten")),
            lang.t("Restart this node", "Diesen Knoten neu starten"),
        ),
        off = lang.t("Shut down this node", "Diesen Knoten herunterfahren"),
        off_text = lang.t(
            "The node stops its services and programs and switches itself off. It stays off until it is switched on at the machine (power button) or through its BMC (remote management); this console cannot switch it on.",
            "Der Knoten beendet seine Dienste und Programme und schaltet sich aus. Er bleibt aus, bis er an der Maschine (Einschaltknopf) oder über sein BMC (Fernverwaltung) eingeschaltet wird; diese Konsole kann ihn nicht einschalten.",
        ),
        off_form = form(
            "poweroff",
            lang.f(format!("Yes, shut down {n} now"), format!("Ja, {n} jetzt herunterfahren")),
            lang.t("Shut down this node", "Diesen Knoten herunterfahren"),
        ),
        other_text = lang.f(
            format!("This console restarts or shuts down only this node ({n}). To restart or shut down {other}, use that node's own console at its own address."),
            format!("Diese Konsole startet oder fährt nur diesen Knoten ({n}) herunter. Um {other} neu zu starten oder herunterzufahren, verwenden Sie die eigene Konsole jenes Knotens unter seiner Adresse."),
        ),
    )
}

/// The Maintenance page with `message` on top, with clusterd's current status in the
/// restart and shutdown warning.
pub(super) async fn maintenance_page(
    app: &Arc<App>,
    lang: Lang,
    a: &Visit,
    status: StatusCode,
    message: &str,
) -> Response {
    let cluster = get_status(app).await;
    let power = format!(
        "{}{}",
        super::support::support_section(app, a).await,
        power_html(lang, a.csrf.as_str(), &app.node, &cluster)
    );
    let body = maintenance_body(lang, a.csrf.as_str(), message, &power);
    render(app, lang, "/maintenance", a, status, &body)
}

/// The Maintenance page for an answer of the privileged side that its handler does
/// not expect: a refusal in the operator's words, or the answer as it came.
async fn maintenance_unexpected(app: &Arc<App>, lang: Lang, a: &Visit, reply: Reply) -> Response {
    let (status, html) = match reply {
        Reply::Refused(r) => refusal_html(lang, &r),
        other => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_p(&format!("{other:?}")),
        ),
    };
    maintenance_page(app, lang, a, status, &html).await
}

pub(super) async fn maintenance(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    let lang = a.lang;
    maintenance_page(&app, lang, &a, StatusCode::OK, "").await
}

/// The switchover form.
#[derive(Debug, Deserialize)]
pub struct SwitchoverForm {
    #[serde(default)]
    confirm: String,
}

pub(super) async fn switchover(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, SwitchoverForm>,
) -> Response {
    let lang = a.lang;
    if form.confirm != "yes" {
        let msg = error_p(lang.t(
            "Tick the box to confirm the switchover. Nothing was changed.",
            "Kreuzen Sie das Feld an, um die Übergabe zu bestätigen. Es wurde nichts geändert.",
        ));
        return maintenance_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
    }
    match ask_reply(&app, &a, Request::Switchover).await {
        Reply::Done => {
            let msg = format!(
                "<p class=\"ok\" role=\"status\">{}</p>",
                lang.t(
                    "Switchover started. The Status page shows how it goes.",
                    "Die Übergabe wurde gestartet. Die Statusseite zeigt den Verlauf."
                )
            );
            maintenance_page(&app, lang, &a, StatusCode::OK, &msg).await
        }
        other => maintenance_unexpected(&app, lang, &a, other).await,
    }
}

/// The template cache backup form.
#[derive(Debug, Deserialize)]
pub struct BackupForm {}

pub(super) async fn backup_templates(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form: BackupForm {},
    }: Posted<Cluster, BackupForm>,
) -> Response {
    let lang = a.lang;
    match ask_reply(&app, &a, Request::BackupTemplates).await {
        Reply::TemplatesBackedUp(v) => {
            let status = match &v.failure {
                None => StatusCode::OK,
                Some(f) if f.disk_full => StatusCode::INSUFFICIENT_STORAGE,
                Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            maintenance_page(&app, lang, &a, status, &backup_html(lang, &v)).await
        }
        Reply::Refused(Refusal::NoDataArea) => {
            let msg = error_p(lang.t(
                "The data area /vz is on the other node: this node is passive and holds no template cache. Nothing was done. Open the console of the active node and back up the template cache there.",
                "Der Datenbereich /vz liegt auf dem anderen Knoten: Dieser Knoten ist passiv und hat keinen Vorlagen-Cache. Es wurde nichts ausgeführt. Öffnen Sie die Konsole des aktiven Knotens und sichern Sie den Vorlagen-Cache dort.",
            ));
            maintenance_page(&app, lang, &a, StatusCode::CONFLICT, &msg).await
        }
        other => maintenance_unexpected(&app, lang, &a, other).await,
    }
}

/// The restart and shutdown forms.
#[derive(Debug, Deserialize)]
pub struct PowerForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    confirm: String,
}

pub(super) async fn power(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, PowerForm>,
) -> Response {
    let lang = a.lang;
    let Some(action) = PowerAction::from_form(&form.action) else {
        let msg = error_p(lang.t(
            "Choose restart or shut down with one of the two buttons below. Nothing was done.",
            "Wählen Sie Neustart oder Herunterfahren mit einer der beiden Schaltflächen unten. Es wurde nichts ausgeführt.",
        ));
        return maintenance_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
    };
    if form.confirm != "yes" {
        let msg = error_p(match action {
            PowerAction::Reboot => lang.t(
                "Tick the box to confirm the restart of this node. Nothing was done.",
                "Kreuzen Sie das Feld an, um den Neustart dieses Knotens zu bestätigen. Es wurde nichts ausgeführt.",
            ),
            PowerAction::Poweroff => lang.t(
                "Tick the box to confirm the shutdown of this node. Nothing was done.",
                "Kreuzen Sie das Feld an, um das Herunterfahren dieses Knotens zu bestätigen. Es wurde nichts ausgeführt.",
            ),
        });
        return maintenance_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
    }
    // The state before: what happens to the services is decided by it.
    let cluster = get_status(&app).await;
    match ask_reply(&app, &a, Request::Power { action }).await {
        Reply::PowerSignalled(_) => powering_page(&app, lang, &headers, action, &cluster),
        Reply::Refused(Refusal::Failed(m)) => {
            let msg = error_p(&lang.f(
                format!("The node could not be told to {}: {m}. Nothing was done. Try again; if it fails again, restart or switch off the node at the machine or through its BMC.", match action { PowerAction::Reboot => "restart", PowerAction::Poweroff => "shut down" }),
                format!("Dem Knoten konnte nicht mitgeteilt werden, {}: {m}. Es wurde nichts ausgeführt. Versuchen Sie es erneut; scheitert es wieder, starten Sie den Knoten an der Maschine oder über sein BMC neu bzw. schalten Sie ihn dort aus.", match action { PowerAction::Reboot => "neu zu starten", PowerAction::Poweroff => "herunterzufahren" }),
            ));
            maintenance_page(&app, lang, &a, StatusCode::INTERNAL_SERVER_ERROR, &msg).await
        }
        other => maintenance_unexpected(&app, lang, &a, other).await,
    }
}

/// The page after a restart or shutdown was started: what happens and what to do.
fn powering_page(
    app: &App,
    lang: Lang,
    headers: &HeaderMap,
    action: PowerAction,
    cluster: &Result<StatusJson, String>,
) -> Response {
    let node = esc(&app.node);
    let address = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .map(|h| format!("https://{}/", esc(h)));
    let effect = power_effect(lang, &app.node, cluster);
    let (title, text) = match action {
        PowerAction::Reboot => (
            lang.t("This node is restarting", "Dieser Knoten startet neu"),
            match &address {
                Some(url) => lang.f(
                    format!("{node} is restarting now. The console comes back at the same address, <a href=\"{url}\">{url}</a>, in about a minute; then log in again. If it is not back after five minutes, look at the node's screen or its BMC."),
                    format!("{node} startet jetzt neu. Die Konsole ist in etwa einer Minute unter derselben Adresse wieder erreichbar, <a href=\"{url}\">{url}</a>; melden Sie sich dann erneut an. Ist sie nach fünf Minuten nicht zurück, sehen Sie am Bildschirm des Knotens oder in seinem BMC nach."),
                ),
                None => lang.f(
                    format!("{node} is restarting now. The console comes back at the same address in about a minute; then log in again. If it is not back after five minutes, look at the node's screen or its BMC."),
                    format!("{node} startet jetzt neu. Die Konsole ist in etwa einer Minute unter derselben Adresse wieder erreichbar; melden Sie sich dann erneut an. Ist sie nach fünf Minuten nicht zurück, sehen Sie am Bildschirm des Knotens oder in seinem BMC nach."),
                ),
            },
        ),
        PowerAction::Poweroff => (
            lang.t("This node is shutting down", "Dieser Knoten fährt herunter"),
            lang.f(
                format!("{node} is shutting down now and then stays off. To use it again, switch it on at the machine (power button) or through its BMC (remote management); this console cannot switch it on. The other node's console stays reachable at its own address."),
                format!("{node} fährt jetzt herunter und bleibt danach aus. Um ihn wieder zu nutzen, schalten Sie ihn an der Maschine (Einschaltknopf) oder über sein BMC (Fernverwaltung) ein; diese Konsole kann ihn nicht einschalten. Die Konsole des anderen Knotens bleibt unter ihrer eigenen Adresse erreichbar."),
            ),
        ),
    };
    let f = Frame {
        lang,
        node: &app.node,
        path: "/maintenance",
        csrf: None,
        cluster_menu: false,
        refresh: None,
    };
    let body = format!("<p class=\"ok\" role=\"status\">{text}</p><p class=\"warn\">{effect}</p>");
    (StatusCode::OK, Html(page(&f, title, &body))).into_response()
}

/// The export form.
#[derive(Debug, Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    passphrase: String,
    #[serde(default)]
    passphrase2: String,
}

pub(super) async fn export(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, ExportForm>,
) -> Response {
    let lang = a.lang;
    if form.passphrase != form.passphrase2 {
        let msg = error_p(lang.t(
            "The two passphrases differ. Type the same passphrase twice.",
            "Die beiden Passphrasen unterscheiden sich. Geben Sie zweimal dieselbe Passphrase ein.",
        ));
        return maintenance_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
    }
    let n = form.passphrase.chars().count();
    if n < MIN_EXPORT_PASSPHRASE || form.passphrase.len() > MAX_SECRET {
        let msg = error_p(&lang.f(
            format!("The passphrase must have {MIN_EXPORT_PASSPHRASE} to {MAX_SECRET} characters (it has {n})."),
            format!("Die Passphrase muss {MIN_EXPORT_PASSPHRASE} bis {MAX_SECRET} Zeichen haben (sie hat {n})."),
        ));
        return maintenance_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
    }
    // R3.1: clusterd exports only while both nodes run normally (PeerNotNormal).
    let call = Request::Export {
        passphrase: form.passphrase.into(),
    };
    let answer = match app.ask_with(Some(&a.token), call, Vec::new()).await {
        Ok(x) => x,
        Err(e) => {
            let html = no_daemon(lang, &e.0);
            return maintenance_page(&app, lang, &a, StatusCode::SERVICE_UNAVAILABLE, &html).await;
        }
    };
    match answer {
        (Reply::Exported { file_name }, bytes) => {
            let safe: String = file_name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .collect();
            let mut r = (StatusCode::OK, bytes).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        (Reply::Refused(r), _) => {
            let (status, html) = refusal_html(lang, &r);
            maintenance_page(&app, lang, &a, status, &html).await
        }
        (other, _) => {
            maintenance_page(
                &app,
                lang,
                &a,
                StatusCode::INTERNAL_SERVER_ERROR,
                &error_p(&format!("{other:?}")),
            )
            .await
        }
    }
}
