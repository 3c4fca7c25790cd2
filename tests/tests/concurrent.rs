//! Many simultaneous sftp clients, each with its own file.

use std::sync::Barrier;

use e2e::*;

const CLIENTS: usize = 20;
const FILE_SIZE: usize = 8 << 20;

#[test]
fn twenty_clients_at_once() {
    let env = TestEnv::new().unwrap();
    let key = env.path("id");
    let pubkey = client_key(&key).unwrap();
    let mut cfg = env.config();
    cfg.users = vec![UserConfig::new("alice").key(&pubkey)];
    let gw = env.start(&cfg).unwrap();
    let home = env.data.join("alice");

    let sources: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let src = env.path(&format!("src-{i}.bin"));
            write_random_file(&src, FILE_SIZE).unwrap();
            src
        })
        .collect();

    let barrier = Barrier::new(CLIENTS);
    let outputs: Vec<CmdOutput> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let mut client = env.client(&gw, "alice", Auth::Key(key.clone()));
                // Each client its own known_hosts: no concurrent appends to one file.
                client.known_hosts = env.path(&format!("known_hosts-{i}"));
                client.timeout = std::time::Duration::from_secs(300);
                let batch = format!(
                    "put {} /c-{i}.bin\nget /c-{i}.bin {}\n",
                    p(&sources[i]),
                    p(&env.path(&format!("back-{i}.bin")))
                );
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    client.sftp(&batch).unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect()
    });

    let failed: Vec<String> = outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.success())
        .map(|(i, o)| format!("client {i}:\n{o}"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} clients failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    for (i, src) in sources.iter().enumerate() {
        assert_same_file(src, &home.join(format!("c-{i}.bin")));
        assert_same_file(src, &env.path(&format!("back-{i}.bin")));
    }
}
