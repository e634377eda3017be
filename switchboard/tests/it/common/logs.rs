//! What the server logs during one test, for tests that check what an
//! operator is told.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};

thread_local! {
    /// Where this thread's WARN records go while a [`Logs`] captures them.
    static SINK: RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { RefCell::new(None) };
}

/// Captures the WARN (and worse) records logged on this thread until
/// dropped. A `#[tokio::test]` (current-thread) runs the servers it starts
/// on its own thread, so what they log lands here, and only theirs: the
/// other tests of the binary run on other threads. (One buffer for the
/// whole process would mix every test's logs, so that one test's warning
/// could pass another's check.)
///
/// One subscriber serves the whole binary, installed once, and writes each
/// record to the buffer of the thread that logs it: a subscriber per
/// thread (`set_default`) let tracing cache a log line's interest as
/// "never" when another thread hit it first while no subscriber of its own
/// wanted it, and a check of the logs then found nothing.
pub struct Logs {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl Logs {
    pub fn capture() -> Logs {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(|| Writer)
                .finish();
            // Another global subscriber would be a harness bug: said loudly.
            tracing::subscriber::set_global_default(subscriber)
                .expect("the test binary's only global subscriber");
        });
        let buffer = Arc::new(Mutex::new(Vec::new()));
        SINK.with(|sink| *sink.borrow_mut() = Some(buffer.clone()));
        Logs { buffer }
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        SINK.with(|sink| *sink.borrow_mut() = None);
    }
}

/// Writes to the logging thread's buffer, if it captures; else nowhere.
struct Writer;

impl std::io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        SINK.with(|sink| {
            if let Some(buffer) = &*sink.borrow() {
                buffer.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
