//! Ballista codecs that know mixlab's plan pieces: the line-source table and scan node, the
//! task tables and their sinks (stage and shard write), and the `mixlab_judge` UDF. Everything else goes to Ballista's own codecs, so one codec serves every
//! plan. Client, scheduler and executors must all use these (the `mixlab cluster` roles do).
//!
//! A mixlab piece is written as a tag followed by its JSON; anything without the tag is Ballista's.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use super::allowed::AllowedDirs;
use super::judge::{JUDGE_UDF, judge_udf};
use super::scan::{LineScan, LineScanExec, LineTable, as_line_scan};
use super::sink::{SinkTask, TaskSink, TaskTable, as_task_sink};

/// Starts a serialized line scan (table or node).
const LINE_SCAN_TAG: &[u8] = b"mixlab.line_scan.v1\n";

/// Starts a serialized sink task (table or sink node): a stage or a shard write.
const SINK_TAG: &[u8] = b"mixlab.sink.v2\n";

/// `tag` followed by `piece` as JSON.
fn encode_tagged(tag: &[u8], piece: &impl serde::Serialize, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(tag);
    serde_json::to_writer(buf, piece).map_err(|e| DataFusionError::External(Box::new(e)))
}

/// The piece after `tag` in `buf`, or `None` when `buf` does not start with `tag`.
fn decode_tagged<T: serde::de::DeserializeOwned>(
    tag: &[u8],
    what: &str,
    buf: &[u8],
) -> Result<Option<T>> {
    let Some(json) = buf.strip_prefix(tag) else {
        return Ok(None);
    };
    serde_json::from_slice(json).map(Some).map_err(|e| {
        DataFusionError::Internal(format!("a mixlab {what} that does not decode: {e}"))
    })
}

fn decode_scan(buf: &[u8]) -> Result<Option<LineScan>> {
    decode_tagged(LINE_SCAN_TAG, "line scan", buf)
}

fn decode_task(buf: &[u8]) -> Result<Option<SinkTask>> {
    decode_tagged(SINK_TAG, "sink task", buf)
}

fn decode_udf(name: &str) -> Option<Arc<ScalarUDF>> {
    (name == JUDGE_UDF).then(judge_udf)
}

/// Marks a UDF as ours in a plan, so decoders take it from the codec, not a registry.
fn encode_udf(node: &ScalarUDF, buf: &mut Vec<u8>) -> bool {
    let ours = node.name() == JUDGE_UDF;
    if ours {
        buf.extend_from_slice(JUDGE_UDF.as_bytes());
    }
    ours
}

/// Logical plans: [`LineTable`], [`TaskTable`] and `mixlab_judge`, else Ballista's codec.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        if let Some(scan) = decode_scan(buf)? {
            return Ok(Arc::new(LineTable { scan }));
        }
        if let Some(task) = decode_task(buf)? {
            return Ok(Arc::new(TaskTable { task }));
        }
        self.ballista
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let any = node.as_ref() as &dyn Any;
        if let Some(table) = any.downcast_ref::<LineTable>() {
            return encode_tagged(LINE_SCAN_TAG, &table.scan, buf);
        }
        if let Some(table) = any.downcast_ref::<TaskTable>() {
            return encode_tagged(SINK_TAG, &table.task, buf);
        }
        self.ballista
            .try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match decode_udf(name) {
            Some(udf) => Ok(udf),
            None => self.ballista.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_udf(node, buf) {
            return Ok(());
        }
        self.ballista.try_encode_udf(node, buf)
    }
}

/// Physical plans: [`LineScanExec`], [`DataSinkExec`] over a [`TaskSink`] and `mixlab_judge`,
/// else Ballista's codec.
///
/// An executor's codec has [`PhysicalCodec::within`] directories: a scan or sink that reads or
/// writes outside them fails when it starts, naming the path.
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
    allowed: Option<AllowedDirs>,
}

impl PhysicalCodec {
    /// A codec that accepts mixlab plan pieces only when their paths lie under `dirs`.
    pub fn within(dirs: AllowedDirs) -> Self {
        Self {
            ballista: BallistaPhysicalExtensionCodec::default(),
            allowed: Some(dirs),
        }
    }
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(scan) = decode_scan(buf)? {
            let exec = LineScanExec::new(scan)?;
            return Ok(Arc::new(match &self.allowed {
                Some(allowed) => exec.within(allowed.clone()),
                None => exec,
            }));
        }
        if let Some(task) = decode_task(buf)? {
            let [input] = inputs else {
                return Err(DataFusionError::Internal(format!(
                    "a mixlab sink with {} inputs, expected 1",
                    inputs.len()
                )));
            };
            let sink = TaskSink::new(task);
            let sink = match &self.allowed {
                Some(allowed) => sink.within(allowed.clone()),
                None => sink,
            };
            return Ok(Arc::new(DataSinkExec::new(
                Arc::clone(input),
                Arc::new(sink),
                None,
            )));
        }
        self.ballista.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(exec) = as_line_scan(node.as_ref()) {
            return encode_tagged(LINE_SCAN_TAG, &exec.scan, buf);
        }
        if let Some(sink) = as_task_sink(node.as_ref()) {
            return encode_tagged(SINK_TAG, &sink.task, buf);
        }
        self.ballista.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match decode_udf(name) {
            Some(udf) => Ok(udf),
            None => self.ballista.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_udf(node, buf) {
            return Ok(());
        }
        self.ballista.try_encode_udf(node, buf)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;

    use super::*;
    use crate::cluster::stage::{BandsFile, StageSpec};
    use crate::cluster::write::WriteSpec;
    use crate::config::{OnError, SourceFormat};
    use crate::lines::LineSpec;

    fn scan() -> LineScan {
        LineScan {
            lines: LineSpec {
                files: vec![
                    PathBuf::from("/data/a.jsonl.gz"),
                    PathBuf::from("/data/b.jsonl"),
                ],
                format: SourceFormat::Jsonl,
                schema: Schema::new(vec![
                    Field::new("text", DataType::Utf8, true),
                    Field::new("n", DataType::Int64, true),
                ]),
                required_text: Some("text".into()),
                batch_rows: 7,
                on_error: OnError::Skip,
            },
            counts: PathBuf::from("/out/shards.partial/.cluster/x-0/scan-1.json"),
            projection: Some(vec![1]),
        }
    }

    #[test]
    fn line_tables_scan_nodes_and_the_judge_udf_survive_both_codecs() {
        let ctx = SessionContext::new();
        let task = ctx.task_ctx();
        let logical = LogicalCodec::default();
        let table: Arc<dyn TableProvider> = Arc::new(LineTable { scan: scan() });
        let mut buf = Vec::new();
        let name = TableReference::bare("source");
        logical
            .try_encode_table_provider(&name, table, &mut buf)
            .unwrap();
        let schema = Arc::new(scan().lines.schema);
        let back = logical
            .try_decode_table_provider(&buf, &name, schema, &task)
            .unwrap();
        let back = (back.as_ref() as &dyn Any)
            .downcast_ref::<LineTable>()
            .unwrap();
        assert_eq!(back.scan, scan());

        let physical = PhysicalCodec::default();
        let converter = DefaultPhysicalProtoConverter {};
        let node: Arc<dyn ExecutionPlan> = Arc::new(LineScanExec::new(scan()).unwrap());
        let mut buf = Vec::new();
        physical.try_encode(node, &mut buf, &converter).unwrap();
        let back = physical.try_decode(&buf, &[], &task, &converter).unwrap();
        assert_eq!(as_line_scan(back.as_ref()).unwrap().scan, scan());
        assert_eq!(back.schema().fields().len(), 1, "the projection travels");

        let udf = judge_udf();
        let mut buf = Vec::new();
        physical.try_encode_udf(&udf, &mut buf).unwrap();
        assert!(
            !buf.is_empty(),
            "marked as ours, so decoders do not need a registry"
        );
        assert_eq!(
            physical.try_decode_udf(JUDGE_UDF, &buf).unwrap().name(),
            JUDGE_UDF
        );
        assert_eq!(
            logical.try_decode_udf(JUDGE_UDF, &buf).unwrap().name(),
            JUDGE_UDF
        );
    }

    fn tasks() -> [SinkTask; 2] {
        let work = PathBuf::from("/out/shards.partial/.cluster");
        let write = WriteSpec {
            domain: "prose".into(),
            label: "prose.jsonl".into(),
            shards_dir: PathBuf::from("/out/shards.partial"),
            first_part: 4,
            shard_rows: 100,
            candidates: work.join("candidates/part-00007.parquet"),
            dropped: work.join("dropped-7.bin"),
            receipt: work.join("written-7.json"),
            tokenizer: PathBuf::from("/out/shards.partial/tokenizer.json"),
            tokenizer_sha256: "ab".repeat(32),
            valid_fraction: 0.02,
            probe_fraction: 0.01,
        };
        let stage = StageSpec {
            part: 7,
            candidates: work.join("candidates/part-00007.parquet"),
            bands: Some(BandsFile {
                path: work.join("bands/part-00007.parquet"),
                bands: 16,
            }),
            receipt: work.join("staged-7.json"),
        };
        [SinkTask::Write(write), SinkTask::Stage(stage)]
    }

    #[test]
    fn task_tables_and_their_sinks_survive_both_codecs() {
        let ctx = SessionContext::new();
        let task_ctx = ctx.task_ctx();
        let logical = LogicalCodec::default();
        for task in tasks() {
            let table: Arc<dyn TableProvider> = Arc::new(TaskTable { task: task.clone() });
            let (name, mut buf) = (TableReference::bare("shards"), Vec::new());
            logical
                .try_encode_table_provider(&name, Arc::clone(&table), &mut buf)
                .unwrap();
            let back = logical
                .try_decode_table_provider(&buf, &name, table.schema(), &task_ctx)
                .unwrap();
            let back = (back.as_ref() as &dyn Any)
                .downcast_ref::<TaskTable>()
                .unwrap();
            assert_eq!(back.task, task);

            let input: Arc<dyn ExecutionPlan> = Arc::new(LineScanExec::new(scan()).unwrap());
            let sink: Arc<dyn ExecutionPlan> = Arc::new(DataSinkExec::new(
                Arc::clone(&input),
                Arc::new(TaskSink::new(task.clone())),
                None,
            ));
            let (physical, converter) =
                (PhysicalCodec::default(), DefaultPhysicalProtoConverter {});
            let mut buf = Vec::new();
            physical.try_encode(sink, &mut buf, &converter).unwrap();
            let back = physical
                .try_decode(&buf, &[input], &task_ctx, &converter)
                .unwrap();
            assert_eq!(as_task_sink(back.as_ref()).unwrap().task, task);
            assert_eq!(back.children().len(), 1, "the input travels beside it");
            let err = physical
                .try_decode(&buf, &[], &task_ctx, &converter)
                .unwrap_err();
            assert!(err.to_string().contains("0 inputs, expected 1"), "{err}");
        }
    }

    #[test]
    fn an_executor_refuses_a_scan_outside_its_directories() {
        let dir = tempfile::tempdir().unwrap();
        let physical = PhysicalCodec::within(AllowedDirs::new(&[dir.path().to_owned()]).unwrap());
        let converter = DefaultPhysicalProtoConverter {};
        let task = SessionContext::new().task_ctx();
        let encode = |scan: LineScan| {
            let mut buf = Vec::new();
            let node: Arc<dyn ExecutionPlan> = Arc::new(LineScanExec::new(scan).unwrap());
            PhysicalCodec::default()
                .try_encode(node, &mut buf, &converter)
                .unwrap();
            buf
        };
        let mut inside = scan();
        inside.lines.files = vec![dir.path().join("a.jsonl")];
        inside.counts = dir.path().join(".cluster/x-0/scan-0.json");
        let run = |buf: &[u8]| {
            let node = physical.try_decode(buf, &[], &task, &converter).unwrap();
            node.execute(0, Arc::clone(&task)).map(|_| ())
        };
        std::fs::write(
            &inside.lines.files[0],
            "{\"text\": \"x\", \"n\": 1}
",
        )
        .unwrap();
        assert!(run(&encode(inside.clone())).is_ok());
        for (files, counts) in [
            (vec![PathBuf::from("/etc/passwd")], inside.counts.clone()),
            (
                inside.lines.files.clone(),
                dir.path().join("../escape.json"),
            ),
        ] {
            let mut outside = inside.clone();
            (outside.lines.files, outside.counts) = (files, counts);
            let err = run(&encode(outside)).unwrap_err().to_string();
            assert!(err.contains("outside the directories"), "{err}");
        }
    }

    #[test]
    fn what_is_not_ours_goes_to_ballistas_codec() {
        let ctx = SessionContext::new();
        let physical = PhysicalCodec::default();
        let converter = DefaultPhysicalProtoConverter {};
        let err = physical
            .try_decode(b"not a plan", &[], &ctx.task_ctx(), &converter)
            .unwrap_err();
        assert!(!err.to_string().contains("mixlab"), "{err}");
        assert!(decode_udf("upper").is_none());
        assert!(decode_task(b"mixlab.line_scan.v1\n{}").unwrap().is_none());
        let mut truncated = LINE_SCAN_TAG.to_vec();
        truncated.extend_from_slice(b"{\"lines\":");
        let err = decode_scan(&truncated).unwrap_err().to_string();
        assert!(err.contains("mixlab line scan"), "{err}");
    }
}
