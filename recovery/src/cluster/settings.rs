//! The Network, Notification and Passwords pages (R9.3, R9.5, R9.6): the committed
//! values in a form; a change goes to clusterd, which makes it on both nodes. A form
//! that is refused comes back with what was typed (never a password) and every problem
//! next to its field's name. Changing the management password needs the current one,
//! and ends every session on both nodes (this one too: the page says to log in again).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tandem_api::{
    ChangeRefusal, ChangeReport, FieldProblem, MIN_PASSWORD, NetworkForm, NotificationForm,
    Refusal, Reply, Request, Settings, SettingsChange,
};

use super::{ask_reply, get_settings, render};
use crate::app::App;
use crate::i18n::Lang;
use crate::page::{Frame, error_p, esc, page};
use crate::refusal::refusal_html;
use crate::visit::{Cluster, Posted, Visit};

/// Which page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Page {
    Network,
    Notification,
    Passwords,
}

impl Page {
    fn path(self) -> &'static str {
        match self {
            Page::Network => "/network",
            Page::Notification => "/notification",
            Page::Passwords => "/passwords",
        }
    }
}

/// What a form shows: the committed values, or what was typed.
#[derive(Clone)]
enum Values {
    Network(Box<NetworkForm>),
    Notification(NotificationForm),
    Passwords,
}

fn network_values(s: &Settings) -> NetworkForm {
    let node = |i: usize| s.nodes.get(i).cloned().unwrap_or_default();
    let (n1, n2) = (node(0), node(1));
    NetworkForm {
        node1_hostname: n1.hostname,
        node1_address: n1.address,
        node2_hostname: n2.hostname,
        node2_address: n2.address,
        netmask: s.netmask.clone(),
        gateway: s.gateway.clone(),
        ping_nodes: s.ping_nodes.join(" "),
        dns_search: s.dns_search.join(" "),
        dns_server1: s.dns_servers.first().cloned().unwrap_or_default(),
        dns_server2: s.dns_servers.get(1).cloned().unwrap_or_default(),
        time_servers: s.time_servers.join(" "),
        serial_heartbeat: s.serial_heartbeat,
        external_heartbeat: s.external_heartbeat,
    }
}

fn notification_values(s: &Settings) -> NotificationForm {
    NotificationForm {
        addresses: s.notify_addresses.join("\n"),
        relay_host: s.relay_host.clone().unwrap_or_default(),
        copy_vendor: s.copy_vendor,
    }
}

fn label(lang: Lang, field: &str) -> String {
    let (en, de) = match field {
        "node1_hostname" => ("node1 host name", "Hostname node1"),
        "node1_address" => ("node1 address", "Adresse node1"),
        "node2_hostname" => ("node2 host name", "Hostname node2"),
        "node2_address" => ("node2 address", "Adresse node2"),
        "netmask" => ("netmask", "Netzmaske"),
        "gateway" => ("gateway", "Gateway"),
        "ping_nodes" => ("ping nodes", "Ping-Knoten"),
        "dns_search" => ("DNS search path", "DNS-Suchpfad"),
        "dns_server1" => ("DNS server 1", "DNS-Server 1"),
        "dns_server2" => ("DNS server 2", "DNS-Server 2"),
        "time_servers" => ("time servers", "Zeitserver"),
        "serial_heartbeat" => ("heartbeat paths", "Heartbeat-Pfade"),
        "addresses" => ("addresses", "Adressen"),
        "relay_host" => ("relay host", "Relay-Host"),
        "copy_vendor" => ("copy to the vendor", "Kopie an den Hersteller"),
        "current" => ("current password", "aktuelles Passwort"),
        "new" => ("new password", "neues Passwort"),
        "confirm" => ("new password again", "neues Passwort wiederholen"),
        "ve_new" => (
            "new root password of VE 101",
            "neues root-Passwort der VE 101",
        ),
        "ve_confirm" => (
            "new root password of VE 101 again",
            "neues root-Passwort der VE 101 wiederholen",
        ),
        other => return other.to_owned(),
    };
    lang.t(en, de).to_owned()
}

fn problems_html(lang: Lang, ps: &[FieldProblem]) -> String {
    let items: String = ps
        .iter()
        .map(|p| {
            format!(
                "<li><b>{}</b>: {}</li>",
                esc(&label(lang, &p.field)),
                esc(&p.message)
            )
        })
        .collect();
    format!(
        "<div class=\"error\" role=\"alert\"><p>{}</p><ul>{items}</ul></div>",
        lang.t(
            "The change was not made. Correct these fields:",
            "Die Änderung wurde nicht vorgenommen. Korrigieren Sie diese Felder:"
        )
    )
}

fn text_input(name: &str, label: &str, value: &str) -> String {
    format!(
        "<p><label>{} <input type=\"text\" name=\"{name}\" value=\"{}\"></label></p>",
        esc(label),
        esc(value)
    )
}

fn checkbox(name: &str, label: &str, on: bool) -> String {
    format!(
        "<p><label><input type=\"checkbox\" name=\"{name}\" value=\"yes\"{}> {}</label></p>",
        if on { " checked" } else { "" },
        esc(label)
    )
}

/// The part every form ends with: the token, the revision, "the other node is
/// down", the button.
fn form_tail(lang: Lang, csrf: &str, revision: u64) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"revision\" value=\"{revision}\">\
         <p><label><input type=\"checkbox\" name=\"this_node_only\" value=\"yes\"> {}</label></p>\
         <p><button type=\"submit\">{}</button></p></form>",
        esc(csrf),
        lang.t(
            "The other node is down: change this node only (the other node takes the change when it is back)",
            "Der andere Knoten ist ausgefallen: nur diesen Knoten ändern (der andere übernimmt die Änderung, sobald er wieder läuft)"
        ),
        lang.t("Save on both nodes", "Auf beiden Knoten speichern"),
    )
}

fn form_html(lang: Lang, values: &Values, csrf: &str, revision: u64) -> String {
    let tail = form_tail(lang, csrf, revision);
    match values {
        Values::Network(v) => format!(
            "<form id=\"network\" method=\"post\" action=\"/network\">\
             <h2>node1</h2>{h1}{a1}<h2>node2</h2>{h2}{a2}<h2>{net}</h2>{mask}{gw}{ping}{search}{d1}{d2}{time}\
             <h2>{hb}</h2>{ser}{ext}<p class=\"warn\">{hb_warn}</p><p class=\"note\">{restart}</p>{tail}",
            h1 = text_input("node1_hostname", lang.t("host name", "Hostname"), &v.node1_hostname),
            a1 = text_input("node1_address", lang.t("address", "Adresse"), &v.node1_address),
            h2 = text_input("node2_hostname", lang.t("host name", "Hostname"), &v.node2_hostname),
            a2 = text_input("node2_address", lang.t("address", "Adresse"), &v.node2_address),
            net = lang.t("Network", "Netzwerk"),
            mask = text_input("netmask", lang.t("netmask", "Netzmaske"), &v.netmask),
            gw = text_input("gateway", lang.t("gateway", "Gateway"), &v.gateway),
            ping = text_input(
                "ping_nodes",
                lang.t("ping nodes (separated by spaces)", "Ping-Knoten (durch Leerzeichen getrennt)"),
                &v.ping_nodes
            ),
            search = text_input(
                "dns_search",
                lang.t("DNS search path (separated by spaces)", "DNS-Suchpfad (durch Leerzeichen getrennt)"),
                &v.dns_search
            ),
            d1 = text_input("dns_server1", lang.t("DNS server 1", "DNS-Server 1"), &v.dns_server1),
            d2 = text_input("dns_server2", lang.t("DNS server 2 (optional)", "DNS-Server 2 (optional)"), &v.dns_server2),
            time = text_input(
                "time_servers",
                lang.t(
                    "time servers (up to 4, separated by spaces; name or address, optional :port; empty: the clock is not synchronised)",
                    "Zeitserver (bis zu 4, durch Leerzeichen getrennt; Name oder Adresse, optional :Port; leer: die Uhr wird nicht synchronisiert)"
                ),
                &v.time_servers
            ),
            hb = lang.t("Heartbeat", "Heartbeat"),
            ser = checkbox(
                "serial_heartbeat",
                lang.t("heartbeat over the serial cable", "Heartbeat über das serielle Kabel"),
                v.serial_heartbeat
            ),
            ext = checkbox(
                "external_heartbeat",
                lang.t("heartbeat over the external network", "Heartbeat über das externe Netz"),
                v.external_heartbeat
            ),
            hb_warn = lang.t(
                "Each heartbeat path switched off raises the risk of a split brain (both nodes active) when the remaining paths fail.",
                "Jeder abgeschaltete Heartbeat-Pfad erhöht das Risiko eines Split-Brain (beide Knoten aktiv), wenn die übrigen Pfade ausfallen."
            ),
            restart = lang.t(
                "Network settings other than the time servers, and heartbeat settings, take effect when each node starts again: afterwards restart the passive node, switch over, then restart the other one (Maintenance page).",
                "Netzwerk-Einstellungen außer den Zeitservern und Heartbeat-Einstellungen wirken, sobald jeder Knoten neu startet: Starten Sie danach den passiven Knoten neu, übergeben Sie, dann den anderen (Seite Wartung)."
            ),
        ),
        Values::Notification(v) => format!(
            "<form id=\"notification\" method=\"post\" action=\"/notification\">\
             <p><label>{addr}<br><textarea name=\"addresses\" rows=\"4\" cols=\"40\">{addresses}</textarea></label></p>\
             {relay}{vendor}<p class=\"note\">{effect}</p>{tail}",
            addr = lang.t("E-mail addresses (one per line)", "E-Mail-Adressen (eine pro Zeile)"),
            addresses = esc(&v.addresses),
            relay = text_input(
                "relay_host",
                lang.t("relay host (HOST or HOST:PORT; empty: direct delivery)", "Relay-Host (HOST oder HOST:PORT; leer: direkte Zustellung)"),
                &v.relay_host
            ),
            vendor = checkbox(
                "copy_vendor",
                lang.t("send a copy to the vendor's support", "eine Kopie an den Support des Herstellers senden"),
                v.copy_vendor
            ),
            effect = lang.t(
                "A change takes effect at once on both nodes; messages still waiting in the outbox go to the new recipients.",
                "Eine Änderung wirkt sofort auf beiden Knoten; Nachrichten, die noch im Postausgang warten, gehen an die neuen Empfänger."
            ),
        ),
        Values::Passwords => format!(
            "<h2>{title}</h2><p>{text}</p>\
             <form id=\"passwords\" method=\"post\" action=\"/passwords\">\
             <p><label>{current} <input type=\"password\" name=\"current\" autocomplete=\"current-password\"></label></p>\
             <p><label>{new} <input type=\"password\" name=\"new\" autocomplete=\"new-password\"></label></p>\
             <p><label>{again} <input type=\"password\" name=\"confirm\" autocomplete=\"new-password\"></label></p>{tail}\
             <h2>{ve_title}</h2><p>{ve_text}</p>\
             <form id=\"ve101-password\" method=\"post\" action=\"/passwords/ve101\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p><label>{new} <input type=\"password\" name=\"new\" autocomplete=\"new-password\"></label></p>\
             <p><label>{again} <input type=\"password\" name=\"confirm\" autocomplete=\"new-password\"></label></p>\
             <p><button type=\"submit\">{ve_go}</button></p></form>\
             <p class=\"note\">{others}</p>",
            title = lang.t("Management password (user admin)", "Verwaltungspasswort (Benutzer admin)"),
            text = lang.f(
                format!("It opens this console on both nodes; at least {} characters. A password set on a node's local console (password reset) is replaced by it.", MIN_PASSWORD),
                format!("Es öffnet diese Konsole auf beiden Knoten; mindestens {} Zeichen. Ein an der lokalen Konsole eines Knotens gesetztes Passwort (Passwort-Rücksetzung) wird dadurch ersetzt.", MIN_PASSWORD),
            ),
            current = lang.t("Current password", "Aktuelles Passwort"),
            new = lang.t("New password", "Neues Passwort"),
            again = lang.t("New password again", "Neues Passwort wiederholen"),
            csrf = esc(csrf),
            ve_title = lang.t("Root password of VE 101", "root-Passwort der VE 101"),
            ve_text = lang.f(
                format!("Set inside VE 101 on the node that runs it (the active one); the VE's files are replicated, so it holds on both nodes. At least {} characters.", MIN_PASSWORD),
                format!("Wird in der VE 101 auf dem Knoten gesetzt, der sie betreibt (dem aktiven); die Dateien der VE werden repliziert, es gilt also auf beiden Knoten. Mindestens {} Zeichen.", MIN_PASSWORD),
            ),
            ve_go = lang.t("Set the root password of VE 101", "root-Passwort der VE 101 setzen"),
            others = lang.t(
                "The nodes themselves are run from this console and their local console. Over SSH root logs in with a key; with a password too only when the configuration file switches it on (access.password-login, with the root passwords' crypt hashes).",
                "Die Knoten selbst werden über diese Konsole und ihre lokale Konsole bedient. Über SSH meldet sich root mit einem Schlüssel an; mit Passwort nur, wenn die Konfigurationsdatei es einschaltet (access.password-login, mit den crypt-Hashes der root-Passwörter)."
            ),
        ),
    }
}

/// The page with `message` above the committed values.
pub(super) async fn show_committed(
    app: &Arc<App>,
    a: &Visit,
    page: Page,
    status: StatusCode,
    message: &str,
) -> Response {
    show(app, a, page, status, message, None).await
}

/// The page: `message`, then the form with `values` (the committed ones when `None`);
/// the Notification page also shows this node's outbox.
async fn show(
    app: &Arc<App>,
    a: &Visit,
    page: Page,
    status: StatusCode,
    message: &str,
    values: Option<Values>,
) -> Response {
    let lang = a.lang;
    let body = match get_settings(app, a).await {
        Ok(s) => {
            let values = values.unwrap_or_else(|| match page {
                Page::Network => Values::Network(Box::new(network_values(&s))),
                Page::Notification => Values::Notification(notification_values(&s)),
                Page::Passwords => Values::Passwords,
            });
            let outbox = if page == Page::Notification {
                super::mail::outbox_section(app, a).await
            } else {
                String::new()
            };
            format!(
                "{message}{}{outbox}",
                form_html(lang, &values, a.csrf.as_str(), s.revision)
            )
        }
        Err(e) => format!("{message}{e}"),
    };
    render(app, lang, page.path(), a, status, &body)
}

pub(super) async fn network(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    show(&app, &a, Page::Network, StatusCode::OK, "", None).await
}

pub(super) async fn notification(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    show(&app, &a, Page::Notification, StatusCode::OK, "", None).await
}

pub(super) async fn passwords(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    show(&app, &a, Page::Passwords, StatusCode::OK, "", None).await
}

fn yes(v: &str) -> bool {
    v == "yes"
}

/// What every settings form posts besides its fields.
#[derive(Debug, Deserialize)]
pub(super) struct Common {
    /// The revision the page showed (text: numbers inside a flattened form arrive as
    /// text; anything but a number matches no revision and changes nothing).
    #[serde(default)]
    revision: String,
    #[serde(default)]
    this_node_only: String,
}

/// The Network form as posted.
#[derive(Debug, Deserialize)]
pub(super) struct NetworkPost {
    #[serde(flatten)]
    common: Common,
    #[serde(default)]
    node1_hostname: String,
    #[serde(default)]
    node1_address: String,
    #[serde(default)]
    node2_hostname: String,
    #[serde(default)]
    node2_address: String,
    #[serde(default)]
    netmask: String,
    #[serde(default)]
    gateway: String,
    #[serde(default)]
    ping_nodes: String,
    #[serde(default)]
    dns_search: String,
    #[serde(default)]
    dns_server1: String,
    #[serde(default)]
    dns_server2: String,
    #[serde(default)]
    time_servers: String,
    #[serde(default)]
    serial_heartbeat: String,
    #[serde(default)]
    external_heartbeat: String,
}

/// The Notification form as posted.
#[derive(Debug, Deserialize)]
pub(super) struct NotificationPost {
    #[serde(flatten)]
    common: Common,
    #[serde(default)]
    addresses: String,
    #[serde(default)]
    relay_host: String,
    #[serde(default)]
    copy_vendor: String,
}

/// The Passwords form as posted.
#[derive(Debug, Deserialize)]
pub(super) struct PasswordsPost {
    #[serde(flatten)]
    common: Common,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub(super) async fn save_network(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form: f,
    }: Posted<Cluster, NetworkPost>,
) -> Response {
    let form = NetworkForm {
        node1_hostname: f.node1_hostname,
        node1_address: f.node1_address,
        node2_hostname: f.node2_hostname,
        node2_address: f.node2_address,
        netmask: f.netmask,
        gateway: f.gateway,
        ping_nodes: f.ping_nodes,
        dns_search: f.dns_search,
        dns_server1: f.dns_server1,
        dns_server2: f.dns_server2,
        time_servers: f.time_servers,
        serial_heartbeat: yes(&f.serial_heartbeat),
        external_heartbeat: yes(&f.external_heartbeat),
    };
    let values = Values::Network(Box::new(form.clone()));
    let change = SettingsChange::Network(form);
    submit(&app, &a, Page::Network, &f.common, change, values).await
}

pub(super) async fn save_notification(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form: f,
    }: Posted<Cluster, NotificationPost>,
) -> Response {
    let form = NotificationForm {
        addresses: f.addresses,
        relay_host: f.relay_host,
        copy_vendor: yes(&f.copy_vendor),
    };
    let values = Values::Notification(form.clone());
    let change = SettingsChange::Notification(form);
    submit(&app, &a, Page::Notification, &f.common, change, values).await
}

pub(super) async fn save_passwords(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form: f,
    }: Posted<Cluster, PasswordsPost>,
) -> Response {
    let change = SettingsChange::AdminPassword {
        current: f.current.into(),
        new: f.new.into(),
        confirm: f.confirm.into(),
    };
    submit(
        &app,
        &a,
        Page::Passwords,
        &f.common,
        change,
        Values::Passwords,
    )
    .await
}

/// The VE 101 root password form as posted.
#[derive(Debug, Deserialize)]
pub(super) struct Ve101PasswordPost {
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub(super) async fn save_ve101_password(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form: f,
    }: Posted<Cluster, Ve101PasswordPost>,
) -> Response {
    let page = Page::Passwords;
    let lang = a.lang;
    let req = Request::Ve101Password {
        new: f.new.into(),
        confirm: f.confirm.into(),
    };
    let (status, msg) = match ask_reply(&app, &a, req).await {
        Reply::Ve101PasswordSet => (
            StatusCode::OK,
            format!(
                "<p class=\"ok\" role=\"status\">{}</p>",
                lang.t(
                    "The root password of VE 101 is set.",
                    "Das root-Passwort der VE 101 ist gesetzt."
                )
            ),
        ),
        Reply::ChangeRefused(ChangeRefusal::Fields(ps)) => {
            (StatusCode::BAD_REQUEST, problems_html(lang, &ps))
        }
        Reply::ChangeRefused(ChangeRefusal::NotMade(why) | ChangeRefusal::OnlyPeer(why)) => (
            StatusCode::CONFLICT,
            error_p(&lang.f(
                format!("The password was not set: {why}."),
                format!("Das Passwort wurde nicht gesetzt: {why}."),
            )),
        ),
        Reply::Refused(Refusal::NoDataArea) => (
            StatusCode::CONFLICT,
            error_p(lang.t(
                "VE 101 runs on the other node (the active one): this node does not hold the data area. Nothing was changed. Set the password in the console of the active node.",
                "VE 101 läuft auf dem anderen Knoten (dem aktiven): Dieser Knoten hat den Datenbereich nicht. Es wurde nichts geändert. Setzen Sie das Passwort in der Konsole des aktiven Knotens.",
            )),
        ),
        Reply::Refused(r) => refusal_html(lang, &r),
        other => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_p(&format!("{other:?}")),
        ),
    };
    show(&app, &a, page, status, &msg, None).await
}

fn changed_html(lang: Lang, r: &ChangeReport) -> String {
    let changed = r.changed.join(", ");
    let mut html = format!(
        "<p class=\"ok\" role=\"status\">{}</p>",
        esc(&if r.both_nodes {
            lang.f(
                format!("Saved on both nodes as configuration revision {} (changed: {changed}).", r.revision),
                format!("Auf beiden Knoten als Konfigurationsrevision {} gespeichert (geändert: {changed}).", r.revision),
            )
        } else {
            lang.f(
                format!("Saved on this node only as configuration revision {} (changed: {changed}). The other node takes it as soon as it is back.", r.revision),
                format!("Nur auf diesem Knoten als Konfigurationsrevision {} gespeichert (geändert: {changed}). Der andere Knoten übernimmt sie, sobald er wieder läuft.", r.revision),
            )
        })
    );
    if r.needs_restart {
        html.push_str(&format!(
            "<p class=\"warn\">{}</p>",
            lang.t(
                "Network settings other than the time servers, and heartbeat settings, take effect when each node starts again: restart the passive node, switch over, then restart the other one (Maintenance page).",
                "Netzwerk-Einstellungen außer den Zeitservern und Heartbeat-Einstellungen wirken, sobald jeder Knoten neu startet: Starten Sie den passiven Knoten neu, übergeben Sie, dann den anderen (Seite Wartung)."
            )
        ));
    }
    for n in &r.notes {
        html.push_str(&format!("<p class=\"note\">{}</p>", esc(n)));
    }
    html
}

/// The page after the management password changed: every session has ended.
fn logged_out_page(app: &App, lang: Lang, r: &ChangeReport) -> Response {
    let f = Frame {
        lang,
        node: &app.node,
        path: "/passwords",
        csrf: None,
        cluster_menu: false,
        refresh: None,
    };
    let body = format!(
        "{}<p>{}</p><p><a href=\"/login\">{}</a></p>",
        changed_html(lang, r),
        lang.t(
            "The management password changed: every session of the console on both nodes has ended, this one too. Log in again with the new password.",
            "Das Verwaltungspasswort wurde geändert: Jede Sitzung der Konsole auf beiden Knoten ist beendet, auch diese. Melden Sie sich mit dem neuen Passwort erneut an.",
        ),
        lang.t("Log in", "Anmelden"),
    );
    let mut resp = (
        StatusCode::OK,
        Html(page(&f, lang.t("Passwords", "Passwörter"), &body)),
    )
        .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
        "{}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        crate::visit::SESSION_COOKIE
    )) {
        resp.headers_mut().insert(axum::http::header::SET_COOKIE, v);
    }
    resp
}

async fn submit(
    app: &Arc<App>,
    a: &Visit,
    page: Page,
    common: &Common,
    change: SettingsChange,
    typed: Values,
) -> Response {
    let lang = a.lang;
    let req = Request::ChangeSettings {
        change: Box::new(change),
        revision: common.revision.trim().parse().unwrap_or(u64::MAX),
        this_node_only: yes(&common.this_node_only),
    };
    match ask_reply(app, a, req).await {
        Reply::Changed(r) if r.sessions_ended => logged_out_page(app, lang, &r),
        Reply::Changed(r) => {
            show(app, a, page, StatusCode::OK, &changed_html(lang, &r), None).await
        }
        Reply::ChangeRefused(ChangeRefusal::Fields(ps)) => {
            show(
                app,
                a,
                page,
                StatusCode::BAD_REQUEST,
                &problems_html(lang, &ps),
                Some(typed),
            )
            .await
        }
        Reply::ChangeRefused(ChangeRefusal::Stale { have }) => {
            let msg = error_p(&lang.f(
                format!("The configuration was changed meanwhile (it is now revision {have}). Nothing was changed: the form below shows the current values; make your change again."),
                format!("Die Konfiguration wurde inzwischen geändert (jetzt Revision {have}). Es wurde nichts geändert: Das Formular zeigt die aktuellen Werte; nehmen Sie Ihre Änderung erneut vor."),
            ));
            show(app, a, page, StatusCode::CONFLICT, &msg, None).await
        }
        Reply::ChangeRefused(ChangeRefusal::NotMade(why)) => {
            let msg = error_p(&lang.f(
                format!("The change was not made: {why}."),
                format!("Die Änderung wurde nicht vorgenommen: {why}."),
            ));
            show(app, a, page, StatusCode::CONFLICT, &msg, Some(typed)).await
        }
        Reply::ChangeRefused(ChangeRefusal::OnlyPeer(why)) => {
            let msg = error_p(&why);
            show(app, a, page, StatusCode::INTERNAL_SERVER_ERROR, &msg, None).await
        }
        Reply::Refused(r) => {
            let (status, html) = refusal_html(lang, &r);
            show(app, a, page, status, &html, Some(typed)).await
        }
        other => {
            let msg = error_p(&format!("{other:?}"));
            show(app, a, page, StatusCode::INTERNAL_SERVER_ERROR, &msg, None).await
        }
    }
}
