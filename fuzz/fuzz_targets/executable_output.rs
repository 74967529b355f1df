//! An executable credential source's output (stdout or its cached `output_file`), and the
//! splitting of its `command` into words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_adc::fuzzing::{executable_output, split_command};
use workload_auth_fuzz::{assert_no_secret_in, shown};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, content)) = data.split_first() else {
        return;
    };
    let from_cache = flags & 1 == 1;
    assert_no_secret_in(content, |content| {
        shown(&executable_output(content, from_cache))
    });
    if let Ok(command) = std::str::from_utf8(content) {
        let words = split_command(command);
        if !command.contains(['\'', '"', '\\']) {
            // Without quotes or escapes a command is its whitespace-separated words.
            let plain: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            assert_eq!(words, Some(plain));
        }
    }
});
