//! `isek center --config FILE`: the flags of `isek center` read from a TOML file.
//!
//! Every key is the long name of a flag (`lease-ttl = 30`, `require-signatures = true`),
//! so the file needs no schema of its own and no flag can lack a key. The file is
//! turned into flags placed *before* the command line's, and the command is parsed with
//! `args_override_self`, so a flag given on the command line wins; a file flag that
//! conflicts with a command-line flag (`data-dir` in the file, `--in-memory` given) is
//! dropped. An unknown key, a value of the wrong kind, or a file that is not TOML is an
//! error naming the file and the key. What this module deliberately does not know: what
//! any flag means. clap checks every value exactly as it checks typed flags.

use std::ffi::OsString;
use std::path::Path;

use clap::{ArgAction, Command};

/// The flag that names the file, and the key it must not have.
const CONFIG: &str = "config";

/// The subcommand whose flags a file can hold.
const SUBCOMMAND: &str = "center";

/// `args` with the flags of the `--config` file inserted before the command line's
/// own; `args` unchanged when the command is not `center` or names no file.
/// `command` is the whole `isek` command (for the flag names and kinds).
pub fn expand(args: Vec<OsString>, command: &Command) -> Result<Vec<OsString>, String> {
    if args.get(1).and_then(|a| a.to_str()) != Some(SUBCOMMAND) {
        return Ok(args);
    }
    let Some(path) = config_path(&args[2..]) else {
        return Ok(args);
    };
    let Some(center) = command.find_subcommand(SUBCOMMAND) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    let given = given_flags(&args[2..]);
    let from_file = file_flags(&path, &text, center, &given)?;
    let mut expanded = Vec::with_capacity(args.len() + from_file.len());
    expanded.extend(args[..2].iter().cloned());
    expanded.extend(from_file);
    expanded.extend(args[2..].iter().cloned());
    Ok(expanded)
}

/// The value of `--config FILE` or `--config=FILE` among `args`, if any.
fn config_path(args: &[OsString]) -> Option<std::path::PathBuf> {
    let flag = format!("--{CONFIG}");
    let prefix = format!("--{CONFIG}=");
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_str()?;
        if text == "--" {
            return None;
        }
        if text == flag {
            return iter.next().map(Into::into);
        }
        if let Some(value) = text.strip_prefix(&prefix) {
            return Some(value.into());
        }
    }
    None
}

/// Long names of the flags given on the command line (without `--` and `=value`).
fn given_flags(args: &[OsString]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect()
}

/// The flags a file's `text` stands for, sorted by key (order does not matter: no
/// flag of `isek center` is given twice).
fn file_flags(
    path: &Path,
    text: &str,
    center: &Command,
    given: &[String],
) -> Result<Vec<OsString>, String> {
    let file = path.display();
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{file}: {}", one_line(&e.to_string())))?;
    let mut flags = Vec::new();
    for (key, value) in table {
        let arg = center
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != CONFIG)
            .ok_or_else(|| {
                format!(
                    "{file}: unknown key '{key}'; the keys are the flags of isek center: {}",
                    known_keys(center)
                )
            })?;
        // The command line wins, also over a file flag it excludes.
        let overridden = given.iter().any(|g| {
            center
                .get_arguments()
                .find(|a| a.get_long() == Some(g.as_str()))
                .is_some_and(|g| g.get_id() == arg.get_id() || conflicts(center, arg, g))
        });
        if overridden {
            continue;
        }
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let flag = format!("--{key}");
        match (value, switch) {
            (toml::Value::Boolean(true), true) => flags.push(flag.into()),
            (toml::Value::Boolean(false), true) => {}
            (_, true) => return Err(format!("{file}: '{key}' must be true or false")),
            (toml::Value::String(s), false) => flags.push(format!("{flag}={s}").into()),
            (toml::Value::Integer(n), false) => flags.push(format!("{flag}={n}").into()),
            (toml::Value::Float(x), false) => flags.push(format!("{flag}={x}").into()),
            (_, false) => {
                return Err(format!(
                    "{file}: '{key}' must be a string or a number, as its flag takes"
                ));
            }
        }
    }
    Ok(flags)
}

/// Whether `a` and `b` exclude each other (either side's `conflicts_with`).
fn conflicts(center: &Command, a: &clap::Arg, b: &clap::Arg) -> bool {
    let of = |x: &clap::Arg, y: &clap::Arg| {
        center
            .get_arg_conflicts_with(x)
            .iter()
            .any(|c| c.get_id() == y.get_id())
    };
    of(a, b) || of(b, a)
}

/// The keys a file may hold, for the unknown-key error.
fn known_keys(center: &Command) -> String {
    let keys: Vec<&str> = center
        .get_arguments()
        .filter_map(clap::Arg::get_long)
        .filter(|long| *long != CONFIG && *long != "help")
        .collect();
    keys.join(", ")
}

/// `text` on one line (the TOML parser's errors span several).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `isek center --config <file holding text> <rest>`, expanded.
    fn expanded(text: &str, rest: &[&str]) -> Result<Vec<String>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("isek.toml");
        std::fs::write(&path, text).unwrap();
        let mut args: Vec<OsString> = vec!["isek".into(), "center".into()];
        args.push("--config".into());
        args.push(path.clone().into());
        args.extend(rest.iter().map(OsString::from));
        let command = crate::Cli::command();
        let out = expand(args, &command)?;
        Ok(out
            .iter()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .take_while(|a| a != "--config")
            .collect())
    }

    #[test]
    fn keys_become_flags_before_the_command_line() {
        let flags = expanded(
            "lease-ttl = 1.5\nmax-nodes = 10\nrequire-signatures = true\nin-memory = false\nlisten = \"127.0.0.1:0\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            flags,
            [
                "--lease-ttl=1.5",
                "--listen=127.0.0.1:0",
                "--max-nodes=10",
                "--require-signatures",
            ]
        );
    }

    #[test]
    fn the_command_line_wins_also_over_a_conflicting_key() {
        let flags = expanded(
            "lease-ttl = 5\ndata-dir = \"/srv/isek\"\n",
            &["--lease-ttl", "7", "--in-memory"],
        )
        .unwrap();
        assert!(flags.is_empty(), "{flags:?}");
    }

    #[test]
    fn unknown_keys_wrong_kinds_and_bad_toml_name_the_problem() {
        let error = expanded("lease-tl = 5\n", &[]).unwrap_err();
        assert!(
            error.contains("unknown key 'lease-tl'") && error.contains("lease-ttl"),
            "{error}"
        );
        let error = expanded("config = \"other.toml\"\n", &[]).unwrap_err();
        assert!(error.contains("unknown key 'config'"), "{error}");
        let error = expanded("in-memory = \"yes\"\n", &[]).unwrap_err();
        assert!(
            error.contains("'in-memory' must be true or false"),
            "{error}"
        );
        let error = expanded("listen = [1]\n", &[]).unwrap_err();
        assert!(
            error.contains("'listen' must be a string or a number"),
            "{error}"
        );
        let error = expanded("listen = \n", &[]).unwrap_err();
        assert!(
            error.contains("isek.toml") && !error.contains('\n'),
            "{error}"
        );
    }

    #[test]
    fn other_commands_and_no_config_are_left_alone() {
        let command = crate::Cli::command();
        let args: Vec<OsString> = ["isek", "nodes", "--config", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(expand(args.clone(), &command).unwrap(), args);
        let args: Vec<OsString> = ["isek", "center", "--in-memory"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(expand(args.clone(), &command).unwrap(), args);
    }
}
