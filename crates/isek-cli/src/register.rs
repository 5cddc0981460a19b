//! `isek register`: register a node (or replace its entry) with a fresh lease, and
//! the `--metadata` parser that `isek run` shares.

use isek::Metadata;
use isek::wire::center::registered_message;

use crate::backend::BackendArgs;

/// Arguments of `isek register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
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
}

/// Runs `isek register`.
pub async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let RegisterArgs {
        backend,
        node_id,
        host,
        port,
        metadata,
    } = args;
    match backend.etcd_target()? {
        Some(target) => crate::etcd::register(&target, &node_id, &host, port, metadata).await?,
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

/// Parses `--metadata`: any JSON object (the agent card), nothing else.
pub fn parse_metadata(text: &str) -> Result<Metadata, String> {
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
}
