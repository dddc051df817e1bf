//! The VEs page (R9.4): the configured VEs, this node's VEs, and VE 101 installed from
//! an OS template on the node that holds the data area, with the host name and address
//! of the committed configuration. The installation runs in clusterd in the background;
//! its progress page reloads itself (no JavaScript) until it shows how it ended. The
//! VE backups on the data area are listed with where each was copied off to (R12).
//! Each VE of this node has its buttons and forms ([`super::ve_edit`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tandem_api::{InstallReport, InstallView, JobState, Refusal, Reply, Request, Settings};

use super::{
    INSTALL_PROGRESS, ask_reply, get_settings, get_status, no_daemon, render, ve_rows_html,
};
use crate::app::App;
use crate::i18n::Lang;
use crate::page::{Frame, error_p, esc, page};
use crate::refusal::refusal_html;
use crate::visit::{Cluster, Posted, Visit};

/// The VE backups on the data area (R12): file, size, time, and where each was copied
/// off to, or that it is only on the pair's own disk.
fn backups_html(lang: Lang, reply: &Reply) -> String {
    let v = match reply {
        Reply::VeBackups(v) => v,
        Reply::Refused(r) => return refusal_html(lang, r).1,
        other => return error_p(&format!("{other:?}")),
    };
    let note = lang.t(
        "<p class=\"note\">Backups are made and restored on the active node with <code>tandem ve backup ID</code> and <code>tandem ve restore FILE [--to ID]</code>.</p>",
        "<p class=\"note\">Sicherungen werden auf dem aktiven Knoten mit <code>tandem ve backup ID</code> erstellt und mit <code>tandem ve restore DATEI [--to ID]</code> zurückgespielt.</p>",
    );
    let target = match &v.target {
        Some(t) => lang.f(
            format!("Copy-off target: <b>{}</b>", esc(t)),
            format!("Auslagerungsziel: <b>{}</b>", esc(t)),
        ),
        None => lang
            .t(
                "No copy-off target is configured (<code>[backup]</code>): every backup is only on the pair's own disk.",
                "Kein Auslagerungsziel konfiguriert (<code>[backup]</code>): jede Sicherung liegt nur auf der Platte des Clusters.",
            )
            .to_owned(),
    };
    if v.files.is_empty() {
        return format!(
            "<p>{}</p><p>{target}</p>{note}",
            lang.t("No VE backups yet.", "Noch keine Sicherungen von VEs.")
        );
    }
    let rows: String = v
        .files
        .iter()
        .map(|f| {
            let copied = match &f.copied_to {
                Some(to) => esc(to),
                None => format!("<b>{}</b>", lang.t("not copied off", "nicht ausgelagert")),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{copied}</td></tr>",
                esc(&f.name),
                f.ve,
                super::maintenance::size_text(lang, f.bytes),
                esc(&f.time)
            )
        })
        .collect();
    format!(
        "<table><tr><th>{}</th><th>VE</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table><p>{target}</p>{note}",
        lang.t("file", "Datei"),
        lang.t("size", "Größe"),
        lang.t("time (UTC)", "Zeit (UTC)"),
        lang.t("copied off to", "ausgelagert nach")
    )
}

/// The VE 101 part of the VEs page: its state when it exists, else the installation
/// form when it can be installed here, else why not.
async fn ve101_html(
    app: &Arc<App>,
    a: &Visit,
    settings: Option<&Settings>,
    list: &Reply,
) -> String {
    let lang = a.lang;
    let csrf = a.csrf.as_str();
    let title = format!("<h2>{}</h2>", lang.t("VE 101", "VE 101"));
    if let Reply::Install(v) = ask_reply(app, a, Request::Ve101Install).await
        && v.state == JobState::Running
    {
        let t = esc(v.template.as_deref().unwrap_or(""));
        return format!(
            "{title}<p class=\"note\" role=\"status\">{} <a href=\"{INSTALL_PROGRESS}\">{}</a></p>",
            lang.f(
                format!("VE 101 is being installed from {t}."),
                format!("VE 101 wird aus {t} installiert."),
            ),
            lang.t("Show the progress", "Fortschritt anzeigen"),
        );
    }
    if let Reply::Ves(rows) = list
        && let Some(r) = rows.iter().find(|r| r.id == 101)
    {
        return format!(
            "{title}<p id=\"ve101-state\">{}</p>",
            lang.f(
                format!(
                    "VE 101 is installed on this node: <b>{}</b>, {} processes, address {}, host name {}.",
                    esc(&r.status),
                    r.nproc,
                    esc(&r.ip.join(" ")),
                    esc(&r.hostname)
                ),
                format!(
                    "VE 101 ist auf diesem Knoten installiert: <b>{}</b>, {} Prozesse, Adresse {}, Hostname {}.",
                    esc(&r.status),
                    r.nproc,
                    esc(&r.ip.join(" ")),
                    esc(&r.hostname)
                ),
            )
        );
    }
    let Some(settings) = settings else {
        return String::new();
    };
    let Some((_, hostname, address)) = settings.ves.iter().find(|(id, _, _)| id == "101") else {
        return format!(
            "{title}<p class=\"note\">{}</p>",
            lang.t(
                "The configuration has no VE 101. To install it, add ves.ve101 (host name and address) to the configuration and import it on both nodes.",
                "Die Konfiguration enthält keine VE 101. Um sie zu installieren, nehmen Sie ves.ve101 (Hostname und Adresse) in die Konfiguration auf und importieren Sie diese auf beiden Knoten.",
            )
        );
    };
    match list {
        Reply::Ves(_) => {}
        Reply::Refused(Refusal::NoDataArea) => {
            return format!(
                "{title}<p class=\"note\">{}</p>",
                lang.t(
                    "VE 101 can be installed only on the active node, where the data area is mounted. Open the console of the active node.",
                    "VE 101 lässt sich nur auf dem aktiven Knoten installieren, wo der Datenbereich eingehängt ist. Öffnen Sie die Konsole des aktiven Knotens.",
                )
            );
        }
        // The list above says what went wrong.
        _ => return String::new(),
    }
    let templates = match ask_reply(app, a, Request::VeTemplates).await {
        Reply::Templates(t) => t.into_iter().map(|t| t.name).collect::<Vec<_>>(),
        Reply::Refused(r) => return format!("{title}{}", refusal_html(lang, &r).1),
        other => return format!("{title}{}", error_p(&format!("{other:?}"))),
    };
    let options: String = templates
        .iter()
        .map(|t| {
            let label = if t == tandem_api::MINIMAL_TEMPLATE {
                format!(
                    "{} ({})",
                    esc(t),
                    lang.t(
                        "built in: busybox and a web server",
                        "eingebaut: busybox und ein Webserver"
                    )
                )
            } else {
                esc(t)
            };
            format!("<option value=\"{}\">{label}</option>", esc(t))
        })
        .collect();
    format!(
        "{title}<p>{text}</p>\
         <form id=\"install-ve101\" method=\"post\" action=\"/ves/install\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label>{tl} <select name=\"template\">{options}</select></label></p>\
         <p><label><input type=\"checkbox\" name=\"confirm\" value=\"yes\"> {confirm}</label></p>\
         <p><button type=\"submit\">{go}</button></p></form><p class=\"note\">{more}</p>",
        text = lang.f(
            format!(
                "VE 101 is not installed yet. Install it from an OS template with the configured host name <b>{}</b> and address <b>{}</b>: it is marked to start with the services (ONBOOT=yes) and started now; after a takeover it runs on the other node.",
                esc(hostname),
                esc(address)
            ),
            format!(
                "VE 101 ist noch nicht installiert. Installieren Sie sie aus einer OS-Vorlage mit dem konfigurierten Hostnamen <b>{}</b> und der Adresse <b>{}</b>: Sie wird zum Start mit den Diensten markiert (ONBOOT=yes) und sofort gestartet; nach einer Übernahme läuft sie auf dem anderen Knoten.",
                esc(hostname),
                esc(address)
            ),
        ),
        csrf = esc(csrf),
        tl = lang.t("OS template", "OS-Vorlage"),
        confirm = lang.t(
            "Yes, install VE 101 from this template and start it",
            "Ja, VE 101 aus dieser Vorlage installieren und starten"
        ),
        go = lang.t("Install VE 101", "VE 101 installieren"),
        more = lang.t(
            "More templates: copy a root filesystem as NAME.tar or NAME.tar.gz to /vz/template on the active node; it then shows in this list.",
            "Weitere Vorlagen: Kopieren Sie ein Wurzeldateisystem als NAME.tar oder NAME.tar.gz nach /vz/template auf dem aktiven Knoten; es erscheint dann in dieser Liste.",
        ),
    )
}

/// The VEs page with `message` on top.
pub(super) async fn ves_page(
    app: &Arc<App>,
    lang: Lang,
    a: &Visit,
    status: StatusCode,
    message: &str,
) -> Response {
    let settings = get_settings(app, a).await;
    let configured = match &settings {
        Ok(s) => {
            let rows: String = s
                .ves
                .iter()
                .map(|(id, h, ip)| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(id),
                        esc(h),
                        esc(ip)
                    )
                })
                .collect();
            format!(
                "<table><tr><th>VE</th><th>{}</th><th>{}</th></tr>{rows}</table>",
                lang.t("host name", "Hostname"),
                lang.t("address", "Adresse")
            )
        }
        Err(e) => e.clone(),
    };
    let running = match get_status(app).await {
        Ok(s) => format!(
            "<p>{}: <b>{}</b> ({})</p>",
            lang.t("Resources of this node", "Ressourcen dieses Knotens"),
            esc(&s.resources),
            esc(&s.resource_chain.join(" → "))
        ),
        Err(e) => no_daemon(lang, &e),
    };
    let reply = ask_reply(app, a, Request::VeList).await;
    let list = ve_rows_html(lang, &reply);
    let forms = match &reply {
        Reply::Ves(rows) => super::ve_edit::ve_forms_html(lang, a.csrf.as_str(), rows),
        _ => String::new(),
    };
    let ve101 = ve101_html(app, a, settings.as_ref().ok(), &reply).await;
    let backups = backups_html(lang, &ask_reply(app, a, Request::VeBackups).await);
    let body = format!(
        "{message}<h2>{}</h2>{configured}{running}<h2>{}</h2>{list}{forms}{ve101}<h2>{}</h2>{backups}",
        lang.t("Configured", "Konfiguriert"),
        lang.t("On this node", "Auf diesem Knoten"),
        lang.t("Backups", "Sicherungen")
    );
    render(app, lang, "/ves", a, status, &body)
}

pub(super) async fn ves(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    let lang = a.lang;
    ves_page(&app, lang, &a, StatusCode::OK, "").await
}

/// The VE 101 installation form.
#[derive(Debug, Deserialize)]
pub struct InstallForm {
    #[serde(default)]
    template: String,
    #[serde(default)]
    confirm: String,
}

/// What the installation did, step by step, and what to do after a failed step.
fn install_html(lang: Lang, r: &InstallReport) -> String {
    let t = esc(&r.template);
    let head = if r.complete() {
        format!(
            "<p class=\"ok\" role=\"status\">{}</p>",
            lang.f(
                format!("VE 101 was installed from {t}, marked to start with the services and started."),
                format!("VE 101 wurde aus {t} installiert, zum Start mit den Diensten markiert und gestartet."),
            )
        )
    } else {
        let failed = r.steps.iter().position(|s| !s.ok).unwrap_or(r.steps.len());
        error_p(&match failed {
            0 => lang.f(
                format!("VE 101 could not be created from {}: nothing was installed. Read the message below (for a template of your own: is it a root filesystem as .tar or .tar.gz?), correct the cause, then install again.", r.template),
                format!("VE 101 konnte nicht aus {} angelegt werden: Es wurde nichts installiert. Lesen Sie die Meldung unten (bei einer eigenen Vorlage: Ist sie ein Wurzeldateisystem als .tar oder .tar.gz?), beheben Sie die Ursache und installieren Sie erneut.", r.template),
            ),
            1 => lang.f(
                "VE 101 was created but could not be marked to start with the services, and it was not started. Read the message below, then run `tandem ve set 101 ONBOOT=yes` and `tandem ve start 101` on this node.".to_owned(),
                "VE 101 wurde angelegt, konnte aber nicht zum Start mit den Diensten markiert werden und wurde nicht gestartet. Lesen Sie die Meldung unten und führen Sie dann `tandem ve set 101 ONBOOT=yes` und `tandem ve start 101` auf diesem Knoten aus.".to_owned(),
            ),
            _ => lang.f(
                "VE 101 was created and marked to start with the services, but it did not start. Read the message below, correct the cause, then start it with `tandem ve start 101` on this node; it also starts with the services at the next takeover.".to_owned(),
                "VE 101 wurde angelegt und zum Start mit den Diensten markiert, ist aber nicht gestartet. Lesen Sie die Meldung unten, beheben Sie die Ursache und starten Sie sie mit `tandem ve start 101` auf diesem Knoten; sie startet auch bei der nächsten Übernahme mit den Diensten.".to_owned(),
            ),
        })
    };
    format!("{head}{}", steps_html(lang, r))
}

/// The steps that ran, with their output.
fn steps_html(lang: Lang, r: &InstallReport) -> String {
    r.steps
        .iter()
        .map(|s| {
            format!(
                "<p><code>{}</code>: {}</p>{}",
                esc(&s.command),
                if s.ok {
                    lang.t("done", "erledigt")
                } else {
                    lang.t("failed", "fehlgeschlagen")
                },
                if s.output.is_empty() {
                    String::new()
                } else {
                    format!("<pre>{}</pre>", esc(&s.output))
                }
            )
        })
        .collect()
}

/// The page a cluster form is on (where a refused form is shown again).
pub(super) async fn install_ve101(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, InstallForm>,
) -> Response {
    let lang = a.lang;
    if form.template.is_empty() {
        let msg = error_p(lang.t(
            "Choose the OS template to install VE 101 from. Nothing was changed.",
            "Wählen Sie die OS-Vorlage, aus der VE 101 installiert werden soll. Es wurde nichts geändert.",
        ));
        return ves_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
    }
    if form.confirm != "yes" {
        let msg = error_p(lang.t(
            "Tick the box to confirm the installation of VE 101. Nothing was changed.",
            "Kreuzen Sie das Feld an, um die Installation von VE 101 zu bestätigen. Es wurde nichts geändert.",
        ));
        return ves_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
    }
    let call = Request::InstallVe101 {
        template: form.template,
    };
    match ask_reply(&app, &a, call).await {
        // Started, or one runs already (a second click): its progress page either way.
        Reply::InstallStarted | Reply::Refused(Refusal::InstallRunning) => {
            Redirect::to(INSTALL_PROGRESS).into_response()
        }
        Reply::Refused(r) => {
            let (status, html) = refusal_html(lang, &r);
            // Not installed: the passive node has no data area.
            let status = if r == Refusal::NoDataArea {
                StatusCode::CONFLICT
            } else {
                status
            };
            ves_page(&app, lang, &a, status, &html).await
        }
        other => {
            ves_page(
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

/// What the progress page of the VE 101 installation says.
fn install_progress_body(lang: Lang, v: &InstallView) -> String {
    let back = format!(
        "<p><a href=\"/ves\">{}</a></p>",
        lang.t("To the VE list", "Zur VE-Liste")
    );
    let report = v.report();
    match &v.state {
        JobState::Idle => format!(
            "<p>{}</p>{back}",
            lang.t(
                "No installation of VE 101 was started since the console started. The VEs page shows whether VE 101 is installed and offers the installation.",
                "Seit dem Start der Konsole wurde keine Installation von VE 101 begonnen. Die VE-Seite zeigt, ob VE 101 installiert ist, und bietet die Installation an.",
            )
        ),
        JobState::Running => {
            let t = esc(v.template.as_deref().unwrap_or(""));
            let now = v.current.as_deref().map_or_else(String::new, |c| {
                format!(
                    "<p>{}: <code>{}</code></p>",
                    lang.t("Running now", "Läuft gerade"),
                    esc(c)
                )
            });
            format!(
                "<p role=\"status\"><b>{}</b> {}</p>{}{now}",
                lang.f(
                    format!("VE 101 is being installed from {t}."),
                    format!("VE 101 wird aus {t} installiert."),
                ),
                lang.t(
                    "This page reloads itself every few seconds.",
                    "Diese Seite lädt sich alle paar Sekunden neu."
                ),
                steps_html(lang, &report),
            )
        }
        JobState::Succeeded | JobState::Failed { .. } => {
            format!("{}{back}", install_html(lang, &report))
        }
    }
}

pub(super) async fn install_progress(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    let lang = a.lang;
    let (body, running) = match ask_reply(&app, &a, Request::Ve101Install).await {
        Reply::Install(v) => (
            install_progress_body(lang, &v),
            v.state == JobState::Running,
        ),
        Reply::Refused(r) => (refusal_html(lang, &r).1, false),
        other => (error_p(&format!("{other:?}")), false),
    };
    let f = Frame {
        lang,
        node: &app.node,
        path: INSTALL_PROGRESS,
        csrf: Some(a.csrf.as_str()),
        cluster_menu: true,
        refresh: running.then_some(2),
    };
    let title = lang.t("Installation of VE 101", "Installation von VE 101");
    (StatusCode::OK, Html(page(&f, title, &body))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_api::{VeBackupFile, VeBackupsView};

    fn view(target: Option<&str>) -> Reply {
        Reply::VeBackups(Box::new(VeBackupsView {
            dir: "/vz/backups/ve".into(),
            files: vec![
                VeBackupFile {
                    name: "ve-101-20261206T230000Z.tar.zst".into(),
                    ve: 101,
                    time: "20261206T230000Z".into(),
                    bytes: 3 << 20,
                    copied_to: Some("tandem@backup:/srv/ve-101-20261206T230000Z.tar.zst".into()),
                },
                VeBackupFile {
                    name: "ve-102-20261206T231000Z.tar.zst<b>".into(),
                    ve: 102,
                    time: "20261206T231000Z".into(),
                    bytes: 1000,
                    copied_to: None,
                },
            ],
            target: target.map(str::to_owned),
            client_key: "ssh-ed25519 AAAA".into(),
        }))
    }

    #[test]
    fn backups_show_which_are_only_on_the_pair() {
        let en = backups_html(Lang::En, &view(Some("tandem@backup:/srv")));
        assert!(
            en.contains("<td>tandem@backup:/srv/ve-101-20261206T230000Z.tar.zst</td>"),
            "{en}"
        );
        assert!(en.contains("<b>not copied off</b>"), "{en}");
        assert!(en.contains("3.0 MiB") && en.contains("1000 bytes"), "{en}");
        assert!(
            en.contains("Copy-off target: <b>tandem@backup:/srv</b>"),
            "{en}"
        );
        assert!(
            en.contains("&lt;b&gt;") && !en.contains(".tar.zst<b>"),
            "names are escaped"
        );
        let de = backups_html(Lang::De, &view(None));
        assert!(de.contains("<b>nicht ausgelagert</b>"), "{de}");
        assert!(de.contains("3,0 MiB"), "{de}");
        assert!(de.contains("Kein Auslagerungsziel"), "{de}");
        let none = backups_html(
            Lang::En,
            &Reply::VeBackups(Box::new(VeBackupsView {
                dir: String::new(),
                files: Vec::new(),
                target: None,
                client_key: String::new(),
            })),
        );
        assert!(none.contains("No VE backups yet."), "{none}");
        let passive = backups_html(Lang::En, &Reply::Refused(Refusal::NoDataArea));
        assert!(!passive.is_empty());
    }
}
