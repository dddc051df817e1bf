//! The page frame shared by every page: title, menu, language links, logout, and the
//! small HTML helpers. Every text rendered is HTML-escaped.

use crate::i18n::Lang;

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
pub struct Frame<'a> {
    pub lang: Lang,
    pub node: &'a str,
    /// Path of this page, for the language links.
    pub path: &'a str,
    /// The session's CSRF token, when logged in (for the logout form).
    pub csrf: Option<&'a str>,
    /// Show the cluster menu.
    pub cluster_menu: bool,
    /// Seconds after which the page reloads itself.
    pub refresh: Option<u32>,
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
pub fn page(f: &Frame<'_>, title: &str, body: &str) -> String {
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
    let back = crate::login::lang_back(f.path);
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

/// A page outside any session (no menu, no logout) with `title` and `body`.
#[must_use]
pub fn plain(node: &str, lang: Lang, title: &str, body: &str) -> String {
    page(
        &Frame {
            lang,
            node,
            path: "/",
            csrf: None,
            cluster_menu: false,
            refresh: None,
        },
        title,
        body,
    )
}

/// The warnings for the operator, one paragraph each (escaped).
#[must_use]
pub fn warnings_html(warnings: &[String]) -> String {
    warnings
        .iter()
        .map(|w| format!("<p class=\"warn\">{}</p>", esc(w)))
        .collect()
}

/// A paragraph with an error message (escaped).
pub fn error_p(msg: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>", esc(msg))
}

/// The message for a form whose CSRF token is missing or wrong.
pub fn csrf_message(lang: Lang) -> &'static str {
    lang.t(
        "The form's security token is missing or does not match your session. Nothing was changed. Send the form again from this page.",
        "Das Sicherheitsmerkmal des Formulars fehlt oder passt nicht zu Ihrer Sitzung. Es wurde nichts geändert. Senden Sie das Formular von dieser Seite aus erneut.",
    )
}
