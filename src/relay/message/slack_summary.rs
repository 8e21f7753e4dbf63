//! Slack's rendering of a [`Summary`]: Block Kit (counts, then the most recent events as
//! digest sections), or text within Slack's `text` limit for `text` and `workflow`.

use serde_json::json;

use super::slack::{escape_char, fit, header, mrkdwn_section, SECTION_LIMIT, TEXT_LIMIT};
use super::{Format, Rendered, Summary};

pub fn render(s: &Summary, format: Format) -> Rendered {
    let lines = s.count_lines(escape_char);
    Rendered::json(match format {
        Format::Text => json!({ "text": s.text(escape_char, TEXT_LIMIT) }),
        // Workflow variables are plain text: the digest lines are escaped for mrkdwn, which a
        // workflow shows as typed; the counts and ids stay readable.
        Format::Workflow => json!({
            "vast_notification_message": s.text(escape_char, TEXT_LIMIT),
            "vast_action_url": s.url(),
        }),
        _ => {
            let mut blocks = vec![
                header(&format!(":bell: {}", s.title)),
                mrkdwn_section(fit(
                    &format!("{} By type:\n{}", s.intro, lines.join("\n")),
                    false,
                    SECTION_LIMIT,
                )),
                mrkdwn_section(format!(
                    "*Most recent{}:*",
                    if s.per_type > 1 {
                        " of each type"
                    } else {
                        " of each type (one each)"
                    }
                )),
            ];
            blocks.extend(s.recent.iter().map(|p| p.digest_section()));
            blocks.push(json!({
                "type": "context",
                "elements": [{ "type": "mrkdwn", "text": s.how, "verbatim": true }],
            }));
            let text = fit(
                &format!("{}\n{}\n{}\n{}", s.title, s.intro, lines.join("\n"), s.how),
                false,
                TEXT_LIMIT,
            );
            json!({ "text": text, "blocks": blocks })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::event::Event;
    use crate::relay::message::{render_summary, slack::MAX_BLOCKS};
    use serde_json::Value;

    fn event(i: usize, kind: &str) -> Event {
        Event {
            event_id: format!("evt-{i}"),
            notif_type: kind.into(),
            subject: Some(format!("Subject {i} <@here>")),
            message: Some("m".repeat(2_000)),
            user_id: None,
            timestamp: Some(1_700_000_000.0 + i as f64),
            received_at: 1_700_000_000 + i as i64,
            context: Some("client".into()),
            alert: None,
            heartbeat: false,
            legs: Default::default(),
        }
    }

    #[test]
    fn thousands_are_grouped() {
        use crate::relay::message::thousands;
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn a_summary_counts_every_event_once_and_stays_within_slacks_limits() {
        // 30 types, 20,000 events: more types than are listed, more events than any digest.
        let events: Vec<Event> = (0..20_000)
            .map(|i| event(i, &format!("type_{:02}", i % 30)))
            .collect();
        for format in [Format::Blocks, Format::Text, Format::Workflow] {
            let r = render_summary(
                &events.iter().collect::<Vec<_>>(),
                (101, 20_100),
                format,
                "https://cloud.vast.ai",
            )
            .unwrap();
            let v = r.value();
            let text = v
                .get("text")
                .or(v.get("vast_notification_message"))
                .and_then(Value::as_str)
                .unwrap();
            assert!(text.chars().map(char::len_utf16).sum::<usize>() <= TEXT_LIMIT);
            assert!(text.contains("20,000 Vast.ai notifications"), "{text}");
            assert!(
                text.contains("vslack queue list --range 101-20100"),
                "{text}"
            );
            // The counts add up to every event: 15 types listed, 15 folded into one line.
            let counted: usize = text
                .lines()
                .filter_map(|l| l.strip_prefix("• ")?.split_once(" × "))
                .filter(|(_, rest)| rest.starts_with("client:") || rest.ends_with("other types"))
                .map(|(c, _)| c.replace(',', "").parse::<usize>().unwrap())
                .sum();
            assert_eq!(counted, 20_000, "{format:?}: {text}");
            assert!(!text.contains("<@here>"), "mentions stay escaped: {text}");
            if format == Format::Blocks {
                let blocks = v["blocks"].as_array().unwrap();
                assert!(blocks.len() <= MAX_BLOCKS);
                for b in blocks {
                    let t = b["text"]["text"].as_str().unwrap_or("");
                    assert!(t.chars().map(char::len_utf16).sum::<usize>() <= SECTION_LIMIT);
                }
                // The newest event is shown.
                assert!(v.to_string().contains("evt-19999"));
            }
        }
    }
}
