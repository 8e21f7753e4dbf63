//! Where events go, from the flags, the environment and the config: the routes, the
//! additional destinations (`vslack dest add`), the fallback and the default, each with its
//! kind (given, or told by its URL) and pace.

use anyhow::Result;

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::relay::forward::Destination;
use crate::relay::message::Format;
use crate::secret::Secret;

/// The kind of a destination at `url`: `kind` when given, else what the URL names (an error
/// lists the kinds when it names none).
pub fn kind_of(url: &Secret, kind: Option<Format>) -> Result<Format> {
    Ok(crate::relay::message::detect::check(url.expose(), kind)?.0)
}

/// The globs of a destination's `events`, or an error naming it.
pub fn globs(events: &[String], name: &str) -> Result<Vec<glob::Pattern>> {
    events
        .iter()
        .map(|e| {
            glob::Pattern::new(e).map_err(|err| {
                crate::exit::usage(format!(
                    "destination {name}: event pattern {e:?} is invalid: {err}"
                ))
            })
        })
        .collect()
}

/// Where events go: each route of the config (its pattern, URL and kind), each additional
/// destination (`vslack dest add`), the fallback,
/// then the default (the URL given the usual way, of kind `--format`, else `kind` in the
/// config, else the one its URL names; none in a dry run).
/// With `warn`, each URL's warning (plain http to a loopback stand-in, a kind that does not
/// match the URL) is logged: once, at the relay's start, not at each reload (`dest add` and
/// `slack set` said it when the URL was saved).
pub fn destinations(
    args: &ServeArgs,
    config: &Config,
    url: Option<Secret>,
    warn: bool,
) -> Result<Vec<Destination>> {
    build(args.format, args.pace, args.dry_run, config, url, warn)
}

/// [`destinations`] as commands other than `serve` see them: kinds from the config and the
/// URLs, paces by kind, nothing dry, no warnings.
pub fn configured(config: &Config) -> Result<Vec<Destination>> {
    build(
        None,
        None,
        false,
        config,
        super::serve::slack_url(None, config)?,
        false,
    )
}

fn build(
    format: Option<Format>,
    pace: Option<std::time::Duration>,
    dry_run: bool,
    config: &Config,
    url: Option<Secret>,
    warn: bool,
) -> Result<Vec<Destination>> {
    let dest = |name: &str,
                pattern: Option<glob::Pattern>,
                url: &Secret,
                kind: Option<Format>|
     -> Result<Destination> {
        let (format, warning) =
            crate::relay::message::detect::check(url.expose(), kind).map_err(|e| match name {
                "default" => e,
                _ => crate::exit::usage(format!("{name}: {e}")),
            })?;
        if let Some(w) = warning.filter(|_| warn) {
            tracing::warn!("{name}: {w}");
        }
        let url = (!dry_run).then(|| url.clone());
        Ok(Destination::new(name, pattern, url, format).paced(pace))
    };
    let mut destinations = Vec::new();
    for r in &config.slack.routes {
        let pattern = glob::Pattern::new(&r.events).map_err(|e| {
            crate::exit::usage(format!(
                "route pattern {:?} in the config is invalid: {e}",
                r.events
            ))
        })?;
        destinations.push(dest(&r.events, Some(pattern), &r.url, r.kind)?);
    }
    for d in &config.destinations {
        let events = globs(&d.events, &d.name)?;
        destinations.push(dest(&d.name, None, &d.url, d.kind)?.additionally(events));
    }
    if let Some(f) = &config.slack.fallback_url {
        let mut d = dest("fallback", None, f, config.slack.fallback_kind)?;
        d.fallback = true;
        destinations.push(d);
    }
    let kind = format.or(config.slack.kind);
    match &url {
        Some(u) => destinations.push(dest("default", None, u, kind)?),
        None => destinations.push(
            Destination::new("default", None, None, kind.unwrap_or(Format::Blocks)).paced(pace),
        ),
    }
    Ok(destinations)
}
