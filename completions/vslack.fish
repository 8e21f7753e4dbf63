# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_vslack_global_optspecs
    string join \n config-dir= data-dir= vast-url= api-key-file= json no-input v/verbose q/quiet log-format= h/help V/version
end

function __fish_vslack_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_vslack_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_vslack_using_subcommand
    set -l cmd (__fish_vslack_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c vslack -n "__fish_vslack_needs_command" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_needs_command" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_needs_command" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_needs_command" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_needs_command" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_needs_command" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_needs_command" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_needs_command" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_needs_command" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vslack -n "__fish_vslack_needs_command" -s V -l version -d 'Print version'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "login" -d 'Save a Vast.ai API key (hidden prompt, or one line on stdin), checked with Vast.ai first'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "logout" -d 'Forget the API key saved by `vslack login`'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "webhook" -d 'Manage Vast.ai webhooks (create, list, show, update, test, delete, rotate-secret, types)'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "slack" -d 'Save, check or forget the Slack webhook URL the relay posts to'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "dest" -d 'Add, list, remove or test destinations: Slack, Discord, PagerDuty, … each taking the event types you choose, delivered on its own'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "config" -d 'Show the configuration (secrets redacted) or where files live'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "setup" -d 'Guided first run: API key, Slack URL, events, and how Vast.ai reaches the relay'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "service" -d 'Write a hardened systemd unit for `vslack serve` (a user unit, or with --system a system one)'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "up" -d 'The walkthrough in one terminal: relay + tunnel + point the webhook at it + test event'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "doctor" -d 'Check every link (API key, webhook, relay, secret, clock, Slack, queue) and name the broken one'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "status" -d 'Queue depth, dead letters, last delivery and webhook settings at a glance'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "serve" -d 'Run the relay: verify Vast.ai deliveries, store them, post them to Slack'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "demo" -d 'The whole pipeline on this machine, no accounts: relay + Slack stand-in + sample events'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "send" -d 'Sign and send sample events to a relay, exactly as Vast.ai would (no account needed)'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "queue" -d 'Inspect the relay\'s queue: pending and dead-lettered events; retry or drop them'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "store" -d 'The event store: check it, salvage a damaged file, or share one PostgreSQL store between relays (set, clear, migrate)'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "completions" -d 'Print shell completions (the same files are committed in completions/)'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "man" -d 'Print the man page (roff; the same file is committed as man/vslack.1)'
complete -c vslack -n "__fish_vslack_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand login" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand login" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand login" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand login" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand login" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand login" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand login" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand login" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand login" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand login" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand logout" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand logout" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand logout" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand logout" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand logout" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand logout" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand logout" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand logout" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand logout" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand logout" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "types" -d 'List the notification types your account can subscribe to'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "create" -d 'Create a webhook and store its signing secret on this machine'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "list" -d 'List the account\'s webhooks, with whether this machine holds each one\'s secret'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "show" -d 'Show one webhook (default: the default webhook)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "update" -d 'Change a webhook\'s URL, name or events (only what you pass changes)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "test" -d 'Ask Vast.ai to send its test event to the webhook and report its answer'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "delete" -d 'Delete a webhook at Vast.ai and forget its secret here'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "rotate-secret" -d 'Get a new signing secret; the old one stays valid in the relay for a grace period'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "default" -d 'Make ID the webhook that commands use when no ID is given'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and not __fish_seen_subcommand_from types create list show update test delete rotate-secret default help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from types" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l url -d 'Where Vast.ai delivers: https://host/path (http://127.0.0.1 allowed for local tests)' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l name -d 'A label for the webhook (at most 120 characters)' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l event -d 'Event key to subscribe to (repeatable), e.g. client:low_credit' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l all-events -d 'Subscribe to every notification type in the account\'s catalogue'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l print-secret -d 'Print the signing secret alone on stdout (for piping); otherwise it is only stored'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l url -d 'New delivery URL' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l name -d 'New name' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l event -d 'Replace the subscribed events with these (repeatable)' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l add-event -d 'Subscribe to one more event (repeatable)' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l remove-event -d 'Unsubscribe from an event (repeatable)' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -s y -l yes -d 'Do not ask for confirmation (required when not on a terminal)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -l print-secret -d 'Print the new secret alone on stdout (for piping into another system)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from rotate-secret" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from default" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "types" -d 'List the notification types your account can subscribe to'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a webhook and store its signing secret on this machine'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the account\'s webhooks, with whether this machine holds each one\'s secret'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one webhook (default: the default webhook)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "update" -d 'Change a webhook\'s URL, name or events (only what you pass changes)'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "test" -d 'Ask Vast.ai to send its test event to the webhook and report its answer'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a webhook at Vast.ai and forget its secret here'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "rotate-secret" -d 'Get a new signing secret; the old one stays valid in the relay for a grace period'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "default" -d 'Make ID the webhook that commands use when no ID is given'
complete -c vslack -n "__fish_vslack_using_subcommand webhook; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -f -a "set" -d 'Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt, or one line on stdin'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -f -a "test" -d 'Post a "vslack is connected" message to the configured Slack URL'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -f -a "clear" -d 'Forget the saved Slack URL'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and not __fish_seen_subcommand_from set test clear help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -l format -d 'The kind of service the URL is [default: from the URL]' -r -f -a "blocks\t'Slack incoming webhook: Block Kit with a plain-text fallback'
text\t'Slack incoming webhook: plain `text` only, as Vast.ai\'s own adapter sends'
workflow\t'Slack Workflow Builder trigger: flat string variables'
google-chat\t'Google Chat incoming webhook: text and a card with a console button'
discord\t'Discord webhook: an embed per event, no mentions'
teams\t'Microsoft Teams Workflows webhook: an Adaptive Card'
telegram\t'Telegram bot: sendMessage to one chat'
ntfy\t'ntfy topic (ntfy.sh or self-hosted)'
pagerduty\t'PagerDuty Events API v2: one alert per event, resolved by its recovery event'"
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -l fallback -d 'Save it as the fallback destination instead: it takes no events, only the relay\'s alerts about a destination that is failing (an archived channel cannot say so itself)'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -l fallback -d 'Post to the fallback destination instead'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -l fallback -d 'Forget the fallback destination instead'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from clear" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from help" -f -a "set" -d 'Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt, or one line on stdin'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from help" -f -a "test" -d 'Post a "vslack is connected" message to the configured Slack URL'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from help" -f -a "clear" -d 'Forget the saved Slack URL'
complete -c vslack -n "__fish_vslack_using_subcommand slack; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -f -a "add" -d 'Add a destination that also takes the events matching --events (every event without it), besides where they go already; its URL from a hidden prompt or one line on stdin'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -f -a "list" -d 'List every destination: the default, routes, the fallback and those added here'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -f -a "remove" -d 'Remove a destination added with `vslack dest add`'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -f -a "test" -d 'Post a "vslack is connected" message to one destination (`default`, `fallback`, a route\'s events glob, or a name from `vslack dest list`)'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and not __fish_seen_subcommand_from add list remove test help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -l events -d 'Event types it takes: a glob on the slug, repeatable [default: every event]' -r
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -l format -d 'The kind of service the URL is [default: from the URL]' -r -f -a "blocks\t'Slack incoming webhook: Block Kit with a plain-text fallback'
text\t'Slack incoming webhook: plain `text` only, as Vast.ai\'s own adapter sends'
workflow\t'Slack Workflow Builder trigger: flat string variables'
google-chat\t'Google Chat incoming webhook: text and a card with a console button'
discord\t'Discord webhook: an embed per event, no mentions'
teams\t'Microsoft Teams Workflows webhook: an Adaptive Card'
telegram\t'Telegram bot: sendMessage to one chat'
ntfy\t'ntfy topic (ntfy.sh or self-hosted)'
pagerduty\t'PagerDuty Events API v2: one alert per event, resolved by its recovery event'"
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a destination that also takes the events matching --events (every event without it), besides where they go already; its URL from a hidden prompt or one line on stdin'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from help" -f -a "list" -d 'List every destination: the default, routes, the fallback and those added here'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a destination added with `vslack dest add`'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from help" -f -a "test" -d 'Post a "vslack is connected" message to one destination (`default`, `fallback`, a route\'s events glob, or a name from `vslack dest list`)'
complete -c vslack -n "__fish_vslack_using_subcommand dest; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -f -a "show" -d 'Print the configuration with every secret shown as (redacted)'
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -f -a "path" -d 'Print where vslack keeps its files'
complete -c vslack -n "__fish_vslack_using_subcommand config; and not __fish_seen_subcommand_from show path help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from path" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the configuration with every secret shown as (redacted)'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "path" -d 'Print where vslack keeps its files'
complete -c vslack -n "__fish_vslack_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l slack-url-file -d 'Read the Slack incoming-webhook URL from this file' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l event -d 'Event to subscribe to (repeatable)' -r
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l tunnel -d 'Tunnel program: tmole, cloudflared or ngrok [default: the one saved by `vslack setup`]' -r
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l tunnel-cmd -d 'Any tunnel command; {port} is replaced by the relay\'s port, and the first https URL it prints is used once it keeps running. The command is split into words like a shell would (quotes, backslashes) but no shell runs it, so `$VAR`, `~` and pipes mean nothing; for those use --tunnel-cmd \'sh -c "my-tunnel --port {port} | tee tunnel.log"\'. It never sees vslack\'s secrets (VAST_API_KEY, VAST_WEBHOOK_SECRET, SLACK_WEBHOOK_URL, VSLACK_*)' -r
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l public-url -d 'The relay\'s public https URL when it is deployed (no tunnel is started)' -r
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l tunnel-name -d 'Run this named Cloudflare tunnel (`cloudflared tunnel create NAME`, then `cloudflared tunnel route dns NAME HOST`), whose URL is https://HOST from --domain: the webhook keeps one URL across runs [default: relay.tunnel_name]' -r
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l domain -d 'With --public-url https://DOMAIN: serve HTTPS with an automatic certificate for DOMAIN (Let\'s Encrypt; saved as relay.domain, with relay.listen 0.0.0.0:443 unless one is set; then `vslack service install --system` runs it at boot). With a tunnel: the tunnel\'s fixed hostname (--tunnel cloudflared --tunnel-name NAME, or --tunnel ngrok with a reserved domain), saved as relay.tunnel_domain' -r
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l acme-email -d 'Contact address for the certificate\'s ACME account (saved as relay.acme_email)' -r
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l heartbeat -d 'How often the relay checks the whole path with Vast.ai\'s test event (saved as `relay.heartbeat`; see `vslack serve --help`), or `off` [default: asks; else 6h]' -r
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l all-events -d 'Subscribe to every notification type'
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l send-hello -d 'Post a "vslack is connected" message to Slack'
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand setup" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand setup" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand setup" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand setup" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -f -a "install" -d 'Install ~/.config/systemd/user/vslack.service (or --print it)'
complete -c vslack -n "__fish_vslack_using_subcommand service; and not __fish_seen_subcommand_from install help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l serve-args -d 'Extra arguments for `vslack serve` in the unit, as one string (e.g. --serve-args \'--listen 127.0.0.1:9000\')' -r
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l system -d 'A system unit (/etc/systemd/system/vslack.service) that starts at boot and runs as this user, never root; it may bind ports below 1024 (AmbientCapabilities= CAP_NET_BIND_SERVICE, nothing else) when the relay listens on one. Writing it needs root: use --print | sudo tee'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l print -d 'Print the unit instead of writing it'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l force -d 'Write the unit even though its relay would not start yet (no secret or Slack URL in the config)'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "install" -d 'Install ~/.config/systemd/user/vslack.service (or --print it)'
complete -c vslack -n "__fish_vslack_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand up" -l tunnel -d 'Tunnel program: tmole, cloudflared or ngrok [default: the one saved by `vslack setup`]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l tunnel-cmd -d 'Any tunnel command; {port} is replaced by the relay\'s port, and the first https URL it prints is used once it keeps running. The command is split into words like a shell would (quotes, backslashes) but no shell runs it, so `$VAR`, `~` and pipes mean nothing; for those use --tunnel-cmd \'sh -c "my-tunnel --port {port} | tee tunnel.log"\'. It never sees vslack\'s secrets (VAST_API_KEY, VAST_WEBHOOK_SECRET, SLACK_WEBHOOK_URL, VSLACK_*)' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l public-url -d 'The relay\'s public https URL when it is deployed (no tunnel is started)' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l tunnel-name -d 'Run this named Cloudflare tunnel (`cloudflared tunnel create NAME`, then `cloudflared tunnel route dns NAME HOST`), whose URL is https://HOST from --domain: the webhook keeps one URL across runs [default: relay.tunnel_name]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l event -d 'Events for a webhook that `up` has to create [default: the events saved by `vslack setup`, else the walkthrough\'s six: low_credit, instance_created, instance_started, instance_stopped, outbid, upcoming_downtime]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l tunnel-timeout -d 'How long to wait for the tunnel\'s URL' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l listen -d 'Address to listen on [env: PORT sets 127.0.0.1:PORT] [default: 127.0.0.1:8787]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l path -d 'URL path that receives deliveries [default: /]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l slack-url-file -d 'Read the destination URL from this file (else SLACK_WEBHOOK_URL, else `vslack slack set`)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand up" -l format -d 'The kind of that URL\'s service, which decides the message shape [default: `kind` in the config, else from the URL: hooks.slack.com/services/ blocks, …/triggers/ workflow, chat.googleapis.com google-chat, discord.com/api/webhooks/ discord, *.logic.azure.com teams, api.telegram.org or telegram:// telegram, ntfy.sh ntfy, events.pagerduty.com or pagerduty:// pagerduty; any other URL needs it]' -r -f -a "blocks\t'Slack incoming webhook: Block Kit with a plain-text fallback'
text\t'Slack incoming webhook: plain `text` only, as Vast.ai\'s own adapter sends'
workflow\t'Slack Workflow Builder trigger: flat string variables'
google-chat\t'Google Chat incoming webhook: text and a card with a console button'
discord\t'Discord webhook: an embed per event, no mentions'
teams\t'Microsoft Teams Workflows webhook: an Adaptive Card'
telegram\t'Telegram bot: sendMessage to one chat'
ntfy\t'ntfy topic (ntfy.sh or self-hosted)'
pagerduty\t'PagerDuty Events API v2: one alert per event, resolved by its recovery event'"
complete -c vslack -n "__fish_vslack_using_subcommand up" -l signature-window -d 'Accept signatures whose timestamp is at most this many seconds from now (either way)' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l secret-grace -d 'How long a rotated-out signing secret stays valid [default: 24h, or the config]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l max-body -d 'Largest delivery body accepted, in bytes (1024 to 16 MiB; a Vast.ai event is well under 4 kB)' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l max-connections -d 'Most connections open at once (kept below the open-file limit). One client may hold half of them, except 127.0.0.1 and ::1 (where a tunnel or proxy connects from); at the cap the longest-idle connection of the client holding the most is closed to make room' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l idle-timeout -d 'Close a kept-alive connection that sends no request for this long (its first request may take --header-timeout)' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l header-timeout -d 'Close a connection whose request headers take longer than this to arrive' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l request-timeout -d 'Answer 408 to a request (body included) not complete within this time' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l pace -d 'Minimum gap between two messages to one destination [default: what its service allows: 1s Slack, Google Chat and Teams, 2s Discord, 3s Telegram, 5s ntfy, 500ms PagerDuty]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l retry-initial -d 'First retry delay after a Slack failure (doubles each time)' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l retry-max -d 'Longest delay between retries' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l list-within -d 'A backlog that would take longer than this to list event by event at --pace (about 49 events per message) is summarised instead: oldest first, one message per up to 10,000 events with counts per type and the most recent of each, until the rest can be listed' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l max-age -d 'Dead-letter an event still undelivered this long after it arrived' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l retention -d 'Remember delivered event ids this long, to drop redeliveries' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l keep-bodies -d 'Keep the raw body of a delivered event this long (for inspection); after that only what deduplication and `vslack queue` need is kept' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l store -d 'Where events are stored: `sqlite` (the file in the data directory) or a PostgreSQL URL that several relays share (`postgres://USER@HOST:PORT/DB`). A URL with a password does not belong on a command line (any user can read it with ps): set VSLACK_STORE_URL, or save it with `vslack store set` [default: VSLACK_STORE_URL, else `[store] url`, else sqlite]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l max-store-mb -d 'Cap the event store\'s size (its database file: the WAL and ack log beside it take up to about 24 MB more); when full the relay answers 503 so Vast.ai retries later [default: no cap]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l heartbeat -d 'Every DURATION, ask Vast.ai to send each stored webhook\'s test event and check that it arrives here, signed (recorded, not posted). When it does not, ONE alert says why (webhook URL stale, API key revoked, webhook deleted, wrong secret, clock off), and ONE message says when it works again. `off` turns it off [default: the config\'s `relay.heartbeat`, which `vslack setup` sets (6h); else off]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l heartbeat-timeout -d 'How long the heartbeat waits for its test event [default: 2m, or the config]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l alert-refused -d 'Alert when this many deliveries within --alert-window are refused for a signature no stored secret matches, or as stale when correctly signed (this clock is off); 0: never' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l alert-window -d 'The window for --alert-refused' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l alert-failing-for -d 'Alert (on the other destinations, or the fallback set by `vslack slack set --fallback`) when a destination has failed this long; a dead-lettered event alerts at once' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l alert-backlog-age -d 'Alert when the oldest queued event has waited this long; 0s: never' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l tls-cert -d 'Serve HTTPS with this certificate chain (PEM), re-read when it changes on disk (a certbot renewal needs no restart) [default: the config\'s relay.tls_cert]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand up" -l tls-key -d 'The certificate\'s private key (PEM; keep it 0600) [default: relay.tls_key]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand up" -l domain -d 'Serve HTTPS with a certificate for DOMAIN obtained and renewed automatically (ACME, TLS-ALPN-01 on this listener: DNS must point here and port 443 be reachable; listen on 0.0.0.0:443). Cached in the data directory, so restarts place no new order [default: relay.domain]. With `up` and a tunnel: the tunnel\'s fixed hostname instead (a named cloudflared tunnel\'s, or a reserved ngrok domain such as NAME.ngrok-free.app)' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l acme-email -d 'Contact address for the ACME account (expiry notices) [default: relay.acme_email]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l acme-directory -d 'ACME directory URL, e.g. Let\'s Encrypt staging (https://acme-staging-v02.api.letsencrypt.org/directory) or a private CA [default: Let\'s Encrypt, or relay.acme_directory]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l acme-ca-file -d 'Trust this CA (PEM) for the ACME directory\'s own HTTPS (a private CA) [default: relay.acme_ca_file, else the public roots]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand up" -l acme-challenge -d 'How the ACME server checks that this relay holds the domain: tls-alpn-01 on the HTTPS port itself, or http-01 on port 80 (--acme-http-listen), when 443 is not reachable from the internet directly [default: tls-alpn-01]' -r -f -a "tls-alpn-01\t''
http-01\t''"
complete -c vslack -n "__fish_vslack_using_subcommand up" -l acme-http-listen -d 'Where http-01 is answered (only `/.well-known/acme-challenge/…`)' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand up" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand up" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand up" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand up" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand up" -l cleanup -d 'On exit, delete the webhook if `up` created it, or restore the previous URL'
complete -c vslack -n "__fish_vslack_using_subcommand up" -l no-test -d 'Do not fire Vast.ai\'s test event'
complete -c vslack -n "__fish_vslack_using_subcommand up" -l dry-run -d 'Print each message on stdout instead of posting it'
complete -c vslack -n "__fish_vslack_using_subcommand up" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand up" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand up" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand up" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand up" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -l send -d 'Also test deliveries: fire Vast.ai\'s test event at the webhook (the relay posts it to Slack) and post a "vslack is connected" message to the Slack URL'
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand status" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand status" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand status" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand status" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand status" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand status" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand status" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand status" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand status" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand status" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l listen -d 'Address to listen on [env: PORT sets 127.0.0.1:PORT] [default: 127.0.0.1:8787]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l path -d 'URL path that receives deliveries [default: /]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l slack-url-file -d 'Read the destination URL from this file (else SLACK_WEBHOOK_URL, else `vslack slack set`)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l format -d 'The kind of that URL\'s service, which decides the message shape [default: `kind` in the config, else from the URL: hooks.slack.com/services/ blocks, …/triggers/ workflow, chat.googleapis.com google-chat, discord.com/api/webhooks/ discord, *.logic.azure.com teams, api.telegram.org or telegram:// telegram, ntfy.sh ntfy, events.pagerduty.com or pagerduty:// pagerduty; any other URL needs it]' -r -f -a "blocks\t'Slack incoming webhook: Block Kit with a plain-text fallback'
text\t'Slack incoming webhook: plain `text` only, as Vast.ai\'s own adapter sends'
workflow\t'Slack Workflow Builder trigger: flat string variables'
google-chat\t'Google Chat incoming webhook: text and a card with a console button'
discord\t'Discord webhook: an embed per event, no mentions'
teams\t'Microsoft Teams Workflows webhook: an Adaptive Card'
telegram\t'Telegram bot: sendMessage to one chat'
ntfy\t'ntfy topic (ntfy.sh or self-hosted)'
pagerduty\t'PagerDuty Events API v2: one alert per event, resolved by its recovery event'"
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l signature-window -d 'Accept signatures whose timestamp is at most this many seconds from now (either way)' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l secret-grace -d 'How long a rotated-out signing secret stays valid [default: 24h, or the config]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l max-body -d 'Largest delivery body accepted, in bytes (1024 to 16 MiB; a Vast.ai event is well under 4 kB)' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l max-connections -d 'Most connections open at once (kept below the open-file limit). One client may hold half of them, except 127.0.0.1 and ::1 (where a tunnel or proxy connects from); at the cap the longest-idle connection of the client holding the most is closed to make room' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l idle-timeout -d 'Close a kept-alive connection that sends no request for this long (its first request may take --header-timeout)' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l header-timeout -d 'Close a connection whose request headers take longer than this to arrive' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l request-timeout -d 'Answer 408 to a request (body included) not complete within this time' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l pace -d 'Minimum gap between two messages to one destination [default: what its service allows: 1s Slack, Google Chat and Teams, 2s Discord, 3s Telegram, 5s ntfy, 500ms PagerDuty]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l retry-initial -d 'First retry delay after a Slack failure (doubles each time)' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l retry-max -d 'Longest delay between retries' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l list-within -d 'A backlog that would take longer than this to list event by event at --pace (about 49 events per message) is summarised instead: oldest first, one message per up to 10,000 events with counts per type and the most recent of each, until the rest can be listed' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l max-age -d 'Dead-letter an event still undelivered this long after it arrived' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l retention -d 'Remember delivered event ids this long, to drop redeliveries' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l keep-bodies -d 'Keep the raw body of a delivered event this long (for inspection); after that only what deduplication and `vslack queue` need is kept' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l store -d 'Where events are stored: `sqlite` (the file in the data directory) or a PostgreSQL URL that several relays share (`postgres://USER@HOST:PORT/DB`). A URL with a password does not belong on a command line (any user can read it with ps): set VSLACK_STORE_URL, or save it with `vslack store set` [default: VSLACK_STORE_URL, else `[store] url`, else sqlite]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l max-store-mb -d 'Cap the event store\'s size (its database file: the WAL and ack log beside it take up to about 24 MB more); when full the relay answers 503 so Vast.ai retries later [default: no cap]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l heartbeat -d 'Every DURATION, ask Vast.ai to send each stored webhook\'s test event and check that it arrives here, signed (recorded, not posted). When it does not, ONE alert says why (webhook URL stale, API key revoked, webhook deleted, wrong secret, clock off), and ONE message says when it works again. `off` turns it off [default: the config\'s `relay.heartbeat`, which `vslack setup` sets (6h); else off]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l heartbeat-timeout -d 'How long the heartbeat waits for its test event [default: 2m, or the config]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l alert-refused -d 'Alert when this many deliveries within --alert-window are refused for a signature no stored secret matches, or as stale when correctly signed (this clock is off); 0: never' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l alert-window -d 'The window for --alert-refused' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l alert-failing-for -d 'Alert (on the other destinations, or the fallback set by `vslack slack set --fallback`) when a destination has failed this long; a dead-lettered event alerts at once' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l alert-backlog-age -d 'Alert when the oldest queued event has waited this long; 0s: never' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l tls-cert -d 'Serve HTTPS with this certificate chain (PEM), re-read when it changes on disk (a certbot renewal needs no restart) [default: the config\'s relay.tls_cert]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l tls-key -d 'The certificate\'s private key (PEM; keep it 0600) [default: relay.tls_key]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l domain -d 'Serve HTTPS with a certificate for DOMAIN obtained and renewed automatically (ACME, TLS-ALPN-01 on this listener: DNS must point here and port 443 be reachable; listen on 0.0.0.0:443). Cached in the data directory, so restarts place no new order [default: relay.domain]. With `up` and a tunnel: the tunnel\'s fixed hostname instead (a named cloudflared tunnel\'s, or a reserved ngrok domain such as NAME.ngrok-free.app)' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l acme-email -d 'Contact address for the ACME account (expiry notices) [default: relay.acme_email]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l acme-directory -d 'ACME directory URL, e.g. Let\'s Encrypt staging (https://acme-staging-v02.api.letsencrypt.org/directory) or a private CA [default: Let\'s Encrypt, or relay.acme_directory]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l acme-ca-file -d 'Trust this CA (PEM) for the ACME directory\'s own HTTPS (a private CA) [default: relay.acme_ca_file, else the public roots]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l acme-challenge -d 'How the ACME server checks that this relay holds the domain: tls-alpn-01 on the HTTPS port itself, or http-01 on port 80 (--acme-http-listen), when 443 is not reachable from the internet directly [default: tls-alpn-01]' -r -f -a "tls-alpn-01\t''
http-01\t''"
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l acme-http-listen -d 'Where http-01 is answered (only `/.well-known/acme-challenge/…`)' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l dry-run -d 'Print each message on stdout instead of posting it'
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand serve" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand serve" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand serve" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vslack -n "__fish_vslack_using_subcommand demo" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand demo" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand demo" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand demo" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand demo" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand demo" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand demo" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand demo" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand demo" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand demo" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand send" -l type -d 'Event type (slug) to send: low_credit, instance_stopped, machine_offline, … (`--all-types` sends one of each known type; an unknown type gets a generic sample)' -r
complete -c vslack -n "__fish_vslack_using_subcommand send" -l to -d 'Relay URL [default: the configured local relay, http://127.0.0.1:8787/]' -r
complete -c vslack -n "__fish_vslack_using_subcommand send" -l count -d 'How many events (of each type), 1 to 10000' -r
complete -c vslack -n "__fish_vslack_using_subcommand send" -l secret-file -d 'Read the signing secret from this file' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand send" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand send" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand send" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand send" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand send" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand send" -l all-types -d 'Send one event of every known type'
complete -c vslack -n "__fish_vslack_using_subcommand send" -l duplicate -d 'Deliver each event a second time (as Vast.ai\'s retries do); expect it deduplicated'
complete -c vslack -n "__fish_vslack_using_subcommand send" -l bad-signature -d 'Sign with a wrong secret; expect 401 bad_signature'
complete -c vslack -n "__fish_vslack_using_subcommand send" -l stale -d 'Use a timestamp 10 minutes old; expect 401 stale_timestamp'
complete -c vslack -n "__fish_vslack_using_subcommand send" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand send" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand send" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand send" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand send" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -f -a "list" -d 'List pending and dead-lettered events (the default), or every event in a range of queue numbers, whatever its state (what a summary posted to Slack stood for)'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -f -a "retry" -d 'Put dead-lettered events back in the queue'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -f -a "drop" -d 'Delete pending or dead-lettered events for good (their ids stay remembered, so a redelivery is not queued again)'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and not __fish_seen_subcommand_from list retry drop help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -l limit -d 'How many of each to show [default: 50; with --range, all]' -r
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -l range -d 'Every event numbered FROM to TO (the SEQ column; a summary in Slack names its range)' -r
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -l all -d 'Retry every dead letter'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from retry" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -s y -l yes -d 'Do not ask for confirmation'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from drop" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "list" -d 'List pending and dead-lettered events (the default), or every event in a range of queue numbers, whatever its state (what a summary posted to Slack stood for)'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "retry" -d 'Put dead-lettered events back in the queue'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "drop" -d 'Delete pending or dead-lettered events for good (their ids stay remembered, so a redelivery is not queued again)'
complete -c vslack -n "__fish_vslack_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -f -a "check" -d 'Check the store\'s integrity and count what it holds (read-only; safe while a relay runs)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -f -a "recover" -d 'Salvage every readable event (pending, dead letters and the dedup history) from a damaged store into a new one; the damaged file is kept aside'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -f -a "set" -d 'Keep events in a PostgreSQL database that several relays share (high availability): reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin, connects, prepares the schema and saves it as `[store] url`'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -f -a "clear" -d 'Go back to the SQLite file in the data directory (forgets the saved URL; the database is left as it is)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -f -a "migrate" -d 'Copy the SQLite store (pending events, dead letters and the dedup history) into the PostgreSQL store, then move the SQLite file aside so it is never forwarded again'
complete -c vslack -n "__fish_vslack_using_subcommand store; and not __fish_seen_subcommand_from check recover set clear migrate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from recover" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from clear" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from migrate" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check the store\'s integrity and count what it holds (read-only; safe while a relay runs)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "recover" -d 'Salvage every readable event (pending, dead letters and the dedup history) from a damaged store into a new one; the damaged file is kept aside'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "set" -d 'Keep events in a PostgreSQL database that several relays share (high availability): reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin, connects, prepares the schema and saves it as `[store] url`'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "clear" -d 'Go back to the SQLite file in the data directory (forgets the saved URL; the database is left as it is)'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "migrate" -d 'Copy the SQLite store (pending events, dead letters and the dedup history) into the PostgreSQL store, then move the SQLite file aside so it is never forwarded again'
complete -c vslack -n "__fish_vslack_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand completions" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand completions" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand completions" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand completions" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand completions" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand completions" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand completions" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand completions" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand completions" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand completions" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand man" -l dir -d 'Write every page (vslack.1, vslack-webhook-create.1, …) into this directory' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand man" -l config-dir -d 'Directory for settings and secrets [env: VSLACK_CONFIG_DIR] [default: ~/.config/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand man" -l data-dir -d 'Directory for the relay\'s event store [env: VSLACK_DATA_DIR] [default: ~/.local/share/vslack]' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand man" -l vast-url -d 'Base URL of the Vast.ai API, for a test stand-in [env: VAST_URL] [default: https://console.vast.ai]' -r
complete -c vslack -n "__fish_vslack_using_subcommand man" -l api-key-file -d 'Read the Vast.ai API key from this file (the key itself is never taken as an argument)' -r -F
complete -c vslack -n "__fish_vslack_using_subcommand man" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c vslack -n "__fish_vslack_using_subcommand man" -l json -d 'Print machine-readable JSON on stdout (never contains secrets)'
complete -c vslack -n "__fish_vslack_using_subcommand man" -l no-input -d 'Never prompt; a missing value is an error naming its flag'
complete -c vslack -n "__fish_vslack_using_subcommand man" -s v -l verbose -d 'More log output (-v debug, -vv trace and payloads); RUST_LOG overrides'
complete -c vslack -n "__fish_vslack_using_subcommand man" -s q -l quiet -d 'Only errors on stderr'
complete -c vslack -n "__fish_vslack_using_subcommand man" -s h -l help -d 'Print help'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "login" -d 'Save a Vast.ai API key (hidden prompt, or one line on stdin), checked with Vast.ai first'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "logout" -d 'Forget the API key saved by `vslack login`'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "webhook" -d 'Manage Vast.ai webhooks (create, list, show, update, test, delete, rotate-secret, types)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "slack" -d 'Save, check or forget the Slack webhook URL the relay posts to'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "dest" -d 'Add, list, remove or test destinations: Slack, Discord, PagerDuty, … each taking the event types you choose, delivered on its own'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "config" -d 'Show the configuration (secrets redacted) or where files live'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "setup" -d 'Guided first run: API key, Slack URL, events, and how Vast.ai reaches the relay'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "service" -d 'Write a hardened systemd unit for `vslack serve` (a user unit, or with --system a system one)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "up" -d 'The walkthrough in one terminal: relay + tunnel + point the webhook at it + test event'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "doctor" -d 'Check every link (API key, webhook, relay, secret, clock, Slack, queue) and name the broken one'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "status" -d 'Queue depth, dead letters, last delivery and webhook settings at a glance'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "serve" -d 'Run the relay: verify Vast.ai deliveries, store them, post them to Slack'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "demo" -d 'The whole pipeline on this machine, no accounts: relay + Slack stand-in + sample events'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "send" -d 'Sign and send sample events to a relay, exactly as Vast.ai would (no account needed)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "queue" -d 'Inspect the relay\'s queue: pending and dead-lettered events; retry or drop them'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "store" -d 'The event store: check it, salvage a damaged file, or share one PostgreSQL store between relays (set, clear, migrate)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "completions" -d 'Print shell completions (the same files are committed in completions/)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "man" -d 'Print the man page (roff; the same file is committed as man/vslack.1)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and not __fish_seen_subcommand_from login logout webhook slack dest config setup service up doctor status serve demo send queue store completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from webhook" -f -a "types" -d 'List the notification types your account can subscribe to'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from webhook" -f -a "create" -d 'Create a webhook and store its signing secret on this machine'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from webhook" -f -a "list" -d 'List the account\'s webhooks, with whether this machine holds each one\'s secret'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from webhook" -f -a "show" -d 'Show one webhook (default: the default webhook)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from webhook" -f -a "update" -d 'Change a webhook\'s URL, name or events (only what you pass changes)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from webhook" -f -a "test" -d 'Ask Vast.ai to send its test event to the webhook and report its answer'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from webhook" -f -a "delete" -d 'Delete a webhook at Vast.ai and forget its secret here'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from webhook" -f -a "rotate-secret" -d 'Get a new signing secret; the old one stays valid in the relay for a grace period'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from webhook" -f -a "default" -d 'Make ID the webhook that commands use when no ID is given'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from slack" -f -a "set" -d 'Save the destination URL (Slack, or any kind `serve --format` lists): hidden prompt, or one line on stdin'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from slack" -f -a "test" -d 'Post a "vslack is connected" message to the configured Slack URL'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from slack" -f -a "clear" -d 'Forget the saved Slack URL'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from dest" -f -a "add" -d 'Add a destination that also takes the events matching --events (every event without it), besides where they go already; its URL from a hidden prompt or one line on stdin'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from dest" -f -a "list" -d 'List every destination: the default, routes, the fallback and those added here'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from dest" -f -a "remove" -d 'Remove a destination added with `vslack dest add`'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from dest" -f -a "test" -d 'Post a "vslack is connected" message to one destination (`default`, `fallback`, a route\'s events glob, or a name from `vslack dest list`)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'Print the configuration with every secret shown as (redacted)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "path" -d 'Print where vslack keeps its files'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "install" -d 'Install ~/.config/systemd/user/vslack.service (or --print it)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "list" -d 'List pending and dead-lettered events (the default), or every event in a range of queue numbers, whatever its state (what a summary posted to Slack stood for)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "retry" -d 'Put dead-lettered events back in the queue'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "drop" -d 'Delete pending or dead-lettered events for good (their ids stay remembered, so a redelivery is not queued again)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from store" -f -a "check" -d 'Check the store\'s integrity and count what it holds (read-only; safe while a relay runs)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from store" -f -a "recover" -d 'Salvage every readable event (pending, dead letters and the dedup history) from a damaged store into a new one; the damaged file is kept aside'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from store" -f -a "set" -d 'Keep events in a PostgreSQL database that several relays share (high availability): reads the URL (postgres://USER:PASSWORD@HOST:PORT/DB) from a hidden prompt or stdin, connects, prepares the schema and saves it as `[store] url`'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from store" -f -a "clear" -d 'Go back to the SQLite file in the data directory (forgets the saved URL; the database is left as it is)'
complete -c vslack -n "__fish_vslack_using_subcommand help; and __fish_seen_subcommand_from store" -f -a "migrate" -d 'Copy the SQLite store (pending events, dead letters and the dedup history) into the PostgreSQL store, then move the SQLite file aside so it is never forwarded again'
