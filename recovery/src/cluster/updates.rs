//! The Updates page (R9.7): the running system's version, both system slots (which
//! one runs, what each holds, whether the boot loader takes it), the trial of a new
//! system, the install running or the last one, and the update history. Updates are
//! installed on the passive node with `tandem update install FILE`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tandem_api::{JobState, Reply, Request, UpdateServerView, UpdateView};

use super::{VERSION, ask_reply, render, row};
use crate::app::App;
use crate::i18n::Lang;
use crate::login::CsrfForm;
use crate::page::{error_p, esc};
use crate::refusal::refusal_html;
use crate::visit::{Cluster, Posted};

/// The page's body for clusterd's `reply` (`csrf`: the session's token for the
/// check button).
pub(super) fn updates_html(lang: Lang, reply: &Reply, csrf: &str) -> String {
    let v = match reply {
        Reply::Update(v) => v,
        Reply::Refused(r) => return refusal_html(lang, r).1,
        other => return error_p(&format!("{other:?}")),
    };
    let mut body = format!(
        "<table>{}{}</table>",
        row(lang.t("running system", "laufendes System"), &v.version),
        row(lang.t("web console", "Web-Konsole"), VERSION),
    );
    body.push_str(&slots_html(lang, v));
    if let Some(t) = &v.trial {
        body.push_str(&format!(
            "<p class=\"note\" role=\"status\" id=\"update-trial\">{}</p>",
            esc(t)
        ));
    }
    if let Some(r) = &v.rolling {
        body.push_str(&format!(
            "<p role=\"status\" id=\"update-rolling\">{} {}</p>",
            lang.t("Rolling update of the pair:", "Update des Paars:"),
            esc(r)
        ));
    }
    body.push_str(&job_html(lang, v));
    body.push_str(&server_html(lang, v.server.as_ref(), csrf));
    body.push_str(&format!("<h2>{}</h2>", lang.t("History", "Verlauf")));
    if v.history.is_empty() {
        body.push_str(&format!(
            "<p>{}</p>",
            lang.t("No update yet.", "Noch kein Update.")
        ));
    } else {
        let rows: String = v
            .history
            .iter()
            .rev()
            .map(|h| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&tandem_config::archive::rfc3339(h.at)),
                    if h.ok {
                        lang.t("ok", "ok")
                    } else {
                        lang.t("<b>failed</b>", "<b>fehlgeschlagen</b>")
                    },
                    esc(&h.text)
                )
            })
            .collect();
        body.push_str(&format!(
            "<table id=\"update-history\"><tr><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
            lang.t("time (UTC)", "Zeit (UTC)"),
            lang.t("result", "Ergebnis"),
            lang.t("what", "was")
        ));
    }
    body.push_str(lang.t(
        "<p class=\"note\">An update is a signed bundle (<code>tandem-VERSION.raucb</code>). Move the services away from a node (Maintenance: switchover), copy the bundle onto it and run <code>tandem update install FILE</code> there: it is written into the other system slot and the node restarts into it. The new system is kept once the node is healthy again (the other node heard, the replication connected); otherwise the node goes back to the previous system by itself and says so here and by e-mail. <code>tandem update rolling FILE</code> on the node that runs the services updates both nodes in turn, with one switchover. Uploading bundles on this page is not available.</p>",
        "<p class=\"note\">Ein Update ist ein signiertes Paket (<code>tandem-VERSION.raucb</code>). Dienste vom Knoten wegschalten (Wartung: Umschalten), das Paket auf den Knoten kopieren und dort <code>tandem update install DATEI</code> ausführen: es wird in den anderen Systembereich geschrieben, und der Knoten startet daraus neu. Das neue System bleibt, sobald der Knoten wieder gesund ist (anderer Knoten hörbar, Replikation verbunden); sonst kehrt der Knoten von selbst zum vorherigen System zurück und meldet das hier und per E-Mail. <code>tandem update rolling DATEI</code> auf dem Knoten mit den Diensten aktualisiert beide Knoten nacheinander, mit einer Umschaltung. Pakete auf dieser Seite hochzuladen ist nicht möglich.</p>",
    ));
    body
}

fn server_html(lang: Lang, server: Option<&UpdateServerView>, csrf: &str) -> String {
    let mut out = format!("<h2>{}</h2>", lang.t("Update server", "Update-Server"));
    match server {
        None => out.push_str(&format!(
            "<p id=\"update-server\">{}</p>",
            lang.t(
                "No update server has answered yet: none is configured (updates.url), or its first check, a few minutes after the start, has not run.",
                "Noch kein Update-Server hat geantwortet: Keiner ist eingetragen (updates.url), oder seine erste Abfrage, einige Minuten nach dem Start, lief noch nicht."
            )
        )),
        Some(s) => {
            let when = s.checked_at.map_or_else(
                || lang.t("not yet", "noch nicht").to_owned(),
                |t| format!("{} UTC", tandem_config::archive::rfc3339(t)),
            );
            let offer = match &s.offer {
                Some(o) => format!(
                    "<b>{}</b> ({}, {} MiB){}",
                    esc(&o.version),
                    esc(&o.file),
                    o.size.div_ceil(1 << 20),
                    if o.changes.is_empty() {
                        String::new()
                    } else {
                        format!("<pre>{}</pre>", esc(&o.changes))
                    }
                ),
                None if s.error.is_none() => lang
                    .t(
                        "nothing newer than the running system",
                        "nichts Neueres als das laufende System",
                    )
                    .to_owned(),
                None => "–".to_owned(),
            };
            out.push_str(&format!(
                "<table id=\"update-server\">{}{}<tr><th>{}</th><td id=\"update-offer\">{offer}</td></tr></table>",
                row("URL", &s.url),
                row(lang.t("last asked", "zuletzt gefragt"), &when),
                lang.t("offers", "bietet an")
            ));
            if let Some(e) = &s.error {
                out.push_str(&format!(
                    "<p class=\"error\" id=\"update-server-error\">{} {}</p>",
                    lang.t("The last check failed:", "Die letzte Abfrage schlug fehl:"),
                    esc(e)
                ));
            }
            out.push_str(&download_html(lang, s, csrf));
        }
    }
    out.push_str(&format!(
        "<form id=\"update-check\" method=\"post\" action=\"/updates/check\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <p><button type=\"submit\">{}</button> {}</p></form>",
        esc(csrf),
        lang.t("Ask the update server now", "Update-Server jetzt fragen"),
        lang.t(
            "(it is also asked once a day; a newer version is announced by e-mail)",
            "(er wird auch einmal täglich gefragt; eine neuere Version wird per E-Mail gemeldet)"
        )
    ));
    out
}

/// A form of one button posting the session's token to `action`.
fn button(id: &str, action: &str, csrf: &str, label: &str) -> String {
    format!(
        "<form id=\"{id}\" method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <p><button type=\"submit\">{}</button></p></form>",
        esc(csrf),
        esc(label)
    )
}

/// The download of the offered bundle: its state, and the next step's button.
fn download_html(lang: Lang, s: &UpdateServerView, csrf: &str) -> String {
    let mut out = String::new();
    let running = s
        .download
        .as_ref()
        .is_some_and(|d| d.state == JobState::Running);
    if let Some(d) = &s.download {
        let to = esc(d.to_version.as_deref().unwrap_or("?"));
        out.push_str(&match &d.state {
            JobState::Idle => String::new(),
            JobState::Running => format!(
                "<p role=\"status\" id=\"update-download\">{} {}% {}</p>",
                lang.f(format!("Downloading {to}:"), format!("{to} wird geladen:")),
                d.percent,
                esc(&d.step)
            ),
            JobState::Succeeded => format!(
                "<p class=\"ok\" id=\"update-download\">{}</p>{}<p class=\"note\">{}</p>",
                esc(&d.step),
                button(
                    "update-rolling-start",
                    "/updates/rolling",
                    csrf,
                    &lang.f(
                        format!("Update both nodes to {}", d.to_version.as_deref().unwrap_or("?")),
                        format!("Beide Knoten auf {} aktualisieren", d.to_version.as_deref().unwrap_or("?")),
                    ),
                ),
                lang.t(
                    "On the node that runs the services: the other node is updated first, then the services move to it (one switchover), then this node. The update stops with the services running if a node does not keep the new system.",
                    "Auf dem Knoten mit den Diensten: Zuerst wird der andere Knoten aktualisiert, dann wechseln die Dienste zu ihm (eine Umschaltung), dann dieser Knoten. Behält ein Knoten das neue System nicht, hält das Update an, die Dienste laufen weiter."
                )
            ),
            JobState::Failed { error } => format!(
                "<p class=\"error\" id=\"update-download\">{} {}</p>",
                lang.t("The download failed:", "Das Laden schlug fehl:"),
                esc(error)
            ),
        });
    }
    if let Some(o) = s.offer.as_ref().filter(|_| !running) {
        out.push_str(&button(
            "update-download-start",
            "/updates/download",
            csrf,
            &lang.f(
                format!("Download {} onto this node", o.version),
                format!("{} auf diesen Knoten laden", o.version),
            ),
        ));
    }
    out
}

fn slots_html(lang: Lang, v: &UpdateView) -> String {
    if let Some(e) = &v.slots_error {
        return format!(
            "<p class=\"error\">{} {}</p>",
            lang.t(
                "The system slots are unknown:",
                "Die Systembereiche sind unbekannt:"
            ),
            esc(e)
        );
    }
    let rows: String = v
        .slots
        .iter()
        .map(|s| {
            let running = v.booted.as_deref() == Some(s.bootname.as_str());
            format!(
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.bootname),
                if running {
                    lang.t(" (running)", " (läuft)")
                } else {
                    ""
                },
                esc(&s.device),
                esc(s.version.as_deref().unwrap_or(lang.t(
                    "as installed from the medium",
                    "wie vom Installationsmedium"
                ))),
                if s.boot_status == "good" {
                    lang.t("starts", "startbar")
                } else {
                    lang.t("not started", "wird nicht gestartet")
                }
            )
        })
        .collect();
    format!(
        "<h2>{}</h2><table id=\"update-slots\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
        lang.t("System slots", "Systembereiche"),
        lang.t("slot", "Bereich"),
        lang.t("partition", "Partition"),
        lang.t("version", "Version"),
        lang.t("boot loader", "Bootlader")
    )
}

fn job_html(lang: Lang, v: &UpdateView) -> String {
    let j = &v.job;
    let to = esc(j.to_version.as_deref().unwrap_or("?"));
    match &j.state {
        JobState::Idle => String::new(),
        JobState::Running => format!(
            "<p role=\"status\">{} {}% {}</p>",
            lang.f(
                format!("Installing {to}:"),
                format!("{to} wird installiert:")
            ),
            j.percent,
            esc(&j.step)
        ),
        JobState::Succeeded => format!("<p>{}</p>", esc(&j.step)),
        JobState::Failed { error } => format!(
            "<p class=\"error\">{} {}</p>",
            lang.t(
                "The last install failed:",
                "Die letzte Installation schlug fehl:"
            ),
            esc(error)
        ),
    }
}

/// `GET /updates`.
pub(super) async fn updates(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    let lang = a.lang;
    let body = updates_html(
        lang,
        &ask_reply(&app, &a, Request::UpdateStatus).await,
        a.csrf.as_str(),
    );
    render(&app, lang, "/updates", &a, StatusCode::OK, &body)
}

/// `POST /updates/check`: asks the update server now, then shows the page with
/// its answer (or why nothing was asked).
pub(super) async fn check(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form: CsrfForm {},
    }: Posted<Cluster, CsrfForm>,
) -> Response {
    act(&app, &a, Request::UpdateCheck).await
}

/// `POST /updates/download`: downloads the offered bundle onto this node.
pub(super) async fn download(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form: CsrfForm {},
    }: Posted<Cluster, CsrfForm>,
) -> Response {
    act(&app, &a, Request::UpdateDownload).await
}

/// `POST /updates/rolling`: the rolling update with the downloaded bundle.
pub(super) async fn rolling(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form: CsrfForm {},
    }: Posted<Cluster, CsrfForm>,
) -> Response {
    act(&app, &a, Request::UpdateRollingDownloaded).await
}

/// Asks `request`, then shows the page as it stands, with the refusal on top.
async fn act(app: &Arc<App>, a: &crate::visit::Visit, request: Request) -> Response {
    let lang = a.lang;
    let (status, body) = match ask_reply(app, a, request).await {
        r @ Reply::Update(_) => (StatusCode::OK, updates_html(lang, &r, a.csrf.as_str())),
        Reply::UpdateStarted => (
            StatusCode::OK,
            updates_html(
                lang,
                &ask_reply(app, a, Request::UpdateStatus).await,
                a.csrf.as_str(),
            ),
        ),
        Reply::Refused(r) => {
            let (status, msg) = refusal_html(lang, &r);
            let page = updates_html(
                lang,
                &ask_reply(app, a, Request::UpdateStatus).await,
                a.csrf.as_str(),
            );
            (status, format!("{msg}{page}"))
        }
        other => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_p(&format!("{other:?}")),
        ),
    };
    render(app, lang, "/updates", a, status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_api::{SlotView, UpdateHistoryEntry, UpdateJobView};

    fn view() -> UpdateView {
        UpdateView {
            version: "0.2.0+def".into(),
            booted: Some("B".into()),
            slots: vec![
                SlotView {
                    bootname: "A".into(),
                    device: "/dev/sda3".into(),
                    state: "inactive".into(),
                    boot_status: "good".into(),
                    version: None,
                },
                SlotView {
                    bootname: "B".into(),
                    device: "/dev/sda4".into(),
                    state: "booted".into(),
                    boot_status: "good".into(),
                    version: Some("0.2.0+def".into()),
                },
            ],
            slots_error: None,
            job: UpdateJobView {
                state: JobState::Idle,
                file: None,
                to_version: None,
                percent: 0,
                step: String::new(),
            },
            trial: Some("trying 0.2.0+def: waiting for other node not heard".into()),
            history: vec![
                UpdateHistoryEntry {
                    at: 1_796_600_000,
                    text: "update to 0.3.0 failed, rolled back to 0.2.0+def".into(),
                    ok: false,
                },
                UpdateHistoryEntry {
                    at: 1_796_500_000,
                    text: "updated from 0.1.0 to <0.2.0>".into(),
                    ok: true,
                },
            ],
            pending: None,
            rolling: Some("node2 tries 0.3.0".into()),
            server: None,
        }
    }

    #[test]
    fn the_page_shows_slots_trial_and_history_in_both_languages() {
        let en = updates_html(Lang::En, &Reply::Update(Box::new(view())), "tok");
        assert!(en.contains("B (running)"), "{en}");
        assert!(en.contains("as installed from the medium"), "{en}");
        assert!(en.contains("id=\"update-trial\""), "{en}");
        assert!(en.contains("<b>failed</b>"), "{en}");
        assert!(en.contains("updated from 0.1.0 to &lt;0.2.0&gt;"), "{en}");
        assert!(
            en.contains("Rolling update of the pair: node2 tries 0.3.0"),
            "{en}"
        );
        let de = updates_html(Lang::De, &Reply::Update(Box::new(view())), "tok");
        assert!(de.contains("B (läuft)"), "{de}");
        assert!(de.contains("fehlgeschlagen"), "{de}");
        assert!(de.contains("tandem update install DATEI"), "{de}");
        assert!(de.contains("Update des Paars: node2 tries 0.3.0"), "{de}");
    }

    #[test]
    fn the_update_servers_offer_and_its_failure_are_shown_with_the_check_button() {
        let mut v = view();
        let en = updates_html(Lang::En, &Reply::Update(Box::new(v.clone())), "tok");
        assert!(en.contains("No update server has answered yet"), "{en}");
        assert!(en.contains("action=\"/updates/check\""), "{en}");
        assert!(en.contains("name=\"csrf\" value=\"tok\""), "{en}");
        v.server = Some(UpdateServerView {
            url: "https://updates.vendor.example.net/tandem".into(),
            checked_at: Some(1_796_600_000),
            offer: Some(tandem_api::UpdateOffer {
                version: "0.3.0+abc".into(),
                file: "tandem-0.3.0+abc.raucb".into(),
                size: 300 << 20,
                sha256: String::new(),
                changes: "- <faster> failover".into(),
            }),
            error: Some("the update server … refused the account".into()),
            download: None,
        });
        let en = updates_html(Lang::En, &Reply::Update(Box::new(v.clone())), "tok");
        assert!(
            en.contains("<b>0.3.0+abc</b> (tandem-0.3.0+abc.raucb, 300 MiB)"),
            "{en}"
        );
        assert!(en.contains("<pre>- &lt;faster&gt; failover</pre>"), "{en}");
        assert!(
            en.contains("The last check failed: the update server"),
            "{en}"
        );
        assert!(en.contains("Download 0.3.0+abc onto this node"), "{en}");
        assert!(en.contains("action=\"/updates/download\""), "{en}");
        let de = updates_html(Lang::De, &Reply::Update(Box::new(v.clone())), "tok");
        assert!(de.contains("Update-Server jetzt fragen"), "{de}");
        assert!(de.contains("Die letzte Abfrage schlug fehl"), "{de}");
        assert!(de.contains("0.3.0+abc auf diesen Knoten laden"), "{de}");

        // Running: no second download; done: the rolling update's button.
        let server = v.server.as_mut().unwrap();
        server.download = Some(UpdateJobView {
            state: JobState::Running,
            file: None,
            to_version: Some("0.3.0+abc".into()),
            percent: 42,
            step: "downloading tandem-0.3.0+abc.raucb".into(),
        });
        let en = updates_html(Lang::En, &Reply::Update(Box::new(v.clone())), "tok");
        assert!(en.contains("Downloading 0.3.0+abc: 42%"), "{en}");
        assert!(!en.contains("/updates/download"), "{en}");
        let d = v.server.as_mut().unwrap().download.as_mut().unwrap();
        d.state = JobState::Succeeded;
        d.step = "0.3.0+abc downloaded and checked: /tmp/x.raucb".into();
        let en = updates_html(Lang::En, &Reply::Update(Box::new(v.clone())), "tok");
        assert!(en.contains("Update both nodes to 0.3.0+abc"), "{en}");
        assert!(en.contains("action=\"/updates/rolling\""), "{en}");
        let d = v.server.as_mut().unwrap().download.as_mut().unwrap();
        d.state = JobState::Failed {
            error: "tandem-0.3.0+abc.raucb arrived damaged".into(),
        };
        let de = updates_html(Lang::De, &Reply::Update(Box::new(v)), "tok");
        assert!(
            de.contains("Das Laden schlug fehl: tandem-0.3.0+abc.raucb arrived damaged"),
            "{de}"
        );
    }

    #[test]
    fn unknown_slots_and_a_failed_install_are_said() {
        let mut v = view();
        v.slots_error = Some("the update service cannot tell the slots".into());
        v.job.state = JobState::Failed {
            error: "signature verification failed".into(),
        };
        let en = updates_html(Lang::En, &Reply::Update(Box::new(v)), "tok");
        assert!(
            en.contains("The system slots are unknown: the update service"),
            "{en}"
        );
        assert!(
            en.contains("The last install failed: signature verification failed"),
            "{en}"
        );
    }
}
