//! Google Chat incoming webhooks (`https://chat.googleapis.com/v1/spaces/…/messages?key=…`).
//!
//! Shape: `text` in the format of Vast.ai's own Google Chat adapter (`subject`, `message`,
//! `type=… event_id=…`), plus one `cardsV2` card per event: a header (subject, type), the
//! message as a `textParagraph` and a `buttonList` whose button opens the console page.
//! Card text is HTML (escaped here); message text is Chat markup, where a zero-width space
//! before `*`, `_`, `~` and `` ` `` keeps them from formatting, one after `<` keeps
//! `<users/all>` from mentioning anyone, and a word joiner after `:` and `.` keeps URLs from
//! being linked.
//! Limits: a message is at most 32,000 bytes; `text` is kept under 4,000 characters and a
//! digest to at most 10 cards of 1,000 characters each.
//! Rate: Chat allows about one message per second per space (60 a minute); beyond that 429
//! (RESOURCE_EXHAUSTED). 400 refuses the payload; 403/404 (a deleted webhook or space) are
//! permanent.

use serde_json::{json, Value};

use super::model::{compose_as, fit_as, join_fitting, one_line, Parts};
use super::{Kind, Rendered, Summary};

const TEXT_LIMIT: usize = 4_000;
const CARD_TEXT: usize = 1_000;
const CARDS_MOST: usize = 10;

pub struct GoogleChat;

/// Chat's text markup, written literally.
pub fn escape_char(c: char, out: &mut String) {
    match c {
        '*' | '_' | '~' | '`' => {
            out.push('\u{200B}');
            out.push(c);
        }
        '<' => out.push_str("<\u{200B}"),
        ':' | '.' | '@' => {
            out.push(c);
            out.push('\u{2060}');
        }
        c => out.push(c),
    }
}

/// Card headers are plain text: only a mention's `<` is broken.
fn plain(c: char, out: &mut String) {
    match c {
        '<' => out.push_str("<\u{200B}"),
        c => out.push(c),
    }
}

/// Card text is a subset of HTML.
pub fn escape_html(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\n' => out.push_str("<br>"),
        c => out.push(c),
    }
}

fn card(p: &Parts, i: usize) -> Value {
    json!({
        "cardId": format!("vast-{i}"),
        "card": {
            "header": {
                "title": fit_as(&one_line(p.subject), plain, 200),
                "subtitle": fit_as(&p.details(), plain, 200),
            },
            "sections": [{
                "widgets": [
                    { "textParagraph": { "text": fit_as(p.message, escape_html, CARD_TEXT) } },
                    { "buttonList": { "buttons": [{
                        "text": p.topic.button(),
                        "onClick": { "openLink": { "url": p.url } },
                    }] } },
                ],
            }],
        },
    })
}

fn text(p: &Parts, limit: usize) -> String {
    let tail = fit_as(&p.details(), escape_char, 400);
    compose_as(&one_line(p.subject), p.message, &tail, escape_char, limit)
}

impl Kind for GoogleChat {
    fn render(&self, parts: &[Parts]) -> (Rendered, usize) {
        let each = if parts.len() == 1 { TEXT_LIMIT } else { 600 };
        let (t, n) = join_fitting(parts, "\n\n", TEXT_LIMIT, |p| text(p, each));
        let cards: Vec<Value> = parts[..n]
            .iter()
            .enumerate()
            .map(|(i, p)| card(p, i))
            .collect();
        (Rendered::json(json!({ "text": t, "cardsV2": cards })), n)
    }

    fn summary(&self, s: &Summary) -> Option<Rendered> {
        Some(Rendered::json(json!({
            "text": s.text(escape_char, TEXT_LIMIT),
            "cardsV2": [{
                "cardId": "vast-summary",
                "card": { "sections": [{ "widgets": [{ "buttonList": { "buttons": [{
                    "text": "Open console",
                    "onClick": { "openLink": { "url": s.url() } },
                }] } }] }] },
            }],
        })))
    }

    fn max_events(&self) -> usize {
        CARDS_MOST
    }
}
