//! Plain-text tables for summaries on stdout: right-aligned numbers, left-aligned text.
//!
//! Written by hand: a dozen lines do what the table crates do, without their dependency trees.

use std::fmt::Write;

use mixlab_artefacts::eval::DomainLoss;
pub use mixlab_reports::document::thousands;

/// A table with a header row.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table; columns whose cells (past the header) all parse as numbers align right.
    pub fn render(&self) -> String {
        let n_cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let numeric = |c: usize| {
            self.rows[1..]
                .iter()
                .filter_map(|r| r.get(c))
                .all(|s| s.replace([',', '.', '%', '-'], "").parse::<f64>().is_ok())
        };
        let mut out = String::new();
        for (i, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> = (0..n_cols)
                .map(|c| {
                    let cell = row.get(c).map_or("", String::as_str);
                    if numeric(c) && i > 0 {
                        format!("{cell:>w$}", w = width(c))
                    } else {
                        format!("{cell:<w$}", w = width(c))
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
            if i == 0 {
                let rule: Vec<String> = (0..n_cols).map(|c| "-".repeat(width(c))).collect();
                let _ = writeln!(out, "{}", rule.join("  "));
            }
        }
        out
    }
}

/// A per-domain loss and perplexity table: `losses` by split, then `texts` (probe texts outside the
/// shards, `mixlab eval --texts`) as `texts`.
pub fn eval_table(losses: &[DomainLoss], texts: &[DomainLoss]) -> String {
    let mut t = Table::new(&["domain", "split", "loss", "perplexity", "tokens"]);
    let labelled =
        (losses.iter().map(|l| (l, l.split.as_str()))).chain(texts.iter().map(|l| (l, "texts")));
    for (l, split) in labelled {
        t.row(vec![
            l.domain.clone(),
            split.to_owned(),
            format!("{:.4}", l.loss),
            format!("{:.2}", l.perplexity()),
            thousands(l.tokens),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_align_right_and_group() {
        let mut t = Table::new(&["domain", "docs"]);
        t.row(vec!["code".into(), thousands(1234)]);
        t.row(vec!["prose".into(), thousands(7)]);
        assert_eq!(
            t.render(),
            "domain  docs\n------  -----\ncode    1,234\nprose       7\n"
        );
    }
}
