//! Server-rendered pages for people (sign-in, consent, errors). Small on purpose: every value shown is
//! HTML-escaped, no script runs, and the page allows nothing but its own inline style and form posts.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%;padding:.4rem}\
.actions{margin-top:1.2rem;display:flex;gap:.8rem}button{padding:.5rem 1rem}.error{color:#a00}.muted{color:#666;font-size:.9rem}";

/// A complete page; `body` must already be escaped.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · Tessera</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    );
    html_response(status, html)
}

/// An HTML page with the headers every page for people carries: no script, nothing loaded from
/// elsewhere, no framing (RFC 9700 §4.16), never cached.
pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// An error shown to a person when there is no safe place to redirect them to.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Request refused",
        &format!(
            "<h1>This request cannot continue</h1><p class=\"error\">{}</p>\
             <p class=\"muted\">Return to the application you came from and start again.</p>",
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
