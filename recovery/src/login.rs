//! Logging in and out, the language links, and where the console may send a browser.
//!
//! The password is checked by clusterd ([`tandem_api::Request::Login`]), which also
//! counts failed logins per address and in all, makes the operator wait more after each
//! one and locks logins out after many; this page says which, and how the lockout is
//! lifted (on the node's console screen). The login form carries a CSRF token that must
//! equal a cookie of the login page (a cross-site form cannot send it).
//!
//! Redirects go only to this console's own pages: [`local_path`] takes a path of
//! letters, digits, `/`, `-`, `_` and `.` that starts with one `/`; anything else (a
//! scheme, `//host`, a backslash, an encoded tab or newline that a browser would drop)
//! sends the browser to the start page instead.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Extension, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tandem_api::{
    ADMIN_USER, FACTORY_PASSWORD, Lockout, LockoutScope, LoginRefusal, Reply, Request, SessionKind,
};

use crate::app::App;
use crate::i18n::{self, Lang};
use crate::page::{Frame, csrf_message, error_p, esc, page, plain};
use crate::visit::{SESSION_COOKIE, Visit, token_of};
use crate::web::Peer;

pub use tandem_api::same_secret as same;

/// `path` when it is a path of this console (see the module documentation), else `/`.
#[must_use]
pub fn local_path(path: &str) -> &str {
    let ok = path.len() <= 200
        && path.starts_with('/')
        && !path.starts_with("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
        && !path.split('/').any(|seg| seg == "..");
    if ok { path } else { "/" }
}

/// The `back` value of the language links for the page at `path`.
#[must_use]
pub fn lang_back(path: &str) -> String {
    esc(local_path(path))
}

/// Name of the cookie holding the login form's CSRF token (no session exists yet: the
/// form's token must equal this cookie, which a cross-site form cannot send).
const LOGIN_COOKIE: &str = "tandem_login";

fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the system's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The login form's token: the browser's own when it has a well-formed one, else new.
fn login_token(headers: &HeaderMap) -> String {
    i18n::cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(random_hex)
}

fn set_cookie(r: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The text of a lockout for the operator.
#[must_use]
pub fn lockout_text(lang: Lang, l: &Lockout) -> String {
    let minutes = l.seconds_left.div_ceil(60);
    let n = l.failures;
    let who = match &l.scope {
        LockoutScope::Address(a) => lang.f(
            format!("Logins from your address ({a}) are locked after {n} failed logins."),
            format!("Anmeldungen von Ihrer Adresse ({a}) sind nach {n} fehlgeschlagenen Anmeldungen gesperrt."),
        ),
        LockoutScope::Everyone => lang.f(
            format!("Logins are locked for every address after {n} failed logins in all."),
            format!("Anmeldungen sind nach insgesamt {n} fehlgeschlagenen Anmeldungen für alle Adressen gesperrt."),
        ),
    };
    lang.f(
        format!("{who} They open again in {minutes} minutes by themselves. To open them at once, choose 4 (lift the login lockout) on this node's console screen."),
        format!("{who} Sie öffnen sich in {minutes} Minuten von selbst wieder. Um sie sofort zu öffnen, wählen Sie 4 (Anmeldesperre aufheben) am Konsolenbildschirm dieses Knotens."),
    )
}

/// The login page with `message`, and the cookie that goes with its token.
fn login_response(
    app: &App,
    headers: &HeaderMap,
    configured: bool,
    status: StatusCode,
    message: Option<&str>,
) -> Response {
    let lang = Lang::of(headers);
    let token = login_token(headers);
    let msg = message.map(error_p).unwrap_or_default();
    let mode = if configured {
        lang.t(
            "This node is configured. Log in as <b>admin</b> with the management password.",
            "Dieser Knoten ist konfiguriert. Melden Sie sich als <b>admin</b> mit dem Verwaltungspasswort an.",
        )
    } else {
        lang.t(
            "This node is not configured yet (recovery mode). Log in as <b>admin</b> with the factory password.",
            "Dieser Knoten ist noch nicht konfiguriert (Wiederherstellungsmodus). Melden Sie sich als <b>admin</b> mit dem Werkspasswort an.",
        )
    };
    let f = Frame {
        lang,
        node: &app.node,
        path: "/login",
        csrf: None,
        cluster_menu: false,
        refresh: None,
    };
    let body = format!(
        "<p>{mode}</p>{msg}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <p><label>{user} <input name=\"user\" value=\"admin\" autocomplete=\"username\"></label></p>\
         <p><label>{pw} <input name=\"password\" type=\"password\" autocomplete=\"current-password\" autofocus></label></p>\
         <p><button type=\"submit\">{go}</button></p></form>",
        user = lang.t("User", "Benutzer"),
        pw = lang.t("Password", "Passwort"),
        go = lang.t("Log in", "Anmelden"),
        token = esc(&token),
    );
    let mut r = (status, Html(page(&f, lang.t("Log in", "Anmelden"), &body))).into_response();
    set_cookie(
        &mut r,
        &format!("{LOGIN_COOKIE}={token}; Path=/login; Secure; HttpOnly; SameSite=Strict"),
    );
    r
}

/// `/`: the start page of the session, or the login page.
pub async fn root(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(token) = token_of(&headers) else {
        return Redirect::to("/login").into_response();
    };
    match app.ask(Some(&token), Request::Session).await {
        Ok(Reply::Session(s)) if s.kind == SessionKind::Cluster => {
            Redirect::to("/home").into_response()
        }
        Ok(Reply::Session(_)) => Redirect::to("/upload").into_response(),
        _ => Redirect::to("/login?expired=1").into_response(),
    }
}

/// `GET /login`: the form, with why the last session ended or a lockout in force.
pub async fn login_page(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = Lang::of(&headers);
    let source = peer.map(|p| p.0.0);
    let lockout = match app.ask(None, Request::LoginLockout { source }).await {
        Ok(Reply::Lockout(Some(l))) => Some(lockout_text(lang, &l)),
        _ => None,
    };
    let msg = lockout.or_else(|| {
        q.contains_key("expired").then(|| {
            lang.t(
                "Your session has ended (30 minutes without use, 8 hours after login, a logout, or a change of the management password). Please log in again.",
                "Ihre Sitzung ist beendet (30 Minuten ohne Nutzung, 8 Stunden nach der Anmeldung, eine Abmeldung oder eine Änderung des Verwaltungspassworts). Bitte melden Sie sich erneut an.",
            )
            .to_owned()
        })
    });
    let configured = app.configured().await;
    login_response(&app, &headers, configured, StatusCode::OK, msg.as_deref())
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

/// `POST /login`.
pub async fn login(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = Lang::of(&headers);
    let configured = app.configured().await;
    let expected = i18n::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(&form.csrf, &expected) {
        return login_response(
            &app,
            &headers,
            configured,
            StatusCode::FORBIDDEN,
            Some(csrf_message(lang)),
        );
    }
    // Without the connection's address (a test's router), all count as one address.
    let source = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0.0);
    let req = Request::Login {
        user: form.user.clone(),
        password: form.password.as_str().into(),
        source,
    };
    let refusal = match app.ask(None, req).await {
        Ok(Reply::LoggedIn(s)) => {
            let to = match s.kind {
                SessionKind::Cluster => "/home",
                SessionKind::Recovery => "/upload",
            };
            let mut r = Redirect::to(to).into_response();
            set_cookie(
                &mut r,
                &format!(
                    "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
                    s.token.as_str(),
                    s.lifetime_left_s
                ),
            );
            return r;
        }
        Ok(Reply::LoginRefused(r)) => r,
        Ok(other) => {
            let msg = error_p(&format!("{other:?}"));
            return login_response(
                &app,
                &headers,
                configured,
                StatusCode::BAD_GATEWAY,
                Some(&msg),
            );
        }
        Err(e) => {
            let msg = lang.f(
                format!("The cluster daemon does not answer ({}): nobody can log in now. Check on the node's console that clusterd runs.", e.0),
                format!("Der Clusterdienst antwortet nicht ({}): Derzeit kann sich niemand anmelden. Prüfen Sie an der Konsole des Knotens, ob clusterd läuft.", e.0),
            );
            return login_response(
                &app,
                &headers,
                configured,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&msg),
            );
        }
    };
    let (status, msg, retry) = match refusal {
        LoginRefusal::Wrong { failures } => {
            let factory = same(&form.user, ADMIN_USER) && same(&form.password, FACTORY_PASSWORD);
            let msg = if factory && configured {
                lang.t(
                    "The factory password is no longer valid: this node is configured. Use the management password.",
                    "Das Werkspasswort gilt nicht mehr: Dieser Knoten ist konfiguriert. Verwenden Sie das Verwaltungspasswort.",
                )
                .to_owned()
            } else {
                lang.f(
                    format!("Wrong user name or password (failed attempt {failures}). Check the caps lock and try again."),
                    format!("Falscher Benutzername oder falsches Passwort ({failures}. Fehlversuch). Prüfen Sie die Feststelltaste und versuchen Sie es erneut."),
                )
            };
            (StatusCode::UNAUTHORIZED, msg, None)
        }
        LoginRefusal::Wait { seconds, failures } => (
            StatusCode::TOO_MANY_REQUESTS,
            lang.f(
                format!("Too many failed logins from your address ({failures}). This attempt was not checked. Wait {seconds} seconds, then try again."),
                format!("Zu viele fehlgeschlagene Anmeldungen von Ihrer Adresse ({failures}). Dieser Versuch wurde nicht geprüft. Warten Sie {seconds} Sekunden und versuchen Sie es dann erneut."),
            ),
            Some(seconds),
        ),
        LoginRefusal::Locked(l) => (
            StatusCode::LOCKED,
            lockout_text(lang, &l),
            Some(l.seconds_left),
        ),
    };
    let mut r = login_response(&app, &headers, configured, status, Some(&msg));
    if let Some(s) = retry
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// `GET /lang?set=de&back=/page`: sets the language cookie and goes back to the page
/// (a path of this console only).
pub async fn set_lang(Query(q): Query<HashMap<String, String>>) -> Response {
    let back = q.get("back").map_or("/", |b| local_path(b));
    let mut r = Redirect::to(back).into_response();
    if let Some(lang) = q.get("set").and_then(|s| Lang::from_code(s)) {
        set_cookie(
            &mut r,
            &format!(
                "{}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=31536000",
                i18n::COOKIE,
                lang.code()
            ),
        );
    }
    r
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {}

/// `POST /logout`: ends the session at clusterd.
pub async fn logout(
    State(app): State<Arc<App>>,
    posted: crate::visit::Posted<Visit, CsrfForm>,
) -> Response {
    let _ = app.ask(Some(&posted.visit.token), Request::Logout).await;
    let mut r = Redirect::to("/login").into_response();
    set_cookie(
        &mut r,
        &format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// Any other path.
pub async fn not_found(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    let body = lang.t(
        "<p>No such page. <a href=\"/\">Start page</a></p>",
        "<p>Diese Seite gibt es nicht. <a href=\"/\">Startseite</a></p>",
    );
    let title = lang.t("Not found", "Nicht gefunden");
    (
        StatusCode::NOT_FOUND,
        Html(plain(&app.node, lang, title, body)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_console_are_redirect_targets() {
        for ok in ["/", "/home", "/ves/install/progress", "/login", "/a-b_c.d"] {
            assert_eq!(local_path(ok), ok);
        }
        for bad in [
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil",
            "/\\evil",
            "\\\\evil",
            "https://evil.example/",
            "evil",
            "",
            "/%09/evil",
            "/a?x=1",
            "/a#x",
            "/../etc",
            "/ home",
            &format!("/{}", "a".repeat(300)),
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }
}
