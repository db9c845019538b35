//! The one request path of qoqmed: a model folder given as bytes ([`ModelFiles`]) becomes a
//! [`Model`]; a [`Request`] (question, images, ECGs, sampling) becomes an [`Answer`], streamed
//! token by token through [`Event`]s. The CLI (`qoqmed generate`) and the web app (crate/web) both
//! call exactly this, so a browser run and a native run of the same request give the same ids.
//!
//! Everything is async and takes bytes, never paths: the caller picks the executor (pollster
//! natively, the browser's event loop on the web) and where the bytes come from.

mod answer;
mod ecg;
mod error;
mod images;
mod model;
mod request;
mod run;

pub use answer::{Answer, Timings};
pub use ecg::{MAX_ECGS, read_ecg};
pub use error::{Error, Result};
pub use images::{ImageFrame, annotate, place_boxes};
pub use model::{LoadOptions, Model};
pub use qoqmed_engine::weights::ModelFiles;
pub use request::{EcgInput, InputFile, Request};
pub use run::{Event, Phase, run};
