//! Issue 8, finding 2: every file of a credentials directory is read through a handle capped at
//! its limit, and a FIFO, a device, a directory or an oversize file in place of one is a quick
//! typed error naming that file, never a hang, an unbounded read or a retry loop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use workload_auth_core::ErrorKind;
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};
use workload_auth_mtls::*;

const ME: &str = "spiffe://pool.global.123.workload.id.goog/ns/prod/sa/web";
const TD: &str = "pool.global.123.workload.id.goog";

/// A plain directory holding what the node agent writes (every file, the combined one too).
fn agent_files(tmp: &TempDir) -> PathBuf {
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.issue(ME).unwrap();
    let writer = CredentialsDirWriter::new(tmp.path().join("agent"));
    let generation = writer
        .write(&CredentialsContents::new(&svid, &ca, []))
        .unwrap();
    let dir = tmp.path().join("creds");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&generation).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

enum Hostile {
    DevZero,
    Fifo,
    Directory,
    Oversize,
}

impl Hostile {
    fn put(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
        match self {
            Self::DevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
            Self::Fifo => {
                let ok = std::process::Command::new("mkfifo")
                    .arg(path)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
            }
            Self::Directory => std::fs::create_dir(path).unwrap(),
            Self::Oversize => std::fs::write(path, vec![b'\n'; 1024 * 1024 + 1]).unwrap(),
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Self::DevZero => "is a character device, not a regular file",
            Self::Fifo => "is a FIFO, not a regular file",
            Self::Directory => "is a directory, not a regular file",
            Self::Oversize => "is larger than",
        }
    }
}

#[test]
fn finding_2_hostile_files_in_a_credentials_directory_are_refused_quickly() {
    let files = [
        CERTIFICATES_FILE,
        PRIVATE_KEY_FILE,
        CA_CERTIFICATES_FILE,
        TRUST_BUNDLES_FILE,
        CONFIG_STATUS_FILE,
        COMBINED_FILE,
    ];
    for name in files {
        for hostile in [
            Hostile::DevZero,
            Hostile::Fifo,
            Hostile::Directory,
            Hostile::Oversize,
        ] {
            let tmp = TempDir::new("bounded");
            let dir = agent_files(&tmp);
            if name == COMBINED_FILE {
                // The combined file is read only when the separate pair is absent.
                std::fs::remove_file(dir.join(CERTIFICATES_FILE)).unwrap();
                std::fs::remove_file(dir.join(PRIVATE_KEY_FILE)).unwrap();
            }
            let path = dir.join(name);
            hostile.put(&path);
            let loader = CredentialsDir::new(&dir).with_retries(4, Duration::from_millis(200));
            let started = Instant::now();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(loader.load_blocking());
            });
            let err = rx
                .recv_timeout(Duration::from_secs(3))
                .unwrap_or_else(|_| panic!("{name}: no answer in time"))
                .unwrap_err();
            // Refused on the first try: a hostile file is not a rotation race.
            assert!(
                started.elapsed() < Duration::from_millis(200),
                "{name}: {:?}",
                started.elapsed()
            );
            assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{name}: {err}");
            let place = std::fs::canonicalize(&dir).unwrap().join(name);
            assert_eq!(
                err.endpoint(),
                Some(place.display().to_string().as_str()),
                "{err}"
            );
            assert!(
                err.message().starts_with(name) && err.message().contains(hostile.message()),
                "{name}: {err}"
            );
        }
    }
}
