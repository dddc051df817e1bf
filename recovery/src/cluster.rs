//! Cluster mode pages (R9): Home, Network, VEs, Notification, Passwords, Updates,
//! Maintenance, Status.
//!
//! Cluster state (roles, heartbeat paths, replication, hardware, events) and the
//! switchover come from clusterd's control API; the configured values, this node's VE
//! list and the archive download come from the privileged side (the store, the data
//! area and crun's state are root's). The Network, Notification and Passwords pages
//! change the configuration on both nodes (see [`settings`]).
//!
//! Maintenance restarts or shuts down this node only (the other node from its own
//! console): the privileged side signals init, which stops the services (clusterd
//! releases them to the other node when that one runs) and then the machine. The page
//! says beforehand, from clusterd's status, what happens to the services. It also backs
//! up the OS template cache of the data area (R9.8) on the node that holds it, and lists
//! each template and what happened to it. The VEs page installs VE 101 from an OS
//! template on the node that holds the data area, with the host name and address of the
//! committed configuration: the installation runs in the background, and its progress
//! page reloads itself (no JavaScript) until it shows how it ended.

mod settings;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tandem_runtime::control::{Client, EventJson, HwJson, StatusJson};

use crate::helper::{
    BackupView, Call, InstallReport, MAX_SECRET, MIN_EXPORT_PASSPHRASE, PowerAction, Refusal,
    Reply, Settings,
};
use crate::i18n::Lang;
use crate::job::{InstallView, JobState};
use crate::recovery_pages::refusal_html;
use crate::web::{App, Auth, Frame, auth, csrf_message, error_p, esc, page, same};

/// The management version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The progress page of the VE 101 installation.
pub const INSTALL_PROGRESS: &str = "/ves/install/progress";

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/home", get(home))
        .route(
            "/network",
            get(settings::network).post(settings::save_network),
        )
        .route("/ves", get(ves))
        .route("/ves/install", post(install_ve101))
        .route(
            "/notification",
            get(settings::notification).post(settings::save_notification),
        )
        .route(
            "/passwords",
            get(settings::passwords).post(settings::save_passwords),
        )
        .route("/passwords/ve101", post(settings::save_ve101_password))
        .route(INSTALL_PROGRESS, get(install_progress))
        .route("/updates", get(updates))
        .route("/maintenance", get(maintenance))
        .route("/maintenance/switchover", post(switchover))
        .route("/maintenance/export", post(export))
        .route("/maintenance/power", post(power))
        .route("/maintenance/backup-templates", post(backup_templates))
        .route("/status", get(status))
}

/// A cluster-mode session, or where to go instead.
fn cluster_auth(app: &App, headers: &HeaderMap) -> Result<Auth, Redirect> {
    let a = auth(app, headers)?;
    if !a.cluster {
        return Err(Redirect::to("/upload"));
    }
    Ok(a)
}

fn render(app: &App, lang: Lang, path: &str, a: &Auth, status: StatusCode, body: &str) -> Response {
    let title = crate::web::MENU
        .iter()
        .find(|(p, _, _)| *p == path)
        .map_or("", |(_, en, de)| lang.t(en, de));
    let f = Frame {
        lang,
        node: &app.node,
        path,
        csrf: Some(&a.csrf),
        cluster_menu: true,
        refresh: None,
    };
    (status, Html(page(&f, title, body))).into_response()
}

/// One control API request, off the event loop.
async fn control(
    app: &Arc<App>,
    request: &'static str,
) -> Result<tandem_runtime::control::Response, String> {
    let path = app.control.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(&path).map_err(|e| crate::helper::chain(&e))?;
        c.call(request, false).map_err(|e| crate::helper::chain(&e))
    })
    .await
    .map_err(|_| "the control request failed unexpectedly".to_owned())?
}

fn no_daemon(lang: Lang, e: &str) -> String {
    error_p(&lang.f(
        format!("The cluster daemon does not answer ({e}). Check on the node's console that clusterd runs."),
        format!("Der Clusterdienst antwortet nicht ({e}). Prüfen Sie an der Konsole des Knotens, ob clusterd läuft."),
    ))
}

async fn get_status(app: &Arc<App>) -> Result<StatusJson, String> {
    let r = control(app, "status").await?;
    r.status
        .ok_or_else(|| r.error.unwrap_or_else(|| "no status in the answer".into()))
}

async fn get_settings(app: &Arc<App>, lang: Lang) -> Result<Settings, String> {
    match app.ask(Call::Settings, Vec::new()).await.0 {
        Reply::Settings(s) => Ok(*s),
        Reply::Refused(r) => Err(refusal_html(lang, &r).1),
        other => Err(error_p(&format!("{other:?}"))),
    }
}

fn yes_no(lang: Lang, b: bool) -> &'static str {
    if b {
        lang.t("yes", "ja")
    } else {
        lang.t("no", "nein")
    }
}

fn row(k: &str, v: &str) -> String {
    format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v))
}

async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let settings = get_settings(&app, lang).await.ok();
    let hostnames = settings
        .as_ref()
        .map(|s| s.nodes.clone())
        .unwrap_or_default();
    let configured = |node: &str| {
        hostnames
            .iter()
            .find(|n| n.node == node)
            .map_or_else(|| "-".to_owned(), |n| n.hostname.clone())
    };
    let status = get_status(&app).await;
    let peer_node = match &status {
        Ok(s) => s.peer.node.clone(),
        Err(_) => {
            if app.node == "node1" {
                "node2".to_owned()
            } else {
                "node1".to_owned()
            }
        }
    };
    let (peer_alive, peer_role, own_role, warn) = match &status {
        Ok(s) => (
            yes_no(lang, s.peer.alive).to_owned(),
            s.peer.role.clone().unwrap_or_else(|| "-".into()),
            s.role.clone(),
            String::new(),
        ),
        Err(e) => ("-".into(), "-".into(), "-".into(), no_daemon(lang, e)),
    };
    // This node's facts, and the other node's over the crossover link (clusterd asks
    // it while it hears it).
    // This node's from here (without the serial number, which only root reads).
    let own = app.node.parse().ok().map(|id| {
        tandem_runtime::confsync::NodeFacts::local(id, settings.as_ref().map_or(0, |s| s.revision))
    });
    let peer = control(&app, "facts")
        .await
        .ok()
        .and_then(|r| r.facts)
        .and_then(|f| f.peer);
    let unknown = lang.t(
        "(not known: no answer over the crossover link)",
        "(unbekannt: keine Antwort über die Crossover-Verbindung)",
    );
    let fact = |f: &Option<tandem_runtime::confsync::NodeFacts>,
                get: fn(&tandem_runtime::confsync::NodeFacts) -> String| {
        f.as_ref().map_or_else(
            || unknown.to_owned(),
            |f| {
                Some(get(f))
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "-".to_owned())
            },
        )
    };
    let line = |k: &str, mine: &str, peer: &str| {
        format!(
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            esc(k),
            esc(mine),
            esc(peer)
        )
    };
    let body = format!(
        "<p>{lang_line} <a href=\"/lang?set=de&amp;back=/home\">Deutsch</a> | <a href=\"/lang?set=en&amp;back=/home\">English</a></p>\
         {warn}<table><tr><th></th><th>{node} ({this})</th><th>{peer_name}</th></tr>{h}{hc}{role}{alive}{k}{v}{hw}{rev}</table>",
        lang_line = lang.t("Language:", "Sprache:"),
        this = lang.t("this node", "dieser Knoten"),
        node = esc(&app.node),
        peer_name = esc(&peer_node),
        h = line(
            lang.t("host name", "Hostname"),
            &fact(&own, |f| f.hostname.clone()),
            &fact(&peer, |f| f.hostname.clone())
        ),
        hc = line(
            lang.t("configured host name", "konfigurierter Hostname"),
            &configured(&app.node),
            &configured(&peer_node)
        ),
        role = line(lang.t("role", "Rolle"), &own_role, &peer_role),
        alive = line(
            lang.t("reachable", "erreichbar"),
            yes_no(lang, true),
            &peer_alive
        ),
        k = line(
            lang.t("kernel version", "Kernel-Version"),
            &fact(&own, |f| f.kernel.clone()),
            &fact(&peer, |f| f.kernel.clone())
        ),
        v = line(
            lang.t("management version", "Verwaltungsversion"),
            VERSION,
            &fact(&peer, |f| f.version.clone())
        ),
        hw = line(
            lang.t("hardware", "Hardware"),
            &fact(&own, |f| f.hardware.clone()),
            &fact(&peer, |f| f.hardware.clone())
        ),
        rev = line(
            lang.t("configuration revision", "Konfigurationsrevision"),
            &fact(&own, |f| f.revision.to_string()),
            &fact(&peer, |f| f.revision.to_string())
        ),
    );
    render(&app, lang, "/home", &a, StatusCode::OK, &body)
}

/// This node's VEs as `tandem ve list` shows them, or why there are none here.
fn ve_rows_html(lang: Lang, reply: &Reply) -> String {
    match reply {
        Reply::Ves(v) => {
            let rows: String = v
                .iter()
                .map(|r| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        r.id,
                        r.nproc,
                        esc(&r.status),
                        esc(&r.ip.join(" ")),
                        esc(&r.hostname)
                    )
                })
                .collect();
            format!(
                "<table><tr><th>VEID</th><th>NPROC</th><th>STATUS</th><th>IP_ADDR</th><th>HOSTNAME</th></tr>{rows}</table>"
            )
        }
        Reply::Refused(r) => refusal_html(lang, r).1,
        other => error_p(&format!("{other:?}")),
    }
}

async fn ve_list_html(app: &Arc<App>, lang: Lang) -> String {
    ve_rows_html(lang, &app.ask(Call::VeList, Vec::new()).await.0)
}

/// The VE 101 part of the VEs page: its state when it exists, else the installation
/// form when it can be installed here, else why not.
async fn ve101_html(
    app: &Arc<App>,
    lang: Lang,
    csrf: &str,
    settings: Option<&Settings>,
    list: &Reply,
) -> String {
    let title = format!("<h2>{}</h2>", lang.t("VE 101", "VE 101"));
    if let Reply::Install(v) = app.ask(Call::InstallJob, Vec::new()).await.0
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
    let templates = match app.ask(Call::VeTemplates, Vec::new()).await.0 {
        Reply::Templates(t) => t,
        Reply::Refused(r) => return format!("{title}{}", refusal_html(lang, &r).1),
        other => return format!("{title}{}", error_p(&format!("{other:?}"))),
    };
    let options: String = templates
        .iter()
        .map(|t| {
            let label = if t == tandem_runtime::ve::manager::MINIMAL_TEMPLATE {
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
async fn ves_page(
    app: &Arc<App>,
    lang: Lang,
    a: &Auth,
    status: StatusCode,
    message: &str,
) -> Response {
    let settings = get_settings(app, lang).await;
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
    let reply = app.ask(Call::VeList, Vec::new()).await.0;
    let list = ve_rows_html(lang, &reply);
    let ve101 = ve101_html(app, lang, &a.csrf, settings.as_ref().ok(), &reply).await;
    let note = lang.t(
        "<p class=\"note\">Changing the VEs' network settings is not offered here yet (<code>tandem ve set</code> on the active node).</p>",
        "<p class=\"note\">Die Netzwerkeinstellungen der VEs zu ändern, wird hier noch nicht angeboten (<code>tandem ve set</code> auf dem aktiven Knoten).</p>",
    );
    let body = format!(
        "{message}<h2>{}</h2>{configured}{running}<h2>{}</h2>{list}{ve101}{note}",
        lang.t("Configured", "Konfiguriert"),
        lang.t("On this node", "Auf diesem Knoten")
    );
    render(app, lang, "/ves", a, status, &body)
}

async fn ves(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    ves_page(&app, lang, &a, StatusCode::OK, "").await
}

/// The VE 101 installation form.
#[derive(Debug, Deserialize)]
pub struct InstallForm {
    #[serde(default)]
    csrf: String,
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
#[derive(Debug, Clone, Copy)]
enum FormPage {
    Maintenance,
    Ves,
}

/// The cluster session of a form's POST and its language, once the form's
/// CSRF token matched; otherwise the answer to send (the login page, or the
/// form's page with the message, nothing done).
async fn form_session(
    app: &Arc<App>,
    headers: &HeaderMap,
    csrf: &str,
    page: FormPage,
) -> Result<(Auth, Lang), Response> {
    let a = cluster_auth(app, headers).map_err(IntoResponse::into_response)?;
    let lang = Lang::of(headers);
    if same(csrf, &a.csrf) {
        return Ok((a, lang));
    }
    let msg = error_p(csrf_message(lang));
    Err(match page {
        FormPage::Maintenance => maintenance_page(app, lang, &a, StatusCode::FORBIDDEN, &msg).await,
        FormPage::Ves => ves_page(app, lang, &a, StatusCode::FORBIDDEN, &msg).await,
    })
}

async fn install_ve101(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<InstallForm>,
) -> Response {
    let (a, lang) = match form_session(&app, &headers, &form.csrf, FormPage::Ves).await {
        Ok(x) => x,
        Err(r) => return r,
    };
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
    let call = Call::InstallVe101 {
        template: form.template,
    };
    match app.ask(call, Vec::new()).await.0 {
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

async fn install_progress(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let (body, running) = match app.ask(Call::InstallJob, Vec::new()).await.0 {
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
        csrf: Some(&a.csrf),
        cluster_menu: true,
        refresh: running.then_some(2),
    };
    let title = lang.t("Installation of VE 101", "Installation von VE 101");
    (StatusCode::OK, Html(page(&f, title, &body))).into_response()
}

async fn updates(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let body = format!(
        "<table>{}</table><p class=\"note\">{}</p>",
        row(lang.t("installed version", "installierte Version"), VERSION),
        lang.t(
            "Listing and applying updates is not available yet.",
            "Updates anzuzeigen und einzuspielen ist noch nicht möglich."
        )
    );
    render(&app, lang, "/updates", &a, StatusCode::OK, &body)
}

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
fn size_text(lang: Lang, bytes: u64) -> String {
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
    use tandem_runtime::ve::backup::CopyOutcome;
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
async fn maintenance_page(
    app: &Arc<App>,
    lang: Lang,
    a: &Auth,
    status: StatusCode,
    message: &str,
) -> Response {
    let cluster = get_status(app).await;
    let power = power_html(lang, &a.csrf, &app.node, &cluster);
    let body = maintenance_body(lang, &a.csrf, message, &power);
    render(app, lang, "/maintenance", a, status, &body)
}

/// The Maintenance page for an answer of the privileged side that its handler does
/// not expect: a refusal in the operator's words, or the answer as it came.
async fn maintenance_unexpected(app: &Arc<App>, lang: Lang, a: &Auth, reply: Reply) -> Response {
    let (status, html) = match reply {
        Reply::Refused(r) => refusal_html(lang, &r),
        other => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_p(&format!("{other:?}")),
        ),
    };
    maintenance_page(app, lang, a, status, &html).await
}

async fn maintenance(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    maintenance_page(&app, lang, &a, StatusCode::OK, "").await
}

/// The switchover form.
#[derive(Debug, Deserialize)]
pub struct SwitchoverForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

async fn switchover(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<SwitchoverForm>,
) -> Response {
    let (a, lang) = match form_session(&app, &headers, &form.csrf, FormPage::Maintenance).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if form.confirm != "yes" {
        let msg = error_p(lang.t(
            "Tick the box to confirm the switchover. Nothing was changed.",
            "Kreuzen Sie das Feld an, um die Übergabe zu bestätigen. Es wurde nichts geändert.",
        ));
        return maintenance_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
    }
    match control(&app, "switchover").await {
        Ok(r) if r.ok => {
            let msg = format!(
                "<p class=\"ok\" role=\"status\">{}</p>",
                lang.t(
                    "Switchover started. The Status page shows how it goes.",
                    "Die Übergabe wurde gestartet. Die Statusseite zeigt den Verlauf."
                )
            );
            maintenance_page(&app, lang, &a, StatusCode::OK, &msg).await
        }
        Ok(r) => {
            let reason = r.error.unwrap_or_default();
            let msg = error_p(&lang.f(
                format!("The cluster daemon refused the switchover: {reason}"),
                format!("Der Clusterdienst hat die Übergabe abgelehnt: {reason}"),
            ));
            maintenance_page(&app, lang, &a, StatusCode::CONFLICT, &msg).await
        }
        Err(e) => {
            maintenance_page(
                &app,
                lang,
                &a,
                StatusCode::SERVICE_UNAVAILABLE,
                &no_daemon(lang, &e),
            )
            .await
        }
    }
}

/// The template cache backup form.
#[derive(Debug, Deserialize)]
pub struct BackupForm {
    #[serde(default)]
    csrf: String,
}

async fn backup_templates(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<BackupForm>,
) -> Response {
    let (a, lang) = match form_session(&app, &headers, &form.csrf, FormPage::Maintenance).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match app.ask(Call::BackupTemplates, Vec::new()).await.0 {
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
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    confirm: String,
}

async fn power(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<PowerForm>,
) -> Response {
    let (a, lang) = match form_session(&app, &headers, &form.csrf, FormPage::Maintenance).await {
        Ok(x) => x,
        Err(r) => return r,
    };
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
    match app.ask(Call::Power { action }, Vec::new()).await.0 {
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
    csrf: String,
    #[serde(default)]
    passphrase: String,
    #[serde(default)]
    passphrase2: String,
}

async fn export(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<ExportForm>,
) -> Response {
    let (a, lang) = match form_session(&app, &headers, &form.csrf, FormPage::Maintenance).await {
        Ok(x) => x,
        Err(r) => return r,
    };
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
    // R3.1: only while both nodes run normally, so the archive holds what both use.
    match get_status(&app).await {
        Ok(s) if s.peer.alive && s.peer.config_matches != Some(false) => {}
        Ok(_) => {
            let msg = error_p(lang.t(
                "The configuration archive can be downloaded only while both nodes run normally: the other node is not reachable or has another configuration. See the Status page.",
                "Das Konfigurationsarchiv lässt sich nur herunterladen, wenn beide Knoten normal laufen: Der andere Knoten ist nicht erreichbar oder hat eine andere Konfiguration. Siehe Statusseite.",
            ));
            return maintenance_page(&app, lang, &a, StatusCode::CONFLICT, &msg).await;
        }
        Err(e) => {
            return maintenance_page(
                &app,
                lang,
                &a,
                StatusCode::SERVICE_UNAVAILABLE,
                &no_daemon(lang, &e),
            )
            .await;
        }
    }
    let call = Call::Export {
        passphrase: form.passphrase,
    };
    match app.ask(call, Vec::new()).await {
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

async fn events(app: &Arc<App>, last: usize) -> Result<Vec<EventJson>, String> {
    let path = app.control.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(&path).map_err(|e| crate::helper::chain(&e))?;
        let mut r = c
            .call("events", false)
            .map_err(|e| crate::helper::chain(&e))?;
        let mut out = Vec::new();
        // The backlog, then one answer without an event; bounded in case of a bad peer.
        for _ in 0..10_000 {
            match r.event {
                Some(e) => out.push(e),
                None => break,
            }
            r = c.read_response().map_err(|e| crate::helper::chain(&e))?;
        }
        let skip = out.len().saturating_sub(last);
        Ok(out.split_off(skip))
    })
    .await
    .map_err(|_| "the control request failed unexpectedly".to_owned())?
}

fn status_html(lang: Lang, s: &StatusJson) -> String {
    let paths: String = s
        .paths
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.path),
                yes_no(lang, p.enabled),
                esc(&p.state),
                p.last_heard_ms_ago
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"))
            )
        })
        .collect();
    let warnings: String = s
        .warnings
        .iter()
        .map(|w| format!("<p class=\"warn\">{}</p>", esc(w)))
        .collect();
    let ping: Vec<String> = s
        .ping_nodes
        .iter()
        .map(|p| format!("{} ({})", p.address, if p.reachable { "ok" } else { "-" }))
        .collect();
    format!(
        "<table>{role}{res}{chain}{wait}{good}</table>{warnings}\
         <h2>{peer_h}</h2><table>{pn}{alive}{prole}{pres}{pcfg}</table>\
         <h2>{hb}</h2><table><tr><th>{path}</th><th>{en}</th><th>{state}</th><th>{heard}</th></tr>{paths}</table>\
         <table>{ping}</table>\
         <h2>{repl_h}</h2><p>{repl}</p>",
        role = row(lang.t("role of this node", "Rolle dieses Knotens"), &s.role),
        res = row(lang.t("resources", "Ressourcen"), &s.resources),
        chain = row(
            lang.t("resource chain", "Ressourcenkette"),
            &s.resource_chain.join(" → ")
        ),
        wait = row(
            lang.t("waiting for", "wartet auf"),
            s.waiting.as_deref().unwrap_or("-")
        ),
        good = row(
            lang.t("data known good", "Daten bekannt gut"),
            yes_no(lang, s.data_good)
        ),
        peer_h = lang.t("Other node", "Anderer Knoten"),
        pn = row(lang.t("node", "Knoten"), &s.peer.node),
        alive = row(
            lang.t("reachable", "erreichbar"),
            yes_no(lang, s.peer.alive)
        ),
        prole = row(
            lang.t("role", "Rolle"),
            s.peer.role.as_deref().unwrap_or("-")
        ),
        pres = row(
            lang.t("resources", "Ressourcen"),
            s.peer.resources.as_deref().unwrap_or("-")
        ),
        pcfg = row(
            lang.t("same configuration", "gleiche Konfiguration"),
            s.peer.config_matches.map_or("-", |b| yes_no(lang, b))
        ),
        hb = lang.t("Heartbeat paths", "Heartbeat-Pfade"),
        path = lang.t("path", "Pfad"),
        en = lang.t("enabled", "eingeschaltet"),
        state = lang.t("state", "Zustand"),
        heard = lang.t("last heard", "zuletzt gehört"),
        ping = row(lang.t("ping nodes", "Ping-Knoten"), &ping.join(", ")),
        repl_h = lang.t("Replication", "Replikation"),
        repl = esc(s.replication.as_deref().unwrap_or(lang.t(
            "no replicated data area on this daemon",
            "kein replizierter Datenbereich bei diesem Dienst"
        ))),
    )
}

fn hw_html(lang: Lang, h: &HwJson) -> String {
    let sensors: String = h
        .sensors
        .iter()
        .map(|s| {
            let value = match (s.value, &s.unit) {
                (Some(v), Some(u)) => format!("{v:.1} {u}"),
                (Some(v), None) => format!("{v:.1}"),
                _ => s.state.clone(),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                esc(&s.sensor_type),
                esc(&value),
                esc(&s.health)
            )
        })
        .collect();
    let items = |v: &[tandem_runtime::control::RaidItemJson]| -> String {
        v.iter()
            .map(|i| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    i.number,
                    esc(&i.name),
                    esc(&i.state),
                    esc(&i.health)
                )
            })
            .collect()
    };
    format!(
        "<h2>{hw}</h2><p>{summary}</p><table>{bmc}</table>\
         <table><tr><th>{sensor}</th><th>{kind}</th><th>{reading}</th><th>{health}</th></tr>{sensors}</table>\
         <h2>RAID</h2><table>{raid}{ctl}</table>\
         <table><tr><th>#</th><th>{name}</th><th>{state}</th><th>{health}</th></tr>{vols}{disks}</table>",
        hw = lang.t("Hardware", "Hardware"),
        summary = esc(&h.summary.text),
        bmc = row(
            "BMC",
            &format!("{} {}", h.bmc, h.bmc_detail.as_deref().unwrap_or(""))
        ),
        sensor = lang.t("sensor", "Sensor"),
        kind = lang.t("type", "Typ"),
        reading = lang.t("reading", "Messwert"),
        health = lang.t("health", "Zustand"),
        raid = row(
            lang.t("controller", "Controller"),
            &format!(
                "{} {}",
                h.raid.state,
                h.raid.detail.as_deref().unwrap_or("")
            )
        ),
        ctl = row(
            lang.t("model", "Modell"),
            h.raid.controller.as_deref().unwrap_or("-")
        ),
        name = lang.t("name", "Name"),
        state = lang.t("state", "Zustand"),
        vols = items(&h.raid.volumes),
        disks = items(&h.raid.disks),
    )
}

async fn status(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let mut body = match get_status(&app).await {
        Ok(s) => status_html(lang, &s),
        Err(e) => no_daemon(lang, &e),
    };
    match control(&app, "hw").await {
        Ok(r) => {
            if let Some(h) = r.hw {
                body.push_str(&hw_html(lang, &h));
            }
        }
        Err(e) => body.push_str(&no_daemon(lang, &e)),
    }
    body.push_str(&format!(
        "<h2>{}</h2>{}",
        lang.t("Virtualisation", "Virtualisierung"),
        ve_list_html(&app, lang).await
    ));
    if let Ok(ev) = events(&app, 15).await {
        let rows: String = ev
            .iter()
            .rev()
            .map(|e| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&tandem_config::archive::rfc3339(e.time_ms / 1000)),
                    esc(&e.node),
                    esc(&e.kind),
                    esc(&e.text)
                )
            })
            .collect();
        body.push_str(&format!(
            "<h2>{}</h2><table>{rows}</table>",
            lang.t("Recent events", "Letzte Ereignisse")
        ));
    }
    body.push_str(&format!(
        "<p><a href=\"/status\">{}</a></p>",
        lang.t("Reload", "Neu laden")
    ));
    render(&app, lang, "/status", &a, StatusCode::OK, &body)
}
