//! The Ballista engine's half of the pipeline: judge jobs feed dedup here in record order, the
//! rows that survive are listed per part of a source, and write jobs on the executors tokenize
//! and write them; their receipts complete the domains' manifests.
//!
//! A domain's shard files are numbered across its parts in order, each part starting a new file,
//! so a domain read from one part (a single file, or a source whose SQL needs all its rows) gets
//! the local engine's files byte for byte, and one read from several parts the same documents in
//! the same order, in files cut where parts end as well as every `shard_rows` documents.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::cluster::client::{Cluster, JudgedBatch, Plan, ShardWrite, SourceRequest};
use crate::cluster::judge::JudgeSpec;
use crate::cluster::write::{Kept, WriteSpec, write_kept};
use crate::config::DomainConfig;
use crate::engine::{EngineSession, work_dir};
use crate::error::{Error, Result};
use crate::manifest::{DomainManifest, TOKENIZER_FILE};
use crate::record::Body;

use super::{BatchSink, DomainStage, DomainTally, IngestRequest, Progress};
use super::{quality_filter, read_options};

/// The cluster's jobs and what dedup kept of them.
pub(super) struct Remote {
    /// Every source's parts; taken while a source is judged.
    plan: Option<Plan>,
    /// The staging directory, absolute (executors resolve nothing against ours).
    shards_dir: PathBuf,
    /// Where kept lists, receipts and scan counters go, absolute.
    work_dir: PathBuf,
    tokenizer: PathBuf,
    tokenizer_sha256: String,
    /// The current domain's kept rows per part, with the part's source label.
    kept: BTreeMap<usize, (String, Vec<Kept>)>,
    /// Write jobs started, per domain in order.
    writes: Vec<Vec<ShardWrite>>,
}

impl Remote {
    /// Plans every source's parts (for the Ballista engine; `None` for the local one).
    pub(super) fn plan(
        req: &IngestRequest<'_>,
        engine: &EngineSession,
        sources: &[Vec<Vec<PathBuf>>],
        staging: &Path,
        tokenizer_sha256: &str,
    ) -> Result<Option<Self>> {
        let EngineSession::Ballista(cluster) = engine else {
            return Ok(None);
        };
        let absolute = |p: &Path| std::path::absolute(p).map_err(|e| Error::io(p, e));
        let work = absolute(&work_dir(staging))?;
        let mut owned = Vec::new();
        for (domain, files) in req.domains.iter().zip(sources) {
            for (index, (source, files)) in domain.source.iter().zip(files).enumerate() {
                let counts_dir = work.join(format!("{}-{index}", domain.name));
                fs_err::create_dir_all(&counts_dir)?;
                let files = files
                    .iter()
                    .map(|f| absolute(f))
                    .collect::<Result<Vec<_>>>()?;
                let spec = JudgeSpec {
                    label: source.label(),
                    filter: quality_filter(req.ingest, domain),
                    exact: req.ingest.dedup.exact,
                    minhash: req.ingest.dedup.minhash.clone(),
                };
                owned.push((source, files, spec, counts_dir));
            }
        }
        let requests: Vec<SourceRequest<'_>> = owned
            .iter()
            .map(|(source, files, spec, counts_dir)| SourceRequest {
                source,
                files,
                options: read_options(req.ingest),
                spec,
                work_dir: counts_dir,
            })
            .collect();
        Ok(Some(Self {
            plan: Some(cluster.plan(&requests)?),
            shards_dir: absolute(staging)?,
            tokenizer: absolute(&staging.join(TOKENIZER_FILE))?,
            tokenizer_sha256: tokenizer_sha256.to_owned(),
            work_dir: work,
            kept: BTreeMap::new(),
            writes: Vec::new(),
        }))
    }

    fn get(remote: &mut Option<Self>) -> Result<&mut Self> {
        remote
            .as_mut()
            .ok_or_else(|| Error::Internal("a Ballista ingest without a plan".into()))
    }
}

impl DomainStage<'_> {
    /// Judges the next planned source on the cluster and dedups its records in record order,
    /// listing the survivors for the write jobs.
    pub(super) fn read_remote(
        &mut self,
        cluster: &Cluster,
        sink: &BatchSink,
        tally: &mut DomainTally,
    ) -> Result<()> {
        let remote = Remote::get(&mut self.remote)?;
        let mut plan = remote
            .plan
            .take()
            .ok_or_else(|| Error::Internal("a Ballista plan judged twice at once".into()))?;
        let start = tally.done_bytes;
        let skipped = cluster.judge_next(&mut plan, &mut |batch| {
            let bytes_done = batch.raw_bytes_done;
            self.keep_verdicts(batch, sink, tally)?;
            tally.done_bytes = start + bytes_done;
            let records = tally.stats.records_read;
            sink.progress
                .domain_advanced(sink.domain, tally.done_bytes, records);
            Ok(())
        })?;
        Remote::get(&mut self.remote)?.plan = Some(plan);
        tally.stats.skipped_records += skipped;
        Ok(())
    }

    /// Dedups a judged batch and lists its survivors under their part.
    fn keep_verdicts(
        &mut self,
        batch: JudgedBatch,
        sink: &BatchSink,
        tally: &mut DomainTally,
    ) -> Result<()> {
        let survivors = self.admit(batch.verdicts, sink, &mut tally.stats)?;
        let remote = Remote::get(&mut self.remote)?;
        let (_, kept) = remote
            .kept
            .entry(batch.part)
            .or_insert_with(|| (sink.label.clone(), Vec::new()));
        for (position, body) in survivors {
            let Body::Remote { doc_id } = body else {
                return Err(Error::Internal(
                    "a cluster's verdict without a document id".into(),
                ));
            };
            kept.push(Kept {
                row: batch.first_row + position as u64,
                doc_id,
            });
            tally.stats.documents += 1;
        }
        Ok(())
    }

    /// Starts the write jobs of the domain just judged: one per part with kept rows, its files
    /// numbered after those of the parts before it.
    pub(super) fn start_writes(&mut self, cluster: &Cluster, domain: &DomainConfig) -> Result<()> {
        let ingest = self.req.ingest;
        let remote = Remote::get(&mut self.remote)?;
        let plan = remote
            .plan
            .as_ref()
            .ok_or_else(|| Error::Internal("a Ballista plan judged twice at once".into()))?;
        let (mut first_part, mut writes) = (0, Vec::new());
        for (part, (label, kept)) in std::mem::take(&mut remote.kept) {
            if kept.is_empty() {
                continue;
            }
            let kept_path = remote.work_dir.join(format!("kept-{part}.bin"));
            write_kept(&kept_path, &kept)?;
            let spec = WriteSpec {
                domain: domain.name.clone(),
                label,
                shards_dir: remote.shards_dir.clone(),
                first_part,
                shard_rows: ingest.shard_rows,
                kept: kept_path,
                receipt: remote.work_dir.join(format!("written-{part}.json")),
                tokenizer: remote.tokenizer.clone(),
                tokenizer_sha256: remote.tokenizer_sha256.clone(),
                valid_fraction: ingest.valid_fraction,
                probe_fraction: ingest.probe_fraction,
            };
            first_part += kept.len().div_ceil(ingest.shard_rows.max(1));
            writes.push(cluster.write(plan, part, spec)?);
        }
        remote.writes.push(writes);
        Ok(())
    }

    /// Waits for every write job and completes each domain's files, splits and tokens from the
    /// receipts; then removes from the staging directory whatever no receipt lists (files of
    /// task attempts that were killed). Does nothing for the local engine.
    pub(super) fn complete_remote(
        &mut self,
        domains: &mut [DomainManifest],
        progress: &dyn Progress,
    ) -> Result<()> {
        let EngineSession::Ballista(cluster) = self.engine else {
            return Ok(());
        };
        let remote = Remote::get(&mut self.remote)?;
        let writes = std::mem::take(&mut remote.writes);
        let (jobs, mut done) = (writes.iter().map(Vec::len).sum(), 0);
        progress.shards_written(done, jobs);
        for (domain, writes) in domains.iter_mut().zip(writes) {
            for write in writes {
                let receipt = write.wait(cluster)?;
                domain.stats.tokens += receipt.tokens();
                for (split, counts) in receipt.splits {
                    let total = domain.splits.entry(split).or_default();
                    total.documents += counts.documents;
                    total.tokens += counts.tokens;
                }
                domain.files.extend(receipt.files);
                done += 1;
                progress.shards_written(done, jobs);
            }
            let written: u64 = domain.files.iter().map(|f| f.rows).sum();
            if written != domain.stats.documents {
                return Err(Error::Internal(format!(
                    "domain {:?}: the executors wrote {written} documents, dedup kept {}",
                    domain.name, domain.stats.documents
                )));
            }
            progress.domain_finished(&domain.name, &domain.stats);
        }
        remove_unlisted(&remote.shards_dir, domains)
    }
}

/// Removes every file in the domains' directories under `shards_dir` that their manifests do not
/// list.
fn remove_unlisted(shards_dir: &Path, domains: &[DomainManifest]) -> Result<()> {
    let listed: BTreeSet<PathBuf> = domains
        .iter()
        .flat_map(|d| d.files.iter().map(|f| shards_dir.join(&f.path)))
        .collect();
    for domain in domains {
        let dir = shards_dir.join(&domain.name);
        for entry in fs_err::read_dir(&dir)? {
            let path = entry?.path();
            if !listed.contains(&path) {
                fs_err::remove_file(&path)?;
            }
        }
    }
    Ok(())
}
