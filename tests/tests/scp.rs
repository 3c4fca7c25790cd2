//! scp (SFTP protocol in current OpenSSH) upload and download.

use e2e::*;

#[test]
fn scp_upload_and_download() {
    let env = TestEnv::new().unwrap();
    let key = env.path("id");
    let pubkey = client_key(&key).unwrap();
    let mut cfg = env.config();
    cfg.users = vec![UserConfig::new("alice").key(&pubkey)];
    let gw = env.start(&cfg).unwrap();
    let client = env.client(&gw, "alice", Auth::Key(key));

    let src = env.path("one-mib.bin");
    write_random_file(&src, 1 << 20).unwrap();
    let out = client.scp(&p(&src), &client.remote("/scp-up.bin")).unwrap();
    assert_ok(&out, "scp upload");
    assert_same_file(&src, &env.data.join("alice/scp-up.bin"));

    let back = env.path("one-mib-back.bin");
    let out = client
        .scp(&client.remote("/scp-up.bin"), &p(&back))
        .unwrap();
    assert_ok(&out, "scp download");
    assert_same_file(&src, &back);

    let out = client
        .scp(
            &client.remote("/no-such-file.bin"),
            &p(&env.path("nothing")),
        )
        .unwrap();
    assert_failed(&out, "scp download of a missing file");
    assert!(
        !env.path("nothing").exists(),
        "scp created a local file for a missing remote file\n{out}"
    );
}
