//! Any header/.dat pair: an error or a record, never a panic. The first byte splits the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let at = (split as usize * rest.len()) / 255;
    let (header, dat) = rest.split_at(at.min(rest.len()));
    if let Ok(ecg) = qoqmed_ecg::read_wfdb(header, dat) {
        let _ = qoqmed_ecg::model_input(&ecg);
    }
});
