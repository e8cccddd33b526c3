//! `mixlab ingest` and `mixlab inspect` on the demo corpus and on bad input.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use mixlab_ingest::manifest::Manifest;

use crate::util::Project;

fn demo_manifest(p: &Project) -> Manifest {
    Manifest::read(&p.path("out/shards")).expect("manifest")
}

#[test]
fn demo_corpus_ingests_with_known_properties_and_reruns_as_a_no_op() {
    let p = Project::with_default_config();
    let out = p.run(&["ingest"]).expect_code(0);
    for domain in ["arithmetic", "code", "prose", "noise", "duplicated"] {
        assert!(
            out.stdout.contains(domain),
            "summary lacks {domain}:\n{}",
            out.stdout
        );
    }
    let m = demo_manifest(&p);
    let stats = |name: &str| m.domain(name).unwrap().stats.clone();

    // The SQL filter keeps difficulty ≤ 4 of 5 levels: about 800 of 1000 problems.
    let arithmetic = stats("arithmetic");
    assert!(
        (700..900).contains(&arithmetic.records_read),
        "{arithmetic:?}"
    );
    // 3 of 7 copies are exact duplicates and about 3 of 7 near duplicates.
    let dup = stats("duplicated");
    let exact = dup.exact_duplicates as f64 / dup.records_read as f64;
    let near = dup.near_duplicates as f64 / dup.records_read as f64;
    assert!(
        (0.40..0.45).contains(&exact),
        "exact duplicate rate {exact}"
    );
    assert!(near > 0.3, "near duplicate rate {near}");
    // Prose passes the Gopher rules; noise is kept on purpose; code needs its overrides.
    assert!(stats("prose").filtered_total() < 60, "{:?}", stats("prose"));
    assert!(stats("noise").documents > 900);
    assert!(stats("code").documents > 900, "{:?}", stats("code"));
    // Every split is present and the tokenizer was trained to the configured size.
    assert_eq!(m.tokenizer.vocab_size, 1024);
    assert_eq!(m.tokenizer.eos_id, 0);
    assert!(
        m.domains.iter().all(|d| d.splits.len() == 3),
        "{:?}",
        m.domains[0].splits
    );

    let again = p.run(&["ingest"]).expect_code(0);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);

    let inspect = p.run(&["inspect", "out/shards"]).expect_code(0);
    assert!(
        inspect.stdout.contains("verified") && inspect.stdout.contains("duplicated"),
        "{}",
        inspect.stdout
    );
}

#[test]
fn output_is_byte_identical_across_runs() {
    let (a, b) = (
        Project::with_default_config(),
        Project::with_default_config(),
    );
    a.run(&["ingest", "--quiet"]).expect_code(0);
    b.run(&["--quiet", "ingest"]).expect_code(0);
    let (ma, mb) = (demo_manifest(&a), demo_manifest(&b));
    assert_eq!(
        ma.tokenizer.sha256, mb.tokenizer.sha256,
        "tokenizer training must be deterministic"
    );
    let files = |m: &Manifest| {
        m.domains
            .iter()
            .flat_map(|d| d.files.iter().map(|f| f.sha256.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&ma), files(&mb));
}

#[test]
fn tampered_shards_and_interrupted_runs_are_handled() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    let m = demo_manifest(&p);
    let shard = p.path("out/shards").join(&m.domains[1].files[0].path);
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let out = p.run(&["inspect"]).expect_code(1);
    assert!(
        out.stderr.contains("checksum") && out.stderr.contains("part-00000.parquet"),
        "{}",
        out.stderr
    );

    // A killed run leaves a staging directory; the next run starts over and replaces it.
    p.write(
        "out/shards.partial/code/part-00000.parquet.tmp",
        b"half a file",
    );
    let out = p.run(&["ingest", "-q"]).expect_code(0);
    assert!(
        out.stdout.contains("wrote"),
        "tampered shards must be rebuilt: {}",
        out.stdout
    );
    assert!(!p.path("out/shards.partial").exists());
    p.run(&["inspect"]).expect_code(0);
}

#[test]
fn an_unchanged_shard_set_is_opened_without_reading_its_shards() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    let record = p.path("out/shards/verified.json");
    let recorded_at_publish = std::fs::read_to_string(&record).expect("ingest records its check");
    // Change a shard's bytes but not its size or modification time: only a full pass can tell.
    let m = demo_manifest(&p);
    let shard = p.path("out/shards").join(&m.domains[1].files[0].path);
    let modified = std::fs::metadata(&shard).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, &bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&shard).unwrap();
    file.set_modified(modified).unwrap();
    drop(file);

    let natural = ["mix", "-q", "--method", "natural"];
    p.run(&natural).expect_code(0);
    for args in [
        &["--verify", "mix", "-q", "--method", "natural"][..],
        &["inspect"],
    ] {
        let out = p.run(args).expect_code(1);
        assert!(
            out.stderr.contains("checksum") && out.stderr.contains("part-00000.parquet"),
            "{args:?}: {}",
            out.stderr
        );
    }
    // Restored bytes under a new modification time: the next open hashes again and renews the
    // record.
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, &bytes).unwrap();
    p.run(&natural).expect_code(0);
    let renewed = std::fs::read_to_string(&record).unwrap();
    assert_ne!(renewed, recorded_at_publish);
    p.run(&["inspect"]).expect_code(0);
}

/// A config with one domain reading `source` (TOML lines for `[[domain.source]]`).
fn one_domain(source: &str, extra: &str) -> String {
    format!(
        "[tokenizer]\ntrain = {{ vocab_size = 300, sample_bytes = 10000 }}\n[ingest]\nmin_chars = 1\nvalid_fraction = 0.0\nprobe_fraction = 0.0\n{extra}\n[ingest.filters]\nmin_stop_words = 0\nmin_alpha_word_fraction = 0.0\n[[domain]]\nname = \"d\"\n[[domain.source]]\n{source}\n"
    )
}

fn good_lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"text\": \"document number {i} says hello to the world\", \"lang\": \"en\"}}\n"
            )
        })
        .collect()
}

#[test]
fn bad_input_gives_one_clear_error_each() {
    let p = Project::new();
    let cases: Vec<(&str, String, i32, &str)> = vec![
        (
            "unknown key",
            one_domain("path = \"a.jsonl\"\nformat = \"jsonl\"\ncolour = 1", ""),
            2,
            "unknown field `colour`",
        ),
        (
            "missing file",
            one_domain("path = \"missing.jsonl\"\nformat = \"jsonl\"", ""),
            1,
            "missing.jsonl: no such file",
        ),
        (
            "bad json",
            one_domain("path = \"bad.jsonl\"\nformat = \"jsonl\"", ""),
            1,
            "bad.jsonl:3: not valid JSON",
        ),
        (
            "non utf-8",
            one_domain("path = \"latin1.jsonl\"\nformat = \"jsonl\"", ""),
            1,
            "latin1.jsonl:2: invalid UTF-8",
        ),
        (
            "text column",
            one_domain(
                "path = \"a.jsonl\"\nformat = \"jsonl\"\ntext_column = \"body\"",
                "",
            ),
            1,
            "a.jsonl: no column \"body\" (columns: lang, text)",
        ),
        (
            "sql column",
            one_domain(
                "path = \"a.jsonl\"\nformat = \"jsonl\"\nsql = \"SELECT lang FROM source\"",
                "",
            ),
            1,
            "no column \"text\"",
        ),
        (
            "bad sql",
            one_domain(
                "path = \"a.jsonl\"\nformat = \"jsonl\"\nsql = \"SELEC nonsense\"",
                "",
            ),
            1,
            "failed to plan",
        ),
        (
            "empty domain",
            one_domain(
                "path = \"a.jsonl\"\nformat = \"jsonl\"\nsql = \"SELECT text FROM source WHERE lang = 'fr'\"",
                "",
            ),
            1,
            "domain \"d\" is empty",
        ),
        (
            "bad parquet",
            one_domain("path = \"broken.parquet\"\nformat = \"parquet\"", ""),
            1,
            "broken.parquet: not a readable Parquet file",
        ),
        (
            "bad value",
            one_domain(
                "path = \"a.jsonl\"\nformat = \"jsonl\"",
                "valid_fraction = 1.5",
            ),
            2,
            "valid_fraction",
        ),
    ];
    p.write("a.jsonl", good_lines(20));
    p.write("bad.jsonl", format!("{}{{oops\n", good_lines(2)));
    p.write(
        "latin1.jsonl",
        [good_lines(1).as_bytes(), b"{\"text\": \"caf\xe9\"}\n"].concat(),
    );
    p.write("broken.parquet", b"PAR1 this is not parquet");
    for (name, config, code, needle) in cases {
        p.write("case.toml", config);
        let out = p.run(&["ingest", "--config", "case.toml"]);
        assert_eq!(out.code, code, "{name}: exit code; stderr:\n{}", out.stderr);
        assert!(
            out.stderr.contains(needle),
            "{name}: expected {needle:?} in stderr:\n{}",
            out.stderr
        );
    }
}

#[test]
fn skip_mode_counts_bad_records() {
    let p = Project::new();
    p.write(
        "bad.jsonl",
        format!(
            "{}{{oops\n{}",
            good_lines(3),
            "{\"text\": \"caf\u{e9} ok fine\"}\n"
        ),
    );
    p.write(
        "case.toml",
        one_domain(
            "path = \"bad.jsonl\"\nformat = \"jsonl\"",
            "on_error = \"skip\"",
        ),
    );
    let out = p.run(&["ingest", "--config", "case.toml"]).expect_code(0);
    let m = Manifest::read(&p.path("out/shards")).unwrap();
    assert_eq!(m.domains[0].stats.skipped_records, 1, "{}", out.stdout);
    assert_eq!(m.domains[0].stats.documents, 4);
}

#[test]
fn a_field_that_changes_type_after_the_schema_window_counts_only_where_it_is_read() {
    let p = Project::new();
    // 1,000 records infer `lang` as a number; record 1,003 holds a string there.
    let records: String = (0..1002)
        .map(|i| {
            format!(
                "{{\"text\": \"document number {i} says hello to the world\", \"lang\": {}}}\n",
                i % 2
            )
        })
        .chain([
            "{\"text\": \"a late document in another language\", \"lang\": \"fr\"}\n".to_owned(),
        ])
        .collect();
    p.write("drift.jsonl", records);
    let ingest = |sql: &str, name: &str| {
        let source = format!("path = \"drift.jsonl\"\nformat = \"jsonl\"\n{sql}");
        p.write(name, one_domain(&source, "on_error = \"skip\""));
        p.run(&["ingest", "-q", "--config", name]).expect_code(0);
        Manifest::read(&p.path("out/shards")).unwrap().domains[0]
            .stats
            .clone()
    };
    // Nothing reads `lang`: every record is a document.
    let unread = ingest("", "unread.toml");
    assert_eq!((unread.skipped_records, unread.records_read), (0, 1003));
    // The SQL reads it: the one record that does not decode is skipped and counted.
    let read = ingest(
        "sql = \"SELECT text FROM source WHERE lang >= 0\"",
        "read.toml",
    );
    assert_eq!((read.skipped_records, read.records_read), (1, 1002));
}

#[test]
fn parquet_source_with_sql_filter() {
    let p = Project::new();
    let schema = Arc::new(Schema::new(vec![
        Field::new("body", DataType::Utf8, false),
        Field::new("lang", DataType::Utf8, false),
        Field::new("id", DataType::Int64, false),
    ]));
    let bodies: Vec<String> = (0..30)
        .map(|i| format!("parquet document {i} with enough words in it"))
        .collect();
    let langs: Vec<&str> = (0..30)
        .map(|i| if i % 3 == 0 { "fr" } else { "en" })
        .collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(bodies)),
            Arc::new(StringArray::from(langs)),
            Arc::new(Int64Array::from_iter_values(0..30)),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(p.path("docs.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let source = "path = \"*.parquet\"\nformat = \"parquet\"\ntext_column = \"body\"\nsql = \"SELECT body FROM source WHERE lang = 'en'\"";
    p.write("case.toml", one_domain(source, ""));
    p.run(&["ingest", "--config", "case.toml"]).expect_code(0);
    let m = Manifest::read(&p.path("out/shards")).unwrap();
    assert_eq!(m.domains[0].stats.records_read, 20);
    assert_eq!(m.domains[0].stats.documents, 20);

    // A number column named as the text is refused, not turned into text.
    let source = "path = \"*.parquet\"\nformat = \"parquet\"\ntext_column = \"id\"";
    p.write("ids.toml", one_domain(source, ""));
    let out = p.run(&["ingest", "--config", "ids.toml", "--out", "ids"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("column \"id\" is Int64, not text"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_logs_for_batch_jobs() {
    let p = Project::with_default_config();
    let out = p
        .command(&["--log-format", "json", "ingest"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON log line");
    let parsed: serde_json::Value = serde_json::from_str(first).expect("valid JSON");
    assert!(parsed.get("level").is_some(), "{first}");
}

/// A tokenizer whose ids are not 0..n would index past the model's embedding: refused at load.
#[test]
fn a_tokenizer_with_ids_outside_its_vocabulary_is_refused() {
    let p = Project::new();
    p.write("a.jsonl", good_lines(20));
    let config = one_domain("path = \"a.jsonl\"\nformat = \"jsonl\"", "");
    p.write("trained.toml", &config);
    p.run(&["ingest", "-q", "--config", "trained.toml"])
        .expect_code(0);
    let text = std::fs::read_to_string(p.path("out/shards/tokenizer.json")).unwrap();
    let mut tokenizer: serde_json::Value = serde_json::from_str(&text).unwrap();
    tokenizer["model"]["vocab"]["a"] = 70000.into();
    p.write("sparse.json", tokenizer.to_string());
    let tokenizer_line = config.lines().nth(1).unwrap();
    p.write(
        "sparse.toml",
        config.replacen(tokenizer_line, "path = \"sparse.json\"", 1),
    );
    let out = p.run(&[
        "ingest",
        "-q",
        "--config",
        "sparse.toml",
        "--out",
        "sparse-out",
    ]);
    assert!(
        out.stderr
            .contains("sparse.json: token \"a\" has id 70000; mixlab needs the ids 0.."),
        "exit {}: {}",
        out.code,
        out.stderr
    );
    assert!(matches!(out.code, 1 | 2), "exit {}", out.code);
    assert!(!p.path("sparse-out/shards").exists());
}
