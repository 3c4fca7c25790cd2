//! SSH commands (`ssh user@gateway md5sum FILE`): the checksum commands
//! `md5sum`, `sha1sum`, `sha256sum` and `crc32` on files of the user's
//! tree, answering as the real tools do, because rclone's sftp backend
//! and other clients run them to compare files without downloading them.
//!
//! There is no shell: the command line is split into words as `sh` would
//! (quotes and backslashes, which rclone uses for awkward names), and
//! anything that would need a shell (`;`, `$`, globs, redirections) is
//! refused. Every other command is refused with a message on stderr and
//! exit status 127, as a shell says "command not found".

use std::net::SocketAddr;
use std::sync::Arc;

use backends::ErrorKind;
use policy::{Permission, User};
use russh::server::Msg;
use russh::{Channel, ChannelMsg};

use crate::core::checksums::{Algorithm, ChecksumError, ChecksumHasher, Checksums};
use crate::core::tree::{Tree, VirtualPath};

/// Exit status of a command that ran but failed for some file.
const EXIT_FAILED: u32 = 1;
/// Exit status for a command line a shell could not have parsed.
const EXIT_SYNTAX: u32 = 2;
/// Exit status for a command that is not offered ("command not found").
const EXIT_NOT_FOUND: u32 = 127;

/// What a command runs with: the user, their tree, and the checksums.
pub struct ExecContext {
    /// The user's tree, built when the command arrived.
    pub tree: Tree,
    /// The logged-in user (their permissions apply).
    pub user: Arc<User>,
    /// Where they connect from (for the audit log).
    pub peer: SocketAddr,
    /// Computes and caches checksums.
    pub checksums: Arc<Checksums>,
}

/// A command line split into words could not be, or would need a shell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A quote was opened and never closed.
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    /// The line ends with a lone backslash.
    #[error("the command line ends with a backslash")]
    TrailingBackslash,
    /// An unquoted character that only a shell could act on.
    #[error("shell syntax is not supported: `{0}` (there is no shell here)")]
    ShellSyntax(char),
}

/// Splits `line` into words as a POSIX shell would, without expanding
/// anything: single quotes keep everything, double quotes keep everything
/// but `\"`, `\\`, `` \` ``, `\$` and `\` + newline, and a backslash
/// outside quotes keeps the next character. Characters a shell would act
/// on (`$`, backquotes, `;`, `|`, `&`, `<`, `>`, `(`, `)`, globs, and `#`
/// or `~` starting a word) are refused unless quoted or escaped.
pub fn split_words(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word is under way (so `''` gives an empty word).
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedQuote("single")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(c @ ('"' | '\\' | '`' | '$')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnterminatedQuote("double")),
                        },
                        Some(c @ ('$' | '`')) => return Err(SplitError::ShellSyntax(c)),
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedQuote("double")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            '$' | '`' | ';' | '|' | '&' | '<' | '>' | '(' | ')' | '*' | '?' | '[' => {
                return Err(SplitError::ShellSyntax(c));
            }
            '#' | '~' if !in_word => return Err(SplitError::ShellSyntax(c)),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A command line understood: what to run, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Print the checksums of `files` (`-` is standard input).
    Checksum {
        /// Which checksum.
        algorithm: Algorithm,
        /// The file arguments as given; never empty (no argument means `-`).
        files: Vec<String>,
    },
    /// Refuse: print `message` on stderr and exit with `status`.
    Refuse {
        /// The line for stderr (without newline).
        message: String,
        /// The exit status.
        status: u32,
    },
}

/// Parses a command line sent with an SSH `exec` request.
pub fn parse(line: &str) -> Request {
    let words = match split_words(line) {
        Ok(words) => words,
        Err(e) => {
            return Request::Refuse {
                message: format!("gateway: {e}"),
                status: EXIT_SYNTAX,
            }
        }
    };
    let Some((name, args)) = words.split_first() else {
        return Request::Refuse {
            message: "gateway: no command given".into(),
            status: EXIT_NOT_FOUND,
        };
    };
    let Some(algorithm) = Algorithm::from_command(name) else {
        return Request::Refuse {
            message: format!(
                "gateway: {name}: command not supported (only md5sum, sha1sum, sha256sum and crc32 run here; use SFTP for everything else)"
            ),
            status: EXIT_NOT_FOUND,
        };
    };
    let mut files = Vec::new();
    let mut options_done = false;
    for arg in args {
        if options_done || arg == "-" || !arg.starts_with('-') {
            files.push(arg.clone());
        } else if arg == "--" {
            options_done = true;
        } else {
            let message = match arg.strip_prefix("--") {
                Some(_) => format!("{name}: unrecognized option '{arg}'"),
                None => format!(
                    "{name}: invalid option -- '{}'",
                    arg.chars().nth(1).unwrap_or('-')
                ),
            };
            return Request::Refuse {
                message,
                status: EXIT_FAILED,
            };
        }
    }
    if files.is_empty() {
        files.push("-".into());
    }
    Request::Checksum { algorithm, files }
}

/// One line of output for `name`'s checksum `hex`, as the real tool
/// prints it: coreutils' `<hex>  <name>` (a name with a backslash or a
/// newline escaped and the line started with `\`), or for `crc32` just
/// `<hex>`, followed by a tab and the name when several files were given.
pub fn format_line(algorithm: Algorithm, hex: &str, name: &str, several: bool) -> String {
    if algorithm == Algorithm::Crc32 {
        return if several {
            format!("{hex}\t{name}\n")
        } else {
            format!("{hex}\n")
        };
    }
    if name.contains(['\\', '\n']) {
        let escaped = name.replace('\\', "\\\\").replace('\n', "\\n");
        format!("\\{hex}  {escaped}\n")
    } else {
        format!("{hex}  {name}\n")
    }
}

/// The coreutils wording for why a file has no checksum.
fn reason(e: &ChecksumError) -> String {
    match e {
        ChecksumError::Backend(b) => match b.kind() {
            ErrorKind::NotFound => "No such file or directory".into(),
            ErrorKind::PermissionDenied => "Permission denied".into(),
            ErrorKind::IsADirectory => "Is a directory".into(),
            ErrorKind::NotADirectory => "Not a directory".into(),
            _ => b.to_string(),
        },
        ChecksumError::Task(m) => m.clone(),
    }
}

/// Runs `line` on `channel` and ends the channel (exit status, EOF,
/// close, in sshd's order); returns the exit status.
pub async fn run(channel: Channel<Msg>, line: &str, ctx: ExecContext) -> u32 {
    let mut channel = channel;
    let status = match parse(line) {
        Request::Refuse { message, status } => {
            tracing::info!(user = %ctx.user.name, addr = %ctx.peer.ip(), command = %line, "refused a command");
            let _ = channel
                .extended_data_bytes(1, format!("{message}\n").into_bytes())
                .await;
            status
        }
        Request::Checksum { algorithm, files } => {
            checksums(&mut channel, &ctx, algorithm, &files).await
        }
    };
    let _ = channel.exit_status(status).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
    status
}

/// Prints the checksum of each of `files`; 0 if all could be computed.
async fn checksums(
    channel: &mut Channel<Msg>,
    ctx: &ExecContext,
    algorithm: Algorithm,
    files: &[String],
) -> u32 {
    let several = files.len() > 1;
    let mut status = 0;
    for name in files {
        let result = if name == "-" {
            stdin(channel, algorithm).await
        } else {
            file(ctx, algorithm, name).await
        };
        match result {
            Ok(hex) => {
                let out = format_line(algorithm, &hex, name, several);
                if channel.data_bytes(out.into_bytes()).await.is_err() {
                    return EXIT_FAILED;
                }
            }
            Err(why) => {
                status = EXIT_FAILED;
                let err = format!("{}: {name}: {why}\n", algorithm.command());
                if channel
                    .extended_data_bytes(1, err.into_bytes())
                    .await
                    .is_err()
                {
                    return EXIT_FAILED;
                }
            }
        }
    }
    status
}

/// The checksum of the file the client named, after the same checks as
/// an SFTP read; the error is the message for stderr.
async fn file(ctx: &ExecContext, algorithm: Algorithm, name: &str) -> Result<String, String> {
    let path = VirtualPath::resolve(name).map_err(|e| e.to_string())?;
    let result = if ctx.user.permissions.allows(path.as_str(), Permission::Read) {
        let loc = ctx.tree.locate(&path);
        ctx.checksums.of(&loc, algorithm).await.map_err(|e| {
            let outcome = match &e {
                ChecksumError::Backend(b) if b.kind() == ErrorKind::NotFound => "not-found",
                _ => "failed",
            };
            (outcome, reason(&e))
        })
    } else {
        Err(("denied", "Permission denied".to_string()))
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err((outcome, _)) => outcome,
    };
    tracing::info!(
        target: "audit",
        user = %ctx.user.name,
        addr = %ctx.peer.ip(),
        op = "checksum",
        algorithm = algorithm.name(),
        path = %path,
        result = outcome,
    );
    result.map_err(|(_, why)| why)
}

/// The checksum of what the client sends until it closes its side.
async fn stdin(channel: &mut Channel<Msg>, algorithm: Algorithm) -> Result<String, String> {
    let mut hasher = ChecksumHasher::new(algorithm);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                hasher = hasher
                    .update_off_thread(data)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            ChannelMsg::Eof => break,
            _ => {}
        }
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(words("md5sum  a\tb\n"), ["md5sum", "a", "b"]);
        assert_eq!(words("md5sum 'a b' \"c d\""), ["md5sum", "a b", "c d"]);
        assert_eq!(words(r"md5sum a\ b\'c"), ["md5sum", "a b'c"]);
        assert_eq!(words(r#"x "a\"b\\c\d\$""#), ["x", r#"a"b\c\d$"#]);
        assert_eq!(words("x '' \"\""), ["x", "", ""]);
        assert_eq!(words("x a'b'\"c\"d"), ["x", "abcd"]);
        assert_eq!(words("x 'it'\\''s'"), ["x", "it's"]);
        assert_eq!(words("x a\\\nb"), ["x", "ab"]);
        assert_eq!(words("x 'a;b$c*d'"), ["x", "a;b$c*d"]);
        assert_eq!(words("x a#b c~"), ["x", "a#b", "c~"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("x ü文"), ["x", "ü文"]);
    }

    #[test]
    fn splits_what_rclone_sends() {
        // rclone 1.60 escapes every character outside [A-Za-z0-9_.,:/@-]
        // with a backslash, and a newline as '\n' in single quotes.
        assert_eq!(
            words(r#"md5sum /dir/my\ file\ \(1\)\&\$x\'\".txt"#),
            ["md5sum", "/dir/my file (1)&$x'\".txt"]
        );
        assert_eq!(words("md5sum /a'\n'b"), ["md5sum", "/a\nb"]);
        assert_eq!(words(r"md5sum /back\\slash"), ["md5sum", r"/back\slash"]);
        // The gateway's own SFTP backend: md5sum -- '<path>'.
        assert_eq!(words("md5sum -- '/it'\\''s'"), ["md5sum", "--", "/it's"]);
    }

    #[test]
    fn refuses_what_needs_a_shell() {
        for (line, c) in [
            ("md5sum a; rm b", ';'),
            ("md5sum $HOME", '$'),
            ("md5sum `id`", '`'),
            ("md5sum \"$(id)\"", '$'),
            ("md5sum *", '*'),
            ("md5sum a?", '?'),
            ("md5sum a | x", '|'),
            ("md5sum < a", '<'),
            ("md5sum a > b", '>'),
            ("md5sum a & b", '&'),
            ("md5sum ~/x", '~'),
            ("md5sum #x", '#'),
        ] {
            assert_eq!(split_words(line), Err(SplitError::ShellSyntax(c)), "{line}");
        }
        assert_eq!(
            split_words("md5sum 'a"),
            Err(SplitError::UnterminatedQuote("single"))
        );
        assert_eq!(
            split_words("md5sum \"a"),
            Err(SplitError::UnterminatedQuote("double"))
        );
        assert_eq!(
            split_words("md5sum a\\"),
            Err(SplitError::TrailingBackslash)
        );
    }

    #[test]
    fn parses_commands() {
        let sum = |algorithm, files: &[&str]| Request::Checksum {
            algorithm,
            files: files.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(parse("md5sum"), sum(Algorithm::Md5, &["-"]));
        assert_eq!(
            parse("sha1sum a 'b c'"),
            sum(Algorithm::Sha1, &["a", "b c"])
        );
        assert_eq!(
            parse("sha256sum -- -n -"),
            sum(Algorithm::Sha256, &["-n", "-"])
        );
        assert_eq!(parse("crc32 /x"), sum(Algorithm::Crc32, &["/x"]));
        let refused = |line: &str| match parse(line) {
            Request::Refuse { message, status } => (message, status),
            other => panic!("{line}: expected a refusal, got {other:?}"),
        };
        assert_eq!(
            refused("md5sum -x a"),
            ("md5sum: invalid option -- 'x'".into(), 1)
        );
        assert_eq!(
            refused("md5sum --check a"),
            ("md5sum: unrecognized option '--check'".into(), 1)
        );
        let (message, status) = refused("echo ${ShellId}%ComSpec%");
        assert_eq!(status, 2, "{message}");
        let (message, status) = refused("ls -l");
        assert_eq!(status, 127);
        assert!(message.contains("ls: command not supported"), "{message}");
        assert_eq!(refused("").1, 127);
        assert_eq!(refused("md5 -r").1, 127);
        assert_eq!(refused("rclone md5sum").1, 127);
    }

    #[test]
    fn formats_like_the_real_tools() {
        let h = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(
            format_line(Algorithm::Md5, h, "-", false),
            format!("{h}  -\n")
        );
        assert_eq!(
            format_line(Algorithm::Md5, h, "/a b", true),
            format!("{h}  /a b\n")
        );
        // coreutils escapes backslashes and newlines and marks the line.
        assert_eq!(
            format_line(Algorithm::Sha1, "ab", "a\\b\nc", false),
            "\\ab  a\\\\b\\nc\n"
        );
        assert_eq!(
            format_line(Algorithm::Crc32, "363a3020", "/x", false),
            "363a3020\n"
        );
        assert_eq!(
            format_line(Algorithm::Crc32, "363a3020", "/x", true),
            "363a3020\t/x\n"
        );
    }
}
