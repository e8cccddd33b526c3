//! Test harness: a temporary directory with the default config, and a way to run `mixlab` in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch project directory that is deleted when dropped.
pub struct Project {
    pub dir: tempfile::TempDir,
}

/// What a `mixlab` invocation printed and returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with the full output unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "\n--- exit code {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

impl Project {
    /// An empty project.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A project holding the repository's default `datasets.toml`.
    pub fn with_default_config() -> Self {
        let p = Self::new();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets.toml");
        std::fs::copy(config, p.path("datasets.toml")).expect("copy datasets.toml");
        p
    }

    /// Replaces `from` with `to` in the project's `datasets.toml`.
    pub fn edit_config(&self, from: &str, to: &str) {
        let toml = std::fs::read_to_string(self.path("datasets.toml")).expect("datasets.toml");
        assert!(toml.contains(from), "datasets.toml has no {from:?}");
        self.write("datasets.toml", toml.replace(from, to));
    }

    /// The run hash of the run directory `run` (relative to `out/`): the first line of its
    /// `config.toml`.
    pub fn run_hash(&self, run: &str) -> String {
        let config = std::fs::read_to_string(self.path(&format!("out/{run}/config.toml")))
            .expect("config.toml of the run");
        let first = config.lines().next().unwrap_or_default();
        assert!(first.starts_with("run_hash = "), "{run}: {first}");
        first.split('"').nth(1).expect("a quoted hash").to_owned()
    }

    /// A path inside the project.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating directories).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A `mixlab` command running in the project directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mixlab"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("RAYON_NUM_THREADS");
        cmd
    }

    /// Runs `mixlab` with `args` and waits.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run mixlab"))
    }

    /// The mean validation loss that `mixlab eval --json ARGS` prints.
    pub fn eval_mean_loss(&self, args: &[&str]) -> f64 {
        let mut all = vec!["eval", "--json"];
        all.extend_from_slice(args);
        let out = self.run(&all).expect_code(0);
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        json["mean_loss"].as_f64().expect("mean_loss")
    }
}
