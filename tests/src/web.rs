//! A client of the node's web console, as an operator's browser uses it:
//! log in, follow forms with their CSRF tokens, upload and activate the
//! configuration archive, read the roles off the Status page.

use std::time::{Duration, Instant};

use crate::{HttpResponse, https, https_body, multipart};

/// Asks the HTTP server at `addr` (`ip:port`, plain HTTP) for `path` until it
/// answers 200 or `limit` passes; returns the body.
pub fn http_get(addr: &str, path: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Some(body) = http_get_once(addr, path, Duration::from_secs(2)) {
            return body;
        }
        assert!(
            start.elapsed() < limit,
            "{addr} did not answer {path} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One plain HTTP GET; the body of a 200 answer, else `None`.
#[must_use]
pub fn http_get_once(addr: &str, path: &str, timeout: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, timeout).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: ve\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_owned())
}

/// Logs in at `addr` (`ip:443`) in English; returns the session cookies.
pub fn login(addr: &str, password: &str) -> String {
    let page = https(addr, "GET", "/login", Some("tandem_lang=en"), None).unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let cookies = format!("tandem_lang=en; {}", page.cookie());
    let form = format!(
        "csrf={}&user=admin&password={}",
        page.csrf(),
        password.replace('+', "%2B").replace('&', "%26")
    );
    let ok = https(addr, "POST", "/login", Some(&cookies), Some(&form)).unwrap();
    assert_eq!(ok.status, 303, "login at {addr}: {}", ok.body);
    format!("{}; tandem_lang=en", ok.cookie())
}

/// Opens `page` at `addr` and posts its form: the page's CSRF token and `fields`
/// (`&`-separated, already encoded) to `action`. With `form_id`, the page must
/// hold that form.
pub fn post_form(
    addr: &str,
    session: &str,
    page: &str,
    form_id: Option<&str>,
    action: &str,
    fields: &str,
) -> HttpResponse {
    let p = https(addr, "GET", page, Some(session), None).unwrap();
    if let Some(id) = form_id {
        assert!(p.body.contains(&format!("id=\"{id}\"")), "{}", p.body);
    }
    let form = if fields.is_empty() {
        format!("csrf={}", p.csrf())
    } else {
        format!("csrf={}&{fields}", p.csrf())
    };
    https(addr, "POST", action, Some(session), Some(&form)).unwrap()
}

/// Logs in with the factory password, uploads the archive and starts the
/// activation with `choice`; returns the session (for the progress page).
pub fn upload_and_activate(
    addr: &str,
    archive: &[u8],
    passphrase: &str,
    choice: &str,
    confirm: &str,
) -> String {
    let session = login(addr, "relation");
    let upload = https(addr, "GET", "/upload", Some(&session), None).unwrap();
    assert_eq!(upload.status, 200, "{}", upload.body);
    let b = "tandemclusterboundary";
    let body = multipart(
        b,
        &[("csrf", &upload.csrf()), ("passphrase", passphrase)],
        ("archive", archive),
    );
    let ctype = format!("multipart/form-data; boundary={b}");
    let checked = https_body(
        addr,
        "POST",
        "/upload",
        Some(&session),
        Some((&ctype, &body)),
    )
    .unwrap();
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert!(
        checked.body.contains("action=\"/activate\""),
        "{}",
        checked.body
    );
    let form = format!("csrf={}&choice={choice}&confirm={confirm}", checked.csrf());
    let started = https(addr, "POST", "/activate", Some(&session), Some(&form)).unwrap();
    assert_eq!(started.status, 303, "{}", started.body);
    assert_eq!(started.header("location").as_deref(), Some("/progress"));
    session
}

/// Polls the activation's progress page until it contains `needle`.
pub fn progress_until(addr: &str, session: &str, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    let mut failed = 0;
    loop {
        // A node busy making its data area under TCG may miss a connection's
        // 5 s; it stays on the recovery network until this page has shown
        // the finished activation, so one more try finds it.
        let p = match https(addr, "GET", "/progress", Some(session), None) {
            Ok(p) => p,
            Err(e) if failed < 3 && start.elapsed() < limit => {
                failed += 1;
                seen.push(format!("{:6.1} s: {e}", start.elapsed().as_secs_f64()));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            Err(e) => panic!(
                "GET /progress at {addr} after {:.1} s: {e}; the last polls:\n{}",
                start.elapsed().as_secs_f64(),
                seen.join("\n")
            ),
        };
        failed = 0;
        let text = text_of(&p.body);
        let words: Vec<&str> = text.split_whitespace().collect();
        let tail = words[words.len().saturating_sub(24)..].join(" ");
        seen.push(format!("{:6.1} s: {tail}", start.elapsed().as_secs_f64()));
        if seen.len() > 20 {
            seen.remove(0);
        }
        assert!(
            !p.body.contains("Activation stopped"),
            "activation at {addr} failed:\n{}",
            p.body
        );
        if p.body.contains(needle) {
            return p.body;
        }
        assert!(
            start.elapsed() < limit,
            "no {needle:?} on the progress page at {addr} within {limit:?}:\n{}",
            p.body
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The value of the input `name` on `page`.
///
/// # Panics
/// The page has no such input.
#[must_use]
pub fn field_value(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let Some(i) = page.find(&marker).map(|i| i + marker.len()) else {
        panic!("no field {name} on the page: {}", text_of(page));
    };
    page[i..].split('"').next().unwrap_or("").to_owned()
}

/// A page's text without its tags, for failure messages.
pub fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The role a node's Status page shows (cluster mode).
pub fn role(addr: &str, session: &str) -> Option<String> {
    let page = https(addr, "GET", "/status", Some(session), None).ok()?;
    let marker = "<th>role of this node</th><td>";
    let i = page.body.find(marker)? + marker.len();
    let end = page.body[i..].find('<')? + i;
    Some(page.body[i..end].to_owned())
}

/// Waits until the node at `addr` answers its login page.
pub fn answers(addr: &str, limit: Duration) {
    let start = Instant::now();
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    loop {
        if std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(500)).is_ok()
            && https(addr, "GET", "/login", None, None).is_ok_and(|r| r.status == 200)
        {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "nothing answers at https://{addr}/ within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
