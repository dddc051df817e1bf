//! The Status page (R9.9): roles, the other node, heartbeat paths, ping nodes,
//! replication, hardware and RAID, this node's VEs and the recent events, all from
//! clusterd.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tandem_api::{HwJson, Reply, Request, StatusJson};

use super::{get_status, no_daemon, render, row, ve_list_html, yes_no};
use crate::app::App;
use crate::i18n::Lang;
use crate::page::esc;
use crate::visit::Cluster;

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
    let warnings = crate::page::warnings_html(&s.warnings);
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
         <h2>{repl_h}</h2><p>{repl}</p>{clock}",
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
        clock = s.clock.as_deref().map_or_else(String::new, |c| format!(
            "<h2>{}</h2><p>{}</p>",
            lang.t("Time", "Uhrzeit"),
            esc(c)
        )),
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
    let items = |v: &[tandem_api::RaidItemJson]| -> String {
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

pub(super) async fn status(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    let lang = a.lang;
    let mut body = match get_status(&app).await {
        Ok(s) => status_html(lang, &s),
        Err(e) => no_daemon(lang, &e),
    };
    match app.ask(None, Request::Hw).await {
        Ok(Reply::Hw(h)) => body.push_str(&hw_html(lang, &h)),
        Ok(Reply::Refused(r)) => body.push_str(&no_daemon(lang, &r.to_string())),
        Ok(other) => body.push_str(&no_daemon(lang, &format!("{other:?}"))),
        Err(e) => body.push_str(&no_daemon(lang, &e.0)),
    }
    body.push_str(&format!(
        "<h2>{}</h2>{}",
        lang.t("Virtualisation", "Virtualisierung"),
        ve_list_html(&app, &a).await
    ));
    if let Ok(ev) = app.events(15).await {
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
