//! Secrets in the configuration: inline (for development), from an environment variable, or
//! from a file (e.g. a mounted Kubernetes secret). Resolved once at start; never printed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A secret: inline (for development), from an environment variable, or from a file (e.g. a
/// mounted Kubernetes secret). Resolved once at start; never printed.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Secret {
    Env(EnvRef),
    File(FileRef),
    Inline(String),
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct EnvRef {
    pub env: String,
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub file: PathBuf,
}

impl Secret {
    pub fn env(name: &str) -> Secret {
        Secret::Env(EnvRef { env: name.into() })
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Env(EnvRef { env }) => write!(f, "Secret(env {env})"),
            Secret::File(FileRef { file }) => write!(f, "Secret(file {})", file.display()),
            Secret::Inline(_) => f.write_str("Secret(inline ***)"),
        }
    }
}

impl Secret {
    /// The secret's value. Trailing newlines of files are dropped.
    pub fn resolve(&self) -> anyhow::Result<String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::Env(EnvRef { env }) => std::env::var(env)
                .map_err(|_| anyhow::anyhow!("environment variable {env} is not set")),
            Secret::File(FileRef { file }) => std::fs::read_to_string(file)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| anyhow::anyhow!("cannot read secret file {}: {e}", file.display())),
        }
    }

    /// How the effective config shows it: where it comes from, never what it is.
    pub fn redacted(&self) -> serde_json::Value {
        match self {
            Secret::Env(EnvRef { env }) => serde_json::json!({ "env": env }),
            Secret::File(FileRef { file }) => serde_json::json!({ "file": file }),
            Secret::Inline(_) => serde_json::json!("***"),
        }
    }
}
