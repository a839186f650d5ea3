//! Progress bars for the long offline steps (embedding, index build, evaluation).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar on stderr; hidden when stderr is not a terminal (logs stay clean).
pub fn bar(len: usize, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {elapsed} (eta {eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}
