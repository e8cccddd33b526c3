//! Probe texts outside the shards (HumanEval, math problems): JSONL files tokenized with the
//! shards' tokenizer, read by `simulate` (targets) and `eval --texts`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use mixlab_ingest::tokenize::TextTokenizer;

/// The `text` field of every line of a JSONL file (`.gz` decompressed), tokenized; blank lines
/// skipped. A configuration error (exit 2) names the file and line of anything else.
pub fn read_texts(
    path: &Path,
    tokenizer: &TextTokenizer,
) -> mixlab_simulator::Result<Vec<Vec<u32>>> {
    let fail =
        |what: String| mixlab_simulator::Error::Config(format!("{}: {what}", path.display()));
    let file = fs_err::File::open(path).map_err(|e| fail(e.to_string()))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut docs = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| fail(format!("line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| fail(format!("line {}: not JSON: {e}", i + 1)))?;
        let text = record["text"]
            .as_str()
            .ok_or_else(|| fail(format!("line {}: expected a string field \"text\"", i + 1)))?;
        docs.push(
            tokenizer
                .encode(text)
                .map_err(|e| fail(format!("line {}: {e}", i + 1)))?,
        );
    }
    Ok(docs)
}
