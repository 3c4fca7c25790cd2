//! Syncs with an S3 remote (s3s-fs, which keeps object `KEY` as the file
//! `KEY` of its bucket folder), through the real `gateway sync run`: push,
//! pull and two-way, checked file by file on the server's disk.

use e2e::sync::scenarios;
use e2e::sync::RemoteKind;

#[test]
fn s3_push_with_keep() {
    scenarios::push(RemoteKind::S3, false);
}

#[test]
fn s3_push_with_delete() {
    scenarios::push(RemoteKind::S3, true);
}

#[test]
fn s3_pull_with_keep() {
    scenarios::pull(RemoteKind::S3, false);
}

#[test]
fn s3_pull_with_delete() {
    scenarios::pull(RemoteKind::S3, true);
}

#[test]
fn s3_two_way() {
    scenarios::two_way(RemoteKind::S3);
}
