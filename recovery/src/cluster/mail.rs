//! The outbox on the Notification page: what waits on this node, since when, the last
//! delivery error, and the "send test message" button. Both go to clusterd as requests
//! ([`Request::MailOutbox`], [`Request::MailTest`]); the web process reads no outbox.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tandem_api::{OutboxView, Reply, Request};

use super::ask_reply;
use super::settings::{Page, show_committed};
use crate::app::App;
use crate::i18n::Lang;
use crate::page::{error_p, esc};
use crate::refusal::refusal_html;
use crate::visit::{Cluster, Posted, Visit};

/// The outbox table and the test button, as HTML.
#[must_use]
pub(super) fn outbox_html(lang: Lang, reply: &Reply, csrf: &str) -> String {
    let table = match reply {
        Reply::Outbox(v) => view_html(lang, v),
        Reply::Refused(r) => refusal_html(lang, r).1,
        other => error_p(&format!("{other:?}")),
    };
    format!(
        "<h2>{title}</h2>{table}\
         <form id=\"mail-test\" method=\"post\" action=\"/notification/test\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><button type=\"submit\">{button}</button></p></form>\
         <p class=\"note\">{note}</p>",
        title = lang.t("Outbox of this node", "Postausgang dieses Knotens"),
        csrf = esc(csrf),
        button = lang.t("Send a test message", "Testnachricht senden"),
        note = lang.t(
            "The test message goes to the recipients above, the way alerts go; reload this page to see whether it left.",
            "Die Testnachricht geht an die obigen Empfänger, auf demselben Weg wie Meldungen; laden Sie diese Seite neu, um zu sehen, ob sie versendet wurde."
        ),
    )
}

fn view_html(lang: Lang, v: &OutboxView) -> String {
    let route = match &v.relay {
        Some(r) => lang.f(format!("relay {r}"), format!("Relay {r}")),
        None => lang
            .t(
                "the recipients' mail exchangers (MX, direct delivery)",
                "die Mail-Exchanger der Empfänger (MX, direkte Zustellung)",
            )
            .to_owned(),
    };
    let oldest = v
        .oldest_queued
        .map_or_else(|| "–".to_owned(), tandem_config::archive::rfc3339);
    let last_error = v.last_error.as_deref().unwrap_or("–");
    let none = if v.recipients {
        String::new()
    } else {
        format!(
            "<p class=\"warn\">{}</p>",
            lang.t(
                "No recipients are configured: no e-mail is sent.",
                "Es sind keine Empfänger eingetragen: Es wird keine E-Mail versendet."
            )
        )
    };
    format!(
        "{none}<table id=\"outbox\">\
         <tr><th>{l_route}</th><td>{route}</td></tr>\
         <tr><th>{l_queued}</th><td id=\"outbox-queued\">{queued}</td></tr>\
         <tr><th>{l_oldest}</th><td id=\"outbox-oldest\">{oldest}</td></tr>\
         <tr><th>{l_error}</th><td id=\"outbox-error\">{error}</td></tr></table>",
        l_route = lang.t("Delivery", "Zustellung"),
        route = esc(&route),
        l_queued = lang.t("Waiting messages", "Wartende Nachrichten"),
        queued = v.queued,
        l_oldest = lang.t("Oldest waiting since", "Älteste wartet seit"),
        oldest = esc(&oldest),
        l_error = lang.t("Last delivery error", "Letzter Zustellfehler"),
        error = esc(last_error),
    )
}

/// The outbox of this node as HTML, asked of clusterd for the session of `a`.
pub(super) async fn outbox_section(app: &Arc<App>, a: &Visit) -> String {
    let reply = ask_reply(app, a, Request::MailOutbox).await;
    outbox_html(a.lang, &reply, a.csrf.as_str())
}

/// The test button's form: only the session's token.
#[derive(Debug, Deserialize)]
pub struct TestForm {}

pub(super) async fn mail_test(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form: TestForm {},
    }: Posted<Cluster, TestForm>,
) -> Response {
    let lang = a.lang;
    let (status, msg) = match ask_reply(&app, &a, Request::MailTest).await {
        Reply::MailTestQueued => (
            StatusCode::OK,
            format!(
                "<p class=\"ok\" role=\"status\">{}</p>",
                lang.t(
                    "The test message is in the outbox and goes out now.",
                    "Die Testnachricht liegt im Postausgang und wird jetzt versendet."
                )
            ),
        ),
        Reply::Refused(r) => refusal_html(lang, &r),
        other => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_p(&format!("{other:?}")),
        ),
    };
    show_committed(&app, &a, Page::Notification, status, &msg).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_shows_count_oldest_and_error_in_both_languages() {
        let v = OutboxView {
            recipients: true,
            relay: None,
            queued: 2,
            oldest_queued: Some(1_796_613_000),
            last_error: Some("mx.example.net (192.0.2.25:25): connection <refused>".into()),
        };
        let en = outbox_html(Lang::En, &Reply::Outbox(v.clone()), "tok");
        assert!(en.contains("<td id=\"outbox-queued\">2</td>"), "{en}");
        assert!(
            en.contains(&tandem_config::archive::rfc3339(1_796_613_000)),
            "{en}"
        );
        assert!(en.contains("connection &lt;refused&gt;"), "escaped: {en}");
        assert!(en.contains("direct delivery") && en.contains("Send a test message"));
        assert!(en.contains("action=\"/notification/test\"") && en.contains("value=\"tok\""));
        let de = outbox_html(Lang::De, &Reply::Outbox(v), "tok");
        assert!(de.contains("Wartende Nachrichten") && de.contains("Testnachricht senden"));
        let none = outbox_html(Lang::En, &Reply::Outbox(OutboxView::default()), "tok");
        assert!(none.contains("No recipients are configured"), "{none}");
    }
}
