//! A summary: one message that accounts for a backlog too long to list event by event at the
//! destination's pace (see `forward`). It counts every event it stands for by type, shows the
//! most recent events of each type as a digest would, and says how to list them all with
//! `vslack queue`. Its size does not grow with the number of events, so one message can stand
//! for thousands. [`Summary`] is what every kind renders; the text is raw, each kind escapes
//! it for its markup.

use std::collections::HashMap;

use super::model::{escaped_len, fit_as, units, Escape, Parts};

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
    pub parts: &'a [Parts<'a>],
    /// `20,000 Vast.ai notifications, summarised`.
    pub title: String,
    /// When they arrived.
    pub intro: String,
    /// `(count, type)`, most frequent first; the last may be `N other types`.
    pub counts: Vec<(String, String)>,
    /// The most recent of each type, newest first.
    pub recent: Vec<&'a Parts<'a>>,
    /// How many of each type `recent` shows.
    pub per_type: usize,
    /// How to list them all.
    pub how: String,
}

impl<'a> Summary<'a> {
    /// The summary of `parts` (non-empty, in arrival order), queue numbers `seqs.0..=seqs.1`.
    pub fn of(parts: &'a [Parts<'a>], seqs: (i64, i64)) -> Summary<'a> {
        assert!(!parts.is_empty(), "a summary stands for at least one event");
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in parts {
            *counts.entry(p.type_key()).or_default() += 1;
        }
        let mut by_count: Vec<(String, usize)> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
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
        let n = parts.len();
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
            parts,
            title: format!("{} Vast.ai notifications, summarised", thousands(n)),
            intro: format!(
                "Too many to list one by one at this destination's pace: {} arrived between {} and {}.",
                thousands(n),
                parts[0].time(),
                parts[n - 1].time()
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
        }
    }

    /// The newest event's console page.
    pub fn url(&self) -> &str {
        &self.parts[self.parts.len() - 1].url
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
