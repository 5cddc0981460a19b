//! `isek`: run an Isek Center, and list, register, renew and deregister nodes.
//!
//! A thin layer: parse the command line with clap, pick a backend, call the
//! libraries (`isek` for the client commands, `isek_center` for `isek center`).
//! Errors end the process with a non-zero status and exactly one line on stderr
//! (`error: ...`); logs go to stderr too, filtered by `RUST_LOG`.

mod backend;
mod etcd;
mod keygen;
mod run;
mod server;
mod table;
mod watch;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use isek::wire::center::{deregistered_message, registered_message, renewed_message};
use isek::{Metadata, Registry};

use crate::backend::BackendArgs;
use crate::server::CenterArgs;

/// The ISEK node registry on the command line.
#[derive(Debug, Parser)]
#[command(name = "isek", version, about, propagate_version = true)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run an Isek Center until SIGINT or SIGTERM.
    Center(CenterArgs),
    /// List the nodes whose lease is alive (on etcd: every entry, and whether it verifies).
    Nodes {
        /// Where the registry is.
        #[command(flatten)]
        backend: BackendArgs,
        /// Print the listing as a JSON object keyed by node id instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Register a node (or replace its entry) with a fresh lease.
    Register {
        /// Where the registry is.
        #[command(flatten)]
        backend: BackendArgs,
        /// Id of the node.
        #[arg(long)]
        node_id: String,
        /// Host name or address where peers reach the node.
        #[arg(long)]
        host: String,
        /// Port where peers reach the node (1-65535).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// The node's agent card, a JSON object.
        #[arg(long, value_name = "JSON-OBJECT", value_parser = parse_metadata, default_value = "{}")]
        metadata: Metadata,
    },
    /// Extend a node's lease by a full TTL.
    Renew {
        /// Where the registry is.
        #[command(flatten)]
        backend: BackendArgs,
        /// Id of the node.
        #[arg(long)]
        node_id: String,
    },
    /// Remove a node at once.
    Deregister {
        /// Where the registry is.
        #[command(flatten)]
        backend: BackendArgs,
        /// Id of the node.
        #[arg(long)]
        node_id: String,
        /// Center only: deregister any node as the operator, with the admin token
        /// read from this file (the center's --admin-token-file).
        #[arg(long, value_name = "FILE", conflicts_with = "etcd")]
        admin_token_file: Option<std::path::PathBuf>,
    },
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
    let cli = match Cli::try_parse() {
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
    init_logging(match cli.command {
        Command::Center(_) => "info",
        // Their stdout lines already report every retry and failure; stderr is left
        // to the final error line.
        Command::Run(_) | Command::Watch(_) => "off",
        // The TLS verifier logs an ERROR for an untrusted certificate that the
        // error line reports anyway.
        _ => "warn,rustls_platform_verifier=off",
    });
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
/// error line.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .init();
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
            Command::Center(args) => server::serve(args).await,
            Command::Nodes { backend, json } => match backend.etcd_target()? {
                // etcd: the operator's view, also entries that fail verification.
                Some(target) => etcd::nodes(&target, json).await,
                None => nodes(&*backend.connect().await?, json).await,
            },
            Command::Register {
                backend,
                node_id,
                host,
                port,
                metadata,
            } => {
                match backend.etcd_target()? {
                    Some(target) => {
                        etcd::register(&target, &node_id, &host, port, metadata).await?;
                    }
                    None => {
                        let registry = backend.connect().await?;
                        registry
                            .register_node(&node_id, &host, port, metadata)
                            .await?;
                    }
                }
                println!("{}", registered_message(&node_id));
                Ok(())
            }
            Command::Renew { backend, node_id } => {
                let registry = backend.connect_owner("renew").await?;
                registry.lease_refresh(&node_id).await?;
                println!("{}", renewed_message(&node_id));
                Ok(())
            }
            Command::Run(args) => run::run(args).await,
            Command::Watch(args) => watch::watch(args).await,
            Command::Keygen(args) => keygen::keygen(&args),
            Command::Deregister {
                backend,
                node_id,
                admin_token_file: Some(path),
            } => {
                let token = std::fs::read_to_string(&path).with_context(|| {
                    format!("cannot read --admin-token-file {}", path.display())
                })?;
                backend
                    .center_client()?
                    .admin_deregister(&node_id, token.trim())
                    .await?;
                println!("{}", deregistered_message(&node_id));
                Ok(())
            }
            Command::Deregister {
                backend, node_id, ..
            } => {
                let registry = backend.connect_owner("deregister").await?;
                registry.deregister_node(&node_id).await?;
                println!("{}", deregistered_message(&node_id));
                Ok(())
            }
        }
    })
}

/// `isek nodes`: the live nodes as a table or as JSON.
async fn nodes(registry: &dyn Registry, json: bool) -> anyhow::Result<()> {
    let nodes = registry.get_available_nodes().await?;
    if json {
        let text = serde_json::to_string_pretty(&nodes).context("cannot encode the listing")?;
        println!("{text}");
    } else {
        print!("{}", table::render(&nodes, table::unix_now()));
    }
    Ok(())
}

/// Parses `--metadata`: any JSON object (the agent card), nothing else.
fn parse_metadata(text: &str) -> Result<Metadata, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "metadata must be a JSON object, not {}",
            json_kind(&other)
        )),
        Err(e) => Err(format!("not valid JSON ({e})")),
    }
}

/// The name of a JSON value's type, for error messages.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
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
    fn metadata_must_be_a_json_object() {
        assert!(parse_metadata(r#"{"a": {"b": [1, null]}}"#).is_ok());
        assert_eq!(
            parse_metadata("[1]"),
            Err("metadata must be a JSON object, not an array".to_owned())
        );
        assert!(matches!(parse_metadata("{bad"), Err(e) if e.starts_with("not valid JSON")));
    }

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
