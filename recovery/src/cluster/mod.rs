//! Cluster mode pages (R9): Home, Network, VEs, Notification, Passwords, Updates,
//! Maintenance, Status. One file per page (the settings pages share one).
//!
//! Everything shown and done goes through clusterd's control API with the session's
//! token: the cluster's state (roles, heartbeat paths, replication, hardware, events),
//! the configured values without secrets, this node's VEs, and every change —
//! switchover, settings on both nodes ([`settings`]), the archive download, restart or
//! shutdown, VE 101 and the template backup, the e-mail outbox and test message
//! ([`mail`]). The web process does none of it itself.

mod home;
mod mail;
mod maintenance;
mod settings;
mod status;
mod support;
mod updates;
mod ve_edit;
mod ves;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tandem_api::{Refusal, Reply, Request, Settings, StatusJson};

use crate::app::App;
use crate::i18n::Lang;
use crate::page::{Frame, error_p, esc, page};
use crate::refusal::refusal_html;
use crate::visit::Visit;

/// The management version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The progress page of the VE 101 installation.
pub const INSTALL_PROGRESS: &str = "/ves/install/progress";

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/home", get(home::home))
        .route("/fence-confirm", post(home::fence_confirm))
        .route("/split-brain/resolve", post(home::resolve_split_brain))
        .route("/force-primary", post(home::force_primary))
        .route(
            "/network",
            get(settings::network).post(settings::save_network),
        )
        .route("/ves", get(ves::ves))
        .route("/ves/install", post(ves::install_ve101))
        .route("/ves/action", post(ve_edit::ve_action))
        .route("/ves/edit", post(ve_edit::ve_edit))
        .route("/ves/password", post(ve_edit::ve_password))
        .route(
            "/notification",
            get(settings::notification).post(settings::save_notification),
        )
        .route("/notification/test", post(mail::mail_test))
        .route(
            "/passwords",
            get(settings::passwords).post(settings::save_passwords),
        )
        .route("/passwords/ve101", post(settings::save_ve101_password))
        .route(INSTALL_PROGRESS, get(ves::install_progress))
        .route("/updates", get(updates::updates))
        .route("/updates/check", post(updates::check))
        .route("/updates/download", post(updates::download))
        .route("/updates/rolling", post(updates::rolling))
        .route("/maintenance", get(maintenance::maintenance))
        .route("/maintenance/switchover", post(maintenance::switchover))
        .route("/maintenance/export", post(maintenance::export))
        .route("/maintenance/power", post(maintenance::power))
        .route("/maintenance/support", post(support::support))
        .route(
            "/maintenance/backup-templates",
            post(maintenance::backup_templates),
        )
        .route("/status", get(status::status))
}

fn render(
    app: &App,
    lang: Lang,
    path: &str,
    a: &Visit,
    status: StatusCode,
    body: &str,
) -> Response {
    let title = crate::page::MENU
        .iter()
        .find(|(p, _, _)| *p == path)
        .map_or("", |(_, en, de)| lang.t(en, de));
    let f = Frame {
        lang,
        node: &app.node,
        path,
        csrf: Some(a.csrf.as_str()),
        cluster_menu: true,
        refresh: None,
    };
    (status, Html(page(&f, title, body))).into_response()
}

/// One request for the session of `a`; when clusterd cannot be asked, a refusal that
/// says so.
async fn ask_reply(app: &Arc<App>, a: &Visit, request: Request) -> Reply {
    match app.ask(Some(&a.token), request).await {
        Ok(r) => r,
        Err(e) => Reply::Refused(Refusal::Failed(format!(
            "the cluster daemon does not answer ({})",
            e.0
        ))),
    }
}

fn no_daemon(lang: Lang, e: &str) -> String {
    error_p(&lang.f(
        format!("The cluster daemon does not answer ({e}). Check on the node's console that clusterd runs."),
        format!("Der Clusterdienst antwortet nicht ({e}). Prüfen Sie an der Konsole des Knotens, ob clusterd läuft."),
    ))
}

async fn get_status(app: &Arc<App>) -> Result<StatusJson, String> {
    match app.ask(None, Request::Status).await {
        Ok(Reply::Status(s)) => Ok(*s),
        Ok(Reply::Refused(r)) => Err(r.to_string()),
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(e.0),
    }
}

async fn get_settings(app: &Arc<App>, a: &Visit) -> Result<Settings, String> {
    match ask_reply(app, a, Request::Settings).await {
        Reply::Settings(s) => Ok(*s),
        Reply::Refused(r) => Err(refusal_html(a.lang, &r).1),
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

/// This node's VEs as `tandem ve list` shows them, or why there are none here.
/// A VE's state as clusterd's watch words it (`running`, `restarting in N s`, `given
/// up after N crashes`, `stopped`), in the page's language.
fn ve_state_text(lang: Lang, state: &str) -> String {
    if let Some(n) = state
        .strip_prefix("restarting in ")
        .and_then(|r| r.strip_suffix(" s"))
    {
        return lang.f(format!("restarting in {n} s"), format!("Neustart in {n} s"));
    }
    if let Some(n) = state
        .strip_prefix("given up after ")
        .and_then(|r| r.strip_suffix(" crashes"))
    {
        return lang.f(
            format!("restart given up after {n} crashes"),
            format!("Neustart aufgegeben nach {n} Abstürzen"),
        );
    }
    match state {
        "running" => lang.t("running", "läuft").to_owned(),
        "stopped" => lang.t("stopped", "gestoppt").to_owned(),
        other => other.to_owned(),
    }
}

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
                        // The watch's word for a VE that does not run (restarting,
                        // given up).
                        if r.health.is_empty() || r.status == "running" {
                            esc(&r.status)
                        } else {
                            esc(&ve_state_text(lang, &r.health))
                        },
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

async fn ve_list_html(app: &Arc<App>, a: &Visit) -> String {
    ve_rows_html(a.lang, &ask_reply(app, a, Request::VeList).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ve_states_read_in_both_languages_and_the_list_shows_the_watch() {
        assert_eq!(
            ve_state_text(Lang::De, "restarting in 4 s"),
            "Neustart in 4 s"
        );
        assert_eq!(
            ve_state_text(Lang::En, "given up after 6 crashes"),
            "restart given up after 6 crashes"
        );
        assert_eq!(ve_state_text(Lang::De, "running"), "läuft");
        let view = |status: &str, health: &str| tandem_api::VeView {
            id: 101,
            nproc: 0,
            status: status.into(),
            ip: vec!["192.0.2.50".into()],
            hostname: "web".into(),
            health: health.into(),
        };
        let html = ve_rows_html(
            Lang::En,
            &Reply::Ves(vec![view("stopped", "restarting in 2 s")]),
        );
        assert!(html.contains("<td>restarting in 2 s</td>"), "{html}");
        let html = ve_rows_html(Lang::En, &Reply::Ves(vec![view("running", "running")]));
        assert!(html.contains("<td>running</td>"), "{html}");
    }
}
