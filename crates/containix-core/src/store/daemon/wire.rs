//! Framing of the worker protocol: little-endian u64s, strings padded to 8 bytes, counted lists.
//!
//! Requests are encoded synchronously into a buffer ([`WireWriter`]) and written in one go.
//! Replies are decoded from a buffered stream ([`WireReader`]) with a cap on every length and
//! count, so a confused or hostile daemon cannot make the client allocate without bound: memory
//! grows only with bytes actually received, and never past the caps.

use tokio::io::{AsyncBufRead, AsyncReadExt};

use crate::store::store_path::StorePath;

use super::error::{DaemonError, DaemonResult};

/// Longest store path string accepted (a valid one has at most 255 bytes).
pub const MAX_STORE_PATH_LEN: u64 = 1024;
/// Longest filesystem path accepted (GC root links).
pub const MAX_FS_PATH_LEN: u64 = 4096;
/// Longest log line accepted.
pub const MAX_LOG_LINE_LEN: u64 = 1 << 20;
/// Longest other string accepted (error messages, activity texts, realisations).
pub const MAX_STRING_LEN: u64 = 1 << 20;
/// Longest short string accepted (hashes, signatures, version, feature and output names).
pub const MAX_SHORT_STRING_LEN: u64 = 4096;
/// Most store paths accepted in one list (query results, references, GC roots).
pub const MAX_PATH_COUNT: u64 = 1 << 20;
/// Most short strings accepted in one list (signatures, features, error traces).
pub const MAX_SMALL_LIST_LEN: u64 = 1024;
/// Most fields accepted on one activity or result message.
pub const MAX_FIELD_COUNT: u64 = 64;

/// How much is reserved up front for a list, whatever count the daemon announces.
const MAX_PREALLOCATED_ITEMS: usize = 256;
/// How much is reserved up front for a string, whatever length the daemon announces.
const MAX_PREALLOCATED_BYTES: usize = 64 * 1024;

/// Padding needed after `len` bytes to reach a multiple of 8.
pub fn padding(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

/// Decodes protocol values from a buffered byte stream.
#[derive(Debug)]
pub struct WireReader<R> {
    inner: R,
}

impl<R: AsyncBufRead + Unpin> WireReader<R> {
    /// Wraps a buffered stream.
    pub fn new(inner: R) -> Self {
        Self { inner }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Gives back the wrapped stream.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads one u64.
    pub async fn u64(&mut self, what: &'static str) -> DaemonResult<u64> {
        let mut bytes = [0u8; 8];
        self.exact(&mut bytes, what).await?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Reads a bool, which must be 0 or 1.
    pub async fn bool(&mut self, what: &'static str) -> DaemonResult<bool> {
        match self.u64(what).await? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DaemonError::UnexpectedValue {
                what,
                value,
                expected: "0 or 1",
            }),
        }
    }

    /// Reads a count or length and checks it against `max`.
    pub async fn len(&mut self, what: &'static str, max: u64) -> DaemonResult<u64> {
        let len = self.u64(what).await?;
        if len > max {
            return Err(DaemonError::TooLarge { what, len, max });
        }
        Ok(len)
    }

    /// Reads a padded byte string of at most `max` bytes.
    pub async fn bytes(&mut self, what: &'static str, max: u64) -> DaemonResult<Vec<u8>> {
        let len = self.len(what, max).await?;
        let mut buf = Vec::with_capacity((len as usize).min(MAX_PREALLOCATED_BYTES));
        let read = (&mut self.inner).take(len).read_to_end(&mut buf).await?;
        if read as u64 != len {
            return Err(DaemonError::UnexpectedEof { what });
        }
        let mut pad = [0u8; 8];
        let pad = &mut pad[..padding(len)];
        self.exact(pad, what).await?;
        if pad.iter().any(|&b| b != 0) {
            return Err(DaemonError::NonZeroPadding { what });
        }
        Ok(buf)
    }

    /// Reads a padded UTF-8 string of at most `max` bytes.
    pub async fn string(&mut self, what: &'static str, max: u64) -> DaemonResult<String> {
        let bytes = self.bytes(what, max).await?;
        String::from_utf8(bytes).map_err(|_| DaemonError::NotUtf8 { what })
    }

    /// Reads a log line or message, replacing invalid UTF-8 rather than failing (build logs are
    /// arbitrary bytes).
    pub async fn text(&mut self, what: &'static str, max: u64) -> DaemonResult<String> {
        let bytes = self.bytes(what, max).await?;
        Ok(match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        })
    }

    /// Reads a store path and validates it.
    pub async fn store_path(&mut self, what: &'static str) -> DaemonResult<StorePath> {
        let text = self.string(what, MAX_STORE_PATH_LEN).await?;
        StorePath::parse(&text).map_err(|source| DaemonError::BadStorePath { what, source })
    }

    /// Reads an optional store path, where "" means absent.
    pub async fn optional_store_path(
        &mut self,
        what: &'static str,
    ) -> DaemonResult<Option<StorePath>> {
        let text = self.string(what, MAX_STORE_PATH_LEN).await?;
        if text.is_empty() {
            return Ok(None);
        }
        StorePath::parse(&text)
            .map(Some)
            .map_err(|source| DaemonError::BadStorePath { what, source })
    }

    /// Reads a list of store paths, at most `max` of them.
    pub async fn store_paths(
        &mut self,
        what: &'static str,
        max: u64,
    ) -> DaemonResult<Vec<StorePath>> {
        let count = self.len(what, max).await?;
        let mut paths = Vec::with_capacity((count as usize).min(MAX_PREALLOCATED_ITEMS));
        for _ in 0..count {
            paths.push(self.store_path(what).await?);
        }
        Ok(paths)
    }

    /// Reads a list of at most `max_count` strings of at most `max_len` bytes each.
    pub async fn strings(
        &mut self,
        what: &'static str,
        max_count: u64,
        max_len: u64,
    ) -> DaemonResult<Vec<String>> {
        let count = self.len(what, max_count).await?;
        let mut items = Vec::with_capacity((count as usize).min(MAX_PREALLOCATED_ITEMS));
        for _ in 0..count {
            items.push(self.string(what, max_len).await?);
        }
        Ok(items)
    }

    async fn exact(&mut self, buf: &mut [u8], what: &'static str) -> DaemonResult<()> {
        match self.inner.read_exact(buf).await {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(DaemonError::UnexpectedEof { what })
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// Encodes protocol values into a buffer.
#[derive(Debug, Default, Clone)]
pub struct WireWriter {
    buf: Vec<u8>,
}

impl WireWriter {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes encoded so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends a u64.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.buf.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a bool as 0 or 1.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.u64(u64::from(value))
    }

    /// Appends a length-prefixed, zero-padded byte string.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.u64(value.len() as u64);
        self.buf.extend_from_slice(value);
        self.buf
            .extend(std::iter::repeat_n(0, padding(value.len() as u64)));
        self
    }

    /// Appends a string.
    pub fn string(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    /// Appends a counted list of strings.
    pub fn strings<I, S>(&mut self, values: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        I::IntoIter: ExactSizeIterator,
        S: AsRef<str>,
    {
        let values = values.into_iter();
        self.u64(values.len() as u64);
        for value in values {
            self.string(value.as_ref());
        }
        self
    }

    /// Appends a store path.
    pub fn store_path(&mut self, path: &StorePath) -> &mut Self {
        self.string(path.as_str())
    }

    /// Appends a counted list of store paths.
    pub fn store_paths<'a, I>(&mut self, paths: I) -> &mut Self
    where
        I: IntoIterator<Item = &'a StorePath>,
        I::IntoIter: ExactSizeIterator,
    {
        self.strings(paths.into_iter().map(StorePath::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::daemon::in_memory::ready;
    use proptest::prelude::*;

    fn reader(bytes: &[u8]) -> WireReader<&[u8]> {
        WireReader::new(bytes)
    }

    #[test]
    fn strings_are_padded_to_eight_bytes() {
        let mut w = WireWriter::new();
        w.string("abc").string("").string("12345678");
        assert_eq!(
            w.as_bytes(),
            [
                &3u64.to_le_bytes()[..],
                b"abc\0\0\0\0\0",
                &0u64.to_le_bytes(),
                &8u64.to_le_bytes(),
                b"12345678"
            ]
            .concat()
        );
        let bytes = w.into_bytes();
        let mut r = reader(&bytes);
        assert_eq!(ready(r.string("a", 10)).unwrap(), "abc");
        assert_eq!(ready(r.string("b", 10)).unwrap(), "");
        assert_eq!(ready(r.string("c", 10)).unwrap(), "12345678");
        assert!(r.get_ref().is_empty());
    }

    #[test]
    fn non_zero_padding_is_rejected() {
        let mut bytes = WireWriter::new().string("abc").as_bytes().to_vec();
        bytes[13] = 1;
        let err = ready(reader(&bytes).string("log line", 10)).unwrap_err();
        assert!(matches!(
            err,
            DaemonError::NonZeroPadding { what: "log line" }
        ));
    }

    #[test]
    fn lengths_over_the_cap_are_refused_without_reading_on() {
        let bytes = WireWriter::new().string("abcdefghi").as_bytes().to_vec();
        let err = ready(reader(&bytes).string("error message", 8)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Nix daemon sent error message of 9; at most 8 is accepted"
        );
        let bytes = WireWriter::new().u64(u64::MAX).as_bytes().to_vec();
        let err = ready(reader(&bytes).store_paths("references", 10)).unwrap_err();
        assert!(matches!(
            err,
            DaemonError::TooLarge {
                what: "references",
                len: u64::MAX,
                max: 10
            }
        ));
    }

    #[test]
    fn truncated_input_is_an_eof_naming_the_value() {
        let bytes = WireWriter::new().u64(100).as_bytes().to_vec();
        let err = ready(reader(&bytes).string("narHash", 1000)).unwrap_err();
        assert!(matches!(
            err,
            DaemonError::UnexpectedEof { what: "narHash" }
        ));
        let err = ready(reader(&[1, 2, 3]).u64("magic")).unwrap_err();
        assert!(matches!(err, DaemonError::UnexpectedEof { what: "magic" }));
    }

    #[test]
    fn bools_must_be_zero_or_one() {
        let bytes = WireWriter::new().u64(2).as_bytes().to_vec();
        assert!(ready(reader(&bytes).bool("valid")).is_err());
    }

    #[test]
    fn store_paths_are_validated() {
        let bytes = WireWriter::new().string("/tmp/x").as_bytes().to_vec();
        let err = ready(reader(&bytes).store_path("reference")).unwrap_err();
        assert!(matches!(
            err,
            DaemonError::BadStorePath {
                what: "reference",
                ..
            }
        ));
        let bytes = WireWriter::new().string("").as_bytes().to_vec();
        assert_eq!(
            ready(reader(&bytes).optional_store_path("deriver")).unwrap(),
            None
        );
    }

    proptest! {
        #[test]
        fn byte_strings_round_trip(values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8)) {
            let mut w = WireWriter::new();
            for value in &values {
                w.bytes(value);
            }
            prop_assert_eq!(w.as_bytes().len() % 8, 0);
            let bytes = w.into_bytes();
            let mut r = reader(&bytes);
            for value in &values {
                prop_assert_eq!(&ready(r.bytes("value", 40)).unwrap(), value);
            }
            prop_assert!(r.get_ref().is_empty());
        }

        #[test]
        fn string_lists_round_trip(values in prop::collection::vec("\\PC{0,30}", 0..10), n in any::<u64>()) {
            let mut w = WireWriter::new();
            w.strings(&values).u64(n);
            let bytes = w.into_bytes();
            let mut r = reader(&bytes);
            prop_assert_eq!(ready(r.strings("list", 10, 1000)).unwrap(), values);
            prop_assert_eq!(ready(r.u64("n")).unwrap(), n);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut r = reader(&bytes);
            let _ = ready(r.strings("list", 100, 100));
        }
    }
}
