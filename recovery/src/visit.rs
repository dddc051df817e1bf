//! One extractor for every page behind the login: the session (checked by clusterd on
//! every request: it alone opens and ends sessions), the operator's language, and for
//! a form its CSRF token.
//!
//! - [`Cluster`] / [`Recovery`]: a page of a cluster or a recovery session; anybody
//!   else goes to the login page (saying that the session ended when the browser still
//!   had one), a session of the other kind to its own start page.
//! - [`Posted`]: a form posted by such a session; a form without the session's CSRF
//!   token changes nothing and says so on its page (403).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tandem_api::{Refusal, Reply, Request as ApiRequest, SessionKind, Token};

use crate::app::App;
use crate::i18n::{self, Lang};
use crate::page::{Frame, csrf_message, error_p, page, plain};

/// Name of the session cookie (its value is clusterd's session token).
pub const SESSION_COOKIE: &str = "tandem_session";

/// A request of a logged-in operator.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The session's token (sent with every request to clusterd).
    pub token: Token,
    /// The token its forms carry.
    pub csrf: Token,
    /// Which pages it opens.
    pub kind: SessionKind,
    /// The operator's language.
    pub lang: Lang,
}

/// The session token the browser sent, if it has the shape of one.
#[must_use]
pub fn token_of(headers: &HeaderMap) -> Option<Token> {
    i18n::cookie(headers, SESSION_COOKIE).and_then(|t| Token::parse(&t))
}

/// A page for when clusterd does not answer.
fn no_daemon_page(app: &App, lang: Lang, why: &str) -> Response {
    let msg = error_p(&lang.f(
        format!("The cluster daemon does not answer ({why}). Check on the node's console that clusterd runs, then reload this page."),
        format!("Der Clusterdienst antwortet nicht ({why}). Prüfen Sie an der Konsole des Knotens, ob clusterd läuft, und laden Sie diese Seite dann neu."),
    ));
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(plain(
            &app.node,
            lang,
            lang.t("Not available", "Nicht verfügbar"),
            &msg,
        )),
    )
        .into_response()
}

impl FromRequestParts<Arc<App>> for Visit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Visit, Response> {
        let lang = Lang::of(&parts.headers);
        let Some(token) = token_of(&parts.headers) else {
            return Err(if i18n::cookie(&parts.headers, SESSION_COOKIE).is_some() {
                Redirect::to("/login?expired=1").into_response()
            } else {
                Redirect::to("/login").into_response()
            });
        };
        match app.ask(Some(&token), ApiRequest::Session).await {
            Ok(Reply::Session(s)) => Ok(Visit {
                token,
                csrf: s.csrf,
                kind: s.kind,
                lang,
            }),
            Ok(Reply::Refused(Refusal::NoSession)) => {
                Err(Redirect::to("/login?expired=1").into_response())
            }
            Ok(other) => Err(no_daemon_page(app, lang, &format!("{other:?}"))),
            Err(e) => Err(no_daemon_page(app, lang, &e.0)),
        }
    }
}

/// A page of a cluster session.
#[derive(Debug, Clone)]
pub struct Cluster(pub Visit);

/// A page of a recovery session.
#[derive(Debug, Clone)]
pub struct Recovery(pub Visit);

impl FromRequestParts<Arc<App>> for Cluster {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Cluster, Response> {
        let v = Visit::from_request_parts(parts, app).await?;
        if v.kind != SessionKind::Cluster {
            return Err(Redirect::to("/upload").into_response());
        }
        Ok(Cluster(v))
    }
}

impl FromRequestParts<Arc<App>> for Recovery {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Recovery, Response> {
        let v = Visit::from_request_parts(parts, app).await?;
        if v.kind != SessionKind::Recovery {
            return Err(Redirect::to("/home").into_response());
        }
        Ok(Recovery(v))
    }
}

/// Gives the visit of a page extractor.
pub trait HasVisit {
    /// The visit.
    fn visit(&self) -> &Visit;
}

impl HasVisit for Visit {
    fn visit(&self) -> &Visit {
        self
    }
}

impl HasVisit for Cluster {
    fn visit(&self) -> &Visit {
        &self.0
    }
}

impl HasVisit for Recovery {
    fn visit(&self) -> &Visit {
        &self.0
    }
}

/// The page a form lives on, for the answer to a refused form.
#[must_use]
pub fn form_page(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "network" => "/network",
        "notification" => "/notification",
        "passwords" => "/passwords",
        "ves" => "/ves",
        "maintenance" => "/maintenance",
        "upload" | "activate" => "/upload",
        "fence-confirm" | "split-brain" | "force-primary" => "/home",
        _ => "/",
    }
}

/// The page for a form whose CSRF token is missing or wrong: nothing was done.
#[must_use]
pub fn csrf_refused(app: &App, v: &Visit, path: &str) -> Response {
    let back = form_page(path);
    let lang = v.lang;
    let title = crate::page::MENU
        .iter()
        .find(|(p, _, _)| *p == back)
        .map_or(
            lang.t("Form refused", "Formular abgelehnt"),
            |(_, en, de)| lang.t(en, de),
        );
    let f = Frame {
        lang,
        node: &app.node,
        path: back,
        csrf: Some(v.csrf.as_str()),
        cluster_menu: v.kind == SessionKind::Cluster,
        refresh: None,
    };
    let body = format!(
        "{}<p><a href=\"{back}\">{}</a></p>",
        error_p(csrf_message(lang)),
        lang.t("Back to the page", "Zurück zur Seite")
    );
    (StatusCode::FORBIDDEN, Html(page(&f, title, &body))).into_response()
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A form posted by a session of kind `V`, its CSRF token checked.
#[derive(Debug)]
pub struct Posted<V, T> {
    /// Who posted it.
    pub visit: V,
    /// The form.
    pub form: T,
}

impl<V, T> FromRequest<Arc<App>> for Posted<V, T>
where
    V: FromRequestParts<Arc<App>, Rejection = Response> + HasVisit + Send,
    T: DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let visit = V::from_request_parts(&mut parts, app).await?;
        let path = parts.uri.path().to_owned();
        let bytes = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        let csrf: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        if !crate::login::same(&csrf.csrf, visit.visit().csrf.as_str()) {
            return Err(csrf_refused(app, visit.visit(), &path));
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the form could not be read: {e}"),
            )
                .into_response()
        })?;
        Ok(Posted { visit, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_form_goes_back_to_its_page() {
        assert_eq!(form_page("/maintenance/power"), "/maintenance");
        assert_eq!(form_page("/passwords/ve101"), "/passwords");
        assert_eq!(form_page("/ves/install"), "/ves");
        assert_eq!(form_page("/activate"), "/upload");
        assert_eq!(form_page("/network"), "/network");
        assert_eq!(form_page("/elsewhere"), "/");
    }
}
