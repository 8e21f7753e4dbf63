//! The command-line interface as a clap derive tree. Only parsing lives here: commands turn
//! these structs into library calls, and clap types never travel further.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "vslack",
    version,
    about = "Relay Vast.ai notification webhooks into Slack",
    long_about = "Relay Vast.ai notification webhooks into Slack.\n\n\
        vslack manages your Vast.ai webhooks, keeps their signing secrets safe on this machine, and \
        runs a relay that verifies every delivery, stores it before answering, and posts it to Slack \
        exactly once.\n\n\
        Start with `vslack demo` (no account needed), then `vslack setup` and `vslack up`.",
    after_help = "Environment: VAST_API_KEY, VAST_URL, VSLACK_CONFIG_DIR, VSLACK_DATA_DIR, SLACK_WEBHOOK_URL, \
        VAST_WEBHOOK_SECRET, PORT, VAST_CONSOLE, RUST_LOG, NO_COLOR. See the README for details."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Directory for the relay's event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default:
    /// https://console.vast.ai]
    #[arg(long = "vast-url", global = true, value_name = "URL")]
    pub vast_url_flag: Option<String>,
    /// Read the Vast.ai API key from this file (the key itself is never taken as an argument)
    #[arg(long, global = true, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (never contains secrets)
    #[arg(long, global = true)]
    pub json: bool,
    /// Never prompt; a missing value is an error naming its flag
    #[arg(long, global = true)]
    pub no_input: bool,
    /// More log output (-v debug, -vv trace and payloads); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Global {
    /// The Vast.ai API base: --vast-url, else VAST_URL (the official CLI's name), else the
    /// real console. (Read here rather than by clap so an environment value never shows up
    /// in usage lines.)
    pub fn vast_url(&self) -> String {
        self.vast_url_flag
            .clone()
            .or_else(|| std::env::var("VAST_URL").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| crate::vast::client::DEFAULT_BASE.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Save a Vast.ai API key (hidden prompt, or one line on stdin), checked with Vast.ai first
    #[command(after_help = "Examples:\n  vslack login\n  vslack login < ~/vast-key.txt")]
    #[command(display_order = 10)]
    Login,
    /// Forget the API key saved by `vslack login`
    #[command(display_order = 11, after_help = "Example:\n  vslack logout")]
    Logout,
    /// Manage Vast.ai webhooks (create, list, show, update, test, delete, rotate-secret, types)
    #[command(subcommand)]
    #[command(
        display_order = 9,
        after_help = "Examples:\n  vslack webhook list\n  vslack webhook create --url https://relay.example.com/ --event low_credit\n  vslack webhook test"
    )]
    Webhook(WebhookCmd),
    /// Save, check or forget the Slack webhook URL the relay posts to
    #[command(subcommand)]
    #[command(
        display_order = 12,
        after_help = "Examples:\n  vslack slack set\n  vslack slack test"
    )]
    Slack(SlackCmd),
    /// Show the configuration (secrets redacted) or where files live
    #[command(subcommand)]
    #[command(
        display_order = 13,
        after_help = "Examples:\n  vslack config show\n  vslack config path --json"
    )]
    Config(ConfigCmd),
    /// Guided first run: API key, Slack URL, events, and how Vast.ai reaches the relay
    #[command(
        after_help = "Examples:\n  vslack setup\n  vslack setup --no-input --api-key-file key.txt --slack-url-file slack.txt \\\n      --event low_credit --tunnel tmole\n\n\
        Safe to re-run: current values are offered as defaults and the existing webhook is reused. Every \
        prompt has a flag; with --no-input (or no terminal) a missing value is an error naming the flag."
    )]
    #[command(display_order = 2)]
    Setup(SetupArgs),
    /// Write a hardened systemd user unit for `vslack serve`
    #[command(subcommand)]
    #[command(
        display_order = 14,
        after_help = "Examples:\n  vslack service install --print\n  vslack service install && systemctl --user enable --now vslack"
    )]
    Service(ServiceCmd),
    /// The walkthrough in one terminal: relay + tunnel + point the webhook at it + test event
    #[command(
        after_help = "Examples:\n  vslack up --tunnel tmole\n  vslack up --tunnel cloudflared --cleanup\n  vslack up --tunnel-cmd 'my-tunnel --port {port}'\n  vslack up --public-url https://relay.example.com   # a deployed relay, no tunnel\n\n\
        Starts the relay, then the tunnel; reads the tunnel's public https URL; points the default webhook at it \
        (creating one if there is none); fires Vast.ai's test event and waits until Slack accepted it; then prints \
        one line per event. Ctrl-C stops the tunnel and the relay; --cleanup also deletes the webhook it created \
        (or restores the previous URL of an existing one). A second Ctrl-C skips the rest of the cleanup \
        (exit 130) and prints what is left to undo."
    )]
    #[command(display_order = 3)]
    Up(UpArgs),
    /// Check every link (API key, webhook, relay, secret, clock, Slack, queue) and name the broken one
    #[command(
        after_help = "Examples:\n  vslack doctor\n  vslack doctor --send   # also test deliveries end to end\n\n\
        Without --send, doctor only reads: it asks Vast.ai, the relay and the store, and sends nothing. \
        Each check prints ok, warn or FAIL with the fix. Exit code 0 when nothing failed, 1 otherwise \
        (a dead-lettered event is a failure)."
    )]
    #[command(display_order = 7)]
    Doctor {
        /// Also test deliveries: fire Vast.ai's test event at the webhook (the relay posts it to
        /// Slack) and post a "vslack is connected" message to the Slack URL
        #[arg(long)]
        send: bool,
    },
    /// Queue depth, dead letters, last delivery and webhook settings at a glance
    #[command(after_help = "Example:\n  vslack status --json")]
    #[command(display_order = 6)]
    Status,
    /// Run the relay: verify Vast.ai deliveries, store them, post them to Slack
    #[command(
        after_help = "Examples:\n  vslack serve\n  vslack serve --listen 127.0.0.1:9000 --path /vast\n  SLACK_WEBHOOK_URL=... VAST_WEBHOOK_SECRET=... vslack serve   # the walkthrough's variables\n  vslack serve --dry-run   # print Slack payloads instead of posting\n\n\
        Signing secrets: every secret stored by `vslack webhook create/rotate-secret`, plus VAST_WEBHOOK_SECRET. \
        Slack URL: --slack-url-file, else SLACK_WEBHOOK_URL, else `vslack slack set`.\n\
        Health: GET /health (JSON), metrics: GET /metrics (Prometheus)."
    )]
    #[command(display_order = 4)]
    Serve(ServeArgs),
    /// The whole pipeline on this machine, no accounts: relay + Slack stand-in + sample events
    #[command(after_help = "Example:\n  vslack demo\n\n\
        Starts a relay on a free loopback port with a fresh secret and a temporary store, and a local \
        stand-in for Slack that shows each message. Sends one event of each kind, a duplicate, a forged \
        signature and a stale one, and reports what happened to each. Exit code 0 only if every outcome \
        was right. Leaves nothing behind.")]
    #[command(display_order = 1)]
    Demo,
    /// Sign and send sample events to a relay, exactly as Vast.ai would (no account needed)
    #[command(
        after_help = "Examples:\n  vslack send --type low_credit\n  vslack send --all-types\n  vslack send --type instance_stopped --count 5 --duplicate\n  vslack send --bad-signature   # expect 401\n  vslack send --to https://relay.example.com/ --secret-file secret.txt\n\n\
        The secret is --secret-file, else VAST_WEBHOOK_SECRET, else the default webhook's stored secret. \
        Exit code 0 when every answer was the expected one (204, or 401 for --bad-signature/--stale)."
    )]
    #[command(display_order = 5)]
    Send(SendArgs),
    /// Inspect the relay's queue: pending and dead-lettered events; retry or drop them
    #[command(
        subcommand_required = false,
        after_help = "Examples:\n  vslack queue\n  vslack queue retry --all\n  vslack queue drop 17 --yes"
    )]
    #[command(display_order = 8)]
    Queue {
        #[command(subcommand)]
        cmd: Option<QueueCmd>,
    },
    /// Check the event store's file, or salvage a damaged one into a new store
    #[command(subcommand)]
    #[command(
        display_order = 9,
        after_help = "Examples:\n  vslack store check\n  vslack store recover   # with the relay stopped"
    )]
    Store(StoreCmd),
    /// Print shell completions (the same files are committed in completions/)
    #[command(
        after_help = "Example:\n  vslack completions bash > ~/.local/share/bash-completion/completions/vslack"
    )]
    #[command(display_order = 15)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; the same file is committed as man/vslack.1)
    #[command(
        after_help = "Example:\n  vslack man > ~/.local/share/man/man1/vslack.1 && man vslack"
    )]
    #[command(display_order = 16)]
    Man {
        /// The command whose page to print (e.g. `webhook create`) [default: the main page]
        command: Vec<String>,
        /// Write every page (vslack.1, vslack-webhook-create.1, …) into this directory
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

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
    /// Save the Slack incoming-webhook (or workflow trigger) URL: hidden prompt, or one line on stdin
    #[command(after_help = "Examples:\n  vslack slack set\n  vslack slack set < slack-url.txt")]
    Set,
    /// Post a "vslack is connected" message to the configured Slack URL
    #[command(after_help = "Example:\n  vslack slack test")]
    Test,
    /// Forget the saved Slack URL
    #[command(after_help = "Example:\n  vslack slack clear")]
    Clear,
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

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: PORT sets 127.0.0.1:PORT] [default: 127.0.0.1:8787]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// URL path that receives deliveries [default: /]
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Read the Slack URL from this file (else SLACK_WEBHOOK_URL, else `vslack slack set`)
    #[arg(long, value_name = "PATH")]
    pub slack_url_file: Option<PathBuf>,
    /// Message shape for every destination, routes included; by default chosen from each Slack
    /// URL (…/services/… gets Block Kit, …/triggers/… gets workflow variables)
    #[arg(long, value_enum)]
    pub format: Option<crate::relay::message::Format>,
    /// Print each Slack payload on stdout instead of posting it
    #[arg(long)]
    pub dry_run: bool,
    /// Accept signatures whose timestamp is at most this many seconds from now (either way)
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub signature_window: i64,
    /// How long a rotated-out signing secret stays valid [default: 24h, or the config]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub secret_grace: Option<std::time::Duration>,
    /// Largest delivery body accepted, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    pub max_body: usize,
    /// Most connections open at once (more wait in the kernel's backlog)
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Close a connection whose request headers take longer than this to arrive
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: std::time::Duration,
    /// Answer 408 to a request (body included) not complete within this time
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,
    /// Minimum gap between two Slack messages to one URL (Slack allows about one per second)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub pace: std::time::Duration,
    /// First retry delay after a Slack failure (doubles each time)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub retry_initial: std::time::Duration,
    /// Longest delay between retries
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub retry_max: std::time::Duration,
    /// Dead-letter an event still undelivered this long after it arrived
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub max_age: std::time::Duration,
    /// Remember delivered event ids this long, to drop redeliveries
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub retention: std::time::Duration,
    /// Keep the raw body of a delivered event this long (for inspection); after that only
    /// what deduplication and `vslack queue` need is kept
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub keep_bodies: std::time::Duration,
    /// Cap the event store's size; when full the relay answers 503 so Vast.ai retries later
    /// [default: no cap]
    #[arg(long, value_name = "MB")]
    pub max_store_mb: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List pending and dead-lettered events (the default)
    #[command(after_help = "Examples:\n  vslack queue\n  vslack queue list --limit 200 --json")]
    List {
        /// How many of each to show
        #[arg(long, default_value_t = 50)]
        limit: usize,
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
        after_help = "Example:\n  vslack store check --json\n\nExit code 0 when the file is sound, 1 when it is damaged (then run `vslack store recover`)."
    )]
    Check,
    /// Salvage every readable event (pending, dead letters and the dedup history) from a
    /// damaged store into a new one; the damaged file is kept aside
    #[command(after_help = "Example:\n  vslack store recover\n\n\
        Stop the relay first (it refuses while one holds the store). The damaged file is renamed to \
        spool.sqlite3.damaged-<time> beside the new one, and the counts of what was saved and what \
        could not be read are printed.")]
    Recover,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Event type (slug) to send: low_credit, instance_stopped, machine_offline, … (`--all-types`
    /// sends one of each known type; an unknown type gets a generic sample)
    #[arg(
        long = "type",
        value_name = "TYPE",
        default_value = "webhook_test",
        conflicts_with = "all_types"
    )]
    pub notif_type: String,
    /// Send one event of every known type
    #[arg(long)]
    pub all_types: bool,
    /// Relay URL [default: the configured local relay, http://127.0.0.1:8787/]
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// How many events (of each type), 1 to 10000
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
    /// Deliver each event a second time (as Vast.ai's retries do); expect it deduplicated
    #[arg(long)]
    pub duplicate: bool,
    /// Sign with a wrong secret; expect 401 bad_signature
    #[arg(long, conflicts_with = "stale")]
    pub bad_signature: bool,
    /// Use a timestamp 10 minutes old; expect 401 stale_timestamp
    #[arg(long)]
    pub stale: bool,
    /// Read the signing secret from this file
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub reach: ReachArgs,
    /// On exit, delete the webhook if `up` created it, or restore the previous URL
    #[arg(long)]
    pub cleanup: bool,
    /// Events for a webhook that `up` has to create [default: the events saved by `vslack
    /// setup`, else the walkthrough's six: low_credit, instance_created, instance_started,
    /// instance_stopped, outbid, upcoming_downtime]
    #[arg(long = "event", value_name = "KEY")]
    pub events: Vec<String>,
    /// How long to wait for the tunnel's URL
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub tunnel_timeout: std::time::Duration,
    /// Do not fire Vast.ai's test event
    #[arg(long)]
    pub no_test: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// How Vast.ai reaches the relay (`setup` saves it, `up` uses it).
#[derive(Debug, Args)]
pub struct ReachArgs {
    /// Tunnel program: tmole, cloudflared or ngrok [default: the one saved by `vslack setup`]
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tunnel_cmd", "public_url"])]
    pub tunnel: Option<String>,
    /// Any tunnel command; {port} is replaced by the relay's port, and the first https URL it
    /// prints is used once it keeps running. The command is split into words like a shell
    /// would (quotes, backslashes) but no shell runs it, so `$VAR`, `~` and pipes mean nothing;
    /// for those use --tunnel-cmd 'sh -c "my-tunnel --port {port} | tee tunnel.log"'. It never
    /// sees vslack's secrets (VAST_API_KEY, VAST_WEBHOOK_SECRET, SLACK_WEBHOOK_URL, VSLACK_*).
    #[arg(long, value_name = "COMMAND", conflicts_with = "public_url")]
    pub tunnel_cmd: Option<String>,
    /// The relay's public https URL when it is deployed (no tunnel is started)
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Read the Slack incoming-webhook URL from this file
    #[arg(long, value_name = "PATH")]
    pub slack_url_file: Option<PathBuf>,
    /// Event to subscribe to (repeatable)
    #[arg(long = "event", value_name = "KEY", conflicts_with = "all_events")]
    pub events: Vec<String>,
    /// Subscribe to every notification type
    #[arg(long)]
    pub all_events: bool,
    #[command(flatten)]
    pub reach: ReachArgs,
    /// Post a "vslack is connected" message to Slack
    #[arg(long)]
    pub send_hello: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Install ~/.config/systemd/user/vslack.service (or --print it)
    #[command(
        after_help = "Example:\n  vslack service install && systemctl --user enable --now vslack"
    )]
    Install {
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
