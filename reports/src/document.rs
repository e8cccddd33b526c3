//! A report as a list of blocks, rendered once as Markdown and once as self-contained HTML, so
//! both say the same thing.

use std::fmt::Write as _;

/// A figure: its file name beside the report, caption and SVG text.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// File name (`mixtures.svg`).
    pub file: String,
    /// Caption.
    pub caption: String,
    /// The SVG document.
    pub svg: String,
}

/// One block of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading of level 1 to 3.
    Heading(u8, String),
    /// A paragraph of plain text.
    Text(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table: header, then rows.
    Table(Vec<String>, Vec<Vec<String>>),
    /// A figure.
    Figure(Figure),
}

/// Markdown, with figures as image links to their SVG files.
///
/// # Example
/// ```
/// use mixlab_reports::document::{markdown, Block};
/// let md = markdown(&[Block::Heading(1, "Report".into()), Block::Table(vec!["arm".into()], vec![vec!["sdm".into()]])]);
/// assert_eq!(md, "# Report\n\n| arm |\n|---|\n| sdm |\n\n");
/// ```
pub fn markdown(blocks: &[Block]) -> String {
    let mut md = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(md, "{} {text}\n", "#".repeat(usize::from(*level)));
            }
            Block::Text(text) => {
                let _ = writeln!(md, "{text}\n");
            }
            Block::List(items) => {
                items.iter().for_each(|i| {
                    let _ = writeln!(md, "- {i}");
                });
                md.push('\n');
            }
            Block::Table(header, rows) => {
                let _ = writeln!(md, "| {} |", header.join(" | "));
                let _ = writeln!(md, "|{}|", vec!["---"; header.len()].join("|"));
                for row in rows {
                    let _ = writeln!(md, "| {} |", row.join(" | "));
                }
                md.push('\n');
            }
            Block::Figure(f) => {
                let _ = writeln!(md, "![{}]({})\n", f.caption, f.file);
            }
        }
    }
    md
}

/// One HTML file with every figure inline: it opens offline, with no scripts and no requests.
pub fn html(title: &str, blocks: &[Block]) -> String {
    let mut body = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(body, "<h{level}>{}</h{level}>", escape(text));
            }
            Block::Text(text) => {
                let _ = writeln!(body, "<p>{}</p>", escape(text));
            }
            Block::List(items) => {
                body.push_str("<ul>\n");
                items.iter().for_each(|i| {
                    let _ = writeln!(body, "<li>{}</li>", escape(i));
                });
                body.push_str("</ul>\n");
            }
            Block::Table(header, rows) => {
                body.push_str("<table>\n<thead><tr>");
                header.iter().for_each(|h| {
                    let _ = write!(body, "<th>{}</th>", escape(h));
                });
                body.push_str("</tr></thead>\n<tbody>\n");
                for row in rows {
                    body.push_str("<tr>");
                    row.iter().for_each(|c| {
                        let _ = write!(body, "<td>{}</td>", escape(c));
                    });
                    body.push_str("</tr>\n");
                }
                body.push_str("</tbody>\n</table>\n");
            }
            Block::Figure(f) => {
                let svg = f.svg.find("<svg").map_or("", |at| &f.svg[at..]);
                let _ = writeln!(
                    body,
                    "<figure id=\"{}\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>",
                    escape(f.file.trim_end_matches(".svg")),
                    escape(&f.caption)
                );
            }
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}\
th{background:#f3f3f3}figure{margin:1rem 0}figcaption{color:#555;font-size:.9rem}svg{max-width:100%;height:auto}";

/// `n` with thousands separators.
///
/// # Example
/// ```
/// assert_eq!(mixlab_reports::document::thousands(1234567), "1,234,567");
/// assert_eq!(mixlab_reports::document::thousands(999), "999");
/// ```
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` with HTML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_text_and_inlines_figures_without_their_xml_prolog() {
        let figure = Figure {
            file: "a.svg".into(),
            caption: "a < b".into(),
            svg: "<?xml version=\"1.0\"?>\n<svg width=\"1\"></svg>".into(),
        };
        let page = html(
            "t & u",
            &[Block::Text("<script>".into()), Block::Figure(figure)],
        );
        assert!(page.contains("<title>t &amp; u</title>"));
        assert!(page.contains("<p>&lt;script&gt;</p>"));
        assert!(page.contains("<figure id=\"a\">\n<svg width=\"1\"></svg>"));
        assert!(!page.contains("<?xml"));
        assert!(page.contains("<figcaption>a &lt; b</figcaption>"));
    }

    #[test]
    fn markdown_lists_and_figures() {
        let figure = Figure {
            file: "m.svg".into(),
            caption: "Mixtures".into(),
            svg: String::new(),
        };
        let md = markdown(&[
            Block::List(vec!["x".into(), "y".into()]),
            Block::Figure(figure),
        ]);
        assert_eq!(md, "- x\n- y\n\n![Mixtures](m.svg)\n\n");
    }
}
