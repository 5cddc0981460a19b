//! The etcd backend on the command line: `--etcd ENDPOINTS [--parent ID] [--identity
//! KEYFILE] [--lease-ttl SECONDS]`, and the operator's view `isek nodes --etcd`.
//!
//! etcd is selected by `--etcd`, or by `$ISEK_ETCD` when neither `--center` nor
//! `$ISEK_CENTER` is given (both variables set and no flag is an error: the choice
//! would be a guess). On etcd every node has its own key pair, so identities matter:
//!
//! - `--identity KEYFILE` is always an existing file (`isek keygen --out KEYFILE`
//!   makes one); it is never created implicitly, so a typo cannot fork an identity.
//! - `register` without `--identity` generates a key, registers with it, then saves it
//!   to `./<node_id>.key.pem` (refusing to overwrite an existing file) and says so on
//!   stderr; pass that file as `--identity` to renew or deregister the node later, from
//!   any process.
//! - `renew` and `deregister` require `--identity`: only the key the node was
//!   registered with may touch its entry.
//! - `run` without `--identity` uses a key held in memory for the life of the process
//!   (enough to keep the node alive and deregister it at shutdown); `nodes` and
//!   `watch` only read, so they need none.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use isek::etcd::{EtcdConfig, EtcdRegistry};
use isek::identity::NodeIdentity;
use isek::wire::etcd::{ListedEntry, parent_prefix};
use isek::{Metadata, Registry};

use crate::table;

/// Environment variable holding the default etcd endpoints.
pub const ETCD_ENV: &str = "ISEK_ETCD";
/// Environment variable holding the default center URL (see [`crate::backend`]).
pub const CENTER_ENV: &str = "ISEK_CENTER";

/// The etcd flags every client command takes (flattened into the backend flags).
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// Use etcd instead of a center: comma-separated endpoints, e.g.
    /// http://127.0.0.1:2379 (default: $ISEK_ETCD, when neither --center nor
    /// $ISEK_CENTER is given).
    #[arg(long, value_name = "ENDPOINTS")]
    pub etcd: Option<String>,
    /// etcd only: the parent namespace; entries live at /ID/<node_id> [default: root].
    #[arg(long, value_name = "ID")]
    pub parent: Option<String>,
    /// The node's private key (PKCS#8 PEM, from `isek keygen`), which signs its entry
    /// (etcd) or its registration (center) and proves it may renew or deregister it.
    /// Must exist.
    #[arg(long, value_name = "KEYFILE")]
    pub identity: Option<PathBuf>,
    /// etcd only: lease length granted by `register` and `run`, in seconds
    /// [default: 30, the original's].
    #[arg(long, value_name = "SECONDS", value_parser = crate::server::parse_seconds)]
    pub lease_ttl: Option<Duration>,
}

/// An etcd registry chosen on the command line, not yet connected.
#[derive(Debug, Clone)]
pub struct EtcdTarget {
    /// Endpoints, parent namespace and lease TTL.
    config: EtcdConfig,
    /// `--identity`, when given.
    identity: Option<PathBuf>,
}

impl EtcdArgs {
    /// The etcd target when etcd is selected, `None` when a center is.
    ///
    /// `center_flag` says whether `--center` was given (clap keeps it and `--etcd`
    /// apart); `env` reads an environment variable (a parameter so tests need not touch
    /// the process environment).
    pub fn target(
        &self,
        center_flag: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<EtcdTarget>> {
        let endpoints = match (&self.etcd, center_flag) {
            (Some(endpoints), _) => Some(endpoints.clone()),
            (None, true) => None,
            (None, false) => match (env(ETCD_ENV), env(CENTER_ENV)) {
                (Some(_), Some(_)) => bail!(
                    "both {ETCD_ENV} and {CENTER_ENV} are set; pass --etcd or --center to choose"
                ),
                (endpoints, _) => endpoints,
            },
        };
        let Some(endpoints) = endpoints else {
            let stray: Vec<&str> = [
                (self.parent.is_some(), "--parent"),
                (self.lease_ttl.is_some(), "--lease-ttl"),
            ]
            .into_iter()
            .filter_map(|(given, flag)| given.then_some(flag))
            .collect();
            if !stray.is_empty() {
                bail!(
                    "etcd-only flags without etcd: {} (select etcd with --etcd ENDPOINTS or {ETCD_ENV})",
                    stray.join(", ")
                );
            }
            return Ok(None);
        };
        let mut config = EtcdConfig::from_endpoint_list(&endpoints)?;
        if let Some(parent) = &self.parent {
            config = config.parent(parent.clone());
        }
        if let Some(ttl) = self.lease_ttl {
            config = config.ttl(ttl);
        }
        Ok(Some(EtcdTarget {
            config,
            identity: self.identity.clone(),
        }))
    }
}

impl EtcdTarget {
    /// Connects, acting for `identity`.
    async fn connect_as(&self, identity: NodeIdentity) -> anyhow::Result<EtcdRegistry> {
        Ok(EtcdRegistry::connect(self.config.clone(), identity).await?)
    }

    /// Loads `--identity`, when given.
    fn load_identity(&self) -> anyhow::Result<Option<NodeIdentity>> {
        self.identity
            .as_deref()
            .map(|path| NodeIdentity::load(path).context("cannot use --identity"))
            .transpose()
    }

    /// Connects for a node kept alive by this process (`run`) or for reading (`nodes`,
    /// `watch`): `--identity`, else a key held in memory only.
    pub async fn connect_node(&self) -> anyhow::Result<EtcdRegistry> {
        let identity = self.load_identity()?.unwrap_or_else(NodeIdentity::generate);
        self.connect_as(identity).await
    }

    /// Connects for `command` (`renew`, `deregister`) on a node registered before,
    /// possibly by another process: `--identity` is required.
    pub async fn connect_owner(&self, command: &str) -> anyhow::Result<EtcdRegistry> {
        match self.load_identity()? {
            Some(identity) => self.connect_as(identity).await,
            None => bail!(
                "{command} on etcd needs --identity KEYFILE (the key the node was registered with)"
            ),
        }
    }
}

/// Longest file name most file systems accept, in bytes.
const MAX_FILE_NAME_BYTES: usize = 255;

/// Where `register` saves a key it generated for `node_id`.
fn generated_key_path(node_id: &str) -> anyhow::Result<PathBuf> {
    // The registry validates node ids too, but the path is built first: never let an
    // id name a file outside the current directory.
    if let Err(problem) = isek::node_id::check(node_id, isek::node_id::MAX_BYTES) {
        bail!("node_id {node_id:?} {problem}");
    }
    let name = format!("{node_id}.key.pem");
    if name.len() > MAX_FILE_NAME_BYTES {
        bail!(
            "node_id is too long to name its key file; create one with isek keygen and pass --identity KEYFILE"
        );
    }
    Ok(Path::new(".").join(name))
}

/// `isek register --etcd`: registers with `--identity`, or with a new key that is then
/// saved to `./<node_id>.key.pem` (see the module docs).
pub async fn register(
    target: &EtcdTarget,
    node_id: &str,
    host: &str,
    port: u16,
    metadata: Metadata,
) -> anyhow::Result<()> {
    if let Some(identity) = target.load_identity()? {
        let registry = target.connect_as(identity).await?;
        registry
            .register_node(node_id, host, port, metadata)
            .await?;
        return Ok(());
    }
    let path = generated_key_path(node_id)?;
    // Checked before registering so that the common mistake costs nothing; the save
    // below still refuses to overwrite if the file appears in between.
    if path.symlink_metadata().is_ok() {
        bail!(
            "{} already exists: pass --identity {} to register with that key, or move it away",
            path.display(),
            path.display()
        );
    }
    let identity = NodeIdentity::generate();
    let registry = target.connect_as(identity.clone()).await?;
    registry
        .register_node(node_id, host, port, metadata)
        .await?;
    if let Err(error) = identity.save(&path) {
        // Nobody could renew or remove an entry whose key is lost: take it back.
        let undone = match registry.deregister_node(node_id).await {
            Ok(()) => "the registration was withdrawn".to_owned(),
            Err(e) => format!("the entry expires with its lease ({e})"),
        };
        return Err(error).with_context(|| {
            format!("node '{node_id}' was registered but its new key could not be saved; {undone}")
        });
    }
    eprintln!(
        "note: saved the new identity of node '{node_id}' to {}; pass --identity {} to renew or deregister it",
        path.display(),
        path.display()
    );
    Ok(())
}

/// `isek nodes --etcd`: every entry under the prefix, verified or not.
pub async fn nodes(target: &EtcdTarget, json: bool) -> anyhow::Result<()> {
    let registry = target.connect_node().await?;
    let entries = registry.list_entries().await?;
    let prefix = parent_prefix(registry.parent_node_id());
    let by_id: BTreeMap<String, ListedEntry> = entries
        .into_iter()
        .map(|entry| (id_of(&entry, &prefix), entry))
        .collect();
    if json {
        let text = serde_json::to_string_pretty(&by_id).context("cannot encode the listing")?;
        println!("{text}");
    } else {
        print!("{}", render(&by_id, &prefix));
    }
    Ok(())
}

/// The node id an entry's key names (what the listing is keyed by): unlike the id
/// inside the entry, it exists and is unique even for entries that do not parse.
fn id_of(entry: &ListedEntry, prefix: &str) -> String {
    entry
        .key
        .strip_prefix(prefix)
        .unwrap_or(&entry.key)
        .to_owned()
}

/// Column titles of the operator view.
const HEADERS: [&str; 6] = ["NODE_ID", "HOST", "PORT", "VERIFIED", "LEGACY", "METADATA"];

/// The operator view as a table, followed by one `! KEY: reason` line per entry that
/// does not verify; a one-line note when there are no entries.
fn render(entries: &BTreeMap<String, ListedEntry>, prefix: &str) -> String {
    if entries.is_empty() {
        return format!("No entries under {}.\n", table::printable(prefix));
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|(id, e)| {
            [
                table::printable(id),
                e.host.as_deref().map_or("-".to_owned(), table::printable),
                e.port.map_or("-".to_owned(), |p| p.to_string()),
                yes_no(e.verified),
                yes_no(e.legacy),
                e.metadata.as_ref().map_or("-".to_owned(), |m| {
                    table::truncate(
                        &table::printable(&table::compact_json(m)),
                        table::METADATA_WIDTH,
                    )
                }),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = HEADERS.map(str::to_owned);
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ");
            }
        }
        out.push('\n');
    }
    for entry in entries.values() {
        if let Some(error) = &entry.error {
            let _ = writeln!(
                out,
                "! {}: {}",
                table::printable(&entry.key),
                table::printable(error)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(etcd: Option<&str>) -> EtcdArgs {
        EtcdArgs {
            etcd: etcd.map(str::to_owned),
            parent: None,
            identity: None,
            lease_ttl: None,
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn flags_win_over_the_environment() {
        let both = [(ETCD_ENV, "http://e:1"), (CENTER_ENV, "http://c:1")];
        let target = args(Some("http://a:1,http://b:2"))
            .target(false, env(&both))
            .unwrap()
            .unwrap();
        assert_eq!(target.config.endpoints, ["http://a:1", "http://b:2"]);
        assert!(args(None).target(true, env(&both)).unwrap().is_none());
        let error = args(None).target(false, env(&both)).unwrap_err();
        assert!(error.to_string().contains("both ISEK_ETCD and ISEK_CENTER"));
    }

    #[test]
    fn the_etcd_variable_selects_etcd_without_flags() {
        let only_etcd = [(ETCD_ENV, "http://e:1")];
        let target = args(None).target(false, env(&only_etcd)).unwrap().unwrap();
        assert_eq!(target.config.endpoints, ["http://e:1"]);
        assert_eq!(target.config.parent_node_id, "root");
        assert!(args(None).target(false, env(&[])).unwrap().is_none());
    }

    #[test]
    fn etcd_only_flags_are_refused_for_a_center() {
        let mut given = args(None);
        given.parent = Some("p".into());
        given.identity = Some("k.pem".into());
        let error = given.target(true, env(&[])).unwrap_err().to_string();
        // --identity also serves a center (signed registrations).
        assert_eq!(
            error,
            "etcd-only flags without etcd: --parent (select etcd with --etcd ENDPOINTS or ISEK_ETCD)"
        );
        assert!(args(Some(" , ")).target(false, env(&[])).is_err());
    }

    #[test]
    fn generated_keys_stay_in_the_current_directory() {
        assert_eq!(
            generated_key_path("alpha").unwrap(),
            Path::new("./alpha.key.pem")
        );
        assert!(generated_key_path("../x").is_err());
        assert!(generated_key_path("").is_err());
        assert!(generated_key_path(&"n".repeat(247)).is_ok());
        assert!(generated_key_path(&"n".repeat(248)).is_err());
    }

    #[test]
    fn the_table_flags_entries_that_do_not_verify() {
        let good = ListedEntry {
            key: "/root/a".into(),
            node_id: Some("a".into()),
            host: Some("10.0.0.1".into()),
            port: Some(80),
            metadata: Some(Metadata::new()),
            public_key: Some("K".into()),
            verified: true,
            legacy: true,
            error: None,
            lease: 7,
        };
        let bad = ListedEntry {
            key: "/root/b".into(),
            node_id: None,
            host: None,
            port: None,
            metadata: None,
            public_key: None,
            verified: false,
            legacy: false,
            error: Some("not JSON".into()),
            lease: 0,
        };
        let entries = BTreeMap::from([("a".to_owned(), good), ("b".to_owned(), bad)]);
        let text = render(&entries, "/root/");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NODE_ID  HOST      PORT  VERIFIED  LEGACY  METADATA",
                "a        10.0.0.1  80    yes       yes     {}",
                "b        -         -     no        no      -",
                "! /root/b: not JSON",
            ]
        );
        assert_eq!(
            render(&BTreeMap::new(), "/root/"),
            "No entries under /root/.\n"
        );
    }
}
