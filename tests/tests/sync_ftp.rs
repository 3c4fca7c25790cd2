//! Syncs with an FTP remote, through the real `gateway sync run`: push,
//! pull and two-way, checked file by file on the server's disk. vsftpd
//! (no MLSD, no MFMT: times from LIST, to the minute) for all of them;
//! pure-ftpd (MLSD, MFMT) for two-way too, where times decide.

use e2e::sync::scenarios;
use e2e::sync::RemoteKind;

#[test]
fn ftp_push_with_keep() {
    scenarios::push(RemoteKind::Vsftpd, false);
}

#[test]
fn ftp_push_with_delete() {
    scenarios::push(RemoteKind::Vsftpd, true);
}

#[test]
fn ftp_pull_with_keep() {
    scenarios::pull(RemoteKind::Vsftpd, false);
}

#[test]
fn ftp_pull_with_delete() {
    scenarios::pull(RemoteKind::Vsftpd, true);
}

#[test]
fn ftp_two_way() {
    scenarios::two_way(RemoteKind::Vsftpd);
}

#[test]
fn ftp_two_way_pure_ftpd() {
    scenarios::two_way(RemoteKind::PureFtpd);
}

#[test]
fn ftp_push_with_delete_pure_ftpd() {
    scenarios::push(RemoteKind::PureFtpd, true);
}
