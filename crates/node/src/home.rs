//! The node home, in the cometbft manner:
//!
//! ```text
//! HOME/
//!   config/config.toml          node configuration
//!   config/genesis.json         the genesis document
//!   config/node_key.json        libp2p identity (Ed25519)
//!   config/consensus_key.json   signs proposals and votes (validators only)
//!   config/branch_key.json      signs this branch's records
//!   data/                       RocksDB store and consensus safety state
//! ```
//!
//! Three separate keys, so each can be rotated or moved to a signer of its own later.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use branchledger_crypto::{Keypair, PublicKey, Signer};
use serde::{Deserialize, Serialize};

/// The role of a key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// libp2p identity.
    Node,
    /// Consensus votes and proposals.
    Consensus,
    /// Branch records.
    Branch,
}

impl KeyRole {
    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            KeyRole::Node => "node",
            KeyRole::Consensus => "consensus",
            KeyRole::Branch => "branch",
        }
    }

    /// The file name under `config/`.
    pub fn file_name(self) -> &'static str {
        match self {
            KeyRole::Node => "node_key.json",
            KeyRole::Consensus => "consensus_key.json",
            KeyRole::Branch => "branch_key.json",
        }
    }
}

/// A key file: the role, the public key (for reading at a glance) and the secret seed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// What the key is for.
    pub role: KeyRole,
    /// The public key, hex.
    pub public_key: PublicKey,
    /// The secret seed, hex.
    pub secret_seed: String,
}

/// A new key pair from the operating system's random source.
pub fn generate_keypair() -> Keypair {
    use rand::TryRng;
    let mut seed = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut seed)
        .expect("the operating system's random source is available");
    Keypair::from_seed(seed)
}

/// Writes a key file readable by its owner only.
pub fn write_key(path: &Path, role: KeyRole, keypair: &Keypair) -> Result<()> {
    let file = KeyFile {
        role,
        public_key: keypair.public_key(),
        secret_seed: hex::encode(keypair.seed()),
    };
    let text = serde_json::to_string_pretty(&file)?;
    write_private(path, &text)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "creating key file {} (it must not exist yet)",
            path.display()
        )
    })?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Reads a key file, checking that the secret matches the public key and the role.
pub fn read_key(path: &Path, role: KeyRole) -> Result<Keypair> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?;
    let file: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("parsing key file {}", path.display()))?;
    if file.role != role {
        bail!(
            "{}: holds a {:?} key, expected a {:?} key",
            path.display(),
            file.role,
            role
        );
    }
    let seed: [u8; 32] = hex::decode(file.secret_seed.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{}: secret_seed must be 64 hex characters", path.display()))?;
    let keypair = Keypair::from_seed(seed);
    if keypair.public_key() != file.public_key {
        bail!(
            "{}: public_key does not match the secret seed",
            path.display()
        );
    }
    Ok(keypair)
}

/// Paths inside a node home.
#[derive(Clone, Debug)]
pub struct Home {
    /// The home directory.
    pub root: PathBuf,
}

/// The store's directory inside a home's `data/`.
pub const STORE_DIR_NAME: &str = "store";

impl Home {
    /// A home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// `config/`.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    /// `data/`.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `data/store/`: the node's RocksDB store.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir().join(STORE_DIR_NAME)
    }

    /// `config/genesis.json`.
    pub fn genesis_path(&self) -> PathBuf {
        self.config_dir().join("genesis.json")
    }

    /// `config/<role>_key.json`.
    pub fn key_path(&self, role: KeyRole) -> PathBuf {
        self.config_dir().join(role.file_name())
    }

    /// Creates `config/` and `data/`.
    pub fn create_dirs(&self) -> Result<()> {
        fs::create_dir_all(self.config_dir())?;
        fs::create_dir_all(self.data_dir())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_check_role_and_match() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("k.json");
        let keypair = generate_keypair();
        write_key(&path, KeyRole::Branch, &keypair).expect("write");
        assert_eq!(
            read_key(&path, KeyRole::Branch).expect("read").public_key(),
            keypair.public_key()
        );
        let error = read_key(&path, KeyRole::Consensus).expect_err("wrong role");
        assert!(
            error.to_string().contains("expected a Consensus key"),
            "{error}"
        );
        // Never overwrite an existing key.
        assert!(write_key(&path, KeyRole::Branch, &keypair).is_err());
        // A tampered public key is caught.
        let text = std::fs::read_to_string(&path).expect("read text");
        let other = generate_keypair().public_key().to_hex();
        std::fs::write(&path, text.replace(&keypair.public_key().to_hex(), &other)).expect("write");
        let error = read_key(&path, KeyRole::Branch).expect_err("mismatch");
        assert!(error.to_string().contains("does not match"), "{error}");
    }
}
