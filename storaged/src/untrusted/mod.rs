//! Decoding bytes a client sent (delta bodies, uploads): nothing in them may decide how much memory
//! is allocated, and nothing in them may take the process down.
//!
//! - **Arrow IPC**: before Arrow's reader sees the stream, its framing is walked here and
//!   every length it declares — each message's metadata and body, each buffer, each row
//!   count — is checked against the bytes actually present. Arrow's reader trusts them: a
//!   4-byte body `ff ff ff 7f` made it allocate 2 GiB, and a flipped bit in a body length
//!   made it ask for 252 TB and abort the process.
//! - **Every decoder** (Arrow IPC, Parquet) runs under [`contain`]: a panic inside it
//!   ("Int type with bit width of 98", "buffer not large enough") becomes an
//!   [`Error::InvalidInput`] naming the format, not a failed request or a dead thread.

pub mod parquet_pages;

use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use strata_shared::{Error, Result};

/// Runs `decode` on untrusted input; a panic in it is an invalid `what`.
pub fn contain<T>(what: &str, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("malformed");
        Err(Error::InvalidInput(format!("invalid {what}: {reason}")))
    })
}

/// An Arrow IPC stream held in memory: its schema and batches.
pub fn arrow_stream(body: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let invalid =
        |e: &dyn std::fmt::Display| Error::InvalidInput(format!("invalid Arrow IPC stream: {e}"));
    check_framing(&body).map_err(|e| invalid(&e))?;
    contain("Arrow IPC stream", || {
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .map_err(|e| invalid(&e))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        Ok((schema, batches))
    })
}

/// A Parquet file held in memory: its schema and batches.
pub fn parquet(body: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    contain("Parquet file", || {
        parquet_pages::check(&body)?;
        strata_shared::parquet_io::decode(body)
            .map_err(|e| Error::InvalidInput(format!("invalid Parquet file: {e}")))
    })
}

/// Walks the messages of an IPC stream and checks each declared length against the bytes
/// present. Rows: a batch of `n` rows needs at least `n` bits of body for any column but
/// the null type, so a row count above `8 × body + 64` is refused too (delta bodies are
/// flat columns).
fn check_framing(body: &[u8]) -> Result<()> {
    let invalid = |why: String| Error::InvalidInput(format!("invalid Arrow IPC stream: {why}"));
    let mut pos = 0usize;
    let mut message = 0usize;
    let word = |pos: usize, message: usize| -> Result<i32> {
        body.get(pos..pos + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| {
                invalid(format!(
                    "message {message}: the stream ends inside a length"
                ))
            })
    };
    while pos < body.len() {
        let mut length = word(pos, message)?;
        pos += 4;
        // 0xFFFFFFFF: the continuation marker before each length (IPC format ≥ 0.15).
        if length == -1 {
            length = word(pos, message)?;
            pos += 4;
        }
        if length == 0 {
            return Ok(()); // end of stream
        }
        let left = body.len() - pos;
        let length = usize::try_from(length)
            .ok()
            .filter(|&l| l <= left)
            .ok_or_else(|| {
                invalid(format!(
                    "message {message}: metadata of {length} bytes, {left} bytes left"
                ))
            })?;
        let header = arrow::ipc::root_as_message(&body[pos..pos + length])
            .map_err(|e| invalid(format!("message {message}: {e}")))?;
        pos += length;
        let left = body.len() - pos;
        let body_length = usize::try_from(header.bodyLength())
            .ok()
            .filter(|&l| l <= left)
            .ok_or_else(|| {
                invalid(format!(
                    "message {message}: a body of {} bytes, {left} bytes left",
                    header.bodyLength()
                ))
            })?;
        check_message(&header, body_length, message).map_err(|e| invalid(e.to_string()))?;
        pos += body_length;
        message += 1;
    }
    Ok(())
}

/// What a message's checks found wrong ([`check_message`]).
#[derive(Debug, thiserror::Error)]
enum MessageError {
    #[error("message {message}: {rows} rows in a body of {body_length} bytes")]
    TooManyRows {
        message: usize,
        rows: i64,
        body_length: usize,
    },
    #[error("message {message}: a column longer than its body")]
    ColumnTooLong { message: usize },
    #[error(
        "message {message}: a buffer at {offset} of {length} bytes, outside the body of \
         {body_length}"
    )]
    BufferOutside {
        message: usize,
        offset: i64,
        length: i64,
        body_length: usize,
    },
}

/// The checks of one message whose metadata is `header` and whose body has `body_length`
/// bytes, all present: the rows it declares fit its body, and every buffer lies inside it.
fn check_message(
    header: &arrow::ipc::Message,
    body_length: usize,
    message: usize,
) -> std::result::Result<(), MessageError> {
    let batch = header
        .header_as_record_batch()
        .or_else(|| header.header_as_dictionary_batch().and_then(|d| d.data()));
    let Some(batch) = batch else {
        return Ok(());
    };
    let rows_bound = body_length.saturating_mul(8).saturating_add(64);
    let too_many = |rows: i64| usize::try_from(rows).map_or(true, |r| r > rows_bound);
    if too_many(batch.length()) {
        return Err(MessageError::TooManyRows {
            message,
            rows: batch.length(),
            body_length,
        });
    }
    for node in batch.nodes().into_iter().flatten() {
        if too_many(node.length()) || too_many(node.null_count()) {
            return Err(MessageError::ColumnTooLong { message });
        }
    }
    for buffer in batch.buffers().into_iter().flatten() {
        let end = usize::try_from(buffer.offset())
            .ok()
            .zip(usize::try_from(buffer.length()).ok())
            .and_then(|(offset, length)| offset.checked_add(length));
        if end.is_none_or(|end| end > body_length) {
            return Err(MessageError::BufferOutside {
                message,
                offset: buffer.offset(),
                length: buffer.length(),
                body_length,
            });
        }
    }
    Ok(())
}

/// The largest metadata of one IPC message a stream read from a file may declare (schemas
/// and batch headers are kilobytes).
const MAX_IPC_METADATA: usize = 16 << 20;

/// An Arrow IPC stream of `size` bytes read from `inner` (an upload's spool file, a source
/// file) through the same checks as [`arrow_stream`], message by message: before arrow's
/// reader sees a message, its metadata is read and checked here, and the body it declares
/// must be within the bytes left and within `message_cap` (arrow allocates a body whole, so
/// the cap bounds what one message may cost). Never holds more than one message's metadata.
pub struct CheckedIpc<R> {
    inner: R,
    /// Bytes of the stream not yet read from `inner`.
    left: u64,
    message_cap: usize,
    /// Checked bytes (a length prefix and metadata) not yet handed on.
    pending: Vec<u8>,
    pending_pos: usize,
    /// Bytes of the current message's body still to hand on.
    body_left: u64,
    message: usize,
    ended: bool,
}

impl<R: std::io::Read> CheckedIpc<R> {
    pub fn new(inner: R, size: u64, message_cap: usize) -> Self {
        Self {
            inner,
            left: size,
            message_cap,
            pending: Vec::new(),
            pending_pos: 0,
            body_left: 0,
            message: 0,
            ended: false,
        }
    }

    fn take(&mut self, n: usize) -> std::io::Result<()> {
        let start = self.pending.len();
        self.pending.resize(start + n, 0);
        self.inner.read_exact(&mut self.pending[start..])?;
        self.left = self.left.saturating_sub(n as u64);
        Ok(())
    }

    fn word(&mut self) -> std::io::Result<Option<i32>> {
        if self.left < 4 {
            return Ok(None);
        }
        self.take(4)?;
        let b = &self.pending[self.pending.len() - 4..];
        Ok(Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// Reads and checks the next message's prefix and metadata into `pending`.
    fn next_message(&mut self) -> std::io::Result<()> {
        let bad = |why: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("invalid Arrow IPC stream: {why}"),
            )
        };
        let message = self.message;
        self.pending.clear();
        self.pending_pos = 0;
        let Some(mut length) = self.word()? else {
            if self.left > 0 {
                return Err(bad(format!(
                    "message {message}: the stream ends inside a length"
                )));
            }
            self.ended = true;
            return Ok(());
        };
        if length == -1 {
            length = self.word()?.ok_or_else(|| {
                bad(format!(
                    "message {message}: the stream ends inside a length"
                ))
            })?;
        }
        if length == 0 {
            self.ended = true;
            return Ok(());
        }
        let left = self.left;
        let length = usize::try_from(length)
            .ok()
            .filter(|&l| (l as u64) <= left && l <= MAX_IPC_METADATA)
            .ok_or_else(|| {
                bad(format!(
                    "message {message}: metadata of {length} bytes, {left} bytes left"
                ))
            })?;
        let start = self.pending.len();
        self.take(length)?;
        let header = arrow::ipc::root_as_message(&self.pending[start..])
            .map_err(|e| bad(format!("message {message}: {e}")))?;
        let left = self.left;
        let cap = self.message_cap;
        let body_length = usize::try_from(header.bodyLength())
            .ok()
            .filter(|&l| (l as u64) <= left)
            .ok_or_else(|| {
                bad(format!(
                    "message {message}: a body of {} bytes, {left} bytes left",
                    header.bodyLength()
                ))
            })?;
        if body_length > cap {
            return Err(bad(format!(
                "message {message}: a batch of {body_length} bytes, more than the {cap} a \
                 message may have here (send smaller batches)"
            )));
        }
        check_message(&header, body_length, message).map_err(|e| bad(e.to_string()))?;
        self.body_left = body_length as u64;
        self.message += 1;
        Ok(())
    }
}

impl<R: std::io::Read> std::io::Read for CheckedIpc<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pending_pos < self.pending.len() {
                let n = out.len().min(self.pending.len() - self.pending_pos);
                out[..n].copy_from_slice(&self.pending[self.pending_pos..self.pending_pos + n]);
                self.pending_pos += n;
                return Ok(n);
            }
            if self.body_left > 0 {
                let want = out
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut out[..want])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.body_left -= n as u64;
                self.left = self.left.saturating_sub(n as u64);
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            self.next_message()?;
            if self.ended && self.pending_pos >= self.pending.len() {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn stream() -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &schema).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        out
    }

    #[test]
    fn a_valid_stream_decodes() {
        let (schema, batches) = arrow_stream(Bytes::from(stream())).unwrap();
        assert_eq!(schema.fields().len(), 2);
        assert_eq!(batches[0].num_rows(), 2);
    }

    #[test]
    fn declared_lengths_beyond_the_body_are_refused_before_decoding() {
        for body in [
            vec![0xff, 0xff, 0xff, 0x7f],
            b"{\"upserts\": [{\"id\": 1}]}".to_vec(),
            vec![0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x40],
        ] {
            let e = arrow_stream(Bytes::from(body.clone())).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidInput(m) if m.contains("bytes left")),
                "{body:?}: {e}"
            );
        }
    }

    #[test]
    fn a_body_length_past_the_end_is_refused() {
        // The schema message is intact; every byte of the batch message's header gets each
        // of a few values in turn: whatever it declares, the answer is an error, not an
        // allocation of what it declared or a panic.
        let valid = stream();
        let schema_end = 8 + i32::from_le_bytes(valid[4..8].try_into().unwrap()) as usize;
        for at in schema_end..valid.len() {
            for value in [0x00, 0x7f, 0x80, 0xff] {
                let mut body = valid.clone();
                body[at] = value;
                let _ = arrow_stream(Bytes::from(body));
            }
        }
    }

    #[test]
    fn panics_are_contained() {
        let e = contain::<()>("test body", || panic!("Int type with bit width of 98")).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidInput(m) if m.contains("bit width of 98")),
            "{e}"
        );
    }
}
