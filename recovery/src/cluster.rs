//! Cluster mode pages (R9): Home, Network, VEs, Notification, Passwords, Updates,
//! Maintenance, Status.
//!
//! Cluster state (roles, heartbeat paths, replication, hardware, events) and the
//! switchover come from clusterd's control API; the configured values, this node's VE
//! list and the archive download come from the privileged side (the store, the data
//! area and crun's state are root's). Pages that would change
//! the configuration (network, notification, passwords) show the values read-only and
//! say so: a change must reach both nodes and restart what depends on it, and that
//! path does not exist yet. Reboot and shutdown are not offered: there is no privileged
//! path for them yet, and one that lets the web process power the node off needs its
//! own review.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tandem_runtime::control::{Client, EventJson, HwJson, StatusJson};

use crate::helper::{Call, MAX_SECRET, MIN_EXPORT_PASSPHRASE, Reply, Settings};
use crate::i18n::Lang;
use crate::recovery_pages::refusal_html;
use crate::web::{App, Auth, Frame, auth, csrf_message, error_p, esc, page, same};

/// The management version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/home", get(home))
        .route("/network", get(network))
        .route("/ves", get(ves))
        .route("/notification", get(notification))
        .route("/passwords", get(passwords))
        .route("/updates", get(updates))
        .route("/maintenance", get(maintenance))
        .route("/maintenance/switchover", post(switchover))
        .route("/maintenance/export", post(export))
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

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "-".to_owned())
}

async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let hostnames = get_settings(&app, lang)
        .await
        .map(|s| s.nodes)
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
    let not_reported = lang.t("(shown on its own console)", "(zeigt seine eigene Konsole)");
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
         {warn}<table><tr><th></th><th>{node} ({this})</th><th>{peer}</th></tr>{h}{hc}{role}{alive}{k}{v}</table>",
        lang_line = lang.t("Language:", "Sprache:"),
        this = lang.t("this node", "dieser Knoten"),
        node = esc(&app.node),
        peer = esc(&peer_node),
        h = line(
            lang.t("host name", "Hostname"),
            &read_trimmed("/proc/sys/kernel/hostname"),
            not_reported
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
            &read_trimmed("/proc/sys/kernel/osrelease"),
            not_reported
        ),
        v = line(
            lang.t("management version", "Verwaltungsversion"),
            VERSION,
            not_reported
        ),
    );
    render(&app, lang, "/home", &a, StatusCode::OK, &body)
}

fn read_only_note(lang: Lang) -> &'static str {
    lang.t(
        "<p class=\"note\">These values are shown read-only. Changing them must reach both nodes and restart what depends on them; the console cannot do that yet. Change them in the configuration (<code>tandem config</code>) and import it on both nodes.</p>",
        "<p class=\"note\">Diese Werte werden nur angezeigt. Eine Änderung muss beide Knoten erreichen und neu starten, was davon abhängt; das kann die Konsole noch nicht. Ändern Sie sie in der Konfiguration (<code>tandem config</code>) und importieren Sie sie auf beiden Knoten.</p>",
    )
}

async fn network(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let body = match get_settings(&app, lang).await {
        Ok(s) => {
            let nodes: String = s
                .nodes
                .iter()
                .map(|n| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&n.node),
                        esc(&n.hostname),
                        esc(&n.address),
                        esc(&n.internal_address)
                    )
                })
                .collect();
            let mut warn = String::new();
            if !s.serial_heartbeat || !s.external_heartbeat {
                warn = format!(
                    "<p class=\"warn\">{}</p>",
                    lang.t(
                        "A heartbeat path is disabled: the risk of a split brain (both nodes active) rises.",
                        "Ein Heartbeat-Pfad ist abgeschaltet: Das Risiko eines Split-Brain (beide Knoten aktiv) steigt."
                    )
                );
            }
            format!(
                "<table><tr><th>{n}</th><th>{h}</th><th>{ip}</th><th>{xo}</th></tr>{nodes}</table>\
                 <table>{mask}{gw}{ping}{search}{dns}{ser}{ext}</table>{warn}{note}",
                n = lang.t("node", "Knoten"),
                h = lang.t("host name", "Hostname"),
                ip = lang.t("address", "Adresse"),
                xo = lang.t("crossover address", "Crossover-Adresse"),
                mask = row(lang.t("netmask", "Netzmaske"), &s.netmask),
                gw = row(lang.t("gateway", "Gateway"), &s.gateway),
                ping = row(lang.t("ping nodes", "Ping-Knoten"), &s.ping_nodes.join(" ")),
                search = row(
                    lang.t("DNS search path", "DNS-Suchpfad"),
                    &s.dns_search.join(" ")
                ),
                dns = row(
                    lang.t("DNS servers", "DNS-Server"),
                    &s.dns_servers.join(", ")
                ),
                ser = row(
                    lang.t("serial heartbeat", "serieller Heartbeat"),
                    yes_no(lang, s.serial_heartbeat)
                ),
                ext = row(
                    lang.t("external heartbeat", "externer Heartbeat"),
                    yes_no(lang, s.external_heartbeat)
                ),
                note = read_only_note(lang),
            )
        }
        Err(e) => e,
    };
    render(&app, lang, "/network", &a, StatusCode::OK, &body)
}

/// This node's VEs as `tandem ve list` shows them, or why there are none here.
async fn ve_list_html(app: &Arc<App>, lang: Lang) -> String {
    match app.ask(Call::VeList, Vec::new()).await.0 {
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
        Reply::Refused(r) => refusal_html(lang, &r).1,
        other => error_p(&format!("{other:?}")),
    }
}

async fn ves(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let configured = match get_settings(&app, lang).await {
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
        Err(e) => e,
    };
    let running = match get_status(&app).await {
        Ok(s) => format!(
            "<p>{}: <b>{}</b> ({})</p>",
            lang.t("Resources of this node", "Ressourcen dieses Knotens"),
            esc(&s.resources),
            esc(&s.resource_chain.join(" → "))
        ),
        Err(e) => no_daemon(lang, &e),
    };
    let list = ve_list_html(&app, lang).await;
    let note = lang.t(
        "<p class=\"note\">Changing the VEs' network settings and installing VE 101 from a template is not offered here yet (<code>tandem ve</code> on the active node).</p>",
        "<p class=\"note\">Die Netzwerkeinstellungen der VEs zu ändern und VE 101 aus einer Vorlage zu installieren, wird hier noch nicht angeboten (<code>tandem ve</code> auf dem aktiven Knoten).</p>",
    );
    let body = format!(
        "<h2>{}</h2>{configured}{running}<h2>{}</h2>{list}{note}",
        lang.t("Configured", "Konfiguriert"),
        lang.t("On this node", "Auf diesem Knoten")
    );
    render(&app, lang, "/ves", &a, StatusCode::OK, &body)
}

async fn notification(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let body = match get_settings(&app, lang).await {
        Ok(s) => format!(
            "<table>{}{}{}{}</table>{}",
            row(
                lang.t("addresses", "Adressen"),
                &s.notify_addresses.join(", ")
            ),
            row(
                lang.t("relay host", "Relay-Host"),
                s.relay_host
                    .as_deref()
                    .unwrap_or(lang.t("none (direct delivery)", "keiner (direkte Zustellung)"))
            ),
            row(
                lang.t("copy to the vendor", "Kopie an den Hersteller"),
                yes_no(lang, s.copy_vendor)
            ),
            row(
                lang.t("vendor address", "Herstelleradresse"),
                s.vendor_address.as_deref().unwrap_or("-")
            ),
            read_only_note(lang),
        ),
        Err(e) => e,
    };
    render(&app, lang, "/notification", &a, StatusCode::OK, &body)
}

async fn passwords(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let body = lang.t(
        "<p class=\"note\">Changing passwords is not available in the console yet: the password hashes are part of the cluster configuration, and a change must reach both nodes together or they would disagree about their configuration. Set new passwords in the configuration (<code>tandem config</code>) and import it on both nodes.</p>",
        "<p class=\"note\">Passwörter lassen sich in der Konsole noch nicht ändern: Die Passwort-Hashes gehören zur Clusterkonfiguration, und eine Änderung muss beide Knoten zugleich erreichen, sonst unterscheiden sich ihre Konfigurationen. Setzen Sie neue Passwörter in der Konfiguration (<code>tandem config</code>) und importieren Sie sie auf beiden Knoten.</p>",
    );
    render(&app, lang, "/passwords", &a, StatusCode::OK, body)
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

fn maintenance_body(lang: Lang, csrf: &str, message: &str) -> String {
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
         <h2>{rb}</h2><p class=\"note\">{rb_text}</p>",
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
        rb = lang.t("Reboot and shut down", "Neustart und Herunterfahren"),
        rb_text = lang.t(
            "Rebooting or shutting down a node is not offered here yet: the console has no privileged path for it. Use the node's console.",
            "Einen Knoten neu zu starten oder herunterzufahren, wird hier noch nicht angeboten: Die Konsole hat dafür keinen privilegierten Weg. Verwenden Sie die Konsole des Knotens."
        ),
    )
}

async fn maintenance(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let body = maintenance_body(lang, &a.csrf, "");
    render(&app, lang, "/maintenance", &a, StatusCode::OK, &body)
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
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let fail = |status: StatusCode, msg: &str| {
        let body = maintenance_body(lang, &a.csrf, &error_p(msg));
        render(&app, lang, "/maintenance", &a, status, &body)
    };
    if !same(&form.csrf, &a.csrf) {
        return fail(StatusCode::FORBIDDEN, csrf_message(lang));
    }
    if form.confirm != "yes" {
        return fail(
            StatusCode::BAD_REQUEST,
            lang.t(
                "Tick the box to confirm the switchover. Nothing was changed.",
                "Kreuzen Sie das Feld an, um die Übergabe zu bestätigen. Es wurde nichts geändert.",
            ),
        );
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
            let body = maintenance_body(lang, &a.csrf, &msg);
            render(&app, lang, "/maintenance", &a, StatusCode::OK, &body)
        }
        Ok(r) => {
            let reason = r.error.unwrap_or_default();
            fail(
                StatusCode::CONFLICT,
                &lang.f(
                    format!("The cluster daemon refused the switchover: {reason}"),
                    format!("Der Clusterdienst hat die Übergabe abgelehnt: {reason}"),
                ),
            )
        }
        Err(e) => {
            let body = maintenance_body(lang, &a.csrf, &no_daemon(lang, &e));
            render(
                &app,
                lang,
                "/maintenance",
                &a,
                StatusCode::SERVICE_UNAVAILABLE,
                &body,
            )
        }
    }
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
    let a = match cluster_auth(&app, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = Lang::of(&headers);
    let fail = |status: StatusCode, html: &str| {
        let body = maintenance_body(lang, &a.csrf, html);
        render(&app, lang, "/maintenance", &a, status, &body)
    };
    if !same(&form.csrf, &a.csrf) {
        return fail(StatusCode::FORBIDDEN, &error_p(csrf_message(lang)));
    }
    if form.passphrase != form.passphrase2 {
        return fail(
            StatusCode::BAD_REQUEST,
            &error_p(lang.t(
                "The two passphrases differ. Type the same passphrase twice.",
                "Die beiden Passphrasen unterscheiden sich. Geben Sie zweimal dieselbe Passphrase ein.",
            )),
        );
    }
    let n = form.passphrase.chars().count();
    if n < MIN_EXPORT_PASSPHRASE || form.passphrase.len() > MAX_SECRET {
        return fail(
            StatusCode::BAD_REQUEST,
            &error_p(&lang.f(
                format!("The passphrase must have {MIN_EXPORT_PASSPHRASE} to {MAX_SECRET} characters (it has {n})."),
                format!("Die Passphrase muss {MIN_EXPORT_PASSPHRASE} bis {MAX_SECRET} Zeichen haben (sie hat {n})."),
            )),
        );
    }
    // R3.1: only while both nodes run normally, so the archive holds what both use.
    match get_status(&app).await {
        Ok(s) if s.peer.alive && s.peer.config_matches != Some(false) => {}
        Ok(_) => {
            return fail(
                StatusCode::CONFLICT,
                &error_p(lang.t(
                    "The configuration archive can be downloaded only while both nodes run normally: the other node is not reachable or has another configuration. See the Status page.",
                    "Das Konfigurationsarchiv lässt sich nur herunterladen, wenn beide Knoten normal laufen: Der andere Knoten ist nicht erreichbar oder hat eine andere Konfiguration. Siehe Statusseite.",
                )),
            );
        }
        Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, &no_daemon(lang, &e)),
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
            fail(status, &html)
        }
        (other, _) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            &error_p(&format!("{other:?}")),
        ),
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
