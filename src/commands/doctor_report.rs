//! `doctor`'s report: one check per link, each ok, warn or FAIL with its fix.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    /// `null` when there is nothing to fix.
    pub fix: Option<String>,
}

#[derive(Default)]
pub struct Report(pub Vec<Check>);

impl Report {
    pub fn add(
        &mut self,
        name: &'static str,
        level: Level,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.0.push(Check {
            name,
            level,
            detail: detail.into(),
            fix,
        });
    }
    pub fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Level::Ok, detail, None);
    }
    pub fn warn(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Level::Warn, detail, Some(fix.into()));
    }
    pub fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Level::Fail, detail, Some(fix.into()));
    }
}

/// With no webhook to follow: whether `vslack serve` would have a secret to check with.
pub fn secret_held(r: &mut Report, config: &crate::config::Config) {
    match super::serve::keys(config, config.secret_grace()).first() {
        Some(k) => r.ok("secret", format!("from {}", k.label)),
        None => r.fail(
            "secret",
            "no webhook signing secret: `vslack serve` will not start",
            super::serve::SECRET_FIX,
        ),
    }
}

/// The relay's own view (`incidents.json`): the last heartbeat, and each open incident as a
/// failure with the relay's diagnosis as its fix.
pub fn incidents(
    r: &mut Report,
    record: &crate::relay::incidents::Record,
    configured: Option<&str>,
) {
    use crate::cli::{parse_heartbeat, Heartbeat};
    let line = super::status::heartbeat_line(record, configured);
    let parsed = configured.map(parse_heartbeat);
    let failing = record.current().any(|i| i.key == "heartbeat");
    let stale = match (record.heartbeat_every_secs, record.heartbeat_last_success) {
        (Some(every), Some(t)) => crate::relay::now_secs() - t > 2 * every as i64 + 600,
        (Some(_), None) => record.heartbeat_last_attempt.is_some(),
        (None, _) => false,
    };
    if let Some(Err(e)) = parsed {
        r.fail(
            "heartbeat",
            line,
            format!("fix relay.heartbeat in the config ({e}): a duration such as 6h, or \"off\""),
        );
    } else if record.heartbeat_idle.is_some() {
        r.warn("heartbeat", line, "store the webhook's secret on this machine (`vslack webhook create`, or `vslack webhook rotate-secret ID`) so the heartbeat can test it");
    } else if failing {
        r.warn(
            "heartbeat",
            line,
            "its test event does not arrive: see the heartbeat incident below",
        );
    } else if stale {
        r.warn(
            "heartbeat",
            line,
            "no heartbeat has arrived for over two intervals: is the relay running? see its log",
        );
    } else if record.heartbeat_every_secs.is_some()
        || matches!(parsed, Some(Ok(Heartbeat::Every(_))))
    {
        r.ok("heartbeat", line);
    } else {
        r.warn(
            "heartbeat",
            line,
            "run the relay with --heartbeat 6h (or set it with `vslack setup`), so it notices when the path from Vast.ai breaks",
        );
    }
    for i in record.current() {
        r.fail(
            "incident",
            format!(
                "{} (open since {})",
                i.title,
                crate::output::unix_time(i.since)
            ),
            i.detail.clone(),
        );
    }
}

/// A shared PostgreSQL store: reachable, its schema, and which relays use it now.
pub async fn shared_store(r: &mut Report, url: &crate::secret::Secret) {
    use crate::relay::spool::postgres::inspect;
    let seen = match inspect::inspect(url).await {
        Ok(s) => s,
        Err(e) => {
            return r.fail(
                "store",
                format!("{e:#}"),
                "start the database or fix the URL (`vslack store set`, VSLACK_STORE_URL); the relay answers 503 while it cannot store events",
            )
        }
    };
    let relays = &seen.relays;
    let forwarding = relays.iter().filter(|x| x.forwarding).count();
    let names = relays
        .iter()
        .map(|x| {
            format!(
                "{}{}",
                x.host,
                if x.forwarding { " (forwarding)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    match seen.schema {
        Some(v) if v > seen.schema_supported => r.fail(
            "store",
            format!(
                "{}: schema version {v} is newer than this vslack ({})",
                seen.store, seen.schema_supported
            ),
            "upgrade vslack on this machine",
        ),
        None => r.warn(
            "store",
            format!("{}: reachable, no vslack tables yet", seen.store),
            "start a relay with this store (`vslack serve`), or run `vslack store set`",
        ),
        Some(_) if relays.is_empty() => r.warn(
            "store",
            format!(
                "{}: reachable, schema v{}, no relay active in the last {} s",
                seen.store,
                seen.schema_supported,
                inspect::ACTIVE_WITHIN
            ),
            "start `vslack serve` on at least one machine",
        ),
        Some(_) if forwarding == 0 => r.warn(
            "store",
            format!(
                "{}: {} relay(s) active ({names}) but none forwarding",
                seen.store,
                relays.len()
            ),
            "check the relays' logs: one takes over within seconds of another stopping",
        ),
        Some(v) => r.ok(
            "store",
            format!(
                "{}: schema v{v}, {} relay(s) active: {names}",
                seen.store,
                relays.len()
            ),
        ),
    }
}

/// Every destination besides the default (routes, the fallback, those `vslack dest add`
/// saved): its URL names a kind, and with `send` it takes a test message. A failure names
/// the destination.
pub async fn destinations(r: &mut Report, config: &crate::config::Config, send: bool) {
    let dests = match super::destinations::configured(config) {
        Ok(d) => d,
        Err(e) => {
            return r.fail(
                "destinations",
                format!("{e:#}"),
                "fix the destination the error names (`vslack dest list`; `vslack dest remove NAME` and add it again)",
            )
        }
    };
    for d in dests.iter().filter(|d| d.name != "default") {
        let Some(url) = &d.url else { continue };
        let what = format!(
            "{} ({}, {})",
            crate::output::printable(&d.name),
            d.format.name(),
            crate::relay::deliver::host_of(url.expose())
        );
        if !send {
            r.ok("destination", what);
            continue;
        }
        match crate::relay::deliver::post_hello(d.format, url).await {
            Ok(()) => r.ok("destination", format!("{what}: accepted a test message")),
            Err(e) => r.fail(
                "destination",
                format!("{what}: {e:#}"),
                format!(
                    "give {} a working URL (`vslack dest remove NAME`, then `vslack dest add NAME`; for a route or the fallback, the config or `vslack slack set --fallback`)",
                    crate::output::printable(&d.name)
                ),
            ),
        }
    }
}
