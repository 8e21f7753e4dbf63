//! `vslack queue`: what the relay still has to deliver, and the dead letters it gave up on.
//! Works on the store directly, also while `vslack serve` runs.

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::cli::QueueCmd;
use crate::exit::{usage, NotFoundError};
use crate::output;
use crate::relay::forward::{legs_of, Destination};
use crate::relay::spool::{self, Queued};

pub async fn run(ctx: &Ctx, mut cmd: Option<QueueCmd>) -> Result<()> {
    // A number named twice is one event.
    if let Some(QueueCmd::Retry { seqs, .. } | QueueCmd::Drop { seqs, .. }) = &mut cmd {
        seqs.sort_unstable();
        seqs.dedup();
    }
    // Check what was asked before looking at the store.
    match &cmd {
        Some(QueueCmd::Retry { seqs, all }) if seqs.is_empty() && !all => {
            return Err(usage(
                "name the events to retry (SEQ from `vslack queue`) or pass --all",
            ));
        }
        Some(QueueCmd::Drop { yes: false, .. }) if !ctx.interactive() => {
            return Err(usage("dropping events loses them for good: pass --yes"));
        }
        _ => {}
    }
    let path = ctx.paths.spool_file();
    let location = super::store_pg::location(ctx, &ctx.config()?, None)?;
    let Some(spool) = spool::open_for_command(&location, &path).await? else {
        let named = match &cmd {
            Some(QueueCmd::Retry { seqs, .. } | QueueCmd::Drop { seqs, .. }) => seqs.len(),
            _ => 0,
        };
        if named > 0 {
            return Err(NotFoundError(format!(
                "no event store yet at {} (the relay has not run), so none of the {named} event(s) named exist",
                path.display()
            ))
            .into());
        }
        if ctx.global.json {
            return output::json(&json!({"pending": [], "dead": []}));
        }
        ctx.note(format!(
            "No event store yet at {} (the relay has not run)",
            path.display()
        ));
        return Ok(());
    };
    match cmd.unwrap_or(QueueCmd::List {
        limit: None,
        range: None,
    }) {
        QueueCmd::List {
            limit,
            range: Some((from, to)),
        } => {
            let rows = spool
                .list_range(from, to, limit.unwrap_or(usize::MAX))
                .await?;
            if ctx.global.json {
                return output::json(&json!({ "events": rows }));
            }
            println!(
                "{} numbered {from} to {to}",
                output::plural(rows.len(), "event")
            );
            if !rows.is_empty() {
                print!(
                    "{}",
                    output::table(
                        &["SEQ", "EVENT ID", "TYPE", "STATE", "RECEIVED", "SUBJECT"],
                        &rows
                            .iter()
                            .map(|q| {
                                vec![
                                    q.seq.to_string(),
                                    q.event.event_id.clone(),
                                    q.event.notif_type.clone(),
                                    q.state.to_owned(),
                                    output::unix_time(q.event.received_at),
                                    q.event.subject.clone().unwrap_or_default(),
                                ]
                            })
                            .collect::<Vec<_>>()
                    )
                );
            }
        }
        QueueCmd::List { limit, range: None } => {
            let limit = limit.unwrap_or(50);
            let pending = spool.list(spool::PENDING, limit).await?;
            let dead = spool.list(spool::DEAD, limit).await?;
            // Where each goes, as the config says now (a config that does not load: unknown).
            let dests = super::destinations::configured(&ctx.config()?).unwrap_or_default();
            if ctx.global.json {
                let with = |rows: &[Queued]| -> Vec<serde_json::Value> {
                    rows.iter()
                        .map(|q| {
                            let mut v = serde_json::to_value(q).unwrap_or_default();
                            v["destinations"] = legs_of(&dests, &q.event, q.state)
                                .into_iter()
                                .map(|(name, state)| json!({"name": name, "state": state}))
                                .collect();
                            v
                        })
                        .collect()
                };
                return output::json(&json!({"pending": with(&pending), "dead": with(&dead)}));
            }
            let stats = spool.stats().await?;
            println!(
                "{} pending, {} dead-lettered, {} delivered (kept for deduplication)",
                stats.pending, stats.dead, stats.delivered
            );
            for (title, rows) in [("Pending", &pending), ("Dead letters", &dead)] {
                if !rows.is_empty() {
                    println!("\n{}", output::bold(title));
                    print!(
                        "{}",
                        output::table(
                            &[
                                "SEQ",
                                "EVENT ID",
                                "TYPE",
                                "ATTEMPTS",
                                "RECEIVED",
                                "TO",
                                "LAST ERROR"
                            ],
                            &rows_of(rows, &dests)
                        )
                    );
                }
            }
            if !dead.is_empty() {
                ctx.note("Retry dead letters with `vslack queue retry --all` (after fixing the destination; only the destinations that refused one are sent it again), or drop them with `vslack queue drop SEQ`");
            }
        }
        QueueCmd::Retry { seqs, all } => {
            let asked = seqs.len();
            let n = spool.requeue(if all { None } else { Some(seqs) }).await?;
            if !all && n < asked {
                return Err(NotFoundError(format!(
                    "{} of the {asked} named are not dead letters or do not exist (requeued {n}); pending events are retried on their own, see `vslack queue`",
                    asked - n
                ))
                .into());
            }
            if ctx.global.json {
                output::json(&json!({"requeued": n}))?;
            }
            ctx.note(format!(
                "Requeued {n} dead letter(s); a running relay picks them up within a second"
            ));
        }
        QueueCmd::Drop { seqs, yes } => {
            if !yes {
                let ok = crate::prompt::confirm(
                    &format!("Delete {} event(s) for good?", seqs.len()),
                    false,
                )?;
                if !ok {
                    return Ok(());
                }
            }
            let asked = seqs.len();
            let n = spool.remove(seqs).await?;
            if n < asked {
                return Err(NotFoundError(format!(
                    "{} of the {asked} named are not pending or dead, or do not exist (dropped {n}); see `vslack queue`",
                    asked - n
                ))
                .into());
            }
            if ctx.global.json {
                output::json(&json!({"dropped": n}))?;
            }
            ctx.note(format!("Dropped {n} event(s)"));
        }
    }
    Ok(())
}

/// `default sent, pager waiting`: each destination the event goes to, and how far it got.
fn where_to(dests: &[Destination], q: &Queued) -> String {
    legs_of(dests, &q.event, q.state)
        .into_iter()
        .map(|(name, state)| format!("{} {state}", output::printable(&name)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rows_of(rows: &[Queued], dests: &[Destination]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|q| {
            vec![
                q.seq.to_string(),
                q.event.event_id.clone(),
                q.event.notif_type.clone(),
                q.attempts.to_string(),
                output::unix_time(q.event.received_at),
                where_to(dests, q),
                // Last column: shown whole, the reason is what the person needs.
                q.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect()
}
