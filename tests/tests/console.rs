//! The web console's routes with tower's `oneshot` against clusterd's real control
//! service in the same process (`tandem_runtime::control::Service`, asked as the web
//! console's unprivileged user, so that every request needs its session's token): a
//! temporary configuration store, a simulated activation (real activation needs DRBD;
//! the QEMU rig runs it), and a cluster loop that does not answer (the cluster pages
//! must then say so). Every bad input gets a clear message on the same page and
//! changes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_tests::web::field_value;

use axum::Router;
use axum::body::Body;
use axum::extract::Extension;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tandem_api::wire::RequestLine;
use tandem_api::{Api, ClientError, EventJson, Reply, Token};
use tandem_config::store::Store;
use tandem_config::{ApplianceConfig, NodeId, secrets};
use tandem_recovery::app::App;
use tandem_recovery::web::{Peer, router};
use tandem_runtime::admin::Admin;
use tandem_runtime::admin::activation::Engine;
use tandem_runtime::admin::ve::VeSite;
use tandem_runtime::control::{ClusterLink, Handled, Service};
use tower::ServiceExt;

const ADMIN_PASSWORD: &str = "correct horse battery";

/// The web console's user: not root, so clusterd's service wants a token.
const WEB_UID: u32 = 101;

/// clusterd's control service in this process, asked as the web console asks it.
struct InProcess {
    service: Arc<Service>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Dropped inside the test's own runtime, where waiting is not allowed.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Api for InProcess {
    fn call(
        &self,
        token: Option<&Token>,
        request: &tandem_api::Request,
        payload: &[u8],
    ) -> Result<(Reply, Vec<u8>), ClientError> {
        let line = RequestLine {
            version: tandem_api::API_VERSION,
            token: token.cloned(),
            payload: payload.len() as u64,
            request: request.clone(),
        };
        let (s, p) = (Arc::clone(&self.service), payload.to_vec());
        let rt = self.rt.as_ref().expect("running");
        match rt.block_on(async move { s.handle(WEB_UID, line, p).await }) {
            Handled::One(r, out) => Ok((r, out)),
            Handled::Events { .. } => Err(ClientError::Unexpected("events".into())),
        }
    }

    fn events(&self, limit: usize) -> Result<Vec<EventJson>, ClientError> {
        let link = self.service.cluster().expect("a member");
        let (mut backlog, _) = link.events.subscribe();
        let skip = backlog.len().saturating_sub(limit);
        Ok(backlog.split_off(skip))
    }
}

/// A cluster loop that has ended: every question to it goes unanswered.
fn loop_down() -> ClusterLink {
    ClusterLink::ended("node1")
}

struct Rig {
    dir: PathBuf,
    store: PathBuf,
    clock: Arc<Mutex<Instant>>,
    r: Router,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config() -> ApplianceConfig {
    let text = include_str!("../../config/tests/cases/minimal.toml");
    let mut cfg = ApplianceConfig::from_toml(text).unwrap();
    cfg.passwords.admin = secrets::hash_password(ADMIN_PASSWORD).unwrap();
    cfg
}

fn archive(pass: Option<&str>) -> Vec<u8> {
    tandem_config::archive::export(
        &config(),
        &tandem_config::archive::ExportOptions {
            passphrase: pass.map(str::to_owned),
            created_unix: 1_700_000_000,
            work_factor: 10,
        },
    )
    .unwrap()
}

/// An activation that says what a node says and commits after a second.
fn commits() -> Engine {
    Engine::Sim {
        delay: Duration::from_secs(1),
        fail: false,
    }
}

/// An activation whose other node never connects.
fn fails() -> Engine {
    Engine::Sim {
        delay: Duration::from_millis(200),
        fail: true,
    }
}

fn rig(name: &str, configured: bool, engine: Engine) -> Rig {
    rig_with(name, configured.then(config), engine, |_, _| {})
}

/// A rig whose store holds `cfg` (none: unconfigured) and whose privileged side
/// `tune` adjusts (given the rig's directory). Its data area is not mounted.
fn rig_with(
    name: &str,
    cfg: Option<ApplianceConfig>,
    engine: Engine,
    tune: impl FnOnce(&mut Admin, &Path),
) -> Rig {
    rig_full(name, cfg, engine, tune, false)
}

/// As [`rig_with`]; `hsts`: the console serves the cluster's certificate.
fn rig_full(
    name: &str,
    cfg: Option<ApplianceConfig>,
    engine: Engine,
    tune: impl FnOnce(&mut Admin, &Path),
    hsts: bool,
) -> Rig {
    let dir = std::env::temp_dir().join(format!("tandem-console-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("config");
    let configured = cfg.is_some();
    if let Some(cfg) = cfg {
        let s = Store::open(&store).unwrap();
        s.stage(&cfg).unwrap();
        s.commit().unwrap();
    }
    let mut admin = Admin::new(store.clone(), NodeId::Node1, engine);
    admin.work_factor = 10;
    admin.ve = VeSite::at(
        &dir.join("vz"),
        dir.join("ves"),
        "/nonexistent/tandem".into(),
    );
    tune(&mut admin, &dir);
    let clock = Arc::new(Mutex::new(Instant::now()));
    let c = clock.clone();
    // A member's clusterd (whose cluster loop does not answer), or clusterd in
    // recovery mode.
    let link = configured.then(loop_down);
    let service = Arc::new(Service::with_clock(
        admin,
        link,
        Box::new(move || *c.lock().unwrap()),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let app = App::new(
        "node1",
        Box::new(InProcess {
            service,
            rt: Some(rt),
        }),
    )
    .with_hsts(hsts);
    let r = router(Arc::new(app)).layer(Extension(Peer("192.168.100.100".parse().unwrap())));
    Rig {
        dir,
        store,
        clock,
        r,
    }
}

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(r: &Router, req: Request<Body>) -> Res {
    let res = r.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body =
        String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Res {
        status,
        headers,
        body,
    }
}

async fn get(r: &Router, path: &str, cookie: &str) -> Res {
    send(
        r,
        Request::get(path)
            .header("cookie", cookie)
            .header("accept-language", "en")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn post(r: &Router, path: &str, cookie: &str, form: &str) -> Res {
    send(
        r,
        Request::post(path)
            .header("cookie", cookie)
            .header("accept-language", "en")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .unwrap(),
    )
    .await
}

/// The login form's token and the cookie that must come with it.
async fn login_token(r: &Router) -> (String, String) {
    let page = get(r, "/login", "").await;
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    (cookie, csrf_of(&page.body))
}

async fn login(r: &Router, user: &str, pw: &str) -> Res {
    let (cookie, csrf) = login_token(r).await;
    let form = format!("csrf={csrf}&user={user}&password={}", pw.replace(' ', "+"));
    post(r, "/login", &cookie, &form).await
}

fn csrf_of(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let i = body.find(marker).expect("a form with a CSRF token") + marker.len();
    body[i..i + 64].to_owned()
}

/// Logs in; returns the session cookie and the CSRF token.
async fn session(r: &Router, pw: &str, landing: &str) -> (String, String) {
    let res = login(r, "admin", pw).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.headers["location"], landing);
    let cookie = res.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = get(r, landing, &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    (cookie, csrf_of(&page.body))
}

async fn upload(r: &Router, cookie: &str, csrf: Option<&str>, archive: &[u8], pass: &str) -> Res {
    let b = "XtandemBoundary";
    let mut body = Vec::new();
    let mut fields = vec![("passphrase", pass.as_bytes())];
    if let Some(c) = csrf {
        fields.push(("csrf", c.as_bytes()));
    }
    for (name, value) in fields {
        body.extend(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend(value);
        body.extend(b"\r\n");
    }
    body.extend(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"a.tar\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend(archive);
    body.extend(format!("\r\n--{b}--\r\n").as_bytes());
    send(
        r,
        Request::post("/upload")
            .header("cookie", cookie)
            .header("accept-language", "en")
            .header("content-type", format!("multipart/form-data; boundary={b}"))
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

fn store_files(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".toml"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn wait_job_done(r: &Router, cookie: &str) -> Res {
    let start = Instant::now();
    loop {
        let p = get(r, "/progress", cookie).await;
        if !p.body.contains("http-equiv=\"refresh\"") {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "job hangs: {}",
            p.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_slowed_down() {
    let rig = rig("ratelimit", false, commits());
    let r = &rig.r;
    let res = login(r, "admin", "wrong").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(
        res.body.contains("Wrong user name or password"),
        "{}",
        res.body
    );
    let res = login(r, "admin", "relation").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(res.body.contains("Too many failed logins"));
    assert_eq!(res.headers["retry-after"], "1");
    for _ in 0..4 {
        *rig.clock.lock().unwrap() += Duration::from_secs(61);
        login(r, "admin", "nope").await;
    }
    // Seven failures counted (the early attempt too): the wait has doubled to 8 s.
    let res = login(r, "admin", "relation").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers["retry-after"], "8");
    assert!(res.body.contains("(7)"), "{}", res.body);
    *rig.clock.lock().unwrap() += Duration::from_secs(8);
    assert_eq!(
        login(r, "admin", "relation").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn twenty_wrong_logins_at_once_count_as_twenty_and_lock_out() {
    let rig = rig("lockout", false, commits());
    let r = &rig.r;
    let tries: Vec<_> = (0..20)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { login(&r, "admin", "wrong").await.status })
        })
        .collect();
    for t in tries {
        let status = t.await.unwrap();
        assert!(
            [
                StatusCode::UNAUTHORIZED,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::LOCKED
            ]
            .contains(&status),
            "{status}"
        );
    }
    // The login page says so, with what to do.
    let page = get(r, "/login", "").await;
    assert!(
        page.body.contains(
            "Logins from your address (192.168.100.100) are locked after 20 failed logins."
        ),
        "{}",
        page.body
    );
    assert!(page.body.contains("choose 4"), "{}", page.body);
    // The right password does not open while locked out.
    let res = login(r, "admin", "relation").await;
    assert_eq!(res.status, StatusCode::LOCKED, "{}", res.body);
    assert!(res.headers.contains_key("retry-after"));
    // It ends by itself after its time.
    *rig.clock.lock().unwrap() += Duration::from_secs(16 * 60);
    assert_eq!(
        login(r, "admin", "relation").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_session_ends_eight_hours_after_login_however_busy() {
    let rig = rig("lifetime", false, commits());
    let (cookie, _) = session(&rig.r, "relation", "/upload").await;
    for _ in 0..16 {
        *rig.clock.lock().unwrap() += Duration::from_secs(29 * 60);
        let res = get(&rig.r, "/upload", &cookie).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    *rig.clock.lock().unwrap() += Duration::from_secs(29 * 60);
    let res = get(&rig.r, "/upload", &cookie).await;
    assert_eq!(res.headers["location"], "/login?expired=1");
    let res = get(&rig.r, "/login?expired=1", "").await;
    assert!(res.body.contains("8 hours after login"), "{}", res.body);
}

#[tokio::test]
async fn hsts_with_the_clusters_certificate_only() {
    let plain = rig("nohsts", false, commits());
    let res = get(&plain.r, "/login", "").await;
    assert!(!res.headers.contains_key("strict-transport-security"));
    let member = rig_full("hsts", Some(config()), commits(), |_, _| {}, true);
    let res = get(&member.r, "/login", "").await;
    assert_eq!(
        res.headers["strict-transport-security"],
        tandem_recovery::web::HSTS
    );
}

#[tokio::test]
async fn login_needs_the_forms_token_and_pages_forbid_framing() {
    let rig = rig("logincsrf", false, commits());
    let r = &rig.r;
    let (cookie, csrf) = login_token(r).await;
    for (cookie, form) in [
        ("", format!("csrf={csrf}&user=admin&password=relation")),
        (cookie.as_str(), "user=admin&password=relation".to_owned()),
        (
            cookie.as_str(),
            format!("csrf={}&user=admin&password=relation", "a".repeat(64)),
        ),
    ] {
        let res = post(r, "/login", cookie, &form).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{form}");
        assert!(res.body.contains("security token"), "{}", res.body);
        let cookies: Vec<_> = res.headers.get_all("set-cookie").iter().collect();
        assert!(
            cookies
                .iter()
                .all(|c| !c.to_str().unwrap().starts_with("tandem_session")),
            "{cookies:?}"
        );
    }
    // Refused forms did not count as failed logins: no waiting now.
    let res = login(r, "admin", "relation").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let csp = res.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert_eq!(res.headers["x-frame-options"], "DENY");
    assert_eq!(res.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn expired_session_goes_back_to_login_with_a_message() {
    let rig = rig("expiry", false, commits());
    let (cookie, _) = session(&rig.r, "relation", "/upload").await;
    *rig.clock.lock().unwrap() += Duration::from_secs(31 * 60);
    let res = get(&rig.r, "/upload", &cookie).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers["location"], "/login?expired=1");
    let res = get(&rig.r, "/login?expired=1", "").await;
    assert!(res.body.contains("Your session has ended"), "{}", res.body);
    // No cookie at all: plain login, no message.
    let res = get(&rig.r, "/progress", "").await;
    assert_eq!(res.headers["location"], "/login");
}

#[tokio::test]
async fn upload_checks_the_archive_and_changes_nothing() {
    let rig = rig("upload", false, commits());
    let r = &rig.r;
    let (cookie, csrf) = session(r, "relation", "/upload").await;

    let res = upload(r, &cookie, Some(&csrf), &archive(None), "").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("The archive is valid."), "{}", res.body);
    assert!(res.body.contains("NOT encrypted") && res.body.contains("lab-cluster"));
    assert!(res.body.contains("action=\"/activate\""));
    assert!(!res.body.contains("$argon2id"), "a secret was rendered");

    let enc = archive(Some("right"));
    let res = upload(r, &cookie, Some(&csrf), &enc, "wrong").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body
            .contains("The archive was refused. Nothing was changed."),
        "{}",
        res.body
    );
    assert!(
        res.body.to_lowercase().contains("passphrase"),
        "{}",
        res.body
    );
    // The refused upload also withdrew the earlier archive from activation.
    assert!(!res.body.contains("action=\"/activate\""));
    assert_eq!(
        upload(r, &cookie, Some(&csrf), &enc, "right").await.status,
        StatusCode::OK
    );

    let res = upload(r, &cookie, Some(&csrf), b"this is not a tar file", "").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("<li>"), "{}", res.body);

    let res = upload(r, &cookie, Some(&"0".repeat(64)), &archive(None), "").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.body.contains("security token"), "{}", res.body);
    let res = upload(r, &cookie, None, &archive(None), "").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.body.contains("Nothing was changed"), "{}", res.body);

    let big = vec![0u8; tandem_recovery::web::UPLOAD_LIMIT + 1];
    let res = upload(r, &cookie, Some(&csrf), &big, "").await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert!(res.body.contains("larger than"), "{}", res.body);

    assert!(
        store_files(&rig.store).is_empty(),
        "{:?}",
        store_files(&rig.store)
    );
}

#[tokio::test]
async fn activation_refuses_bad_forms_and_changes_nothing() {
    let rig = rig("refuse", false, commits());
    let r = &rig.r;
    let (cookie, csrf) = session(r, "relation", "/upload").await;
    let res = post(
        r,
        "/activate",
        &cookie,
        &format!("csrf={csrf}&choice=fetch"),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body
            .contains("Upload and check the configuration archive first")
    );

    assert_eq!(
        upload(r, &cookie, Some(&csrf), &archive(None), "")
            .await
            .status,
        StatusCode::OK
    );
    let cases = [
        (
            "choice=fetch".to_owned(),
            StatusCode::FORBIDDEN,
            "security token",
        ),
        (
            format!("csrf={}&choice=fetch", "1".repeat(64)),
            StatusCode::FORBIDDEN,
            "security token",
        ),
        (
            format!("csrf={csrf}&choice=format-c"),
            StatusCode::BAD_REQUEST,
            "Choose one of the two",
        ),
        (
            format!("csrf={csrf}"),
            StatusCode::BAD_REQUEST,
            "Choose one of the two",
        ),
        (
            format!("csrf={csrf}&choice=destroy&confirm=lab"),
            StatusCode::BAD_REQUEST,
            "type the cluster name exactly as shown: lab-cluster",
        ),
        (
            format!("csrf={csrf}&choice=destroy"),
            StatusCode::BAD_REQUEST,
            "cluster name",
        ),
    ];
    for (form, status, msg) in cases {
        let res = post(r, "/activate", &cookie, &form).await;
        assert_eq!(res.status, status, "{form}: {}", res.body);
        assert!(res.body.contains(msg), "{form}: {}", res.body);
        assert!(
            res.body.contains("Nothing was changed"),
            "{form}: {}",
            res.body
        );
        assert!(store_files(&rig.store).is_empty(), "{form}");
    }
    let res = get(r, "/progress", &cookie).await;
    assert!(
        res.body.contains("No activation has been started"),
        "{}",
        res.body
    );
}

#[tokio::test]
async fn activation_runs_in_the_background_and_shows_the_new_address() {
    // Mimics the commit of `tandem activate`: the staged file becomes the configuration.
    let rig = rig("activate", false, commits());
    let r = &rig.r;
    let (cookie, csrf) = session(r, "relation", "/upload").await;
    assert_eq!(
        upload(
            r,
            &cookie,
            Some(&csrf),
            &archive(Some("pass phrase")),
            "pass phrase"
        )
        .await
        .status,
        StatusCode::OK
    );
    let res = post(
        r,
        "/activate",
        &cookie,
        &format!("csrf={csrf}&choice=destroy&confirm=lab-cluster"),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.headers["location"], "/progress");
    assert_eq!(store_files(&rig.store), ["pending.toml"]);

    let running = get(r, "/progress", &cookie).await;
    assert!(
        running.body.contains("<meta http-equiv=\"refresh\""),
        "{}",
        running.body
    );
    assert!(!running.body.contains("<script"));
    // A second activation while one runs is refused.
    let res = post(
        r,
        "/activate",
        &cookie,
        &format!("csrf={csrf}&choice=destroy&confirm=lab-cluster"),
    )
    .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert!(res.body.contains("already running"));

    let done = wait_job_done(r, &cookie).await;
    assert!(
        done.body
            .contains("activating lab-cluster as alpha (node1)"),
        "{}",
        done.body
    );
    assert!(done.body.contains("Activation finished"), "{}", done.body);
    assert!(done.body.contains("https://10.20.30.11/"), "{}", done.body);
    assert_eq!(store_files(&rig.store), ["config.toml"]);
    // The factory session does not become a management session.
    let res = get(r, "/status", &cookie).await;
    assert_eq!(res.headers["location"], "/upload");
    let res = login(r, "admin", "relation").await;
    assert!(
        res.body.contains("factory password is no longer valid"),
        "{}",
        res.body
    );
}

#[tokio::test]
async fn a_failed_activation_says_what_to_do_and_commits_nothing() {
    let rig = rig("fail", false, fails());
    let r = &rig.r;
    let (cookie, csrf) = session(r, "relation", "/upload").await;
    upload(r, &cookie, Some(&csrf), &archive(None), "").await;
    let res = post(
        r,
        "/activate",
        &cookie,
        &format!("csrf={csrf}&choice=fetch"),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let done = wait_job_done(r, &cookie).await;
    assert!(done.body.contains("Activation stopped: "), "{}", done.body);
    assert!(done.body.contains("no configuration was committed"));
    assert!(
        done.body
            .contains("continue activation on the other node or check the crossover cable")
    );
    assert!(done.body.contains("What to do next"));
    assert!(!tandem_config::store::is_configured(&rig.store));
    // Uploading again after the failure: no warning about the staged leftover, which
    // the next activation replaces.
    let res = upload(r, &cookie, Some(&csrf), &archive(None), "").await;
    assert!(res.body.contains("The archive is valid."), "{}", res.body);
    assert!(!res.body.contains("staged"), "{}", res.body);
    // Still recovery mode: the factory password logs in.
    assert_eq!(
        login(r, "admin", "relation").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn german_by_default_english_on_request() {
    let rig = rig("lang", false, commits());
    let res = send(&rig.r, Request::get("/login").body(Body::empty()).unwrap()).await;
    assert!(res.body.contains("<html lang=\"de\"") && res.body.contains("Anmelden"));
    let res = get(&rig.r, "/login", "").await;
    assert!(res.body.contains("<html lang=\"en\"") && res.body.contains("Log in"));
    let res = get(&rig.r, "/lang?set=de&back=/upload", "").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers["location"], "/upload");
    let c = res.headers["set-cookie"].to_str().unwrap();
    assert!(
        c.starts_with("tandem_lang=de;") && c.contains("SameSite=Strict"),
        "{c}"
    );
    let res = get(&rig.r, "/login", "tandem_lang=de").await;
    assert!(res.body.contains("Werkspasswort"), "{}", res.body);
    for evil in [
        "//evil.example/",
        "/%09/evil.example",
        "/%0A/evil.example",
        "/%5Cevil.example",
        "https://evil.example/",
        "/..%2F..%2Fevil",
    ] {
        let res = get(&rig.r, &format!("/lang?set=en&back={evil}"), "").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{evil}");
        assert_eq!(res.headers["location"], "/", "{evil}");
    }
    // A German session through upload and a refused activation.
    let (cookie, csrf) = session(&rig.r, "relation", "/upload").await;
    let cookie = format!("{cookie}; tandem_lang=de");
    let res = post(
        &rig.r,
        "/activate",
        &cookie,
        &format!("csrf={csrf}&choice=x"),
    )
    .await;
    assert!(
        res.body.contains("Wählen Sie eine der beiden"),
        "{}",
        res.body
    );
    assert!(res.body.contains("Es wurde nichts geändert"));
}

#[tokio::test]
async fn cluster_mode_uses_the_management_password() {
    let rig = rig("cluster", true, commits());
    let r = &rig.r;
    let res = login(r, "admin", "relation").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let cookies: Vec<_> = res.headers.get_all("set-cookie").iter().collect();
    assert!(
        cookies
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("tandem_session")),
        "{cookies:?}"
    );
    assert!(res.body.contains("factory password is no longer valid"));
    *rig.clock.lock().unwrap() += Duration::from_secs(2);
    let (cookie, csrf) = session(r, ADMIN_PASSWORD, "/home").await;

    // Recovery pages are closed to a cluster session.
    let res = get(r, "/upload", &cookie).await;
    assert_eq!(res.headers["location"], "/home");

    // Every page renders in both languages, without a secret, and says when clusterd
    // does not answer.
    for (path, en, de) in tandem_recovery::page::MENU {
        for (lang, title) in [("en", en), ("de", de)] {
            let res = get(r, path, &format!("{cookie}; tandem_lang={lang}")).await;
            assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.body);
            assert!(
                res.body.contains(&format!("<h1>{title}</h1>")),
                "{path} {lang}: {}",
                res.body
            );
            assert!(!res.body.contains("$argon2id") && !res.body.contains("PRIVATE KEY"));
            assert!(
                !res.body.contains("NrTjZGu4"),
                "{path}: shared secret rendered"
            );
        }
    }
    let res = get(r, "/status", &cookie).await;
    assert!(
        res.body.contains("The cluster daemon does not answer"),
        "{}",
        res.body
    );
    let res = get(r, "/ves", &cookie).await;
    assert!(
        res.body.contains("service") && res.body.contains("192.168.255.3"),
        "{}",
        res.body
    );
    if !std::path::Path::new("/vz").exists() {
        assert!(
            res.body
                .contains("The data area /vz is not mounted on this node"),
            "{}",
            res.body
        );
    }
    let res = get(r, "/network", &cookie).await;
    assert!(
        res.body.contains("10.20.30.1") && res.body.contains("alpha"),
        "{}",
        res.body
    );
    assert!(res.body.contains("<form id=\"network\""), "{}", res.body);

    // Maintenance: every bad form is refused on the same page.
    let cases = [
        (
            "/maintenance/switchover",
            "confirm=yes".to_owned(),
            StatusCode::FORBIDDEN,
            "security token",
        ),
        (
            "/maintenance/switchover",
            format!("csrf={csrf}"),
            StatusCode::BAD_REQUEST,
            "Tick the box",
        ),
        (
            "/maintenance/switchover",
            format!("csrf={csrf}&confirm=yes"),
            StatusCode::SERVICE_UNAVAILABLE,
            "does not answer",
        ),
        (
            "/maintenance/export",
            "passphrase=abcdefgh&passphrase2=abcdefgh".to_owned(),
            StatusCode::FORBIDDEN,
            "security token",
        ),
        (
            "/maintenance/export",
            format!("csrf={csrf}&passphrase=abcdefgh&passphrase2=abcdefgX"),
            StatusCode::BAD_REQUEST,
            "The two passphrases differ",
        ),
        (
            "/maintenance/export",
            format!("csrf={csrf}&passphrase=short&passphrase2=short"),
            StatusCode::BAD_REQUEST,
            "must have 8 to 1024 characters (it has 5)",
        ),
        (
            "/maintenance/export",
            format!("csrf={csrf}&passphrase=abcdefgh&passphrase2=abcdefgh"),
            StatusCode::SERVICE_UNAVAILABLE,
            "does not answer",
        ),
    ];
    for (path, form, status, msg) in cases {
        let res = post(r, path, &cookie, &form).await;
        assert_eq!(res.status, status, "{path} {form}: {}", res.body);
        assert!(res.body.contains(msg), "{path} {form}: {}", res.body);
        assert!(res.body.contains("<h1>Maintenance</h1>"));
    }
    // Logout needs the token too.
    let res = post(r, "/logout", &cookie, "csrf=nope").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(get(r, "/home", &cookie).await.status, StatusCode::OK);
    let res = post(r, "/logout", &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(res.headers["location"], "/login");
    assert_eq!(
        get(r, "/home", &cookie).await.headers["location"],
        "/login?expired=1"
    );
}

#[test]
fn export_is_encrypted_with_the_operators_passphrase() {
    use tandem_runtime::admin::archive::export;
    let rig_dir =
        std::env::temp_dir().join(format!("tandem-console-export-{}", std::process::id()));
    let store = rig_dir.join("config");
    let s = Store::open(&store).unwrap();
    s.stage(&config()).unwrap();
    let committed = s.commit().unwrap();
    drop(s);
    let (file_name, bytes) = export(&store, "a long passphrase", 10).unwrap();
    assert!(file_name.starts_with("tkcluster_"), "{file_name}");
    assert!(tandem_config::archive::read_archive(&bytes, Some("wrong passphrase")).is_err());
    let back = tandem_config::archive::read_archive(&bytes, Some("a long passphrase")).unwrap();
    assert!(back.encrypted);
    assert_eq!(back.config, committed);
    assert_eq!(
        export(&store, "short", 10),
        Err(tandem_api::Refusal::BadSecret)
    );
    let _ = std::fs::remove_dir_all(&rig_dir);
}

/// A process standing in for init: it ends by the first signal it gets (sleep takes
/// the default action for TERM and USR2), and is killed when the test ends.
struct StandIn(std::process::Child);

impl StandIn {
    fn start() -> StandIn {
        let c = std::process::Command::new("sleep")
            .arg("120")
            .spawn()
            .unwrap();
        assert_ne!(c.id(), 1);
        StandIn(c)
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).unwrap()
    }

    fn alive(&mut self) -> bool {
        // Give a stray signal time to arrive.
        std::thread::sleep(Duration::from_millis(100));
        self.0.try_wait().unwrap().is_none()
    }

    /// The signal that ended it (waits up to five seconds).
    fn ended_by(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s.signal();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn restart_and_shutdown_need_the_token_and_the_box_then_signal_init() {
    let mut init = StandIn::start();
    let pid = init.pid();
    let rig = rig_with("power", Some(config()), commits(), |l, _| l.init_pid = pid);
    let r = &rig.r;
    let (cookie, csrf) = session(r, ADMIN_PASSWORD, "/home").await;

    let page = get(r, "/maintenance", &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in [
        "Restart or shut down this node",
        "form id=\"reboot\" method=\"post\" action=\"/maintenance/power\"",
        "form id=\"poweroff\" method=\"post\" action=\"/maintenance/power\"",
        "Restart this node",
        "Shut down this node",
        // No clusterd in this rig: the warning says what that means.
        "The cluster daemon does not answer",
        "use that node's own console",
        "through its BMC",
    ] {
        assert!(page.body.contains(text), "{text}: {}", page.body);
    }
    let de = get(r, "/maintenance", &format!("{cookie}; tandem_lang=de")).await;
    assert!(
        de.body.contains("Diesen Knoten neu starten")
            && de.body.contains("Der Clusterdienst antwortet nicht"),
        "{}",
        de.body
    );

    let cases = [
        (
            "action=reboot&confirm=yes".to_owned(),
            StatusCode::FORBIDDEN,
            "security token",
        ),
        (
            format!("csrf={}&action=reboot&confirm=yes", "0".repeat(64)),
            StatusCode::FORBIDDEN,
            "security token",
        ),
        (
            format!("csrf={csrf}&action=reboot"),
            StatusCode::BAD_REQUEST,
            "Tick the box to confirm the restart of this node. Nothing was done.",
        ),
        (
            format!("csrf={csrf}&action=poweroff&confirm=no"),
            StatusCode::BAD_REQUEST,
            "Tick the box to confirm the shutdown of this node. Nothing was done.",
        ),
        (
            format!("csrf={csrf}&action=halt&confirm=yes"),
            StatusCode::BAD_REQUEST,
            "Choose restart or shut down",
        ),
        (
            format!("csrf={csrf}&confirm=yes"),
            StatusCode::BAD_REQUEST,
            "Choose restart or shut down",
        ),
    ];
    for (form, status, msg) in cases {
        let res = post(r, "/maintenance/power", &cookie, &form).await;
        assert_eq!(res.status, status, "{form}: {}", res.body);
        assert!(res.body.contains(msg), "{form}: {}", res.body);
        assert!(res.body.contains("<h1>Maintenance</h1>"), "{form}");
        assert!(init.alive(), "{form}: the stand-in for init got a signal");
    }
    let de = post(
        r,
        "/maintenance/power",
        &format!("{cookie}; tandem_lang=de"),
        &format!("csrf={csrf}&action=reboot"),
    )
    .await;
    assert!(
        de.body.contains("Neustart dieses Knotens zu bestätigen"),
        "{}",
        de.body
    );
    assert!(init.alive());

    let res = send(
        r,
        Request::post("/maintenance/power")
            .header("cookie", &cookie)
            .header("accept-language", "en")
            .header("host", "10.20.30.11")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}&action=reboot&confirm=yes")))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body.contains("<h1>This node is restarting</h1>"),
        "{}",
        res.body
    );
    assert!(
        res.body
            .contains("comes back at the same address, <a href=\"https://10.20.30.11/\">"),
        "{}",
        res.body
    );
    assert_eq!(
        init.ended_by(),
        Some(libc_signal("TERM")),
        "restart is SIGTERM to init"
    );

    // Shutdown: SIGUSR2, and the page says how to switch the node on again.
    let mut init = StandIn::start();
    let pid = init.pid();
    let rig = rig_with("poweroff", Some(config()), commits(), |l, _| {
        l.init_pid = pid
    });
    let (cookie, csrf) = session(&rig.r, ADMIN_PASSWORD, "/home").await;
    let res = post(
        &rig.r,
        "/maintenance/power",
        &cookie,
        &format!("csrf={csrf}&action=poweroff&confirm=yes"),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body.contains("<h1>This node is shutting down</h1>"),
        "{}",
        res.body
    );
    assert!(
        res.body
            .contains("at the machine (power button) or through its BMC"),
        "{}",
        res.body
    );
    assert_eq!(
        init.ended_by(),
        Some(libc_signal("USR2")),
        "shutdown is SIGUSR2 to init"
    );
}

fn libc_signal(name: &str) -> i32 {
    use nix::sys::signal::Signal;
    match name {
        "TERM" => Signal::SIGTERM as i32,
        "USR2" => Signal::SIGUSR2 as i32,
        other => panic!("{other}"),
    }
}

#[test]
fn the_power_call_is_refused_on_an_unconfigured_node_and_for_a_bad_pid() {
    use tandem_api::{PowerAction, Refusal};
    let mut init = StandIn::start();
    let dir = std::env::temp_dir().join(format!(
        "tandem-console-power-unconf-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut admin = Admin::new(dir.join("config"), NodeId::Node1, commits());
    admin.init_pid = init.pid();
    assert_eq!(
        admin.power(PowerAction::Reboot),
        Err(Refusal::NotConfigured)
    );
    assert!(init.alive());
    let s = Store::open(dir.join("config")).unwrap();
    s.stage(&config()).unwrap();
    s.commit().unwrap();
    for bad in [0, -1] {
        admin.init_pid = bad;
        let r = admin.power(PowerAction::Poweroff);
        assert!(
            matches!(&r, Err(Refusal::Failed(m)) if m.contains("not a process number")),
            "{r:?}"
        );
    }
    assert!(init.alive());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cluster configuration with a VE 101.
fn config_with_ve101() -> ApplianceConfig {
    let mut cfg = config();
    cfg.ves.ve101 = Some(tandem_config::VeConfig {
        hostname: "app".parse().unwrap(),
        address: "10.20.30.101".parse().unwrap(),
        dns_servers: Vec::new(),
        dns_search: Vec::new(),
    });
    cfg.passwords.root_ve101 = Some(cfg.passwords.root_node1.clone());
    cfg
}

fn calls(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default()
}

/// A rig whose data area is "mounted" (`/` is a mount point on every system; the
/// templates, VE files and root filesystems are in the rig's directory).
fn ve_rig(name: &str, cfg: ApplianceConfig, mounted: bool, body: &str) -> Rig {
    rig_with(name, Some(cfg), commits(), |l, dir| {
        let template = dir.join("template");
        std::fs::create_dir_all(&template).unwrap();
        for f in [
            "debian-12.tar",
            "centos-7.tar.gz",
            "notes.txt",
            ".hidden.tar",
            "bad name.tar",
        ] {
            std::fs::write(template.join(f), b"").unwrap();
        }
        std::fs::create_dir_all(template.join("dir.tar")).unwrap();
        let data = if mounted {
            PathBuf::from("/")
        } else {
            dir.to_owned()
        };
        l.ve = VeSite {
            data_mount: data,
            template_dir: template,
            conf_dir: dir.join("ves"),
            private_dir: dir.join("private"),
            backup_dir: dir.join("backups/templatecache"),
            ve_backup_dir: dir.join("backups/ve"),
            program: tandem_tests::stand_in_tandem(dir, body),
        };
    })
}

/// Follows the installation's progress page until it stops reloading itself.
async fn wait_install_done(r: &Router, cookie: &str) -> Res {
    let start = Instant::now();
    loop {
        let p = get(r, "/ves/install/progress", cookie).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        if !p.body.contains("http-equiv=\"refresh\"") {
            return p;
        }
        assert!(
            p.body.contains("VE 101 is being installed from"),
            "{}",
            p.body
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "installation hangs: {}",
            p.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts the installation form; it must answer with the way to the progress page.
async fn start_install(r: &Router, cookie: &str, form: &str) {
    let res = post(r, "/ves/install", cookie, form).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.headers["location"], "/ves/install/progress");
}

#[tokio::test]
async fn ve101_installs_from_a_listed_template_with_the_configured_name_and_address() {
    let rig = ve_rig("ve101", config_with_ve101(), true, "exit 0");
    let r = &rig.r;
    let (cookie, csrf) = session(r, ADMIN_PASSWORD, "/home").await;
    let page = get(r, "/ves", &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("form id=\"install-ve101\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("host name <b>app</b> and address <b>10.20.30.101</b>"),
        "{}",
        page.body
    );
    let options: Vec<&str> = page
        .body
        .split("<option value=\"")
        .skip(1)
        .map(|o| o.split('"').next().unwrap())
        .collect();
    assert_eq!(
        options,
        ["tandem-minimal", "centos-7", "debian-12"],
        "{}",
        page.body
    );

    let cases = [
        (
            "template=debian-12&confirm=yes".to_owned(),
            StatusCode::FORBIDDEN,
            "security token",
        ),
        (
            format!("csrf={}&template=debian-12&confirm=yes", "f".repeat(64)),
            StatusCode::FORBIDDEN,
            "security token",
        ),
        (
            format!("csrf={csrf}&template=debian-12"),
            StatusCode::BAD_REQUEST,
            "Tick the box to confirm the installation of VE 101. Nothing was changed.",
        ),
        (
            format!("csrf={csrf}&confirm=yes"),
            StatusCode::BAD_REQUEST,
            "Choose the OS template",
        ),
        (
            format!("csrf={csrf}&template=..%2F..%2Fetc%2Fpasswd&confirm=yes"),
            StatusCode::BAD_REQUEST,
            "There is no OS template &quot;../../etc/passwd&quot; to choose. Nothing was changed.",
        ),
        (
            format!("csrf={csrf}&template=%2Fvz%2Ftemplate%2Fdebian-12&confirm=yes"),
            StatusCode::BAD_REQUEST,
            "There is no OS template",
        ),
        (
            format!("csrf={csrf}&template=notes&confirm=yes"),
            StatusCode::BAD_REQUEST,
            "Choose one of the list: tandem-minimal, centos-7, debian-12.",
        ),
        (
            format!("csrf={csrf}&template=dir&confirm=yes"),
            StatusCode::BAD_REQUEST,
            "There is no OS template",
        ),
    ];
    for (form, status, msg) in cases {
        let res = post(r, "/ves/install", &cookie, &form).await;
        assert_eq!(res.status, status, "{form}: {}", res.body);
        assert!(res.body.contains(msg), "{form}: {}", res.body);
        assert!(res.body.contains("<h1>VEs</h1>"), "{form}");
        assert_eq!(calls(&rig.dir), "", "{form}: the program ran");
    }

    start_install(
        r,
        &cookie,
        &format!("csrf={csrf}&template=debian-12&confirm=yes"),
    )
    .await;
    let res = wait_install_done(r, &cookie).await;
    assert!(
        res.body.contains(
            "VE 101 was installed from debian-12, marked to start with the services and started."
        ),
        "{}",
        res.body
    );
    assert!(
        res.body.contains("VE 101 created from debian-12"),
        "{}",
        res.body
    );
    assert!(
        res.body.contains("<a href=\"/ves\">To the VE list</a>"),
        "{}",
        res.body
    );
    assert_eq!(
        calls(&rig.dir),
        "ve create 101 --template debian-12 --hostname app --ip 10.20.30.101\n\
         ve set 101 ONBOOT=yes\n\
         ve start 101\n"
    );
    // Installed: its state instead of the form, and a second installation is refused.
    let res = get(r, "/ves", &cookie).await;
    assert!(
        res.body.contains("VE 101 is installed on this node"),
        "{}",
        res.body
    );
    assert!(
        !res.body.contains("form id=\"install-ve101\""),
        "{}",
        res.body
    );
    let res = post(
        r,
        "/ves/install",
        &cookie,
        &format!("csrf={csrf}&template=tandem-minimal&confirm=yes"),
    )
    .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert!(res.body.contains("VE 101 exists already"), "{}", res.body);
    assert_eq!(calls(&rig.dir).lines().count(), 3);
    let de = get(r, "/ves", &format!("{cookie}; tandem_lang=de")).await;
    assert!(
        de.body.contains("VE 101 ist auf diesem Knoten installiert"),
        "{}",
        de.body
    );
}

#[tokio::test]
async fn a_failed_ve101_step_says_what_failed_and_what_to_do() {
    let rig = ve_rig(
        "ve101fail",
        config_with_ve101(),
        true,
        "if [ \"$2\" = start ]; then echo 'crun: cannot start the container' >&2; exit 3; fi",
    );
    let (cookie, csrf) = session(&rig.r, ADMIN_PASSWORD, "/home").await;
    start_install(
        &rig.r,
        &cookie,
        &format!("csrf={csrf}&template=tandem-minimal&confirm=yes"),
    )
    .await;
    let res = wait_install_done(&rig.r, &cookie).await;
    assert!(res.body.contains("but it did not start"), "{}", res.body);
    assert!(
        res.body
            .contains("crun: cannot start the container\nexit code 3"),
        "{}",
        res.body
    );
    assert!(res.body.contains("tandem ve start 101"), "{}", res.body);
    assert_eq!(calls(&rig.dir).lines().count(), 3);

    // The program missing: the create step says so, nothing else runs.
    let rig = ve_rig("ve101noprog", config_with_ve101(), true, "exit 0");
    std::fs::remove_file(rig.dir.join("tandem.sh")).unwrap();
    let (cookie, csrf) = session(&rig.r, ADMIN_PASSWORD, "/home").await;
    start_install(
        &rig.r,
        &cookie,
        &format!("csrf={csrf}&template=tandem-minimal&confirm=yes"),
    )
    .await;
    let res = wait_install_done(&rig.r, &cookie).await;
    assert!(
        res.body
            .contains("could not be created from tandem-minimal: nothing was installed"),
        "{}",
        res.body
    );
    assert!(res.body.contains("cannot run"), "{}", res.body);
}

#[tokio::test]
async fn ve101_is_not_offered_without_the_data_area_or_the_configuration() {
    // The passive node: no data area here.
    let rig = ve_rig("ve101passive", config_with_ve101(), false, "exit 0");
    let (cookie, csrf) = session(&rig.r, ADMIN_PASSWORD, "/home").await;
    let page = get(&rig.r, "/ves", &cookie).await;
    assert!(
        page.body
            .contains("can be installed only on the active node"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("form id=\"install-ve101\""));
    let res = post(
        &rig.r,
        "/ves/install",
        &cookie,
        &format!("csrf={csrf}&template=tandem-minimal&confirm=yes"),
    )
    .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert!(
        res.body.contains("The data area /vz is not mounted"),
        "{}",
        res.body
    );
    assert_eq!(calls(&rig.dir), "");

    // No VE 101 in the configuration.
    let rig = ve_rig("ve101none", config(), true, "exit 0");
    let (cookie, csrf) = session(&rig.r, ADMIN_PASSWORD, "/home").await;
    let page = get(&rig.r, "/ves", &cookie).await;
    assert!(
        page.body.contains("The configuration has no VE 101"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("form id=\"install-ve101\""));
    let res = post(
        &rig.r,
        "/ves/install",
        &cookie,
        &format!("csrf={csrf}&template=tandem-minimal&confirm=yes"),
    )
    .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert!(res.body.contains("has no VE 101"), "{}", res.body);
    assert_eq!(calls(&rig.dir), "");
}

#[tokio::test]
async fn ve101_installs_in_the_background_one_installation_at_a_time() {
    // `ve start` waits until the test creates `go` beside the program.
    let rig = ve_rig(
        "ve101job",
        config_with_ve101(),
        true,
        "if [ \"$2\" = start ]; then n=0; while [ ! -e \"$(dirname \"$0\")/go\" ] && [ $n -lt 300 ]; do sleep 0.05; n=$((n+1)); done; echo 'VE 101 started'; fi",
    );
    let r = &rig.r;
    let (cookie, csrf) = session(r, ADMIN_PASSWORD, "/home").await;
    let idle = get(r, "/ves/install/progress", &cookie).await;
    assert_eq!(idle.status, StatusCode::OK);
    assert!(
        idle.body
            .contains("No installation of VE 101 was started since the console started"),
        "{}",
        idle.body
    );
    assert!(!idle.body.contains("http-equiv=\"refresh\""));

    let form = format!("csrf={csrf}&template=debian-12&confirm=yes");
    start_install(r, &cookie, &form).await;
    // The progress page reloads itself and shows the steps done and the one running.
    let start = Instant::now();
    let running = loop {
        let p = get(r, "/ves/install/progress", &cookie).await;
        if p.body
            .contains("Running now: <code>tandem ve start 101</code>")
        {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{}", p.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        running.body.contains("<meta http-equiv=\"refresh\""),
        "{}",
        running.body
    );
    assert!(
        running
            .body
            .contains("VE 101 is being installed from debian-12."),
        "{}",
        running.body
    );
    assert!(
        running.body.contains(
            "<code>tandem ve create 101 --template debian-12 --hostname app --ip 10.20.30.101</code>: done"
        ),
        "{}",
        running.body
    );
    assert!(
        running
            .body
            .contains("<code>tandem ve set 101 ONBOOT=yes</code>: done"),
        "{}",
        running.body
    );
    assert!(!running.body.contains("was installed"), "{}", running.body);
    // The VEs page points to the running installation instead of offering another.
    let ves = get(r, "/ves", &cookie).await;
    assert!(
        ves.body
            .contains("VE 101 is being installed from debian-12.")
            && ves.body.contains("href=\"/ves/install/progress\""),
        "{}",
        ves.body
    );
    assert!(
        !ves.body.contains("form id=\"install-ve101\""),
        "{}",
        ves.body
    );
    // A second request: still the token check, then the running job, no second one.
    let res = post(r, "/ves/install", &cookie, "template=debian-12&confirm=yes").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    start_install(
        r,
        &cookie,
        &format!("csrf={csrf}&template=tandem-minimal&confirm=yes"),
    )
    .await;
    assert_eq!(calls(&rig.dir).matches("ve create").count(), 1);

    std::fs::write(rig.dir.join("go"), b"").unwrap();
    let done = wait_install_done(r, &cookie).await;
    assert!(
        done.body.contains(
            "VE 101 was installed from debian-12, marked to start with the services and started."
        ),
        "{}",
        done.body
    );
    assert!(done.body.contains("VE 101 started"), "{}", done.body);
    assert!(
        done.body.contains("<a href=\"/ves\">To the VE list</a>"),
        "{}",
        done.body
    );
    assert_eq!(calls(&rig.dir).lines().count(), 3);
    let de = get(
        r,
        "/ves/install/progress",
        &format!("{cookie}; tandem_lang=de"),
    )
    .await;
    assert!(
        de.body.contains("VE 101 wurde aus debian-12 installiert")
            && de.body.contains("Zur VE-Liste"),
        "{}",
        de.body
    );
    // Not logged in: the login page, not the job.
    let anon = get(r, "/ves/install/progress", "").await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
}

fn backup_files(rig: &Rig) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(rig.dir.join("backups/templatecache"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn the_template_cache_backup_needs_the_token_and_lists_each_template() {
    let rig = ve_rig("tplbackup", config_with_ve101(), true, "exit 0");
    let template = rig.dir.join("template");
    std::fs::write(template.join("debian-12.tar"), b"debian").unwrap();
    std::fs::write(template.join("centos-7.tar.gz"), vec![3u8; 2048]).unwrap();
    let r = &rig.r;
    let (cookie, csrf) = session(r, ADMIN_PASSWORD, "/home").await;
    let page = get(r, "/maintenance", &cookie).await;
    assert!(
        page.body.contains(
            "<form id=\"backup-templates\" method=\"post\" action=\"/maintenance/backup-templates\">"
        ) && page.body.contains("Back up template cache"),
        "{}",
        page.body
    );

    for form in [String::new(), format!("csrf={}", "f".repeat(64))] {
        let res = post(r, "/maintenance/backup-templates", &cookie, &form).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{form}: {}", res.body);
        assert!(res.body.contains("security token"), "{}", res.body);
        assert!(!rig.dir.join("backups").exists(), "{form}: written");
    }

    let form = format!("csrf={csrf}");
    let res = post(r, "/maintenance/backup-templates", &cookie, &form).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body.contains(
            "<tr><td>centos-7.tar.gz</td><td>2.0 KiB</td><td>copied</td></tr>\
             <tr><td>debian-12.tar</td><td>6 bytes</td><td>copied</td></tr></table>"
        ),
        "{}",
        res.body
    );
    assert!(
        res.body
            .contains("2 templates, 2.0 KiB; 2 copied, 0 replaced, 0 unchanged."),
        "{}",
        res.body
    );
    assert!(res.body.contains("<h1>Maintenance</h1>"));
    assert_eq!(backup_files(&rig), ["centos-7.tar.gz", "debian-12.tar"]);
    assert_eq!(
        std::fs::read(rig.dir.join("backups/templatecache/debian-12.tar")).unwrap(),
        b"debian"
    );

    // Again, one changed: replaced; the other unchanged. In German.
    std::fs::write(template.join("debian-12.tar"), b"debian 12.9").unwrap();
    let de = post(
        r,
        "/maintenance/backup-templates",
        &format!("{cookie}; tandem_lang=de"),
        &form,
    )
    .await;
    assert_eq!(de.status, StatusCode::OK, "{}", de.body);
    assert!(
        de.body.contains(
            "<tr><td>centos-7.tar.gz</td><td>2,0 KiB</td><td>unverändert</td></tr>\
             <tr><td>debian-12.tar</td><td>11 Bytes</td><td>ersetzt</td></tr>"
        ),
        "{}",
        de.body
    );
    assert!(de.body.contains("Sicherung des Vorlagen-Caches"));

    // A failure: a directory where debian-12.tar's backup belongs. The page says
    // what stopped it; the template before it is listed, nothing half-written stays.
    std::fs::remove_file(rig.dir.join("backups/templatecache/debian-12.tar")).unwrap();
    std::fs::create_dir_all(rig.dir.join("backups/templatecache/debian-12.tar/x")).unwrap();
    let res = post(r, "/maintenance/backup-templates", &cookie, &form).await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        res.body
    );
    assert!(
        res.body.contains(
            "The backup of the template cache stopped: backing up debian-12.tar: renaming into place"
        ),
        "{}",
        res.body
    );
    assert!(
        res.body
            .contains("<td>centos-7.tar.gz</td><td>2.0 KiB</td><td>unchanged</td>"),
        "{}",
        res.body
    );
    assert!(!res.body.contains("<td>debian-12.tar</td>"), "{}", res.body);
    assert_eq!(backup_files(&rig), ["centos-7.tar.gz", "debian-12.tar"]);

    // No templates: said so, nothing written.
    std::fs::remove_dir_all(rig.dir.join("backups")).unwrap();
    for f in ["debian-12.tar", "centos-7.tar.gz"] {
        std::fs::remove_file(template.join(f)).unwrap();
    }
    let res = post(r, "/maintenance/backup-templates", &cookie, &form).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body.contains("There are no OS templates in")
            && res.body.contains("tandem-minimal needs no backup"),
        "{}",
        res.body
    );
    assert!(!rig.dir.join("backups").exists());
}

#[tokio::test]
async fn the_passive_node_says_where_to_back_up_the_template_cache() {
    let rig = ve_rig("tplpassive", config_with_ve101(), false, "exit 0");
    std::fs::write(rig.dir.join("template/debian-12.tar"), b"debian").unwrap();
    let (cookie, csrf) = session(&rig.r, ADMIN_PASSWORD, "/home").await;
    let res = post(
        &rig.r,
        "/maintenance/backup-templates",
        &cookie,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert!(
        res.body.contains("The data area /vz is on the other node")
            && res.body.contains("back up the template cache there"),
        "{}",
        res.body
    );
    assert!(!rig.dir.join("backups").exists());
}

#[tokio::test]
async fn the_remote_support_form_needs_the_token_and_refuses_bad_hours() {
    let rig = rig_with("support", Some(config()), commits(), |_, _| {});
    let r = &rig.r;
    let (cookie, csrf) = session(r, ADMIN_PASSWORD, "/home").await;
    let page = get(r, "/maintenance", &cookie).await;
    // This clusterd runs no tunnel task: the section says so.
    assert!(
        page.body.contains("<h2>Fernwartung</h2>") || page.body.contains("<h2>Remote support</h2>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("no remote support"), "{}", page.body);
    let res = post(r, "/maintenance/support", &cookie, "action=on").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no token: {}", res.body);
    let res = post(
        r,
        "/maintenance/support",
        &cookie,
        &format!("csrf={csrf}&action=on&hours=eight"),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body
            .contains("hours: &quot;eight&quot; is not a whole number")
            && res.body.contains("was not switched on"),
        "{}",
        res.body
    );
    let res = post(
        r,
        "/maintenance/support",
        &cookie,
        &format!("csrf={csrf}&action=on&hours=2"),
    )
    .await;
    assert_ne!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("no remote support"), "{}", res.body);
}

#[tokio::test]
async fn settings_forms_change_the_configuration_and_refuse_bad_input() {
    // Every change here is made on this node only: the other node's crossover
    // address is not one a test may send to (the two-node rigs cover the exchange).
    let cfg = config();
    let rig = rig_with("settings", Some(cfg.clone()), commits(), |_, _| {});
    let r = &rig.r;
    let (cookie, csrf) = session(r, ADMIN_PASSWORD, "/home").await;
    let store = Store::open(&rig.store).unwrap();
    let committed = || store.current().unwrap().unwrap();
    let rev = cfg.cluster.revision;

    let page = get(r, "/notification", &cookie).await;
    assert!(
        page.body.contains("<form id=\"notification\""),
        "{}",
        page.body
    );
    assert_eq!(field_value(&page.body, "revision"), rev.to_string());
    // The outbox and the test button are there; the mail side of this clusterd
    // does not answer (its loop has ended), and the page says so.
    assert!(
        page.body.contains("Outbox of this node")
            && page.body.contains("action=\"/notification/test\""),
        "{}",
        page.body
    );
    let res = post(r, "/notification/test", &cookie, "").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no token: {}", res.body);
    let res = post(r, "/notification/test", &cookie, &format!("csrf={csrf}")).await;
    assert_ne!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("it has ended"), "{}", res.body);

    // No token; a bad address and relay host; a stale revision: nothing changes.
    let res = post(
        r,
        "/notification",
        &cookie,
        &format!("revision={rev}&addresses=ops%40example.com"),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.body.contains("security token"), "{}", res.body);
    let res = post(
        r,
        "/notification",
        &cookie,
        &format!("csrf={csrf}&revision={rev}&addresses=ops%40&relay_host=a+b&this_node_only=yes"),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body.contains("<b>addresses</b>") && res.body.contains("<b>relay host</b>"),
        "{}",
        res.body
    );
    assert!(
        res.body.contains(">ops@</textarea>"),
        "what was typed comes back: {}",
        res.body
    );
    let res = post(
        r,
        "/network",
        &cookie,
        &format!("csrf={csrf}&revision={}&node1_hostname=x", rev + 7),
    )
    .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.body.contains("changed meanwhile"), "{}", res.body);
    assert_eq!(committed(), cfg);

    // This node only: committed here with the next revision.
    let res = post(
        r,
        "/notification",
        &cookie,
        &format!("csrf={csrf}&revision={rev}&addresses=ops%40example.com%0D%0Anight%40example.com&relay_host=mail.example.com&this_node_only=yes"),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body.contains(&format!(
            "Saved on this node only as configuration revision {}",
            rev + 1
        )),
        "{}",
        res.body
    );
    // clusterd is not running here: the page says when the change takes effect.
    assert!(res.body.contains("when it starts again"), "{}", res.body);
    let now = committed();
    assert_eq!(now.cluster.revision, rev + 1);
    assert_eq!(now.notification.addresses.len(), 2);
    assert_eq!(field_value(&res.body, "revision"), (rev + 1).to_string());

    // Network: a bad address is named, then a good change says it needs restarts.
    let page = get(r, "/network", &cookie).await;
    let mut form: Vec<(String, String)> = [
        "node1_hostname",
        "node1_address",
        "node2_hostname",
        "node2_address",
        "netmask",
        "gateway",
        "ping_nodes",
        "dns_search",
        "dns_server1",
        "dns_server2",
        "time_servers",
    ]
    .iter()
    .map(|f| ((*f).to_owned(), field_value(&page.body, f)))
    .collect();
    assert_eq!(form[10].1, "", "no time servers configured: {}", page.body);
    form.push(("serial_heartbeat".into(), "yes".into()));
    let encode = |form: &[(String, String)], extra: &str| {
        let mut s = format!("csrf={csrf}&revision={}&this_node_only=yes", rev + 1);
        for (k, v) in form {
            s.push_str(&format!("&{k}={}", v.replace(' ', "+")));
        }
        s.push_str(extra);
        s
    };
    form[3].1 = "10.20.30.300".into();
    let res = post(r, "/network", &cookie, &encode(&form, "")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body.contains("<b>node2 address</b>") && res.body.contains("10.20.30.300"),
        "{}",
        res.body
    );
    assert_eq!(committed().cluster.revision, rev + 1);
    form[3].1 = now.network.node2.address.to_string();
    // A bad time server, and too many: named at the field, nothing changes.
    form[10].1 = "ntp1.example.net bad_name:123".into();
    let res = post(r, "/network", &cookie, &encode(&form, "")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body.contains("<b>time servers</b>") && res.body.contains("bad_name:123"),
        "{}",
        res.body
    );
    assert_eq!(
        field_value(&res.body, "time_servers"),
        "ntp1.example.net bad_name:123",
        "what was typed comes back"
    );
    form[10].1 = "a.example b.example c.example d.example e.example".into();
    let res = post(r, "/network", &cookie, &encode(&form, "")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body
            .contains("<b>time servers</b>: 5 servers given (at most 4)"),
        "{}",
        res.body
    );
    assert_eq!(committed(), now);
    form[7].1 = "lab.example example.org".into();
    form[10].1 = "ntp1.example.net,192.0.2.123:1123".into();
    let res = post(r, "/network", &cookie, &encode(&form, "")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        field_value(&res.body, "time_servers"),
        "ntp1.example.net 192.0.2.123:1123",
        "the page shows the committed time servers"
    );
    assert!(
        res.body.contains("take effect when each node starts again"),
        "{}",
        res.body
    );
    let after = committed();
    assert_eq!(after.cluster.revision, rev + 2);
    assert_eq!(after.network.dns_search.len(), 2);
    let times: Vec<String> = after
        .network
        .ntp_servers
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(times, ["ntp1.example.net", "192.0.2.123:1123"]);
    assert!(!after.heartbeat.external.enabled, "unticked box: path off");

    // Password: a typo is refused; then the new one opens the console, the old not.
    let res = post(
        r,
        "/passwords",
        &cookie,
        &format!(
            "csrf={csrf}&revision={}&current=correct+horse+battery&new=new+secret+1&confirm=new+secret+2&this_node_only=yes",
            rev + 2
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body.contains("<b>new password again</b>"),
        "{}",
        res.body
    );
    assert!(
        !res.body.contains("new secret"),
        "a password is never echoed"
    );
    // Without the password in use now: refused, and nothing changes.
    let res = post(
        r,
        "/passwords",
        &cookie,
        &format!(
            "csrf={csrf}&revision={}&current=not+it&new=new+secret+1&confirm=new+secret+1&this_node_only=yes",
            rev + 2
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body
            .contains("<b>current password</b>: is not the password in use now"),
        "{}",
        res.body
    );
    assert_eq!(committed().cluster.revision, rev + 2);
    let (other_cookie, _) = session(r, ADMIN_PASSWORD, "/home").await;
    let res = post(
        r,
        "/passwords",
        &cookie,
        &format!(
            "csrf={csrf}&revision={}&current=correct+horse+battery&new=new+secret+1&confirm=new+secret+1&this_node_only=yes",
            rev + 2
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body
            .contains("every session of the console on both nodes has ended"),
        "{}",
        res.body
    );
    // Every session ended: this one and another one.
    for c in [&cookie, &other_cookie] {
        assert_eq!(
            get(r, "/home", c).await.headers["location"],
            "/login?expired=1"
        );
    }
    *rig.clock.lock().unwrap() += Duration::from_secs(10);
    assert_eq!(
        login(r, "admin", ADMIN_PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    *rig.clock.lock().unwrap() += Duration::from_secs(10);
    session(r, "new secret 1", "/home").await;
}

#[tokio::test]
async fn ve101_root_password_is_set_inside_the_ve_on_the_node_with_the_data_area() {
    // The stand-in `tandem` records what `ve passwd` reads on its standard input.
    let body = "if [ \"$1 $2\" = 've passwd' ]; then read pw; echo \"stdin: $pw\" >> \"$(dirname \"$0\")/calls.log\"; echo \"password of root in VE 101 set\"; fi";
    let rig = ve_rig("vepw", config_with_ve101(), true, body);
    let r = &rig.r;
    let (cookie, csrf) = session(r, ADMIN_PASSWORD, "/home").await;
    let page = get(r, "/passwords", &cookie).await;
    assert!(page.body.contains("id=\"ve101-password\""), "{}", page.body);

    let res = post(
        r,
        "/passwords/ve101",
        &cookie,
        "new=ve+secret+1&confirm=ve+secret+1",
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = post(
        r,
        "/passwords/ve101",
        &cookie,
        &format!("csrf={csrf}&new=short&confirm=short"),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body.contains("<b>new root password of VE 101</b>"),
        "{}",
        res.body
    );
    let good = format!("csrf={csrf}&new=ve+secret+1&confirm=ve+secret+1");
    let res = post(r, "/passwords/ve101", &cookie, &good).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.body.contains("VE 101 is not installed"), "{}", res.body);
    assert_eq!(calls(&rig.dir), "");

    std::fs::create_dir_all(rig.dir.join("ves")).unwrap();
    std::fs::write(rig.dir.join("ves/ve-101.conf"), "HOSTNAME=\"app\"\n").unwrap();
    let res = post(r, "/passwords/ve101", &cookie, &good).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body.contains("The root password of VE 101 is set."),
        "{}",
        res.body
    );
    // On standard input, never on the command line.
    assert_eq!(
        calls(&rig.dir),
        "ve passwd 101 --user root\nstdin: ve secret 1\n"
    );

    // The passive node: nothing is run.
    let passive = ve_rig("vepw-passive", config_with_ve101(), false, body);
    let (cookie, csrf) = session(&passive.r, ADMIN_PASSWORD, "/home").await;
    let res = post(
        &passive.r,
        "/passwords/ve101",
        &cookie,
        &format!("csrf={csrf}&new=ve+secret+1&confirm=ve+secret+1"),
    )
    .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(
        res.body.contains("VE 101 runs on the other node"),
        "{}",
        res.body
    );
    assert_eq!(calls(&passive.dir), "");
}

#[tokio::test]
async fn a_ves_settings_and_passwords_change_from_the_ves_page_and_bad_input_changes_nothing() {
    let body = "if [ \"$1 $2\" = 've passwd' ]; then read pw; echo \"stdin: $pw\" >> \"$(dirname \"$0\")/calls.log\"; fi";
    let rig = ve_rig("veedit", config_with_ve101(), true, body);
    let r = &rig.r;
    let (cookie, csrf) = session(r, ADMIN_PASSWORD, "/home").await;
    std::fs::create_dir_all(rig.dir.join("ves")).unwrap();
    let file = rig.dir.join("ves/ve-102.conf");
    std::fs::write(
        &file,
        "HOSTNAME=\"app\"\nIP_ADDRESS=\"192.0.2.60\"\nONBOOT=\"yes\"\n",
    )
    .unwrap();
    let before = std::fs::read_to_string(&file).unwrap();
    let page = get(r, "/ves", &cookie).await;
    assert!(
        page.body.contains("id=\"ve-edit-102\"") && page.body.contains("id=\"ve-password-102\""),
        "{}",
        page.body
    );

    // No token: nothing.
    let res = post(r, "/ves/edit", &cookie, "id=102&hostname=web2").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // A bad address: refused with the parameter named, the file as it was.
    let res = post(
        r,
        "/ves/edit",
        &cookie,
        &format!("csrf={csrf}&id=102&hostname=web2&ip=192.0.2.999"),
    )
    .await;
    assert_ne!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("IP_ADDRESS"), "{}", res.body);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    // Nothing typed: nothing to change.
    let res = post(r, "/ves/edit", &cookie, &format!("csrf={csrf}&id=102")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("nothing to change"), "{}", res.body);
    // A good change: saved, the other lines kept.
    let res = post(
        r,
        "/ves/edit",
        &cookie,
        &format!("csrf={csrf}&id=102&hostname=web2&ip=192.0.2.61+192.0.2.62&onboot=no&memory=512M"),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body.contains("The settings of VE 102 are saved"),
        "{}",
        res.body
    );
    let now = std::fs::read_to_string(&file).unwrap();
    for want in [
        "HOSTNAME=\"web2\"",
        "IP_ADDRESS=\"192.0.2.61 192.0.2.62\"",
        "ONBOOT=\"no\"",
        "PHYSPAGES=\"512M\"",
    ] {
        assert!(now.contains(want), "{want} missing:\n{now}");
    }
    // A VE that does not exist.
    let res = post(
        r,
        "/ves/edit",
        &cookie,
        &format!("csrf={csrf}&id=999&hostname=x"),
    )
    .await;
    assert_ne!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("999"), "{}", res.body);

    // Start, stop: this clusterd watches no VEs (no data area of its own), which the
    // page says; a bad action or number is refused.
    let res = post(
        r,
        "/ves/action",
        &cookie,
        &format!("csrf={csrf}&id=102&action=start"),
    )
    .await;
    assert_ne!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("runs no VEs"), "{}", res.body);
    let res = post(
        r,
        "/ves/action",
        &cookie,
        &format!("csrf={csrf}&id=x&action=start"),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("is not a VE number"), "{}", res.body);
    let res = post(
        r,
        "/ves/action",
        &cookie,
        &format!("csrf={csrf}&id=102&action=explode"),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    // A password inside VE 102: the entries must match; then on standard input.
    let res = post(
        r,
        "/ves/password",
        &cookie,
        &format!("csrf={csrf}&id=102&user=www&new=ve+secret+1&confirm=ve+secret+2"),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(calls(&rig.dir), "");
    let res = post(
        r,
        "/ves/password",
        &cookie,
        &format!("csrf={csrf}&id=102&user=www&new=ve+secret+1&confirm=ve+secret+1"),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body
            .contains("The password of www inside VE 102 is set."),
        "{}",
        res.body
    );
    assert_eq!(
        calls(&rig.dir),
        "ve passwd 102 --user www\nstdin: ve secret 1\n"
    );
}

#[test]
fn a_member_console_serves_the_clusters_own_certificate() {
    // `tandem node-up` writes the archive's pair where init points the console.
    let cfg = config();
    let dir = std::env::temp_dir().join(format!("tandem-console-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    tandem_runtime::member::write_console_tls(&cfg, &dir).unwrap();
    tandem_recovery::tls::server_config(&dir).expect("the console loads the cluster's pair");
    // `tandem-web cert` (init, for the console screen's fingerprint) keeps it.
    tandem_recovery::tls::ensure(&dir, "node1", "10.20.30.11").unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
        cfg.keys.tls_certificate.as_str()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request on a connection of its own to `addr`: status, headers and body.
fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// `n` connections to `addr` that send nothing, from 127.0.0.1 (the administrator's
/// own address) and from 250 other addresses of 127/8.
fn idle_connections(addr: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    use std::os::fd::AsRawFd;
    let std::net::SocketAddr::V4(to) = addr else {
        panic!("IPv4")
    };
    (0..n)
        .map(|i| {
            let src = if i % 2 == 0 {
                std::net::Ipv4Addr::LOCALHOST
            } else {
                std::net::Ipv4Addr::new(127, 0, 2, u8::try_from(i % 250).unwrap() + 1)
            };
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::empty(),
                None,
            )
            .unwrap();
            bind(
                fd.as_raw_fd(),
                &SockaddrIn::from(std::net::SocketAddrV4::new(src, 0)),
            )
            .unwrap();
            connect(fd.as_raw_fd(), &SockaddrIn::from(to)).unwrap();
            std::net::TcpStream::from(fd)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_idle_connections_do_not_stop_an_admin_login() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    use tandem_recovery::listen::{Limits, serve};
    // Descriptors as scarce as on a node (its limit is 1024): 500 idle connections
    // held by the console as well as by this test would exhaust them.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 900, hard).unwrap();
    let rig = rig("idle", false, commits());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, None, rig.r.clone(), Limits::default()));
    let idle = tokio::task::spawn_blocking(move || idle_connections(addr, 500))
        .await
        .unwrap();
    assert_eq!(idle.len(), 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The administrator (from 127.0.0.1 too) logs in as a browser does.
    let t0 = Instant::now();
    let (status, page) = tokio::task::spawn_blocking(move || {
        http(
            addr,
            "GET /login HTTP/1.1\r\nHost: node1\r\nAccept-Language: en\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{page}");
    let cookie = page
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let form = format!("csrf={}&user=admin&password=relation", csrf_of(&page));
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: node1\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let (status, answer) = tokio::task::spawn_blocking(move || http(addr, &request))
        .await
        .unwrap();
    assert_eq!(status, 303, "{answer}");
    assert!(answer.contains("tandem_session="), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    drop(idle);
}
