//! The FTP control-connection reply reader (`read_reply`), and what is
//! parsed out of replies: FEAT (`Features::from_reply`), EPSV and PASV
//! (`parse_epsv`, `parse_pasv`).
//!
//! Input: the bytes a server sends on the control connection; replies are
//! read one after another until the reader refuses one or the input ends.
//!
//! Checked: no panic; every reply has a code in 100..=599, at least one
//! line, no line ending left in a line, its first line starts with the
//! code, and a multi-line reply ends with a line `CODE` or `CODE text`;
//! the reader always makes progress; a FEAT default hash algorithm is one
//! of those offered; EPSV/PASV never yield port 0.
#![no_main]

use std::sync::OnceLock;

use backends::ftp::fuzzing::{parse_epsv, parse_pasv, read_reply, Features};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let mut input: &[u8] = data;
        for _ in 0..64 {
            let before = input.len();
            let Ok(reply) = read_reply(&mut input).await else {
                break;
            };
            assert!(input.len() < before, "a reply read from no input");
            assert!((100..600).contains(&reply.code), "{reply:?}");
            assert!(!reply.lines.is_empty(), "{reply:?}");
            for line in &reply.lines {
                assert!(!line.contains('\n') && !line.ends_with('\r'), "{reply:?}");
            }
            let code = reply.code.to_string();
            assert!(reply.lines[0].starts_with(&code), "{reply:?}");
            if reply.lines[0].as_bytes().get(3) == Some(&b'-') {
                let last = reply.lines.last().unwrap();
                assert!(
                    reply.lines.len() >= 2
                        && (last.as_str() == code || last.starts_with(&format!("{code} "))),
                    "multi-line reply without its end: {reply:?}"
                );
            }
            let _ = (
                reply.text(),
                reply.is_preliminary(),
                reply.is_success(),
                reply.to_string(),
            );
            assert!(reply.body().len() <= reply.lines.len());
            let features = Features::from_reply(&reply);
            if let Some(default) = &features.hash_default {
                assert!(features.hash.contains(default), "{features:?}");
            }
            for text in std::iter::once(reply.text()).chain(reply.lines.iter().map(String::as_str))
            {
                assert_ne!(parse_epsv(text), Some(0), "{text:?}");
                if let Some((_, port)) = parse_pasv(text) {
                    assert_ne!(port, 0, "{text:?}");
                }
            }
        }
    });
});
