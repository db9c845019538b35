#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ecg) = qoqmed_ecg::read_dicom(data) {
        let _ = qoqmed_ecg::model_input(&ecg);
    }
});
