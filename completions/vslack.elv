
use builtin;
use str;

set edit:completion:arg-completer[vslack] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'vslack'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'vslack'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand login 'Save a Vast.ai API key (hidden prompt, or one line on stdin), checked with Vast.ai first'
            cand logout 'Forget the API key saved by `vslack login`'
            cand webhook 'Manage Vast.ai webhooks (create, list, show, update, test, delete, rotate-secret, types)'
            cand slack 'Save, check or forget the Slack webhook URL the relay posts to'
            cand dest 'Add, list, remove or test destinations: Slack, Discord, PagerDuty, … each taking the event types you choose, delivered on its own'
            cand config 'Show the configuration (secrets redacted) or where files live'
            cand setup 'Guided first run: API key, Slack URL, events, and how Vast.ai reaches the relay'
            cand service 'Write a hardened systemd unit for `vslack serve` (a user unit, or with --system a system one)'
            cand up 'The walkthrough in one terminal: relay + tunnel + point the webhook at it + test event'
            cand doctor 'Check every link (API key, webhook, relay, secret, clock, Slack, queue) and name the broken one'
            cand status 'Queue depth, dead letters, last delivery and webhook settings at a glance'
            cand serve 'Run the relay: verify Vast.ai deliveries, store them, post them to Slack'
            cand demo 'The whole pipeline on this machine, no accounts: relay + Slack stand-in + sample events'
            cand send 'Sign and send sample events to a relay, exactly as Vast.ai would (no account needed)'
            cand queue 'Inspect the relay''s queue: pending and dead-lettered events; retry or drop them'
            cand store 'The event store: check it, salvage a damaged file, or share one PostgreSQL store between relays (set, clear, migrate)'
            cand completions 'Print shell completions (the same files are committed in completions/)'
            cand man 'Print the man page (roff; the same file is committed as man/vslack.1)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;login'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;logout'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand types 'List the notification types your account can subscribe to'
            cand create 'Create a webhook and store its signing secret on this machine'
            cand list 'List the account''s webhooks, with whether this machine holds each one''s secret'
            cand show 'Show one webhook (default: the default webhook)'
            cand update 'Change a webhook''s URL, name or events (only what you pass changes)'
            cand test 'Ask Vast.ai to send its test event to the webhook and report its answer'
            cand delete 'Delete a webhook at Vast.ai and forget its secret here'
            cand rotate-secret 'Get a new signing secret; the old one stays valid in the relay for a grace period'
            cand default 'Make ID the webhook that commands use when no ID is given'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;webhook;types'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook;create'= {
            cand --url 'Where Vast.ai delivers: https://host/path (http://127.0.0.1 allowed for local tests)'
            cand --name 'A label for the webhook (at most 120 characters)'
            cand --event 'Event key to subscribe to (repeatable), e.g. client:low_credit'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --all-events 'Subscribe to every notification type in the account''s catalogue'
            cand --print-secret 'Print the signing secret alone on stdout (for piping); otherwise it is only stored'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook;list'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook;show'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook;update'= {
            cand --url 'New delivery URL'
            cand --name 'New name'
            cand --event 'Replace the subscribed events with these (repeatable)'
            cand --add-event 'Subscribe to one more event (repeatable)'
            cand --remove-event 'Unsubscribe from an event (repeatable)'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook;test'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook;delete'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand -y 'Do not ask for confirmation (required when not on a terminal)'
            cand --yes 'Do not ask for confirmation (required when not on a terminal)'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook;rotate-secret'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --print-secret 'Print the new secret alone on stdout (for piping into another system)'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook;default'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;webhook;help'= {
            cand types 'List the notification types your account can subscribe to'
            cand create 'Create a webhook and store its signing secret on this machine'
            cand list 'List the account''s webhooks, with whether this machine holds each one''s secret'
            cand show 'Show one webhook (default: the default webhook)'
            cand update 'Change a webhook''s URL, name or events (only what you pass changes)'
            cand test 'Ask Vast.ai to send its test event to the webhook and report its answer'
            cand delete 'Delete a webhook at Vast.ai and forget its secret here'
            cand rotate-secret 'Get a new signing secret; the old one stays valid in the relay for a grace period'
            cand default 'Make ID the webhook that commands use when no ID is given'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;webhook;help;types'= {
        }
        &'vslack;webhook;help;create'= {
        }
        &'vslack;webhook;help;list'= {
        }
        &'vslack;webhook;help;show'= {
        }
        &'vslack;webhook;help;update'= {
        }
        &'vslack;webhook;help;test'= {
        }
        &'vslack;webhook;help;delete'= {
        }
        &'vslack;webhook;help;rotate-secret'= {
        }
        &'vslack;webhook;help;default'= {
        }
        &'vslack;webhook;help;help'= {
        }
        &'vslack;slack'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand set 'Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt, or one line on stdin'
            cand test 'Post a "vslack is connected" message to the configured Slack URL'
            cand clear 'Forget the saved Slack URL'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;slack;set'= {
            cand --format 'The kind of service the URL is [default: from the URL]'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --fallback 'Save it as the fallback destination instead: it takes no events, only the relay''s alerts about a destination that is failing (an archived channel cannot say so itself)'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'vslack;slack;test'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --fallback 'Post to the fallback destination instead'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;slack;clear'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --fallback 'Forget the fallback destination instead'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;slack;help'= {
            cand set 'Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt, or one line on stdin'
            cand test 'Post a "vslack is connected" message to the configured Slack URL'
            cand clear 'Forget the saved Slack URL'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;slack;help;set'= {
        }
        &'vslack;slack;help;test'= {
        }
        &'vslack;slack;help;clear'= {
        }
        &'vslack;slack;help;help'= {
        }
        &'vslack;dest'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand add 'Add a destination that also takes the events matching --events (every event without it), besides where they go already; its URL from a hidden prompt or one line on stdin'
            cand list 'List every destination: the default, routes, the fallback and those added here'
            cand remove 'Remove a destination added with `vslack dest add`'
            cand test 'Post a "vslack is connected" message to one destination (`default`, `fallback`, a route''s events glob, or a name from `vslack dest list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;dest;add'= {
            cand --events 'Event types it takes: a glob on the slug, repeatable [default: every event]'
            cand --format 'The kind of service the URL is [default: from the URL]'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'vslack;dest;list'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;dest;remove'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;dest;test'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;dest;help'= {
            cand add 'Add a destination that also takes the events matching --events (every event without it), besides where they go already; its URL from a hidden prompt or one line on stdin'
            cand list 'List every destination: the default, routes, the fallback and those added here'
            cand remove 'Remove a destination added with `vslack dest add`'
            cand test 'Post a "vslack is connected" message to one destination (`default`, `fallback`, a route''s events glob, or a name from `vslack dest list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;dest;help;add'= {
        }
        &'vslack;dest;help;list'= {
        }
        &'vslack;dest;help;remove'= {
        }
        &'vslack;dest;help;test'= {
        }
        &'vslack;dest;help;help'= {
        }
        &'vslack;config'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand show 'Print the configuration with every secret shown as (redacted)'
            cand path 'Print where vslack keeps its files'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;config;show'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;config;path'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;config;help'= {
            cand show 'Print the configuration with every secret shown as (redacted)'
            cand path 'Print where vslack keeps its files'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;config;help;show'= {
        }
        &'vslack;config;help;path'= {
        }
        &'vslack;config;help;help'= {
        }
        &'vslack;setup'= {
            cand --slack-url-file 'Read the Slack incoming-webhook URL from this file'
            cand --event 'Event to subscribe to (repeatable)'
            cand --tunnel 'Tunnel program: tmole, cloudflared or ngrok [default: the one saved by `vslack setup`]'
            cand --tunnel-cmd 'Any tunnel command; {port} is replaced by the relay''s port, and the first https URL it prints is used once it keeps running. The command is split into words like a shell would (quotes, backslashes) but no shell runs it, so `$VAR`, `~` and pipes mean nothing; for those use --tunnel-cmd ''sh -c "my-tunnel --port {port} | tee tunnel.log"''. It never sees vslack''s secrets (VAST_API_KEY, VAST_WEBHOOK_SECRET, SLACK_WEBHOOK_URL, VSLACK_*)'
            cand --public-url 'The relay''s public https URL when it is deployed (no tunnel is started)'
            cand --tunnel-name 'Run this named Cloudflare tunnel (`cloudflared tunnel create NAME`, then `cloudflared tunnel route dns NAME HOST`), whose URL is https://HOST from --domain: the webhook keeps one URL across runs [default: relay.tunnel_name]'
            cand --domain 'With --public-url https://DOMAIN: serve HTTPS with an automatic certificate for DOMAIN (Let''s Encrypt; saved as relay.domain, with relay.listen 0.0.0.0:443 unless one is set; then `vslack service install --system` runs it at boot). With a tunnel: the tunnel''s fixed hostname (--tunnel cloudflared --tunnel-name NAME, or --tunnel ngrok with a reserved domain), saved as relay.tunnel_domain'
            cand --acme-email 'Contact address for the certificate''s ACME account (saved as relay.acme_email)'
            cand --heartbeat 'How often the relay checks the whole path with Vast.ai''s test event (saved as `relay.heartbeat`; see `vslack serve --help`), or `off` [default: asks; else 6h]'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --all-events 'Subscribe to every notification type'
            cand --send-hello 'Post a "vslack is connected" message to Slack'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;service'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand install 'Install ~/.config/systemd/user/vslack.service (or --print it)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;service;install'= {
            cand --serve-args 'Extra arguments for `vslack serve` in the unit, as one string (e.g. --serve-args ''--listen 127.0.0.1:9000'')'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --system 'A system unit (/etc/systemd/system/vslack.service) that starts at boot and runs as this user, never root; it may bind ports below 1024 (AmbientCapabilities= CAP_NET_BIND_SERVICE, nothing else) when the relay listens on one. Writing it needs root: use --print | sudo tee'
            cand --print 'Print the unit instead of writing it'
            cand --force 'Write the unit even though its relay would not start yet (no secret or Slack URL in the config)'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;service;help'= {
            cand install 'Install ~/.config/systemd/user/vslack.service (or --print it)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;service;help;install'= {
        }
        &'vslack;service;help;help'= {
        }
        &'vslack;up'= {
            cand --tunnel 'Tunnel program: tmole, cloudflared or ngrok [default: the one saved by `vslack setup`]'
            cand --tunnel-cmd 'Any tunnel command; {port} is replaced by the relay''s port, and the first https URL it prints is used once it keeps running. The command is split into words like a shell would (quotes, backslashes) but no shell runs it, so `$VAR`, `~` and pipes mean nothing; for those use --tunnel-cmd ''sh -c "my-tunnel --port {port} | tee tunnel.log"''. It never sees vslack''s secrets (VAST_API_KEY, VAST_WEBHOOK_SECRET, SLACK_WEBHOOK_URL, VSLACK_*)'
            cand --public-url 'The relay''s public https URL when it is deployed (no tunnel is started)'
            cand --tunnel-name 'Run this named Cloudflare tunnel (`cloudflared tunnel create NAME`, then `cloudflared tunnel route dns NAME HOST`), whose URL is https://HOST from --domain: the webhook keeps one URL across runs [default: relay.tunnel_name]'
            cand --event 'Events for a webhook that `up` has to create [default: the events saved by `vslack setup`, else the walkthrough''s six: low_credit, instance_created, instance_started, instance_stopped, outbid, upcoming_downtime]'
            cand --tunnel-timeout 'How long to wait for the tunnel''s URL'
            cand --listen 'Address to listen on [env: PORT sets 127.0.0.1:PORT] [default: 127.0.0.1:8787]'
            cand --path 'URL path that receives deliveries [default: /]'
            cand --slack-url-file 'Read the destination URL from this file (else SLACK_WEBHOOK_URL, else `vslack slack set`)'
            cand --format 'The kind of that URL''s service, which decides the message shape [default: `kind` in the config, else from the URL: hooks.slack.com/services/ blocks, …/triggers/ workflow, chat.googleapis.com google-chat, discord.com/api/webhooks/ discord, *.logic.azure.com teams, api.telegram.org or telegram:// telegram, ntfy.sh ntfy, events.pagerduty.com or pagerduty:// pagerduty; any other URL needs it]'
            cand --signature-window 'Accept signatures whose timestamp is at most this many seconds from now (either way)'
            cand --secret-grace 'How long a rotated-out signing secret stays valid [default: 24h, or the config]'
            cand --max-body 'Largest delivery body accepted, in bytes (1024 to 16 MiB; a Vast.ai event is well under 4 kB)'
            cand --max-connections 'Most connections open at once (kept below the open-file limit). One client may hold half of them, except 127.0.0.1 and ::1 (where a tunnel or proxy connects from); at the cap the longest-idle connection of the client holding the most is closed to make room'
            cand --idle-timeout 'Close a kept-alive connection that sends no request for this long (its first request may take --header-timeout)'
            cand --header-timeout 'Close a connection whose request headers take longer than this to arrive'
            cand --request-timeout 'Answer 408 to a request (body included) not complete within this time'
            cand --pace 'Minimum gap between two messages to one destination [default: what its service allows: 1s Slack, Google Chat and Teams, 2s Discord, 3s Telegram, 5s ntfy, 500ms PagerDuty]'
            cand --retry-initial 'First retry delay after a Slack failure (doubles each time)'
            cand --retry-max 'Longest delay between retries'
            cand --list-within 'A backlog that would take longer than this to list event by event at --pace (about 49 events per message) is summarised instead: oldest first, one message per up to 10,000 events with counts per type and the most recent of each, until the rest can be listed'
            cand --max-age 'Dead-letter an event still undelivered this long after it arrived'
            cand --retention 'Remember delivered event ids this long, to drop redeliveries'
            cand --keep-bodies 'Keep the raw body of a delivered event this long (for inspection); after that only what deduplication and `vslack queue` need is kept'
            cand --store 'Where events are stored: `sqlite` (the file in the data directory) or a PostgreSQL URL that several relays share (`postgres://USER@HOST:PORT/DB`). A URL with a password does not belong on a command line (any user can read it with ps): set VSLACK_STORE_URL, or save it with `vslack store set` [default: VSLACK_STORE_URL, else `[store] url`, else sqlite]'
            cand --max-store-mb 'Cap the event store''s size (its database file: the WAL and ack log beside it take up to about 24 MB more); when full the relay answers 503 so Vast.ai retries later [default: no cap]'
            cand --heartbeat 'Every DURATION, ask Vast.ai to send each stored webhook''s test event and check that it arrives here, signed (recorded, not posted). When it does not, ONE alert says why (webhook URL stale, API key revoked, webhook deleted, wrong secret, clock off), and ONE message says when it works again. `off` turns it off [default: the config''s `relay.heartbeat`, which `vslack setup` sets (6h); else off]'
            cand --heartbeat-timeout 'How long the heartbeat waits for its test event [default: 2m, or the config]'
            cand --alert-refused 'Alert when this many deliveries within --alert-window are refused for a signature no stored secret matches, or as stale when correctly signed (this clock is off); 0: never'
            cand --alert-window 'The window for --alert-refused'
            cand --alert-failing-for 'Alert (on the other destinations, or the fallback set by `vslack slack set --fallback`) when a destination has failed this long; a dead-lettered event alerts at once'
            cand --alert-backlog-age 'Alert when the oldest queued event has waited this long; 0s: never'
            cand --tls-cert 'Serve HTTPS with this certificate chain (PEM), re-read when it changes on disk (a certbot renewal needs no restart) [default: the config''s relay.tls_cert]'
            cand --tls-key 'The certificate''s private key (PEM; keep it 0600) [default: relay.tls_key]'
            cand --domain 'Serve HTTPS with a certificate for DOMAIN obtained and renewed automatically (ACME, TLS-ALPN-01 on this listener: DNS must point here and port 443 be reachable; listen on 0.0.0.0:443). Cached in the data directory, so restarts place no new order [default: relay.domain]. With `up` and a tunnel: the tunnel''s fixed hostname instead (a named cloudflared tunnel''s, or a reserved ngrok domain such as NAME.ngrok-free.app)'
            cand --acme-email 'Contact address for the ACME account (expiry notices) [default: relay.acme_email]'
            cand --acme-directory 'ACME directory URL, e.g. Let''s Encrypt staging (https://acme-staging-v02.api.letsencrypt.org/directory) or a private CA [default: Let''s Encrypt, or relay.acme_directory]'
            cand --acme-ca-file 'Trust this CA (PEM) for the ACME directory''s own HTTPS (a private CA) [default: relay.acme_ca_file, else the public roots]'
            cand --acme-challenge 'How the ACME server checks that this relay holds the domain: tls-alpn-01 on the HTTPS port itself, or http-01 on port 80 (--acme-http-listen), when 443 is not reachable from the internet directly [default: tls-alpn-01]'
            cand --acme-http-listen 'Where http-01 is answered (only `/.well-known/acme-challenge/…`)'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --cleanup 'On exit, delete the webhook if `up` created it, or restore the previous URL'
            cand --no-test 'Do not fire Vast.ai''s test event'
            cand --dry-run 'Print each message on stdout instead of posting it'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'vslack;doctor'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --send 'Also test deliveries: fire Vast.ai''s test event at the webhook (the relay posts it to Slack) and post a "vslack is connected" message to the Slack URL'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;status'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;serve'= {
            cand --listen 'Address to listen on [env: PORT sets 127.0.0.1:PORT] [default: 127.0.0.1:8787]'
            cand --path 'URL path that receives deliveries [default: /]'
            cand --slack-url-file 'Read the destination URL from this file (else SLACK_WEBHOOK_URL, else `vslack slack set`)'
            cand --format 'The kind of that URL''s service, which decides the message shape [default: `kind` in the config, else from the URL: hooks.slack.com/services/ blocks, …/triggers/ workflow, chat.googleapis.com google-chat, discord.com/api/webhooks/ discord, *.logic.azure.com teams, api.telegram.org or telegram:// telegram, ntfy.sh ntfy, events.pagerduty.com or pagerduty:// pagerduty; any other URL needs it]'
            cand --signature-window 'Accept signatures whose timestamp is at most this many seconds from now (either way)'
            cand --secret-grace 'How long a rotated-out signing secret stays valid [default: 24h, or the config]'
            cand --max-body 'Largest delivery body accepted, in bytes (1024 to 16 MiB; a Vast.ai event is well under 4 kB)'
            cand --max-connections 'Most connections open at once (kept below the open-file limit). One client may hold half of them, except 127.0.0.1 and ::1 (where a tunnel or proxy connects from); at the cap the longest-idle connection of the client holding the most is closed to make room'
            cand --idle-timeout 'Close a kept-alive connection that sends no request for this long (its first request may take --header-timeout)'
            cand --header-timeout 'Close a connection whose request headers take longer than this to arrive'
            cand --request-timeout 'Answer 408 to a request (body included) not complete within this time'
            cand --pace 'Minimum gap between two messages to one destination [default: what its service allows: 1s Slack, Google Chat and Teams, 2s Discord, 3s Telegram, 5s ntfy, 500ms PagerDuty]'
            cand --retry-initial 'First retry delay after a Slack failure (doubles each time)'
            cand --retry-max 'Longest delay between retries'
            cand --list-within 'A backlog that would take longer than this to list event by event at --pace (about 49 events per message) is summarised instead: oldest first, one message per up to 10,000 events with counts per type and the most recent of each, until the rest can be listed'
            cand --max-age 'Dead-letter an event still undelivered this long after it arrived'
            cand --retention 'Remember delivered event ids this long, to drop redeliveries'
            cand --keep-bodies 'Keep the raw body of a delivered event this long (for inspection); after that only what deduplication and `vslack queue` need is kept'
            cand --store 'Where events are stored: `sqlite` (the file in the data directory) or a PostgreSQL URL that several relays share (`postgres://USER@HOST:PORT/DB`). A URL with a password does not belong on a command line (any user can read it with ps): set VSLACK_STORE_URL, or save it with `vslack store set` [default: VSLACK_STORE_URL, else `[store] url`, else sqlite]'
            cand --max-store-mb 'Cap the event store''s size (its database file: the WAL and ack log beside it take up to about 24 MB more); when full the relay answers 503 so Vast.ai retries later [default: no cap]'
            cand --heartbeat 'Every DURATION, ask Vast.ai to send each stored webhook''s test event and check that it arrives here, signed (recorded, not posted). When it does not, ONE alert says why (webhook URL stale, API key revoked, webhook deleted, wrong secret, clock off), and ONE message says when it works again. `off` turns it off [default: the config''s `relay.heartbeat`, which `vslack setup` sets (6h); else off]'
            cand --heartbeat-timeout 'How long the heartbeat waits for its test event [default: 2m, or the config]'
            cand --alert-refused 'Alert when this many deliveries within --alert-window are refused for a signature no stored secret matches, or as stale when correctly signed (this clock is off); 0: never'
            cand --alert-window 'The window for --alert-refused'
            cand --alert-failing-for 'Alert (on the other destinations, or the fallback set by `vslack slack set --fallback`) when a destination has failed this long; a dead-lettered event alerts at once'
            cand --alert-backlog-age 'Alert when the oldest queued event has waited this long; 0s: never'
            cand --tls-cert 'Serve HTTPS with this certificate chain (PEM), re-read when it changes on disk (a certbot renewal needs no restart) [default: the config''s relay.tls_cert]'
            cand --tls-key 'The certificate''s private key (PEM; keep it 0600) [default: relay.tls_key]'
            cand --domain 'Serve HTTPS with a certificate for DOMAIN obtained and renewed automatically (ACME, TLS-ALPN-01 on this listener: DNS must point here and port 443 be reachable; listen on 0.0.0.0:443). Cached in the data directory, so restarts place no new order [default: relay.domain]. With `up` and a tunnel: the tunnel''s fixed hostname instead (a named cloudflared tunnel''s, or a reserved ngrok domain such as NAME.ngrok-free.app)'
            cand --acme-email 'Contact address for the ACME account (expiry notices) [default: relay.acme_email]'
            cand --acme-directory 'ACME directory URL, e.g. Let''s Encrypt staging (https://acme-staging-v02.api.letsencrypt.org/directory) or a private CA [default: Let''s Encrypt, or relay.acme_directory]'
            cand --acme-ca-file 'Trust this CA (PEM) for the ACME directory''s own HTTPS (a private CA) [default: relay.acme_ca_file, else the public roots]'
            cand --acme-challenge 'How the ACME server checks that this relay holds the domain: tls-alpn-01 on the HTTPS port itself, or http-01 on port 80 (--acme-http-listen), when 443 is not reachable from the internet directly [default: tls-alpn-01]'
            cand --acme-http-listen 'Where http-01 is answered (only `/.well-known/acme-challenge/…`)'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --dry-run 'Print each message on stdout instead of posting it'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'vslack;demo'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;send'= {
            cand --type 'Event type (slug) to send: low_credit, instance_stopped, machine_offline, … (`--all-types` sends one of each known type; an unknown type gets a generic sample)'
            cand --to 'Relay URL [default: the configured local relay, http://127.0.0.1:8787/]'
            cand --count 'How many events (of each type), 1 to 10000'
            cand --secret-file 'Read the signing secret from this file'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --all-types 'Send one event of every known type'
            cand --duplicate 'Deliver each event a second time (as Vast.ai''s retries do); expect it deduplicated'
            cand --bad-signature 'Sign with a wrong secret; expect 401 bad_signature'
            cand --stale 'Use a timestamp 10 minutes old; expect 401 stale_timestamp'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;queue'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand list 'List pending and dead-lettered events (the default), or every event in a range of queue numbers, whatever its state (what a summary posted to Slack stood for)'
            cand retry 'Put dead-lettered events back in the queue'
            cand drop 'Delete pending or dead-lettered events for good (their ids stay remembered, so a redelivery is not queued again)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;queue;list'= {
            cand --limit 'How many of each to show [default: 50; with --range, all]'
            cand --range 'Every event numbered FROM to TO (the SEQ column; a summary in Slack names its range)'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;queue;retry'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --all 'Retry every dead letter'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;queue;drop'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand -y 'Do not ask for confirmation'
            cand --yes 'Do not ask for confirmation'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;queue;help'= {
            cand list 'List pending and dead-lettered events (the default), or every event in a range of queue numbers, whatever its state (what a summary posted to Slack stood for)'
            cand retry 'Put dead-lettered events back in the queue'
            cand drop 'Delete pending or dead-lettered events for good (their ids stay remembered, so a redelivery is not queued again)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;queue;help;list'= {
        }
        &'vslack;queue;help;retry'= {
        }
        &'vslack;queue;help;drop'= {
        }
        &'vslack;queue;help;help'= {
        }
        &'vslack;store'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand check 'Check the store''s integrity and count what it holds (read-only; safe while a relay runs)'
            cand recover 'Salvage every readable event (pending, dead letters and the dedup history) from a damaged store into a new one; the damaged file is kept aside'
            cand set 'Keep events in a PostgreSQL database that several relays share (high availability): reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin, connects, prepares the schema and saves it as `[store] url`'
            cand clear 'Go back to the SQLite file in the data directory (forgets the saved URL; the database is left as it is)'
            cand migrate 'Copy the SQLite store (pending events, dead letters and the dedup history) into the PostgreSQL store, then move the SQLite file aside so it is never forwarded again'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;store;check'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;store;recover'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;store;set'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;store;clear'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;store;migrate'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;store;help'= {
            cand check 'Check the store''s integrity and count what it holds (read-only; safe while a relay runs)'
            cand recover 'Salvage every readable event (pending, dead letters and the dedup history) from a damaged store into a new one; the damaged file is kept aside'
            cand set 'Keep events in a PostgreSQL database that several relays share (high availability): reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin, connects, prepares the schema and saves it as `[store] url`'
            cand clear 'Go back to the SQLite file in the data directory (forgets the saved URL; the database is left as it is)'
            cand migrate 'Copy the SQLite store (pending events, dead letters and the dedup history) into the PostgreSQL store, then move the SQLite file aside so it is never forwarded again'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;store;help;check'= {
        }
        &'vslack;store;help;recover'= {
        }
        &'vslack;store;help;set'= {
        }
        &'vslack;store;help;clear'= {
        }
        &'vslack;store;help;migrate'= {
        }
        &'vslack;store;help;help'= {
        }
        &'vslack;completions'= {
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;man'= {
            cand --dir 'Write every page (vslack.1, vslack-webhook-create.1, …) into this directory'
            cand --config-dir 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]'
            cand --data-dir 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]'
            cand --vast-url 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]'
            cand --api-key-file 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)'
            cand --log-format 'Log line format on stderr'
            cand --json 'Print machine-readable JSON on stdout (never contains secrets)'
            cand --no-input 'Never prompt; a missing value is an error naming its flag'
            cand -v 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand --verbose 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
            cand -q 'Only errors on stderr'
            cand --quiet 'Only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'vslack;help'= {
            cand login 'Save a Vast.ai API key (hidden prompt, or one line on stdin), checked with Vast.ai first'
            cand logout 'Forget the API key saved by `vslack login`'
            cand webhook 'Manage Vast.ai webhooks (create, list, show, update, test, delete, rotate-secret, types)'
            cand slack 'Save, check or forget the Slack webhook URL the relay posts to'
            cand dest 'Add, list, remove or test destinations: Slack, Discord, PagerDuty, … each taking the event types you choose, delivered on its own'
            cand config 'Show the configuration (secrets redacted) or where files live'
            cand setup 'Guided first run: API key, Slack URL, events, and how Vast.ai reaches the relay'
            cand service 'Write a hardened systemd unit for `vslack serve` (a user unit, or with --system a system one)'
            cand up 'The walkthrough in one terminal: relay + tunnel + point the webhook at it + test event'
            cand doctor 'Check every link (API key, webhook, relay, secret, clock, Slack, queue) and name the broken one'
            cand status 'Queue depth, dead letters, last delivery and webhook settings at a glance'
            cand serve 'Run the relay: verify Vast.ai deliveries, store them, post them to Slack'
            cand demo 'The whole pipeline on this machine, no accounts: relay + Slack stand-in + sample events'
            cand send 'Sign and send sample events to a relay, exactly as Vast.ai would (no account needed)'
            cand queue 'Inspect the relay''s queue: pending and dead-lettered events; retry or drop them'
            cand store 'The event store: check it, salvage a damaged file, or share one PostgreSQL store between relays (set, clear, migrate)'
            cand completions 'Print shell completions (the same files are committed in completions/)'
            cand man 'Print the man page (roff; the same file is committed as man/vslack.1)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'vslack;help;login'= {
        }
        &'vslack;help;logout'= {
        }
        &'vslack;help;webhook'= {
            cand types 'List the notification types your account can subscribe to'
            cand create 'Create a webhook and store its signing secret on this machine'
            cand list 'List the account''s webhooks, with whether this machine holds each one''s secret'
            cand show 'Show one webhook (default: the default webhook)'
            cand update 'Change a webhook''s URL, name or events (only what you pass changes)'
            cand test 'Ask Vast.ai to send its test event to the webhook and report its answer'
            cand delete 'Delete a webhook at Vast.ai and forget its secret here'
            cand rotate-secret 'Get a new signing secret; the old one stays valid in the relay for a grace period'
            cand default 'Make ID the webhook that commands use when no ID is given'
        }
        &'vslack;help;webhook;types'= {
        }
        &'vslack;help;webhook;create'= {
        }
        &'vslack;help;webhook;list'= {
        }
        &'vslack;help;webhook;show'= {
        }
        &'vslack;help;webhook;update'= {
        }
        &'vslack;help;webhook;test'= {
        }
        &'vslack;help;webhook;delete'= {
        }
        &'vslack;help;webhook;rotate-secret'= {
        }
        &'vslack;help;webhook;default'= {
        }
        &'vslack;help;slack'= {
            cand set 'Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt, or one line on stdin'
            cand test 'Post a "vslack is connected" message to the configured Slack URL'
            cand clear 'Forget the saved Slack URL'
        }
        &'vslack;help;slack;set'= {
        }
        &'vslack;help;slack;test'= {
        }
        &'vslack;help;slack;clear'= {
        }
        &'vslack;help;dest'= {
            cand add 'Add a destination that also takes the events matching --events (every event without it), besides where they go already; its URL from a hidden prompt or one line on stdin'
            cand list 'List every destination: the default, routes, the fallback and those added here'
            cand remove 'Remove a destination added with `vslack dest add`'
            cand test 'Post a "vslack is connected" message to one destination (`default`, `fallback`, a route''s events glob, or a name from `vslack dest list`)'
        }
        &'vslack;help;dest;add'= {
        }
        &'vslack;help;dest;list'= {
        }
        &'vslack;help;dest;remove'= {
        }
        &'vslack;help;dest;test'= {
        }
        &'vslack;help;config'= {
            cand show 'Print the configuration with every secret shown as (redacted)'
            cand path 'Print where vslack keeps its files'
        }
        &'vslack;help;config;show'= {
        }
        &'vslack;help;config;path'= {
        }
        &'vslack;help;setup'= {
        }
        &'vslack;help;service'= {
            cand install 'Install ~/.config/systemd/user/vslack.service (or --print it)'
        }
        &'vslack;help;service;install'= {
        }
        &'vslack;help;up'= {
        }
        &'vslack;help;doctor'= {
        }
        &'vslack;help;status'= {
        }
        &'vslack;help;serve'= {
        }
        &'vslack;help;demo'= {
        }
        &'vslack;help;send'= {
        }
        &'vslack;help;queue'= {
            cand list 'List pending and dead-lettered events (the default), or every event in a range of queue numbers, whatever its state (what a summary posted to Slack stood for)'
            cand retry 'Put dead-lettered events back in the queue'
            cand drop 'Delete pending or dead-lettered events for good (their ids stay remembered, so a redelivery is not queued again)'
        }
        &'vslack;help;queue;list'= {
        }
        &'vslack;help;queue;retry'= {
        }
        &'vslack;help;queue;drop'= {
        }
        &'vslack;help;store'= {
            cand check 'Check the store''s integrity and count what it holds (read-only; safe while a relay runs)'
            cand recover 'Salvage every readable event (pending, dead letters and the dedup history) from a damaged store into a new one; the damaged file is kept aside'
            cand set 'Keep events in a PostgreSQL database that several relays share (high availability): reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin, connects, prepares the schema and saves it as `[store] url`'
            cand clear 'Go back to the SQLite file in the data directory (forgets the saved URL; the database is left as it is)'
            cand migrate 'Copy the SQLite store (pending events, dead letters and the dedup history) into the PostgreSQL store, then move the SQLite file aside so it is never forwarded again'
        }
        &'vslack;help;store;check'= {
        }
        &'vslack;help;store;recover'= {
        }
        &'vslack;help;store;set'= {
        }
        &'vslack;help;store;clear'= {
        }
        &'vslack;help;store;migrate'= {
        }
        &'vslack;help;completions'= {
        }
        &'vslack;help;man'= {
        }
        &'vslack;help;help'= {
        }
    ]
    $completions[$command]
}
