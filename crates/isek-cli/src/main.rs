//! `isek`: run an Isek Center, and list, register, renew and deregister nodes.
//!
//! A thin layer: parse the command line with clap and hand each command to its own
//! module (`nodes`, `register`, ... one per command), which picks a backend and calls the
//! libraries (`isek` for the client commands, `isek_center` for `isek center`).
//! Errors end the process with a non-zero status and exactly one line on stderr
//! (`error: ...`); logs go to stderr too, filtered by `RUST_LOG`.

mod backend;
mod card;
mod config_file;
mod deregister;
mod etcd;
mod keygen;
mod nodes;
mod register;
mod renew;
mod run;
mod server;
mod table;
mod watch;

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use crate::server::{CenterArgs, LogFormat};

/// The ISEK node registry on the command line.
#[derive(Debug, Parser)]
#[command(
    name = "isek",
    version,
    about,
    propagate_version = true,
    // A flag given twice keeps the last value: how `--config` file flags, placed
    // first, yield to the command line.
    args_override_self = true
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run an Isek Center until SIGINT or SIGTERM.
    Center(Box<CenterArgs>),
    /// List the nodes whose lease is alive (on etcd: every entry, and whether it verifies).
    Nodes(nodes::NodesArgs),
    /// Register a node (or replace its entry) with a fresh lease.
    Register(register::RegisterArgs),
    /// Extend a node's lease by a full TTL.
    Renew(renew::RenewArgs),
    /// Remove a node at once.
    Deregister(deregister::DeregisterArgs),
    /// Register a node and keep it alive until SIGINT or SIGTERM, then deregister it.
    Run(run::RunArgs),
    /// Print membership changes as they happen, until SIGINT or SIGTERM.
    Watch(watch::WatchArgs),
    /// Create a node identity (a P-256 key file for --identity) and print its public key.
    Keygen(keygen::KeygenArgs),
}

/// Exit status of a command that failed while running.
const FAILURE: u8 = 1;
/// Exit status of a command line that could not be parsed (clap's convention).
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let args = match config_file::expand(std::env::args_os().collect(), &Cli::command()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            eprintln!("{}", usage_error_line(&e.render().to_string()));
            return ExitCode::from(USAGE);
        }
    };
    let format = match &cli.command {
        Command::Center(args) => args.log_format(),
        _ => LogFormat::Text,
    };
    init_logging(
        match cli.command {
            Command::Center(_) => "info",
            // Their stdout lines already report every retry and failure; stderr is left
            // to the final error line.
            Command::Run(_) | Command::Watch(_) => "off",
            // The TLS verifier logs an ERROR for an untrusted certificate that the
            // error line reports anyway.
            _ => "warn,rustls_platform_verifier=off",
        },
        format,
    );
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(FAILURE)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG`; by default `default`: `info` for the server,
/// only warnings (or nothing) for client commands, whose stderr is reserved for the
/// error line. `format` chooses lines for people or one JSON object per line.
fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Flattened, so `node_id`, `outcome` and the message sit at the top level where
        // log shippers (Loki, Elasticsearch, jq) look for them.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Runs one command on a Tokio runtime sized for it.
fn run(command: Command) -> anyhow::Result<()> {
    let runtime = match command {
        // The server uses every core; a client command makes one call.
        Command::Center(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()
    .context("cannot start the Tokio runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Center(args) => server::serve(*args).await,
            Command::Nodes(args) => nodes::nodes(args).await,
            Command::Register(args) => register::register(args).await,
            Command::Renew(args) => renew::renew(args).await,
            Command::Deregister(args) => deregister::deregister(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Watch(args) => watch::watch(args).await,
            Command::Keygen(args) => keygen::keygen(&args),
        }
    })
}

/// `text` on one line: line breaks become spaces, blank runs collapse.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A clap usage error on one line: its message without the usage block and tips.
fn usage_error_line(rendered: &str) -> String {
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:"))
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("tip:")
                && !line.starts_with("For more information")
        })
        .collect();
    one_line(&message.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_errors_fit_on_one_line() {
        let rendered = "error: invalid value '0' for '--port <PORT>': 0 is not in 1..=65535\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(rendered),
            "error: invalid value '0' for '--port <PORT>': 0 is not in 1..=65535"
        );
    }

    #[test]
    fn usage_errors_fit_on_one_line() {
        let rendered = "error: unexpected argument '--foo' found\n\n  tip: to pass '--foo' as a value, use '-- --foo'\n\nUsage: isek nodes [OPTIONS]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(rendered),
            "error: unexpected argument '--foo' found"
        );
    }
}
