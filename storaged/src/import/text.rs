//! CSV (with a header line) and NDJSON files of a source: their schema, inferred from a sample
//! of the first file or given by the request, and their rows decoded in bounded batches from a
//! byte stream, never the whole file.
//!
//! Memory: a batch ends at [`BATCH_ROWS`] rows or once [`BATCH_BYTES`] of text went into it,
//! whichever comes first, always at a record boundary; a single record longer than
//! [`MAX_RECORD_BYTES`] is refused. So a hostile file (one endless line, a quoted field that
//! never closes) costs at most those bounds, not its size.

use std::io::Read;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use strata_storaged_api::catalog::SourceColumn;

use super::Unreadable;

/// How many rows of a file its column types are inferred from.
pub const INFER_ROWS: usize = 10_000;
/// At most this much of a file's start is read to infer its types (the rows that fit).
pub const SAMPLE_BYTES: usize = 16 << 20;
/// Rows per decoded batch.
const BATCH_ROWS: usize = 8 * 1024;
/// Text per decoded batch, at most (the batch closes at the next record boundary after it).
const BATCH_BYTES: usize = 16 << 20;
/// The longest record accepted.
pub const MAX_RECORD_BYTES: usize = 64 << 20;
/// Bytes read from the stream at a time.
const READ_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    Csv,
    Ndjson,
}

impl TextFormat {
    pub fn name(self) -> &'static str {
        match self {
            TextFormat::Csv => "CSV",
            TextFormat::Ndjson => "NDJSON",
        }
    }
}

/// The schema of `sample`, the start of a file (`whole`: the whole file). A sample cut short
/// is cut back to its last line, so a row cut in two does not decide a type.
pub fn infer(format: TextFormat, sample: &[u8], whole: bool) -> Result<Schema, Unreadable> {
    let sample = if whole {
        sample
    } else {
        let end = sample
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        &sample[..end]
    };
    let schema = match format {
        TextFormat::Csv => {
            let format = arrow::csv::reader::Format::default().with_header(true);
            let (schema, _) = format
                .infer_schema(std::io::Cursor::new(sample), Some(INFER_ROWS))
                .map_err(|e| Unreadable(e.to_string()))?;
            if schema.fields().is_empty() {
                return Err("no header line".into());
            }
            schema
        }
        TextFormat::Ndjson => {
            let (schema, _) = arrow::json::reader::infer_json_schema_from_seekable(
                std::io::Cursor::new(sample),
                Some(INFER_ROWS),
            )
            .map_err(|e| Unreadable(e.to_string()))?;
            if schema.fields().is_empty() {
                return Err("no rows with columns".into());
            }
            in_key_order(schema, sample)
        }
    };
    Ok(schema)
}

/// The schema a request gives (`schema` of the create request), from its small vocabulary.
pub fn explicit(columns: &[SourceColumn]) -> Result<Schema, Unreadable> {
    if columns.is_empty() {
        return Err("schema lists no columns".into());
    }
    let mut fields = Vec::with_capacity(columns.len());
    for column in columns {
        let data_type = match column.data_type.to_ascii_lowercase().as_str() {
            "boolean" | "bool" => DataType::Boolean,
            "int32" => DataType::Int32,
            "int64" => DataType::Int64,
            "float32" => DataType::Float32,
            "float64" | "double" => DataType::Float64,
            "string" | "utf8" => DataType::Utf8,
            "date" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            other => {
                return Err(Unreadable(format!(
                    "column {:?}: unknown type {other:?} (boolean, int32, int64, float32, \
                     float64, string, date, timestamp)",
                    column.name
                )));
            }
        };
        if fields.iter().any(|f: &Field| f.name() == &column.name) {
            return Err(Unreadable(format!(
                "column {:?} is listed twice",
                column.name
            )));
        }
        fields.push(Field::new(&column.name, data_type, column.nullable));
    }
    Ok(Schema::new(fields))
}

/// `schema` (which arrow's inference sorts by name) with its columns in the order their keys
/// first appear in the first [`INFER_ROWS`] lines of `body`: the order the file has.
fn in_key_order(schema: Schema, body: &[u8]) -> Schema {
    /// The keys of one JSON object, in order.
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
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
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    fields.sort_by_key(|f| position(f.name()));
    Schema::new(fields)
}

enum Decoder {
    Csv(Box<arrow::csv::reader::Decoder>),
    Json(Box<arrow::json::reader::Decoder>),
}

impl Decoder {
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, ArrowError> {
        match self {
            Decoder::Csv(d) => d.decode(bytes),
            Decoder::Json(d) => d.decode(bytes),
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Decoder::Csv(d) => d.flush(),
            Decoder::Json(d) => d.flush(),
        }
    }
}

/// The rows of one text file, decoded from `input` in bounded batches (module docs).
pub struct TextRows {
    input: Box<dyn Read + Send>,
    decoder: Decoder,
    format: TextFormat,
    buf: Vec<u8>,
    /// `buf[pos..len]` is read but not yet decoded.
    pos: usize,
    len: usize,
    /// The piece being decoded ends here, and at a record boundary when `piece_boundary`.
    piece_end: usize,
    piece_boundary: bool,
    /// CSV: inside a quoted field (an odd number of `"` so far; `""` toggles twice).
    quoted: bool,
    since_flush: usize,
    since_boundary: usize,
    eof: bool,
    finished: bool,
}

impl TextRows {
    pub fn new(
        format: TextFormat,
        schema: SchemaRef,
        input: Box<dyn Read + Send>,
    ) -> Result<Self, ArrowError> {
        let decoder = match format {
            TextFormat::Csv => Decoder::Csv(Box::new(
                arrow::csv::ReaderBuilder::new(schema)
                    .with_header(true)
                    .with_batch_size(BATCH_ROWS)
                    .build_decoder(),
            )),
            TextFormat::Ndjson => Decoder::Json(Box::new(
                arrow::json::ReaderBuilder::new(schema)
                    .with_batch_size(BATCH_ROWS)
                    .build_decoder()?,
            )),
        };
        Ok(Self {
            input,
            decoder,
            format,
            buf: vec![0; READ_BYTES],
            pos: 0,
            len: 0,
            piece_end: 0,
            piece_boundary: false,
            quoted: false,
            since_flush: 0,
            since_boundary: 0,
            eof: false,
            finished: false,
        })
    }

    /// The next batch, `None` after the last row.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, Unreadable> {
        if self.finished {
            return Ok(None);
        }
        loop {
            if self.pos == self.len {
                if self.eof {
                    // An empty decode tells the CSV decoder the last record is complete.
                    self.decoder
                        .decode(&[])
                        .map_err(|e| Unreadable(e.to_string()))?;
                    self.finished = true;
                    return self.decoder.flush().map_err(|e| Unreadable(e.to_string()));
                }
                self.len = self
                    .input
                    .read(&mut self.buf)
                    .map_err(|e| Unreadable(format!("reading failed: {e}")))?;
                self.pos = 0;
                self.piece_end = 0;
                self.eof = self.len == 0;
                continue;
            }
            if self.pos == self.piece_end {
                self.next_piece();
            }
            let piece = &self.buf[self.pos..self.piece_end];
            let used = self
                .decoder
                .decode(piece)
                .map_err(|e| Unreadable(e.to_string()))?;
            self.pos += used;
            self.since_flush += used;
            self.since_boundary += used;
            let batch_full = used < piece.len();
            if self.pos == self.piece_end && self.piece_boundary {
                self.since_boundary = 0;
            }
            if self.since_boundary > MAX_RECORD_BYTES {
                return Err(Unreadable(format!(
                    "a record longer than {} MiB (is a quote left open?)",
                    MAX_RECORD_BYTES >> 20
                )));
            }
            let at_boundary = self.pos == self.piece_end && self.piece_boundary;
            if batch_full || (at_boundary && self.since_flush >= BATCH_BYTES) {
                self.since_flush = 0;
                if let Some(batch) = self
                    .decoder
                    .flush()
                    .map_err(|e| Unreadable(e.to_string()))?
                {
                    return Ok(Some(batch));
                }
            }
        }
    }

    /// Sets the next piece to decode: up to and including the next record boundary in the
    /// buffer (a line end outside quotes), or the rest of the buffer.
    fn next_piece(&mut self) {
        let bytes = &self.buf[self.pos..self.len];
        let mut end = None;
        for (i, b) in bytes.iter().enumerate() {
            match (*b, self.format) {
                (b'"', TextFormat::Csv) => self.quoted = !self.quoted,
                (b'\n', _) if !self.quoted => {
                    end = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        self.piece_boundary = end.is_some();
        self.piece_end = self.pos + end.unwrap_or(bytes.len());
    }
}

/// The schema as the decoders take it: shared.
pub fn shared(schema: Schema) -> SchemaRef {
    Arc::new(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(format: TextFormat, text: &str) -> Result<Vec<RecordBatch>, Unreadable> {
        let schema = shared(infer(format, text.as_bytes(), true)?);
        let mut rows = TextRows::new(
            format,
            schema,
            Box::new(std::io::Cursor::new(text.to_owned())),
        )
        .map_err(|e| Unreadable(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(batch) = rows.next_batch()? {
            out.push(batch);
        }
        Ok(out)
    }

    #[test]
    fn csv_with_quoted_newlines_and_no_final_newline() {
        let batches = rows(TextFormat::Csv, "id,name\n1,\"a\nb\"\n2,\"c\"\"d\"\n3,e").unwrap();
        let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(n, 3);
    }

    #[test]
    fn ndjson_keeps_key_order() {
        let schema = infer(TextFormat::Ndjson, b"{\"b\": 1, \"a\": \"x\"}\n", true).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["b", "a"]);
        let batches = rows(TextFormat::Ndjson, "{\"b\": 1, \"a\": \"x\"}\n{\"b\": 2}\n").unwrap();
        assert_eq!(batches[0].num_rows(), 2);
    }

    #[test]
    fn an_unclosed_quote_is_bounded() {
        let mut text = String::from("id,name\n1,\"");
        text.push_str(&"x\n".repeat(MAX_RECORD_BYTES / 2 + 10));
        let e = rows(TextFormat::Csv, &text).unwrap_err();
        assert!(e.0.contains("record longer than"), "{e}");
    }

    #[test]
    fn a_cut_sample_ends_at_a_line() {
        let schema = infer(TextFormat::Csv, b"id,x\n1,2\n3,2024-01-0", false).unwrap();
        assert_eq!(schema.field(1).data_type(), &DataType::Int64);
    }

    #[test]
    fn explicit_types() {
        let column = |name: &str, t: &str| SourceColumn {
            name: name.into(),
            data_type: t.into(),
            nullable: true,
        };
        let schema = explicit(&[column("a", "int64"), column("b", "timestamp")]).unwrap();
        assert_eq!(schema.fields().len(), 2);
        assert!(
            explicit(&[column("a", "int128")])
                .unwrap_err()
                .0
                .contains("unknown type")
        );
    }
}
