//! A 20000x20000 image goes through the QoQ pixel range without being copied as a whole: the
//! decoded 8-bit grey image is 400 MB; the peak resident memory of this test process must stay
//! under 2.5 copies of it (the RGB conversion of the whole image alone would be 1.2 GB).
//! Kept alone in its file so no other test shares the process and its memory peak.

use std::io::Write;

use qoqmed_imaging::{PixelRange, ProcessorConfig, ReadOptions, preprocess, read_image};

const SIDE: u32 = 20_000;

#[cfg(target_os = "linux")]
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

#[cfg(target_os = "linux")]
#[test]
fn twenty_thousand_square_scaled_down_in_bounded_memory() {
    // Encode row by row so the test itself never holds the raw image.
    let path = std::env::temp_dir().join(format!("qoqmed_huge_{}.png", std::process::id()));
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut enc = png::Encoder::new(file, SIDE, SIDE);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_compression(png::Compression::Fastest);
        let mut w = enc.write_header().unwrap().into_stream_writer().unwrap();
        let mut row = vec![0u8; SIDE as usize];
        for y in 0..SIDE {
            for (x, v) in row.iter_mut().enumerate() {
                *v = ((x as u32 / 100 + y / 100) % 2 * 200) as u8;
            }
            w.write_all(&row).unwrap();
        }
        w.finish().unwrap();
    }
    let png = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let imgs = read_image(&png, "huge.png", &ReadOptions::default()).unwrap();
    drop(png);
    let pv = preprocess(&imgs, &ProcessorConfig::default(), PixelRange::Qoq).unwrap();
    // int(20000 * sqrt(524288 / 4e8)) = 724 -> smart_resize 728 -> 52 x 52 patches.
    assert_eq!(pv.range_sizes, vec![(724, 724)]);
    assert_eq!(pv.grid_thw, vec![[1, 52, 52]]);
    let decoded = u64::from(SIDE) * u64::from(SIDE);
    // Linux-only test (see the cfg): the peak must be readable, never silently skipped.
    let peak = peak_rss_bytes().expect("VmHWM in /proc/self/status");
    eprintln!(
        "peak RSS {:.0} MB for a {:.0} MB decoded image",
        peak as f64 / 1e6,
        decoded as f64 / 1e6
    );
    assert!(
        peak < decoded * 5 / 2,
        "peak RSS {peak} bytes is more than 2.5 copies of {decoded}"
    );
}
