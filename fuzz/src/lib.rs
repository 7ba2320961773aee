//! Helpers the fuzz targets share: turning raw bytes into the maps and readers the parsers
//! take, so that seed corpora can be real inputs written as text.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// `key=value` lines (split at the first `=`) as a map: the form the annotation and volume
/// attribute corpora are written in (`kubectl get pod -o yaml` annotations, one per line).
/// A line without `=` is a key with an empty value; later lines win.
pub fn key_value_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|line| match line.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (line.to_owned(), String::new()),
        })
        .collect()
}

/// Polls a future once: reading from a byte slice and writing to a Vec never wait.
pub fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("in-memory I/O never waits"),
    }
}
