//! The Home page (R9.2): both nodes' host names, kernels, management versions,
//! hardware and configuration revisions, their roles, and the language.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tandem_api::{NodeFacts, Reply, Request, StatusJson};

use super::{VERSION, ask_reply, get_settings, get_status, no_daemon, render, yes_no};
use crate::app::App;
use crate::i18n::Lang;
use crate::page::{error_p, esc};
use crate::refusal::refusal_html;
use crate::visit::{Cluster, Posted, Visit};

/// What may cost the data's safety, at the top of the Home page: fencing off (split
/// brain possible), a fence that failed (with the confirmation form), a copy that is
/// stale.
fn safety_banner(lang: Lang, s: &StatusJson, csrf: &str) -> String {
    let mut out = String::new();
    let csrf_field = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    );
    let name_field = format!(
        "<p><label>{} <input name=\"confirm_name\" autocomplete=\"off\"></label></p>",
        esc(lang.t("Cluster name", "Clustername"))
    );
    if s.split_brain {
        out.push_str(&format!(
            "<div class=\"error\" role=\"alert\"><p>{}</p>\
             <form method=\"post\" action=\"/split-brain/resolve\">{csrf_field}\
             <p><label>{keep} <select name=\"survivor\"><option value=\"\"></option><option>node1</option><option>node2</option></select></label></p>\
             {name_field}<p><button type=\"submit\">{go}</button></p></form></div>",
            esc(lang.t(
                "Split brain of the replicated data: both nodes changed it while apart. Nothing was discarded. On a node's console compare both sides with `tandem split-brain`, then choose the node whose data stays with `tandem split-brain resolve --survivor NODE --confirm CLUSTER-NAME` on both nodes: the other node's changes since the split are discarded.",
                "Split Brain der replizierten Daten: Beide Knoten haben sie getrennt voneinander geändert. Es wurde nichts verworfen. Vergleichen Sie an der Konsole eines Knotens beide Seiten mit `tandem split-brain` und wählen Sie dann mit `tandem split-brain resolve --survivor KNOTEN --confirm CLUSTERNAME` auf beiden Knoten den Knoten, dessen Daten bleiben: Die Änderungen des anderen seit der Trennung werden verworfen.",
            )),
            keep = esc(lang.t("Keep the data of", "Daten behalten von")),
            go = esc(lang.t(
                "Resolve on this node (then on the other)",
                "Auf diesem Knoten auflösen (dann auf dem anderen)"
            )),
        ));
    }
    let stale = s
        .waiting
        .as_deref()
        .is_some_and(|w| w.contains("not known good"));
    if stale && !s.peer.alive {
        out.push_str(&format!(
            "<div class=\"warn\"><p>{}</p><form method=\"post\" action=\"/force-primary\">{csrf_field}{name_field}<p><button type=\"submit\">{go}</button></p></form></div>",
            esc(lang.t(
                "This node's copy of the data is not known good and the other node is silent, so this node does not take over. If the other node's copy is lost for good, start from this node's copy: the other node's changes since the two parted are lost. Type the cluster's name to confirm.",
                "Die Datenkopie dieses Knotens ist nicht als aktuell bekannt und der andere Knoten ist stumm, daher übernimmt dieser Knoten nicht. Ist die Kopie des anderen Knotens endgültig verloren, starten Sie mit der Kopie dieses Knotens: Die Änderungen des anderen seit der Trennung gehen verloren. Tippen Sie zur Bestätigung den Clusternamen.",
            )),
            go = esc(lang.t(
                "Start from this node's copy",
                "Mit der Kopie dieses Knotens starten"
            )),
        ));
    }
    if s.fencing_off {
        out.push_str(&format!(
            "<p class=\"warn\" role=\"alert\">{}</p>",
            esc(lang.t(
                "Fencing is off: if every heartbeat path is lost while both nodes run, both may become active (split brain). Configure the BMCs of both nodes ([fencing]) so that a node powers the silent one off before it takes over.",
                "Fencing ist aus: Fallen alle Heartbeat-Wege aus, während beide Knoten laufen, können beide aktiv werden (Split Brain). Tragen Sie die BMCs beider Knoten ein ([fencing]), damit ein Knoten den stummen ausschaltet, bevor er übernimmt.",
            ))
        ));
    }
    if let Some(why) = s.fence.as_deref().and_then(|f| f.strip_prefix("failed: ")) {
        let peer = esc(&s.peer.node);
        out.push_str(&format!(
            "<div class=\"error\" role=\"alert\"><p>{head}</p><p>{why}</p><p>{what}</p>\
             <form method=\"post\" action=\"/fence-confirm\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p><label>{label} <input name=\"node\" autocomplete=\"off\"></label></p>\
             <p><button type=\"submit\">{go}</button></p></form></div>",
            head = esc(&lang.f(
                format!("{peer} silent and could not be powered off: check it and confirm"),
                format!("{peer} ist stumm und ließ sich nicht ausschalten: prüfen und bestätigen"),
            )),
            why = esc(why),
            what = esc(&lang.f(
                format!("This node stays passive. Make sure {peer} is down (powered off, or cut from the data and the service network), then type its name to take over here."),
                format!("Dieser Knoten bleibt passiv. Stellen Sie sicher, dass {peer} aus ist (ausgeschaltet oder von Daten- und Dienstnetz getrennt), und tippen Sie dann seinen Namen, um hier zu übernehmen."),
            )),
            label = esc(lang.t("Node name", "Knotenname")),
            go = esc(lang.t("Confirm it is down and take over", "Bestätigen und übernehmen")),
            csrf = esc(csrf),
        ));
    }
    out
}

/// Both nodes' copies of the replicated data side by side (what a split brain's
/// survivor is chosen by), when either node reports one.
fn replica_rows(lang: Lang, own: Option<&NodeFacts>, peer: Option<&NodeFacts>) -> String {
    let (r1, r2) = (
        own.and_then(|f| f.replication.as_ref()),
        peer.and_then(|f| f.replication.as_ref()),
    );
    if r1.is_none() && r2.is_none() {
        return String::new();
    }
    let cell = |r: Option<&tandem_api::ReplicaFacts>,
                get: fn(&tandem_api::ReplicaFacts) -> String| {
        esc(&r.map_or_else(|| "-".to_owned(), get))
    };
    let row = |k: &str, get: fn(&tandem_api::ReplicaFacts) -> String| {
        format!(
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            esc(k),
            cell(r1, get),
            cell(r2, get)
        )
    };
    [
        row(lang.t("replication", "Replikation"), |r| r.state.clone()),
        row(
            lang.t("generation identifiers", "Generationskennungen"),
            |r| r.generation_ids.clone(),
        ),
        row(lang.t("out of sync", "nicht synchron"), |r| {
            format!("{} KiB", r.out_of_sync_kib)
        }),
        row(lang.t("last write", "letzter Schreibzugriff"), |r| {
            r.last_write.clone().unwrap_or_else(|| "-".to_owned())
        }),
    ]
    .concat()
}

/// The split-brain resolution form.
#[derive(Debug, Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    survivor: String,
    #[serde(default)]
    confirm_name: String,
}

pub(super) async fn resolve_split_brain(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, ResolveForm>,
) -> Response {
    let request = Request::ResolveSplitBrain {
        survivor: form.survivor,
        confirm_name: form.confirm_name,
    };
    let done = a.lang.t(
        "This node's part of the resolution is done. Do the same on the other node; the Status page shows the resynchronisation.",
        "Der Teil dieses Knotens ist erledigt. Tun Sie dasselbe auf dem anderen Knoten; die Statusseite zeigt die Resynchronisation.",
    );
    answer(&app, &a, request, done).await
}

/// The force-primary form.
#[derive(Debug, Deserialize)]
pub struct ForceForm {
    #[serde(default)]
    confirm_name: String,
}

pub(super) async fn force_primary(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, ForceForm>,
) -> Response {
    let request = Request::ForcePrimary {
        confirm_name: form.confirm_name,
    };
    let done = a.lang.t(
        "This node's copy is the one to start from: it takes over (after fencing the other node, where configured).",
        "Die Kopie dieses Knotens ist die maßgebliche: Er übernimmt (nachdem er den anderen Knoten ausgeschaltet hat, wo eingerichtet).",
    );
    answer(&app, &a, request, done).await
}

/// Asks `request` and shows Home with what came of it.
async fn answer(app: &Arc<App>, a: &Visit, request: Request, done: &str) -> Response {
    let lang = a.lang;
    let msg = match ask_reply(app, a, request).await {
        Reply::Done => format!("<p class=\"ok\" role=\"status\">{}</p>", esc(done)),
        Reply::Refused(r) => refusal_html(lang, &r).1,
        other => error_p(&format!("unexpected answer: {other:?}")),
    };
    home_page(app, a, &msg).await
}

/// The fence confirmation form.
#[derive(Debug, Deserialize)]
pub struct FenceConfirmForm {
    #[serde(default)]
    node: String,
}

pub(super) async fn fence_confirm(
    State(app): State<Arc<App>>,
    Posted {
        visit: Cluster(a),
        form,
    }: Posted<Cluster, FenceConfirmForm>,
) -> Response {
    let lang = a.lang;
    let msg = match ask_reply(&app, &a, Request::FenceConfirm { node: form.node }).await {
        Reply::Done => format!(
            "<p class=\"ok\" role=\"status\">{}</p>",
            esc(lang.t(
                "Confirmed: this node takes over. The Status page shows how it goes.",
                "Bestätigt: Dieser Knoten übernimmt. Die Statusseite zeigt den Verlauf.",
            ))
        ),
        Reply::Refused(r) => refusal_html(lang, &r).1,
        other => error_p(&format!("unexpected answer: {other:?}")),
    };
    home_page(&app, &a, &msg).await
}

pub(super) async fn home(State(app): State<Arc<App>>, Cluster(a): Cluster) -> Response {
    home_page(&app, &a, "").await
}

async fn home_page(app: &Arc<App>, a: &Visit, message: &str) -> Response {
    let app = Arc::clone(app);
    let lang = a.lang;
    let settings = get_settings(&app, a).await.ok();
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
            format!("{message}{}", safety_banner(lang, s, a.csrf.as_str())),
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
         {warn}<table><tr><th></th><th>{node} ({this})</th><th>{peer_name}</th></tr>{h}{hc}{role}{alive}{k}{v}{hw}{rev}{repl}</table>",
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
        repl = replica_rows(lang, own.as_ref(), peer.as_ref()),
    );
    // The VEs this node runs, as clusterd's watch sees them (R8.2).
    let ves: String = status
        .as_ref()
        .map(|s| {
            s.ves
                .iter()
                .map(|v| {
                    line(
                        &format!("VE {}", v.id),
                        &super::ve_state_text(lang, &v.state),
                        "",
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let body = if ves.is_empty() {
        body
    } else {
        format!(
            "{body}<h2>{}</h2><table id=\"ve-health\">{ves}</table>",
            lang.t("VEs on this node", "VEs auf diesem Knoten")
        )
    };
    render(&app, lang, "/home", a, StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json_tail: &str) -> StatusJson {
        serde_json::from_str(&format!(
            r#"{{"node":"node2","role":"passive","resources":"stopped","resource_chain":[],"waiting":null,"data_good":true,"peer":{{"node":"node1","alive":false,"role":"active","resources":"running","data_good":true,"ping_reach":null,"config_matches":true}},"paths":[],"ping_nodes":[],"counters":{{"accepted":0,"bad_mac":0,"malformed":0,"replayed":0,"misdirected":0,"line_noise":0,"config_mismatch":0,"bad_requests":0}},"warnings":[]{json_tail}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn home_warns_when_fencing_is_off_and_offers_the_confirmation_after_a_failed_fence() {
        assert_eq!(safety_banner(Lang::En, &status(""), "t"), "");
        let off = safety_banner(Lang::En, &status(r#","fencing_off":true"#), "t");
        assert!(off.contains("Fencing is off"), "{off}");
        assert!(off.contains("split brain"), "{off}");
        let failed = safety_banner(
            Lang::En,
            &status(r#","fence":"failed: no answer from 10.0.0.21:623""#),
            "tok",
        );
        assert!(
            failed.contains("node1 silent and could not be powered off: check it and confirm"),
            "{failed}"
        );
        assert!(failed.contains("no answer from 10.0.0.21:623"));
        assert!(failed.contains("action=\"/fence-confirm\""));
        assert!(failed.contains("value=\"tok\""));
        assert!(!failed.contains("Fencing is off"));
        let sb = safety_banner(Lang::En, &status(r#","split_brain":true"#), "t");
        assert!(sb.contains("Split brain of the replicated data"), "{sb}");
        assert!(sb.contains("tandem split-brain resolve"), "{sb}");
        assert!(sb.contains("action=\"/split-brain/resolve\""), "{sb}");
        assert!(sb.contains("name=\"confirm_name\""), "{sb}");
        // A stale copy with the other node silent: the force-primary form.
        let mut stale = status("");
        stale.waiting =
            Some("peer silent, but replicated data is not known good: not taking over".into());
        let f = safety_banner(Lang::En, &stale, "t");
        assert!(f.contains("action=\"/force-primary\""), "{f}");
        stale.peer.alive = true;
        assert!(!safety_banner(Lang::En, &stale, "t").contains("/force-primary"));
    }

    #[test]
    fn both_copies_side_by_side() {
        let facts = |state: &str| NodeFacts {
            node: "node1".into(),
            hostname: "a".into(),
            kernel: "k".into(),
            version: "v".into(),
            hardware: "h".into(),
            revision: 1,
            replication: Some(tandem_api::ReplicaFacts {
                state: state.into(),
                generation_ids: "AAAA:BBBB:0:0".into(),
                out_of_sync_kib: 12,
                last_write: Some("Sun Dec  6 06:52:20 2026".into()),
            }),
        };
        assert_eq!(replica_rows(Lang::En, None, None), "");
        let rows = replica_rows(
            Lang::En,
            Some(&facts("StandAlone Primary/Unknown")),
            Some(&facts("StandAlone Secondary/Unknown")),
        );
        assert!(rows.contains("StandAlone Primary/Unknown"));
        assert!(rows.contains("StandAlone Secondary/Unknown"));
        assert!(rows.contains("AAAA:BBBB:0:0"));
        assert!(rows.contains("12 KiB"));
    }
}
