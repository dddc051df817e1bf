//! The web console's routes and the headers every answer carries.
//!
//! Two modes, decided by clusterd per session:
//!
//! - **Recovery** (unconfigured, R2.4/R3.3–R3.5): `admin` with the factory password
//!   (or the one set on the node's console) logs in, uploads the cluster configuration
//!   archive ([`crate::recovery_pages`]), and activates it.
//! - **Cluster** (configured, R9): `admin` with the management password reaches the
//!   management pages ([`crate::cluster`]).
//!
//! A session opened in one mode never reaches a page of the other, even after its own
//! activation committed the configuration.
//!
//! Rules for every page: sessions are clusterd's tokens in `Secure; HttpOnly;
//! SameSite=Strict` cookies; clusterd ends them after 30 minutes without use, 8 hours
//! after login, at logout and when the management password changes (the login page
//! then says so); every form carries the session's CSRF token ([`crate::visit`]), and a
//! POST without the right one changes nothing and says so; failed logins are counted
//! and slowed down by clusterd, per address and in all ([`crate::login`]); redirects
//! stay on this console; every text rendered is HTML-escaped; no secret (password,
//! hash, passphrase, key) is ever rendered. Pages work without JavaScript. With the
//! cluster's own certificate the console also sends `Strict-Transport-Security`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};

use crate::app::App;

/// Largest upload accepted: the archive limit plus room for the form.
pub const UPLOAD_LIMIT: usize = tandem_config::archive::MAX_ARCHIVE_BYTES + 64 * 1024;

/// The peer address of a connection (set per connection by the server).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// The routes of the console.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(crate::login::root))
        .route(
            "/login",
            get(crate::login::login_page).post(crate::login::login),
        )
        .route("/lang", get(crate::login::set_lang))
        .route("/logout", post(crate::login::logout))
        .merge(crate::recovery_pages::routes())
        .merge(crate::cluster::routes())
        .fallback(crate::login::not_found)
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&app),
            security_headers,
        ))
        .with_state(app)
}

/// How long browsers keep to HTTPS for this console once they saw it with the
/// cluster's certificate.
pub const HSTS: &str = "max-age=31536000";

/// On every answer: no framing, no scripts or outside resources, no caching of pages
/// that show the node's state, no referrer; HSTS with the cluster's certificate.
async fn security_headers(State(app): State<Arc<App>>, mut r: Response) -> Response {
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
    if app.hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    r
}
