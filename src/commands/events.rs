//! Event keys: the account's catalogue of notification types, expanding `low_credit` to
//! `client:low_credit`, a "did you mean" for a typo, and the multi-select on a terminal.

use anyhow::Result;

use super::Ctx;
use crate::exit::usage;
use crate::vast::{NotificationType, VastClient, VastError};

/// Fetch the catalogue; on anything but an auth failure, carry on without it.
pub async fn catalogue(ctx: &Ctx, client: &VastClient) -> Result<Option<Vec<NotificationType>>> {
    match client.notification_types().await {
        Ok(t) => Ok(Some(t)),
        Err(e @ VastError::Unauthorized { .. }) => Err(e.into()),
        Err(e) => {
            ctx.note(format!(
                "warning: cannot fetch the notification types to check event keys ({e})"
            ));
            Ok(None)
        }
    }
}

/// Expand and check event keys: `low_credit` becomes `client:low_credit` when unambiguous.
pub fn resolve_events(
    inputs: &[String],
    catalogue: Option<&[NotificationType]>,
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for input in inputs {
        let input = input.trim();
        let key = match catalogue {
            None if input.contains(':') => input.to_owned(),
            None => {
                return Err(usage(format!(
                    "cannot expand event {input:?} without the catalogue; give the full key, like client:{input}"
                )))
            }
            Some(cat) if cat.iter().any(|t| t.key == input) => input.to_owned(),
            Some(cat) => {
                let matches: Vec<&str> = cat
                    .iter()
                    .filter(|t| t.key.split_once(':').map(|(_, s)| s) == Some(input))
                    .map(|t| t.key.as_str())
                    .collect();
                match matches.as_slice() {
                    [one] => (*one).to_owned(),
                    [] => {
                        let hint = closest(input, cat)
                            .map(|k| format!("did you mean {k}? "))
                            .unwrap_or_default();
                        return Err(usage(format!(
                            "unknown event type {input:?}; {hint}`vslack webhook types` lists the keys your account can use"
                        )));
                    }
                    many => return Err(usage(format!("event {input:?} is ambiguous: {}", many.join(", ")))),
                }
            }
        };
        if !out.contains(&key) {
            out.push(key);
        }
    }
    Ok(out)
}

/// The catalogue key nearest to a mistyped `input` (by the key or by its slug), if one is
/// near enough to be what was meant.
fn closest<'a>(input: &str, catalogue: &'a [NotificationType]) -> Option<&'a str> {
    catalogue
        .iter()
        .map(|t| {
            let slug = t.key.split_once(':').map_or(t.key.as_str(), |(_, s)| s);
            let score = strsim::jaro_winkler(input, &t.key).max(strsim::jaro_winkler(input, slug));
            (score, t.key.as_str())
        })
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// Ask for events on a terminal, with `preselected` ticked.
pub fn pick_events(
    catalogue: &[NotificationType],
    preselected: &[String],
    prompt: &str,
) -> Result<Vec<String>> {
    let labels: Vec<String> = catalogue
        .iter()
        .map(|t| format!("{}  {}", t.key, t.display_name.as_deref().unwrap_or("")))
        .collect();
    let defaults: Vec<bool> = catalogue
        .iter()
        .map(|t| preselected.contains(&t.key))
        .collect();
    let chosen = crate::prompt::multi_select(
        &format!("{prompt} (space toggles, enter confirms)"),
        &labels,
        &defaults,
    )?;
    Ok(chosen
        .into_iter()
        .map(|i| catalogue[i].key.clone())
        .collect())
}
