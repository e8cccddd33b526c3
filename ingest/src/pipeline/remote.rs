//! The Ballista engine's half of the pipeline: every part's stage job starts when the run is
//! planned; their receipts give each domain's counts in source order; dedup runs as queries on
//! the cluster once every part is staged; then write jobs on the executors tokenize and write
//! what dedup kept, and their receipts complete the domains' manifests.
//!
//! A domain's shard files are numbered across its parts in order, each part starting a new file,
//! so a domain read from one part (a single file, or a source whose SQL needs all its rows) gets
//! the local engine's files byte for byte, and one read from several parts the same documents in
//! the same order, in files cut where parts end as well as every `shard_rows` documents.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::cluster::client::{Cluster, Plan, SinkJob, SourceRequest, Staged};
use crate::cluster::groups::StagedFiles;
use crate::cluster::judge::JudgeSpec;
use crate::cluster::stage::{BandsFile, StageSpec, part_of, row_of};
use crate::cluster::write::{Receipt, WriteSpec, write_rows};
use crate::config::OnError;
use crate::dedup::{Duplicate, resolve};
use crate::engine::{EngineSession, work_dir};
use crate::error::{Error, Result};
use crate::manifest::{DomainManifest, TOKENIZER_FILE};

use super::{BatchSink, DomainStage, DomainTally, IngestRequest, Progress};
use super::{empty_domain, null_record, quality_filter, read_options};

/// The cluster's jobs and what they found.
pub(super) struct Remote {
    plan: Plan,
    /// The staging directory, absolute (executors resolve nothing against ours).
    shards_dir: PathBuf,
    /// Where staged candidates, dropped lists, receipts and scan counters go, absolute.
    work_dir: PathBuf,
    tokenizer: PathBuf,
    tokenizer_sha256: String,
    /// Every part in ingest order.
    parts: Vec<RemotePart>,
    /// The next source [`DomainStage::read_remote`] reads, counted over all domains.
    next_source: usize,
}

/// A part of a source: its domain, its stage job and what that found.
struct RemotePart {
    domain: usize,
    label: String,
    stage: StageSpec,
    job: Option<SinkJob<Staged>>,
    /// Records that passed the filters (known once the stage job ended).
    candidates: u64,
}

impl Remote {
    /// Plans every source's parts and starts their stage jobs (for the Ballista engine; `None`
    /// for the local one).
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
        for (d, (domain, files)) in req.domains.iter().zip(sources).enumerate() {
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
                owned.push((d, source, files, spec, counts_dir));
            }
        }
        let requests: Vec<SourceRequest<'_>> = owned
            .iter()
            .map(|(_, source, files, spec, counts_dir)| SourceRequest {
                source,
                files,
                options: read_options(req.ingest),
                spec,
                work_dir: counts_dir,
            })
            .collect();
        let plan = cluster.plan(&requests)?;
        let mut parts = Vec::new();
        for (source, (domain, _, _, spec, _)) in owned.iter().enumerate() {
            for part in plan.parts_of(source) {
                let stage = stage_spec(&work, part, req);
                let job = cluster.stage(&plan, part, stage.clone())?;
                parts.push(RemotePart {
                    domain: *domain,
                    label: spec.label.clone(),
                    stage,
                    job: Some(job),
                    candidates: 0,
                });
            }
        }
        Ok(Some(Self {
            plan,
            shards_dir: absolute(staging)?,
            tokenizer: absolute(&staging.join(TOKENIZER_FILE))?,
            tokenizer_sha256: tokenizer_sha256.to_owned(),
            work_dir: work,
            parts,
            next_source: 0,
        }))
    }

    fn get(remote: &mut Option<Self>) -> Result<&mut Self> {
        remote
            .as_mut()
            .ok_or_else(|| Error::Internal("a Ballista ingest without a plan".into()))
    }

    /// The files every part's stage job wrote.
    fn staged_files(&self) -> StagedFiles {
        let stages = self.parts.iter().map(|p| &p.stage);
        StagedFiles {
            candidates: stages.clone().map(|s| s.candidates.clone()).collect(),
            bands: stages
                .filter_map(|s| s.bands.clone())
                .map(|b| b.path)
                .collect(),
        }
    }
}

/// Where part `part`'s stage job writes.
fn stage_spec(work: &Path, part: usize, req: &IngestRequest<'_>) -> StageSpec {
    let name = format!("part-{part:05}.parquet");
    StageSpec {
        part,
        candidates: work.join("candidates").join(&name),
        bands: req.ingest.dedup.minhash.as_ref().map(|m| BandsFile {
            path: work.join("bands").join(&name),
            bands: m.bands,
        }),
        receipt: work.join(format!("staged-{part}.json")),
    }
}

impl DomainStage<'_> {
    /// Waits for the stage jobs of the next planned source, in order, and counts their records.
    pub(super) fn read_remote(
        &mut self,
        cluster: &Cluster,
        sink: &BatchSink,
        tally: &mut DomainTally,
    ) -> Result<()> {
        let on_error = self.req.ingest.on_error;
        let remote = Remote::get(&mut self.remote)?;
        let source = remote.next_source;
        remote.next_source += 1;
        for part in remote.plan.parts_of(source) {
            let job = remote.parts[part].job.take();
            let job = job.ok_or_else(|| Error::Internal(format!("part {part} staged twice")))?;
            let Staged { receipt, skipped } = job.wait(cluster)?;
            let stats = &mut tally.stats;
            if let Some(row) = receipt.first_null.filter(|_| on_error == OnError::Fail) {
                return Err(null_record(sink.source, stats.records_read + row + 1));
            }
            stats.records_read += receipt.records;
            stats.bytes_read += receipt.bytes;
            stats.skipped_records += receipt.nulls + skipped;
            for (rule, n) in receipt.filtered {
                *stats.filtered.entry(rule).or_default() += n;
            }
            remote.parts[part].candidates = receipt.candidates;
            tally.done_bytes += remote.plan.bytes_of(part);
            let records = stats.records_read;
            sink.progress
                .domain_advanced(sink.domain, tally.done_bytes, records);
        }
        Ok(())
    }

    /// Dedups every staged part on the cluster, starts the write jobs, waits for them and
    /// completes each domain's counts, files, splits and tokens; then removes from the staging
    /// directory whatever no receipt lists (files of task attempts that were killed). Does
    /// nothing for the local engine.
    pub(super) fn complete_remote(
        &mut self,
        domains: &mut [DomainManifest],
        progress: &dyn Progress,
    ) -> Result<()> {
        let EngineSession::Ballista(cluster) = self.engine else {
            return Ok(());
        };
        let dropped = self.dedup_remote(cluster, domains, progress)?;
        for (manifest, config) in domains.iter().zip(self.req.domains) {
            if manifest.stats.documents == 0 {
                return Err(empty_domain(config, &manifest.stats));
            }
        }
        let writes = self.start_writes(cluster, domains, &dropped)?;
        let remote = Remote::get(&mut self.remote)?;
        let (jobs, mut done) = (writes.iter().map(Vec::len).sum(), 0);
        progress.shards_written(done, jobs);
        for (domain, writes) in domains.iter_mut().zip(writes) {
            for write in writes {
                add_receipt(domain, write.wait(cluster)?);
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

    /// Finds the duplicates among every staged part and counts them per domain; returns each
    /// part's dropped rows, in order.
    fn dedup_remote(
        &mut self,
        cluster: &Cluster,
        domains: &mut [DomainManifest],
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<u64>>> {
        let dedup = &self.req.ingest.dedup;
        let remote = Remote::get(&mut self.remote)?;
        let mut dropped = vec![Vec::new(); remote.parts.len()];
        if dedup.exact || dedup.minhash.is_some() {
            progress.message("finding duplicates on the cluster");
            let files = remote.staged_files();
            let groups = cluster.find_groups(&files, dedup.exact, dedup.minhash.is_some())?;
            tracing::info!(
                exact_duplicates = groups.exact.len(),
                colliding = groups.colliding.len(),
                "dedup groups found on the cluster"
            );
            for (ord, duplicate) in resolve(groups, dedup.minhash.as_ref()) {
                let part = part_of(ord);
                let (rows, state) = dropped
                    .get_mut(part)
                    .zip(remote.parts.get(part))
                    .ok_or_else(|| Error::Internal(format!("a duplicate in no part ({ord})")))?;
                rows.push(row_of(ord));
                let stats = &mut domains[state.domain].stats;
                match duplicate {
                    Duplicate::Exact => stats.exact_duplicates += 1,
                    Duplicate::Near => stats.near_duplicates += 1,
                }
            }
        }
        for (part, rows) in remote.parts.iter().zip(&dropped) {
            domains[part.domain].stats.documents += part.candidates - rows.len() as u64;
        }
        Ok(dropped)
    }

    /// Starts the write jobs, per domain in order: one per part with kept rows, its files
    /// numbered after those of the domain's parts before it.
    fn start_writes(
        &mut self,
        cluster: &Cluster,
        domains: &[DomainManifest],
        dropped: &[Vec<u64>],
    ) -> Result<Vec<Vec<SinkJob<Receipt>>>> {
        let ingest = self.req.ingest;
        let remote = Remote::get(&mut self.remote)?;
        let mut writes: Vec<Vec<_>> = domains.iter().map(|_| Vec::new()).collect();
        let mut first_parts = vec![0; domains.len()];
        for (index, (part, rows)) in remote.parts.iter().zip(dropped).enumerate() {
            let kept = part.candidates - rows.len() as u64;
            if kept == 0 {
                continue;
            }
            let dropped_path = remote.work_dir.join(format!("dropped-{index}.bin"));
            write_rows(&dropped_path, rows)?;
            let spec = WriteSpec {
                domain: domains[part.domain].name.clone(),
                label: part.label.clone(),
                shards_dir: remote.shards_dir.clone(),
                first_part: first_parts[part.domain],
                shard_rows: ingest.shard_rows,
                candidates: part.stage.candidates.clone(),
                dropped: dropped_path,
                receipt: remote.work_dir.join(format!("written-{index}.json")),
                tokenizer: remote.tokenizer.clone(),
                tokenizer_sha256: remote.tokenizer_sha256.clone(),
                valid_fraction: ingest.valid_fraction,
                probe_fraction: ingest.probe_fraction,
            };
            first_parts[part.domain] += kept.div_ceil(ingest.shard_rows.max(1) as u64) as usize;
            writes[part.domain].push(cluster.write(&remote.plan, index, spec)?);
        }
        Ok(writes)
    }
}

/// Adds what a write job wrote to its domain's manifest.
fn add_receipt(domain: &mut DomainManifest, receipt: Receipt) {
    domain.stats.tokens += receipt.tokens();
    for (split, counts) in receipt.splits {
        let total = domain.splits.entry(split).or_default();
        total.documents += counts.documents;
        total.tokens += counts.tokens;
    }
    domain.files.extend(receipt.files);
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
