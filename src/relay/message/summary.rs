//! A summary: one message that accounts for a backlog too long to list event by event at
//! the destination's pace (see `forward`). It counts every event it stands for by type, shows
//! the most recent events of each type as a digest would, and says how to list them all with
//! `vslack queue`. Its size does not grow with the number of events, so one message can stand
//! for thousands, and Slack's limits (blocks, section and text lengths) hold whatever arrived.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{escape, fit, header, mrkdwn_section, Format, Parts, SECTION_LIMIT};
use super::{MAX_BLOCKS, TEXT_LIMIT};
use crate::relay::event::Event;

/// Types counted on their own line; the rest are one "more types" line.
const TYPES_LISTED: usize = 15;
/// Most recent events shown per type, and in all.
const RECENT_PER_TYPE: usize = 3;
const RECENT_MOST: usize = MAX_BLOCKS - 5;

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One message standing for all of `events` (non-empty, in arrival order), which are queue
/// numbers `seqs.0..=seqs.1`.
pub fn render_summary(events: &[Event], seqs: (i64, i64), format: Format, console: &str) -> Value {
    assert!(
        !events.is_empty(),
        "a summary stands for at least one event"
    );
    let parts: Vec<Parts> = events.iter().map(|e| Parts::new(e, console)).collect();
    // Counts per type, most frequent first (then by name, so the order is stable).
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in &parts {
        *counts.entry(p.type_key()).or_default() += 1;
    }
    let mut by_count: Vec<(String, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // The most recent of each type, newest first.
    let per_type = (RECENT_MOST / by_count.len()).clamp(1, RECENT_PER_TYPE);
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut recent: Vec<&Parts> = Vec::new();
    for p in parts.iter().rev() {
        let n = taken.entry(p.type_key()).or_default();
        if *n < per_type && recent.len() < RECENT_MOST {
            *n += 1;
            recent.push(p);
        }
    }
    let n = events.len();
    let times = (parts[0].time(), parts[n - 1].time());
    let title = format!("{} Vast.ai notifications, summarised", thousands(n));
    let intro = format!(
        "Too many to list one by one at this destination's pace: {} arrived between {} and {}.",
        thousands(n),
        times.0,
        times.1
    );
    let mut lines: Vec<String> = by_count
        .iter()
        .take(TYPES_LISTED)
        .map(|(t, c)| format!("• {} × {}", thousands(*c), escape(t)))
        .collect();
    if by_count.len() > TYPES_LISTED {
        let rest = &by_count[TYPES_LISTED..];
        let events: usize = rest.iter().map(|r| r.1).sum();
        lines.push(format!(
            "• {} × {} other types",
            thousands(events),
            rest.len()
        ));
    }
    let how = format!(
        "All {} are listed by `vslack queue list --range {}-{}` on the relay's machine.",
        thousands(n),
        seqs.0,
        seqs.1
    );
    match format {
        Format::Blocks => {
            let mut blocks = vec![
                header(&format!(":bell: {title}")),
                mrkdwn_section(fit(
                    &format!("{intro} By type:\n{}", lines.join("\n")),
                    false,
                    SECTION_LIMIT,
                )),
                mrkdwn_section(format!(
                    "*Most recent{}:*",
                    if per_type > 1 {
                        " of each type"
                    } else {
                        " of each type (one each)"
                    }
                )),
            ];
            blocks.extend(recent.iter().map(|p| p.digest_section()));
            blocks.push(json!({
                "type": "context",
                "elements": [{ "type": "mrkdwn", "text": how, "verbatim": true }],
            }));
            let text = fit(
                &format!("{title}\n{intro}\n{}\n{how}", lines.join("\n")),
                false,
                TEXT_LIMIT,
            );
            json!({ "text": text, "blocks": blocks })
        }
        Format::Text | Format::Workflow => {
            let head = format!("{title}\n{intro} By type:\n{}\n{how}", lines.join("\n"));
            let mut text = fit(&head, false, TEXT_LIMIT);
            let mut used = super::units(&text);
            let label = "\nMost recent:";
            if used + super::units(label) < TEXT_LIMIT {
                text.push_str(label);
                used += super::units(label);
                for p in &recent {
                    let line = p.digest_line();
                    let cost = super::units(&line) + 1;
                    if used + cost > TEXT_LIMIT {
                        break;
                    }
                    text.push('\n');
                    text.push_str(&line);
                    used += cost;
                }
            }
            if format == Format::Text {
                json!({ "text": text })
            } else {
                // Workflow variables are plain text: the digest lines are escaped for mrkdwn,
                // which a workflow shows as typed; the counts and ids stay readable.
                json!({
                    "vast_notification_message": text,
                    "vast_action_url": parts[n - 1].url,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }

    #[test]
    fn thousands_are_grouped() {
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
            let v = render_summary(&events, (101, 20_100), format, "https://cloud.vast.ai");
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
