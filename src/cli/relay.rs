//! Arguments of the commands that run or reach a relay: serve, up (and how Vast.ai reaches
//! it), setup and send.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: PORT sets 127.0.0.1:PORT] [default: 127.0.0.1:8787]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// URL path that receives deliveries [default: /]
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Read the destination URL from this file (else SLACK_WEBHOOK_URL, else `vslack slack set`)
    #[arg(long, value_name = "PATH")]
    pub slack_url_file: Option<PathBuf>,
    /// The kind of that URL's service, which decides the message shape [default: `kind` in
    /// the config, else from the URL: hooks.slack.com/services/ blocks, …/triggers/ workflow,
    /// chat.googleapis.com google-chat, discord.com/api/webhooks/ discord, *.logic.azure.com
    /// teams, api.telegram.org or telegram:// telegram, ntfy.sh ntfy, events.pagerduty.com or
    /// pagerduty:// pagerduty; any other URL needs it]
    #[arg(long, value_enum, value_name = "KIND")]
    pub format: Option<crate::relay::message::Format>,
    /// Print each message on stdout instead of posting it
    #[arg(long)]
    pub dry_run: bool,
    /// Accept signatures whose timestamp is at most this many seconds from now (either way)
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub signature_window: i64,
    /// How long a rotated-out signing secret stays valid [default: 24h, or the config]
    #[arg(long, value_name = "DURATION", value_parser = super::values::duration)]
    pub secret_grace: Option<std::time::Duration>,
    /// Largest delivery body accepted, in bytes (1024 to 16 MiB; a Vast.ai event is well under
    /// 4 kB)
    #[arg(long, value_name = "BYTES", default_value_t = 65536,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=16 << 20))]
    pub max_body: usize,
    /// Most connections open at once (kept below the open-file limit). One client may hold half
    /// of them, except 127.0.0.1 and ::1 (where a tunnel or proxy connects from); at the cap
    /// the longest-idle connection of the client holding the most is closed to make room
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Close a kept-alive connection that sends no request for this long (its first request may
    /// take --header-timeout)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = super::values::positive)]
    pub idle_timeout: std::time::Duration,
    /// Close a connection whose request headers take longer than this to arrive
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::values::positive)]
    pub header_timeout: std::time::Duration,
    /// Answer 408 to a request (body included) not complete within this time
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = super::values::positive)]
    pub request_timeout: std::time::Duration,
    /// Minimum gap between two messages to one destination [default: what its service
    /// allows: 1s Slack, Google Chat and Teams, 2s Discord, 3s Telegram, 5s ntfy, 500ms
    /// PagerDuty]
    #[arg(long, value_name = "DURATION", value_parser = super::values::duration)]
    pub pace: Option<std::time::Duration>,
    /// First retry delay after a Slack failure (doubles each time)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = super::values::positive)]
    pub retry_initial: std::time::Duration,
    /// Longest delay between retries
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::values::positive)]
    pub retry_max: std::time::Duration,
    /// A backlog that would take longer than this to list event by event at --pace (about 49
    /// events per message) is summarised instead: oldest first, one message per up to 10,000
    /// events with counts per type and the most recent of each, until the rest can be listed
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::values::duration)]
    pub list_within: std::time::Duration,
    /// Dead-letter an event still undelivered this long after it arrived
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = super::values::positive)]
    pub max_age: std::time::Duration,
    /// Remember delivered event ids this long, to drop redeliveries
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = super::values::positive)]
    pub retention: std::time::Duration,
    /// Keep the raw body of a delivered event this long (for inspection); after that only
    /// what deduplication and `vslack queue` need is kept
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = super::values::duration)]
    pub keep_bodies: std::time::Duration,
    /// Where events are stored: `sqlite` (the file in the data directory) or a PostgreSQL URL
    /// that several relays share (`postgres://USER@HOST:PORT/DB`). A URL with a password does
    /// not belong on a command line (any user can read it with ps): set VSLACK_STORE_URL, or
    /// save it with `vslack store set` [default: VSLACK_STORE_URL, else `[store] url`, else sqlite]
    #[arg(long, value_name = "sqlite|URL")]
    pub store: Option<String>,
    /// Cap the event store's size (its database file: the WAL and ack log beside it take up
    /// to about 24 MB more); when full the relay answers 503 so Vast.ai retries later
    /// [default: no cap]
    #[arg(long, value_name = "MB")]
    pub max_store_mb: Option<u64>,
    /// Every DURATION, ask Vast.ai to send each stored webhook's test event and check that it
    /// arrives here, signed (recorded, not posted). When it does not, ONE alert says why
    /// (webhook URL stale, API key revoked, webhook deleted, wrong secret, clock off), and ONE
    /// message says when it works again. `off` turns it off [default: the config's
    /// `relay.heartbeat`, which `vslack setup` sets (6h); else off]
    #[arg(long, value_name = "DURATION|off", value_parser = parse_heartbeat)]
    pub heartbeat: Option<Heartbeat>,
    /// How long the heartbeat waits for its test event [default: 2m, or the config]
    #[arg(long, value_name = "DURATION", value_parser = super::values::positive)]
    pub heartbeat_timeout: Option<std::time::Duration>,
    /// Alert when this many deliveries within --alert-window are refused for a signature no
    /// stored secret matches, or as stale when correctly signed (this clock is off); 0: never
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub alert_refused: u32,
    /// The window for --alert-refused
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::values::positive)]
    pub alert_window: std::time::Duration,
    /// Alert (on the other destinations, or the fallback set by `vslack slack set --fallback`)
    /// when a destination has failed this long; a dead-lettered event alerts at once
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = super::values::duration)]
    pub alert_failing_for: std::time::Duration,
    /// Alert when the oldest queued event has waited this long; 0s: never
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = super::values::duration)]
    pub alert_backlog_age: std::time::Duration,
    /// Serve HTTPS with this certificate chain (PEM), re-read when it changes on disk (a
    /// certbot renewal needs no restart) [default: the config's relay.tls_cert]
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_key",
        conflicts_with = "domain",
        help_heading = "HTTPS"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM; keep it 0600) [default: relay.tls_key]
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_cert",
        help_heading = "HTTPS"
    )]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate for DOMAIN obtained and renewed automatically (ACME,
    /// TLS-ALPN-01 on this listener: DNS must point here and port 443 be reachable; listen on
    /// 0.0.0.0:443). Cached in the data directory, so restarts place no new order
    /// [default: relay.domain]. With `up` and a tunnel: the tunnel's fixed hostname instead (a
    /// named cloudflared tunnel's, or a reserved ngrok domain such as NAME.ngrok-free.app)
    #[arg(long, value_name = "DOMAIN", help_heading = "HTTPS")]
    pub domain: Option<String>,
    /// Contact address for the ACME account (expiry notices) [default: relay.acme_email]
    #[arg(long, value_name = "EMAIL", help_heading = "HTTPS")]
    pub acme_email: Option<String>,
    /// ACME directory URL, e.g. Let's Encrypt staging
    /// (https://acme-staging-v02.api.letsencrypt.org/directory) or a private CA [default: Let's
    /// Encrypt, or relay.acme_directory]
    #[arg(long, value_name = "URL", help_heading = "HTTPS")]
    pub acme_directory: Option<String>,
    /// Trust this CA (PEM) for the ACME directory's own HTTPS (a private CA) [default:
    /// relay.acme_ca_file, else the public roots]
    #[arg(long, value_name = "PEM", help_heading = "HTTPS")]
    pub acme_ca_file: Option<PathBuf>,
    /// How the ACME server checks that this relay holds the domain: tls-alpn-01 on the HTTPS
    /// port itself, or http-01 on port 80 (--acme-http-listen), when 443 is not reachable from
    /// the internet directly [default: tls-alpn-01]
    #[arg(long, value_name = "KIND", value_parser = ["tls-alpn-01", "http-01"], help_heading = "HTTPS")]
    pub acme_challenge: Option<String>,
    /// Where http-01 is answered (only `/.well-known/acme-challenge/…`)
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:80",
        help_heading = "HTTPS"
    )]
    pub acme_http_listen: String,
}

/// `--heartbeat`: an interval, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Every(std::time::Duration),
    Off,
}

/// `6h`, `8s`, … or `off`.
pub fn parse_heartbeat(s: &str) -> Result<Heartbeat, String> {
    match s.trim() {
        "off" | "no" | "false" | "0" => Ok(Heartbeat::Off),
        t => match super::values::duration(t) {
            Ok(d) if d >= std::time::Duration::from_secs(1) => Ok(Heartbeat::Every(d)),
            Ok(_) => Err("the heartbeat interval must be at least 1s (or `off`)".into()),
            Err(e) => Err(format!("{e} (or `off`)")),
        },
    }
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
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::values::positive)]
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
    /// Run this named Cloudflare tunnel (`cloudflared tunnel create NAME`, then `cloudflared
    /// tunnel route dns NAME HOST`), whose URL is https://HOST from --domain: the webhook keeps
    /// one URL across runs [default: relay.tunnel_name]
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tunnel_cmd", "public_url"])]
    pub tunnel_name: Option<String>,
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
    /// With --public-url https://DOMAIN: serve HTTPS with an automatic certificate for DOMAIN
    /// (Let's Encrypt; saved as relay.domain, with relay.listen 0.0.0.0:443 unless one is set;
    /// then `vslack service install --system` runs it at boot). With a tunnel: the tunnel's
    /// fixed hostname (--tunnel cloudflared --tunnel-name NAME, or --tunnel ngrok with a
    /// reserved domain), saved as relay.tunnel_domain
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Contact address for the certificate's ACME account (saved as relay.acme_email)
    #[arg(long, value_name = "EMAIL", requires = "domain")]
    pub acme_email: Option<String>,
    /// How often the relay checks the whole path with Vast.ai's test event (saved as
    /// `relay.heartbeat`; see `vslack serve --help`), or `off` [default: asks; else 6h]
    #[arg(long, value_name = "DURATION|off", value_parser = parse_heartbeat)]
    pub heartbeat: Option<Heartbeat>,
}
