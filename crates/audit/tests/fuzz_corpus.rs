//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) through the same checks the
//! fuzz targets run: every decoder of untrusted bytes returns a value or an error, never
//! panics, and what it accepts re-encodes to the same bytes. No fuzzer is needed.

use branchledger_audit::decoders::Decoder;

#[test]
fn every_corpus_input_passes_its_decoder_check() {
    let root = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../fuzz/corpus");
    let mut replayed = 0usize;
    for decoder in Decoder::ALL {
        let dir = root.join(decoder.name());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| decoder.check(&data));
            assert!(
                outcome.is_ok(),
                "{} failed on {}",
                decoder.name(),
                path.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no corpus under {}", root.display());
    println!("replayed {replayed} corpus inputs");
}

#[test]
fn hand_made_inputs_at_the_edges_pass_every_decoder_check() {
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 3],
        u32::MAX.to_le_bytes().to_vec(),
        [u32::MAX.to_le_bytes().as_slice(), &[0u8; 64]].concat(),
        b"BLEXPORT".to_vec(),
        [
            b"BLEXPORT".as_slice(),
            &1u32.to_le_bytes(),
            &u32::MAX.to_le_bytes(),
        ]
        .concat(),
        b"{\"version\":1}".to_vec(),
        b"{".repeat(10_000),
    ];
    for decoder in Decoder::ALL {
        for input in &inputs {
            decoder.check(input);
        }
    }
}
