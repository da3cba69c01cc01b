//! What `kiln validate` and every build tell a user about a bad profile:
//! one diagnostic per problem, with file, line, column, field, fix.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in a profile, positioned like a compiler message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (the file cannot be read).
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted path of the field, e.g. `etcd.members[1].ip`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it; may be empty.
    pub hint: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity, self.located())
    }
}

impl Diagnostic {
    /// The diagnostic without its severity: where, what and the fix, for a
    /// printer that says the severity itself.
    pub fn located(&self) -> Located<'_> {
        Located(self)
    }
}

pub struct Located<'a>(&'a Diagnostic);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "{}", d.file.display())?;
        if d.line > 0 {
            write!(f, ":{}:{}", d.line, d.column)?;
        }
        write!(f, ": {}: {}", d.field, d.message)?;
        if !d.hint.is_empty() {
            write!(f, "\n  help: {}", d.hint)?;
        }
        Ok(())
    }
}

/// A profile that cannot be built. Holds every error found (and the
/// warnings, so nothing is lost when both are printed).
#[derive(Debug, Clone, thiserror::Error)]
pub struct ProfileError {
    pub diagnostics: Vec<Diagnostic>,
}

impl ProfileError {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        let count = self.errors().count();
        let file = self
            .diagnostics
            .first()
            .map(|d| d.file.display().to_string())
            .unwrap_or_default();
        write!(
            f,
            "error: profile {file} is invalid: {count} error{}",
            if count == 1 { "" } else { "s" }
        )
    }
}

/// 1-based line and character column of a byte offset in `src`.
pub fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(severity: Severity, hint: &str) -> Diagnostic {
        Diagnostic {
            severity,
            file: PathBuf::from("p/bad.toml"),
            line: 7,
            column: 6,
            field: "etcd.members[1].ip".into(),
            message: "10.9.0.1 is outside every node_subnet".into(),
            hint: hint.into(),
        }
    }

    #[test]
    fn renders_like_rustc() {
        let d = diag(Severity::Error, "add 10.9.0.0/24 to cluster.node_subnets");
        assert_eq!(
            d.to_string(),
            "error: p/bad.toml:7:6: etcd.members[1].ip: 10.9.0.1 is outside every node_subnet\n  \
             help: add 10.9.0.0/24 to cluster.node_subnets"
        );
        assert!(!diag(Severity::Warning, "").to_string().contains("help"));
    }

    #[test]
    fn error_lists_all_and_counts_errors_only() {
        let e = ProfileError {
            diagnostics: vec![
                diag(Severity::Error, "a"),
                diag(Severity::Error, "b"),
                diag(Severity::Warning, "c"),
            ],
        };
        let text = e.to_string();
        assert_eq!(text.matches("etcd.members[1].ip").count(), 3);
        assert!(
            text.ends_with("profile p/bad.toml is invalid: 2 errors"),
            "{text}"
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        // `=` on line 2 is at byte 10 but character column 4 (é is two bytes).
        assert_eq!(line_column(src, 10), (2, 4));
        assert_eq!(line_column(src, 999), (3, 1));
    }
}
