//! Detection off Google Cloud, probing the real metadata IP — but only from inside a fresh
//! network namespace, where 169.254.169.254 is unreachable at once and no packet leaves the
//! machine.
//!
//! The test re-executes its own binary under `unshare -n` (CI runs as root). When the process is
//! already in a namespace whose only interface is `lo`, it runs directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use workload_auth_metadata::{DetectionInput, METADATA_IP_ADDR, Rule, detect};

const MARKER: &str = "WORKLOAD_AUTH_METADATA_IN_NETNS";
const TEST_NAME: &str = "probe_off_google_cloud_is_fast_in_a_fresh_network_namespace";

/// The interfaces of this process's network namespace. `/proc/self/net/dev` follows the
/// namespace of the reading process; `/sys/class/net` does not (it shows the namespace sysfs was
/// mounted in), so it cannot tell whether `unshare -n` took effect.
fn interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/self/net/dev")
        .expect("read /proc/self/net/dev")
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_owned()))
        .filter(|n| !n.is_empty())
        .collect()
}

fn only_loopback() -> bool {
    interfaces() == ["lo"]
}

#[test]
fn probe_off_google_cloud_is_fast_in_a_fresh_network_namespace() {
    if std::env::var_os(MARKER).is_some() || only_loopback() {
        probe_inside_isolated_namespace();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
        .arg(&exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(MARKER, "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare (util-linux): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("Operation not permitted") && !stderr.contains("unshare failed"),
        "this test must create a network namespace (`unshare -n`), which needs root or \
         CAP_SYS_ADMIN; run it as root (CI does). unshare said: {stderr}"
    );
    assert!(
        output.status.success(),
        "the test failed inside the network namespace:\n{stdout}\n{stderr}"
    );
    // A filter that matched nothing would "pass" with zero tests: require that it ran.
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the test did not run inside the namespace:\n{stdout}\n{stderr}"
    );
}

fn probe_inside_isolated_namespace() {
    // Never probe the metadata IP from a network that could reach it.
    assert!(
        only_loopback(),
        "refusing to probe {METADATA_IP_ADDR}: this network namespace has interfaces {:?}",
        interfaces()
    );
    let input = DetectionInput::with_env_vars(Vec::<(String, String)>::new())
        .with_dmi_product_name_path("/nonexistent/workload-auth/product_name");
    let start = Instant::now();
    let detection = detect(&input);
    let elapsed = start.elapsed();
    assert!(!detection.is_on_google_cloud(), "{detection}");
    assert_eq!(detection.decided_by(), Rule::Probe);
    assert!(
        elapsed < Duration::from_millis(100),
        "detection took {elapsed:?}: {detection}"
    );
    let probe = &detection.checks().last().unwrap().outcome;
    assert!(probe.contains("169.254.169.254:80"), "{probe}");
    let err = detection.not_on_google_cloud_error().unwrap();
    let text = err.to_string();
    for needle in [
        "GCE_METADATA_HOST",
        "NO_GCE_CHECK",
        "product_name",
        "K_SERVICE",
        "169.254.169.254",
    ] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
}
