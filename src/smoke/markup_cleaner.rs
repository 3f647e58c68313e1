//! Minimal markup removal for documentation sources (reStructuredText, Markdown/MyST) so the smoke
//! corpus reads like prose with code, as web text does: heading adornments, link targets, comments
//! and purely structural directives (toctree, index, …) go; roles, links and literals keep their
//! text; everything else (paragraphs, lists, code blocks, tables) stays as written.
use std::sync::LazyLock;

use regex::Regex;

/// Source formats the cleaner understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Markup {
    ReStructuredText,
    Markdown,
}

impl Markup {
    /// By file extension: `md` is Markdown, everything else reStructuredText (`rst`, `txt`).
    pub fn from_extension(extension: &str) -> Self {
        if extension.eq_ignore_ascii_case("md") {
            Markup::Markdown
        } else {
            Markup::ReStructuredText
        }
    }
}

/// Directives whose argument is a language or format name rather than text.
const CODE_DIRECTIVES: [&str; 6] = ["code-block", "code", "sourcecode", "testcode", "doctest", "parsed-literal"];

/// Directives whose line and indented body carry no prose.
const STRUCTURAL_DIRECTIVES: [&str; 33] = [
    "toctree",
    "index",
    "currentmodule",
    "module",
    "highlight",
    "contents",
    "include",
    "literalinclude",
    "autosummary",
    "automodule",
    "autoclass",
    "autofunction",
    "automethod",
    "autodata",
    "autoattribute",
    "autoexception",
    "image",
    "figure",
    "raw",
    "meta",
    "default-role",
    "role",
    "sectionauthor",
    "moduleauthor",
    "codeauthor",
    "program",
    "graphviz",
    "inheritance-diagram",
    "plot",
    "testsetup",
    "testcleanup",
    "tabularcolumns",
    "only",
];

static ROLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?::[A-Za-z0-9_+.-]+)+:`([^`]+)`|\{[A-Za-z0-9_:+.-]+\}`([^`]+)`").unwrap_or_else(|_| unreachable!())
});
static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"`([^`<]+?)\s*<[^`>]+>`_{1,2}").unwrap_or_else(|_| unreachable!()));
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"`([^`]+)`_{1,2}").unwrap_or_else(|_| unreachable!()));
static LITERAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"``([^`]+)``").unwrap_or_else(|_| unreachable!()));
static DIRECTIVE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\s*)\.\. ([A-Za-z0-9_:+-]+)::\s*(.*)$").unwrap_or_else(|_| unreachable!()));
static MYST_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\([A-Za-z0-9_:.-]+\)=\s*$").unwrap_or_else(|_| unreachable!()));
static MYST_FENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\s*(?:```+|:::+))\{[A-Za-z0-9_:+-]+\}\s*(.*)$").unwrap_or_else(|_| unreachable!()));

/// True for a line made of one repeated punctuation character (heading adornment, transition).
pub fn is_adornment(line: &str) -> bool {
    let line = line.trim_end();
    let mut chars = line.chars();
    match chars.next() {
        Some(first) if "=-~^\"'`#*+<>:._".contains(first) => line.len() >= 3 && chars.all(|c| c == first),
        _ => false,
    }
}

/// Text of a role's content: `title <target>` → title, `~a.b.C` → C, `!x` → x.
fn role_text(content: &str) -> String {
    let content = content.trim();
    if let Some(open) = content.rfind('<') {
        if content.ends_with('>') && open > 0 {
            return content[..open].trim_end().to_string();
        }
    }
    if let Some(rest) = content.strip_prefix('~') {
        return rest.rsplit('.').next().unwrap_or(rest).to_string();
    }
    content.trim_start_matches('!').to_string()
}

fn clean_inline(line: &str) -> String {
    let line = ROLE.replace_all(line, |caps: &regex::Captures<'_>| {
        role_text(caps.get(1).or_else(|| caps.get(2)).map_or("", |m| m.as_str()))
    });
    let line = LINK.replace_all(&line, "$1");
    let line = REFERENCE.replace_all(&line, "$1");
    LITERAL.replace_all(&line, "$1").into_owned()
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Removes markup from one document (or section) of `markup`.
pub fn clean_markup(text: &str, markup: Markup) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut skip_deeper_than: Option<usize> = None;
    let mut in_fence = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        i += 1;
        if let Some(indent) = skip_deeper_than {
            if line.is_empty() || indent_of(line) > indent {
                continue;
            }
            skip_deeper_than = None;
        }
        if markup == Markup::Markdown {
            if line.trim_start().starts_with("```") || line.trim_start().starts_with(":::") {
                in_fence = !in_fence;
                if let Some(caps) = MYST_FENCE.captures(line) {
                    out.push(format!("{}{}", &caps[1], &caps[2]).trim_end().to_string());
                    continue;
                }
            }
            if !in_fence && MYST_LABEL.is_match(line) {
                continue;
            }
            out.push(if in_fence { line.to_string() } else { clean_inline(line) });
            continue;
        }
        let stripped = line.trim_start();
        if is_adornment(line) && !stripped.starts_with("::") {
            continue;
        }
        if stripped == "::" {
            continue;
        }
        if let Some(caps) = DIRECTIVE.captures(line) {
            let indent = caps[1].len();
            let name = caps[2].rsplit(':').next().unwrap_or(&caps[2]);
            if STRUCTURAL_DIRECTIVES.contains(&name) {
                skip_deeper_than = Some(indent);
                continue;
            }
            let argument = caps[3].trim();
            if !argument.is_empty() && !CODE_DIRECTIVES.contains(&name) {
                out.push(format!("{}{}", &caps[1], clean_inline(argument)));
            }
            // Directive options (`:maxdepth: 2`) directly below the directive line.
            while i < lines.len() && indent_of(lines[i]) > indent && lines[i].trim_start().starts_with(':') {
                i += 1;
            }
            continue;
        }
        if stripped.starts_with(".. ") || stripped == ".." {
            // Link targets, substitution definitions and comments, with their indented bodies.
            skip_deeper_than = Some(indent_of(line));
            continue;
        }
        let line = if line.ends_with("::") && !line.ends_with(":::") { &line[..line.len() - 1] } else { line };
        out.push(clean_inline(line));
    }
    collapse_blank_lines(&out)
}

/// Joins lines, with at most one blank line in a row and none at either end.
fn collapse_blank_lines(lines: &[String]) -> String {
    let mut text = String::new();
    let mut blank_run = 0;
    for line in lines {
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        text.push_str(line);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_restructuredtext() {
        let rst = "\
.. _topics-db:

=========
Databases
=========

.. toctree::
   :maxdepth: 2

   intro

Use :class:`~django.db.models.Model` and :ref:`the guide <db-guide>` with ``save()``.
See `Python <https://python.org>`_ and `models`_.

.. note::

    Keep this note.

Example::

    x = 1

.. code-block:: python

    y = 2

.. versionadded:: 5.0
";
        let cleaned = clean_markup(rst, Markup::ReStructuredText);
        assert_eq!(
            cleaned,
            "Databases\n\nUse Model and the guide with save().\nSee Python and models.\n\n    Keep this note.\n\n\
             Example:\n\n    x = 1\n\n    y = 2\n\n5.0"
        );
    }

    #[test]
    fn cleans_myst_markdown() {
        let md = "(label)=\n# Title\n\nUse {func}`~sympy.core.Symbol` here.\n\n```{note}\nA note.\n```\n\n```py\n{x}`y`\n```\n";
        assert_eq!(
            clean_markup(md, Markup::Markdown),
            "# Title\n\nUse Symbol here.\n\n```\nA note.\n```\n\n```py\n{x}`y`\n```"
        );
    }

    #[test]
    fn recognises_adornments() {
        assert!(is_adornment("====="));
        assert!(is_adornment("~~~"));
        assert!(!is_adornment("==x=="));
        assert!(!is_adornment("--"));
        assert!(!is_adornment("word"));
    }
}
