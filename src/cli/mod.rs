//! The command-line interface as a clap derive tree. Only parsing lives here: commands turn
//! these structs into library calls, and clap types never travel further.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod groups;
mod relay;
mod values;

pub use groups::*;
pub use relay::*;

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
        VAST_WEBHOOK_SECRET, VSLACK_STORE_URL, PORT, VAST_CONSOLE, RUST_LOG, NO_COLOR. See the README for details."
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
    /// Add, list, remove or test destinations: Slack, Discord, PagerDuty, … each taking the
    /// event types you choose, delivered on its own
    #[command(subcommand)]
    #[command(
        display_order = 13,
        after_help = "Examples:\n  vslack dest add pager --events machine_offline --events billing_failed < pagerduty-url.txt\n  vslack dest list\n  vslack dest test pager\n  vslack dest remove pager"
    )]
    Dest(DestCmd),
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
    /// Write a hardened systemd unit for `vslack serve` (a user unit, or with --system a system one)
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
    /// The event store: check it, salvage a damaged file, or share one PostgreSQL store
    /// between relays (set, clear, migrate)
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
