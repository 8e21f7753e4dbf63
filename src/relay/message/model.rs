//! The event model every kind renders from ([`Parts`]: subject, message, console link, topic,
//! severity, time, `type=… event_id=…`), and length-safe truncation for any markup
//! ([`fit_as`], [`compose_as`]).

use crate::relay::event::Event;

/// Subject used when an event has none.
pub const DEFAULT_SUBJECT: &str = "Vast.ai notification";
/// Message used when an event has none (some shapes must not be empty).
pub const NO_MESSAGE: &str = "(no message)";
pub const ELLIPSIS: char = '…';

/// The console page an event links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Billing,
    Instance,
    Host,
    Other,
}

/// How bad an event is, for colours, priorities and paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something came back (`*_online`, the relay's recovery).
    Resolved,
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn of(notif_type: &str) -> Severity {
        let s = slug(notif_type);
        if s.ends_with("_online") || s == "vslack_recovered" {
            Severity::Resolved
        } else if s.ends_with("_offline") {
            Severity::Critical
        } else if s.contains("fail") || s.contains("error") || s == "vslack_alert" {
            Severity::Error
        } else if s == "low_credit"
            || s == "outbid"
            || s.contains("downtime")
            || s.starts_with("maintenance")
        {
            Severity::Warning
        } else {
            Severity::Info
        }
    }
}

/// The slug proper: tolerant of a stray `client:`/`host:` prefix and of case.
pub fn slug(notif_type: &str) -> String {
    notif_type
        .rsplit(':')
        .next()
        .unwrap_or(notif_type)
        .trim()
        .to_ascii_lowercase()
}

/// The topic of an event, from its context when the relay knows it (the webhook that verified
/// it subscribes to `host:slug`, say), else from its slug.
pub fn topic_in(slug: &str, context: Option<&str>) -> Topic {
    match (topic(slug), context) {
        (Topic::Billing, _) => Topic::Billing,
        (_, Some("host")) => Topic::Host,
        (Topic::Host, Some("client")) => Topic::Instance,
        (k, _) => k,
    }
}

pub fn topic(slug: &str) -> Topic {
    const BILLING_WORDS: [&str; 4] = ["credit", "billing", "payment", "invoice"];
    if BILLING_WORDS.iter().any(|w| slug.contains(w)) {
        Topic::Billing
    } else if slug.starts_with("instance_") || slug == "outbid" || slug == "upcoming_downtime" {
        Topic::Instance
    } else if ["machine_", "maintenance_", "host_"]
        .iter()
        .any(|p| slug.starts_with(p))
    {
        Topic::Host
    } else {
        Topic::Other
    }
}

impl Topic {
    fn path(self) -> &'static str {
        match self {
            Topic::Billing => "/billing/",
            Topic::Instance => "/instances/",
            Topic::Host => "/host/machines/",
            Topic::Other => "/",
        }
    }

    /// The label of a link or button to the console page.
    pub fn button(self) -> &'static str {
        match self {
            Topic::Billing => "Open billing",
            Topic::Instance => "Open instances",
            Topic::Host => "Open host machines",
            Topic::Other => "Open console",
        }
    }
}

/// Console page for a topic: billing kinds -> `{console}/billing/`, instance kinds ->
/// `/instances/`, host kinds -> `/host/machines/`, the rest (webhook_test) -> the root.
pub fn action_url(console: &str, topic: Topic) -> String {
    let base = console.trim().trim_end_matches('/');
    format!("{base}{}", topic.path())
}

/// What every shape needs of one event, computed once.
pub struct Parts<'a> {
    pub event: &'a Event,
    pub topic: Topic,
    pub severity: Severity,
    pub subject: &'a str,
    pub message: &'a str,
    /// The console page the event is about.
    pub url: String,
}

impl<'a> Parts<'a> {
    pub fn new(event: &'a Event, console: &str) -> Parts<'a> {
        let non_empty = |s: &'a Option<String>| s.as_deref().filter(|s| !s.trim().is_empty());
        let slug = slug(&event.notif_type);
        let topic = topic_in(&slug, event.context.as_deref());
        Parts {
            event,
            topic,
            severity: Severity::of(&event.notif_type),
            subject: non_empty(&event.subject).unwrap_or(DEFAULT_SUBJECT),
            message: non_empty(&event.message).unwrap_or(NO_MESSAGE),
            url: action_url(console, topic),
        }
    }

    /// `type=… event_id=…`, raw (escape it for a markup).
    pub fn details(&self) -> String {
        format!("type={} event_id={}", self.type_key(), self.event.event_id)
    }

    /// The event time (or, without one, the time it was received) as UTC.
    pub fn time(&self) -> String {
        format_utc(self.unix_time())
    }

    pub fn unix_time(&self) -> i64 {
        self.event
            .timestamp
            .filter(|t| t.is_finite())
            .map_or(self.event.received_at, |t| t.floor() as i64)
    }

    /// `type`, as the full key (`host:machine_offline`) when the context is known.
    pub fn type_key(&self) -> String {
        type_key(self.event.context.as_deref(), &self.event.notif_type)
    }
}

/// `host:machine_offline` when the context is known, else `machine_offline`.
pub fn type_key(context: Option<&str>, notif_type: &str) -> String {
    match context {
        Some(c) => format!("{c}:{notif_type}"),
        None => notif_type.to_owned(),
    }
}

/// Length as services may count it: UTF-16 code units (never less than characters).
pub fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// How a markup writes one character (`&` as `&amp;`, say).
pub type Escape = fn(char, &mut String);

/// Characters as they are.
pub fn raw(c: char, out: &mut String) {
    out.push(c);
}

/// Units `c` takes once escaped (`buf` is scratch space, reused to spare allocations).
fn escaped_units(c: char, esc: Escape, buf: &mut String) -> usize {
    buf.clear();
    esc(c, buf);
    units(buf)
}

/// Units `s` takes once escaped.
pub fn escaped_len(s: &str, esc: Escape) -> usize {
    let mut buf = String::new();
    s.chars().map(|c| escaped_units(c, esc, &mut buf)).sum()
}

/// `s`, escaped with `esc`, cut to at most `limit` units and ending in `…` when cut. Cuts only
/// between characters, never inside an escape.
pub fn fit_as(s: &str, esc: Escape, limit: usize) -> String {
    let total = escaped_len(s, esc);
    let mut buf = String::new();
    let mut out = String::with_capacity(s.len().min(limit.saturating_mul(4)));
    if total <= limit {
        s.chars().for_each(|c| esc(c, &mut out));
        return out;
    }
    if limit == 0 {
        return out;
    }
    let budget = limit - 1; // room for the ellipsis
    let mut used = 0;
    for c in s.chars() {
        let u = escaped_units(c, esc, &mut buf);
        if used + u > budget {
            break;
        }
        used += u;
        esc(c, &mut out);
    }
    out.push(ELLIPSIS);
    out
}

/// `subject\nmessage\ntail` within `limit`, subject and message escaped with `esc` (the tail
/// is already in the markup). The tail is kept whole; the message gives way first, but the
/// subject never takes more than it needs or, when both are long, more than a quarter of the
/// room. Only when the tail alone does not fit is the whole cut.
pub fn compose_as(subject: &str, message: &str, tail: &str, esc: Escape, limit: usize) -> String {
    let room = limit.saturating_sub(units(tail) + 2);
    let message_len = escaped_len(message, esc);
    let subject_room = room.saturating_sub(message_len).max(room / 4).max(1);
    let subject = fit_as(subject, esc, subject_room);
    let message = fit_as(message, esc, room.saturating_sub(units(&subject)).max(1));
    fit_as(&format!("{subject}\n{message}\n{tail}"), raw, limit)
}

/// Newlines (and other line breaks) to spaces, for titles and one-line summaries.
pub fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian; any `i64` works).
pub fn format_utc(secs: i64) -> String {
    let (date, time) = civil(secs);
    format!("{date} {time} UTC")
}

/// Unix seconds as RFC 3339 (`2026-03-02T22:20:00Z`), for services that take a timestamp.
pub fn rfc3339(secs: i64) -> String {
    let (date, time) = civil(secs);
    format!("{date}T{time}Z")
}

fn civil(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Join the rendering of as many leading parts as fit in `limit` units, `sep` between them.
/// The first is always taken (render it to fit).
pub fn join_fitting(
    parts: &[Parts],
    sep: &str,
    limit: usize,
    render: impl Fn(&Parts) -> String,
) -> (String, usize) {
    let mut out = render(&parts[0]);
    let mut used = units(&out);
    let mut n = 1;
    for p in &parts[1..] {
        let piece = render(p);
        let cost = units(&piece) + units(sep);
        if used + cost > limit {
            break;
        }
        out.push_str(sep);
        out.push_str(&piece);
        used += cost;
        n += 1;
    }
    (out, n)
}
