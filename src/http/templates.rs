//! Server-rendered pages from the templates in `templates/` (minijinja, compiled into the binary).
//! Every template name ends in `.html`, so every value is HTML-escaped unless a template says
//! otherwise (none does). Pages run no script and load nothing from elsewhere: the CSP allows only
//! their inline style, and forbids framing (RFC 9700 §4.16).

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::Response;
use minijinja::Environment;
use serde::Serialize;

use crate::http::pages;

/// Every template, by the name handlers render it with.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("claims.html", include_str!("../../templates/claims.html")),
    ("console.html", include_str!("../../templates/console.html")),
    ("console_message.html", include_str!("../../templates/console_message.html")),
    ("console_signin.html", include_str!("../../templates/console_signin.html")),
    ("console_style.html", include_str!("../../templates/console_style.html")),
];

static ENV: LazyLock<Result<Environment<'static>, minijinja::Error>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
});

/// Renders `name` with `ctx` as a complete page. A template error is a server fault (logged, 500
/// page), never a half-rendered page.
pub fn render<S: Serialize>(status: StatusCode, name: &str, ctx: S) -> Response {
    let html: Result<String, String> = match &*ENV {
        Ok(env) => {
            env.get_template(name).and_then(|t| t.render(minijinja::value::Serde(&ctx))).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match html {
        Ok(html) => pages::html_response(status, html),
        Err(e) => {
            tracing::error!(template = name, error = %e, "a page could not be rendered");
            pages::error_page(StatusCode::INTERNAL_SERVER_ERROR, "this page could not be shown")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let env = ENV.as_ref().map_err(ToString::to_string).unwrap();
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn values_are_escaped() {
        let env = ENV.as_ref().map_err(ToString::to_string).unwrap();
        let t = env.template_from_named_str("t.html", "{{ v }}").unwrap();
        assert_eq!(
            t.render(minijinja::context! { v => "<b>\"x\"</b>" }).unwrap(),
            "&lt;b&gt;&quot;x&quot;&lt;&#x2f;b&gt;"
        );
    }
}
