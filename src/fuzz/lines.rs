//! Fuzz target `lines`: the JSON-lines and CSV readers (schema inference, per-line decoding,
//! gzip), under both error policies.

use std::io::Write;
use std::path::Path;

use mixlab_ingest::config::{OnError, SourceFormat};
use mixlab_ingest::lines::LineSource;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use super::{corpus, fuzz};

/// Cells and JSON values that have broken line readers: wrong types, escapes, separators inside
/// values, lone surrogates, numbers beyond i64 and f64.
const PIECES: &[&str] = &[
    "\"text\"",
    "\"ok text\"",
    "1",
    "-1",
    "1.5",
    "1e400",
    "18446744073709551616",
    "true",
    "null",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{\"text\": 1}",
    "\"\\ud800\"",
    "\"a\\nb\"",
    "\"a,b\"",
    "\"\"",
    ",",
    "\"",
    "\r",
    "\u{feff}",
    "\u{0}",
    "é",
    "{",
    "}",
    ":",
];

/// One line of a source file.
#[derive(Debug, Clone)]
enum Line {
    /// A JSON object (or a CSV row) built from keys and [`PIECES`].
    Record(Vec<(usize, usize)>),
    /// Arbitrary bytes.
    Raw(Vec<u8>),
    /// Nothing.
    Blank,
}

/// A source file: its format, lines, line ending, and whether (and where) it is gzipped and cut.
#[derive(Debug, Clone)]
struct SourceFile {
    csv: bool,
    lines: Vec<Line>,
    crlf: bool,
    gzip: Option<Option<usize>>,
}

const KEYS: &[&str] = &["text", "n", "meta", "Text", ""];

fn source_file() -> impl Strategy<Value = SourceFile> {
    let line = prop_oneof![
        6 => vec((0..KEYS.len(), 0..PIECES.len()), 0..4).prop_map(Line::Record),
        2 => vec(any::<u8>(), 0..24).prop_map(Line::Raw),
        1 => Just(Line::Blank),
    ];
    let gzip = proptest::option::weighted(0.2, proptest::option::of(any::<usize>()));
    (any::<bool>(), vec(line, 0..12), any::<bool>(), gzip).prop_map(|(csv, lines, crlf, gzip)| {
        SourceFile {
            csv,
            lines,
            crlf,
            gzip,
        }
    })
}

impl SourceFile {
    /// The file's bytes: a CSV file starts with a `text,n` header.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.csv {
            out.extend_from_slice(b"text,n\n");
        }
        for line in &self.lines {
            match line {
                Line::Record(fields) if self.csv => {
                    let cells: Vec<&str> = fields.iter().map(|&(_, v)| PIECES[v]).collect();
                    out.extend_from_slice(cells.join(",").as_bytes());
                }
                Line::Record(fields) => {
                    let pairs: Vec<String> = fields
                        .iter()
                        .map(|&(k, v)| format!("\"{}\": {}", KEYS[k], PIECES[v]))
                        .collect();
                    out.extend_from_slice(format!("{{{}}}", pairs.join(", ")).as_bytes());
                }
                Line::Raw(bytes) => out.extend_from_slice(bytes),
                Line::Blank => {}
            }
            out.extend_from_slice(if self.crlf { b"\r\n" } else { b"\n" });
        }
        match self.gzip {
            None => out,
            Some(cut) => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&out).unwrap();
                let mut gz = gz.finish().unwrap();
                if let Some(at) = cut {
                    gz.truncate(at % (gz.len() + 1));
                }
                gz
            }
        }
    }

    fn name(&self) -> String {
        let ext = if self.csv { "csv" } else { "jsonl" };
        let gz = if self.gzip.is_some() { ".gz" } else { "" };
        format!("input.{ext}{gz}")
    }
}

/// Reading never panics; errors name the file; with `skip`, records read plus records skipped
/// never exceed the lines of the file.
fn read_is_total(path: &Path, format: SourceFormat) -> TestCaseResult {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    for on_error in [OnError::Fail, OnError::Skip] {
        let source = match LineSource::open(
            vec![path.to_owned()],
            format,
            Some("text".into()),
            3,
            on_error,
        ) {
            Ok(source) => source,
            Err(e) => {
                prop_assert!(e.to_string().contains(&name), "{}", e);
                continue;
            }
        };
        let mut rows = 0;
        for batch in source.batches() {
            match batch {
                Ok(batch) => rows += batch.num_rows(),
                Err(e) => {
                    prop_assert!(e.to_string().contains(&name), "{}", e);
                    break;
                }
            }
        }
        let skipped = source
            .counters()
            .skipped
            .load(std::sync::atomic::Ordering::Relaxed);
        let lines = std::fs::read(path).unwrap().len() as u64 + 1;
        prop_assert!(
            rows as u64 + skipped <= lines,
            "{} rows + {} skipped",
            rows,
            skipped
        );
    }
    Ok(())
}

fn format_of(path: &Path) -> SourceFormat {
    if path.to_string_lossy().contains(".csv") {
        SourceFormat::Csv
    } else {
        SourceFormat::Jsonl
    }
}

#[test]
fn fuzz_lines() {
    fuzz("lines", source_file(), |file| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file.name());
        std::fs::write(&path, file.bytes()).unwrap();
        read_is_total(&path, format_of(&path))
    });
}

#[test]
fn lines_corpus_replays() {
    for path in corpus("lines") {
        read_is_total(&path, format_of(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
