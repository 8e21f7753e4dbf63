
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'vslack' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'vslack'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'vslack' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Save a Vast.ai API key (hidden prompt, or one line on stdin), checked with Vast.ai first')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Forget the API key saved by `vslack login`')
            [CompletionResult]::new('webhook', 'webhook', [CompletionResultType]::ParameterValue, 'Manage Vast.ai webhooks (create, list, show, update, test, delete, rotate-secret, types)')
            [CompletionResult]::new('slack', 'slack', [CompletionResultType]::ParameterValue, 'Save, check or forget the Slack webhook URL the relay posts to')
            [CompletionResult]::new('dest', 'dest', [CompletionResultType]::ParameterValue, 'Add, list, remove or test destinations: Slack, Discord, PagerDuty, … each taking the event types you choose, delivered on its own')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Show the configuration (secrets redacted) or where files live')
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Guided first run: API key, Slack URL, events, and how Vast.ai reaches the relay')
            [CompletionResult]::new('service', 'service', [CompletionResultType]::ParameterValue, 'Write a hardened systemd unit for `vslack serve` (a user unit, or with --system a system one)')
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'The walkthrough in one terminal: relay + tunnel + point the webhook at it + test event')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check every link (API key, webhook, relay, secret, clock, Slack, queue) and name the broken one')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Queue depth, dead letters, last delivery and webhook settings at a glance')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the relay: verify Vast.ai deliveries, store them, post them to Slack')
            [CompletionResult]::new('demo', 'demo', [CompletionResultType]::ParameterValue, 'The whole pipeline on this machine, no accounts: relay + Slack stand-in + sample events')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Sign and send sample events to a relay, exactly as Vast.ai would (no account needed)')
            [CompletionResult]::new('queue', 'queue', [CompletionResultType]::ParameterValue, 'Inspect the relay''s queue: pending and dead-lettered events; retry or drop them')
            [CompletionResult]::new('store', 'store', [CompletionResultType]::ParameterValue, 'The event store: check it, salvage a damaged file, or share one PostgreSQL store between relays (set, clear, migrate)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print shell completions (the same files are committed in completions/)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page (roff; the same file is committed as man/vslack.1)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;login' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;logout' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('types', 'types', [CompletionResultType]::ParameterValue, 'List the notification types your account can subscribe to')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a webhook and store its signing secret on this machine')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the account''s webhooks, with whether this machine holds each one''s secret')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one webhook (default: the default webhook)')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a webhook''s URL, name or events (only what you pass changes)')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Ask Vast.ai to send its test event to the webhook and report its answer')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a webhook at Vast.ai and forget its secret here')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Get a new signing secret; the old one stays valid in the relay for a grace period')
            [CompletionResult]::new('default', 'default', [CompletionResultType]::ParameterValue, 'Make ID the webhook that commands use when no ID is given')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;webhook;types' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook;create' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'Where Vast.ai delivers: https://host/path (http://127.0.0.1 allowed for local tests)')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A label for the webhook (at most 120 characters)')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Event key to subscribe to (repeatable), e.g. client:low_credit')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--all-events', '--all-events', [CompletionResultType]::ParameterName, 'Subscribe to every notification type in the account''s catalogue')
            [CompletionResult]::new('--print-secret', '--print-secret', [CompletionResultType]::ParameterName, 'Print the signing secret alone on stdout (for piping); otherwise it is only stored')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook;list' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook;show' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook;update' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'New delivery URL')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'New name')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Replace the subscribed events with these (repeatable)')
            [CompletionResult]::new('--add-event', '--add-event', [CompletionResultType]::ParameterName, 'Subscribe to one more event (repeatable)')
            [CompletionResult]::new('--remove-event', '--remove-event', [CompletionResultType]::ParameterName, 'Unsubscribe from an event (repeatable)')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook;test' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook;delete' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when not on a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when not on a terminal)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook;rotate-secret' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--print-secret', '--print-secret', [CompletionResultType]::ParameterName, 'Print the new secret alone on stdout (for piping into another system)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook;default' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;webhook;help' {
            [CompletionResult]::new('types', 'types', [CompletionResultType]::ParameterValue, 'List the notification types your account can subscribe to')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a webhook and store its signing secret on this machine')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the account''s webhooks, with whether this machine holds each one''s secret')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one webhook (default: the default webhook)')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a webhook''s URL, name or events (only what you pass changes)')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Ask Vast.ai to send its test event to the webhook and report its answer')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a webhook at Vast.ai and forget its secret here')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Get a new signing secret; the old one stays valid in the relay for a grace period')
            [CompletionResult]::new('default', 'default', [CompletionResultType]::ParameterValue, 'Make ID the webhook that commands use when no ID is given')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;webhook;help;types' {
            break
        }
        'vslack;webhook;help;create' {
            break
        }
        'vslack;webhook;help;list' {
            break
        }
        'vslack;webhook;help;show' {
            break
        }
        'vslack;webhook;help;update' {
            break
        }
        'vslack;webhook;help;test' {
            break
        }
        'vslack;webhook;help;delete' {
            break
        }
        'vslack;webhook;help;rotate-secret' {
            break
        }
        'vslack;webhook;help;default' {
            break
        }
        'vslack;webhook;help;help' {
            break
        }
        'vslack;slack' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt, or one line on stdin')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Post a "vslack is connected" message to the configured Slack URL')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Forget the saved Slack URL')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;slack;set' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'The kind of service the URL is [default: from the URL]')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--fallback', '--fallback', [CompletionResultType]::ParameterName, 'Save it as the fallback destination instead: it takes no events, only the relay''s alerts about a destination that is failing (an archived channel cannot say so itself)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'vslack;slack;test' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--fallback', '--fallback', [CompletionResultType]::ParameterName, 'Post to the fallback destination instead')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;slack;clear' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--fallback', '--fallback', [CompletionResultType]::ParameterName, 'Forget the fallback destination instead')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;slack;help' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt, or one line on stdin')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Post a "vslack is connected" message to the configured Slack URL')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Forget the saved Slack URL')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;slack;help;set' {
            break
        }
        'vslack;slack;help;test' {
            break
        }
        'vslack;slack;help;clear' {
            break
        }
        'vslack;slack;help;help' {
            break
        }
        'vslack;dest' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a destination that also takes the events matching --events (every event without it), besides where they go already; its URL from a hidden prompt or one line on stdin')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every destination: the default, routes, the fallback and those added here')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a destination added with `vslack dest add`')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Post a "vslack is connected" message to one destination (`default`, `fallback`, a route''s events glob, or a name from `vslack dest list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;dest;add' {
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Event types it takes: a glob on the slug, repeatable [default: every event]')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'The kind of service the URL is [default: from the URL]')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'vslack;dest;list' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;dest;remove' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;dest;test' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;dest;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a destination that also takes the events matching --events (every event without it), besides where they go already; its URL from a hidden prompt or one line on stdin')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every destination: the default, routes, the fallback and those added here')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a destination added with `vslack dest add`')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Post a "vslack is connected" message to one destination (`default`, `fallback`, a route''s events glob, or a name from `vslack dest list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;dest;help;add' {
            break
        }
        'vslack;dest;help;list' {
            break
        }
        'vslack;dest;help;remove' {
            break
        }
        'vslack;dest;help;test' {
            break
        }
        'vslack;dest;help;help' {
            break
        }
        'vslack;config' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print the configuration with every secret shown as (redacted)')
            [CompletionResult]::new('path', 'path', [CompletionResultType]::ParameterValue, 'Print where vslack keeps its files')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;config;show' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;config;path' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;config;help' {
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print the configuration with every secret shown as (redacted)')
            [CompletionResult]::new('path', 'path', [CompletionResultType]::ParameterValue, 'Print where vslack keeps its files')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;config;help;show' {
            break
        }
        'vslack;config;help;path' {
            break
        }
        'vslack;config;help;help' {
            break
        }
        'vslack;setup' {
            [CompletionResult]::new('--slack-url-file', '--slack-url-file', [CompletionResultType]::ParameterName, 'Read the Slack incoming-webhook URL from this file')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Event to subscribe to (repeatable)')
            [CompletionResult]::new('--tunnel', '--tunnel', [CompletionResultType]::ParameterName, 'Tunnel program: tmole, cloudflared or ngrok [default: the one saved by `vslack setup`]')
            [CompletionResult]::new('--tunnel-cmd', '--tunnel-cmd', [CompletionResultType]::ParameterName, 'Any tunnel command; {port} is replaced by the relay''s port, and the first https URL it prints is used once it keeps running. The command is split into words like a shell would (quotes, backslashes) but no shell runs it, so `$VAR`, `~` and pipes mean nothing; for those use --tunnel-cmd ''sh -c "my-tunnel --port {port} | tee tunnel.log"''. It never sees vslack''s secrets (VAST_API_KEY, VAST_WEBHOOK_SECRET, SLACK_WEBHOOK_URL, VSLACK_*)')
            [CompletionResult]::new('--public-url', '--public-url', [CompletionResultType]::ParameterName, 'The relay''s public https URL when it is deployed (no tunnel is started)')
            [CompletionResult]::new('--tunnel-name', '--tunnel-name', [CompletionResultType]::ParameterName, 'Run this named Cloudflare tunnel (`cloudflared tunnel create NAME`, then `cloudflared tunnel route dns NAME HOST`), whose URL is https://HOST from --domain: the webhook keeps one URL across runs [default: relay.tunnel_name]')
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'With --public-url https://DOMAIN: serve HTTPS with an automatic certificate for DOMAIN (Let''s Encrypt; saved as relay.domain, with relay.listen 0.0.0.0:443 unless one is set; then `vslack service install --system` runs it at boot). With a tunnel: the tunnel''s fixed hostname (--tunnel cloudflared --tunnel-name NAME, or --tunnel ngrok with a reserved domain), saved as relay.tunnel_domain')
            [CompletionResult]::new('--acme-email', '--acme-email', [CompletionResultType]::ParameterName, 'Contact address for the certificate''s ACME account (saved as relay.acme_email)')
            [CompletionResult]::new('--heartbeat', '--heartbeat', [CompletionResultType]::ParameterName, 'How often the relay checks the whole path with Vast.ai''s test event (saved as `relay.heartbeat`; see `vslack serve --help`), or `off` [default: asks; else 6h]')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--all-events', '--all-events', [CompletionResultType]::ParameterName, 'Subscribe to every notification type')
            [CompletionResult]::new('--send-hello', '--send-hello', [CompletionResultType]::ParameterName, 'Post a "vslack is connected" message to Slack')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;service' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Install ~/.config/systemd/user/vslack.service (or --print it)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;service;install' {
            [CompletionResult]::new('--serve-args', '--serve-args', [CompletionResultType]::ParameterName, 'Extra arguments for `vslack serve` in the unit, as one string (e.g. --serve-args ''--listen 127.0.0.1:9000'')')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--system', '--system', [CompletionResultType]::ParameterName, 'A system unit (/etc/systemd/system/vslack.service) that starts at boot and runs as this user, never root; it may bind ports below 1024 (AmbientCapabilities= CAP_NET_BIND_SERVICE, nothing else) when the relay listens on one. Writing it needs root: use --print | sudo tee')
            [CompletionResult]::new('--print', '--print', [CompletionResultType]::ParameterName, 'Print the unit instead of writing it')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Write the unit even though its relay would not start yet (no secret or Slack URL in the config)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;service;help' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Install ~/.config/systemd/user/vslack.service (or --print it)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;service;help;install' {
            break
        }
        'vslack;service;help;help' {
            break
        }
        'vslack;up' {
            [CompletionResult]::new('--tunnel', '--tunnel', [CompletionResultType]::ParameterName, 'Tunnel program: tmole, cloudflared or ngrok [default: the one saved by `vslack setup`]')
            [CompletionResult]::new('--tunnel-cmd', '--tunnel-cmd', [CompletionResultType]::ParameterName, 'Any tunnel command; {port} is replaced by the relay''s port, and the first https URL it prints is used once it keeps running. The command is split into words like a shell would (quotes, backslashes) but no shell runs it, so `$VAR`, `~` and pipes mean nothing; for those use --tunnel-cmd ''sh -c "my-tunnel --port {port} | tee tunnel.log"''. It never sees vslack''s secrets (VAST_API_KEY, VAST_WEBHOOK_SECRET, SLACK_WEBHOOK_URL, VSLACK_*)')
            [CompletionResult]::new('--public-url', '--public-url', [CompletionResultType]::ParameterName, 'The relay''s public https URL when it is deployed (no tunnel is started)')
            [CompletionResult]::new('--tunnel-name', '--tunnel-name', [CompletionResultType]::ParameterName, 'Run this named Cloudflare tunnel (`cloudflared tunnel create NAME`, then `cloudflared tunnel route dns NAME HOST`), whose URL is https://HOST from --domain: the webhook keeps one URL across runs [default: relay.tunnel_name]')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Events for a webhook that `up` has to create [default: the events saved by `vslack setup`, else the walkthrough''s six: low_credit, instance_created, instance_started, instance_stopped, outbid, upcoming_downtime]')
            [CompletionResult]::new('--tunnel-timeout', '--tunnel-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the tunnel''s URL')
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to listen on [env: PORT sets 127.0.0.1:PORT] [default: 127.0.0.1:8787]')
            [CompletionResult]::new('--path', '--path', [CompletionResultType]::ParameterName, 'URL path that receives deliveries [default: /]')
            [CompletionResult]::new('--slack-url-file', '--slack-url-file', [CompletionResultType]::ParameterName, 'Read the destination URL from this file (else SLACK_WEBHOOK_URL, else `vslack slack set`)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'The kind of that URL''s service, which decides the message shape [default: `kind` in the config, else from the URL: hooks.slack.com/services/ blocks, …/triggers/ workflow, chat.googleapis.com google-chat, discord.com/api/webhooks/ discord, *.logic.azure.com teams, api.telegram.org or telegram:// telegram, ntfy.sh ntfy, events.pagerduty.com or pagerduty:// pagerduty; any other URL needs it]')
            [CompletionResult]::new('--signature-window', '--signature-window', [CompletionResultType]::ParameterName, 'Accept signatures whose timestamp is at most this many seconds from now (either way)')
            [CompletionResult]::new('--secret-grace', '--secret-grace', [CompletionResultType]::ParameterName, 'How long a rotated-out signing secret stays valid [default: 24h, or the config]')
            [CompletionResult]::new('--max-body', '--max-body', [CompletionResultType]::ParameterName, 'Largest delivery body accepted, in bytes (1024 to 16 MiB; a Vast.ai event is well under 4 kB)')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Most connections open at once (kept below the open-file limit). One client may hold half of them, except 127.0.0.1 and ::1 (where a tunnel or proxy connects from); at the cap the longest-idle connection of the client holding the most is closed to make room')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Close a kept-alive connection that sends no request for this long (its first request may take --header-timeout)')
            [CompletionResult]::new('--header-timeout', '--header-timeout', [CompletionResultType]::ParameterName, 'Close a connection whose request headers take longer than this to arrive')
            [CompletionResult]::new('--request-timeout', '--request-timeout', [CompletionResultType]::ParameterName, 'Answer 408 to a request (body included) not complete within this time')
            [CompletionResult]::new('--pace', '--pace', [CompletionResultType]::ParameterName, 'Minimum gap between two messages to one destination [default: what its service allows: 1s Slack, Google Chat and Teams, 2s Discord, 3s Telegram, 5s ntfy, 500ms PagerDuty]')
            [CompletionResult]::new('--retry-initial', '--retry-initial', [CompletionResultType]::ParameterName, 'First retry delay after a Slack failure (doubles each time)')
            [CompletionResult]::new('--retry-max', '--retry-max', [CompletionResultType]::ParameterName, 'Longest delay between retries')
            [CompletionResult]::new('--list-within', '--list-within', [CompletionResultType]::ParameterName, 'A backlog that would take longer than this to list event by event at --pace (about 49 events per message) is summarised instead: oldest first, one message per up to 10,000 events with counts per type and the most recent of each, until the rest can be listed')
            [CompletionResult]::new('--max-age', '--max-age', [CompletionResultType]::ParameterName, 'Dead-letter an event still undelivered this long after it arrived')
            [CompletionResult]::new('--retention', '--retention', [CompletionResultType]::ParameterName, 'Remember delivered event ids this long, to drop redeliveries')
            [CompletionResult]::new('--keep-bodies', '--keep-bodies', [CompletionResultType]::ParameterName, 'Keep the raw body of a delivered event this long (for inspection); after that only what deduplication and `vslack queue` need is kept')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where events are stored: `sqlite` (the file in the data directory) or a PostgreSQL URL that several relays share (`postgres://USER@HOST:PORT/DB`). A URL with a password does not belong on a command line (any user can read it with ps): set VSLACK_STORE_URL, or save it with `vslack store set` [default: VSLACK_STORE_URL, else `[store] url`, else sqlite]')
            [CompletionResult]::new('--max-store-mb', '--max-store-mb', [CompletionResultType]::ParameterName, 'Cap the event store''s size (its database file: the WAL and ack log beside it take up to about 24 MB more); when full the relay answers 503 so Vast.ai retries later [default: no cap]')
            [CompletionResult]::new('--heartbeat', '--heartbeat', [CompletionResultType]::ParameterName, 'Every DURATION, ask Vast.ai to send each stored webhook''s test event and check that it arrives here, signed (recorded, not posted). When it does not, ONE alert says why (webhook URL stale, API key revoked, webhook deleted, wrong secret, clock off), and ONE message says when it works again. `off` turns it off [default: the config''s `relay.heartbeat`, which `vslack setup` sets (6h); else off]')
            [CompletionResult]::new('--heartbeat-timeout', '--heartbeat-timeout', [CompletionResultType]::ParameterName, 'How long the heartbeat waits for its test event [default: 2m, or the config]')
            [CompletionResult]::new('--alert-refused', '--alert-refused', [CompletionResultType]::ParameterName, 'Alert when this many deliveries within --alert-window are refused for a signature no stored secret matches, or as stale when correctly signed (this clock is off); 0: never')
            [CompletionResult]::new('--alert-window', '--alert-window', [CompletionResultType]::ParameterName, 'The window for --alert-refused')
            [CompletionResult]::new('--alert-failing-for', '--alert-failing-for', [CompletionResultType]::ParameterName, 'Alert (on the other destinations, or the fallback set by `vslack slack set --fallback`) when a destination has failed this long; a dead-lettered event alerts at once')
            [CompletionResult]::new('--alert-backlog-age', '--alert-backlog-age', [CompletionResultType]::ParameterName, 'Alert when the oldest queued event has waited this long; 0s: never')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve HTTPS with this certificate chain (PEM), re-read when it changes on disk (a certbot renewal needs no restart) [default: the config''s relay.tls_cert]')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The certificate''s private key (PEM; keep it 0600) [default: relay.tls_key]')
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Serve HTTPS with a certificate for DOMAIN obtained and renewed automatically (ACME, TLS-ALPN-01 on this listener: DNS must point here and port 443 be reachable; listen on 0.0.0.0:443). Cached in the data directory, so restarts place no new order [default: relay.domain]. With `up` and a tunnel: the tunnel''s fixed hostname instead (a named cloudflared tunnel''s, or a reserved ngrok domain such as NAME.ngrok-free.app)')
            [CompletionResult]::new('--acme-email', '--acme-email', [CompletionResultType]::ParameterName, 'Contact address for the ACME account (expiry notices) [default: relay.acme_email]')
            [CompletionResult]::new('--acme-directory', '--acme-directory', [CompletionResultType]::ParameterName, 'ACME directory URL, e.g. Let''s Encrypt staging (https://acme-staging-v02.api.letsencrypt.org/directory) or a private CA [default: Let''s Encrypt, or relay.acme_directory]')
            [CompletionResult]::new('--acme-ca-file', '--acme-ca-file', [CompletionResultType]::ParameterName, 'Trust this CA (PEM) for the ACME directory''s own HTTPS (a private CA) [default: relay.acme_ca_file, else the public roots]')
            [CompletionResult]::new('--acme-challenge', '--acme-challenge', [CompletionResultType]::ParameterName, 'How the ACME server checks that this relay holds the domain: tls-alpn-01 on the HTTPS port itself, or http-01 on port 80 (--acme-http-listen), when 443 is not reachable from the internet directly [default: tls-alpn-01]')
            [CompletionResult]::new('--acme-http-listen', '--acme-http-listen', [CompletionResultType]::ParameterName, 'Where http-01 is answered (only `/.well-known/acme-challenge/…`)')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--cleanup', '--cleanup', [CompletionResultType]::ParameterName, 'On exit, delete the webhook if `up` created it, or restore the previous URL')
            [CompletionResult]::new('--no-test', '--no-test', [CompletionResultType]::ParameterName, 'Do not fire Vast.ai''s test event')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print each message on stdout instead of posting it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'vslack;doctor' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--send', '--send', [CompletionResultType]::ParameterName, 'Also test deliveries: fire Vast.ai''s test event at the webhook (the relay posts it to Slack) and post a "vslack is connected" message to the Slack URL')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;status' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;serve' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to listen on [env: PORT sets 127.0.0.1:PORT] [default: 127.0.0.1:8787]')
            [CompletionResult]::new('--path', '--path', [CompletionResultType]::ParameterName, 'URL path that receives deliveries [default: /]')
            [CompletionResult]::new('--slack-url-file', '--slack-url-file', [CompletionResultType]::ParameterName, 'Read the destination URL from this file (else SLACK_WEBHOOK_URL, else `vslack slack set`)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'The kind of that URL''s service, which decides the message shape [default: `kind` in the config, else from the URL: hooks.slack.com/services/ blocks, …/triggers/ workflow, chat.googleapis.com google-chat, discord.com/api/webhooks/ discord, *.logic.azure.com teams, api.telegram.org or telegram:// telegram, ntfy.sh ntfy, events.pagerduty.com or pagerduty:// pagerduty; any other URL needs it]')
            [CompletionResult]::new('--signature-window', '--signature-window', [CompletionResultType]::ParameterName, 'Accept signatures whose timestamp is at most this many seconds from now (either way)')
            [CompletionResult]::new('--secret-grace', '--secret-grace', [CompletionResultType]::ParameterName, 'How long a rotated-out signing secret stays valid [default: 24h, or the config]')
            [CompletionResult]::new('--max-body', '--max-body', [CompletionResultType]::ParameterName, 'Largest delivery body accepted, in bytes (1024 to 16 MiB; a Vast.ai event is well under 4 kB)')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Most connections open at once (kept below the open-file limit). One client may hold half of them, except 127.0.0.1 and ::1 (where a tunnel or proxy connects from); at the cap the longest-idle connection of the client holding the most is closed to make room')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Close a kept-alive connection that sends no request for this long (its first request may take --header-timeout)')
            [CompletionResult]::new('--header-timeout', '--header-timeout', [CompletionResultType]::ParameterName, 'Close a connection whose request headers take longer than this to arrive')
            [CompletionResult]::new('--request-timeout', '--request-timeout', [CompletionResultType]::ParameterName, 'Answer 408 to a request (body included) not complete within this time')
            [CompletionResult]::new('--pace', '--pace', [CompletionResultType]::ParameterName, 'Minimum gap between two messages to one destination [default: what its service allows: 1s Slack, Google Chat and Teams, 2s Discord, 3s Telegram, 5s ntfy, 500ms PagerDuty]')
            [CompletionResult]::new('--retry-initial', '--retry-initial', [CompletionResultType]::ParameterName, 'First retry delay after a Slack failure (doubles each time)')
            [CompletionResult]::new('--retry-max', '--retry-max', [CompletionResultType]::ParameterName, 'Longest delay between retries')
            [CompletionResult]::new('--list-within', '--list-within', [CompletionResultType]::ParameterName, 'A backlog that would take longer than this to list event by event at --pace (about 49 events per message) is summarised instead: oldest first, one message per up to 10,000 events with counts per type and the most recent of each, until the rest can be listed')
            [CompletionResult]::new('--max-age', '--max-age', [CompletionResultType]::ParameterName, 'Dead-letter an event still undelivered this long after it arrived')
            [CompletionResult]::new('--retention', '--retention', [CompletionResultType]::ParameterName, 'Remember delivered event ids this long, to drop redeliveries')
            [CompletionResult]::new('--keep-bodies', '--keep-bodies', [CompletionResultType]::ParameterName, 'Keep the raw body of a delivered event this long (for inspection); after that only what deduplication and `vslack queue` need is kept')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where events are stored: `sqlite` (the file in the data directory) or a PostgreSQL URL that several relays share (`postgres://USER@HOST:PORT/DB`). A URL with a password does not belong on a command line (any user can read it with ps): set VSLACK_STORE_URL, or save it with `vslack store set` [default: VSLACK_STORE_URL, else `[store] url`, else sqlite]')
            [CompletionResult]::new('--max-store-mb', '--max-store-mb', [CompletionResultType]::ParameterName, 'Cap the event store''s size (its database file: the WAL and ack log beside it take up to about 24 MB more); when full the relay answers 503 so Vast.ai retries later [default: no cap]')
            [CompletionResult]::new('--heartbeat', '--heartbeat', [CompletionResultType]::ParameterName, 'Every DURATION, ask Vast.ai to send each stored webhook''s test event and check that it arrives here, signed (recorded, not posted). When it does not, ONE alert says why (webhook URL stale, API key revoked, webhook deleted, wrong secret, clock off), and ONE message says when it works again. `off` turns it off [default: the config''s `relay.heartbeat`, which `vslack setup` sets (6h); else off]')
            [CompletionResult]::new('--heartbeat-timeout', '--heartbeat-timeout', [CompletionResultType]::ParameterName, 'How long the heartbeat waits for its test event [default: 2m, or the config]')
            [CompletionResult]::new('--alert-refused', '--alert-refused', [CompletionResultType]::ParameterName, 'Alert when this many deliveries within --alert-window are refused for a signature no stored secret matches, or as stale when correctly signed (this clock is off); 0: never')
            [CompletionResult]::new('--alert-window', '--alert-window', [CompletionResultType]::ParameterName, 'The window for --alert-refused')
            [CompletionResult]::new('--alert-failing-for', '--alert-failing-for', [CompletionResultType]::ParameterName, 'Alert (on the other destinations, or the fallback set by `vslack slack set --fallback`) when a destination has failed this long; a dead-lettered event alerts at once')
            [CompletionResult]::new('--alert-backlog-age', '--alert-backlog-age', [CompletionResultType]::ParameterName, 'Alert when the oldest queued event has waited this long; 0s: never')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve HTTPS with this certificate chain (PEM), re-read when it changes on disk (a certbot renewal needs no restart) [default: the config''s relay.tls_cert]')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The certificate''s private key (PEM; keep it 0600) [default: relay.tls_key]')
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Serve HTTPS with a certificate for DOMAIN obtained and renewed automatically (ACME, TLS-ALPN-01 on this listener: DNS must point here and port 443 be reachable; listen on 0.0.0.0:443). Cached in the data directory, so restarts place no new order [default: relay.domain]. With `up` and a tunnel: the tunnel''s fixed hostname instead (a named cloudflared tunnel''s, or a reserved ngrok domain such as NAME.ngrok-free.app)')
            [CompletionResult]::new('--acme-email', '--acme-email', [CompletionResultType]::ParameterName, 'Contact address for the ACME account (expiry notices) [default: relay.acme_email]')
            [CompletionResult]::new('--acme-directory', '--acme-directory', [CompletionResultType]::ParameterName, 'ACME directory URL, e.g. Let''s Encrypt staging (https://acme-staging-v02.api.letsencrypt.org/directory) or a private CA [default: Let''s Encrypt, or relay.acme_directory]')
            [CompletionResult]::new('--acme-ca-file', '--acme-ca-file', [CompletionResultType]::ParameterName, 'Trust this CA (PEM) for the ACME directory''s own HTTPS (a private CA) [default: relay.acme_ca_file, else the public roots]')
            [CompletionResult]::new('--acme-challenge', '--acme-challenge', [CompletionResultType]::ParameterName, 'How the ACME server checks that this relay holds the domain: tls-alpn-01 on the HTTPS port itself, or http-01 on port 80 (--acme-http-listen), when 443 is not reachable from the internet directly [default: tls-alpn-01]')
            [CompletionResult]::new('--acme-http-listen', '--acme-http-listen', [CompletionResultType]::ParameterName, 'Where http-01 is answered (only `/.well-known/acme-challenge/…`)')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print each message on stdout instead of posting it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'vslack;demo' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;send' {
            [CompletionResult]::new('--type', '--type', [CompletionResultType]::ParameterName, 'Event type (slug) to send: low_credit, instance_stopped, machine_offline, … (`--all-types` sends one of each known type; an unknown type gets a generic sample)')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Relay URL [default: the configured local relay, http://127.0.0.1:8787/]')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'How many events (of each type), 1 to 10000')
            [CompletionResult]::new('--secret-file', '--secret-file', [CompletionResultType]::ParameterName, 'Read the signing secret from this file')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--all-types', '--all-types', [CompletionResultType]::ParameterName, 'Send one event of every known type')
            [CompletionResult]::new('--duplicate', '--duplicate', [CompletionResultType]::ParameterName, 'Deliver each event a second time (as Vast.ai''s retries do); expect it deduplicated')
            [CompletionResult]::new('--bad-signature', '--bad-signature', [CompletionResultType]::ParameterName, 'Sign with a wrong secret; expect 401 bad_signature')
            [CompletionResult]::new('--stale', '--stale', [CompletionResultType]::ParameterName, 'Use a timestamp 10 minutes old; expect 401 stale_timestamp')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;queue' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List pending and dead-lettered events (the default), or every event in a range of queue numbers, whatever its state (what a summary posted to Slack stood for)')
            [CompletionResult]::new('retry', 'retry', [CompletionResultType]::ParameterValue, 'Put dead-lettered events back in the queue')
            [CompletionResult]::new('drop', 'drop', [CompletionResultType]::ParameterValue, 'Delete pending or dead-lettered events for good (their ids stay remembered, so a redelivery is not queued again)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;queue;list' {
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'How many of each to show [default: 50; with --range, all]')
            [CompletionResult]::new('--range', '--range', [CompletionResultType]::ParameterName, 'Every event numbered FROM to TO (the SEQ column; a summary in Slack names its range)')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;queue;retry' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Retry every dead letter')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;queue;drop' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;queue;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List pending and dead-lettered events (the default), or every event in a range of queue numbers, whatever its state (what a summary posted to Slack stood for)')
            [CompletionResult]::new('retry', 'retry', [CompletionResultType]::ParameterValue, 'Put dead-lettered events back in the queue')
            [CompletionResult]::new('drop', 'drop', [CompletionResultType]::ParameterValue, 'Delete pending or dead-lettered events for good (their ids stay remembered, so a redelivery is not queued again)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;queue;help;list' {
            break
        }
        'vslack;queue;help;retry' {
            break
        }
        'vslack;queue;help;drop' {
            break
        }
        'vslack;queue;help;help' {
            break
        }
        'vslack;store' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Check the store''s integrity and count what it holds (read-only; safe while a relay runs)')
            [CompletionResult]::new('recover', 'recover', [CompletionResultType]::ParameterValue, 'Salvage every readable event (pending, dead letters and the dedup history) from a damaged store into a new one; the damaged file is kept aside')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Keep events in a PostgreSQL database that several relays share (high availability): reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin, connects, prepares the schema and saves it as `[store] url`')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Go back to the SQLite file in the data directory (forgets the saved URL; the database is left as it is)')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Copy the SQLite store (pending events, dead letters and the dedup history) into the PostgreSQL store, then move the SQLite file aside so it is never forwarded again')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;store;check' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;store;recover' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;store;set' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;store;clear' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;store;migrate' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;store;help' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Check the store''s integrity and count what it holds (read-only; safe while a relay runs)')
            [CompletionResult]::new('recover', 'recover', [CompletionResultType]::ParameterValue, 'Salvage every readable event (pending, dead letters and the dedup history) from a damaged store into a new one; the damaged file is kept aside')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Keep events in a PostgreSQL database that several relays share (high availability): reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin, connects, prepares the schema and saves it as `[store] url`')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Go back to the SQLite file in the data directory (forgets the saved URL; the database is left as it is)')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Copy the SQLite store (pending events, dead letters and the dedup history) into the PostgreSQL store, then move the SQLite file aside so it is never forwarded again')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;store;help;check' {
            break
        }
        'vslack;store;help;recover' {
            break
        }
        'vslack;store;help;set' {
            break
        }
        'vslack;store;help;clear' {
            break
        }
        'vslack;store;help;migrate' {
            break
        }
        'vslack;store;help;help' {
            break
        }
        'vslack;completions' {
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;man' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Write every page (vslack.1, vslack-webhook-create.1, …) into this directory')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory for the relay''s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]')
            [CompletionResult]::new('--vast-url', '--vast-url', [CompletionResultType]::ParameterName, 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON on stdout (never contains secrets)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; a missing value is an error naming its flag')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'vslack;help' {
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Save a Vast.ai API key (hidden prompt, or one line on stdin), checked with Vast.ai first')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Forget the API key saved by `vslack login`')
            [CompletionResult]::new('webhook', 'webhook', [CompletionResultType]::ParameterValue, 'Manage Vast.ai webhooks (create, list, show, update, test, delete, rotate-secret, types)')
            [CompletionResult]::new('slack', 'slack', [CompletionResultType]::ParameterValue, 'Save, check or forget the Slack webhook URL the relay posts to')
            [CompletionResult]::new('dest', 'dest', [CompletionResultType]::ParameterValue, 'Add, list, remove or test destinations: Slack, Discord, PagerDuty, … each taking the event types you choose, delivered on its own')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Show the configuration (secrets redacted) or where files live')
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Guided first run: API key, Slack URL, events, and how Vast.ai reaches the relay')
            [CompletionResult]::new('service', 'service', [CompletionResultType]::ParameterValue, 'Write a hardened systemd unit for `vslack serve` (a user unit, or with --system a system one)')
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'The walkthrough in one terminal: relay + tunnel + point the webhook at it + test event')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check every link (API key, webhook, relay, secret, clock, Slack, queue) and name the broken one')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Queue depth, dead letters, last delivery and webhook settings at a glance')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the relay: verify Vast.ai deliveries, store them, post them to Slack')
            [CompletionResult]::new('demo', 'demo', [CompletionResultType]::ParameterValue, 'The whole pipeline on this machine, no accounts: relay + Slack stand-in + sample events')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Sign and send sample events to a relay, exactly as Vast.ai would (no account needed)')
            [CompletionResult]::new('queue', 'queue', [CompletionResultType]::ParameterValue, 'Inspect the relay''s queue: pending and dead-lettered events; retry or drop them')
            [CompletionResult]::new('store', 'store', [CompletionResultType]::ParameterValue, 'The event store: check it, salvage a damaged file, or share one PostgreSQL store between relays (set, clear, migrate)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print shell completions (the same files are committed in completions/)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page (roff; the same file is committed as man/vslack.1)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vslack;help;login' {
            break
        }
        'vslack;help;logout' {
            break
        }
        'vslack;help;webhook' {
            [CompletionResult]::new('types', 'types', [CompletionResultType]::ParameterValue, 'List the notification types your account can subscribe to')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a webhook and store its signing secret on this machine')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the account''s webhooks, with whether this machine holds each one''s secret')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one webhook (default: the default webhook)')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a webhook''s URL, name or events (only what you pass changes)')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Ask Vast.ai to send its test event to the webhook and report its answer')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a webhook at Vast.ai and forget its secret here')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Get a new signing secret; the old one stays valid in the relay for a grace period')
            [CompletionResult]::new('default', 'default', [CompletionResultType]::ParameterValue, 'Make ID the webhook that commands use when no ID is given')
            break
        }
        'vslack;help;webhook;types' {
            break
        }
        'vslack;help;webhook;create' {
            break
        }
        'vslack;help;webhook;list' {
            break
        }
        'vslack;help;webhook;show' {
            break
        }
        'vslack;help;webhook;update' {
            break
        }
        'vslack;help;webhook;test' {
            break
        }
        'vslack;help;webhook;delete' {
            break
        }
        'vslack;help;webhook;rotate-secret' {
            break
        }
        'vslack;help;webhook;default' {
            break
        }
        'vslack;help;slack' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt, or one line on stdin')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Post a "vslack is connected" message to the configured Slack URL')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Forget the saved Slack URL')
            break
        }
        'vslack;help;slack;set' {
            break
        }
        'vslack;help;slack;test' {
            break
        }
        'vslack;help;slack;clear' {
            break
        }
        'vslack;help;dest' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a destination that also takes the events matching --events (every event without it), besides where they go already; its URL from a hidden prompt or one line on stdin')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every destination: the default, routes, the fallback and those added here')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a destination added with `vslack dest add`')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Post a "vslack is connected" message to one destination (`default`, `fallback`, a route''s events glob, or a name from `vslack dest list`)')
            break
        }
        'vslack;help;dest;add' {
            break
        }
        'vslack;help;dest;list' {
            break
        }
        'vslack;help;dest;remove' {
            break
        }
        'vslack;help;dest;test' {
            break
        }
        'vslack;help;config' {
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print the configuration with every secret shown as (redacted)')
            [CompletionResult]::new('path', 'path', [CompletionResultType]::ParameterValue, 'Print where vslack keeps its files')
            break
        }
        'vslack;help;config;show' {
            break
        }
        'vslack;help;config;path' {
            break
        }
        'vslack;help;setup' {
            break
        }
        'vslack;help;service' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Install ~/.config/systemd/user/vslack.service (or --print it)')
            break
        }
        'vslack;help;service;install' {
            break
        }
        'vslack;help;up' {
            break
        }
        'vslack;help;doctor' {
            break
        }
        'vslack;help;status' {
            break
        }
        'vslack;help;serve' {
            break
        }
        'vslack;help;demo' {
            break
        }
        'vslack;help;send' {
            break
        }
        'vslack;help;queue' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List pending and dead-lettered events (the default), or every event in a range of queue numbers, whatever its state (what a summary posted to Slack stood for)')
            [CompletionResult]::new('retry', 'retry', [CompletionResultType]::ParameterValue, 'Put dead-lettered events back in the queue')
            [CompletionResult]::new('drop', 'drop', [CompletionResultType]::ParameterValue, 'Delete pending or dead-lettered events for good (their ids stay remembered, so a redelivery is not queued again)')
            break
        }
        'vslack;help;queue;list' {
            break
        }
        'vslack;help;queue;retry' {
            break
        }
        'vslack;help;queue;drop' {
            break
        }
        'vslack;help;store' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Check the store''s integrity and count what it holds (read-only; safe while a relay runs)')
            [CompletionResult]::new('recover', 'recover', [CompletionResultType]::ParameterValue, 'Salvage every readable event (pending, dead letters and the dedup history) from a damaged store into a new one; the damaged file is kept aside')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Keep events in a PostgreSQL database that several relays share (high availability): reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin, connects, prepares the schema and saves it as `[store] url`')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Go back to the SQLite file in the data directory (forgets the saved URL; the database is left as it is)')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Copy the SQLite store (pending events, dead letters and the dedup history) into the PostgreSQL store, then move the SQLite file aside so it is never forwarded again')
            break
        }
        'vslack;help;store;check' {
            break
        }
        'vslack;help;store;recover' {
            break
        }
        'vslack;help;store;set' {
            break
        }
        'vslack;help;store;clear' {
            break
        }
        'vslack;help;store;migrate' {
            break
        }
        'vslack;help;completions' {
            break
        }
        'vslack;help;man' {
            break
        }
        'vslack;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
