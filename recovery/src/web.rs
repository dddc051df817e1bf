//! The web console's pages and their rules (recovery mode, R2.4/R3.3).
//!
//! Recovery mode: `admin` with the factory password `relation` logs in only
//! while the node is unconfigured and lands on the upload page. Failed logins
//! are slowed down per client address. Sessions are random tokens in
//! Secure, HttpOnly, SameSite=Strict cookies; every form carries the
//! session's CSRF token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Extension, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

/// Whether this node has an active configuration.
pub trait NodeState: Send + Sync {
    /// True once a configuration archive has been activated.
    fn configured(&self) -> bool;
}

/// Reads the state from the configuration partition.
#[derive(Debug, Clone)]
pub struct ConfigDir(pub PathBuf);

impl NodeState for ConfigDir {
    fn configured(&self) -> bool {
        tandem_config::store::is_configured(&self.0)
    }
}

/// The peer address of a connection (set per connection by the server).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

struct Session {
    csrf: String,
    last_used: Instant,
}

#[derive(Default)]
struct Failures {
    count: u32,
    next_allowed: Option<Instant>,
}

/// Shared state of the web console.
pub struct App {
    node: String,
    state: Box<dyn NodeState>,
    /// The configuration store an upload is checked against.
    store_dir: Option<PathBuf>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Time source, replaceable in tests.
    now: Box<dyn Fn() -> Instant + Send + Sync>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl App {
    /// A console for `node` with the given state source.
    pub fn new(node: &str, state: Box<dyn NodeState>) -> Self {
        Self::with_clock(node, state, Box::new(Instant::now))
    }

    /// As [`App::new`] with an injected clock.
    pub fn with_clock(
        node: &str,
        state: Box<dyn NodeState>,
        now: Box<dyn Fn() -> Instant + Send + Sync>,
    ) -> Self {
        Self {
            node: node.to_owned(),
            state,
            store_dir: None,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            now,
        }
    }
}

fn token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl App {
    /// Checks uploads against the configuration store in `dir`; a password set on the
    /// node's console is read there too ([`crate::admin`]).
    #[must_use]
    pub fn with_store(mut self, dir: PathBuf) -> Self {
        self.store_dir = Some(dir);
        self
    }
}

/// The routes of the console.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login_page).post(login))
        .route(
            "/upload",
            get(upload_page)
                .post(upload)
                .layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route("/logout", post(logout))
        .fallback(not_found)
        .with_state(app)
}

fn page(title: &str, node: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} - {node}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}\
         .error{{color:#b00;font-weight:bold}} .note{{color:#555}}</style></head>\
         <body><h1>{node}: {title}</h1>{body}</body></html>",
        title = esc(title),
        node = esc(node),
    )
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn session_of(app: &App, headers: &HeaderMap) -> Option<(String, String)> {
    let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
    let id = cookie
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "tandem_session")
        .map(|(_, v)| v.to_owned())?;
    let now = (app.now)();
    let mut sessions = app.sessions.lock().ok()?;
    sessions.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
    let s = sessions.get_mut(&id)?;
    s.last_used = now;
    Some((id, s.csrf.clone()))
}

async fn root(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match session_of(&app, &headers) {
        Some(_) => Redirect::to("/upload").into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

fn login_form(app: &App, message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    let mode = if app.state.configured() {
        "<p>This node is configured. Log in with the management password.</p>"
    } else {
        "<p>This node is not configured yet (recovery mode). Log in as <b>admin</b> with the factory password.</p>"
    };
    page(
        "Log in",
        &app.node,
        &format!(
            "{mode}{msg}<form method=\"post\" action=\"/login\">\
             <p><label>User <input name=\"user\" value=\"admin\" autocomplete=\"username\"></label></p>\
             <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" autofocus></label></p>\
             <p><button type=\"submit\">Log in</button></p></form>"
        ),
    )
}

async fn login_page(State(app): State<Arc<App>>) -> Html<String> {
    Html(login_form(&app, None))
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
}

fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

async fn login(
    State(app): State<Arc<App>>,
    Extension(Peer(ip)): Extension<Peer>,
    Form(form): Form<LoginForm>,
) -> Response {
    let now = (app.now)();
    if let Some(wait) = app
        .failures
        .lock()
        .ok()
        .and_then(|f| f.get(&ip).and_then(|x| x.next_allowed))
        .and_then(|t| t.checked_duration_since(now))
        .filter(|d| !d.is_zero())
    {
        let secs = u64::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u64::MAX);
        let html = login_form(
            &app,
            Some(&format!(
                "Too many failed logins from your address. Wait {secs} seconds, then try again."
            )),
        );
        let mut r = (StatusCode::TOO_MANY_REQUESTS, Html(html)).into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let configured = app.state.configured();
    let user_ok = same(&form.user, ADMIN);
    // The console-set password (R13.1) when there is one, else the factory password.
    let pw = crate::admin::check(app.store_dir.as_deref(), &form.password);
    if user_ok && pw.opens(configured) {
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
                },
            );
        }
        let mut r = Redirect::to("/upload").into_response();
        let cookie = format!("tandem_session={id}; Path=/; Secure; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
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
    let msg = if user_ok && pw == crate::admin::AdminPassword::Factory && configured {
        "The factory password is no longer valid: this node is configured. Use the management password."
            .to_owned()
    } else {
        format!(
            "Wrong user name or password (failed attempt {count}). Check the caps lock and try again."
        )
    };
    (StatusCode::UNAUTHORIZED, Html(login_form(&app, Some(&msg)))).into_response()
}

async fn upload_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some((_, csrf)) = session_of(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    Html(page(
        "Upload the cluster configuration",
        &app.node,
        &format!(
            "<p>This node runs in recovery mode. Upload the cluster configuration archive \
             (<code>tkcluster_*.tar</code>) downloaded from the running cluster, then activate it.</p>\
             <form method=\"post\" action=\"/upload\" enctype=\"multipart/form-data\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p><label>Archive <input type=\"file\" name=\"archive\" required></label></p>\
             <p><label>Passphrase <input type=\"password\" name=\"passphrase\"></label></p>\
             <p><button type=\"submit\">Upload and check</button></p></form>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\">Log out</button></form>"
        ),
    ))
    .into_response()
}

fn upload_result(app: &App, status: StatusCode, body: &str) -> Response {
    (
        status,
        Html(page(
            "Upload the cluster configuration",
            &app.node,
            &format!("{body}<p><a href=\"/upload\">Back to the upload page</a></p>"),
        )),
    )
        .into_response()
}

fn problems_html(problems: &[String]) -> String {
    let items: String = problems
        .iter()
        .map(|p| format!("<li>{}</li>", esc(p)))
        .collect();
    format!(
        "<p class=\"error\" role=\"alert\">The archive was refused. Nothing was changed.</p><ul>{items}</ul>"
    )
}

async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    mut form: axum::extract::Multipart,
) -> Response {
    let Some((_, csrf)) = session_of(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let (mut token, mut passphrase, mut archive) = (None, None, None);
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let Ok(bytes) = field.bytes().await else {
                    return upload_result(
                        &app,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &problems_html(&[format!(
                            "archive: the upload is larger than {} MiB or was cut off",
                            UPLOAD_LIMIT >> 20
                        )]),
                    );
                };
                match name.as_str() {
                    "csrf" => token = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "passphrase" => passphrase = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "archive" => archive = Some(bytes.to_vec()),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => {
                return upload_result(
                    &app,
                    StatusCode::BAD_REQUEST,
                    &problems_html(&[format!(
                        "archive: the upload is not a complete form or is larger than {} MiB",
                        UPLOAD_LIMIT >> 20
                    )]),
                );
            }
        }
    }
    if !token.is_some_and(|t| same(&t, &csrf)) {
        return upload_result(
            &app,
            StatusCode::FORBIDDEN,
            "<p class=\"error\">The form's security token does not match your session. Reload the page and upload again. Nothing was changed.</p>",
        );
    }
    let Some(archive) = archive.filter(|a| !a.is_empty()) else {
        return upload_result(
            &app,
            StatusCode::BAD_REQUEST,
            &problems_html(&["archive: no file was chosen".into()]),
        );
    };
    let Some(store_dir) = app.store_dir.clone() else {
        return upload_result(
            &app,
            StatusCode::SERVICE_UNAVAILABLE,
            "<p class=\"error\">This console has no configuration store.</p>",
        );
    };
    let passphrase = passphrase.filter(|p| !p.is_empty());
    // scrypt makes checking an encrypted archive deliberately slow: keep it
    // off the server's event loop.
    let checked = tokio::task::spawn_blocking(move || {
        let store = tandem_config::store::Store::open(&store_dir)
            .map_err(|e| vec![format!("the configuration store: {e}")])?;
        let opts = tandem_config::store::ImportOptions {
            mode: tandem_config::store::ImportMode::DryRun,
            allow_other_cluster: false,
        };
        tandem_config::store::import_archive(&archive, passphrase.as_deref(), &store, &opts)
            .map_err(|e| {
                let ps: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
                if ps.is_empty() {
                    vec![e.to_string()]
                } else {
                    ps
                }
            })
    })
    .await;
    match checked {
        Ok(Ok(report)) => {
            let c = &report.config;
            let n1 = &c.network.node1;
            let n2 = &c.network.node2;
            upload_result(
                &app,
                StatusCode::OK,
                &format!(
                    "<p><b>The archive is valid.</b> Cluster <b>{name}</b> ({id}), written {created} by {product}{enc}.</p>\
                     <ul><li>node1: {h1}, {a1}</li><li>node2: {h2}, {a2}</li></ul>\
                     <p class=\"note\">Activating a configuration (fetch the data from the other node, or create the \
                     replicated data area) is not available in this version. Nothing was changed on this node.</p>",
                    name = esc(&c.cluster.name.to_string()),
                    id = esc(&report.manifest.cluster_id.to_string()),
                    created = esc(&report.manifest.created),
                    product = esc(&report.manifest.product_version),
                    enc = if report.encrypted {
                        ", encrypted"
                    } else {
                        ", NOT encrypted"
                    },
                    h1 = esc(&n1.hostname.to_string()),
                    a1 = esc(&n1.address.to_string()),
                    h2 = esc(&n2.hostname.to_string()),
                    a2 = esc(&n2.address.to_string()),
                ),
            )
        }
        Ok(Err(problems)) => {
            upload_result(&app, StatusCode::BAD_REQUEST, &problems_html(&problems))
        }
        Err(_) => upload_result(
            &app,
            StatusCode::INTERNAL_SERVER_ERROR,
            "<p class=\"error\">Checking the archive failed unexpectedly. Nothing was changed.</p>",
        ),
    }
}

/// Form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some((id, csrf)) = session_of(&app, &headers) {
        if !same(&csrf, &form.csrf) {
            return (
                StatusCode::FORBIDDEN,
                "the form's security token does not match your session; reload the page",
            )
                .into_response();
        }
        if let Ok(mut s) = app.sessions.lock() {
            s.remove(&id);
        }
    }
    Redirect::to("/login").into_response()
}

async fn not_found(State(app): State<Arc<App>>) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page(
            "Not found",
            &app.node,
            "<p>No such page. <a href=\"/\">Start page</a></p>",
        )),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    struct Fixed(bool);
    impl NodeState for Fixed {
        fn configured(&self) -> bool {
            self.0
        }
    }

    fn app(configured: bool, clock: Arc<Mutex<Instant>>) -> Router {
        let c = clock.clone();
        let app = App::with_clock(
            "node1",
            Box::new(Fixed(configured)),
            Box::new(move || *c.lock().unwrap()),
        );
        router(Arc::new(app)).layer(Extension(Peer("192.168.100.100".parse().unwrap())))
    }

    async fn post_login(r: &Router, user: &str, pw: &str) -> (StatusCode, HeaderMap, String) {
        let req = Request::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("user={user}&password={pw}")))
            .unwrap();
        let res = r.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        (status, headers, body)
    }

    #[tokio::test]
    async fn factory_login_lands_on_upload() {
        let clock = Arc::new(Mutex::new(Instant::now()));
        let r = app(false, clock);
        let (status, headers, _) = post_login(&r, "admin", "relation").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers["location"], "/upload");
        let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("Secure")
                && cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
        );
        let session = cookie.split(';').next().unwrap().to_owned();
        let res = r
            .clone()
            .oneshot(
                Request::get("/upload")
                    .header("cookie", session)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        assert!(body.contains("Upload the cluster configuration"));
        assert!(body.contains("name=\"csrf\""));
    }

    #[tokio::test]
    async fn wrong_passwords_are_refused_and_slowed_down() {
        let clock = Arc::new(Mutex::new(Instant::now()));
        let r = app(false, clock.clone());
        let (status, _, body) = post_login(&r, "admin", "wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("Wrong user name or password"));
        // immediately again: must wait
        let (status, headers, body) = post_login(&r, "admin", "relation").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(body.contains("Too many failed logins"));
        assert_eq!(headers["retry-after"], "1");
        for _ in 0..4 {
            *clock.lock().unwrap() += Duration::from_secs(61);
            post_login(&r, "admin", "nope").await;
        }
        // five failures: the fifth costs 4 s
        let (status, headers, _) = post_login(&r, "admin", "relation").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "4");
        *clock.lock().unwrap() += Duration::from_secs(4);
        let (status, _, _) = post_login(&r, "admin", "relation").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }

    #[tokio::test]
    async fn factory_password_is_dead_once_configured() {
        let r = app(true, Arc::new(Mutex::new(Instant::now())));
        let (status, headers, body) = post_login(&r, "admin", "relation").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.get("set-cookie").is_none());
        assert!(body.contains("factory password is no longer valid"));
    }

    async fn login_session(r: &Router) -> (String, String) {
        let (_, headers, _) = post_login(r, "admin", "relation").await;
        let cookie = headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let res = r
            .clone()
            .oneshot(
                Request::get("/upload")
                    .header("cookie", &cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        let marker = "name=\"csrf\" value=\"";
        let i = body.find(marker).unwrap() + marker.len();
        let csrf = body[i..i + 64].to_owned();
        (cookie, csrf)
    }

    async fn post_upload(
        r: &Router,
        cookie: &str,
        csrf: &str,
        archive: &[u8],
        pass: &str,
    ) -> (StatusCode, String) {
        let b = "XtandemBoundary";
        let mut body = Vec::new();
        for (name, value) in [("csrf", csrf.as_bytes()), ("passphrase", pass.as_bytes())] {
            body.extend(
                format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                    .as_bytes(),
            );
            body.extend(value);
            body.extend(b"\r\n");
        }
        body.extend(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"a.tar\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend(archive);
        body.extend(format!("\r\n--{b}--\r\n").as_bytes());
        let req = Request::post("/upload")
            .header("cookie", cookie)
            .header("content-type", format!("multipart/form-data; boundary={b}"))
            .body(Body::from(body))
            .unwrap();
        let res = r.clone().oneshot(req).await.unwrap();
        let status = res.status();
        (
            status,
            String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
                .unwrap(),
        )
    }

    fn store_app(dir: &std::path::Path) -> Router {
        let app = App::new("node1", Box::new(Fixed(false))).with_store(dir.to_owned());
        router(Arc::new(app)).layer(Extension(Peer("192.168.100.100".parse().unwrap())))
    }

    fn archive(pass: Option<&str>) -> Vec<u8> {
        let text = include_str!("../../config/tests/cases/minimal.toml");
        let cfg = tandem_config::ApplianceConfig::from_toml(text).unwrap();
        tandem_config::archive::export(
            &cfg,
            &tandem_config::archive::ExportOptions {
                passphrase: pass.map(str::to_owned),
                created_unix: 1_700_000_000,
                work_factor: 10,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn upload_checks_the_archive_and_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("tandem-web-upload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let r = store_app(&dir);
        let (cookie, csrf) = login_session(&r).await;

        let (status, body) = post_upload(&r, &cookie, &csrf, &archive(None), "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("The archive is valid."), "{body}");
        assert!(body.contains("NOT encrypted"));

        let enc = archive(Some("right"));
        let (status, body) = post_upload(&r, &cookie, &csrf, &enc, "wrong").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.contains("The archive was refused. Nothing was changed."),
            "{body}"
        );
        assert!(body.to_lowercase().contains("passphrase"), "{body}");
        let (status, _) = post_upload(&r, &cookie, &csrf, &enc, "right").await;
        assert_eq!(status, StatusCode::OK);

        let (status, body) = post_upload(&r, &cookie, &csrf, b"this is not a tar file", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("<li>"), "{body}");

        let (status, _) = post_upload(&r, &cookie, &"0".repeat(64), &archive(None), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // a dry run wrote nothing into the store
        assert!(!tandem_config::store::is_configured(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn password_set_on_the_console_replaces_the_factory_one() {
        let dir = std::env::temp_dir().join(format!("tdm-web-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        crate::admin::set(&dir, "console-pass-1", None).unwrap();
        for configured in [false, true] {
            let clock = Arc::new(Mutex::new(Instant::now()));
            let c = clock.clone();
            let app = App::with_clock(
                "node1",
                Box::new(Fixed(configured)),
                Box::new(move || *c.lock().unwrap()),
            )
            .with_store(dir.clone());
            let r =
                router(Arc::new(app)).layer(Extension(Peer("192.168.100.100".parse().unwrap())));
            let (status, _, body) = post_login(&r, "admin", "relation").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "configured: {configured}");
            assert!(body.contains("Wrong user name or password"), "{body}");
            *clock.lock().unwrap() += Duration::from_secs(2);
            let (status, headers, _) = post_login(&r, "admin", "console-pass-1").await;
            assert_eq!(status, StatusCode::SEE_OTHER, "configured: {configured}");
            assert!(headers.get("set-cookie").is_some());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn upload_without_session_goes_to_login() {
        let r = app(false, Arc::new(Mutex::new(Instant::now())));
        let res = r
            .oneshot(Request::get("/upload").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()["location"], "/login");
    }
}
