//! ntfy topics (`https://ntfy.sh/TOPIC`, or a self-hosted server given as `--format ntfy`;
//! `https://user:pass@host/topic` or `?auth=` for protected topics, as ntfy documents).
//!
//! Shape (ntfy's "Publishing"): the message as a plain-text body (never markdown), and headers:
//! `Title` (the subject), `Priority` (5 for an offline machine or instance, 4 errors, 3
//! warnings, 2 the rest), `Tags` (emoji by severity, and the type), `Click` and an `Actions`
//! `view` button to the console page. Header values are ASCII: anything else is sent RFC
//! 2047-encoded (`=?UTF-8?B?…?=`), which ntfy decodes, and control characters are dropped,
//! so no text can add a header.
//! Limits: ntfy.sh keeps messages up to 4,096 bytes as text (longer ones become
//! attachments), so the body is kept under 4,000 bytes. A digest joins events with a blank
//! line.
//! Rate: ntfy.sh lets one visitor burst 60 requests and then about one every 5 s, so the
//! pace is 5 s. Answers: 200 with the message as JSON; 429 when limited; 413 too large (this
//! payload); 401/403 a protected topic (permanent).

use std::time::Duration;

use super::model::{compose_as, fit_as, join_fitting, one_line, raw, Parts, Severity};
use super::{Body, Kind, Rendered, Summary};

const BODY_BYTES: usize = 4_000;

pub struct Ntfy;

/// A header value: ASCII as it is (control characters dropped), else RFC 2047 base64.
pub fn header_value(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    if clean.is_ascii() {
        clean
    } else {
        use base64::Engine;
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(clean.as_bytes())
        )
    }
}

fn priority(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "5",
        Severity::Error => "4",
        Severity::Warning => "3",
        Severity::Info | Severity::Resolved => "2",
    }
}

fn tag(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "rotating_light",
        Severity::Error => "x",
        Severity::Warning => "warning",
        Severity::Info => "bell",
        Severity::Resolved => "white_check_mark",
    }
}

/// `render(limit)` for the largest limit (in UTF-16 units) whose result fits `BODY_BYTES`
/// bytes: what is kept whole (the ids) stays whole.
fn within_bytes<T>(render: impl Fn(usize) -> (String, T)) -> (String, T) {
    let mut limit = BODY_BYTES;
    loop {
        let (t, x) = render(limit);
        if t.len() <= BODY_BYTES || limit < 64 {
            return (t, x);
        }
        limit = limit * BODY_BYTES / t.len() - 1;
    }
}

fn headers(
    title: &str,
    severity: Severity,
    tags: &str,
    url: &str,
    label: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("Title", header_value(&fit_as(&one_line(title), raw, 250))),
        ("Priority", priority(severity).into()),
        ("Tags", header_value(&format!("{},{}", tag(severity), tags))),
        ("Click", url.into()),
        (
            "Actions",
            format!("view, {}, {url}", label.replace([',', ';'], " ")),
        ),
        ("Markdown", "no".into()),
    ]
}

impl Kind for Ntfy {
    fn render(&self, parts: &[Parts]) -> (Rendered, usize) {
        let p = &parts[0];
        let text = |p: &Parts, limit: usize| {
            compose_as(&one_line(p.subject), p.message, &p.details(), raw, limit)
        };
        let (body, n, title) = if parts.len() == 1 {
            // The title carries the subject: the body is the message and the ids.
            let (t, _) = within_bytes(|limit| {
                let t = compose_as("", p.message, &p.details(), raw, limit);
                (t.trim_start_matches('\n').to_owned(), ())
            });
            (t, 1, p.subject.to_owned())
        } else {
            let (t, n) = within_bytes(|limit| join_fitting(parts, "\n\n", limit, |p| text(p, 500)));
            (t, n, format!("{n} Vast.ai notifications"))
        };
        let worst = parts[..n]
            .iter()
            .map(|p| p.severity)
            .max()
            .unwrap_or(Severity::Info);
        let tags = crate::output::printable(&p.event.notif_type.replace(',', " ")).into_owned();
        let rendered = Rendered {
            body: Body::Text(body),
            headers: headers(&title, worst, &tags, &p.url, p.topic.button()),
        };
        (rendered, n)
    }

    fn summary(&self, s: &Summary) -> Option<Rendered> {
        Some(Rendered {
            body: Body::Text(within_bytes(|limit| (s.text(raw, limit), ())).0),
            headers: headers(
                &s.title,
                Severity::Warning,
                "summary",
                s.url(),
                "Open console",
            ),
        })
    }

    fn pace(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn max_events(&self) -> usize {
        20
    }
}
