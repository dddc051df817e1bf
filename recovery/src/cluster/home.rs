//! The Home page (R9.2): both nodes' host names, kernels, management versions,
//! hardware and configuration revisions, their roles, and the language.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tandem_api::{NodeFacts, Reply, Request};

use super::{VERSION, get_settings, get_status, no_daemon, render, yes_no};
use crate::app::App;
use crate::page::esc;
use crate::visit::Cluster;

pub(super) async fn home(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    let lang = a.lang;
    let settings = get_settings(&app, &a).await.ok();
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
    // This node's facts and the other node's, which clusterd asks over the crossover
    // link while it hears it.
    let facts = match app.ask(Some(&a.token), Request::Facts).await {
        Ok(Reply::Facts(f)) => Some(*f),
        _ => None,
    };
    let own = facts.as_ref().map(|f| f.own.clone());
    let peer = facts.and_then(|f| f.peer);
    let unknown = lang.t(
        "(not known: no answer over the crossover link)",
        "(unbekannt: keine Antwort über die Crossover-Verbindung)",
    );
    let fact = |f: &Option<NodeFacts>, get: fn(&NodeFacts) -> String| {
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
