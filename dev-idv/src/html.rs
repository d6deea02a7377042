//! The little HTML the dev IDV's and the dev wallet's pages need: escaping and a page
//! layout with the DEV ONLY banner.

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A whole page: `title` (escaped here) and `body` (already HTML), under a banner that says
/// what `service` is and that it is for development only.
pub fn page(service: &str, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · {service} (DEV ONLY)</title><style>{STYLE}</style></head><body>\
         <p class=\"dev-only\" id=\"dev-only\"><strong>DEV ONLY</strong> · {service} · simulated, for Regain's demo and \
         tests. It checks nothing about real people; never use it with real documents or faces.</p>\
         <main><h1>{title}</h1>{body}</main></body></html>",
        service = escape(service),
        title = escape(title),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b}\
main{max-width:52rem;margin:1rem auto;padding:0 1rem}\
.dev-only{background:#b00020;color:#fff;margin:0;padding:.5rem 1rem}\
.pass{color:#0a6b2d}.fail{color:#b00020}\
img.face{width:96px;height:96px;image-rendering:pixelated;border:1px solid #888;vertical-align:middle}\
label.choice{display:inline-block;margin:.3rem .6rem .3rem 0;padding:.3rem;border:1px solid #ddd}\
code,pre{background:#f4f4f4;padding:.1rem .3rem;overflow-wrap:anywhere;white-space:pre-wrap}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}\
button{font-size:1rem;padding:.4rem 1rem}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert!(page("dev IDV", "<t>", "").contains("<h1>&lt;t&gt;</h1>"));
    }
}
