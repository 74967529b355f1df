//! The warm token paths most callers use allocate nothing: `access_token().await`,
//! `request_headers().await` and their blocking variants, for metadata-server credentials served
//! by the emulator on loopback, with a quota project and with a regional access boundary known.
//! Counted with dhat's heap profiler as the global allocator (its own test binary, one test, so
//! no other test allocates while it measures).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::TempDir;
use workload_auth_adc::{Credentials, RegionalState};
use workload_auth_emulator::{Emulator, Endpoint};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const CALLS: usize = 1_000;

/// Polls `future` once: a warm call must be ready at once, with no runtime and no waker.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a warm call had to wait"),
    }
}

/// Blocks allocated (by any thread) while `calls` run.
fn allocations(calls: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    calls();
    dhat::HeapStats::get().total_blocks - before
}

fn credentials(emu: &Emulator, home: &TempDir, regional: bool) -> Credentials {
    let mut vars = vec![
        ("GCE_METADATA_HOST", emu.host()),
        ("GOOGLE_CLOUD_QUOTA_PROJECT", "quota-project".to_owned()),
    ];
    if regional {
        vars.push(("GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED", "true".to_owned()));
    }
    common::builder(home, &vars)
        .with_iam_credentials_endpoint(format!("{}/v1/", emu.url()))
        .build()
        .unwrap()
}

/// Every warm path, `CALLS` times each; returns the blocks allocated per path.
fn measure(credentials: &Credentials, locations: Option<&str>) -> Vec<(&'static str, u64)> {
    let token = credentials.access_token_blocking().unwrap();
    let expected = |headers: &workload_auth_adc::RequestHeaders| {
        assert_eq!(
            headers.authorization().expose(),
            format!("Bearer {}", token.secret().expose())
        );
        assert_eq!(headers.user_project(), Some("quota-project"));
        assert_eq!(headers.allowed_locations(), locations);
    };
    // Warm up: the header set for this token, and arc-swap's per-thread debt slots.
    for _ in 0..10 {
        expected(&ready(credentials.request_headers()).unwrap());
        expected(&credentials.request_headers_blocking().unwrap());
    }
    let mut lengths = 0;
    let counts = vec![
        (
            "access_token().await",
            allocations(|| {
                for _ in 0..CALLS {
                    let t = ready(credentials.access_token()).unwrap();
                    assert!(workload_auth_core::AccessToken::ptr_eq(&t, &token));
                    lengths += t.secret().len();
                }
            }),
        ),
        (
            "access_token_blocking()",
            allocations(|| {
                for _ in 0..CALLS {
                    lengths += credentials.access_token_blocking().unwrap().secret().len();
                }
            }),
        ),
        (
            "request_headers().await",
            allocations(|| {
                for _ in 0..CALLS {
                    let headers = ready(credentials.request_headers()).unwrap();
                    lengths += headers.iter().map(|(_, v)| v.len()).sum::<usize>();
                }
            }),
        ),
        (
            "request_headers_blocking()",
            allocations(|| {
                for _ in 0..CALLS {
                    let headers = credentials.request_headers_blocking().unwrap();
                    lengths += headers.header_values().map(|(_, v)| v.len()).sum::<usize>();
                }
            }),
        ),
    ];
    assert!(lengths > 0);
    // The calls really were served: the values match what the emulator issued.
    expected(&ready(credentials.request_headers()).unwrap());
    counts
}

#[test]
fn warm_token_paths_make_no_allocation() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let emu = Emulator::start_in_thread(common::emulator_config()).unwrap();
    let home = TempDir::new("no-alloc");

    let plain = credentials(&emu, &home, false);
    let token = plain.access_token_blocking().unwrap();
    assert!(emu.issued_token(token.secret().expose()).is_some());

    let regional = credentials(&emu, &home, true);
    // The boundary is looked up in the background after the first request; wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        regional.regional_access_boundary(),
        RegionalState::Restricted { .. }
    ) {
        regional.request_headers_blocking().unwrap();
        assert!(
            Instant::now() < deadline,
            "the boundary lookup never answered"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(emu.requests(Endpoint::AllowedLocations), 1);

    // Let the library's runtime threads and the emulator finish their bookkeeping (task teardown,
    // connection reuse) before counting: dhat counts every thread's allocations.
    std::thread::sleep(Duration::from_millis(300));
    let plain_counts = measure(&plain, None);
    let regional_counts = measure(&regional, Some("0xA30"));
    for (what, counts) in [("plain", plain_counts), ("regional", regional_counts)] {
        for (path, blocks) in counts {
            assert_eq!(
                blocks, 0,
                "{what}: {CALLS} warm {path} allocated {blocks} blocks"
            );
        }
    }
    // Still no further fetch or lookup: every call above was a hit.
    assert_eq!(emu.requests(Endpoint::AllowedLocations), 1);
}
