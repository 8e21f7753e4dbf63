//! vslack's integration tests: one binary. `support/` holds loopback stand-ins for Vast.ai and
//! Slack that follow `vast-api.md` and record what they receive; `common` runs the real
//! `vslack` binary in a hermetic environment and checks that no secret leaks into its output.

mod common;
mod support;

mod ack_log;
mod acme;
mod backlog;
mod cli_basics;
mod dest_cli;
mod disk_full;
mod doctor;
mod exit_codes;
mod fanout;
mod flood;
mod ha;
mod https;
mod keep_bodies;
mod kinds;
mod log_pipe;
mod never_silent;
mod postgres;
mod prompts;
mod relay;
mod relay_full;
mod relay_limits;
mod relay_process;
mod relay_process_secrets;
mod relay_process_store;
mod relay_retry;
mod reload;
mod self_alerts;
mod service_unit;
mod sqlite_store;
mod stable_tunnel;
mod store_cli;
mod store_contract;
mod trial_fixes;
mod up_safety;
mod walkthrough;
mod walkthrough_doctor;
mod walkthrough_setup;
mod webhook;
mod webhook_keys;
mod webhook_rules;
