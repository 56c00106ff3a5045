//! Dockerfile parsing, BuildKit-style word expansion and `.dockerignore`
//! matching.
//!
//! The parser turns Dockerfile text into a list of [`Instruction`]s whose
//! arguments are kept *raw*: quotes, escapes and `$VAR` references are left
//! in place so that the build engine can expand them with [`expand_word`] /
//! [`expand_words`] once it knows the values of `ARG` and `ENV` variables
//! at that point of the build.
//!
//! Behaviour follows the Dockerfile reference of Docker BuildKit: parser
//! directives, line continuations, comments inside continuations, the
//! exec (JSON) and shell forms, builder flags written as `--name=value`,
//! `KEY=VALUE` lists and the legacy `ENV KEY value` form.
//!
//! [`DockerIgnore`] implements the `.dockerignore` rules used when the build
//! context is sent: `*`, `?`, `[...]`, `**`, `!` exceptions, last match wins,
//! and exclusion of everything below an excluded directory.

use thiserror::Error;

// ---------------------------------------------------------------------------
// Public data types
// ---------------------------------------------------------------------------

/// One parsed instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line number of the instruction's first line.
    pub line: usize,
    /// The instruction as written, continuation lines joined with a single
    /// space and comment lines removed; used in error messages and cache keys.
    pub text: String,
    /// What the instruction is, with its raw (unexpanded) arguments.
    pub kind: InstructionKind,
}

/// The command of `RUN`, `CMD` or `ENTRYPOINT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Exec (JSON array) form: the argument vector, used as is.
    Exec(Vec<String>),
    /// Shell form: the raw command text, to be run by the stage's shell.
    Shell(String),
}

/// The kind of an instruction and its raw arguments.
///
/// Unless stated otherwise, strings are exactly as written in the Dockerfile:
/// no quote removal and no variable expansion has taken place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    /// `FROM [--platform=P] IMAGE [AS NAME]`.
    From {
        /// The image reference, raw.
        image: String,
        /// The value of `--platform=`, raw.
        platform: Option<String>,
        /// The stage name given with `AS`, lowercased.
        alias: Option<String>,
    },
    /// `COPY [--from=..] [--chmod=..] [--chown=..] SRC... DEST`.
    Copy {
        /// Source paths, raw words.
        sources: Vec<String>,
        /// Destination path, raw word.
        dest: String,
        /// The value of `--from=` (stage name, index or image), if given.
        from: Option<String>,
        /// The value of `--chmod=`, if given.
        chmod: Option<String>,
        /// The value of `--chown=`, if given.
        chown: Option<String>,
    },
    /// `ADD [--chmod=..] [--chown=..] SRC... DEST`.
    Add {
        /// Source paths or URLs, raw words.
        sources: Vec<String>,
        /// Destination path, raw word.
        dest: String,
        /// The value of `--chmod=`, if given.
        chmod: Option<String>,
        /// The value of `--chown=`, if given.
        chown: Option<String>,
    },
    /// `RUN` with its command.
    Run(Command),
    /// `CMD` with its command.
    Cmd(Command),
    /// `ENTRYPOINT` with its command.
    Entrypoint(Command),
    /// `ENV`: (key, raw value) pairs; quotes and escapes are still present
    /// in the value.
    Env(Vec<(String, String)>),
    /// `ARG`: (name, raw default) pairs.
    Arg(Vec<(String, Option<String>)>),
    /// `LABEL`: (raw key, raw value) pairs.
    Label(Vec<(String, String)>),
    /// `WORKDIR` with its raw path.
    Workdir(String),
    /// `USER` with its raw `user[:group]`.
    User(String),
    /// `STOPSIGNAL` with its raw signal.
    StopSignal(String),
    /// `EXPOSE` with its raw port words.
    Expose(Vec<String>),
    /// `VOLUME` with its raw paths (JSON array or whitespace-separated words).
    Volume(Vec<String>),
    /// `SHELL` with its argument vector (JSON form only).
    Shell(Vec<String>),
    /// `MAINTAINER` (deprecated) with its raw text.
    Maintainer(String),
}

impl InstructionKind {
    /// The instruction keyword in upper case, e.g. `"COPY"`.
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::From { .. } => "FROM",
            InstructionKind::Copy { .. } => "COPY",
            InstructionKind::Add { .. } => "ADD",
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::User(_) => "USER",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// A parse error with the file, line and offending instruction text.
///
/// Displays as `"{file}:{line}: {message}: {text}"` (the `": {text}"` part
/// is left out when there is no text, e.g. for an empty Dockerfile).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{file}:{line}: {message}{}", text_suffix(.text))]
pub struct ParseError {
    /// The name of the Dockerfile, as passed to [`parse`].
    pub file: String,
    /// 1-based line of the instruction (or directive) at fault.
    pub line: usize,
    /// The offending instruction text (see [`Instruction::text`]).
    pub text: String,
    /// What is wrong, lowercase, without a final period.
    pub message: String,
}

fn text_suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character: `\` by default, `` ` `` with `# escape=``.
    pub escape: char,
    /// The instructions in file order.
    pub instructions: Vec<Instruction>,
}

/// An error from word expansion, e.g. an unterminated quote, bad `${...}`
/// syntax, or `${VAR:?msg}` with `VAR` unset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct ExpandError {
    /// What went wrong.
    pub message: String,
}

impl ExpandError {
    fn new(message: impl Into<String>) -> Self {
        ExpandError {
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Parses Dockerfile text.
///
/// `file_name` is only used in error messages. Arguments are kept raw (see
/// [`InstructionKind`]); expand them with [`expand_word`] / [`expand_words`].
pub fn parse(source: &str, file_name: &str) -> Result<Dockerfile, ParseError> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let error = |line: usize, text: &str, message: String| ParseError {
        file: file_name.to_string(),
        line,
        text: text.to_string(),
        message,
    };

    // Parser directives: only in the leading run of directive comments.
    let mut escape = '\\';
    let mut seen_directives: Vec<String> = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let Some((name, value)) = parse_directive(lines[index]) else {
            break;
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "escape" | "syntax" | "check") {
            // An unknown directive is a plain comment and ends the directives.
            break;
        }
        let text = lines[index].trim();
        if seen_directives.contains(&name) {
            return Err(error(
                index + 1,
                text,
                format!("only one {name} parser directive can be used"),
            ));
        }
        if name == "escape" {
            escape = match value {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(error(
                        index + 1,
                        text,
                        format!("invalid escape token '{other}' does not match ` or \\"),
                    ))
                }
            };
        }
        seen_directives.push(name);
        index += 1;
    }

    let mut instructions = Vec::new();
    let mut seen_from = false;
    while index < lines.len() {
        let first = lines[index];
        if is_blank_or_comment(first) {
            index += 1;
            continue;
        }
        let line_no = index + 1;
        index += 1;

        // Gather the logical line: BuildKit removes the escape character (and
        // trailing blanks after it) and concatenates the following physical
        // line as is; comment and blank lines inside are skipped.
        let (content, mut continued) = strip_continuation(first.trim_start(), escape);
        let mut joined = content.to_string();
        let mut pieces = vec![content.trim()];
        while continued && index < lines.len() {
            let line = lines[index];
            index += 1;
            if is_blank_or_comment(line) {
                continue;
            }
            let (content, more) = strip_continuation(line, escape);
            joined.push_str(content);
            pieces.push(content.trim());
            continued = more;
        }
        let text = pieces
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");

        let kind =
            parse_instruction(joined.trim(), escape).map_err(|m| error(line_no, &text, m))?;
        match kind {
            InstructionKind::From { .. } => seen_from = true,
            InstructionKind::Arg(_) => {}
            _ if !seen_from => {
                return Err(error(
                    line_no,
                    &text,
                    "no build stage in current context".to_string(),
                ))
            }
            _ => {}
        }
        instructions.push(Instruction {
            line: line_no,
            text,
            kind,
        });
    }

    if instructions.is_empty() {
        return Err(error(1, "", "file with no instructions".to_string()));
    }
    if !seen_from {
        let first = &instructions[0];
        return Err(error(
            first.line,
            &first.text,
            "dockerfile contains no stages to build".to_string(),
        ));
    }
    Ok(Dockerfile {
        escape,
        instructions,
    })
}

/// Recognises `# name = value` (name starting with a letter, alphanumeric).
fn parse_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix('#')?.trim_start();
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[name_len..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// If the line ends with the escape character (followed only by blanks),
/// returns the text before it and `true`; otherwise the line and `false`.
fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(before) => (before, true),
        None => (line, false),
    }
}

const KNOWN: &[&str] = &[
    "from",
    "copy",
    "add",
    "run",
    "cmd",
    "entrypoint",
    "env",
    "arg",
    "label",
    "workdir",
    "user",
    "stopsignal",
    "expose",
    "volume",
    "shell",
    "maintainer",
];

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// Parses one logical line (already trimmed) into an instruction kind.
fn parse_instruction(line: &str, escape: char) -> Result<InstructionKind, String> {
    let (keyword, rest) = match line.find(char::is_whitespace) {
        Some(p) => (&line[..p], line[p..].trim_start()),
        None => (line, ""),
    };
    let upper = keyword.to_uppercase();
    let lower = keyword.to_ascii_lowercase();
    if lower == "onbuild" || lower == "healthcheck" {
        return Err(format!("{upper} is not supported"));
    }
    if !KNOWN.contains(&lower.as_str()) {
        return Err(format!("unknown instruction: {upper}"));
    }
    let (flag_words, args) = extract_flags(rest);
    let name = upper.as_str();
    use FlagKind::{Bool, Unsupported, Value};

    let kind = match lower.as_str() {
        "from" => {
            let mut flags = parse_flags(&flag_words, name, &[("platform", Value)])?;
            let words: Vec<&str> = args.split_whitespace().collect();
            let (image, alias) = match words.as_slice() {
                [] => return Err(at_least_one(name)),
                [image] => (*image, None),
                [image, as_kw, alias] if as_kw.eq_ignore_ascii_case("as") => {
                    let alias = alias.to_lowercase();
                    if !valid_stage_name(&alias) {
                        return Err(format!(
                            "invalid name for build stage: \"{alias}\", name can't start with a number or contain symbols"
                        ));
                    }
                    (*image, Some(alias))
                }
                _ => return Err("FROM requires either one or three arguments".to_string()),
            };
            InstructionKind::From {
                image: image.to_string(),
                platform: flags.take("platform"),
                alias,
            }
        }
        "copy" => {
            let mut flags = parse_flags(
                &flag_words,
                name,
                &[
                    ("from", Value),
                    ("chmod", Value),
                    ("chown", Value),
                    ("link", Bool),
                    ("parents", Unsupported),
                    ("exclude", Unsupported),
                ],
            )?;
            let (sources, dest) = parse_sources_dest(args, name)?;
            InstructionKind::Copy {
                sources,
                dest,
                from: flags.take("from"),
                chmod: flags.take("chmod"),
                chown: flags.take("chown"),
            }
        }
        "add" => {
            let mut flags = parse_flags(
                &flag_words,
                name,
                &[
                    ("chmod", Value),
                    ("chown", Value),
                    ("link", Bool),
                    ("checksum", Unsupported),
                    ("keep-git-dir", Unsupported),
                    ("exclude", Unsupported),
                    ("unpack", Unsupported),
                ],
            )?;
            let (sources, dest) = parse_sources_dest(args, name)?;
            InstructionKind::Add {
                sources,
                dest,
                chmod: flags.take("chmod"),
                chown: flags.take("chown"),
            }
        }
        "run" => {
            parse_flags(
                &flag_words,
                name,
                &[
                    ("mount", Unsupported),
                    ("network", Unsupported),
                    ("security", Unsupported),
                ],
            )?;
            let command = parse_command(args, name)?;
            match &command {
                Command::Exec(v) if v.is_empty() => return Err(at_least_one(name)),
                Command::Shell(s) => check_heredoc(s, name)?,
                Command::Exec(_) => {}
            }
            InstructionKind::Run(command)
        }
        "cmd" => {
            parse_flags(&flag_words, name, &[])?;
            InstructionKind::Cmd(parse_command(args, name)?)
        }
        "entrypoint" => {
            parse_flags(&flag_words, name, &[])?;
            InstructionKind::Entrypoint(parse_command(args, name)?)
        }
        "env" => {
            parse_flags(&flag_words, name, &[])?;
            InstructionKind::Env(parse_name_values(args, name, escape)?)
        }
        "label" => {
            parse_flags(&flag_words, name, &[])?;
            InstructionKind::Label(parse_name_values(args, name, escape)?)
        }
        "arg" => {
            parse_flags(&flag_words, name, &[])?;
            let words = parse_words(args, escape);
            if words.is_empty() {
                return Err(at_least_one(name));
            }
            let mut out = Vec::with_capacity(words.len());
            for word in words {
                let (key, default) = match word.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (word, None),
                };
                if key.is_empty() {
                    return Err("ARG names can not be blank".to_string());
                }
                out.push((key, default));
            }
            InstructionKind::Arg(out)
        }
        "workdir" | "user" | "stopsignal" | "maintainer" => {
            parse_flags(&flag_words, name, &[])?;
            if args.is_empty() {
                return Err(format!("{name} requires exactly one argument"));
            }
            let value = args.to_string();
            match lower.as_str() {
                "workdir" => InstructionKind::Workdir(value),
                "user" => InstructionKind::User(value),
                "stopsignal" => InstructionKind::StopSignal(value),
                _ => InstructionKind::Maintainer(value),
            }
        }
        "expose" => {
            parse_flags(&flag_words, name, &[])?;
            let words: Vec<String> = args.split_whitespace().map(str::to_string).collect();
            if words.is_empty() {
                return Err(at_least_one(name));
            }
            InstructionKind::Expose(words)
        }
        "volume" => {
            parse_flags(&flag_words, name, &[])?;
            let words = match parse_json_array(args) {
                JsonArray::Strings(v) => v,
                JsonArray::NotStrings => return Err(NOT_STRINGS.to_string()),
                JsonArray::NotJson => args.split_whitespace().map(str::to_string).collect(),
            };
            if words.is_empty() {
                return Err(at_least_one(name));
            }
            if words.iter().any(|w| w.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".to_string());
            }
            InstructionKind::Volume(words)
        }
        "shell" => {
            parse_flags(&flag_words, name, &[])?;
            if args.is_empty() {
                return Err(at_least_one(name));
            }
            match parse_json_array(args) {
                JsonArray::Strings(v) if v.is_empty() => return Err(at_least_one(name)),
                JsonArray::Strings(v) => InstructionKind::Shell(v),
                JsonArray::NotStrings => return Err(NOT_STRINGS.to_string()),
                JsonArray::NotJson => {
                    return Err("SHELL requires the arguments to be in JSON form".to_string())
                }
            }
        }
        _ => return Err(format!("unknown instruction: {upper}")),
    };
    Ok(kind)
}

fn at_least_one(name: &str) -> String {
    format!("{name} requires at least one argument")
}

/// `[a-z][a-z0-9-_.]*`
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
}

/// RUN / CMD / ENTRYPOINT: exec form if the text is a JSON array of strings,
/// shell form otherwise.
fn parse_command(args: &str, name: &str) -> Result<Command, String> {
    if args.is_empty() {
        return Err(at_least_one(name));
    }
    match parse_json_array(args) {
        JsonArray::Strings(v) => Ok(Command::Exec(v)),
        JsonArray::NotStrings => Err(NOT_STRINGS.to_string()),
        JsonArray::NotJson => Ok(Command::Shell(args.to_string())),
    }
}

/// COPY / ADD arguments: JSON array or whitespace-separated words; the last
/// one is the destination.
fn parse_sources_dest(args: &str, name: &str) -> Result<(Vec<String>, String), String> {
    let mut words = match parse_json_array(args) {
        JsonArray::Strings(v) => v,
        JsonArray::NotStrings => return Err(NOT_STRINGS.to_string()),
        JsonArray::NotJson => {
            check_heredoc(args, name)?;
            args.split_whitespace().map(str::to_string).collect()
        }
    };
    if words.len() < 2 {
        return Err(format!("{name} requires at least two arguments"));
    }
    let dest = words.pop().unwrap_or_default();
    Ok((words, dest))
}

/// Here-documents (`<<EOF`) are not supported; catching them here gives a
/// clear error instead of "unknown instruction" on the document's lines.
fn check_heredoc(args: &str, name: &str) -> Result<(), String> {
    for word in args.split_whitespace() {
        let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
        if let Some(rest) = rest.strip_prefix("<<") {
            let rest = rest.strip_prefix('-').unwrap_or(rest);
            if !rest.is_empty() && !rest.contains('<') {
                return Err(format!("heredoc syntax is not supported in {name}"));
            }
        }
    }
    Ok(())
}

/// ENV / LABEL: `KEY=VALUE ...` or the legacy `KEY value with spaces`.
fn parse_name_values(
    args: &str,
    name: &str,
    escape: char,
) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(args, escape);
    let Some(first) = words.first() else {
        return Err(at_least_one(name));
    };
    let blank = || format!("{name} names can not be blank");
    if !first.contains('=') {
        // Legacy form: a key, whitespace, then the rest of the line.
        let Some(pos) = args.find(char::is_whitespace) else {
            return Err(format!("{name} must have two arguments"));
        };
        let value = args[pos..].trim_start();
        if value.is_empty() {
            return Err(format!("{name} must have two arguments"));
        }
        return Ok(vec![(args[..pos].to_string(), value.to_string())]);
    }
    let mut out = Vec::with_capacity(words.len());
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "syntax error - can't find = in \"{word}\", must be of the form: name=value"
            ));
        };
        if key.is_empty() {
            return Err(blank());
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Splits on whitespace that is neither quoted nor escaped, keeping quotes
/// and escape characters in the words (BuildKit's `parseWords`).
fn parse_words(text: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut pos = 0;
    while pos < chars.len() {
        let ch = chars[pos];
        match phase {
            Phase::Spaces => {
                if !ch.is_whitespace() {
                    phase = Phase::Word;
                    continue;
                }
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                } else {
                    if ch == '\'' || ch == '"' {
                        phase = Phase::Quote(ch);
                        blank_ok = true;
                    } else if ch == escape {
                        // Keep the escape and the escaped character together;
                        // a trailing escape is dropped.
                        if pos + 1 < chars.len() {
                            word.push(ch);
                            word.push(chars[pos + 1]);
                        }
                        pos += 2;
                        continue;
                    }
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == escape && quote != '\'' {
                    if pos + 1 < chars.len() {
                        word.push(ch);
                        word.push(chars[pos + 1]);
                    } else {
                        phase = Phase::Word;
                    }
                    pos += 2;
                    continue;
                }
                word.push(ch);
            }
        }
        pos += 1;
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Splits leading `--flag` words off an instruction's arguments, as
/// BuildKit's `extractBuilderFlags` does: quotes are removed from flag words
/// and `\` escapes the next character. A bare `--` ends the flags.
fn extract_flags(line: &str) -> (Vec<String>, &str) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let rest_at = |pos: usize| -> &str {
        match chars.get(pos) {
            Some(&(byte, _)) => line[byte..].trim_start(),
            None => "",
        }
    };
    let mut words = Vec::new();
    let mut pos = 0;
    loop {
        while pos < chars.len() && chars[pos].1.is_whitespace() {
            pos += 1;
        }
        if pos >= chars.len() {
            return (words, "");
        }
        if !line[chars[pos].0..].starts_with("--") {
            return (words, rest_at(pos));
        }
        let mut word = String::new();
        let mut blank_ok = false;
        let mut quote: Option<char> = None;
        while pos < chars.len() {
            let ch = chars[pos].1;
            pos += 1;
            match quote {
                None if ch.is_whitespace() => break,
                None if ch == '\'' || ch == '"' => {
                    quote = Some(ch);
                    blank_ok = true;
                }
                Some(q) if ch == q => quote = None,
                _ if ch == '\\' => {
                    if pos < chars.len() {
                        word.push(chars[pos].1);
                        pos += 1;
                    } else {
                        quote = None;
                    }
                }
                _ => word.push(ch),
            }
        }
        if word == "--" {
            return (words, rest_at(pos));
        }
        if blank_ok || !word.is_empty() {
            words.push(word);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    /// `--name=value`.
    Value,
    /// `--name` or `--name=true|false`; accepted and ignored.
    Bool,
    /// A BuildKit flag this runtime does not implement.
    Unsupported,
}

/// Flag values by name.
struct Flags(Vec<(&'static str, String)>);

impl Flags {
    fn take(&mut self, name: &str) -> Option<String> {
        let pos = self.0.iter().position(|(n, _)| *n == name)?;
        Some(self.0.remove(pos).1)
    }
}

fn parse_flags(
    words: &[String],
    instr: &str,
    spec: &[(&'static str, FlagKind)],
) -> Result<Flags, String> {
    let mut flags = Flags(Vec::new());
    for word in words {
        let body = word.strip_prefix("--").unwrap_or(word);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(canonical, kind)) = spec.iter().find(|(n, _)| *n == name) else {
            return Err(format!("unknown flag for {instr}: --{name}"));
        };
        let value = match kind {
            FlagKind::Unsupported => return Err(format!("{instr} --{name} is not supported")),
            FlagKind::Value => match value {
                Some(v) => v.to_string(),
                None => {
                    return Err(format!(
                        "missing a value on flag --{name} for {instr} (use --{name}=value)"
                    ))
                }
            },
            FlagKind::Bool => match value {
                None => "true".to_string(),
                Some(v) if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") => {
                    v.to_ascii_lowercase()
                }
                Some(v) => {
                    return Err(format!(
                        "expecting boolean value for flag --{name} of {instr}, not: {v}"
                    ))
                }
            },
        };
        if flags.0.iter().any(|(n, _)| *n == canonical) {
            return Err(format!("duplicate flag specified for {instr}: --{name}"));
        }
        flags.0.push((canonical, value));
    }
    Ok(flags)
}

// ---------------------------------------------------------------------------
// Minimal JSON array-of-strings parser
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum JsonArray {
    /// Not a JSON array at all (shell form).
    NotJson,
    /// A valid JSON array with a non-string element (an error in BuildKit).
    NotStrings,
    /// A JSON array of strings.
    Strings(Vec<String>),
}

/// Nesting limit for skipped non-string values, to bound recursion.
const JSON_MAX_DEPTH: usize = 64;

fn parse_json_array(text: &str) -> JsonArray {
    let text = text.trim();
    if !text.starts_with('[') {
        return JsonArray::NotJson;
    }
    let chars: Vec<char> = text.chars().collect();
    let mut p = Json {
        chars: &chars,
        pos: 0,
    };
    let Some(values) = p.array_of_values() else {
        return JsonArray::NotJson;
    };
    p.ws();
    if p.pos != chars.len() {
        return JsonArray::NotJson;
    }
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        match value {
            Some(s) => out.push(s),
            None => return JsonArray::NotStrings,
        }
    }
    JsonArray::Strings(out)
}

struct Json<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Json<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.pos += 1;
        }
    }

    /// The top-level array: each element is `Some(string)` or `None` for a
    /// valid non-string value.
    fn array_of_values(&mut self) -> Option<Vec<Option<String>>> {
        self.ws();
        if !self.eat('[') {
            return None;
        }
        let mut out = Vec::new();
        self.ws();
        if self.eat(']') {
            return Some(out);
        }
        loop {
            self.ws();
            if self.peek() == Some('"') {
                out.push(Some(self.string()?));
            } else {
                self.skip_value(1)?;
                out.push(None);
            }
            self.ws();
            match self.bump()? {
                ',' => continue,
                ']' => return Some(out),
                _ => return None,
            }
        }
    }

    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > JSON_MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            '"' => self.string().map(|_| ()),
            '[' => {
                self.pos += 1;
                self.ws();
                if self.eat(']') {
                    return Some(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.bump()? {
                        ',' => continue,
                        ']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            '{' => {
                self.pos += 1;
                self.ws();
                if self.eat('}') {
                    return Some(());
                }
                loop {
                    self.ws();
                    if self.peek() != Some('"') {
                        return None;
                    }
                    self.string()?;
                    self.ws();
                    if !self.eat(':') {
                        return None;
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.bump()? {
                        ',' => continue,
                        '}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            't' => self.literal("true"),
            'f' => self.literal("false"),
            'n' => self.literal("null"),
            '-' | '0'..='9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        for expected in word.chars() {
            if self.bump()? != expected {
                return None;
            }
        }
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some('0'..='9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<()> {
        self.eat('-');
        match self.peek()? {
            '0' => self.pos += 1,
            '1'..='9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat('.') && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut v = 0;
        for _ in 0..4 {
            v = v * 16 + self.bump()?.to_digit(16)?;
        }
        Some(v)
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat('"') {
            return None;
        }
        let mut out = String::new();
        loop {
            match self.bump()? {
                '"' => return Some(out),
                '\\' => match self.bump()? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let unit = self.hex4()?;
                        out.push(self.unicode_escape(unit)?);
                    }
                    _ => return None,
                },
                c if (c as u32) < 0x20 => return None,
                c => out.push(c),
            }
        }
    }

    /// Decodes a `\uXXXX` escape (already read), pairing a high surrogate
    /// with a following `\uXXXX` low surrogate. Unpaired surrogates become
    /// U+FFFD, as in Go's encoding/json.
    fn unicode_escape(&mut self, unit: u32) -> Option<char> {
        if (0xD800..0xDC00).contains(&unit) {
            let save = self.pos;
            if self.eat('\\') && self.eat('u') {
                if let Some(low) = self.hex4() {
                    if (0xDC00..0xE000).contains(&low) {
                        let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        return Some(char::from_u32(c).unwrap_or('\u{FFFD}'));
                    }
                }
            }
            self.pos = save;
            return Some('\u{FFFD}');
        }
        Some(char::from_u32(unit).unwrap_or('\u{FFFD}'))
    }
}

// ---------------------------------------------------------------------------
// Word expansion
// ---------------------------------------------------------------------------

/// Expands one raw word as BuildKit's shell lexer does for non-`RUN`
/// instructions.
///
/// Processes quotes (`'...'` literal, `"..."` with expansion), the escape
/// character (`\` by default, `` ` `` with `# escape=``), and variables:
/// `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
/// `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`, plus the pattern forms
/// `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`,
/// `${VAR/pat/repl}` and `${VAR//pat/repl}`. Unset variables expand to
/// `""`. `lookup` returns the value of a variable if it is set.
pub fn expand_word(
    raw: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(raw, escape, lookup);
    let (result, _, _) = lexer.process(&[], false)?;
    Ok(result)
}

/// Like [`expand_word`], but splits the result into words on unquoted,
/// unescaped whitespace (including whitespace coming from variable values).
/// Empty words are dropped. Used for `EXPOSE`, `VOLUME` shell form and
/// `COPY`/`ADD` shell-form arguments.
pub fn expand_words(
    raw: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    let mut lexer = Lexer::new(raw, escape, lookup);
    let (_, words, _) = lexer.process(&[], false)?;
    Ok(words)
}

/// Accumulates words the way BuildKit's lexer does: characters from
/// variable values and plain text split on whitespace, quoted or escaped
/// characters never do.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

const MISSING_BRACE: &str = "syntax error: missing '}'";
const BAD_SUBSTITUTION: &str = "syntax error: bad substitution";

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Lexer<'a> {
    fn new(raw: &str, escape: char, lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Lexer {
            chars: raw.chars().collect(),
            pos: 0,
            escape,
            lookup,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Processes text until one of `stops` (consumed, and returned) or the
    /// end of input (only allowed when `stops` is empty). With
    /// `raw_escapes`, unquoted escape characters are kept in the result so a
    /// glob pattern can still tell escaped characters apart.
    fn process(
        &mut self,
        stops: &[char],
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>, Option<char>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stops.contains(&ch) {
                self.pos += 1;
                return Ok((result, words.finish(), Some(ch)));
            }
            match ch {
                '\'' => {
                    let s = self.single_quote()?;
                    words.add_raw_str(&s);
                    result.push_str(&s);
                }
                '"' => {
                    let s = self.double_quote()?;
                    words.add_raw_str(&s);
                    result.push_str(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    words.add_str(&s);
                    result.push_str(&s);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // A trailing escape character is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if stops.is_empty() {
            Ok((result, words.finish(), None))
        } else if stops.contains(&'}') {
            Err(ExpandError::new(MISSING_BRACE))
        } else {
            Err(ExpandError::new(format!(
                "unexpected end of statement while looking for matching {}",
                stops[0]
            )))
        }
    }

    fn single_quote(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError::new(
                        "unexpected end of statement while looking for matching single-quote",
                    ))
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(ch) = self.peek() else {
                return Err(ExpandError::new(
                    "unexpected end of statement while looking for matching double-quote",
                ));
            };
            match ch {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '$' => out.push_str(&self.dollar()?),
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        match self.peek() {
                            // Loop again to report the missing quote.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.pos += 1;
                                out.push(next);
                                continue;
                            }
                            // Any other escape is kept as is.
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// Reads a variable name `[A-Za-z_][A-Za-z0-9_]*` (possibly empty).
    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(c) = self.peek() {
            if c.is_ascii_alphabetic() || c == '_' {
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
            }
        }
        name
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// The nested word of `${VAR<op>word}`, expanded, up to the closing `}`.
    fn brace_word(&mut self) -> Result<String, ExpandError> {
        Ok(self.process(&['}'], false)?.0)
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1; // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.pos += 1; // '{'
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError::new(match self.peek() {
                None => MISSING_BRACE,
                Some(_) => BAD_SUBSTITUTION,
            }));
        }
        let Some(op) = self.next() else {
            return Err(ExpandError::new(MISSING_BRACE));
        };
        match op {
            '}' => Ok(self.get(&name).unwrap_or_default()),
            ':' => {
                let Some(modifier) = self.next() else {
                    return Err(ExpandError::new(MISSING_BRACE));
                };
                match modifier {
                    '-' | '+' | '?' => {}
                    '}' => return Err(ExpandError::new(BAD_SUBSTITUTION)),
                    other => {
                        return Err(ExpandError::new(format!(
                            "unsupported modifier ({other}) in substitution"
                        )))
                    }
                }
                let word = self.brace_word()?;
                let value = self.get(&name);
                let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
                match modifier {
                    '-' => Ok(if non_empty {
                        value.unwrap_or_default()
                    } else {
                        word
                    }),
                    '+' => Ok(if non_empty { word } else { String::new() }),
                    _ => match value {
                        Some(v) if !v.is_empty() => Ok(v),
                        Some(_) => Err(required(&name, word, "is not allowed to be empty")),
                        None => Err(required(&name, word, "is not allowed to be unset")),
                    },
                }
            }
            '-' => {
                let word = self.brace_word()?;
                Ok(self.get(&name).unwrap_or(word))
            }
            '+' => {
                let word = self.brace_word()?;
                Ok(if self.get(&name).is_some() {
                    word
                } else {
                    String::new()
                })
            }
            '?' => {
                let word = self.brace_word()?;
                self.get(&name)
                    .ok_or_else(|| required(&name, word, "is not allowed to be unset"))
            }
            '#' | '%' => {
                let greedy = self.peek() == Some(op);
                if greedy {
                    self.pos += 1;
                }
                let pattern = self.process(&['}'], true)?.0;
                let value: Vec<char> = self.get(&name).unwrap_or_default().chars().collect();
                let glob = Glob::shell(&pattern, self.escape);
                let kept = if op == '#' {
                    let lens = glob.prefix_match_lengths(&value);
                    let cut = if greedy { lens.last() } else { lens.first() };
                    &value[cut.copied().unwrap_or(0)..]
                } else {
                    // Longest suffix: earliest start; shortest: latest start.
                    let mut starts = (0..=value.len()).filter(|&s| glob.matches(&value[s..]));
                    let cut = if greedy {
                        starts.next()
                    } else {
                        starts.next_back()
                    };
                    &value[..cut.unwrap_or(value.len())]
                };
                Ok(kept.iter().collect())
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let (pattern, _, stop) = self.process(&['/', '}'], true)?;
                let replacement = if stop == Some('/') {
                    self.brace_word()?
                } else {
                    String::new()
                };
                let value = self.get(&name).unwrap_or_default();
                if pattern.is_empty() {
                    return Ok(value);
                }
                let glob = Glob::shell(&pattern, self.escape);
                Ok(replace_glob(&value, &glob, &replacement, all))
            }
            other => Err(ExpandError::new(format!(
                "unsupported modifier ({other}) in substitution"
            ))),
        }
    }
}

fn required(name: &str, word: String, default: &str) -> ExpandError {
    let message = if word.is_empty() {
        default.to_string()
    } else {
        word
    };
    ExpandError::new(format!("{name}: {message}"))
}

/// Replaces the first (or every) longest leftmost match of `glob`.
fn replace_glob(value: &str, glob: &Glob, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut pos = 0;
    let mut replaced = false;
    while pos < chars.len() {
        if !replaced || all {
            if let Some(&len) = glob.prefix_match_lengths(&chars[pos..]).last() {
                out.push_str(replacement);
                replaced = true;
                if len == 0 {
                    out.push(chars[pos]);
                    pos += 1;
                } else {
                    pos += len;
                }
                continue;
            }
        }
        out.push(chars[pos]);
        pos += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Glob patterns (shared by `${VAR#pat}` and .dockerignore)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// One literal character.
    Lit(char),
    /// `?`: any one character (not `/` in path mode).
    One,
    /// `*`: any run of characters (not `/` in path mode).
    Star,
    /// Trailing `**` in path mode: anything, `/` included.
    AnyStar,
    /// `**` (or `**/`) before more pattern in path mode: `(.*/)?`.
    DirStar,
    /// `[...]`: a character class.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    toks: Vec<Tok>,
    /// Path mode: `*`, `?` and classes never match `/`.
    paths: bool,
}

impl Glob {
    /// A shell pattern (for `${VAR#pat}` etc.): `*` and `?` match any
    /// character; a malformed `[` is literal.
    fn shell(pattern: &str, escape: char) -> Glob {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::One),
                '[' => match parse_class(&chars, i, escape) {
                    Some((tok, next)) => {
                        toks.push(tok);
                        i = next;
                    }
                    None => toks.push(Tok::Lit('[')),
                },
                _ if c == escape && i < chars.len() => {
                    toks.push(Tok::Lit(chars[i]));
                    i += 1;
                }
                _ => toks.push(Tok::Lit(c)),
            }
        }
        Glob { toks, paths: false }
    }

    /// A `.dockerignore` pattern (already cleaned); `None` if malformed.
    fn path(pattern: &str) -> Option<Glob> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    toks.push(if i >= chars.len() {
                        Tok::AnyStar
                    } else {
                        Tok::DirStar
                    });
                }
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::One),
                '[' => {
                    let (tok, next) = parse_class(&chars, i, '\\')?;
                    toks.push(tok);
                    i = next;
                }
                '\\' if i < chars.len() => {
                    toks.push(Tok::Lit(chars[i]));
                    i += 1;
                }
                _ => toks.push(Tok::Lit(c)),
            }
        }
        Some(Glob { toks, paths: true })
    }

    // NFA simulation. A state is `2 * index + inside`, where `inside` is 1
    // only while a `DirStar` has consumed characters not yet ended by `/`.

    fn state_count(&self) -> usize {
        2 * (self.toks.len() + 1)
    }

    /// Adds the states reachable without consuming input (stars may match
    /// nothing). Epsilon moves only go forward, so one pass suffices.
    fn close(&self, set: &mut [bool]) {
        for i in 0..self.toks.len() {
            if set[2 * i] && matches!(self.toks[i], Tok::Star | Tok::AnyStar | Tok::DirStar) {
                set[2 * (i + 1)] = true;
            }
        }
    }

    fn start(&self) -> Vec<bool> {
        let mut set = vec![false; self.state_count()];
        set[0] = true;
        self.close(&mut set);
        set
    }

    fn step(&self, set: &[bool], c: char) -> Vec<bool> {
        let mut next = vec![false; self.state_count()];
        let slash_ok = !(self.paths && c == '/');
        for (i, tok) in self.toks.iter().enumerate() {
            if set[2 * i + 1] {
                // Inside `(.*/)?`: keep going; a '/' may end the group.
                next[2 * i + 1] = true;
                if c == '/' {
                    next[2 * i] = true;
                }
            }
            if !set[2 * i] {
                continue;
            }
            match tok {
                Tok::Lit(l) => {
                    if *l == c {
                        next[2 * (i + 1)] = true;
                    }
                }
                Tok::One => {
                    if slash_ok {
                        next[2 * (i + 1)] = true;
                    }
                }
                Tok::Class { negated, ranges } => {
                    let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    if inside != *negated && slash_ok {
                        next[2 * (i + 1)] = true;
                    }
                }
                Tok::Star => {
                    if slash_ok {
                        next[2 * i] = true;
                    }
                }
                Tok::AnyStar => next[2 * i] = true,
                Tok::DirStar => {
                    next[2 * i + 1] = true;
                    if c == '/' {
                        next[2 * i] = true;
                    }
                }
            }
        }
        self.close(&mut next);
        next
    }

    fn accepts(&self, set: &[bool]) -> bool {
        set[2 * self.toks.len()]
    }

    /// Does the pattern match all of `text`?
    fn matches(&self, text: &[char]) -> bool {
        let mut set = self.start();
        for &c in text {
            set = self.step(&set, c);
            if !set.iter().any(|&s| s) {
                return false;
            }
        }
        self.accepts(&set)
    }

    fn matches_str(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        self.matches(&chars)
    }

    /// Lengths `n` (ascending) for which the pattern matches `text[..n]`.
    fn prefix_match_lengths(&self, text: &[char]) -> Vec<usize> {
        let mut lens = Vec::new();
        let mut set = self.start();
        if self.accepts(&set) {
            lens.push(0);
        }
        for (i, &c) in text.iter().enumerate() {
            set = self.step(&set, c);
            if !set.iter().any(|&s| s) {
                break;
            }
            if self.accepts(&set) {
                lens.push(i + 1);
            }
        }
        lens
    }

    /// Could the pattern match some path strictly below directory `dir`
    /// (i.e. `dir/<something>`)? Conservative: may say yes when it cannot.
    fn may_match_below(&self, dir: &str) -> bool {
        let mut set = self.start();
        for c in dir.chars().chain(std::iter::once('/')) {
            set = self.step(&set, c);
        }
        let last = self.toks.len();
        set.iter()
            .enumerate()
            .any(|(state, &on)| on && (state % 2 == 1 || state / 2 < last))
    }
}

/// Parses a class body starting just after `[`; returns the token and the
/// index after the closing `]`, or `None` if malformed (unterminated, empty,
/// or a range missing an end), following Go's `filepath.Match`.
fn parse_class(chars: &[char], mut i: usize, escape: char) -> Option<(Tok, usize)> {
    let mut negated = false;
    if matches!(chars.get(i), Some('!' | '^')) {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    // One class member, possibly escaped.
    let member = |i: &mut usize| -> Option<char> {
        let c = *chars.get(*i)?;
        if c == '-' || c == ']' {
            return None;
        }
        *i += 1;
        if c == escape {
            let e = *chars.get(*i)?;
            *i += 1;
            return Some(e);
        }
        Some(c)
    };
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Some((Tok::Class { negated, ranges }, i + 1));
        }
        let lo = member(&mut i)?;
        let hi = if chars.get(i) == Some(&'-') {
            i += 1;
            member(&mut i)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

// ---------------------------------------------------------------------------
// .dockerignore
// ---------------------------------------------------------------------------

/// A parsed `.dockerignore` file.
///
/// Patterns use `/` separators and are relative to the context root.
/// `*` and `?` do not match `/`, `**` matches any number of directories,
/// `[...]` is a character class and `\` escapes. A pattern starting with `!`
/// is an exception that re-includes what it matches. The last matching
/// pattern decides. Malformed patterns (e.g. an unterminated `[`, or a lone
/// `!`) are ignored.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<IgnorePattern>,
}

#[derive(Debug, Clone)]
struct IgnorePattern {
    exception: bool,
    glob: Glob,
}

impl DockerIgnore {
    /// Parses `.dockerignore` text: lines starting with `#` are comments,
    /// blank lines are skipped, whitespace around patterns is trimmed,
    /// paths are cleaned (`a/./b` becomes `a/b`, a trailing `/` is dropped)
    /// and a leading `/` is removed.
    pub fn parse(text: &str) -> DockerIgnore {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            // As in Docker, only a '#' in the first column starts a comment.
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    continue;
                }
            }
            let mut cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            if let Some(glob) = Glob::path(&cleaned) {
                patterns.push(IgnorePattern { exception, glob });
            }
        }
        DockerIgnore { patterns }
    }

    /// Is `rel_path` (relative to the context root, `/`-separated) excluded
    /// from the build context? The last matching pattern wins; a pattern
    /// also matches a path when it matches one of the path's parent
    /// directories (so `target` excludes `target/x/y`).
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = normalize_rel(rel_path);
        if path == "." {
            return false;
        }
        let parents: Vec<&str> = path
            .char_indices()
            .filter(|&(_, c)| c == '/')
            .map(|(i, _)| &path[..i])
            .collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that could change the verdict needs checking.
            if pattern.exception != excluded {
                continue;
            }
            let hit = pattern.glob.matches_str(&path)
                || parents.iter().any(|p| pattern.glob.matches_str(p));
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether anything below directory `rel_dir` may be part of the
    /// context. It is `false` only when `rel_dir` is excluded and no `!`
    /// exception pattern could match a path below it, in which case a
    /// context walker can skip the whole directory.
    pub fn may_include_below(&self, rel_dir: &str) -> bool {
        if !self.is_excluded(rel_dir) {
            return true;
        }
        let dir = normalize_rel(rel_dir);
        self.patterns
            .iter()
            .any(|p| p.exception && p.glob.may_match_below(&dir))
    }
}

/// Cleans a relative context path and strips any leading `/`; the root is `.`.
fn normalize_rel(path: &str) -> String {
    let cleaned = clean_path(path);
    match cleaned.trim_start_matches('/') {
        "" => ".".to_string(),
        rest => rest.to_string(),
    }
}

/// Lexical path cleaning as Go's `path.Clean`: collapses `//`, removes `.`
/// elements and resolves `..` where possible; no trailing `/`.
fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_ok(src: &str) -> Dockerfile {
        match parse(src, "Dockerfile") {
            Ok(df) => df,
            Err(e) => panic!("unexpected parse error: {e}"),
        }
    }

    fn parse_err(src: &str) -> ParseError {
        match parse(src, "Dockerfile") {
            Ok(df) => panic!("expected an error, got {df:?}"),
            Err(e) => e,
        }
    }

    /// Parses `FROM scratch` followed by `body` and returns the kind of the
    /// second instruction.
    fn kind_of(body: &str) -> InstructionKind {
        let df = parse_ok(&format!("FROM scratch\n{body}\n"));
        assert_eq!(df.instructions.len(), 2, "{df:?}");
        df.instructions[1].kind.clone()
    }

    fn err_of(body: &str) -> String {
        parse_err(&format!("FROM scratch\n{body}\n")).message
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expand(raw: &str, vars: &[(&str, &str)]) -> Result<String, ExpandError> {
        let map = env(vars);
        expand_word(raw, '\\', &|n: &str| map.get(n).cloned())
    }

    fn ex(raw: &str, vars: &[(&str, &str)]) -> String {
        expand(raw, vars).unwrap_or_else(|e| panic!("expanding {raw:?}: {e}"))
    }

    fn ex_words(raw: &str, vars: &[(&str, &str)]) -> Vec<String> {
        let map = env(vars);
        expand_words(raw, '\\', &|n: &str| map.get(n).cloned())
            .unwrap_or_else(|e| panic!("expanding {raw:?}: {e}"))
    }

    // ----- FROM -----

    #[test]
    fn from_forms() {
        let df = parse_ok("FROM alpine:3.19\n");
        assert_eq!(df.escape, '\\');
        assert_eq!(
            df.instructions[0],
            Instruction {
                line: 1,
                text: "FROM alpine:3.19".into(),
                kind: InstructionKind::From {
                    image: "alpine:3.19".into(),
                    platform: None,
                    alias: None
                }
            }
        );
        let df = parse_ok("from --platform=$BUILDPLATFORM golang:1.22 as Build-Stage_1.x\n");
        assert_eq!(
            df.instructions[0].kind,
            InstructionKind::From {
                image: "golang:1.22".into(),
                platform: Some("$BUILDPLATFORM".into()),
                alias: Some("build-stage_1.x".into())
            }
        );
        assert_eq!(
            parse_ok("FROM ${BASE}:${TAG} AS b").instructions[0].kind,
            InstructionKind::From {
                image: "${BASE}:${TAG}".into(),
                platform: None,
                alias: Some("b".into())
            }
        );
    }

    #[test]
    fn from_errors() {
        assert_eq!(
            parse_err("FROM\n").message,
            "FROM requires at least one argument"
        );
        assert_eq!(
            parse_err("FROM a b\n").message,
            "FROM requires either one or three arguments"
        );
        assert_eq!(
            parse_err("FROM a AS\n").message,
            "FROM requires either one or three arguments"
        );
        assert_eq!(
            parse_err("FROM a FOR b\n").message,
            "FROM requires either one or three arguments"
        );
        assert!(parse_err("FROM a AS 1st\n")
            .message
            .starts_with("invalid name for build stage: \"1st\""));
        assert!(parse_err("FROM a AS b$c\n")
            .message
            .contains("invalid name for build stage"));
        assert_eq!(
            parse_err("FROM --platform linux/amd64 a\n").message,
            "missing a value on flag --platform for FROM (use --platform=value)"
        );
        assert_eq!(
            parse_err("FROM --plat=x a\n").message,
            "unknown flag for FROM: --plat"
        );
    }

    #[test]
    fn instructions_before_from() {
        let df = parse_ok("ARG VERSION=1\nFROM alpine:$VERSION\n");
        assert_eq!(
            df.instructions[0].kind,
            InstructionKind::Arg(vec![("VERSION".into(), Some("1".into()))])
        );
        let e = parse_err("# comment\nRUN echo hi\nFROM a\n");
        assert_eq!(e.message, "no build stage in current context");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn empty_file() {
        let e = parse_err("# just a comment\n\n");
        assert_eq!(e.message, "file with no instructions");
        assert_eq!(e.to_string(), "Dockerfile:1: file with no instructions");
        assert_eq!(parse_err("").message, "file with no instructions");
        let e = parse_err("\nARG A=1\nARG B\n");
        assert_eq!(e.message, "dockerfile contains no stages to build");
        assert_eq!(e.line, 2);
    }

    // ----- COPY / ADD -----

    #[test]
    fn copy_forms() {
        assert_eq!(
            kind_of("COPY a b /dest/"),
            InstructionKind::Copy {
                sources: strings(&["a", "b"]),
                dest: "/dest/".into(),
                from: None,
                chmod: None,
                chown: None
            }
        );
        assert_eq!(
            kind_of(
                "copy --from=build --chmod=0755 --chown=1000:1000 --link /out/app  /usr/bin/app"
            ),
            InstructionKind::Copy {
                sources: strings(&["/out/app"]),
                dest: "/usr/bin/app".into(),
                from: Some("build".into()),
                chmod: Some("0755".into()),
                chown: Some("1000:1000".into())
            }
        );
        assert_eq!(
            kind_of(r#"COPY ["my file.txt", "other", "/dest dir/"]"#),
            InstructionKind::Copy {
                sources: strings(&["my file.txt", "other"]),
                dest: "/dest dir/".into(),
                from: None,
                chmod: None,
                chown: None
            }
        );
        // Quoted flag values lose their quotes, as in BuildKit.
        match kind_of(r#"COPY --from="stage one" a b"#) {
            InstructionKind::Copy { from, .. } => assert_eq!(from.as_deref(), Some("stage one")),
            other => panic!("{other:?}"),
        }
        // Shell-form words keep variables raw.
        match kind_of("COPY $SRC ${DEST}") {
            InstructionKind::Copy { sources, dest, .. } => {
                assert_eq!(sources, strings(&["$SRC"]));
                assert_eq!(dest, "${DEST}");
            }
            other => panic!("{other:?}"),
        }
        match kind_of("COPY --link=false a b") {
            InstructionKind::Copy { sources, .. } => assert_eq!(sources, strings(&["a"])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn copy_errors() {
        assert_eq!(
            err_of("COPY onlyone"),
            "COPY requires at least two arguments"
        );
        assert_eq!(err_of("COPY"), "COPY requires at least two arguments");
        assert_eq!(
            err_of(r#"COPY ["a"]"#),
            "COPY requires at least two arguments"
        );
        assert_eq!(
            err_of("COPY --parents a b"),
            "COPY --parents is not supported"
        );
        assert_eq!(
            err_of("COPY --exclude=*.md a b"),
            "COPY --exclude is not supported"
        );
        assert_eq!(
            err_of("COPY --bogus=1 a b"),
            "unknown flag for COPY: --bogus"
        );
        assert_eq!(
            err_of("COPY --from build a b"),
            "missing a value on flag --from for COPY (use --from=value)"
        );
        assert_eq!(
            err_of("COPY --from=a --from=b x y"),
            "duplicate flag specified for COPY: --from"
        );
        assert_eq!(
            err_of("COPY --link=maybe a b"),
            "expecting boolean value for flag --link of COPY, not: maybe"
        );
        assert_eq!(
            err_of("COPY <<EOF /x"),
            "heredoc syntax is not supported in COPY"
        );
        assert_eq!(err_of(r#"COPY ["a", 1]"#), NOT_STRINGS);
    }

    #[test]
    fn add_forms_and_errors() {
        assert_eq!(
            kind_of("ADD --chown=app:app --chmod=644 https://example.com/x.tgz /opt/"),
            InstructionKind::Add {
                sources: strings(&["https://example.com/x.tgz"]),
                dest: "/opt/".into(),
                chmod: Some("644".into()),
                chown: Some("app:app".into())
            }
        );
        assert_eq!(
            kind_of(r#"ADD ["a b", "/c"]"#),
            InstructionKind::Add {
                sources: strings(&["a b"]),
                dest: "/c".into(),
                chmod: None,
                chown: None
            }
        );
        assert_eq!(
            err_of("ADD --checksum=sha256:abc https://x/y /y"),
            "ADD --checksum is not supported"
        );
        assert_eq!(
            err_of("ADD --keep-git-dir=true https://x/y.git /y"),
            "ADD --keep-git-dir is not supported"
        );
        assert_eq!(err_of("ADD --from=x a b"), "unknown flag for ADD: --from");
        assert_eq!(err_of("ADD a"), "ADD requires at least two arguments");
    }

    // ----- RUN / CMD / ENTRYPOINT / SHELL -----

    #[test]
    fn run_exec_and_shell_forms() {
        assert_eq!(
            kind_of(r#"RUN ["/bin/sh", "-c", "echo \"hi\" \u00e9 \ud83d\ude00"]"#),
            InstructionKind::Run(Command::Exec(strings(&[
                "/bin/sh",
                "-c",
                "echo \"hi\" \u{e9} \u{1F600}"
            ])))
        );
        assert_eq!(
            kind_of("RUN echo $HOME && ls -la"),
            InstructionKind::Run(Command::Shell("echo $HOME && ls -la".into()))
        );
        // Not valid JSON: shell form, as BuildKit does.
        assert_eq!(
            kind_of("RUN [ -f /etc/os-release ] && cat /etc/os-release"),
            InstructionKind::Run(Command::Shell(
                "[ -f /etc/os-release ] && cat /etc/os-release".into()
            ))
        );
        assert_eq!(
            kind_of("RUN ['single', 'quotes']"),
            InstructionKind::Run(Command::Shell("['single', 'quotes']".into()))
        );
        assert_eq!(
            kind_of(r#"RUN ["a", "b"] trailing"#),
            InstructionKind::Run(Command::Shell(r#"["a", "b"] trailing"#.into()))
        );
        assert_eq!(
            kind_of(r#"RUN ["unterminated]"#),
            InstructionKind::Run(Command::Shell(r#"["unterminated]"#.into()))
        );
        assert_eq!(
            kind_of("RUN   [ \"spaced\" ,\"out\" ]   "),
            InstructionKind::Run(Command::Exec(strings(&["spaced", "out"])))
        );
    }

    #[test]
    fn run_errors() {
        assert_eq!(err_of("RUN"), "RUN requires at least one argument");
        assert_eq!(err_of("RUN []"), "RUN requires at least one argument");
        assert_eq!(
            err_of("RUN --mount=type=cache,target=/root/.cache cargo build"),
            "RUN --mount is not supported"
        );
        assert_eq!(
            err_of("RUN --network=none true"),
            "RUN --network is not supported"
        );
        assert_eq!(
            err_of("RUN --security=insecure true"),
            "RUN --security is not supported"
        );
        assert_eq!(err_of("RUN --foo true"), "unknown flag for RUN: --foo");
        assert_eq!(
            err_of(r#"RUN ["a", {"b": [1, 2.5e3, true, null]}]"#),
            NOT_STRINGS
        );
        assert_eq!(
            err_of("RUN cat <<EOF > /x"),
            "heredoc syntax is not supported in RUN"
        );
        // A here-string is not a heredoc.
        assert_eq!(
            kind_of("RUN cat <<< hi"),
            InstructionKind::Run(Command::Shell("cat <<< hi".into()))
        );
    }

    #[test]
    fn cmd_and_entrypoint() {
        assert_eq!(
            kind_of(r#"CMD ["nginx", "-g", "daemon off;"]"#),
            InstructionKind::Cmd(Command::Exec(strings(&["nginx", "-g", "daemon off;"])))
        );
        assert_eq!(
            kind_of("CMD echo hello world"),
            InstructionKind::Cmd(Command::Shell("echo hello world".into()))
        );
        assert_eq!(
            kind_of("CMD []"),
            InstructionKind::Cmd(Command::Exec(vec![]))
        );
        assert_eq!(
            kind_of(r#"ENTRYPOINT ["/app"]"#),
            InstructionKind::Entrypoint(Command::Exec(strings(&["/app"])))
        );
        assert_eq!(
            kind_of("Entrypoint exec /app --flag"),
            InstructionKind::Entrypoint(Command::Shell("exec /app --flag".into()))
        );
        assert_eq!(err_of("CMD"), "CMD requires at least one argument");
        assert_eq!(
            err_of("ENTRYPOINT"),
            "ENTRYPOINT requires at least one argument"
        );
        assert_eq!(err_of("CMD --help"), "unknown flag for CMD: --help");
    }

    #[test]
    fn shell_instruction() {
        assert_eq!(
            kind_of(r#"SHELL ["/bin/bash", "-eo", "pipefail", "-c"]"#),
            InstructionKind::Shell(strings(&["/bin/bash", "-eo", "pipefail", "-c"]))
        );
        assert_eq!(
            err_of("SHELL /bin/bash -c"),
            "SHELL requires the arguments to be in JSON form"
        );
        assert_eq!(err_of("SHELL []"), "SHELL requires at least one argument");
        assert_eq!(err_of("SHELL"), "SHELL requires at least one argument");
    }

    // ----- ENV / LABEL / ARG -----

    #[test]
    fn env_forms() {
        assert_eq!(
            kind_of(r#"ENV A=1 B="two words" C=three\ words D='$x' E="" F="a \"q\"""#),
            InstructionKind::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into()),
                ("C".into(), "three\\ words".into()),
                ("D".into(), "'$x'".into()),
                ("E".into(), "\"\"".into()),
                ("F".into(), "\"a \\\"q\\\"\"".into()),
            ])
        );
        assert_eq!(
            kind_of("ENV PATH /usr/local/bin:$PATH  with   spaces"),
            InstructionKind::Env(vec![(
                "PATH".into(),
                "/usr/local/bin:$PATH  with   spaces".into()
            )])
        );
        assert_eq!(
            kind_of("ENV EMPTY="),
            InstructionKind::Env(vec![("EMPTY".into(), "".into())])
        );
        assert_eq!(
            kind_of("ENV A=b=c"),
            InstructionKind::Env(vec![("A".into(), "b=c".into())])
        );
    }

    #[test]
    fn env_errors() {
        assert_eq!(err_of("ENV KEY"), "ENV must have two arguments");
        assert_eq!(err_of("ENV"), "ENV requires at least one argument");
        assert_eq!(err_of("ENV =value"), "ENV names can not be blank");
        assert_eq!(err_of("ENV A=1 =2"), "ENV names can not be blank");
        assert!(err_of("ENV A=1 B").contains("can't find = in \"B\""));
    }

    #[test]
    fn label_forms() {
        assert_eq!(
            kind_of(
                r#"LABEL "com.example.vendor"="ACME Inc" version=1.0 description="multi word""#
            ),
            InstructionKind::Label(vec![
                ("\"com.example.vendor\"".into(), "\"ACME Inc\"".into()),
                ("version".into(), "1.0".into()),
                ("description".into(), "\"multi word\"".into()),
            ])
        );
        assert_eq!(
            kind_of("LABEL maintainer someone@example.com"),
            InstructionKind::Label(vec![("maintainer".into(), "someone@example.com".into())])
        );
        assert_eq!(err_of("LABEL"), "LABEL requires at least one argument");
        assert_eq!(err_of("LABEL =x"), "LABEL names can not be blank");
    }

    #[test]
    fn arg_forms() {
        assert_eq!(
            kind_of(r#"ARG A B=2 C="x y" D="""#),
            InstructionKind::Arg(vec![
                ("A".into(), None),
                ("B".into(), Some("2".into())),
                ("C".into(), Some("\"x y\"".into())),
                ("D".into(), Some("\"\"".into())),
            ])
        );
        assert_eq!(err_of("ARG"), "ARG requires at least one argument");
        assert_eq!(err_of("ARG =1"), "ARG names can not be blank");
    }

    // ----- simple instructions -----

    #[test]
    fn single_value_instructions() {
        assert_eq!(
            kind_of("WORKDIR /app/$NAME dir"),
            InstructionKind::Workdir("/app/$NAME dir".into())
        );
        assert_eq!(
            kind_of("USER 1000:1000"),
            InstructionKind::User("1000:1000".into())
        );
        assert_eq!(
            kind_of("STOPSIGNAL SIGTERM"),
            InstructionKind::StopSignal("SIGTERM".into())
        );
        assert_eq!(
            kind_of("MAINTAINER Jane Doe <jane@example.com>"),
            InstructionKind::Maintainer("Jane Doe <jane@example.com>".into())
        );
        assert_eq!(err_of("WORKDIR"), "WORKDIR requires exactly one argument");
        assert_eq!(err_of("USER   "), "USER requires exactly one argument");
        assert_eq!(err_of("WORKDIR --x=1 /a"), "unknown flag for WORKDIR: --x");
    }

    #[test]
    fn expose_and_volume() {
        assert_eq!(
            kind_of("EXPOSE 80/tcp  443 ${PORT}"),
            InstructionKind::Expose(strings(&["80/tcp", "443", "${PORT}"]))
        );
        assert_eq!(err_of("EXPOSE"), "EXPOSE requires at least one argument");
        assert_eq!(
            kind_of("VOLUME /data /var/log"),
            InstructionKind::Volume(strings(&["/data", "/var/log"]))
        );
        assert_eq!(
            kind_of(r#"VOLUME ["/data", "/with space"]"#),
            InstructionKind::Volume(strings(&["/data", "/with space"]))
        );
        assert_eq!(err_of("VOLUME"), "VOLUME requires at least one argument");
        assert_eq!(err_of("VOLUME []"), "VOLUME requires at least one argument");
        assert_eq!(
            err_of(r#"VOLUME ["/a", " "]"#),
            "VOLUME specified can not be an empty string"
        );
    }

    #[test]
    fn unsupported_and_unknown_instructions() {
        assert_eq!(err_of("ONBUILD RUN true"), "ONBUILD is not supported");
        assert_eq!(
            err_of("healthcheck CMD curl -f http://localhost/"),
            "HEALTHCHECK is not supported"
        );
        let e = parse_err("FROM a\nRUN true\nFOO bar\n");
        assert_eq!(e.message, "unknown instruction: FOO");
        assert_eq!(e.line, 3);
        assert_eq!(e.text, "FOO bar");
        assert_eq!(
            e.to_string(),
            "Dockerfile:3: unknown instruction: FOO: FOO bar"
        );
        assert_eq!(
            parse_err("FROM a\nfoo\n").message,
            "unknown instruction: FOO"
        );
    }

    // ----- lines, continuations, comments, directives -----

    #[test]
    fn keywords_are_case_insensitive_and_text_is_as_written() {
        let df = parse_ok("FrOm a\n  rUn   echo   hi  \n");
        assert_eq!(df.instructions[1].text, "rUn   echo   hi");
        assert_eq!(df.instructions[1].line, 2);
        assert_eq!(
            df.instructions[1].kind,
            InstructionKind::Run(Command::Shell("echo   hi".into()))
        );
    }

    #[test]
    fn continuation_with_comments_and_blank_lines() {
        let src = concat!(
            "FROM alpine\n",
            "RUN apk add \\\n",
            "# a comment inside the continuation\n",
            "\n",
            "    curl \\\n",
            "  # indented comment \\\n",
            "    git\n",
            "CMD [\"sh\"]\n",
        );
        let df = parse_ok(src);
        assert_eq!(df.instructions.len(), 3);
        let run = &df.instructions[1];
        assert_eq!(run.line, 2);
        assert_eq!(run.text, "RUN apk add curl git");
        assert_eq!(
            run.kind,
            InstructionKind::Run(Command::Shell("apk add     curl     git".into()))
        );
        assert_eq!(df.instructions[2].line, 8);
    }

    #[test]
    fn continuation_joins_without_separator_like_buildkit() {
        let df = parse_ok("FROM a\nRUN echo con\\\ncat\nENV A=1 \\\n    B=2\n");
        assert_eq!(
            df.instructions[1].kind,
            InstructionKind::Run(Command::Shell("echo concat".into()))
        );
        assert_eq!(df.instructions[1].text, "RUN echo con cat");
        assert_eq!(
            df.instructions[2].kind,
            InstructionKind::Env(vec![("A".into(), "1".into()), ("B".into(), "2".into())])
        );
        assert_eq!(df.instructions[2].text, "ENV A=1 B=2");
    }

    #[test]
    fn continuation_with_trailing_blanks_and_crlf() {
        let df = parse_ok("FROM a\r\nRUN echo a \\  \r\n  b\r\n");
        assert_eq!(
            df.instructions[1].kind,
            InstructionKind::Run(Command::Shell("echo a   b".into()))
        );
        assert_eq!(df.instructions[1].text, "RUN echo a b");
    }

    #[test]
    fn json_form_across_continuation_lines() {
        let df = parse_ok("FROM a\nCMD [\"/bin/app\", \\\n  # the port\n  \"--port=80\"]\n");
        assert_eq!(
            df.instructions[1].kind,
            InstructionKind::Cmd(Command::Exec(strings(&["/bin/app", "--port=80"])))
        );
        assert_eq!(df.instructions[1].text, r#"CMD ["/bin/app", "--port=80"]"#);
    }

    #[test]
    fn double_dash_ends_flags() {
        assert_eq!(
            kind_of("COPY --chmod=600 -- --weird-name /dst"),
            InstructionKind::Copy {
                sources: strings(&["--weird-name"]),
                dest: "/dst".into(),
                from: None,
                chmod: Some("600".into()),
                chown: None
            }
        );
    }

    #[test]
    fn continuation_at_end_of_file() {
        let df = parse_ok("FROM a\nRUN echo hi \\\n");
        assert_eq!(
            df.instructions[1].kind,
            InstructionKind::Run(Command::Shell("echo hi".into()))
        );
        assert_eq!(err_of("RUN \\"), "RUN requires at least one argument");
    }

    #[test]
    fn error_line_numbers_with_continuations() {
        let src = "FROM alpine\n\
                   RUN echo one \\\n\
                       two \\\n\
                       three\n\
                   # comment\n\
                   \n\
                   COPY \\\n\
                     onlyone\n\
                   RUN true\n";
        let e = parse_err(src);
        assert_eq!(e.line, 7);
        assert_eq!(e.file, "Dockerfile");
        assert_eq!(e.text, "COPY onlyone");
        assert_eq!(e.message, "COPY requires at least two arguments");
        assert_eq!(
            e.to_string(),
            "Dockerfile:7: COPY requires at least two arguments: COPY onlyone"
        );
        let e = parse("FROM a\nRUN a \\\n b\nWHAT\n", "sub/Containerfile").unwrap_err();
        assert_eq!(e.line, 4);
        assert_eq!(
            e.to_string(),
            "sub/Containerfile:4: unknown instruction: WHAT: WHAT"
        );
    }

    #[test]
    fn escape_directive_backtick() {
        let src = concat!(
            "# escape=`\n",
            "FROM mcr.microsoft.com/windows\n",
            "COPY testfile.txt c:\\\n",
            "RUN dir c:\\ `\n",
            "  && echo done\n",
        );
        let df = parse_ok(src);
        assert_eq!(df.escape, '`');
        assert_eq!(df.instructions.len(), 3);
        assert_eq!(
            df.instructions[1].kind,
            InstructionKind::Copy {
                sources: strings(&["testfile.txt"]),
                dest: "c:\\".into(),
                from: None,
                chmod: None,
                chown: None
            }
        );
        assert_eq!(df.instructions[2].line, 4);
        assert_eq!(df.instructions[2].text, "RUN dir c:\\ && echo done");
        assert_eq!(
            df.instructions[2].kind,
            InstructionKind::Run(Command::Shell("dir c:\\   && echo done".into()))
        );
    }

    #[test]
    fn escape_directive_affects_env_words() {
        let df = parse_ok("#escape = `\nFROM a\nENV A=x` y B=c\\d\n");
        assert_eq!(
            df.instructions[1].kind,
            InstructionKind::Env(vec![
                ("A".into(), "x` y".into()),
                ("B".into(), "c\\d".into())
            ])
        );
    }

    #[test]
    fn directives_rules() {
        // syntax/check accepted and ignored, case-insensitive, spaces allowed.
        let df =
            parse_ok("# syntax=docker/dockerfile:1\n# CHECK = skip=all\n#  Escape = `\nFROM a\n");
        assert_eq!(df.escape, '`');
        // After a blank line, directives are plain comments.
        let df = parse_ok("# syntax=x\n\n# escape=`\nFROM a\nRUN a \\\n b\n");
        assert_eq!(df.escape, '\\');
        assert_eq!(df.instructions.len(), 2);
        // After a non-directive comment, too.
        assert_eq!(parse_ok("# hello\n# escape=`\nFROM a\n").escape, '\\');
        // An unknown directive ends the directives.
        assert_eq!(parse_ok("# foo=bar\n# escape=`\nFROM a\n").escape, '\\');
        // After an instruction, too.
        assert_eq!(parse_ok("FROM a\n# escape=`\n").escape, '\\');
        // Bad escape token.
        let e = parse_err("# escape=x\nFROM a\n");
        assert_eq!(e.line, 1);
        assert_eq!(e.message, "invalid escape token 'x' does not match ` or \\");
        // Duplicate directive.
        let e = parse_err("# escape=`\n# escape=\\\nFROM a\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.message, "only one escape parser directive can be used");
        // A BOM is ignored.
        assert_eq!(parse_ok("\u{feff}# escape=`\nFROM a\n").escape, '`');
    }

    #[test]
    fn flag_extraction_details() {
        let (flags, rest) = extract_flags(r#"--a=1 --b="x y" --c='' --d=\"q -- --notflag rest"#);
        assert_eq!(flags, strings(&["--a=1", "--b=x y", "--c=", "--d=\"q"]));
        assert_eq!(rest, "--notflag rest");
        let (flags, rest) = extract_flags("  --link   src  dst");
        assert_eq!(flags, strings(&["--link"]));
        assert_eq!(rest, "src  dst");
        let (flags, rest) = extract_flags("-x --y");
        assert!(flags.is_empty());
        assert_eq!(rest, "-x --y");
        let (flags, rest) = extract_flags("--only");
        assert_eq!(flags, strings(&["--only"]));
        assert_eq!(rest, "");
    }

    #[test]
    fn parse_words_details() {
        assert_eq!(
            parse_words(r#"a="b c" d='e f' g=h\ i j"#, '\\'),
            strings(&[r#"a="b c""#, "d='e f'", r"g=h\ i", "j"])
        );
        assert_eq!(
            parse_words(r#"a="x \" y" b"#, '\\'),
            strings(&[r#"a="x \" y""#, "b"])
        );
        assert_eq!(parse_words(r"a='x \' b", '\\'), strings(&[r"a='x \'", "b"]));
        assert_eq!(parse_words("''  x", '\\'), strings(&["''", "x"]));
        assert!(parse_words("   ", '\\').is_empty());
    }

    #[test]
    fn json_parser_details() {
        assert_eq!(parse_json_array("[]"), JsonArray::Strings(vec![]));
        assert_eq!(
            parse_json_array(r#"["\"\\\/\b\f\n\r\t", "\u0041\u00DF"]"#),
            JsonArray::Strings(strings(&["\"\\/\u{8}\u{c}\n\r\t", "A\u{df}"]))
        );
        assert_eq!(
            parse_json_array(r#"["\ud83d\ude00", "\ud83d", "\ude00x"]"#),
            JsonArray::Strings(strings(&["\u{1F600}", "\u{FFFD}", "\u{FFFD}x"]))
        );
        assert_eq!(parse_json_array("[\"a\",]"), JsonArray::NotJson);
        assert_eq!(parse_json_array("[\"a\" \"b\"]"), JsonArray::NotJson);
        assert_eq!(parse_json_array("[\"a\tb\"]"), JsonArray::NotJson);
        assert_eq!(parse_json_array(r#"["\x"]"#), JsonArray::NotJson);
        assert_eq!(parse_json_array(r#"["\u12"]"#), JsonArray::NotJson);
        assert_eq!(parse_json_array("[01]"), JsonArray::NotJson);
        assert_eq!(parse_json_array("[1.]"), JsonArray::NotJson);
        assert_eq!(parse_json_array("[-1.5E+10, \"a\"]"), JsonArray::NotStrings);
        assert_eq!(parse_json_array("[{}, []]"), JsonArray::NotStrings);
        assert_eq!(parse_json_array("[tru]"), JsonArray::NotJson);
        assert_eq!(parse_json_array("echo"), JsonArray::NotJson);
        let deep = format!("[{}{}]", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse_json_array(&deep), JsonArray::NotJson);
    }

    #[test]
    fn keyword_helper() {
        let df = parse_ok("FROM a\nCOPY a b\nMAINTAINER x\n");
        let names: Vec<_> = df.instructions.iter().map(|i| i.kind.keyword()).collect();
        assert_eq!(names, ["FROM", "COPY", "MAINTAINER"]);
    }

    #[test]
    fn full_dockerfile() {
        let src = r#"# syntax=docker/dockerfile:1
ARG RUST_VERSION=1.77

FROM rust:${RUST_VERSION} AS builder
WORKDIR /src
COPY . .
RUN cargo build --release \
    --target wasm32-wasip1

FROM scratch
LABEL org.opencontainers.image.title="demo"
ENV RUST_LOG=info
COPY --from=builder /src/target/wasm32-wasip1/release/app.wasm /app.wasm
EXPOSE 8080
USER 1000
ENTRYPOINT ["/app.wasm"]
CMD ["--help"]
"#;
        let df = parse_ok(src);
        let lines: Vec<usize> = df.instructions.iter().map(|i| i.line).collect();
        assert_eq!(lines, [2, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17]);
        assert_eq!(
            df.instructions[4].text,
            "RUN cargo build --release --target wasm32-wasip1"
        );
    }

    // ----- expansion -----

    #[test]
    fn expand_plain_variables() {
        let vars = [("A", "alpha"), ("B_2", "beta"), ("EMPTY", "")];
        assert_eq!(ex("$A", &vars), "alpha");
        assert_eq!(ex("${A}", &vars), "alpha");
        assert_eq!(ex("x$A.y", &vars), "xalpha.y");
        assert_eq!(ex("${A}bc", &vars), "alphabc");
        assert_eq!(ex("$Abc", &vars), "");
        assert_eq!(ex("$B_2-$UNSET-$EMPTY.", &vars), "beta--.");
        assert_eq!(ex("/usr/$A/bin", &vars), "/usr/alpha/bin");
    }

    #[test]
    fn expand_literal_dollars() {
        assert_eq!(ex("$", &[]), "$");
        assert_eq!(ex("a$ b", &[]), "a$ b");
        assert_eq!(ex("$1 $$ $-", &[("1", "no")]), "$1 $$ $-");
        assert_eq!(ex("cost: 5$", &[]), "cost: 5$");
    }

    #[test]
    fn expand_defaults_and_alternatives() {
        let vars = [("SET", "v"), ("EMPTY", "")];
        assert_eq!(ex("${UNSET:-def}", &vars), "def");
        assert_eq!(ex("${EMPTY:-def}", &vars), "def");
        assert_eq!(ex("${SET:-def}", &vars), "v");
        assert_eq!(ex("${UNSET-def}", &vars), "def");
        assert_eq!(ex("${EMPTY-def}", &vars), "");
        assert_eq!(ex("${SET-def}", &vars), "v");
        assert_eq!(ex("${SET:+alt}", &vars), "alt");
        assert_eq!(ex("${EMPTY:+alt}", &vars), "");
        assert_eq!(ex("${UNSET:+alt}", &vars), "");
        assert_eq!(ex("${SET+alt}", &vars), "alt");
        assert_eq!(ex("${EMPTY+alt}", &vars), "alt");
        assert_eq!(ex("${UNSET+alt}", &vars), "");
        assert_eq!(ex("${UNSET:-}", &vars), "");
    }

    #[test]
    fn expand_nested_defaults_and_quotes() {
        let vars = [("A", "a"), ("B", "b")];
        assert_eq!(ex("${UNSET:-${A}}", &vars), "a");
        assert_eq!(ex("${U1:-${U2:-${B}x}}", &vars), "bx");
        assert_eq!(ex("${U1:-pre-$A-post}", &vars), "pre-a-post");
        assert_eq!(ex("${A:+[${B:-no}]}", &vars), "[b]");
        assert_eq!(ex(r#"${U:-"a b}"}"#, &vars), "a b}");
        assert_eq!(ex("${U:-'$A'}", &vars), "$A");
        assert_eq!(ex(r"${U:-a\}b}", &vars), "a}b");
        assert_eq!(ex("${U:-x y}", &vars), "x y");
    }

    #[test]
    fn expand_required() {
        let vars = [("SET", "v"), ("EMPTY", "")];
        assert_eq!(ex("${SET:?must be set}", &vars), "v");
        assert_eq!(
            expand("${UNSET:?must be set}", &vars).unwrap_err().message,
            "UNSET: must be set"
        );
        assert_eq!(
            expand("${EMPTY:?}", &vars).unwrap_err().message,
            "EMPTY: is not allowed to be empty"
        );
        assert_eq!(
            expand("${UNSET:?}", &vars).unwrap_err().message,
            "UNSET: is not allowed to be unset"
        );
        assert_eq!(ex("${EMPTY?oops}", &vars), "");
        assert_eq!(
            expand("${UNSET?oops $SET}", &vars).unwrap_err().to_string(),
            "UNSET: oops v"
        );
    }

    #[test]
    fn expand_quotes_and_escapes() {
        let vars = [("A", "alpha"), ("SP", "x y")];
        assert_eq!(ex("'$A'", &vars), "$A");
        assert_eq!(ex("\"$A\"", &vars), "alpha");
        assert_eq!(ex("\"a b\"'c d'e", &vars), "a bc de");
        assert_eq!(ex(r"\$A", &vars), "$A");
        assert_eq!(ex(r"a\ b", &vars), "a b");
        assert_eq!(ex(r"\\", &vars), "\\");
        assert_eq!(ex(r"a\", &vars), "a");
        assert_eq!(ex(r#""\$A \"q\" \\ \n""#, &vars), "$A \"q\" \\ \\n");
        assert_eq!(ex(r#"'it\'"s""#, &vars), "it\\s");
        assert_eq!(ex(r#""${A}-'x'""#, &vars), "alpha-'x'");
        assert_eq!(ex("\"\"", &vars), "");
    }

    #[test]
    fn expand_accepts_untyped_closures() {
        let vars: HashMap<String, String> = env(&[("K", "v")]);
        assert_eq!(
            expand_word("$K", '\\', &|k| vars.get(k).cloned()).unwrap(),
            "v"
        );
        assert_eq!(
            expand_words("$K w", '\\', &|k| vars.get(k).cloned()).unwrap(),
            strings(&["v", "w"])
        );
    }

    #[test]
    fn expand_backtick_escape() {
        let map = env(&[("A", "v")]);
        let look = |n: &str| map.get(n).cloned();
        assert_eq!(expand_word(r"c:\dir\$A", '`', &look).unwrap(), r"c:\dir\v");
        assert_eq!(expand_word("`$A", '`', &look).unwrap(), "$A");
        assert_eq!(expand_word("\"a`\"b\"", '`', &look).unwrap(), "a\"b");
        assert_eq!(expand_word("\"a`xb\"", '`', &look).unwrap(), "a`xb");
    }

    #[test]
    fn expand_errors() {
        let msg = |raw: &str| expand(raw, &[("A", "a")]).unwrap_err().message;
        assert_eq!(
            msg("'abc"),
            "unexpected end of statement while looking for matching single-quote"
        );
        assert_eq!(
            msg("\"abc"),
            "unexpected end of statement while looking for matching double-quote"
        );
        assert_eq!(
            msg("\"abc\\"),
            "unexpected end of statement while looking for matching double-quote"
        );
        assert_eq!(msg("${A"), "syntax error: missing '}'");
        assert_eq!(msg("${"), "syntax error: missing '}'");
        assert_eq!(msg("${A:-abc"), "syntax error: missing '}'");
        assert_eq!(msg("${A:"), "syntax error: missing '}'");
        assert_eq!(msg("${}"), "syntax error: bad substitution");
        assert_eq!(msg("${:-x}"), "syntax error: bad substitution");
        assert_eq!(msg("${1}"), "syntax error: bad substitution");
        assert_eq!(msg("${A:}"), "syntax error: bad substitution");
        assert_eq!(msg("${A:x}"), "unsupported modifier (x) in substitution");
        assert_eq!(msg("${A!}"), "unsupported modifier (!) in substitution");
        assert_eq!(
            msg("${A:-'x}"),
            "unexpected end of statement while looking for matching single-quote"
        );
    }

    #[test]
    fn expand_pattern_operations() {
        let vars = [("F", "dir/file.tar.gz"), ("P", "a-b-c")];
        assert_eq!(ex("${F#*/}", &vars), "file.tar.gz");
        assert_eq!(ex("${F#*.}", &vars), "tar.gz");
        assert_eq!(ex("${F##*.}", &vars), "gz");
        assert_eq!(ex("${F%.*}", &vars), "dir/file.tar");
        assert_eq!(ex("${F%%.*}", &vars), "dir/file");
        assert_eq!(ex("${F#nomatch}", &vars), "dir/file.tar.gz");
        assert_eq!(ex("${F%[.]gz}", &vars), "dir/file.tar");
        assert_eq!(ex("${P/-/_}", &vars), "a_b-c");
        assert_eq!(ex("${P//-/_}", &vars), "a_b_c");
        assert_eq!(ex("${P//-}", &vars), "abc");
        assert_eq!(ex("${P/b*/X}", &vars), "a-X");
        assert_eq!(ex("${P/?/Z}", &vars), "Z-b-c");
        assert_eq!(ex(r"${F#dir\/}", &vars), "file.tar.gz");
        assert_eq!(ex(r"${P/\-/+}", &vars), "a+b-c");
        assert_eq!(ex("${UNSET#x}", &vars), "");
        assert_eq!(ex("${P/$UNSET/x}", &vars), "a-b-c");
    }

    #[test]
    fn expand_words_splitting() {
        let vars = [("A", "x  y"), ("E", "")];
        assert_eq!(ex_words("a b   c", &vars), strings(&["a", "b", "c"]));
        assert_eq!(ex_words("$A z", &vars), strings(&["x", "y", "z"]));
        assert_eq!(ex_words("\"$A\" z", &vars), strings(&["x  y", "z"]));
        assert_eq!(ex_words(r"a\ b c", &vars), strings(&["a b", "c"]));
        assert_eq!(ex_words("'q r's t", &vars), strings(&["q rs", "t"]));
        assert_eq!(ex_words("$E a $E", &vars), strings(&["a"]));
        assert_eq!(
            ex_words("80/tcp ${P:-443}", &vars),
            strings(&["80/tcp", "443"])
        );
        assert!(ex_words("   ", &vars).is_empty());
        assert!(expand_words("'x", '\\', &|_: &str| None).is_err());
    }

    #[test]
    fn expand_parsed_values_round_trip() {
        // The raw values the parser keeps expand to what Docker would set.
        let df = parse_ok(
            r#"FROM a
ENV A="two words" B=esc\ aped C='$lit' D=${A:-x}
"#,
        );
        let InstructionKind::Env(pairs) = &df.instructions[1].kind else {
            panic!("not ENV");
        };
        let vars = [("A", "two words")];
        let values: Vec<String> = pairs.iter().map(|(_, v)| ex(v, &vars)).collect();
        assert_eq!(
            values,
            strings(&["two words", "esc aped", "$lit", "two words"])
        );
    }

    // ----- .dockerignore -----

    #[test]
    fn ignore_basic_patterns() {
        let di = DockerIgnore::parse(
            "# comment\n\n  *.md  \n/target/\nbuild/./out/\nsrc/*.tmp\ndata/?.bin\n[abc]x\n",
        );
        assert!(di.is_excluded("README.md"));
        assert!(!di.is_excluded("docs/README.md"));
        assert!(di.is_excluded("target"));
        assert!(di.is_excluded("target/debug/app"));
        assert!(!di.is_excluded("src/target"));
        assert!(di.is_excluded("build/out/x"));
        assert!(!di.is_excluded("build/other"));
        assert!(di.is_excluded("src/a.tmp"));
        assert!(!di.is_excluded("src/sub/a.tmp"));
        assert!(di.is_excluded("data/1.bin"));
        assert!(!di.is_excluded("data/12.bin"));
        assert!(di.is_excluded("bx"));
        assert!(!di.is_excluded("dx"));
        assert!(!di.is_excluded("# comment"));
        assert!(!di.is_excluded("main.rs"));
        assert!(!di.is_excluded(""));
        assert!(!di.is_excluded("."));
    }

    #[test]
    fn ignore_double_star() {
        let di = DockerIgnore::parse("**/*.log\nfoo/**/bar\nlogs/**\n");
        assert!(di.is_excluded("a.log"));
        assert!(di.is_excluded("x/y/z.log"));
        assert!(!di.is_excluded("x/y/z.logs"));
        assert!(di.is_excluded("foo/bar"));
        assert!(di.is_excluded("foo/a/b/bar"));
        assert!(di.is_excluded("foo/a/bar/inside"));
        assert!(!di.is_excluded("foo/abar"));
        assert!(!di.is_excluded("logs"));
        assert!(di.is_excluded("logs/x"));
        assert!(di.is_excluded("logs/x/y"));
        let all = DockerIgnore::parse("**");
        assert!(all.is_excluded("anything/at/all"));
        let named = DockerIgnore::parse("**/node_modules");
        assert!(named.is_excluded("node_modules"));
        assert!(named.is_excluded("web/node_modules/react/index.js"));
    }

    #[test]
    fn ignore_exceptions_last_match_wins() {
        let di = DockerIgnore::parse("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(di.is_excluded("CHANGELOG.md"));
        assert!(!di.is_excluded("README.md"));
        assert!(!di.is_excluded("README-public.md"));
        assert!(di.is_excluded("README-secret.md"));

        let di = DockerIgnore::parse("*\n!src\n!Cargo.toml\n");
        assert!(di.is_excluded("target"));
        assert!(!di.is_excluded("src"));
        assert!(!di.is_excluded("src/main.rs"));
        assert!(!di.is_excluded("Cargo.toml"));
        assert!(di.is_excluded("Cargo.lock"));
    }

    #[test]
    fn ignore_parent_directory_exclusion() {
        let di = DockerIgnore::parse("target\n!target/keep\n");
        assert!(di.is_excluded("target/x/y"));
        assert!(!di.is_excluded("target/keep"));
        assert!(!di.is_excluded("target/keep/deep/file"));
        assert!(di.is_excluded("target/keeper"));
        assert!(!di.is_excluded("./target/keep/"));
        assert!(di.is_excluded("/target/x"));
    }

    #[test]
    fn ignore_may_include_below() {
        let di = DockerIgnore::parse("target\nnode_modules\n!node_modules/keep.txt\n*.log\n");
        assert!(!di.may_include_below("target"));
        assert!(!di.may_include_below("target/debug"));
        assert!(di.may_include_below("node_modules"));
        assert!(!di.may_include_below("node_modules/other"));
        assert!(di.may_include_below("src"));
        assert!(di.may_include_below(""));

        let wild = DockerIgnore::parse("vendor\n!vendor/*/LICENSE\n");
        assert!(wild.may_include_below("vendor"));
        assert!(wild.may_include_below("vendor/pkg"));
        assert!(!wild.may_include_below("vendor/pkg/sub"));
        assert!(!wild.is_excluded("vendor/pkg/LICENSE"));
        assert!(wild.is_excluded("vendor/pkg/README"));

        let deep = DockerIgnore::parse("*\n!**/*.rs\n");
        assert!(deep.may_include_below("anything"));
        assert!(deep.may_include_below("a/b/c"));
        assert!(!deep.is_excluded("a/b/c/lib.rs"));
        assert!(deep.is_excluded("a/b/c/lib.txt"));

        // An exception that only matches the directory itself (re-excluded
        // later) does not reach below it.
        let redo = DockerIgnore::parse("!cache\ncache\n");
        assert!(redo.is_excluded("cache/x"));
        assert!(!redo.may_include_below("cache"));
    }

    #[test]
    fn ignore_cleaning_and_malformed() {
        let di = DockerIgnore::parse("!\n[unterminated\na/../b\n ! spaced/ \n#x\n  #y\n");
        assert!(di.is_excluded("b"));
        assert!(!di.is_excluded("a"));
        assert!(!di.is_excluded("[unterminated"));
        assert!(!di.is_excluded("#x"));
        // Only a '#' in the first column starts a comment.
        assert!(di.is_excluded("#y"));
        assert!(!di.is_excluded("spaced"));
        let esc = DockerIgnore::parse(r"a\*b");
        assert!(esc.is_excluded("a*b"));
        assert!(!esc.is_excluded("axb"));
        let neg = DockerIgnore::parse("file[!0-9]\n");
        assert!(neg.is_excluded("filex"));
        assert!(!neg.is_excluded("file1"));
        assert!(DockerIgnore::default().may_include_below("x"));
        assert!(!DockerIgnore::default().is_excluded("x"));
    }

    #[test]
    fn clean_path_cases() {
        assert_eq!(clean_path("a/./b"), "a/b");
        assert_eq!(clean_path("a//b/"), "a/b");
        assert_eq!(clean_path("a/../../b"), "../b");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("./"), ".");
        assert_eq!(clean_path("/"), "/");
    }
}
