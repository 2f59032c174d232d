//! Fuzz target: `Decoder::Export` of `branchledger_audit::decoders`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    branchledger_audit::decoders::Decoder::Export.check(data);
});
