//! `mixlab_judge(text, spec)`: the per-record work of ingest as a DataFusion scalar UDF, so that
//! it runs on Ballista's executors. `spec` is a JSON literal ([`JudgeSpec`]): the domain's filters,
//! the dedup settings and the source label. The UDF reads no file, so it needs no path check.
//!
//! Each row becomes a struct: the verdict's kind, the raw length, the rule that dropped it, or its
//! dedup hashes and document id. [`verdicts`] turns such a column back into [`Verdict`]s on the
//! client, which deduplicates them in record order as the local engine does; the survivors are
//! tokenized and written by a second job on the executors ([`super::write`]).

use std::borrow::Cow;
use std::sync::Arc;

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

use super::shared::Memo;
use crate::config::MinHashConfig;
use crate::dedup::MinHasher;
use crate::error::{Error, Result};
use crate::filter::QualityFilter;
use crate::record::{Body, Candidate, Judge, Verdict, doc_id};

/// The UDF's name (it travels by name in plans; the codecs resolve it).
pub const JUDGE_UDF: &str = "mixlab_judge";

/// What `mixlab_judge` needs besides the text: everything is data, so it travels in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeSpec {
    /// The source's label (part of each document id).
    pub label: String,
    /// The domain's length limits and Gopher rules.
    pub filter: QualityFilter,
    /// Whether exact dedup is on.
    pub exact: bool,
    /// Near-dedup settings when it is on.
    pub minhash: Option<MinHashConfig>,
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
    ])
}

/// A column of `mixlab_judge`'s output named `name`.
pub(super) fn judged_field(name: &str) -> Field {
    Field::new(name, DataType::Struct(output_fields()), true)
}

const KIND_NULL: u8 = 0;
const KIND_FILTERED: u8 = 1;
const KIND_CANDIDATE: u8 = 2;

/// The UDF. Stateless: each spec, parsed with its MinHash hasher, is cached in the process.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JudgeUdf {
    signature: Signature,
}

/// `mixlab_judge` as a function to put in a plan or register.
pub fn judge_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(JudgeUdf {
        signature: Signature::any(2, Volatility::Immutable),
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
        let prepared = prepared(spec)?;
        let texts = text.to_array(args.number_rows)?;
        let texts = arrow::compute::cast(&texts, &DataType::Utf8)?;
        let out = prepared.judge(texts.as_string::<i32>());
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// A spec and its hasher, built once per process.
struct Prepared {
    spec: JudgeSpec,
    hasher: Option<MinHasher>,
}

/// Specs seen by this process, by their JSON.
static PREPARED: Memo<String, Prepared> = Memo::new(64);

/// The spec's prepared judge: parsed once per process, then looked up per batch.
fn prepared(spec_json: &str) -> datafusion::error::Result<Arc<Prepared>> {
    PREPARED.get_or_try_insert(spec_json, || {
        let spec: JudgeSpec = serde_json::from_str(spec_json)
            .map_err(|e| DataFusionError::Plan(format!("{JUDGE_UDF}: bad spec: {e}")))?;
        Ok(Prepared {
            hasher: spec.minhash.as_ref().map(MinHasher::new),
            spec,
        })
    })
}

impl Prepared {
    /// Judges every row of `texts` (in parallel), in row order.
    fn judge(&self, texts: &StringArray) -> StructArray {
        let judge = Judge {
            filter: &self.spec.filter,
            exact: self.spec.exact,
            hasher: self.hasher.as_ref(),
        };
        let verdicts: Vec<(usize, Verdict)> = (0..texts.len())
            .into_par_iter()
            .map(|i| self.identify(judge.verdict(texts, i)))
            .collect();
        to_struct(&verdicts)
    }

    /// A candidate's text replaced by its document id: the text stays on the executor.
    fn identify(&self, (raw_len, verdict): (usize, Verdict)) -> (usize, Verdict) {
        let Verdict::Candidate(Candidate {
            hash,
            signature,
            body: Body::Text(text),
        }) = verdict
        else {
            return (raw_len, verdict);
        };
        let body = Body::Remote {
            doc_id: doc_id(&self.spec.label, &text),
        };
        let candidate = Candidate {
            hash,
            signature,
            body,
        };
        (raw_len, Verdict::Candidate(candidate))
    }
}

/// Builds the UDF's output column from verdicts (candidates already identified).
fn to_struct(verdicts: &[(usize, Verdict)]) -> StructArray {
    let n = verdicts.len();
    let mut kind = UInt8Builder::with_capacity(n);
    let mut raw_len = UInt64Builder::with_capacity(n);
    let mut reason = StringBuilder::new();
    let mut hash = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut signature = ListBuilder::new(UInt32Builder::new()).with_field(list_field());
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
        doc.append_option(candidate.and_then(|c| match &c.body {
            Body::Remote { doc_id } => Some(*doc_id),
            Body::Text(_) => None,
        }));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(kind.finish()),
        Arc::new(raw_len.finish()),
        Arc::new(reason.finish()),
        Arc::new(hash.finish()),
        Arc::new(signature.finish()),
        Arc::new(doc.finish()),
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
                    body: Body::Remote {
                        doc_id: doc.value(i),
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
    use arrow::array::RecordBatch;
    use arrow::datatypes::Schema;
    use datafusion::catalog::MemTable;
    use datafusion::logical_expr::lit;
    use datafusion::prelude::{SessionContext, ident};

    use super::*;
    use crate::config::IngestConfig;

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

    fn spec() -> JudgeSpec {
        let ingest = IngestConfig::default();
        JudgeSpec {
            label: "prose.jsonl".into(),
            filter: QualityFilter {
                min_chars: 10,
                max_chars: 1000,
                rules: ingest.filters,
            },
            exact: true,
            minhash: ingest.dedup.minhash,
        }
    }

    /// What the local engine's judge says, with candidates identified as the UDF does.
    fn judged_locally(spec: &JudgeSpec, texts: &StringArray) -> Vec<(usize, Verdict)> {
        let hasher = spec.minhash.as_ref().map(MinHasher::new);
        let judge = Judge {
            filter: &spec.filter,
            exact: spec.exact,
            hasher: hasher.as_ref(),
        };
        (0..texts.len())
            .map(|i| match judge.verdict(texts, i) {
                (n, Verdict::Candidate(mut c)) => {
                    let Body::Text(text) = &c.body else { panic!() };
                    c.body = Body::Remote {
                        doc_id: doc_id(&spec.label, text),
                    };
                    (n, Verdict::Candidate(c))
                }
                other => other,
            })
            .collect()
    }

    #[test]
    fn the_udf_in_a_query_judges_every_record_as_the_local_engine_does() {
        let spec = spec();
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
}
