//! Fuzz target: `Decoder::Proof` of `branchledger_audit::decoders`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    branchledger_audit::decoders::Decoder::Proof.check(data);
});
