//! Where the event store is (`serve --store`, VSLACK_STORE_URL, `[store] url`, else the
//! SQLite file), and `vslack store set|clear|migrate` for a shared PostgreSQL store.

use anyhow::{Context, Result};
use serde_json::json;

use super::Ctx;
use crate::config::Config;
use crate::exit::usage;
use crate::output;
use crate::relay::spool::postgres::{self, has_password, is_postgres_url, shown};
use crate::relay::spool::Location;
use crate::secret::Secret;

/// The store URL in effect: `flag` (`--store`), else VSLACK_STORE_URL, else the config's;
/// `None` for the SQLite file.
pub fn url(config: &Config, flag: Option<&str>) -> Result<Option<Secret>> {
    if let Some(value) = flag {
        if value == "sqlite" {
            return Ok(None);
        }
        if !is_postgres_url(value) {
            return Err(usage(format!(
                "--store takes `sqlite` or a postgres:// URL, not {:?}",
                crate::config::shown_safely(value)
            )));
        }
        if has_password(value) {
            return Err(usage(
                "--store: a password on the command line can be read by any user of this machine (ps, /proc): put the URL in VSLACK_STORE_URL, or save it with `vslack store set`",
            ));
        }
        return Ok(Some(Secret::new(value)));
    }
    if let Some(value) = std::env::var("VSLACK_STORE_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        if value == "sqlite" {
            return Ok(None);
        }
        if !is_postgres_url(&value) {
            return Err(usage(
                "VSLACK_STORE_URL must be a postgres:// URL (or `sqlite`)",
            ));
        }
        return Ok(Some(Secret::new(value)));
    }
    Ok(config.store.url.clone())
}

/// Where the store is, for a command.
pub fn location(ctx: &Ctx, config: &Config, flag: Option<&str>) -> Result<Location> {
    Ok(Location::pick(url(config, flag)?, &ctx.paths.spool_file()))
}

pub async fn set(ctx: &Ctx) -> Result<u8> {
    let url = super::read_secret(
        ctx,
        "PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DB)",
        "pipe it on stdin: printf %s \"$DATABASE_URL\" | vslack store set",
    )?;
    if !is_postgres_url(url.expose()) {
        return Err(usage(
            "that is not a PostgreSQL URL: it must start with postgres:// or postgresql://",
        ));
    }
    let spool = crate::relay::spool::Spool::open_at(
        &Location::Postgres(url.clone()),
        &ctx.paths.spool_file(),
        &Default::default(),
    )
    .await?;
    let stats = spool.stats().await?;
    Config::update(&ctx.paths, |c| c.store.url = Some(url.clone()))?;
    let where_ = shown(url.expose());
    if ctx.global.json {
        return output::json(&json!({"store": where_, "pending": stats.pending, "saved": true}))
            .map(|()| crate::exit::OK);
    }
    println!(
        "Events will be stored in {where_} (schema ready; {} pending there now).",
        stats.pending
    );
    if ctx.paths.spool_file().exists() {
        println!("The SQLite store still holds this machine's events: stop the relay, run `vslack store migrate`, then restart it.");
    } else {
        println!("Restart the relay (`vslack serve`) to use it.");
    }
    Ok(crate::exit::OK)
}

pub fn clear(ctx: &Ctx) -> Result<u8> {
    let (_, had) = Config::update(&ctx.paths, |c| c.store.url.take().is_some())?;
    if ctx.global.json {
        return output::json(&json!({"cleared": had})).map(|()| crate::exit::OK);
    }
    if had {
        println!(
            "Events will be stored in {} again (the database is left as it is). Restart the relay to use it.",
            ctx.paths.spool_file().display()
        );
    } else {
        ctx.note("No store URL was saved; events are stored in the SQLite file.");
    }
    Ok(crate::exit::OK)
}

pub async fn migrate(ctx: &Ctx) -> Result<u8> {
    let config = ctx.config()?;
    let Some(url) = url(&config, None)? else {
        return Err(usage(
            "no PostgreSQL store to migrate into: run `vslack store set` (or set VSLACK_STORE_URL) first",
        ));
    };
    let path = ctx.paths.spool_file();
    if !path.exists() {
        return Err(crate::exit::NotFoundError(format!(
            "there is no SQLite store at {} to migrate",
            path.display()
        ))
        .into());
    }
    // No relay may write the file while it is copied and moved aside.
    let lock = crate::relay::lock_store(&path)
        .context("stop the relay that uses the SQLite store first")?;
    let done = postgres::import::import(&path, &url).await?;
    let aside = super::store::move_aside(&path, "migrated")
        .context("copied into the database, but the SQLite file is still in place")?;
    drop(lock);
    let into = shown(url.expose());
    if ctx.global.json {
        output::json(&json!({"into": into, "copied": done, "sqlite_kept_at": aside}))?;
    } else {
        println!(
            "Copied {} pending, {} dead-lettered and {} delivered or dropped events (dedup history) into {into}; {} were already there. The SQLite file is kept at {}.",
            done.pending,
            done.dead,
            done.delivered + done.dropped,
            done.already_there,
            aside.display()
        );
    }
    Ok(crate::exit::OK)
}

/// `vslack store check` on a shared store: reachable, schema, counts, active relays.
pub async fn check(ctx: &Ctx, url: &Secret) -> Result<u8> {
    let seen = postgres::inspect::inspect(url).await?;
    let sound = seen.schema.is_some_and(|v| v <= seen.schema_supported);
    if ctx.global.json {
        output::json(
            &json!({"store": seen.store, "sound": sound, "schema": seen.schema,
            "schema_supported": seen.schema_supported, "relays": seen.relays}),
        )?;
    } else {
        match seen.schema {
            None => println!(
                "{}: reachable, no vslack tables yet (a relay or `vslack store set` creates them)",
                seen.store
            ),
            Some(v) if v > seen.schema_supported => println!(
                "{}: schema version {v} is newer than this vslack ({}): upgrade vslack",
                seen.store, seen.schema_supported
            ),
            Some(v) => println!(
                "{}: reachable, schema version {v}, {} active relay(s)",
                seen.store,
                seen.relays.len()
            ),
        }
        for r in &seen.relays {
            println!(
                "  relay {} on {} (pid {}){}",
                r.id,
                r.host,
                r.pid,
                if r.forwarding {
                    ", forwarding"
                } else {
                    ", standby"
                }
            );
        }
    }
    Ok(if sound {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    })
}
