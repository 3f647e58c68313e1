//! Splits a documentation file into documents at its section headings (reStructuredText titles
//! with underline/overline adornment, Markdown `#` headings outside code fences), cleans each
//! section's markup and merges sections that are too short with the following one, so documents
//! have the length of a web page section rather than a whole manual or a lone heading.
use super::markup_cleaner::{clean_markup, is_adornment, Markup};

/// Documents shorter than this (after merging) are dropped rather than kept as noise.
const MIN_KEPT_CHARS: usize = 40;

/// Line indices where a new section starts.
fn section_starts(lines: &[&str], markup: Markup) -> Vec<usize> {
    let mut starts = vec![0];
    let mut in_fence = false;
    for i in 0..lines.len() {
        let line = lines[i];
        match markup {
            Markup::Markdown => {
                if line.trim_start().starts_with("```") {
                    in_fence = !in_fence;
                } else if !in_fence && line.starts_with('#') && line.trim_start_matches('#').starts_with(' ') {
                    starts.push(i);
                }
            }
            Markup::ReStructuredText => {
                let title = line.trim_end();
                let is_title = !title.is_empty()
                    && !title.starts_with(char::is_whitespace)
                    && !is_adornment(title)
                    && lines.get(i + 1).is_some_and(|next| {
                        is_adornment(next) && next.trim_end().chars().count() >= title.chars().count()
                    });
                if is_title {
                    let overline = i > 0 && is_adornment(lines[i - 1]);
                    starts.push(if overline { i - 1 } else { i });
                }
            }
        }
    }
    starts.dedup();
    starts
}

/// Documents of one file, in order: cleaned sections, short ones merged into the next.
pub fn split_into_documents(text: &str, markup: Markup, min_doc_chars: usize) -> Vec<String> {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut starts = section_starts(&lines, markup);
    starts.push(lines.len());
    let mut documents: Vec<String> = Vec::new();
    let mut pending = String::new();
    for window in starts.windows(2) {
        let section = clean_markup(&lines[window[0]..window[1]].join("\n"), markup);
        if section.is_empty() {
            continue;
        }
        if !pending.is_empty() {
            pending.push_str("\n\n");
        }
        pending.push_str(&section);
        if pending.chars().count() >= min_doc_chars {
            documents.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        match documents.last_mut() {
            Some(last) => {
                last.push_str("\n\n");
                last.push_str(&pending);
            }
            None if pending.chars().count() >= MIN_KEPT_CHARS => documents.push(pending),
            None => {}
        }
    }
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_restructuredtext_at_titles_and_merges_short_sections() {
        let body = "Some words about this part. ".repeat(10);
        let rst = format!(
            "=====\nGuide\n=====\n\nIntro.\n\nFirst\n-----\n\n{body}\n\nSecond\n------\n\n{body}\n\nTiny\n----\n\nEnd.\n"
        );
        let docs = split_into_documents(&rst, Markup::ReStructuredText, 200);
        assert_eq!(docs.len(), 2, "{docs:#?}");
        assert!(docs[0].starts_with("Guide\n\nIntro.\n\nFirst\n\nSome words"));
        assert!(docs[1].starts_with("Second\n\nSome words"));
        assert!(docs[1].ends_with("Tiny\n\nEnd."), "a short tail joins the previous document");
    }

    #[test]
    fn splits_markdown_at_headings_outside_code() {
        let body = "Text of the section. ".repeat(10);
        let md = format!("# One\n\n{body}\n\n```sh\n# not a heading\n```\n\n## Two\n\n{body}\n");
        let docs = split_into_documents(&md, Markup::Markdown, 100);
        assert_eq!(docs.len(), 2);
        assert!(docs[0].contains("# not a heading"));
        assert!(docs[1].starts_with("## Two"));
    }

    #[test]
    fn tiny_files_are_dropped() {
        assert!(split_into_documents("Hi\n==\n", Markup::ReStructuredText, 100).is_empty());
    }
}
