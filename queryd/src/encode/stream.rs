//! Whole results encoded batch by batch, for the answers that stream (`…/query/stream`,
//! `…/export`, `…/changes`) and for pages in a format other than datap-rs's JSON envelope.
//! Each call returns the bytes ready so far, so a result of any size goes out in chunks of
//! about a batch (Parquet: of a row group).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;

use super::{IpcEncoder, ndjson_rows};
use crate::chunks::to_schema;
use crate::error::QueryError;

/// What an answer is encoded as: datap-rs's JSON page envelope, or an [`Encoding`] of the
/// rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Rows(Encoding),
}

impl Format {
    /// Every format, by its `?format=` name.
    pub const ALL: [(&'static str, Format); 5] = [
        ("json", Format::Json),
        ("arrow", Format::Rows(Encoding::Arrow)),
        ("ndjson", Format::Rows(Encoding::Ndjson)),
        ("csv", Format::Rows(Encoding::Csv)),
        ("parquet", Format::Rows(Encoding::Parquet)),
    ];

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Rows(e) => e.content_type(),
        }
    }

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("json", |(n, _)| n)
    }

    /// The format of an answer: `?format=` (`param`) wins over `Accept` (`accept`, a media
    /// range list; `*/*`, a type's `/*` and an absent header take the first `offered`). A
    /// format the route does not offer is a 400 when named, a 406 when only `Accept` asks for
    /// it: never an answer in a format the client did not ask for.
    pub fn negotiate(
        param: Option<&str>,
        accept: Option<&str>,
        offered: &[Format],
    ) -> Result<Format, NotOffered> {
        let names = || {
            offered
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(name) = param {
            return Self::ALL
                .iter()
                .find(|(n, f)| *n == name && offered.contains(f))
                .map(|(_, f)| *f)
                .ok_or_else(|| {
                    NotOffered::Named(format!(
                        "format {name:?} is not offered here (expected one of: {})",
                        names()
                    ))
                });
        }
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Ok(offered[0]);
        };
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if refused {
                continue;
            }
            let found = offered.iter().find(|f| {
                let content_type = f.content_type();
                media == "*/*"
                    || media == content_type
                    || (media == "application/x-parquet"
                        && content_type == strata_storaged_api::PARQUET_CONTENT_TYPE)
                    || media
                        .strip_suffix("/*")
                        .is_some_and(|kind| content_type.split('/').next() == Some(kind))
            });
            if let Some(format) = found {
                return Ok(*format);
            }
        }
        Err(NotOffered::Accept(format!(
            "cannot answer with any of Accept: {accept} (available here: {})",
            offered
                .iter()
                .map(|f| f.content_type())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// Why [`Format::negotiate`] found no format.
#[derive(Debug, thiserror::Error)]
pub enum NotOffered {
    /// `?format=` named one the route does not offer (a 400).
    #[error("{0}")]
    Named(String),
    /// Nothing in `Accept` is offered (a 406).
    #[error("{0}")]
    Accept(String),
}

/// The encodings of a result (besides the JSON page envelope).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Arrow,
    Ndjson,
    Csv,
    Parquet,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Arrow => strata_queryd_api::ARROW_STREAM,
            Encoding::Ndjson => strata_queryd_api::NDJSON,
            Encoding::Csv => "text/csv",
            Encoding::Parquet => strata_storaged_api::PARQUET_CONTENT_TYPE,
        }
    }

    /// The file extension of an export.
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Arrow => "arrows",
            Encoding::Ndjson => "ndjson",
            Encoding::Csv => "csv",
            Encoding::Parquet => "parquet",
        }
    }
}

/// Encodes one result: [`Encoder::new`] (its first bytes: the Arrow schema, the CSV header),
/// [`Encoder::write`] per batch, [`Encoder::finish`] (the Arrow end marker, the Parquet
/// footer).
pub struct Encoder {
    schema: SchemaRef,
    kind: Kind,
}

enum Kind {
    Arrow(IpcEncoder),
    Ndjson,
    Csv,
    Parquet(Box<ArrowWriter<Vec<u8>>>),
}

impl Encoder {
    /// An encoder of batches cast to `schema` (the logical schema: no dictionaries), and the
    /// bytes that open the result.
    pub fn new(encoding: Encoding, schema: SchemaRef) -> Result<(Self, Bytes), QueryError> {
        let (kind, head) = match encoding {
            Encoding::Arrow => {
                let mut ipc = IpcEncoder::new(schema.clone())?;
                let head = ipc.take();
                (Kind::Arrow(ipc), head)
            }
            Encoding::Ndjson => (Kind::Ndjson, Bytes::new()),
            Encoding::Csv => (
                Kind::Csv,
                csv(&RecordBatch::new_empty(schema.clone()), true)?,
            ),
            Encoding::Parquet => {
                let writer = ArrowWriter::try_new(
                    Vec::new(),
                    schema.clone(),
                    Some(strata_shared::parquet_io::writer_properties()),
                )
                .map_err(|e| QueryError::Internal(format!("parquet writer: {e}")))?;
                (Kind::Parquet(Box::new(writer)), Bytes::new())
            }
        };
        Ok((Self { schema, kind }, head))
    }

    /// Encodes `batch`; the bytes ready (none while a Parquet row group fills).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        let batch = to_schema(batch, &self.schema)?;
        match &mut self.kind {
            Kind::Arrow(ipc) => ipc.write(&batch),
            Kind::Ndjson => {
                let mut out = Vec::new();
                ndjson_rows(&batch, &mut out)?;
                Ok(Bytes::from(out))
            }
            Kind::Csv => csv(&batch, false),
            Kind::Parquet(writer) => {
                writer.write(&batch).map_err(parquet_error)?;
                // The writer keeps the open row group itself; what it wrote out (whole row
                // groups) can go. Taking the buffer does not move the writer's offsets.
                Ok(Bytes::from(std::mem::take(writer.inner_mut())))
            }
        }
    }

    /// The bytes that close the result.
    pub fn finish(self) -> Result<Bytes, QueryError> {
        match self.kind {
            Kind::Arrow(ipc) => ipc.finish(),
            Kind::Ndjson | Kind::Csv => Ok(Bytes::new()),
            Kind::Parquet(writer) => Ok(Bytes::from(writer.into_inner().map_err(parquet_error)?)),
        }
    }
}

/// `batch` as CSV (RFC 4180 quoting), with the header line when `header`.
fn csv(batch: &RecordBatch, header: bool) -> Result<Bytes, QueryError> {
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(header)
        .build(Vec::new());
    writer.write(batch)?;
    Ok(Bytes::from(writer.into_inner()))
}

fn parquet_error(e: parquet::errors::ParquetError) -> QueryError {
    QueryError::Internal(format!("parquet: {e}"))
}

/// A whole result (a page) in one buffer.
pub fn encode_all(
    encoding: Encoding,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, QueryError> {
    let (mut encoder, head) = Encoder::new(encoding, schema)?;
    let mut out = head.to_vec();
    for batch in batches {
        out.extend_from_slice(&encoder.write(batch)?);
    }
    out.extend_from_slice(&encoder.finish()?);
    Ok(out)
}
