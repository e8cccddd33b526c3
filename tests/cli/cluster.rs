//! `mixlab cluster` and `mixlab ingest --engine ballista`: a Ballista scheduler and executors as
//! separate mixlab processes on 127.0.0.1, the demo corpus ingested through them, an executor
//! killed mid-ingest, and a scheduler that is not there.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mixlab_ingest::manifest::{DomainManifest, Manifest};
use mixlab_ingest::shard::{ShardDocument, read_shard_file};

use crate::util::Project;

/// A port nobody listens on now (bound, then released: racy, but adequate on one machine).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of `GET path` on 127.0.0.1:`port`, or None while nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// A scheduler and executors started as `mixlab cluster` processes; killed when dropped.
struct TestCluster {
    address: String,
    port: u16,
    /// The scheduler first, then the executors.
    processes: Vec<Child>,
}

impl TestCluster {
    /// Starts a scheduler (executors lost after 5 s without a heartbeat) and waits for /healthz.
    fn scheduler(p: &Project, min_executors: usize) -> Self {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let min = min_executors.to_string();
        let args = [
            "cluster",
            "scheduler",
            "--bind",
            &address,
            "--min-executors",
            &min,
            "--executor-timeout",
            "5",
        ];
        let cluster = Self {
            processes: vec![spawn(p, &args)],
            address,
            port,
        };
        cluster.wait_for("/healthz", "the scheduler never answered");
        cluster
    }

    /// Starts executor `i` (one task at a time, a heartbeat every second).
    fn add_executor(&mut self, p: &Project, i: usize) {
        self.add_executor_with(p, i, &[]);
    }

    /// Starts executor `i` with `extra` arguments.
    fn add_executor_with(&mut self, p: &Project, i: usize, extra: &[&str]) {
        let bind = format!("127.0.0.1:{}", free_port());
        let (grpc, work) = (free_port().to_string(), format!("work-{i}"));
        let mut args = vec![
            "cluster",
            "executor",
            "--scheduler",
            &self.address,
            "--bind",
            &bind,
            "--grpc-port",
            &grpc,
            "--work-dir",
            &work,
            "--vcores",
            "1",
            "--heartbeat",
            "1",
        ];
        args.extend_from_slice(extra);
        self.processes.push(spawn(p, &args));
    }

    /// A scheduler with `n` registered executors.
    fn with_executors(p: &Project, n: usize) -> Self {
        let mut cluster = Self::scheduler(p, n);
        for i in 0..n {
            cluster.add_executor(p, i);
        }
        cluster.wait_for("/readyz", "the executors never registered");
        cluster
    }

    fn wait_for(&self, path: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_status(self.port, path) != Some(200) {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(p: &Project, args: &[&str]) -> Child {
    p.command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Neither shards nor a staging directory: the failed ingest left nothing behind.
fn assert_nothing_published(p: &Project) {
    for dir in ["out/shards", "out/shards.partial"] {
        assert!(!p.path(dir).exists(), "{dir} exists after a failed ingest");
    }
}

/// The demo corpus's manifest from `mixlab ingest --engine local` in a project of its own.
fn local_manifest() -> Manifest {
    let p = Project::with_default_config();
    p.run(&["--quiet", "ingest", "--engine", "local"])
        .expect_code(0);
    Manifest::read(&p.path("out/shards")).unwrap()
}

#[test]
fn a_scheduler_is_ready_only_once_its_executors_register() {
    let p = Project::new();
    let mut cluster = TestCluster::scheduler(&p, 2);
    assert_eq!(
        http_status(cluster.port, "/readyz"),
        Some(503),
        "no executor yet"
    );
    cluster.add_executor(&p, 0);
    cluster.add_executor(&p, 1);
    cluster.wait_for("/readyz", "the executors never registered");
}

#[test]
fn the_demo_corpus_ingested_on_two_executors_equals_the_local_engine() {
    let p = Project::with_default_config();
    let cluster = TestCluster::with_executors(&p, 2);
    let out = p
        .run(&[
            "--quiet",
            "ingest",
            "--engine",
            "ballista",
            "--scheduler",
            &cluster.address,
            "--jobs",
            "2",
        ])
        .expect_code(0);
    let remote = Manifest::read(&p.path("out/shards")).unwrap();
    // Same documents, tokens, splits, statistics and shard bytes (the manifest holds every
    // shard's checksum and every domain's counts).
    assert_eq!(remote, local_manifest(), "{}", out.stderr);
    assert!(
        !p.path("out/shards/.cluster").exists() && !p.path("out/shards.partial").exists(),
        "the executors' scan counters are not left in the shards"
    );
    // The engine is not part of the shards' identity: the local engine finds them up to date.
    let again = p.run(&["ingest", "--engine", "local"]).expect_code(0);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
}

#[test]
fn an_executor_killed_while_judging_leaves_the_same_shards_or_none() {
    // Once the first domain's judge job is under way (the tokenizer is staged first).
    ingest_killing_an_executor_when("out/shards.partial/tokenizer.json");
}

#[test]
fn an_executor_killed_while_writing_shards_leaves_the_same_shards_or_none() {
    // Once the first part's write job is under way (what dedup dropped of it is listed first).
    ingest_killing_an_executor_when("out/shards.partial/.cluster/dropped-0.bin");
}

/// Ingests the demo corpus on two executors and kills one as soon as `trigger` exists: the
/// ingest either ends with the local engine's shards or fails naming the job, publishing nothing.
fn ingest_killing_an_executor_when(trigger: &str) {
    let p = Project::with_default_config();
    let mut cluster = TestCluster::with_executors(&p, 2);
    let ingest = p
        .command(&[
            "--quiet",
            "ingest",
            "--engine",
            "ballista",
            "--scheduler",
            &cluster.address,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let trigger = p.path(trigger);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !trigger.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(trigger.exists(), "{} never appeared", trigger.display());
    let victim = &mut cluster.processes[2];
    victim.kill().unwrap();
    victim.wait().unwrap();
    let output = ingest.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        let remote = Manifest::read(&p.path("out/shards")).unwrap();
        assert_eq!(remote, local_manifest(), "{stderr}");
        let listed = remote.domains.iter().map(|d| d.files.len()).sum::<usize>();
        let on_disk: usize = remote
            .domains
            .iter()
            .map(|d| {
                std::fs::read_dir(p.path("out/shards").join(&d.name))
                    .unwrap()
                    .count()
            })
            .sum();
        assert_eq!(on_disk, listed, "no shard file of a killed attempt is left");
    } else {
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("ballista job failed"), "{stderr}");
        assert_nothing_published(&p);
    }
    assert!(
        !p.path("out/shards.partial").exists(),
        "nothing half-written is left"
    );
}

#[test]
fn an_executor_refuses_sources_outside_its_allowed_directories() {
    let p = Project::with_default_config();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::scheduler(&p, 1);
    let allowed = elsewhere.path().to_str().unwrap();
    cluster.add_executor_with(&p, 0, &["--allow-dir", allowed]);
    cluster.wait_for("/readyz", "the executor never registered");
    let out = p
        .run(&[
            "ingest",
            "--engine",
            "ballista",
            "--scheduler",
            &cluster.address,
        ])
        .expect_code(1);
    assert!(
        out.stderr
            .contains("outside the directories this executor may use")
            && out.stderr.contains("data/demo/arithmetic.jsonl"),
        "{}",
        out.stderr
    );
    assert_nothing_published(&p);
}

const PARQUET_ONLY: &str = r#"
[tokenizer]
train = { vocab_size = 300 }

[ingest]
min_chars = 10

[ingest.filters]
min_stop_words = 0
min_alpha_word_fraction = 0.0

[[domain]]
name = "tables"
[[domain.source]]
path = "data/*.parquet"
format = "parquet"
text_column = "body"
"#;

#[test]
fn an_executor_refuses_parquet_files_outside_its_allowed_directories() {
    // The executor may use the output directory (the staged tokenizer), not the sources.
    let stderr = ingest_parquet_on_an_executor_allowed("out");
    assert!(stderr.contains("data/p-1.parquet"), "{stderr}");
}

#[test]
fn an_executor_refuses_to_write_shards_outside_its_allowed_directories() {
    // The executor may read the sources, not write under the output directory (the stage job's
    // candidates for dedup, then the shards).
    let stderr = ingest_parquet_on_an_executor_allowed("data");
    assert!(stderr.contains("shards.partial"), "{stderr}");
}

/// Ingests a Parquet source on one executor started with `--allow-dir <project>/<allowed>`;
/// asserts that the executor refused a path and nothing was published; returns stderr.
fn ingest_parquet_on_an_executor_allowed(allowed: &str) -> String {
    let p = Project::new();
    std::fs::create_dir_all(p.path("data")).unwrap();
    write_parquet(&p, "data/p-1.parquet", &documents("first", 20, 1));
    p.write("datasets.toml", PARQUET_ONLY);
    std::fs::create_dir_all(p.path(allowed)).unwrap();
    let mut cluster = TestCluster::scheduler(&p, 1);
    let allowed = p.path(allowed);
    cluster.add_executor_with(&p, 0, &["--allow-dir", allowed.to_str().unwrap()]);
    cluster.wait_for("/readyz", "the executor never registered");
    let args = ["ingest", "--engine", "ballista", "--scheduler"];
    let out = p
        .run(&[&args[..], &[cluster.address.as_str()]].concat())
        .expect_code(1);
    assert!(
        out.stderr
            .contains("outside the directories this executor may use"),
        "{}",
        out.stderr
    );
    assert_nothing_published(&p);
    out.stderr
}

#[test]
fn ingest_with_a_scheduler_that_is_not_there_fails_naming_it_and_writes_nothing() {
    let p = Project::with_default_config();
    let address = format!("127.0.0.1:{}", free_port());
    let out = p
        .run(&["ingest", "--engine", "ballista", "--scheduler", &address])
        .expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("ballista scheduler at {address}"))
            && out.stderr.contains("mixlab cluster scheduler"),
        "{}",
        out.stderr
    );
    assert_nothing_published(&p);
}

#[test]
fn an_executor_whose_scheduler_is_not_there_fails_naming_the_address() {
    let p = Project::new();
    let address = format!("127.0.0.1:{}", free_port());
    let out = p
        .run(&[
            "cluster",
            "executor",
            "--scheduler",
            &address,
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
            "--grpc-port",
            &free_port().to_string(),
            "--connect-timeout",
            "1",
        ])
        .expect_code(1);
    assert!(out.stderr.contains(&address), "{}", out.stderr);
}

/// `n` documents of pseudo-random words (distinct enough that dedup keeps them), tagged `tag`.
fn documents(tag: &str, n: usize, seed: u64) -> Vec<String> {
    const WORDS: [&str; 24] = [
        "river", "stone", "lamp", "orchard", "window", "copper", "meadow", "signal", "harbor",
        "lantern", "thistle", "engine", "valley", "marble", "willow", "canvas", "ember", "quarry",
        "saddle", "pepper", "ribbon", "timber", "falcon", "glacier",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            let words: Vec<&str> = (0..24)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    WORDS[(state % WORDS.len() as u64) as usize]
                })
                .collect();
            format!("{tag} {i}: {}", words.join(" "))
        })
        .collect()
}

/// Every document of a domain's shard files, in order.
fn shard_documents(dir: &std::path::Path, domain: &DomainManifest) -> Vec<ShardDocument> {
    domain
        .files
        .iter()
        .flat_map(|f| read_shard_file(&dir.join(&f.path), None).unwrap())
        .collect()
}

fn write_jsonl(p: &Project, rel: &str, texts: &[String], broken_line: bool) {
    let mut lines: Vec<String> = texts
        .iter()
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    if broken_line {
        lines.insert(lines.len() / 2, "{broken".to_owned());
    }
    p.write(rel, lines.join("\n") + "\n");
}

fn write_parquet(p: &Project, rel: &str, texts: &[String]) {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("body", DataType::Utf8, false),
        Field::new("lang", DataType::Utf8, false),
    ]));
    let langs: Vec<&str> = (0..texts.len())
        .map(|i| if i % 4 == 0 { "fr" } else { "en" })
        .collect();
    let columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(StringArray::from(texts.to_vec())),
        Arc::new(StringArray::from(langs)),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
    let file = std::fs::File::create(p.path(rel)).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

const SEVERAL_FILES: &str = r#"
[tokenizer]
train = { vocab_size = 300 }

[ingest]
on_error = "skip"
min_chars = 10
shard_rows = 16

[ingest.filters]
min_stop_words = 0
min_alpha_word_fraction = 0.0

[[domain]]
name = "lines"
[[domain.source]]
path = "data/l-*.jsonl"
format = "jsonl"

[[domain]]
name = "sorted"
[[domain.source]]
path = "data/s-*.jsonl"
format = "jsonl"
sql = "SELECT text FROM source ORDER BY text DESC"

[[domain]]
name = "tables"
[[domain.source]]
path = "data/*.parquet"
format = "parquet"
text_column = "body"
sql = "SELECT body FROM source WHERE lang = 'en'"

[[domain]]
name = "subquery"
[[domain.source]]
path = "data/q-*.jsonl"
format = "jsonl"
sql = "SELECT text FROM source WHERE text < (SELECT max(text) FROM source)"
"#;

#[test]
fn several_files_per_source_parquet_sql_and_skipped_records_give_the_local_engines_shards() {
    let p = Project::new();
    write_jsonl(&p, "data/l-1.jsonl", &documents("first", 40, 1), true);
    write_jsonl(&p, "data/l-2.jsonl", &documents("second", 40, 2), false);
    write_jsonl(&p, "data/s-1.jsonl", &documents("third", 30, 3), false);
    write_jsonl(&p, "data/s-2.jsonl", &documents("fourth", 30, 4), true);
    write_parquet(&p, "data/p-1.parquet", &documents("fifth", 20, 5));
    write_parquet(&p, "data/p-2.parquet", &documents("sixth", 20, 6));
    write_jsonl(&p, "data/q-1.jsonl", &documents("seventh", 20, 7), false);
    write_jsonl(&p, "data/q-2.jsonl", &documents("eighth", 20, 8), false);
    p.write("datasets.toml", SEVERAL_FILES);
    p.run(&["--quiet", "--out", "local", "ingest"])
        .expect_code(0);
    let cluster = TestCluster::with_executors(&p, 2);
    let address = cluster.address.as_str();
    let args = [
        "--quiet", "--out", "remote", "ingest", "--engine", "ballista",
    ];
    let out = p
        .run(&[&args[..], &["--scheduler", address][..]].concat())
        .expect_code(0);
    let local = Manifest::read(&p.path("local/shards")).unwrap();
    let remote = Manifest::read(&p.path("remote/shards")).unwrap();
    // Same statistics, splits, and documents in the same order. A domain read in one part (its
    // SQL needs all rows: one job) has the local engine's files byte for byte; one read per file
    // has files cut where each file ends as well as every 16 documents, numbered on.
    for (l, r) in local.domains.iter().zip(&remote.domains) {
        assert_eq!(
            (&l.name, &l.stats, &l.splits),
            (&r.name, &r.stats, &r.splits)
        );
        assert_eq!(
            shard_documents(&p.path("local/shards"), l),
            shard_documents(&p.path("remote/shards"), r),
            "{}",
            l.name
        );
    }
    for one_part in ["sorted", "subquery"] {
        assert_eq!(
            remote.domain(one_part),
            local.domain(one_part),
            "{}",
            out.stderr
        );
    }
    let rows = |m: &Manifest| -> Vec<u64> {
        m.domain("lines")
            .unwrap()
            .files
            .iter()
            .map(|f| f.rows)
            .collect()
    };
    assert_eq!(rows(&local), [16, 16, 16, 16, 15]);
    assert_eq!(rows(&remote), [16, 16, 8, 16, 16, 7]);
    for (i, file) in remote.domain("lines").unwrap().files.iter().enumerate() {
        assert_eq!(file.path, format!("lines/part-{i:05}.parquet"));
    }
    assert_eq!(
        std::fs::read_dir(p.path("remote/shards/lines"))
            .unwrap()
            .count(),
        6,
        "nothing but the listed files"
    );
    // What the comparison covers: a skipped record per broken file, an ordered whole-source
    // query, Parquet rows filtered by SQL, and a subquery over the whole source (one maximum of
    // both files is left out, not one per file).
    let stats = |name: &str| local.domain(name).unwrap().stats.clone();
    assert_eq!(stats("lines").skipped_records, 1);
    assert_eq!(stats("sorted").skipped_records, 1);
    assert_eq!(
        (stats("lines").records_read, stats("tables").records_read),
        (80, 30)
    );
    assert!(stats("tables").documents > 20, "{:?}", stats("tables"));
    assert_eq!(stats("subquery").records_read, 39);
}
