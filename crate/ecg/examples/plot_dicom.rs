//! Draws a DICOM waveform ECG in the clinical layout: `plot_dicom IN.dcm OUT.png`.
//! (The `qoqmed ecg-plot` command does the same for every format; this example needs only this crate.)

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        return Err("usage: plot_dicom IN.dcm OUT.png".into());
    };
    let ecg = qoqmed_ecg::read_dicom(&std::fs::read(input)?)?;
    std::fs::write(
        output,
        qoqmed_ecg::plot_png(&ecg, &qoqmed_ecg::PlotOptions::default())?,
    )?;
    Ok(())
}
