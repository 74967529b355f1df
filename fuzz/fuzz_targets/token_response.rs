//! An OAuth 2.0 / STS token endpoint's answer (the refresh-token, JWT-bearer and token-exchange
//! grants), with any HTTP status: the error classification of a refusal, or the token.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use workload_auth_adc::fuzzing::token_answer;
use workload_auth_fuzz::{assert_no_secret_in, shown};

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = 100 + u16::from_be_bytes(*status) % 500;
    let now = SystemTime::now();
    if let Ok(token) = token_answer(status, body, now) {
        assert!((200..300).contains(&status));
        assert!(token.expires_at() > now);
        assert!(!token.token_type().is_empty());
    }
    assert_no_secret_in(body, |body| shown(&token_answer(status, body, now)));
});
