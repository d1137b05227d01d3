//! The internal object API (all routes need `X-Internal-Token`):
//!
//! | method | route | meaning |
//! |---|---|---|
//! | GET, HEAD | `/internal/v1/object?path=P` | read (headers below), or metadata only |
//! | PUT | `/internal/v1/object?path=P&mode=overwrite\|create\|update` | write the body atomically |
//! | DELETE | `/internal/v1/object?path=P` | delete (404 if absent) |
//! | GET | `/internal/v1/list?prefix=P&delimiter=true&offset=O` | list → [`ListResponse`] |
//! | POST | `/internal/v1/copy` | copy ([`CopyRequest`]) |
//!
//! Reads take `Range: bytes=a-b | a- | -n`, `If-Match`, `If-None-Match`, and the RFC 3339
//! headers [`IF_MODIFIED_SINCE`] / [`IF_UNMODIFIED_SINCE`] / [`VERSION`] (RFC 3339 rather than
//! HTTP dates, which would drop the sub-second part of `last_modified`). Responses carry the
//! object's metadata in [`SIZE`], [`LAST_MODIFIED`], `ETag`, [`VERSION`], and the returned
//! byte range in [`RANGE_START`]/[`RANGE_END`]. Updates send the expected version in `If-Match`
//! and [`VERSION`]. Errors are the JSON envelope with a status that keeps the
//! `object_store::Error` kind: 404 not found, 409 already exists, 412 precondition,
//! 304 not modified, 501 not implemented, 416 bad range.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const OBJECT_ROUTE: &str = "/internal/v1/object";
pub const LIST_ROUTE: &str = "/internal/v1/list";
pub const COPY_ROUTE: &str = "/internal/v1/copy";

pub const SIZE: &str = "x-strata-size";
pub const LAST_MODIFIED: &str = "x-strata-last-modified";
pub const VERSION: &str = "x-strata-version";
pub const RANGE_START: &str = "x-strata-range-start";
pub const RANGE_END: &str = "x-strata-range-end";
pub const IF_MODIFIED_SINCE: &str = "x-strata-if-modified-since";
pub const IF_UNMODIFIED_SINCE: &str = "x-strata-if-unmodified-since";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectQuery {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WriteMode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    Overwrite,
    Create,
    Update,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default)]
    pub delimiter: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMetaWire {
    pub location: String,
    pub last_modified: DateTime<Utc>,
    pub size: u64,
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListResponse {
    pub objects: Vec<ObjectMetaWire>,
    pub common_prefixes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutResponse {
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CopyRequest {
    pub from: String,
    pub to: String,
    pub mode: WriteMode,
}

impl From<object_store::ObjectMeta> for ObjectMetaWire {
    fn from(m: object_store::ObjectMeta) -> Self {
        Self {
            location: m.location.to_string(),
            last_modified: m.last_modified,
            size: m.size,
            e_tag: m.e_tag,
            version: m.version,
        }
    }
}

impl TryFrom<ObjectMetaWire> for object_store::ObjectMeta {
    type Error = object_store::path::Error;
    fn try_from(m: ObjectMetaWire) -> Result<Self, Self::Error> {
        Ok(Self {
            location: object_store::path::Path::parse(m.location)?,
            last_modified: m.last_modified,
            size: m.size,
            e_tag: m.e_tag,
            version: m.version,
        })
    }
}
