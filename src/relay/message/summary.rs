//! A summary: one message that accounts for a backlog too long to list event by event at the
//! destination's pace (see `forward`). It counts every event it stands for by type, shows the
//! most recent events of each type as a digest would, and says how to list them all with
//! `vslack queue`. Its size does not grow with the number of events, so one message can stand
//! for thousands. [`Summary`] is what every kind renders; the text is raw, each kind escapes
//! it for its markup.

use std::collections::HashMap;

use super::model::{escaped_len, fit_as, type_key, units, Escape, Parts};
use crate::relay::event::Event;

/// Types counted on their own line; the rest are one "more types" line.
const TYPES_LISTED: usize = 15;
/// Most recent events shown per type, and in all.
const RECENT_PER_TYPE: usize = 3;
const RECENT_MOST: usize = super::slack::MAX_BLOCKS - 5;

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

pub struct Summary<'a> {
    /// `20,000 Vast.ai notifications, summarised`.
    pub title: String,
    /// When they arrived.
    pub intro: String,
    /// `(count, type)`, most frequent first; the last may be `N other types`.
    pub counts: Vec<(String, String)>,
    /// The most recent of each type, newest first.
    pub recent: Vec<Parts<'a>>,
    /// How many of each type `recent` shows.
    pub per_type: usize,
    /// How to list them all.
    pub how: String,
    /// The newest event's console page.
    url: String,
}

impl<'a> Summary<'a> {
    /// The summary of `events` (non-empty, in arrival order), queue numbers `seqs.0..=seqs.1`.
    /// Only the events it shows are rendered (a summary stands for up to 10,000: the rest are
    /// counted by type, nothing more).
    pub fn of(events: &[&'a Event], seqs: (i64, i64), console: &str) -> Summary<'a> {
        assert!(
            !events.is_empty(),
            "a summary stands for at least one event"
        );
        // (context, type): the type key's parts, so that counting allocates nothing per event.
        let key = |e: &'a Event| (e.context.as_deref(), e.notif_type.as_str());
        let mut counts: HashMap<(Option<&str>, &str), usize> = HashMap::new();
        for e in events {
            *counts.entry(key(e)).or_default() += 1;
        }
        let mut by_count: Vec<(String, usize)> = counts
            .into_iter()
            .map(|((context, t), n)| (type_key(context, t), n))
            .collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let per_type = (RECENT_MOST / by_count.len()).clamp(1, RECENT_PER_TYPE);
        let mut taken: HashMap<(Option<&str>, &str), usize> = HashMap::new();
        let mut recent: Vec<Parts> = Vec::new();
        for e in events.iter().rev() {
            if recent.len() == RECENT_MOST {
                break;
            }
            let n = taken.entry(key(e)).or_default();
            if *n < per_type {
                *n += 1;
                recent.push(Parts::new(e, console));
            }
        }
        let n = events.len();
        let (first, last) = (
            Parts::new(events[0], console),
            Parts::new(events[n - 1], console),
        );
        let mut lines: Vec<(String, String)> = by_count
            .iter()
            .take(TYPES_LISTED)
            .map(|(t, c)| (thousands(*c), t.clone()))
            .collect();
        if by_count.len() > TYPES_LISTED {
            let rest = &by_count[TYPES_LISTED..];
            let events: usize = rest.iter().map(|r| r.1).sum();
            lines.push((thousands(events), format!("{} other types", rest.len())));
        }
        Summary {
            title: format!("{} Vast.ai notifications, summarised", thousands(n)),
            intro: format!(
                "Too many to list one by one at this destination's pace: {} arrived between {} and {}.",
                thousands(n),
                first.time(),
                last.time()
            ),
            counts: lines,
            recent,
            per_type,
            how: format!(
                "All {} are listed by `vslack queue list --range {}-{}` on the relay's machine.",
                thousands(n),
                seqs.0,
                seqs.1
            ),
            url: last.url,
        }
    }

    /// The newest event's console page.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The counts as lines (`• 1,234 × client:low_credit`), escaped with `esc`.
    pub fn count_lines(&self, esc: Escape) -> Vec<String> {
        self.counts
            .iter()
            .map(|(c, t)| format!("• {c} × {}", fit_as(t, esc, 200)))
            .collect()
    }

    /// The whole summary as text within `limit` units, escaped with `esc`: title, intro, the
    /// counts, how to list them, then as many recent events as fit, one line each
    /// (`• subject (type=… event_id=…)`).
    pub fn text(&self, esc: Escape, limit: usize) -> String {
        let head = format!(
            "{}\n{} By type:\n{}\n{}",
            self.title,
            self.intro,
            self.count_lines(esc).join("\n"),
            self.how
        );
        let mut text = fit_as(&head, super::model::raw, limit);
        let mut used = units(&text);
        let label = "\nMost recent:";
        if used + units(label) < limit {
            text.push_str(label);
            used += units(label);
            for p in &self.recent {
                let line = format!(
                    "• {} ({})",
                    fit_as(&super::model::one_line(p.subject), esc, 100),
                    fit_as(&p.details(), esc, 300)
                );
                let cost = escaped_len(&line, super::model::raw) + 1;
                if used + cost > limit {
                    break;
                }
                text.push('\n');
                text.push_str(&line);
                used += cost;
            }
        }
        text
    }
}
