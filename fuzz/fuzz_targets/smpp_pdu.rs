//! See `sprayer_dispatcher::fuzzing::smpp_pdu`: the body lives in the library, where `cargo test`
//! replays this target's seeds and past crashes.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sprayer_dispatcher::fuzzing::smpp_pdu(data));
