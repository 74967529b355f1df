//! IAM Credentials answers: `generateAccessToken` (token and RFC 3339 `expireTime`) and
//! `generateIdToken` (a JWT), and RFC 3339 timestamps on their own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_adc::fuzzing::{iam_access_token_answer, iam_id_token_answer, rfc3339};
use workload_auth_fuzz::{assert_no_secret_in, shown};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => assert_no_secret_in(body, |body| shown(&iam_access_token_answer(body))),
        1 => assert_no_secret_in(body, |body| shown(&iam_id_token_answer(body))),
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                let _ = rfc3339(text);
            }
        }
    }
});
