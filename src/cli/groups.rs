//! The command groups' own subcommands and arguments (webhook, slack, config, queue, store,
//! service).

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum WebhookCmd {
    /// List the notification types your account can subscribe to
    #[command(after_help = "Examples:\n  vslack webhook types\n  vslack webhook types --json")]
    Types,
    /// Create a webhook and store its signing secret on this machine
    #[command(
        after_help = "Examples:\n  vslack webhook create --url https://relay.example.com/ \\\n      --event client:low_credit --event client:instance_stopped\n  vslack webhook create --url https://relay.example.com/ --all-events --name 'Slack alerts'\n\n\
        Event keys may be given without `client:`/`host:` when unambiguous (low_credit). On a terminal, \
        leaving out --event offers a multi-select. The secret is never printed unless --print-secret."
    )]
    Create(CreateArgs),
    /// List the account's webhooks, with whether this machine holds each one's secret
    #[command(after_help = "Example:\n  vslack webhook list --json")]
    List,
    /// Show one webhook (default: the default webhook)
    #[command(after_help = "Example:\n  vslack webhook show 42")]
    Show {
        /// Webhook ID (see `vslack webhook list`) [default: the default webhook]
        id: Option<i64>,
    },
    /// Change a webhook's URL, name or events (only what you pass changes)
    #[command(
        after_help = "Examples:\n  vslack webhook update --url https://new.example.com/\n  vslack webhook update 42 --add-event client:outbid --remove-event client:low_credit"
    )]
    Update(UpdateArgs),
    /// Ask Vast.ai to send its test event to the webhook and report its answer
    #[command(after_help = "Example:\n  vslack webhook test 42")]
    Test {
        /// Webhook ID (see `vslack webhook list`) [default: the default webhook]
        id: Option<i64>,
    },
    /// Delete a webhook at Vast.ai and forget its secret here
    #[command(after_help = "Example:\n  vslack webhook delete 42 --yes")]
    Delete {
        /// Webhook ID (see `vslack webhook list`) [default: the default webhook]
        id: Option<i64>,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long, short)]
        yes: bool,
    },
    /// Get a new signing secret; the old one stays valid in the relay for a grace period
    #[command(
        name = "rotate-secret",
        after_help = "Example:\n  vslack webhook rotate-secret 42\n\n\
        The relay keeps accepting the previous secret for 24 h (config `relay.secret_grace_hours`, or \
        `vslack serve --secret-grace`), so deliveries signed before Vast.ai switched are not lost."
    )]
    RotateSecret {
        /// Webhook ID (see `vslack webhook list`) [default: the default webhook]
        id: Option<i64>,
        /// Print the new secret alone on stdout (for piping into another system)
        #[arg(long)]
        print_secret: bool,
    },
    /// Make ID the webhook that commands use when no ID is given
    #[command(after_help = "Example:\n  vslack webhook default 42")]
    Default {
        /// Webhook ID (see `vslack webhook list`)
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Where Vast.ai delivers: https://host/path (http://127.0.0.1 allowed for local tests)
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// A label for the webhook (at most 120 characters)
    #[arg(long, default_value = "vslack")]
    pub name: String,
    /// Event key to subscribe to (repeatable), e.g. client:low_credit
    #[arg(long = "event", value_name = "KEY", conflicts_with = "all_events")]
    pub events: Vec<String>,
    /// Subscribe to every notification type in the account's catalogue
    #[arg(long)]
    pub all_events: bool,
    /// Print the signing secret alone on stdout (for piping); otherwise it is only stored
    #[arg(long)]
    pub print_secret: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Webhook ID (see `vslack webhook list`) [default: the default webhook]
    pub id: Option<i64>,
    /// New delivery URL
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// New name
    #[arg(long)]
    pub name: Option<String>,
    /// Replace the subscribed events with these (repeatable)
    #[arg(long = "event", value_name = "KEY", conflicts_with_all = ["add_events", "remove_events"])]
    pub events: Vec<String>,
    /// Subscribe to one more event (repeatable)
    #[arg(long = "add-event", value_name = "KEY")]
    pub add_events: Vec<String>,
    /// Unsubscribe from an event (repeatable)
    #[arg(long = "remove-event", value_name = "KEY")]
    pub remove_events: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum SlackCmd {
    /// Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt,
    /// or one line on stdin
    #[command(
        after_help = "Examples:\n  vslack slack set\n  vslack slack set < slack-url.txt\n  vslack slack set --fallback < ops-channel-url.txt\n  vslack slack set < discord-webhook-url.txt\n  echo https://ntfy.example.com/gpu-alerts | vslack slack set --format ntfy\n\n\
        The kind is taken from the URL when it names one (hooks.slack.com, chat.googleapis.com,\n\
        discord.com/api/webhooks, *.logic.azure.com, api.telegram.org or telegram://TOKEN@CHAT,\n\
        ntfy.sh, events.pagerduty.com or pagerduty://ROUTING_KEY); any other URL needs --format."
    )]
    Set {
        /// The kind of service the URL is [default: from the URL]
        #[arg(long, value_enum, value_name = "KIND")]
        format: Option<crate::relay::message::Format>,
        /// Save it as the fallback destination instead: it takes no events, only the relay's
        /// alerts about a destination that is failing (an archived channel cannot say so itself)
        #[arg(long)]
        fallback: bool,
    },
    /// Post a "vslack is connected" message to the configured Slack URL
    #[command(after_help = "Examples:\n  vslack slack test\n  vslack slack test --fallback")]
    Test {
        /// Post to the fallback destination instead
        #[arg(long)]
        fallback: bool,
    },
    /// Forget the saved Slack URL
    #[command(after_help = "Examples:\n  vslack slack clear\n  vslack slack clear --fallback")]
    Clear {
        /// Forget the fallback destination instead
        #[arg(long)]
        fallback: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the configuration with every secret shown as (redacted)
    #[command(after_help = "Examples:\n  vslack config show\n  vslack config show --json")]
    Show,
    /// Print where vslack keeps its files
    #[command(after_help = "Example:\n  vslack config path")]
    Path,
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List pending and dead-lettered events (the default), or every event in a range of queue
    /// numbers, whatever its state (what a summary posted to Slack stood for)
    #[command(
        after_help = "Examples:\n  vslack queue\n  vslack queue list --limit 200 --json\n  vslack queue list --range 101-10100"
    )]
    List {
        /// How many of each to show [default: 50; with --range, all]
        #[arg(long)]
        limit: Option<usize>,
        /// Every event numbered FROM to TO (the SEQ column; a summary in Slack names its range)
        #[arg(long, value_name = "FROM-TO", value_parser = parse_range)]
        range: Option<(i64, i64)>,
    },
    /// Put dead-lettered events back in the queue
    #[command(after_help = "Examples:\n  vslack queue retry 12 13\n  vslack queue retry --all")]
    Retry {
        /// Queue numbers (the SEQ column of `vslack queue`) to retry
        seqs: Vec<i64>,
        /// Retry every dead letter
        #[arg(long, conflicts_with = "seqs")]
        all: bool,
    },
    /// Delete pending or dead-lettered events for good (their ids stay remembered, so a
    /// redelivery is not queued again)
    #[command(after_help = "Example:\n  vslack queue drop 12 --yes")]
    Drop {
        /// Queue numbers (the SEQ column of `vslack queue`) to drop
        #[arg(required = true)]
        seqs: Vec<i64>,
        /// Do not ask for confirmation
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Check the store's integrity and count what it holds (read-only; safe while a relay runs)
    #[command(
        after_help = "Example:\n  vslack store check --json\n\nAcknowledged events in the relay's ack log but not in the table yet are counted apart (`in_ack_log`): a running relay stores them within moments, a stopped one (a crash) at its next start.\n\nExit code 0 when the file is sound, 1 when it is damaged (then run `vslack store recover`) or its ack log cannot be read (the message says which file and why)."
    )]
    Check,
    /// Salvage every readable event (pending, dead letters and the dedup history) from a
    /// damaged store into a new one; the damaged file is kept aside
    #[command(after_help = "Example:\n  vslack store recover\n\n\
        Stop the relay first (it refuses while one holds the store). The damaged file is renamed to \
        spool.sqlite3.damaged-<time> beside the new one, and the counts of what was saved and what \
        could not be read are printed.")]
    Recover,
    /// Keep events in a PostgreSQL database that several relays share (high availability):
    /// reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin,
    /// connects, prepares the schema and saves it as `[store] url`
    #[command(
        after_help = "Examples:\n  vslack store set\n  printf %s \"$DATABASE_URL\" | vslack store set\n\n\
        TLS: add ?sslmode=require (verified against the public roots), and &sslrootcert=/path/ca.pem \
        for a private CA. Then restart the relay, and run `vslack store migrate` to bring the events \
        the SQLite store holds. VSLACK_STORE_URL and `serve --store` take precedence over the saved URL."
    )]
    Set,
    /// Go back to the SQLite file in the data directory (forgets the saved URL; the database is
    /// left as it is)
    #[command(
        after_help = "Example:\n  vslack store clear && systemctl --user restart vslack\n\n\
        Events already in the database stay there; this machine's relay stores new ones in \
        spool.sqlite3 in the data directory after its restart."
    )]
    Clear,
    /// Copy the SQLite store (pending events, dead letters and the dedup history) into the
    /// PostgreSQL store, then move the SQLite file aside so it is never forwarded again
    #[command(
        after_help = "Example:\n  vslack store set && vslack store migrate\n\n\
        Stop the relay that uses the SQLite store first. Events the database already holds (same id) \
        are left as they are there, so running it twice copies nothing twice. The SQLite file is \
        renamed spool.sqlite3.migrated-<time>; nothing is deleted."
    )]
    Migrate,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Install ~/.config/systemd/user/vslack.service (or --print it)
    #[command(
        after_help = "Examples:\n  vslack service install && systemctl --user enable --now vslack\n  # A relay on port 443 with an automatic certificate, started at boot (a system unit that\n  # runs as you, with only the capability to bind low ports):\n  vslack service install --system --print \\\n      --serve-args '--listen 0.0.0.0:443 --domain relay.example.com' \\\n      | sudo tee /etc/systemd/system/vslack.service\n  sudo systemctl daemon-reload && sudo systemctl enable --now vslack"
    )]
    Install {
        /// A system unit (/etc/systemd/system/vslack.service) that starts at boot and runs as
        /// this user, never root; it may bind ports below 1024 (AmbientCapabilities=
        /// CAP_NET_BIND_SERVICE, nothing else) when the relay listens on one. Writing it needs
        /// root: use --print | sudo tee
        #[arg(long)]
        system: bool,
        /// Print the unit instead of writing it
        #[arg(long)]
        print: bool,
        /// Extra arguments for `vslack serve` in the unit, as one string
        /// (e.g. --serve-args '--listen 127.0.0.1:9000')
        #[arg(
            long,
            value_name = "ARGS",
            default_value = "",
            allow_hyphen_values = true
        )]
        serve_args: String,
        /// Write the unit even though its relay would not start yet (no secret or Slack URL in
        /// the config)
        #[arg(long)]
        force: bool,
    },
}

/// `FROM-TO` (queue numbers, FROM <= TO).
fn parse_range(s: &str) -> Result<(i64, i64), String> {
    let bad = || format!("{s:?} is not a range of queue numbers like 101-10100");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (i64, i64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a > b {
        return Err(format!("{s:?}: FROM is after TO"));
    }
    Ok((a, b))
}

#[derive(Debug, Subcommand)]
pub enum DestCmd {
    /// Add a destination that also takes the events matching --events (every event without
    /// it), besides where they go already; its URL from a hidden prompt or one line on stdin
    #[command(
        after_help = "Examples:\n  vslack dest add pager --events machine_offline --events billing_failed < pagerduty-url.txt\n  vslack dest add team-discord < discord-webhook-url.txt\n  vslack dest add phone --format ntfy --events 'machine_*' < ntfy-topic-url.txt\n\n\
        Each destination is delivered, retried and dead-lettered on its own: one that fails\n\
        never delays the others, and an event one has delivered is never sent there again.\n\
        URL shapes per kind are in the README (\"Destinations\")."
    )]
    Add {
        /// A short name for logs, `/metrics` and `vslack queue` (letters, digits, - and _)
        name: String,
        /// Event types it takes: a glob on the slug, repeatable [default: every event]
        #[arg(long = "events", value_name = "GLOB")]
        events: Vec<String>,
        /// The kind of service the URL is [default: from the URL]
        #[arg(long, value_enum, value_name = "KIND")]
        format: Option<crate::relay::message::Format>,
    },
    /// List every destination: the default, routes, the fallback and those added here
    #[command(after_help = "Examples:\n  vslack dest list\n  vslack dest list --json")]
    List,
    /// Remove a destination added with `vslack dest add`
    #[command(after_help = "Example:\n  vslack dest remove pager")]
    Remove {
        /// The destination's name (see `vslack dest list`)
        name: String,
    },
    /// Post a "vslack is connected" message to one destination (`default`, `fallback`, a
    /// route's events glob, or a name from `vslack dest list`)
    #[command(after_help = "Examples:\n  vslack dest test pager\n  vslack dest test default")]
    Test {
        /// The destination's name, `default`, `fallback` or a route's events glob
        name: String,
    },
}
