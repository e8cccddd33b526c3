//! The report's sections, in reading order: the arms and budgets, the verdicts, final losses,
//! mixtures, utilities, loss curves and downstream stages.

use std::collections::BTreeSet;

use mixlab_artefacts::split::Split;

use crate::Result;
use crate::compute::EffectiveCompute;
use crate::document::{Block, Figure, thousands};
use crate::figures::{Marks, Series, category_chart, curves};
use crate::input::ReportInput;
use crate::paired::PairedDifference;
use crate::tables::{FinalLoss, Tables};
use crate::verdict::{Call, Verdict};

/// Every block of the report.
pub(crate) fn blocks(
    input: &ReportInput,
    tables: &Tables,
    verdicts: &[Verdict],
    paired: &[PairedDifference],
    effective: &[EffectiveCompute],
) -> Result<Vec<Block>> {
    let mut blocks = vec![Block::Heading(1, input.title.clone())];
    blocks.extend(arms(input));
    blocks.extend(verdict_list(verdicts));
    blocks.extend(paired_table(paired));
    blocks.extend(effective_compute(effective));
    blocks.extend(final_losses(input, &tables.final_losses)?);
    blocks.extend(mixtures(input, tables)?);
    blocks.extend(utilities(tables)?);
    blocks.extend(loss_curves(input, tables)?);
    blocks.extend(stages(tables));
    Ok(blocks)
}

fn arms(input: &ReportInput) -> Vec<Block> {
    let rows = input
        .arms
        .iter()
        .map(|arm| {
            let seeds: Vec<String> = arm.seeds.iter().map(|s| s.seed.to_string()).collect();
            let first = arm.seeds.first();
            let stages: Vec<&str> = first.map_or(Vec::new(), |s| {
                s.runs.iter().map(|r| r.stage.as_str()).collect()
            });
            let tokens = first.and_then(|s| s.runs.first()).map_or(0, |r| r.tokens);
            let finals: Vec<&str> = arm
                .seeds
                .iter()
                .filter_map(|s| s.runs.last())
                .map(|r| r.name.as_str())
                .collect();
            vec![
                arm.name.clone(),
                seeds.join(", "),
                stages.join(" → "),
                thousands(tokens),
                finals.join(", "),
            ]
        })
        .collect();
    let header = [
        "arm",
        "seeds",
        "stages",
        "training tokens per run",
        "final runs",
    ];
    let mut blocks = vec![
        Block::Heading(2, "Arms".into()),
        Block::Text("Every arm trains for the token budget shown; losses are nats per token on each domain's held-out splits (valid: general quality; probe: the targets).".into()),
        Block::Table(header.map(String::from).into(), rows),
    ];
    if !input.targets.is_empty() {
        let named: Vec<String> = input
            .targets
            .iter()
            .map(|(d, w)| format!("{d} ({w})"))
            .collect();
        blocks.push(Block::Text(format!(
            "Targets of the mixture: the probe splits of {}; `probe · targets` is their weighted mean loss.",
            named.join(", ")
        )));
    }
    blocks
}

fn verdict_list(verdicts: &[Verdict]) -> Vec<Block> {
    let items = verdicts
        .iter()
        .map(|v| {
            let against = match &v.runner_up {
                Some(second) => format!(", {:.4} below {second}", v.margin),
                None => String::new(),
            };
            let noise = match (v.call, v.noise) {
                (Call::BeyondNoise | Call::WithinNoise, Some(n)) => {
                    format!(" (largest seed spread {n:.4})")
                }
                _ => String::new(),
            };
            format!(
                "{} · {}: {} wins with {:.4}{against}: {}{noise}",
                v.split,
                v.domain,
                v.winner,
                v.loss,
                v.call.words()
            )
        })
        .collect();
    vec![Block::Heading(2, "Verdicts".into()), Block::List(items)]
}

/// Every pair of arms on the aggregate rows, paired by seed, with its 95 % interval.
fn paired_table(paired: &[PairedDifference]) -> Vec<Block> {
    if paired.is_empty() {
        return Vec::new();
    }
    let rows = paired
        .iter()
        .map(|d| {
            let interval = if d.low.is_nan() {
                "-".to_owned()
            } else {
                format!("[{:+.4}, {:+.4}]", d.low, d.high)
            };
            vec![
                format!("{} · {}", d.split, d.domain),
                format!("{} − {}", d.arm, d.baseline),
                d.seeds.to_string(),
                format!("{:+.4}", d.mean),
                interval,
                d.call.words().to_owned(),
            ]
        })
        .collect();
    let header = [
        "loss",
        "pair",
        "seeds",
        "mean difference",
        "95 % interval",
        "verdict",
    ];
    vec![
        Block::Heading(2, "Paired differences".into()),
        Block::Text("Final losses of two arms at the same seed, subtracted, then averaged over the seeds both ran, with a 95 % Student-t interval: negative means the first arm is better; an interval that crosses zero cannot tell the arms apart at this budget.".into()),
        Block::Table(header.map(String::from).into(), rows),
    ]
}

/// Each arm's final target loss as a multiple of the baseline arm's training compute.
fn effective_compute(effective: &[EffectiveCompute]) -> Vec<Block> {
    let Some(first) = effective.first() else {
        return Vec::new();
    };
    let rows = effective
        .iter()
        .map(|e| {
            let multiplier = if e.multiplier.is_nan() {
                "-".to_owned()
            } else {
                format!(
                    "{:.2}×{}",
                    e.multiplier,
                    if e.extrapolated {
                        " (extrapolated)"
                    } else {
                        ""
                    }
                )
            };
            vec![e.arm.clone(), format!("{:.4}", e.loss), multiplier]
        })
        .collect();
    let header = [
        "arm",
        "final target loss (mean of seeds)",
        "effective compute",
    ];
    vec![
        Block::Heading(2, "Effective compute".into()),
        Block::Text(format!(
            "The training steps {} needs to reach each arm's final loss on the targets' domains (valid split, the one evaluated during training; its own curve, interpolated in log steps between evaluations, extrapolated past its end by a power law through its last two), divided by the arm's steps: above 1, the arm's mixture saves compute.",
            first.baseline
        )),
        Block::Table(header.map(String::from).into(), rows),
    ]
}

fn final_losses(input: &ReportInput, losses: &[FinalLoss]) -> Result<Vec<Block>> {
    let names: Vec<&str> = input.arms.iter().map(|a| a.name.as_str()).collect();
    let mut header = vec!["split".to_owned(), "domain".to_owned()];
    header.extend(names.iter().map(|n| (*n).to_owned()));
    let mut targets: Vec<(Split, &str)> = Vec::new();
    for l in losses {
        if !targets.contains(&(l.split, l.domain.as_str())) {
            targets.push((l.split, &l.domain));
        }
    }
    let find = |arm: &str, split: Split, domain: &str| {
        losses
            .iter()
            .find(|l| l.arm == arm && l.split == split && l.domain == domain)
    };
    let rows = targets
        .iter()
        .map(|&(split, domain)| {
            let mut row = vec![split.to_string(), domain.to_owned()];
            row.extend(
                names
                    .iter()
                    .map(|arm| find(arm, split, domain).map_or("–".into(), cell)),
            );
            row
        })
        .collect();
    let probes: Vec<String> = targets
        .iter()
        .filter(|t| t.0 == Split::Probe)
        .map(|t| t.1.to_owned())
        .collect();
    let series: Vec<Series> = names
        .iter()
        .map(|arm| Series {
            name: (*arm).to_owned(),
            values: probes
                .iter()
                .enumerate()
                .filter_map(|(i, d)| find(arm, Split::Probe, d).map(|l| (i, l.mean, l.min, l.max)))
                .collect(),
        })
        .collect();
    let svg = category_chart(
        "Final probe loss per arm (bars: seed range)",
        "loss",
        &probes,
        &series,
        Marks::Points,
    )?;
    Ok(vec![
        Block::Heading(2, "Final losses".into()),
        Block::Text("Mean over seeds, with the seed range in brackets.".into()),
        Block::Table(header, rows),
        Block::Figure(Figure {
            file: "final-losses.svg".into(),
            caption: "Final probe loss of each arm per domain and on average".into(),
            svg,
        }),
    ])
}

fn cell(l: &FinalLoss) -> String {
    if l.seeds >= 2 {
        format!("{:.4} [{:.4}–{:.4}]", l.mean, l.min, l.max)
    } else {
        format!("{:.4}", l.mean)
    }
}

fn mixtures(input: &ReportInput, tables: &Tables) -> Result<Vec<Block>> {
    if tables.mixtures.is_empty() {
        return Ok(Vec::new());
    }
    let domains: Vec<String> = tables
        .mixtures
        .iter()
        .map(|m| m.domain.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut columns: Vec<(String, String)> = Vec::new();
    for m in &tables.mixtures {
        if !columns.contains(&(m.arm.clone(), m.stage.clone())) {
            columns.push((m.arm.clone(), m.stage.clone()));
        }
    }
    let weight = |arm: &str, stage: &str, domain: &str| {
        tables
            .mixtures
            .iter()
            .find(|m| m.arm == arm && m.stage == stage && m.domain == domain)
            .map(|m| m.weight)
    };
    let mut header = vec!["domain".to_owned()];
    header.extend(columns.iter().map(|(a, s)| format!("{a} / {s}")));
    let rows = domains
        .iter()
        .map(|d| {
            let mut row = vec![d.clone()];
            row.extend(
                columns
                    .iter()
                    .map(|(a, s)| weight(a, s, d).map_or("–".into(), |w| format!("{w:.4}"))),
            );
            row
        })
        .collect();
    let series: Vec<Series> = input
        .arms
        .iter()
        .filter_map(|arm| {
            let stage = &arm.mixture.as_ref()?.stage.first()?.name;
            let values = domains
                .iter()
                .enumerate()
                .filter_map(|(i, d)| weight(&arm.name, stage, d).map(|w| (i, w, w, w)))
                .collect();
            Some(Series {
                name: arm.name.clone(),
                values,
            })
        })
        .collect();
    let svg = category_chart(
        "Mixture weights (first stage)",
        "weight",
        &domains,
        &series,
        Marks::Bars,
    )?;
    Ok(vec![
        Block::Heading(2, "Mixtures".into()),
        Block::Table(header, rows),
        Block::Figure(Figure {
            file: "mixtures.svg".into(),
            caption: "Each arm's mixture weight per domain".into(),
            svg,
        }),
    ])
}

fn utilities(tables: &Tables) -> Result<Vec<Block>> {
    if tables.utilities.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tables
        .utilities
        .iter()
        .map(|u| {
            vec![
                u.domain.clone(),
                u.target.clone(),
                format!("{:+.3e} ± {:.1e}", u.utility, u.stderr),
                u.n_samples.to_string(),
            ]
        })
        .collect();
    let joint: Vec<_> = tables
        .utilities
        .iter()
        .filter(|u| u.target == mixlab_artefacts::utilities::JOINT_TARGET)
        .collect();
    let domains: Vec<String> = joint.iter().map(|u| u.domain.clone()).collect();
    let series = [Series {
        name: "joint utility ± stderr".into(),
        values: joint
            .iter()
            .enumerate()
            .map(|(i, u)| (i, u.utility, u.utility - u.stderr, u.utility + u.stderr))
            .collect(),
    }];
    let svg = category_chart(
        "Domain utilities (SDM simulation)",
        "utility",
        &domains,
        &series,
        Marks::Points,
    )?;
    Ok(vec![
        Block::Heading(2, "Domain utilities".into()),
        Block::Text("Influence of each domain's documents on the targets' loss in the simulation run (positive: helps), with bootstrap standard errors.".into()),
        Block::Table(["domain", "target", "utility", "documents"].map(String::from).into(), rows),
        Block::Figure(Figure {
            file: "utilities.svg".into(),
            caption: "Joint utility per domain with ± one standard error".into(),
            svg,
        }),
    ])
}

fn loss_curves(input: &ReportInput, tables: &Tables) -> Result<Vec<Block>> {
    let mut blocks = vec![Block::Heading(2, "Loss curves".into())];
    for arm in &input.arms {
        let mut lines: Vec<(String, Vec<(u64, f64)>)> = Vec::new();
        for p in tables.curves.iter().filter(|p| p.arm == arm.name) {
            match lines.iter_mut().find(|(d, _)| *d == p.domain) {
                Some((_, line)) => line.push((p.step, p.loss)),
                None => lines.push((p.domain.clone(), vec![(p.step, p.loss)])),
            }
        }
        lines.sort_by_key(|(d, _)| d != "train");
        let svg = curves(
            &format!("{}: training and validation loss", arm.name),
            &lines,
        )?;
        blocks.push(Block::Figure(Figure {
            file: format!("curves-{}.svg", arm.name),
            caption: format!(
                "{}: training loss and each domain's validation loss (mean over seeds)",
                arm.name
            ),
            svg,
        }));
    }
    Ok(blocks)
}

fn stages(tables: &Tables) -> Vec<Block> {
    if tables.stage_losses.iter().all(|s| s.order == 0) {
        return Vec::new();
    }
    let rows = tables
        .stage_losses
        .iter()
        .map(|s| {
            vec![
                s.arm.clone(),
                s.stage.clone(),
                format!("{:.4}", s.mean),
                format!("{:.4}–{:.4}", s.min, s.max),
                format!("{:+.2}%", s.change_pct),
            ]
        })
        .collect();
    vec![
        Block::Heading(2, "Stages".into()),
        Block::Text("Mean validation loss after each stage of an arm (distillation, merging, quantization), and its change from the arm's trained model.".into()),
        Block::Table(["arm", "stage", "valid loss", "seed range", "change"].map(String::from).into(), rows),
    ]
}
