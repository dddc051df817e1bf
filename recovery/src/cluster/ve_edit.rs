//! Looking after each VE on the VEs page (R9.4, R9.6, R12): start, stop, restart and
//! back up; change its host name, addresses, name servers, start with the services,
//! CPUs, memory and disk space; set a user's password inside it. Each form is one
//! request to clusterd ([`Request::VeStart`], [`Request::VeStop`],
//! [`Request::VeRestart`], [`Request::VeBackup`], [`Request::VeSet`],
//! [`Request::VePassword`]); a refused change names the field and changes nothing.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tandem_api::{ChangeRefusal, Refusal, Reply, Request, VeView};

use super::ask_reply;
use super::ves::ves_page;
use crate::app::App;
use crate::i18n::Lang;
use crate::page::{error_p, esc};
use crate::refusal::refusal_html;
use crate::visit::{Cluster, Posted};

/// The forms of the VEs in `rows` (this node's VEs).
#[must_use]
pub(super) fn ve_forms_html(lang: Lang, csrf: &str, rows: &[VeView]) -> String {
    let csrf = esc(csrf);
    let mut out = String::new();
    for r in rows {
        let id = r.id;
        let button = |action: &str, en: &'static str, de: &'static str| {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/ves/action\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"id\" value=\"{id}\">\
                 <input type=\"hidden\" name=\"action\" value=\"{action}\">\
                 <button type=\"submit\">{}</button></form> ",
                lang.t(en, de)
            )
        };
        let actions = if r.status == "running" {
            format!(
                "{}{}{}",
                button("stop", "Stop", "Anhalten"),
                button("restart", "Restart", "Neu starten"),
                button("backup", "Back up", "Sichern")
            )
        } else {
            format!(
                "{}{}",
                button("start", "Start", "Starten"),
                button("backup", "Back up", "Sichern")
            )
        };
        let unchanged = lang.t("unchanged", "unverändert");
        let text_field = |name: &str, label: &str, value: &str, hint: &str| {
            format!(
                "<p><label>{label} <input name=\"{name}\" value=\"{}\" placeholder=\"{}\"></label></p>",
                esc(value),
                esc(hint)
            )
        };
        out.push_str(&format!(
            "<h3 id=\"ve-{id}\">VE {id}</h3><p>{actions}</p>\
             <details><summary>{edit}</summary>\
             <form id=\"ve-edit-{id}\" method=\"post\" action=\"/ves/edit\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"id\" value=\"{id}\">\
             {hostname}{ip}{ns}\
             <p><label>{onboot_l} <select name=\"onboot\"><option value=\"\">{unchanged}</option>\
             <option value=\"yes\">{yes}</option><option value=\"no\">{no}</option></select></label></p>\
             {cpus}{memory}{disk}\
             <p><button type=\"submit\">{save}</button></p><p class=\"note\">{note}</p></form></details>\
             <details><summary>{pw}</summary>\
             <form id=\"ve-password-{id}\" method=\"post\" action=\"/ves/password\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <p><label>{user_l} <input name=\"user\" value=\"root\"></label></p>\
             <p><label>{new_l} <input type=\"password\" name=\"new\" autocomplete=\"new-password\"></label></p>\
             <p><label>{confirm_l} <input type=\"password\" name=\"confirm\" autocomplete=\"new-password\"></label></p>\
             <p><button type=\"submit\">{pw_go}</button></p></form></details>",
            edit = lang.t("Change settings", "Einstellungen ändern"),
            hostname = text_field(
                "hostname",
                lang.t("Host name", "Hostname"),
                &r.hostname,
                ""
            ),
            ip = text_field(
                "ip",
                lang.t("IP addresses (separated by spaces)", "IP-Adressen (durch Leerzeichen getrennt)"),
                &r.ip.join(" "),
                ""
            ),
            ns = text_field(
                "nameserver",
                lang.t("Name servers (separated by spaces)", "Nameserver (durch Leerzeichen getrennt)"),
                "",
                unchanged
            ),
            onboot_l = lang.t("Start with the services", "Mit den Diensten starten"),
            yes = lang.t("yes", "ja"),
            no = lang.t("no", "nein"),
            cpus = text_field("cpus", lang.t("CPUs", "CPUs"), "", unchanged),
            memory = text_field(
                "memory",
                lang.t("Memory (e.g. 512M, 2G)", "Arbeitsspeicher (z. B. 512M, 2G)"),
                "",
                unchanged
            ),
            disk = text_field(
                "disk",
                lang.t("Disk space (e.g. 10G)", "Plattenplatz (z. B. 10G)"),
                "",
                unchanged
            ),
            save = lang.t("Save", "Speichern"),
            note = lang.t(
                "Empty fields stay as they are. The VE's file is checked whole before it is replaced; a running VE takes the change when it starts again (Restart).",
                "Leere Felder bleiben, wie sie sind. Die Datei der VE wird als Ganzes geprüft, bevor sie ersetzt wird; eine laufende VE übernimmt die Änderung beim nächsten Start (Neu starten).",
            ),
            pw = lang.t("Set a password inside the VE", "Passwort in der VE setzen"),
            user_l = lang.t("User", "Benutzer"),
            new_l = lang.t("New password", "Neues Passwort"),
            confirm_l = lang.t("New password again", "Neues Passwort wiederholen"),
            pw_go = lang.t("Set password", "Passwort setzen"),
        ));
    }
    out
}

/// The VE's number as posted, or the page's answer to a bad one.
fn ve_id(lang: Lang, id: &str) -> Result<u32, String> {
    id.trim().parse::<u32>().map_err(|_| {
        error_p(&lang.f(
            format!("{id:?} is not a VE number. Nothing was changed."),
            format!("{id:?} ist keine VE-Nummer. Es wurde nichts geändert."),
        ))
    })
}

/// What a refusal says on the VEs page.
fn refused_html(lang: Lang, reply: Reply) -> (StatusCode, String) {
    match reply {
        Reply::Refused(Refusal::NoDataArea) => (
            StatusCode::CONFLICT,
            error_p(lang.t(
                "The VEs run on the other node (the active one): this node does not hold the data area. Nothing was changed. Open the console of the active node.",
                "Die VEs laufen auf dem anderen Knoten (dem aktiven): Dieser Knoten hat den Datenbereich nicht. Es wurde nichts geändert. Öffnen Sie die Konsole des aktiven Knotens.",
            )),
        ),
        Reply::Refused(r) => refusal_html(lang, &r),
        Reply::ChangeRefused(ChangeRefusal::Fields(ps)) => {
            let items: String = ps
                .iter()
                .map(|p| format!("<li><b>{}</b>: {}</li>", esc(&p.field), esc(&p.message)))
                .collect();
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "<div class=\"error\" role=\"alert\"><p>{}</p><ul>{items}</ul></div>",
                    lang.t(
                        "Nothing was changed. Correct these fields:",
                        "Es wurde nichts geändert. Korrigieren Sie diese Felder:"
                    )
                ),
            )
        }
        Reply::ChangeRefused(ChangeRefusal::NotMade(why) | ChangeRefusal::OnlyPeer(why)) => (
            StatusCode::CONFLICT,
            error_p(&lang.f(
                format!("Nothing was changed: {why}."),
                format!("Es wurde nichts geändert: {why}."),
            )),
        ),
        other => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_p(&format!("{other:?}")),
        ),
    }
}

fn ok_p(text: &str) -> String {
    format!("<p class=\"ok\" role=\"status\">{}</p>", esc(text))
}

/// The start, stop, restart and backup buttons.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    action: String,
}

pub(super) async fn ve_action(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, ActionForm>,
) -> Response {
    let lang = a.lang;
    let id = match ve_id(lang, &form.id) {
        Ok(id) => id,
        Err(msg) => return ves_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await,
    };
    let (request, done) = match form.action.as_str() {
        "start" => (
            Request::VeStart { id },
            lang.f(format!("VE {id} started."), format!("VE {id} gestartet.")),
        ),
        "stop" => (
            Request::VeStop {
                id,
                grace_secs: None,
            },
            lang.f(
                format!("VE {id} stopped; it is not started again until you start it."),
                format!("VE {id} angehalten; sie startet erst wieder, wenn Sie sie starten."),
            ),
        ),
        "restart" => (
            Request::VeRestart { id },
            lang.f(format!("VE {id} restarted."), format!("VE {id} neu gestartet.")),
        ),
        "backup" => (
            Request::VeBackup { id },
            lang.f(
                format!("The backup of VE {id} runs in the background; the backup list below shows it when it is done."),
                format!("Die Sicherung der VE {id} läuft im Hintergrund; die Liste der Sicherungen unten zeigt sie, sobald sie fertig ist."),
            ),
        ),
        _ => {
            let msg = error_p(lang.t(
                "Use one of the VE's buttons. Nothing was changed.",
                "Benutzen Sie eine der Schaltflächen der VE. Es wurde nichts geändert.",
            ));
            return ves_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
        }
    };
    let (status, msg) = match ask_reply(&app, &a, request).await {
        Reply::Done | Reply::VeJobStarted => (StatusCode::OK, ok_p(&done)),
        other => refused_html(lang, other),
    };
    ves_page(&app, lang, &a, status, &msg).await
}

/// The settings form of one VE, as typed.
#[derive(Debug, Deserialize)]
pub struct EditForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    ip: String,
    #[serde(default)]
    nameserver: String,
    #[serde(default)]
    onboot: String,
    #[serde(default)]
    cpus: String,
    #[serde(default)]
    memory: String,
    #[serde(default)]
    disk: String,
}

/// The VE file's parameters for what was typed: empty fields change nothing.
fn changes(f: &EditForm) -> Vec<(String, String)> {
    let words = |s: &str| {
        s.split([' ', ',', '\t', '\n'])
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut v = Vec::new();
    let mut put = |k: &str, val: String| {
        if !val.is_empty() {
            v.push((k.to_owned(), val));
        }
    };
    put("HOSTNAME", f.hostname.trim().to_owned());
    put("IP_ADDRESS", words(&f.ip));
    put("NAMESERVER", words(&f.nameserver));
    put("ONBOOT", f.onboot.trim().to_owned());
    put("CPUS", f.cpus.trim().to_owned());
    put("PHYSPAGES", f.memory.trim().to_owned());
    put("DISKSPACE", f.disk.trim().to_owned());
    v
}

pub(super) async fn ve_edit(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, EditForm>,
) -> Response {
    let lang = a.lang;
    let id = match ve_id(lang, &form.id) {
        Ok(id) => id,
        Err(msg) => return ves_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await,
    };
    let changes = changes(&form);
    if changes.is_empty() {
        let msg = error_p(lang.t(
            "Every field is empty: nothing to change.",
            "Alle Felder sind leer: Es gibt nichts zu ändern.",
        ));
        return ves_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
    }
    let (status, msg) = match ask_reply(&app, &a, Request::VeSet { id, changes }).await {
        Reply::Done => (
            StatusCode::OK,
            ok_p(&lang.f(
                format!("The settings of VE {id} are saved; a running VE takes them when it starts again (Restart)."),
                format!("Die Einstellungen der VE {id} sind gespeichert; eine laufende VE übernimmt sie beim nächsten Start (Neu starten)."),
            )),
        ),
        other => refused_html(lang, other),
    };
    ves_page(&app, lang, &a, status, &msg).await
}

/// The password form of one VE.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub(super) async fn ve_password(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, PasswordForm>,
) -> Response {
    let lang = a.lang;
    let id = match ve_id(lang, &form.id) {
        Ok(id) => id,
        Err(msg) => return ves_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await,
    };
    let user = form.user.trim().to_owned();
    let request = Request::VePassword {
        id,
        user: user.clone(),
        new: form.new.into(),
        confirm: form.confirm.into(),
    };
    let (status, msg) = match ask_reply(&app, &a, request).await {
        Reply::VePasswordSet => (
            StatusCode::OK,
            ok_p(&lang.f(
                format!("The password of {user} inside VE {id} is set."),
                format!("Das Passwort von {user} in der VE {id} ist gesetzt."),
            )),
        ),
        other => refused_html(lang, other),
    };
    ves_page(&app, lang, &a, status, &msg).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_change_nothing_and_lists_are_spaced() {
        let f = EditForm {
            id: "101".into(),
            hostname: " web2 ".into(),
            ip: "192.0.2.50, 192.0.2.51\n".into(),
            nameserver: String::new(),
            onboot: "no".into(),
            cpus: String::new(),
            memory: "1G".into(),
            disk: String::new(),
        };
        assert_eq!(
            changes(&f),
            [
                ("HOSTNAME".to_owned(), "web2".to_owned()),
                ("IP_ADDRESS".to_owned(), "192.0.2.50 192.0.2.51".to_owned()),
                ("ONBOOT".to_owned(), "no".to_owned()),
                ("PHYSPAGES".to_owned(), "1G".to_owned()),
            ]
        );
    }

    #[test]
    fn a_running_ve_offers_stop_and_a_stopped_one_start() {
        let ve = |id, status: &str| VeView {
            id,
            nproc: 1,
            status: status.into(),
            ip: vec!["192.0.2.50".into()],
            hostname: "web".into(),
            health: String::new(),
        };
        let html = ve_forms_html(Lang::En, "tok", &[ve(101, "running"), ve(102, "stopped")]);
        let (a, b) = html.split_at(html.find("VE 102").expect("VE 102"));
        assert!(a.contains("value=\"stop\"") && !a.contains("value=\"start\""));
        assert!(b.contains("value=\"start\"") && !b.contains("value=\"stop\""));
        assert!(a.contains("name=\"hostname\" value=\"web\""));
        assert!(
            html.contains("action=\"/ves/password\"")
                && html.contains("name=\"csrf\" value=\"tok\"")
        );
    }
}
