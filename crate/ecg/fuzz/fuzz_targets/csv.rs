#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ecg) = qoqmed_ecg::read_csv(data, 500.0) {
        let _ = qoqmed_ecg::model_input(&ecg);
    }
});
