//! German and English. Every text of the console is written in both, side by side at
//! the place it is used (`lang.t("English", "Deutsch")`), so a page cannot gain a
//! sentence in one language only without it showing in review. The language comes from
//! the `tandem_lang` cookie (set by the language links), else from the browser's
//! `Accept-Language`, else German (the appliance's original manual is German).

use axum::http::{HeaderMap, header};

/// Name of the language cookie.
pub const COOKIE: &str = "tandem_lang";

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Deutsch.
    De,
    /// English.
    En,
}

impl Lang {
    /// The text in this language.
    #[must_use]
    pub fn t(self, en: &'static str, de: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::De => de,
        }
    }

    /// The same for formatted texts.
    #[must_use]
    pub fn f(self, en: String, de: String) -> String {
        match self {
            Lang::En => en,
            Lang::De => de,
        }
    }

    /// `de` or `en`.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    /// From `de` or `en`.
    #[must_use]
    pub fn from_code(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "de" => Some(Lang::De),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language of a request: cookie, then `Accept-Language`, then German.
    #[must_use]
    pub fn of(headers: &HeaderMap) -> Lang {
        cookie(headers, COOKIE)
            .and_then(|c| Lang::from_code(&c))
            .or_else(|| {
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(accept_language)
            })
            .unwrap_or(Lang::De)
    }
}

/// The value of cookie `name`.
#[must_use]
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The preferred of German and English in an `Accept-Language` header, by quality.
fn accept_language(v: &str) -> Option<Lang> {
    let mut best: Option<(u32, Lang)> = None;
    for item in v.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let primary = tag.split('-').next().unwrap_or("");
        let Some(lang) = Lang::from_code(primary) else {
            continue;
        };
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1000), qvalue)
            .unwrap_or(0);
        if q > 0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l)
}

/// A qvalue (`0`, `0.8`, `1.000`) in thousandths; `None` when malformed.
fn qvalue(s: &str) -> Option<u32> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u32 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let frac: u32 = format!("{frac:0<3}").parse().ok()?;
    Some((int + frac).min(1000))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cookie_wins_then_accept_language_then_german() {
        assert_eq!(Lang::of(&headers(&[])), Lang::De);
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "en-US,en;q=0.9")])),
            Lang::En
        );
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "fr, en;q=0.5, de;q=0.8")])),
            Lang::De
        );
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "fr, ja")])),
            Lang::De
        );
        assert_eq!(
            Lang::of(&headers(&[
                ("accept-language", "de"),
                ("cookie", "a=b; tandem_lang=en")
            ])),
            Lang::En
        );
        assert_eq!(
            Lang::of(&headers(&[
                ("cookie", "tandem_lang=xx"),
                ("accept-language", "en")
            ])),
            Lang::En
        );
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "en;q=0, de;q=nan")])),
            Lang::De
        );
    }
}
