//! `mixlab_judge(text, spec)`: the per-record work of ingest as a DataFusion scalar UDF, so that
//! it runs on Ballista's executors. `spec` is a JSON literal ([`JudgeSpec`]): the domain's filters,
//! the dedup settings, the source label and the tokenizer (by path and SHA-256).
//!
//! Each row becomes a struct: the verdict's kind, the raw length, the rule that dropped it, or its
//! dedup hashes, document id and tokens. [`verdicts`] turns such a column back into
//! [`Verdict`]s on the client, which deduplicates them in record order as the local engine does.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, ListBuilder, StringArray, StringBuilder,
    StructArray, UInt8Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Fields, UInt8Type, UInt64Type};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::allowed::AllowedDirs;
use crate::checksum::sha256_file;
use crate::config::{FilterConfig, MinHashConfig};
use crate::dedup::MinHasher;
use crate::error::{Error, Result};
use crate::filter::QualityFilter;
use crate::record::{Body, Candidate, Judge, Verdict, doc_id};
use crate::tokenize::TextTokenizer;

/// The UDF's name (it travels by name in plans; the codecs resolve it).
pub const JUDGE_UDF: &str = "mixlab_judge";

/// What `mixlab_judge` needs besides the text: everything is data, so it travels in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeSpec {
    /// The source's label (part of each document id).
    pub label: String,
    /// Minimum length in characters.
    pub min_chars: usize,
    /// Maximum length in characters.
    pub max_chars: usize,
    /// The domain's Gopher rules.
    pub rules: FilterConfig,
    /// Whether exact dedup is on.
    pub exact: bool,
    /// Near-dedup settings when it is on.
    pub minhash: Option<MinHashConfig>,
    /// The run's tokenizer file, readable from every executor.
    pub tokenizer: PathBuf,
    /// Its SHA-256: an executor refuses a file that changed since the client planned the job.
    pub tokenizer_sha256: String,
}

/// The struct `mixlab_judge` returns per row.
fn output_fields() -> Fields {
    let list = || DataType::List(list_field());
    Fields::from(vec![
        Field::new("kind", DataType::UInt8, false),
        Field::new("raw_len", DataType::UInt64, false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("hash", DataType::FixedSizeBinary(16), true),
        Field::new("signature", list(), true),
        Field::new("doc_id", DataType::UInt64, true),
        Field::new("tokens", list(), true),
    ])
}

const KIND_NULL: u8 = 0;
const KIND_FILTERED: u8 = 1;
const KIND_CANDIDATE: u8 = 2;

/// The UDF. Stateless: prepared filters and tokenizers are cached per spec in the process.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JudgeUdf {
    signature: Signature,
    /// On an executor: the directories its tokenizer must lie in.
    allowed: Option<AllowedDirs>,
}

/// `mixlab_judge` as a function to put in a plan or register.
pub fn judge_udf() -> Arc<ScalarUDF> {
    udf(None)
}

/// `mixlab_judge` on an executor: it refuses a tokenizer outside `allowed`.
pub fn judge_udf_within(allowed: AllowedDirs) -> Arc<ScalarUDF> {
    udf(Some(allowed))
}

fn udf(allowed: Option<AllowedDirs>) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(JudgeUdf {
        signature: Signature::any(2, Volatility::Immutable),
        allowed,
    }))
}

impl ScalarUDFImpl for JudgeUdf {
    fn name(&self) -> &str {
        JUDGE_UDF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Struct(output_fields()))
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let [text, spec] = args.args.as_slice() else {
            return Err(DataFusionError::Plan(format!(
                "{JUDGE_UDF} takes (text, spec), got {} arguments",
                args.args.len()
            )));
        };
        let ColumnarValue::Scalar(ScalarValue::Utf8(Some(spec))) = spec else {
            return Err(DataFusionError::Plan(format!(
                "{JUDGE_UDF}: the spec must be a text literal"
            )));
        };
        let prepared = prepared(spec, self.allowed.as_ref())?;
        let texts = text.to_array(args.number_rows)?;
        let texts = arrow::compute::cast(&texts, &DataType::Utf8)?;
        let out = prepared
            .judge(texts.as_string::<i32>())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// A spec's filters, hasher and tokenizer, built once per process.
struct Prepared {
    spec: JudgeSpec,
    filter: QualityFilter,
    hasher: Option<MinHasher>,
    tokenizer: TextTokenizer,
}

/// Specs seen by this process, with the directories they were checked against; a handful per
/// job, so the cache is cleared rather than evicted.
type PreparedCache = HashMap<(Option<AllowedDirs>, String), Arc<Prepared>>;
static PREPARED: LazyLock<Mutex<PreparedCache>> = LazyLock::new(Mutex::default);
const PREPARED_CAPACITY: usize = 64;

/// The spec's prepared judge: parsed, checked and loaded once per process, then looked up per batch.
fn prepared(
    spec_json: &str,
    allowed: Option<&AllowedDirs>,
) -> datafusion::error::Result<Arc<Prepared>> {
    let key = (allowed.cloned(), spec_json.to_owned());
    let mut cache = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(&key) {
        return Ok(Arc::clone(p));
    }
    let spec: JudgeSpec = serde_json::from_str(spec_json)
        .map_err(|e| DataFusionError::Plan(format!("{JUDGE_UDF}: bad spec: {e}")))?;
    if let Some(allowed) = allowed {
        allowed.check(&spec.tokenizer)?;
    }
    let prepared = prepare(spec).map_err(|e| DataFusionError::External(Box::new(e)))?;
    if cache.len() >= PREPARED_CAPACITY {
        cache.clear();
    }
    cache.insert(key, Arc::clone(&prepared));
    Ok(prepared)
}

/// Verifies the spec's tokenizer and builds its filters, hasher and tokenizer.
fn prepare(spec: JudgeSpec) -> Result<Arc<Prepared>> {
    let actual = sha256_file(&spec.tokenizer)?;
    if actual != spec.tokenizer_sha256 {
        return Err(Error::Tokenizer {
            path: spec.tokenizer.clone(),
            message: format!(
                "sha256 {actual} on this executor, expected {} (the file changed, or executors do not share the client's file system)",
                spec.tokenizer_sha256
            ),
        });
    }
    Ok(Arc::new(Prepared {
        filter: QualityFilter {
            min_chars: spec.min_chars,
            max_chars: spec.max_chars,
            rules: spec.rules.clone(),
        },
        hasher: spec.minhash.as_ref().map(MinHasher::new),
        tokenizer: TextTokenizer::load(&spec.tokenizer)?,
        spec,
    }))
}

impl Prepared {
    /// Judges and tokenizes every row of `texts` (in parallel), in row order.
    fn judge(&self, texts: &StringArray) -> Result<StructArray> {
        let judge = Judge {
            filter: &self.filter,
            exact: self.spec.exact,
            hasher: self.hasher.as_ref(),
        };
        let verdicts: Vec<(usize, Verdict)> = (0..texts.len())
            .into_par_iter()
            .map(|i| self.encode(judge.verdict(texts, i)))
            .collect::<Result<_>>()?;
        Ok(to_struct(&verdicts))
    }

    /// A candidate's text replaced by its document id and tokens.
    fn encode(&self, (raw_len, verdict): (usize, Verdict)) -> Result<(usize, Verdict)> {
        let Verdict::Candidate(Candidate {
            hash,
            signature,
            body: Body::Text(text),
        }) = verdict
        else {
            return Ok((raw_len, verdict));
        };
        let body = Body::Encoded {
            doc_id: doc_id(&self.spec.label, &text),
            tokens: self.tokenizer.encode(&text)?,
        };
        let candidate = Candidate {
            hash,
            signature,
            body,
        };
        Ok((raw_len, Verdict::Candidate(candidate)))
    }
}

/// Builds the UDF's output column from verdicts (candidates already encoded).
fn to_struct(verdicts: &[(usize, Verdict)]) -> StructArray {
    let n = verdicts.len();
    let mut kind = UInt8Builder::with_capacity(n);
    let mut raw_len = UInt64Builder::with_capacity(n);
    let mut reason = StringBuilder::new();
    let mut hash = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let list = || ListBuilder::new(UInt32Builder::new()).with_field(list_field());
    let (mut signature, mut tokens) = (list(), list());
    let mut doc = UInt64Builder::with_capacity(n);
    for (len, verdict) in verdicts {
        raw_len.append_value(*len as u64);
        let (code, rule, candidate) = match verdict {
            Verdict::Null => (KIND_NULL, None, None),
            Verdict::Filtered(rule) => (KIND_FILTERED, Some(rule.as_ref()), None),
            Verdict::Candidate(c) => (KIND_CANDIDATE, None, Some(c)),
        };
        kind.append_value(code);
        reason.append_option(rule);
        match candidate.and_then(|c| c.hash) {
            Some(h) => hash.append_value(h.to_le_bytes()).expect("16 bytes"),
            None => hash.append_null(),
        }
        signature.append_option(
            candidate
                .and_then(|c| c.signature.as_ref())
                .map(|s| s.iter().map(|&v| Some(v))),
        );
        let encoded = candidate.and_then(|c| match &c.body {
            Body::Encoded { doc_id, tokens } => Some((*doc_id, tokens)),
            Body::Text(_) => None,
        });
        doc.append_option(encoded.map(|(id, _)| id));
        tokens.append_option(encoded.map(|(_, t)| t.iter().map(|&v| Some(v))));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(kind.finish()),
        Arc::new(raw_len.finish()),
        Arc::new(reason.finish()),
        Arc::new(hash.finish()),
        Arc::new(signature.finish()),
        Arc::new(doc.finish()),
        Arc::new(tokens.finish()),
    ];
    StructArray::new(output_fields(), columns, None)
}

fn list_field() -> Arc<Field> {
    Arc::new(Field::new_list_field(DataType::UInt32, false))
}

/// The verdicts in a `mixlab_judge` output column, in row order.
///
/// # Errors
/// [`Error::Internal`] when the column is not what the UDF returns.
pub fn verdicts(column: &dyn Array) -> Result<Vec<(usize, Verdict)>> {
    let bad = || Error::Internal(format!("a {JUDGE_UDF} result of another shape"));
    let s = column.as_struct_opt().ok_or_else(bad)?;
    let field = |name: &str| s.column_by_name(name).ok_or_else(bad);
    let kind = field("kind")?
        .as_primitive_opt::<UInt8Type>()
        .ok_or_else(bad)?;
    let raw_len = field("raw_len")?
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(bad)?;
    let reason = field("reason")?.as_string_opt::<i32>().ok_or_else(bad)?;
    let hash = field("hash")?.as_fixed_size_binary_opt().ok_or_else(bad)?;
    let signature = field("signature")?.as_list_opt::<i32>().ok_or_else(bad)?;
    let doc = field("doc_id")?
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(bad)?;
    let tokens = field("tokens")?.as_list_opt::<i32>().ok_or_else(bad)?;
    let u32s = |list: &arrow::array::ListArray, i: usize| -> Result<Vec<u32>> {
        let values = list.value(i);
        let values = values
            .as_primitive_opt::<arrow::datatypes::UInt32Type>()
            .ok_or_else(bad)?;
        Ok(values.values().to_vec())
    };
    (0..s.len())
        .map(|i| {
            let verdict = match kind.value(i) {
                KIND_NULL => Verdict::Null,
                KIND_FILTERED => Verdict::Filtered(Cow::Owned(reason.value(i).to_owned())),
                KIND_CANDIDATE => Verdict::Candidate(Candidate {
                    hash: (!hash.is_null(i))
                        .then(|| u128::from_le_bytes(hash.value(i).try_into().expect("16 bytes"))),
                    signature: if signature.is_null(i) {
                        None
                    } else {
                        Some(u32s(signature, i)?)
                    },
                    body: Body::Encoded {
                        doc_id: doc.value(i),
                        tokens: u32s(tokens, i)?,
                    },
                }),
                _ => return Err(bad()),
            };
            Ok((raw_len.value(i) as usize, verdict))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use arrow::array::RecordBatch;
    use arrow::datatypes::Schema;
    use datafusion::catalog::MemTable;
    use datafusion::logical_expr::lit;
    use datafusion::prelude::{SessionContext, ident};

    use super::*;
    use crate::config::IngestConfig;
    use crate::tokenize::train_byte_level_bpe;

    const PROSE: &str =
        "The miller said that he would have to mend the wheel before the river rose again.";

    fn texts() -> Vec<Option<String>> {
        vec![
            Some(format!("  {PROSE}\r\n")),
            None,
            Some("tiny".to_owned()),
            Some(PROSE.to_uppercase()),
            Some("1234 5678 9012 3456 7890 1234 5678 9012 3456 7890".to_owned()),
            Some(format!("{PROSE} And the wheel turned.")),
        ]
    }

    fn spec(dir: &Path) -> JudgeSpec {
        let tokenizer = dir.join("tokenizer.json");
        let sample: Vec<String> = texts().into_iter().flatten().collect();
        train_byte_level_bpe(&sample, 300, &tokenizer).unwrap();
        let ingest = IngestConfig::default();
        JudgeSpec {
            label: "prose.jsonl".into(),
            min_chars: 10,
            max_chars: 1000,
            rules: ingest.filters,
            exact: true,
            minhash: ingest.dedup.minhash,
            tokenizer_sha256: sha256_file(&tokenizer).unwrap(),
            tokenizer,
        }
    }

    /// What the local engine's judge says, with candidates tokenized as the UDF does.
    fn judged_locally(spec: &JudgeSpec, texts: &StringArray) -> Vec<(usize, Verdict)> {
        let filter = QualityFilter {
            min_chars: spec.min_chars,
            max_chars: spec.max_chars,
            rules: spec.rules.clone(),
        };
        let hasher = spec.minhash.as_ref().map(MinHasher::new);
        let judge = Judge {
            filter: &filter,
            exact: spec.exact,
            hasher: hasher.as_ref(),
        };
        let tokenizer = TextTokenizer::load(&spec.tokenizer).unwrap();
        (0..texts.len())
            .map(|i| match judge.verdict(texts, i) {
                (n, Verdict::Candidate(mut c)) => {
                    let Body::Text(text) = &c.body else { panic!() };
                    c.body = Body::Encoded {
                        doc_id: doc_id(&spec.label, text),
                        tokens: tokenizer.encode(text).unwrap(),
                    };
                    (n, Verdict::Candidate(c))
                }
                other => other,
            })
            .collect()
    }

    #[test]
    fn the_udf_in_a_query_judges_every_record_as_the_local_engine_does() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path());
        let texts = StringArray::from(texts());
        let schema = Arc::new(Schema::new(vec![Field::new("body", DataType::Utf8, true)]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(texts.clone())]).unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let call = judge_udf().call(vec![
            ident("body"),
            lit(serde_json::to_string(&spec).unwrap()),
        ]);
        let batches = runtime
            .block_on(async { ctx.table("t").await?.select(vec![call])?.collect().await })
            .unwrap();
        let remote: Vec<_> = batches
            .iter()
            .flat_map(|b| verdicts(b.column(0).as_ref()).unwrap())
            .collect();
        let local = judged_locally(&spec, &texts);
        assert_eq!(remote, local);
        // The records cover every kind of verdict, so the comparison means something.
        assert!(matches!(remote[1], (0, Verdict::Null)));
        assert_eq!(remote[2].1, Verdict::Filtered("too_short".into()));
        let candidates = remote
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Candidate(_)));
        assert!(candidates.count() >= 3, "{remote:?}");
    }

    #[test]
    fn an_executor_refuses_a_tokenizer_that_changed_or_lies_outside_its_directories() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path());
        spec.tokenizer_sha256 = "0".repeat(64);
        let json = serde_json::to_string(&spec).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let allowed = AllowedDirs::new(&[elsewhere.path().to_owned()]).unwrap();
        let outside = prepared(&json, Some(&allowed)).err().unwrap().to_string();
        assert!(outside.contains("outside the directories"), "{outside}");
        let err = prepared(&json, None).err().unwrap().to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("sha256"),
            "{err}"
        );
    }
}
