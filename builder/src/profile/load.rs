//! Reading a profile file: bytes, digest, TOML syntax, schema, then the
//! semantic checks, each stage reporting every problem it finds.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::de::DeTable;

use super::diagnostic::{line_column, Diagnostic, ProfileError, Severity};
use super::locate::SourceMap;
use super::{schema, validate, LoadedProfile};

pub fn load(path: &Path) -> Result<LoadedProfile, ProfileError> {
    let bytes = std::fs::read(path).map_err(|e| {
        failure(vec![Diagnostic {
            severity: Severity::Error,
            file: path.to_owned(),
            line: 0,
            column: 0,
            field: "profile".into(),
            message: format!("cannot read the profile: {e}"),
            hint: "pass the path of a cluster profile, like profiles/example.toml".into(),
        }])
    })?;
    let digest = format!("sha256:{}", kiln_node::hex::hex(&Sha256::digest(&bytes)));
    let src = std::str::from_utf8(&bytes).map_err(|e| {
        let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
        let (line, column) = line_column(valid, valid.len());
        failure(vec![Diagnostic {
            severity: Severity::Error,
            file: path.to_owned(),
            line,
            column,
            field: "profile".into(),
            message: "the profile is not valid UTF-8 text".into(),
            hint: "save the file as UTF-8".into(),
        }])
    })?;

    // Only the first syntax error: after it the parser's recovery guesses,
    // and its follow-on errors would bury the real one.
    let root = DeTable::parse(src).map_err(|e| failure(vec![syntax(path, src, &e)]))?;
    let map = SourceMap {
        file: path,
        src,
        root: &root,
    };
    let profile = schema::deserialize(&map).map_err(failure)?;
    let base_dir = profile_dir(path);
    let (errors, warnings): (Vec<_>, Vec<_>) = validate::validate(&profile, &map, &base_dir)
        .into_iter()
        .partition(Diagnostic::is_error);
    if !errors.is_empty() {
        return Err(failure(errors.into_iter().chain(warnings).collect()));
    }
    Ok(LoadedProfile {
        profile,
        path: path.to_owned(),
        digest,
        warnings,
    })
}

/// The folder relative paths in a profile are resolved against.
pub fn profile_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Errors first, each group in file order.
fn failure(mut diagnostics: Vec<Diagnostic>) -> ProfileError {
    diagnostics.sort_by_key(|d| (d.severity, d.line, d.column));
    ProfileError { diagnostics }
}

fn syntax(path: &Path, src: &str, err: &toml::de::Error) -> Diagnostic {
    let span = err.span().unwrap_or(0..0);
    let (line, column) = line_column(src, span.start);
    let mut message = err.message().trim().to_owned();
    let hint = if message.contains("duplicate key") {
        if let Some(key) = src.get(span.clone()).filter(|k| !k.contains('\n')) {
            message = format!("duplicate key `{key}`");
        }
        "a key may appear only once in a table: remove or rename one of them"
    } else if message.contains("comma") {
        "separate list items with ',', and check that every [ and { before here is closed"
    } else if message.contains("string") || message.contains("invalid") {
        let token: String = src[span.start.min(src.len())..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !",]}".contains(*c))
            .collect();
        if !token.is_empty() {
            message = format!("`{token}` is not a TOML value ({message})");
        }
        "quote strings with \"...\", write numbers and true/false bare, lists as [a, b]"
    } else {
        "fix the TOML syntax at this position (tables are [name], lists of tables [[name]])"
    };
    Diagnostic {
        severity: Severity::Error,
        file: path.to_owned(),
        line,
        column,
        field: "syntax".into(),
        message: format!("invalid TOML: {message}"),
        hint: hint.into(),
    }
}

impl LoadedProfile {
    /// A bad-input error found after loading (while building), positioned at
    /// `field` like the checks' own: `kiln` exits 2 on it.
    pub fn error_at(&self, field: &str, message: String, hint: String) -> ProfileError {
        let at = |src: &str, root: &toml::Spanned<DeTable>| {
            let map = SourceMap {
                file: &self.path,
                src,
                root,
            };
            map.at_field(
                Severity::Error,
                field.to_owned(),
                message.clone(),
                hint.clone(),
            )
        };
        let src = std::fs::read_to_string(&self.path).unwrap_or_default();
        let diagnostic = match DeTable::parse(&src) {
            Ok(root) => at(&src, &root),
            Err(_) => Diagnostic {
                severity: Severity::Error,
                file: self.path.clone(),
                line: 0,
                column: 0,
                field: field.to_owned(),
                message,
                hint,
            },
        };
        failure(vec![diagnostic])
    }
}
