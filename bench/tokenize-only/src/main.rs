//! Tokenizer-only throughput: the `tokenizers` crate encoding the corpus text with nothing else.
//!
//! Loads every `text` field of the given JSON-lines files (gzip or plain) into memory first, then
//! times only the encoding, parallel over documents with rayon as `mixlab ingest` does. Prints one
//! JSON line. This is the ceiling of ingest throughput: reading, filtering, dedup and writing come
//! on top of it.
//!
//! ```sh
//! tokenize-only TOKENIZER.json FILE.jsonl.gz...
//! ```

use std::io::{BufRead, BufReader};
use std::time::Instant;

use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (tokenizer_path, files) = args
        .split_first()
        .ok_or("usage: tokenize-only TOKENIZER.json FILE.jsonl.gz...")?;
    let tokenizer = tokenizers::Tokenizer::from_file(tokenizer_path)?;
    let mut texts = Vec::new();
    for path in files {
        let file = std::fs::File::open(path)?;
        let reader: Box<dyn BufRead> = if path.ends_with(".gz") {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        for line in reader.lines() {
            let value: serde_json::Value = serde_json::from_str(&line?)?;
            if let Some(text) = value.get("text").and_then(|t| t.as_str()) {
                texts.push(text.trim().to_owned());
            }
        }
    }
    let bytes: usize = texts.iter().map(String::len).sum();
    let started = Instant::now();
    let tokens: usize = texts
        .par_iter()
        .map(|t| {
            tokenizer
                .encode_fast(t.as_str(), false)
                .map(|e| e.get_ids().len())
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "documents": texts.len(),
            "bytes": bytes,
            "tokens": tokens,
            "seconds": seconds,
            "mb_per_second": bytes as f64 / 1e6 / seconds,
            "tokens_per_second": tokens as f64 / seconds,
            "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}
