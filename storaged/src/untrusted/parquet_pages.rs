//! The pages of an untrusted Parquet file, checked before the parquet crate decodes them.
//!
//! The parquet crate trusts each page header's `uncompressed_page_size` and allocates (and
//! zero-fills) that much before it decompresses: a page header in a few bytes of body can ask
//! for 2 GiB. So the pages of every column chunk are walked here first — each header read
//! with a small Thrift compact-protocol reader, each page's compressed bytes required to lie
//! inside its chunk, and the uncompressed sizes the headers declare summed against a budget
//! that grows with the body: [`budget`].

use bytes::Bytes;
use parquet::file::metadata::ParquetMetaDataReader;

use strata_shared::{Error, Result};

/// Declared uncompressed bytes allowed for a body of `len` bytes: 64 MiB, plus 32 times the
/// body (Parquet compresses real delta columns well under 32x; a run of one repeated value
/// more, but such a column is dictionary-encoded into a small page).
pub fn budget(len: usize) -> u64 {
    (64 << 20) + 32 * len as u64
}

/// Checks every page of every column chunk of `body`.
pub fn check(body: &Bytes) -> Result<()> {
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(body)
        .map_err(|e| invalid(e.to_string()))?;
    walk(&metadata, body.len() as u64, |at, len| {
        let start = usize::try_from(at).unwrap_or(usize::MAX).min(body.len());
        let end = start.saturating_add(len).min(body.len());
        Ok(body.slice(start..end))
    })
}

/// Checks every page of every column chunk of a Parquet file on disk (a spooled upload),
/// reading only its footer and its page headers, never a whole chunk.
pub fn check_file(file: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map_err(|e| invalid(e.to_string()))?.len();
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(file)
        .map_err(|e| invalid(e.to_string()))?;
    walk(&metadata, len, |at, want| {
        let want = usize::try_from(len.saturating_sub(at))
            .unwrap_or(usize::MAX)
            .min(want);
        let mut buf = vec![0; want];
        file.read_exact_at(&mut buf, at)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Bytes::from(buf))
    })
}

fn invalid(why: String) -> Error {
    Error::InvalidInput(format!("invalid Parquet file: {why}"))
}

/// The first bytes of a page read to find its header; a header longer is read again whole,
/// up to [`MAX_HEADER_BYTES`].
const HEADER_WINDOW: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 16 << 20;

/// The walk of [`check`] over a file of `file_len` bytes whose bytes `read(at, len)` gives.
fn walk(
    metadata: &parquet::file::metadata::ParquetMetaData,
    file_len: u64,
    mut read: impl FnMut(u64, usize) -> Result<Bytes>,
) -> Result<()> {
    let allowed = budget(usize::try_from(file_len).unwrap_or(usize::MAX));
    let mut declared = 0u64;
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for (c, column) in group.columns().iter().enumerate() {
            let (start, len) = column.byte_range();
            let end = start.saturating_add(len);
            if end > file_len {
                return Err(invalid(format!(
                    "row group {g} column {c} lies outside the file"
                )));
            }
            let mut pos = start;
            while pos < end {
                let mut window = HEADER_WINDOW;
                let page = loop {
                    let bytes = read(
                        pos,
                        usize::try_from(end - pos).unwrap_or(usize::MAX).min(window),
                    )?;
                    match header(&bytes) {
                        Err(PageError::CutShort)
                            if (bytes.len() as u64) < end - pos && window < MAX_HEADER_BYTES =>
                        {
                            window *= 16;
                        }
                        other => {
                            break other.map_err(|why| {
                                invalid(format!("row group {g} column {c}, page at {pos}: {why}"))
                            })?;
                        }
                    }
                };
                declared += page.uncompressed as u64;
                if declared > allowed {
                    return Err(invalid(format!(
                        "its pages declare more than {allowed} bytes uncompressed for a \
                         {file_len}-byte file"
                    )));
                }
                pos += (page.header_len + page.compressed) as u64;
                if pos > end {
                    return Err(invalid(format!(
                        "row group {g} column {c}: a page runs past its column chunk"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Why a page header could not be read.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("the header is cut short")]
    CutShort,
    #[error("a varint longer than 10 bytes")]
    LongVarint,
    #[error("the header nests too deep")]
    TooDeep,
    #[error("unknown Thrift type {0}")]
    UnknownType(u8),
    #[error("{0} page size {1}")]
    BadSize(&'static str, i64),
    #[error("no {0} page size")]
    NoSize(&'static str),
}

/// What the walk needs of a page header.
struct Page {
    header_len: usize,
    uncompressed: usize,
    compressed: usize,
}

/// Reads the `PageHeader` struct at the start of `bytes`: fields 2 and 3 are the
/// uncompressed and compressed sizes; the others are skipped.
fn header(bytes: &[u8]) -> std::result::Result<Page, PageError> {
    let mut reader = Compact { bytes, pos: 0 };
    let (mut uncompressed, mut compressed) = (None, None);
    let mut field = 0i16;
    loop {
        let byte = reader.byte()?;
        if byte == 0 {
            break;
        }
        let (delta, kind) = (byte >> 4, byte & 0x0f);
        field = if delta == 0 {
            zigzag(reader.varint()?) as i16
        } else {
            field + delta as i16
        };
        match (field, kind) {
            (2, I32) => uncompressed = Some(reader.varint().map(zigzag)?),
            (3, I32) => compressed = Some(reader.varint().map(zigzag)?),
            _ => reader.skip(kind, 0)?,
        }
    }
    let size = |v: Option<i64>, what: &'static str| match v {
        Some(n) if (0..=i32::MAX as i64).contains(&n) => Ok(n as usize),
        Some(n) => Err(PageError::BadSize(what, n)),
        None => Err(PageError::NoSize(what)),
    };
    Ok(Page {
        header_len: reader.pos,
        uncompressed: size(uncompressed, "uncompressed")?,
        compressed: size(compressed, "compressed")?,
    })
}

const I32: u8 = 5;
/// Nesting deeper than this is not a page header.
const MAX_DEPTH: usize = 16;

/// The Thrift compact protocol, read only as far as skipping needs.
struct Compact<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> std::result::Result<u8, PageError> {
        let b = *self.bytes.get(self.pos).ok_or(PageError::CutShort)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> std::result::Result<u64, PageError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(PageError::LongVarint)
    }

    fn advance(&mut self, n: u64) -> std::result::Result<(), PageError> {
        let end = (self.pos as u64).saturating_add(n);
        if end > self.bytes.len() as u64 {
            return Err(PageError::CutShort);
        }
        self.pos = end as usize;
        Ok(())
    }

    /// Skips one value of compact type `kind`.
    fn skip(&mut self, kind: u8, depth: usize) -> std::result::Result<(), PageError> {
        if depth > MAX_DEPTH {
            return Err(PageError::TooDeep);
        }
        match kind {
            1 | 2 => Ok(()),                    // booleans: in the type
            3 => self.advance(1),               // byte
            4..=6 => self.varint().map(|_| ()), // i16, i32, i64
            7 => self.advance(8),               // double
            8 => {
                let len = self.varint()?;
                self.advance(len)
            }
            9 | 10 => {
                let head = self.byte()?;
                let (size, element) = (u64::from(head >> 4), head & 0x0f);
                let size = if size == 15 { self.varint()? } else { size };
                for _ in 0..size {
                    // Booleans in a collection take a byte each.
                    if element == 1 || element == 2 {
                        self.advance(1)?;
                    } else {
                        self.skip(element, depth + 1)?;
                    }
                }
                Ok(())
            }
            11 => {
                let size = self.varint()?;
                if size == 0 {
                    return Ok(());
                }
                let kinds = self.byte()?;
                for _ in 0..size {
                    self.skip(kinds >> 4, depth + 1)?;
                    self.skip(kinds & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => loop {
                let byte = self.byte()?;
                if byte == 0 {
                    return Ok(());
                }
                if byte >> 4 == 0 {
                    self.varint()?; // a long-form field id
                }
                self.skip(byte & 0x0f, depth + 1)?;
            },
            other => Err(PageError::UnknownType(other)),
        }
    }
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use strata_shared::testing::peak_rss;

    use super::*;

    fn file() -> Bytes {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids: Vec<i64> = (0..50_000).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("name {}", i % 97)).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap();
        strata_shared::parquet_io::encode(schema, &[batch]).unwrap()
    }

    #[test]
    fn real_files_pass_and_a_page_that_asks_for_2_gib_does_not() {
        let body = file();
        check(&body).unwrap();
        // Every page header's uncompressed size (field 2, `0x15` then a zigzag varint right
        // after the type field) set to i32::MAX: the allocation the crate would have made.
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&body)
            .unwrap();
        let (start, _) = metadata.row_group(0).column(0).byte_range();
        let mut bytes = body.to_vec();
        let at = start as usize;
        // Field 1 (type): 0x15 + one varint byte; then field 2: 0x15 + varint.
        assert_eq!((bytes[at], bytes[at + 2]), (0x15, 0x15));
        let old_len = (at + 3..).take_while(|&i| bytes[i] & 0x80 != 0).count() + 1;
        let huge = [0xfe, 0xff, 0xff, 0xff, 0x0f]; // zigzag(i32::MAX)
        bytes.splice(at + 3..at + 3 + old_len, huge);
        let bomb = Bytes::from(bytes);
        let err = check(&bomb).unwrap_err().to_string();
        assert!(err.contains("invalid Parquet file"), "{err}");

        // Decoded as an untrusted body it is refused without the allocation (this test runs
        // in a process of its own: its peak RSS is the decode's).
        let before = peak_rss();
        assert!(crate::untrusted::parquet(bomb.clone()).is_err());
        let grown = peak_rss().saturating_sub(before);
        eprintln!("refused: peak RSS grew by {} MiB", grown >> 20);
        assert!(grown < 256 << 20, "peak RSS grew by {} MiB", grown >> 20);
    }
}
