//! The privileged side's refusals in the operator's language, with the HTTP status
//! each one is answered with (one place for the mapping).

use axum::http::StatusCode;
use tandem_api::Refusal;

use crate::i18n::Lang;
use crate::page::{error_p, esc};

/// The page's paragraph for an archive's problems.
#[must_use]
pub fn problems_html(lang: Lang, problems: &[String]) -> String {
    let items: String = problems
        .iter()
        .map(|p| format!("<li>{}</li>", esc(p)))
        .collect();
    format!(
        "{}<ul>{items}</ul>",
        error_p(lang.t(
            "The archive was refused. Nothing was changed.",
            "Das Archiv wurde abgelehnt. Es wurde nichts geändert."
        ))
    )
}

/// A refusal of the privileged side, in the operator's language.
pub fn refusal_html(lang: Lang, r: &Refusal) -> (StatusCode, String) {
    match r {
        Refusal::Archive(ps) => (StatusCode::BAD_REQUEST, problems_html(lang, ps)),
        Refusal::Configured => (
            StatusCode::CONFLICT,
            error_p(lang.t(
                "This node is already configured: activation is only for a node in recovery mode. Nothing was changed.",
                "Dieser Knoten ist bereits konfiguriert: Aktivieren ist nur im Wiederherstellungsmodus möglich. Es wurde nichts geändert.",
            )),
        ),
        Refusal::NotConfigured => (
            StatusCode::CONFLICT,
            error_p(lang.t(
                "This node is not configured yet.",
                "Dieser Knoten ist noch nicht konfiguriert.",
            )),
        ),
        Refusal::Running => (
            StatusCode::CONFLICT,
            format!(
                "{}<p><a href=\"/progress\">{}</a></p>",
                error_p(lang.t(
                    "An activation is already running. Nothing was changed.",
                    "Eine Aktivierung läuft bereits. Es wurde nichts geändert.",
                )),
                lang.t("Show its progress", "Fortschritt anzeigen")
            ),
        ),
        Refusal::NameMismatch { expected } => (
            StatusCode::BAD_REQUEST,
            error_p(&lang.f(
                format!("To destroy the data, type the cluster name exactly as shown: {expected}. Nothing was changed."),
                format!("Um die Daten zu löschen, geben Sie den Clusternamen genau wie angezeigt ein: {expected}. Es wurde nichts geändert."),
            )),
        ),
        Refusal::NoDataArea => (
            StatusCode::OK,
            format!(
                "<p class=\"note\">{}</p>",
                lang.t(
                    "The data area /vz is not mounted on this node: the VEs run on the active node. Open the console there to see them.",
                    "Der Datenbereich /vz ist auf diesem Knoten nicht eingehängt: Die VEs laufen auf dem aktiven Knoten. Öffnen Sie dort die Konsole, um sie zu sehen.",
                )
            ),
        ),
        Refusal::NoVe101 => (
            StatusCode::CONFLICT,
            error_p(lang.t(
                "The configuration has no VE 101 (ves.ve101 with host name and address). Nothing was changed. Add it to the configuration and import it on both nodes first.",
                "Die Konfiguration enthält keine VE 101 (ves.ve101 mit Hostname und Adresse). Es wurde nichts geändert. Nehmen Sie sie zuerst in die Konfiguration auf und importieren Sie diese auf beiden Knoten.",
            )),
        ),
        Refusal::BadTemplate { name, available } => (
            StatusCode::BAD_REQUEST,
            error_p(&lang.f(
                format!(
                    "There is no OS template {name:?} to choose. Nothing was changed. Choose one of the list: {}.",
                    available.join(", ")
                ),
                format!(
                    "Eine OS-Vorlage {name:?} steht nicht zur Wahl. Es wurde nichts geändert. Wählen Sie eine aus der Liste: {}.",
                    available.join(", ")
                ),
            )),
        ),
        Refusal::VeExists(id) => (
            StatusCode::CONFLICT,
            error_p(&lang.f(
                format!("VE {id} exists already (its file or its root filesystem is there). Nothing was changed. The VE list shows its state."),
                format!("VE {id} gibt es bereits (ihre Datei oder ihr Wurzeldateisystem ist vorhanden). Es wurde nichts geändert. Die VE-Liste zeigt ihren Zustand."),
            )),
        ),
        Refusal::InstallRunning => (
            StatusCode::CONFLICT,
            format!(
                "{}<p><a href=\"{}\">{}</a></p>",
                error_p(lang.t(
                    "An installation of VE 101 is already running. Nothing else was started.",
                    "Eine Installation von VE 101 läuft bereits. Es wurde nichts weiteres gestartet.",
                )),
                crate::cluster::INSTALL_PROGRESS,
                lang.t("Show its progress", "Fortschritt anzeigen")
            ),
        ),
        Refusal::BadSecret => (
            StatusCode::BAD_REQUEST,
            error_p(&lang.f(
                format!(
                    "The passphrase must have {} to {} characters. Nothing was changed.",
                    tandem_api::MIN_EXPORT_PASSPHRASE,
                    tandem_api::MAX_SECRET
                ),
                format!(
                    "Die Passphrase muss {} bis {} Zeichen haben. Es wurde nichts geändert.",
                    tandem_api::MIN_EXPORT_PASSPHRASE,
                    tandem_api::MAX_SECRET
                ),
            )),
        ),
        Refusal::NoArchive => (
            StatusCode::BAD_REQUEST,
            error_p(lang.t(
                "Upload and check the configuration archive first. Nothing was changed.",
                "Laden Sie zuerst das Konfigurationsarchiv hoch und lassen Sie es prüfen. Es wurde nichts geändert.",
            )),
        ),
        Refusal::PeerNotNormal => (
            StatusCode::CONFLICT,
            error_p(lang.t(
                "The configuration archive can be downloaded only while both nodes run normally: the other node is not reachable or has another configuration. See the Status page.",
                "Das Konfigurationsarchiv lässt sich nur herunterladen, wenn beide Knoten normal laufen: Der andere Knoten ist nicht erreichbar oder hat eine andere Konfiguration. Siehe Statusseite.",
            )),
        ),
        Refusal::Switchover(reason) => (
            StatusCode::CONFLICT,
            error_p(&lang.f(
                format!("The cluster daemon refused the switchover: {reason}"),
                format!("Der Clusterdienst hat die Übergabe abgelehnt: {reason}"),
            )),
        ),
        Refusal::ClusterDown(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            error_p(&lang.f(
                format!("The cluster daemon does not answer ({why}). Nothing was changed. Check on the node's console that clusterd runs."),
                format!("Der Clusterdienst antwortet nicht ({why}). Es wurde nichts geändert. Prüfen Sie an der Konsole des Knotens, ob clusterd läuft."),
            )),
        ),
        Refusal::RecoveryMode(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            error_p(lang.t(
                "This node is not running as a cluster member (recovery mode): the cluster's state and settings are not available here. Check the node's console.",
                "Dieser Knoten läuft nicht als Clustermitglied (Wiederherstellungsmodus): Zustand und Einstellungen des Clusters sind hier nicht verfügbar. Prüfen Sie die Konsole des Knotens.",
            )),
        ),
        Refusal::NoSession | Refusal::WrongSession | Refusal::RootOnly => (
            StatusCode::FORBIDDEN,
            error_p(lang.t(
                "Your session does not allow this (it ended, or it belongs to the other mode). Nothing was changed. Log in again.",
                "Ihre Sitzung erlaubt das nicht (sie ist beendet oder gehört zum anderen Modus). Es wurde nichts geändert. Melden Sie sich erneut an.",
            )),
        ),
        Refusal::Malformed(_)
        | Refusal::Version { .. }
        | Refusal::TooLong(_)
        | Refusal::Payload(_) => (
            StatusCode::BAD_GATEWAY,
            error_p(&lang.f(
                format!("The cluster daemon did not understand the console ({r}). Nothing was changed. The web console and clusterd are of different versions: restart the node."),
                format!("Der Clusterdienst hat die Konsole nicht verstanden ({r}). Es wurde nichts geändert. Webkonsole und clusterd haben verschiedene Versionen: Starten Sie den Knoten neu."),
            )),
        ),
        Refusal::Failed(m) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_p(&lang.f(
                format!("{m}. Nothing was changed; try again, and if it persists restart the node."),
                format!("{m}. Es wurde nichts geändert; versuchen Sie es erneut und starten Sie den Knoten neu, wenn der Fehler bleibt."),
            )),
        ),
    }
}
