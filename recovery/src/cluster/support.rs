//! Remote support on the Maintenance page (R10): whether this node's tunnel to the
//! vendor's support server is on, since when, by whom, until when, the support
//! server's port that leads to this node, the last connection error; and the forms
//! that switch it on (for a number of hours) and off. Both go to clusterd as requests
//! ([`Request::SupportOn`], [`Request::SupportOff`], [`Request::SupportStatus`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tandem_api::{Reply, Request, SupportView};

use super::ask_reply;
use super::maintenance::maintenance_page;
use crate::app::App;
use crate::i18n::Lang;
use crate::page::{error_p, esc};
use crate::refusal::refusal_html;
use crate::visit::{Cluster, Posted, Visit};

fn when(t: Option<u64>) -> String {
    t.map_or_else(|| "–".to_owned(), tandem_config::archive::rfc3339)
}

/// The section for clusterd's answer `reply` to [`Request::SupportStatus`].
#[must_use]
pub(super) fn support_html(lang: Lang, reply: &Reply, csrf: &str) -> String {
    let title = lang.t("Remote support", "Fernwartung");
    let v = match reply {
        Reply::Support(v) => v,
        Reply::Refused(r) => return format!("<h2>{title}</h2>{}", refusal_html(lang, r).1),
        other => return format!("<h2>{title}</h2>{}", error_p(&format!("{other:?}"))),
    };
    let csrf = esc(csrf);
    let mut rows = format!(
        "<tr><th>{}</th><td id=\"support-server\">{}</td></tr>",
        lang.t("Support server", "Support-Server"),
        esc(v.server.as_deref().unwrap_or("–"))
    );
    let state = if v.on {
        lang.f(
            format!(
                "on since {} (by {}), closes by itself at {}",
                when(v.since),
                v.by.as_deref().unwrap_or("?"),
                when(v.until)
            ),
            format!(
                "an seit {} (durch {}), schließt sich selbst um {}",
                when(v.since),
                v.by.as_deref().unwrap_or("?"),
                when(v.until)
            ),
        )
    } else {
        lang.t("off", "aus").to_owned()
    };
    rows.push_str(&format!(
        "<tr><th>{}</th><td id=\"support-state\">{}</td></tr>",
        lang.t("Tunnel", "Tunnel"),
        esc(&state)
    ));
    if v.on {
        let link = match (v.port, v.retry_at) {
            (Some(p), _) => lang.f(
                format!("up: port {p} of the support server leads to this node's SSH server"),
                format!(
                    "aufgebaut: Port {p} des Support-Servers führt zum SSH-Server dieses Knotens"
                ),
            ),
            (None, Some(r)) => lang.f(
                format!("down; next attempt at {}", when(Some(r))),
                format!("getrennt; nächster Versuch um {}", when(Some(r))),
            ),
            (None, None) => lang.t("being made", "wird aufgebaut").to_owned(),
        };
        rows.push_str(&format!(
            "<tr><th>{}</th><td id=\"support-link\">{}</td></tr>",
            lang.t("Connection", "Verbindung"),
            esc(&link)
        ));
    }
    if let Some(e) = &v.last_error {
        rows.push_str(&format!(
            "<tr><th>{}</th><td id=\"support-error\">{}</td></tr>",
            lang.t("Last error", "Letzter Fehler"),
            esc(e)
        ));
    }
    if let Some(k) = &v.client_key {
        rows.push_str(&format!(
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            lang.t(
                "This node's key (for the support server)",
                "Schlüssel dieses Knotens (für den Support-Server)"
            ),
            esc(k)
        ));
    }
    let form = if let Some(why) = &v.unavailable {
        format!(
            "<p class=\"warn\" id=\"support-unavailable\">{}</p>",
            esc(&lang.f(
                format!("Remote support cannot be switched on: {why}"),
                format!("Die Fernwartung kann nicht eingeschaltet werden: {why}"),
            ))
        )
    } else if v.on {
        format!(
            "<form id=\"support-off\" method=\"post\" action=\"/maintenance/support\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"action\" value=\"off\">\
             <p><button type=\"submit\">{}</button></p></form>",
            lang.t("Switch remote support off", "Fernwartung ausschalten")
        )
    } else {
        format!(
            "<form id=\"support-on\" method=\"post\" action=\"/maintenance/support\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"action\" value=\"on\">\
             <p><label>{} <input type=\"number\" name=\"hours\" min=\"1\" max=\"72\" value=\"\" placeholder=\"{}\"></label></p>\
             <p><button type=\"submit\">{}</button></p></form>",
            lang.t(
                "Close by itself after (hours)",
                "Schließt sich selbst nach (Stunden)"
            ),
            lang.t("as configured", "wie konfiguriert"),
            lang.t("Switch remote support on", "Fernwartung einschalten")
        )
    };
    format!(
        "<h2>{title}</h2><p>{}</p><table id=\"support\">{rows}</table>{form}",
        lang.t(
            "An outbound SSH connection from this node to the vendor's support server, through which the support engineer reaches this node's SSH server (with a key listed for root). Switching it on and off is mailed to the recipients.",
            "Eine ausgehende SSH-Verbindung dieses Knotens zum Support-Server des Herstellers, über die der Support-Techniker den SSH-Server dieses Knotens erreicht (mit einem für root eingetragenen Schlüssel). Ein- und Ausschalten wird den Empfängern gemeldet."
        )
    )
}

/// The section as clusterd answers now, for the session of `a`.
pub(super) async fn support_section(app: &Arc<App>, a: &Visit) -> String {
    let reply = ask_reply(app, a, Request::SupportStatus).await;
    support_html(a.lang, &reply, a.csrf.as_str())
}

/// The on/off form.
#[derive(Debug, Deserialize)]
pub struct SupportForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    hours: String,
}

pub(super) async fn support(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, SupportForm>,
) -> Response {
    let lang = a.lang;
    let request = match form.action.as_str() {
        "off" => Request::SupportOff,
        "on" => {
            let hours = form.hours.trim();
            if hours.is_empty() {
                Request::SupportOn { hours: None }
            } else {
                match hours.parse::<u32>() {
                    Ok(h) => Request::SupportOn { hours: Some(h) },
                    Err(_) => {
                        let msg = error_p(&lang.f(
                            format!("hours: {hours:?} is not a whole number of hours. Remote support was not switched on."),
                            format!("Stunden: {hours:?} ist keine ganze Zahl von Stunden. Die Fernwartung wurde nicht eingeschaltet."),
                        ));
                        return maintenance_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg)
                            .await;
                    }
                }
            }
        }
        _ => {
            let msg = error_p(lang.t(
                "Use the button of the Remote support section. Nothing was changed.",
                "Benutzen Sie die Schaltfläche im Abschnitt Fernwartung. Es wurde nichts geändert.",
            ));
            return maintenance_page(&app, lang, &a, StatusCode::BAD_REQUEST, &msg).await;
        }
    };
    let (status, msg) = match ask_reply(&app, &a, request).await {
        Reply::Support(SupportView { on: true, .. }) => (
            StatusCode::OK,
            lang.t(
                "Remote support is on. The connection to the support server is being made; the section below shows its port once it is up.",
                "Die Fernwartung ist eingeschaltet. Die Verbindung zum Support-Server wird aufgebaut; der Abschnitt unten zeigt ihren Port, sobald sie steht.",
            ),
        ),
        Reply::Support(_) => (
            StatusCode::OK,
            lang.t(
                "Remote support is off: the tunnel is closed.",
                "Die Fernwartung ist ausgeschaltet: Der Tunnel ist geschlossen.",
            ),
        ),
        Reply::Refused(r) => {
            let (s, html) = refusal_html(lang, &r);
            return maintenance_page(&app, lang, &a, s, &html).await;
        }
        other => {
            let html = error_p(&format!("{other:?}"));
            return maintenance_page(&app, lang, &a, StatusCode::INTERNAL_SERVER_ERROR, &html)
                .await;
        }
    };
    let msg = format!("<p class=\"ok\" role=\"status\">{msg}</p>");
    maintenance_page(&app, lang, &a, status, &msg).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_api::Refusal;

    fn view() -> SupportView {
        SupportView {
            server: Some("tandem@support.example.com:22".into()),
            client_key: Some("ssh-ed25519 AAAA support@node".into()),
            ..SupportView::default()
        }
    }

    #[test]
    fn off_on_and_unavailable_each_say_what_the_operator_can_do() {
        let off = support_html(Lang::En, &Reply::Support(view()), "tok");
        assert!(off.contains("id=\"support-on\"") && !off.contains("id=\"support-off\""));
        assert!(off.contains(">off<") && off.contains("tandem@support.example.com:22"));
        assert!(off.contains("name=\"csrf\" value=\"tok\""));

        let on = SupportView {
            on: true,
            by: Some("admin (web console)".into()),
            since: Some(1_796_644_000),
            until: Some(1_796_644_000 + 8 * 3600),
            port: Some(40123),
            last_error: Some("Connection refused".into()),
            ..view()
        };
        let html = support_html(Lang::De, &Reply::Support(on.clone()), "tok");
        assert!(html.contains("id=\"support-off\"") && !html.contains("id=\"support-on\""));
        assert!(html.contains("Port 40123 des Support-Servers"), "{html}");
        assert!(html.contains("admin (web console)") && html.contains("Connection refused"));
        let waiting = SupportView {
            port: None,
            retry_at: Some(1_796_644_100),
            ..on
        };
        let html = support_html(Lang::En, &Reply::Support(waiting), "tok");
        assert!(html.contains("down; next attempt at "), "{html}");

        let unavailable = SupportView {
            unavailable: Some("the support server's host key is not configured".into()),
            ..view()
        };
        let html = support_html(Lang::En, &Reply::Support(unavailable), "tok");
        assert!(
            html.contains("cannot be switched on: the support server&#39;s host key")
                || html.contains("cannot be switched on: the support server's host key"),
            "{html}"
        );
        assert!(!html.contains("<form"));

        let refused = support_html(
            Lang::En,
            &Reply::Refused(Refusal::Failed("the remote-support task has ended".into())),
            "tok",
        );
        assert!(
            refused.contains("the remote-support task has ended"),
            "{refused}"
        );
    }
}
