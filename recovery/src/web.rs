//! The web console's routes, sessions and the page frame shared by both modes.
//!
//! Two modes, decided per request by whether the node has a committed configuration:
//!
//! - **Recovery** (unconfigured, R2.4/R3.3–R3.5): `admin` with the factory password
//!   `relation` logs in, uploads the cluster configuration archive
//!   ([`crate::recovery_pages`]), and activates it.
//! - **Cluster** (configured, R9): `admin` with the management password (an argon2id hash
//!   in the configuration, checked by the privileged side) reaches the management pages
//!   ([`crate::cluster`]).
//!
//! A session remembers the mode it was opened in: a session opened with the factory
//! password never reaches a cluster page, even after its own activation committed the
//! configuration.
//!
//! Rules for every page: sessions are random tokens in `Secure; HttpOnly;
//! SameSite=Strict` cookies and expire after [`SESSION_IDLE`] without use (the login page
//! then says so); every form carries the session's CSRF token, and a POST without the
//! right one changes nothing and says so on the same page; failed logins are slowed down
//! per client address; every text rendered is HTML-escaped; no secret (password, hash,
//! passphrase, key) is ever rendered. Pages work without JavaScript.
//!
//! The web process runs unprivileged: whatever needs root goes through
//! [`crate::helper`]; cluster state comes from clusterd's control socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Extension, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::helper::{ArchiveSummary, Call, Privileged, Reply};
use crate::i18n::{self, Lang};

/// User name of the management console.
pub const ADMIN: &str = "admin";
/// The factory password, valid only while the node is unconfigured.
pub const FACTORY_PASSWORD: &str = "relation";
/// Largest upload accepted: the archive limit plus room for the form.
pub const UPLOAD_LIMIT: usize = tandem_config::archive::MAX_ARCHIVE_BYTES + 64 * 1024;
/// How long a session lives without use.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Failed logins allowed before the delay grows.
const FREE_FAILURES: u32 = 3;
/// Longest delay between login attempts.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// Name of the session cookie.
const SESSION_COOKIE: &str = "tandem_session";

/// The peer address of a connection (set per connection by the server).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// An archive that passed the upload check, kept for activation.
#[derive(Clone)]
pub(crate) struct Checked {
    pub(crate) archive: Arc<Vec<u8>>,
    pub(crate) passphrase: Option<String>,
    pub(crate) summary: ArchiveSummary,
}

pub(crate) struct Session {
    pub(crate) csrf: String,
    last_used: Instant,
    /// Opened with the management password (cluster mode), not the factory one.
    pub(crate) cluster: bool,
    pub(crate) checked: Option<Checked>,
}

#[derive(Default)]
struct Failures {
    count: u32,
    next_allowed: Option<Instant>,
}

/// Shared state of the web console.
pub struct App {
    pub(crate) node: String,
    pub(crate) helper: Box<dyn Privileged>,
    /// clusterd's control socket.
    pub(crate) control: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Time source, replaceable in tests.
    now: Box<dyn Fn() -> Instant + Send + Sync>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("node", &self.node)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl App {
    /// A console for `node` whose privileged actions go to `helper`.
    pub fn new(node: &str, helper: Box<dyn Privileged>) -> Self {
        Self::with_clock(node, helper, Box::new(Instant::now))
    }

    /// As [`App::new`] with an injected clock.
    pub fn with_clock(
        node: &str,
        helper: Box<dyn Privileged>,
        now: Box<dyn Fn() -> Instant + Send + Sync>,
    ) -> Self {
        Self {
            node: node.to_owned(),
            helper,
            control: PathBuf::from("/run/tandem/control.sock"),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            now,
        }
    }

    /// Talks to clusterd on `path`.
    #[must_use]
    pub fn with_control(mut self, path: PathBuf) -> Self {
        self.control = path;
        self
    }

    /// Whether the node has a committed configuration (asked of the privileged side,
    /// which alone can read the store). When it cannot answer, the node counts as
    /// configured: the factory password must never open a configured node.
    pub(crate) async fn configured(self: &Arc<Self>) -> bool {
        match self.ask(Call::Configured, Vec::new()).await.0 {
            Reply::Configured(c) => c,
            _ => true,
        }
    }

    /// One call to the privileged side, off the event loop (scrypt and argon2 are slow
    /// by design).
    pub(crate) async fn ask(self: &Arc<Self>, call: Call, payload: Vec<u8>) -> (Reply, Vec<u8>) {
        let app = Arc::clone(self);
        tokio::task::spawn_blocking(move || app.helper.call(call, payload))
            .await
            .unwrap_or_else(|_| {
                (
                    Reply::Refused(crate::helper::Refusal::Failed(
                        "the request to the privileged side failed unexpectedly".into(),
                    )),
                    Vec::new(),
                )
            })
    }

    /// Runs `f` on the session of `id`.
    pub(crate) fn with_session<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        self.sessions.lock().ok()?.get_mut(id).map(f)
    }
}

fn token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The routes of the console.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login_page).post(login))
        .route("/lang", get(set_lang))
        .route("/logout", post(logout))
        .merge(crate::recovery_pages::routes())
        .merge(crate::cluster::routes())
        .fallback(not_found)
        .with_state(app)
        .layer(axum::middleware::map_response(security_headers))
}

/// On every answer: no framing, no scripts or outside resources, no caching of pages
/// that show the node's state, no referrer.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// What a page is rendered for.
#[derive(Debug, Clone)]
pub(crate) struct Frame<'a> {
    pub(crate) lang: Lang,
    pub(crate) node: &'a str,
    /// Path of this page, for the language links.
    pub(crate) path: &'a str,
    /// The session's CSRF token, when logged in (for the logout form).
    pub(crate) csrf: Option<&'a str>,
    /// Show the cluster menu.
    pub(crate) cluster_menu: bool,
    /// Seconds after which the page reloads itself.
    pub(crate) refresh: Option<u32>,
}

/// The cluster menu: path, English, German.
pub const MENU: &[(&str, &str, &str)] = &[
    ("/home", "Home", "Start"),
    ("/network", "Network", "Netzwerk"),
    ("/ves", "VEs", "VEs"),
    ("/notification", "Notification", "Benachrichtigung"),
    ("/passwords", "Passwords", "Passwörter"),
    ("/updates", "Updates", "Updates"),
    ("/maintenance", "Maintenance", "Wartung"),
    ("/status", "Status", "Status"),
];

/// A whole page: title, menu, language links, logout, body.
pub(crate) fn page(f: &Frame<'_>, title: &str, body: &str) -> String {
    let lang = f.lang;
    let refresh = f
        .refresh
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    let menu = if f.cluster_menu {
        let items: String = MENU
            .iter()
            .map(|(p, en, de)| {
                let cur = if *p == f.path {
                    " aria-current=\"page\""
                } else {
                    ""
                };
                format!("<a href=\"{p}\"{cur}>{}</a> ", esc(lang.t(en, de)))
            })
            .collect();
        format!("<nav class=\"menu\">{items}</nav>")
    } else {
        String::new()
    };
    let back = esc(f.path);
    let langs = format!(
        "<a href=\"/lang?set=de&amp;back={back}\" lang=\"de\">Deutsch</a> | \
         <a href=\"/lang?set=en&amp;back={back}\" lang=\"en\">English</a>"
    );
    let logout = f
        .csrf
        .map(|c| {
            format!(
                " <form class=\"inline\" method=\"post\" action=\"/logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">{}</button></form>",
                esc(c),
                lang.t("Log out", "Abmelden")
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"{code}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">{refresh}\
         <title>{title} - {node}</title>\
         <style>body{{font-family:sans-serif;max-width:52em;margin:1em auto;padding:0 1em}}\
         .error{{color:#b00;font-weight:bold}} .ok{{color:#060;font-weight:bold}} .note{{color:#555}}\
         .warn{{background:#fff3cd;border:1px solid #c90;padding:.5em}}\
         .menu a{{margin-right:.6em}} .menu a[aria-current]{{font-weight:bold}}\
         .top{{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ccc}}\
         form.inline{{display:inline}} table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}\
         pre{{background:#f4f4f4;padding:.5em;white-space:pre-wrap}}</style></head>\
         <body><div class=\"top\"><span>tandem · {node}</span><span>{langs}{logout}</span></div>\
         {menu}<h1>{title}</h1>{body}</body></html>",
        code = lang.code(),
        title = esc(title),
        node = esc(f.node),
    )
}

/// A paragraph with an error message (escaped).
pub(crate) fn error_p(msg: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>", esc(msg))
}

/// The message for a form whose CSRF token is missing or wrong.
pub(crate) fn csrf_message(lang: Lang) -> &'static str {
    lang.t(
        "The form's security token is missing or does not match your session. Nothing was changed. Send the form again from this page.",
        "Das Sicherheitsmerkmal des Formulars fehlt oder passt nicht zu Ihrer Sitzung. Es wurde nichts geändert. Senden Sie das Formular von dieser Seite aus erneut.",
    )
}

/// Constant-time comparison of secrets.
pub(crate) fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

/// A logged-in request: session id, CSRF token, mode of the session.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    pub(crate) id: String,
    pub(crate) csrf: String,
    pub(crate) cluster: bool,
}

/// The session of a request, or where to send the browser: to the login page, saying
/// that the session expired when the browser still had one.
pub(crate) fn auth(app: &App, headers: &HeaderMap) -> Result<Auth, Redirect> {
    let Some(id) = i18n::cookie(headers, SESSION_COOKIE) else {
        return Err(Redirect::to("/login"));
    };
    let now = (app.now)();
    let found = app.sessions.lock().ok().and_then(|mut sessions| {
        sessions.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
        let s = sessions.get_mut(&id)?;
        s.last_used = now;
        Some(Auth {
            id: id.clone(),
            csrf: s.csrf.clone(),
            cluster: s.cluster,
        })
    });
    found.ok_or_else(|| Redirect::to("/login?expired=1"))
}

async fn root(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match auth(&app, &headers) {
        Ok(a) if a.cluster => Redirect::to("/home").into_response(),
        Ok(_) => Redirect::to("/upload").into_response(),
        Err(r) => r.into_response(),
    }
}

/// Name of the cookie holding the login form's CSRF token (no session exists yet: the
/// form's token must equal this cookie, which a cross-site form cannot send).
const LOGIN_COOKIE: &str = "tandem_login";

/// The login form's token: the browser's own when it has a well-formed one, else new.
fn login_token(headers: &HeaderMap) -> String {
    i18n::cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(token)
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
    let mut r = (
        status,
        Html(login_form(app, lang, configured, &token, message)),
    )
        .into_response();
    let cookie = format!("{LOGIN_COOKIE}={token}; Path=/login; Secure; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn login_form(
    app: &App,
    lang: Lang,
    configured: bool,
    token: &str,
    message: Option<&str>,
) -> String {
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
    page(
        &Frame {
            lang,
            node: &app.node,
            path: "/login",
            csrf: None,
            cluster_menu: false,
            refresh: None,
        },
        lang.t("Log in", "Anmelden"),
        &format!(
            "<p>{mode}</p>{msg}<form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <p><label>{user} <input name=\"user\" value=\"admin\" autocomplete=\"username\"></label></p>\
             <p><label>{pw} <input name=\"password\" type=\"password\" autocomplete=\"current-password\" autofocus></label></p>\
             <p><button type=\"submit\">{go}</button></p></form>",
            user = lang.t("User", "Benutzer"),
            pw = lang.t("Password", "Passwort"),
            go = lang.t("Log in", "Anmelden"),
            token = esc(token),
        ),
    )
}

async fn login_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = Lang::of(&headers);
    let msg = q.contains_key("expired").then(|| {
        lang.t(
            "Your session has expired (30 minutes without use) or was ended. Please log in again.",
            "Ihre Sitzung ist abgelaufen (30 Minuten ohne Nutzung) oder wurde beendet. Bitte melden Sie sich erneut an.",
        )
    });
    let configured = app.configured().await;
    login_response(&app, &headers, configured, StatusCode::OK, msg)
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

fn session_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

async fn login(
    State(app): State<Arc<App>>,
    Extension(Peer(ip)): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = Lang::of(&headers);
    let now = (app.now)();
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
    if let Some(wait) = app
        .failures
        .lock()
        .ok()
        .and_then(|f| f.get(&ip).and_then(|x| x.next_allowed))
        .and_then(|t| t.checked_duration_since(now))
        .filter(|d| !d.is_zero())
    {
        let secs = u64::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u64::MAX);
        let mut r = login_response(
            &app,
            &headers,
            configured,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&lang.f(
                format!("Too many failed logins from your address. Wait {secs} seconds, then try again."),
                format!("Zu viele fehlgeschlagene Anmeldungen von Ihrer Adresse. Warten Sie {secs} Sekunden und versuchen Sie es dann erneut."),
            )),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let user_ok = same(&form.user, ADMIN);
    let factory = same(&form.password, FACTORY_PASSWORD);
    // Always ask the privileged side, also for a wrong user name: the answer
    // takes as long either way. It knows the console-set password (R13.1),
    // the configuration's management password and the factory password.
    let pw_ok = matches!(
        app.ask(
            Call::VerifyAdmin {
                password: form.password.clone()
            },
            Vec::new()
        )
        .await
        .0,
        Reply::Verified(true)
    );
    if user_ok && pw_ok {
        if let Ok(mut f) = app.failures.lock() {
            f.remove(&ip);
        }
        let id = token();
        if let Ok(mut s) = app.sessions.lock() {
            s.insert(
                id.clone(),
                Session {
                    csrf: token(),
                    last_used: now,
                    cluster: configured,
                    checked: None,
                },
            );
        }
        let to = if configured { "/home" } else { "/upload" };
        let mut r = Redirect::to(to).into_response();
        if let Ok(v) = HeaderValue::from_str(&session_cookie(&id)) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    let count = {
        let Ok(mut f) = app.failures.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let e = f.entry(ip).or_default();
        e.count += 1;
        let delay = if e.count <= FREE_FAILURES {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(1u64 << (e.count - FREE_FAILURES).min(6)).min(MAX_DELAY)
        };
        e.next_allowed = Some(now + delay);
        e.count
    };
    let msg = if user_ok && factory && configured {
        lang.t(
            "The factory password is no longer valid: this node is configured. Use the management password.",
            "Das Werkspasswort gilt nicht mehr: Dieser Knoten ist konfiguriert. Verwenden Sie das Verwaltungspasswort.",
        )
        .to_owned()
    } else {
        lang.f(
            format!("Wrong user name or password (failed attempt {count}). Check the caps lock and try again."),
            format!("Falscher Benutzername oder falsches Passwort ({count}. Fehlversuch). Prüfen Sie die Feststelltaste und versuchen Sie es erneut."),
        )
    };
    login_response(
        &app,
        &headers,
        configured,
        StatusCode::UNAUTHORIZED,
        Some(&msg),
    )
}

/// Sets the language cookie and goes back to the page (a local path only).
async fn set_lang(Query(q): Query<HashMap<String, String>>) -> Response {
    let back = q
        .get("back")
        .filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'))
        .map_or("/", String::as_str);
    let mut r = Redirect::to(back).into_response();
    if let Some(lang) = q.get("set").and_then(|s| Lang::from_code(s)) {
        let cookie = format!(
            "{}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=31536000",
            i18n::COOKIE,
            lang.code()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    r
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let lang = Lang::of(&headers);
    if let Ok(a) = auth(&app, &headers) {
        if !same(&a.csrf, &form.csrf) {
            let f = Frame {
                lang,
                node: &app.node,
                path: "/",
                csrf: Some(&a.csrf),
                cluster_menu: a.cluster,
                refresh: None,
            };
            return (
                StatusCode::FORBIDDEN,
                Html(page(
                    &f,
                    lang.t("Log out", "Abmelden"),
                    &error_p(csrf_message(lang)),
                )),
            )
                .into_response();
        }
        if let Ok(mut s) = app.sessions.lock() {
            s.remove(&a.id);
        }
    }
    let mut r = Redirect::to("/login").into_response();
    let gone = format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn not_found(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    let f = Frame {
        lang,
        node: &app.node,
        path: "/",
        csrf: None,
        cluster_menu: false,
        refresh: None,
    };
    (
        StatusCode::NOT_FOUND,
        Html(page(
            &f,
            lang.t("Not found", "Nicht gefunden"),
            lang.t(
                "<p>No such page. <a href=\"/\">Start page</a></p>",
                "<p>Diese Seite gibt es nicht. <a href=\"/\">Startseite</a></p>",
            ),
        )),
    )
        .into_response()
}
