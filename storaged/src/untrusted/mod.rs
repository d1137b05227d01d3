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

mod parquet_pages;

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

/// How many rows of a CSV or NDJSON upload its column types are inferred from.
const INFER_ROWS: usize = 10_000;
/// Rows per decoded batch of a CSV or NDJSON upload.
const TEXT_BATCH_ROWS: usize = 8 * 1024;

/// A CSV file with a header line held in memory: its schema, inferred from its first
/// [`INFER_ROWS`] rows (integers, floats, booleans, dates, timestamps, else strings; an empty
/// field is a null), and its batches. A later row that does not fit the inferred type is a
/// 400 naming it.
pub fn csv(body: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let invalid = |e: &dyn std::fmt::Display| Error::InvalidInput(format!("invalid CSV: {e}"));
    contain("CSV", || {
        let format = arrow::csv::reader::Format::default().with_header(true);
        let (schema, _) = format
            .infer_schema(std::io::Cursor::new(&body), Some(INFER_ROWS))
            .map_err(|e| invalid(&e))?;
        if schema.fields().is_empty() {
            return Err(invalid(&"no header line"));
        }
        let schema = std::sync::Arc::new(schema);
        let reader = arrow::csv::ReaderBuilder::new(schema.clone())
            .with_format(format)
            .with_batch_size(TEXT_BATCH_ROWS)
            .build(std::io::Cursor::new(body))
            .map_err(|e| invalid(&e))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        Ok((schema, batches))
    })
}

/// NDJSON (one JSON object per line) held in memory: its schema, inferred from its first
/// [`INFER_ROWS`] rows, and its batches.
pub fn ndjson(body: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let invalid = |e: &dyn std::fmt::Display| Error::InvalidInput(format!("invalid NDJSON: {e}"));
    contain("NDJSON", || {
        let (schema, _) = arrow::json::reader::infer_json_schema_from_seekable(
            std::io::Cursor::new(&body),
            Some(INFER_ROWS),
        )
        .map_err(|e| invalid(&e))?;
        if schema.fields().is_empty() {
            return Err(invalid(&"no rows with columns"));
        }
        let schema = std::sync::Arc::new(in_key_order(schema, &body));
        let reader = arrow::json::ReaderBuilder::new(schema.clone())
            .with_batch_size(TEXT_BATCH_ROWS)
            .build(std::io::Cursor::new(body))
            .map_err(|e| invalid(&e))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        Ok((schema, batches))
    })
}

/// `schema` (which arrow's inference sorts by name) with its columns in the order their keys
/// first appear in the first [`INFER_ROWS`] lines of `body`: the order the file has.
fn in_key_order(schema: arrow::datatypes::Schema, body: &[u8]) -> arrow::datatypes::Schema {
    /// The keys of one JSON object, in order.
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> std::result::Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visitor)
        }
    }
    let mut order: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in body.split(|b| *b == b'\n').take(INFER_ROWS) {
        if let Ok(Keys(keys)) = serde_json::from_slice::<Keys>(line) {
            for key in keys {
                let next = order.len();
                order.entry(key).or_insert(next);
            }
        }
    }
    let position = |name: &str| order.get(name).copied().unwrap_or(usize::MAX);
    let mut fields: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
    fields.sort_by_key(|f| position(f.name()));
    arrow::datatypes::Schema::new(fields)
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
        let batch = header
            .header_as_record_batch()
            .or_else(|| header.header_as_dictionary_batch().and_then(|d| d.data()));
        if let Some(batch) = batch {
            let rows_bound = body_length.saturating_mul(8).saturating_add(64);
            let too_many = |rows: i64| usize::try_from(rows).map_or(true, |r| r > rows_bound);
            if too_many(batch.length()) {
                return Err(invalid(format!(
                    "message {message}: {} rows in a body of {body_length} bytes",
                    batch.length()
                )));
            }
            for node in batch.nodes().into_iter().flatten() {
                if too_many(node.length()) || too_many(node.null_count()) {
                    return Err(invalid(format!(
                        "message {message}: a column longer than its body"
                    )));
                }
            }
            for buffer in batch.buffers().into_iter().flatten() {
                let end = usize::try_from(buffer.offset())
                    .ok()
                    .zip(usize::try_from(buffer.length()).ok())
                    .and_then(|(offset, length)| offset.checked_add(length));
                if end.is_none_or(|end| end > body_length) {
                    return Err(invalid(format!(
                        "message {message}: a buffer at {} of {} bytes, outside the body of \
                         {body_length}",
                        buffer.offset(),
                        buffer.length()
                    )));
                }
            }
        }
        pos += body_length;
        message += 1;
    }
    Ok(())
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
