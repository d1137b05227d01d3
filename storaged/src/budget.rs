//! The global budget for decoding client bodies (delta bodies, uploads): concurrent heavy
//! requests are admitted against it, not left to the allocator.
//!
//! A request reserves what decoding its body may cost — the body's size times its format's
//! expansion — before it decodes, and holds the reservation until its decoded rows are
//! handed on. When the budget is taken, a request waits up to [`ADMIT_WAIT`] and is then
//! refused (503 with `Retry-After`): three 64 MiB JSON bodies at once used to take gigabytes.
//! A body whose cost exceeds the whole budget is admitted alone (it waits for all of it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::catalog::UploadFormat;
use crate::delta_input::DeltaFormat;

/// How long a request waits for room before it is refused.
const ADMIT_WAIT: Duration = Duration::from_secs(2);
/// Permits are KiB: a semaphore counts at most `usize::MAX >> 3` permits.
const UNIT: usize = 1024;

/// Decoded memory per body byte, by format, with room for the decoder's transient copies:
/// JSON becomes a tree of `serde_json::Value`s (measured ~10x for delta rows) before it
/// becomes columns; an Arrow stream is copied into arrays and sorted; Parquet is compressed.
/// CSV is text of about the size of its columns; NDJSON repeats every key in every row.
fn expansion(format: BodyFormat) -> usize {
    match format {
        BodyFormat::Delta(DeltaFormat::Json) | BodyFormat::Upload(UploadFormat::Ndjson) => 16,
        BodyFormat::Delta(DeltaFormat::ArrowStream)
        | BodyFormat::Upload(UploadFormat::ArrowStream) => 3,
        BodyFormat::Delta(DeltaFormat::Parquet) | BodyFormat::Upload(UploadFormat::Parquet) => 8,
        BodyFormat::Upload(UploadFormat::Csv) => 4,
    }
}

/// The format of a body the budget admits: a delta's or an upload's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Delta(DeltaFormat),
    Upload(UploadFormat),
}

impl From<DeltaFormat> for BodyFormat {
    fn from(f: DeltaFormat) -> Self {
        BodyFormat::Delta(f)
    }
}

impl From<UploadFormat> for BodyFormat {
    fn from(f: UploadFormat) -> Self {
        BodyFormat::Upload(f)
    }
}

#[derive(Clone, Debug)]
pub struct DecodeBudget {
    permits: Arc<Semaphore>,
    capacity: usize,
}

/// Room to decode one body; given back when dropped.
#[derive(Debug)]
pub struct Reservation(#[allow(dead_code)] OwnedSemaphorePermit);

#[derive(Debug, thiserror::Error)]
#[error(
    "storaged is decoding other bodies (its decode budget of {budget_mib} MiB is in use): \
     retry shortly"
)]
pub struct Busy {
    pub budget_mib: usize,
}

/// 503 with `Retry-After`: the refusal is about now, not about the body.
impl From<Busy> for strata_daemon::ApiError {
    fn from(e: Busy) -> Self {
        strata_daemon::ApiError::unavailable(e.to_string(), 1)
    }
}

impl DecodeBudget {
    pub fn new(bytes: usize) -> Self {
        let capacity = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Reserves room to decode `body_bytes` of `format`, waiting up to [`ADMIT_WAIT`].
    pub async fn admit(
        &self,
        body_bytes: usize,
        format: impl Into<BodyFormat>,
    ) -> Result<Reservation, Busy> {
        let format = format.into();
        let cost = body_bytes
            .saturating_mul(expansion(format))
            .div_ceil(UNIT)
            .clamp(1, self.capacity);
        let permits = u32::try_from(cost).unwrap_or(u32::MAX);
        let acquire = self.permits.clone().acquire_many_owned(permits);
        match tokio::time::timeout(ADMIT_WAIT, acquire).await {
            Ok(Ok(permit)) => Ok(Reservation(permit)),
            // Timed out, or closed (never: the semaphore is not closed).
            _ => Err(Busy {
                budget_mib: (self.capacity * UNIT) >> 20,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn heavy_bodies_are_admitted_against_the_budget() {
        let budget = DecodeBudget::new(16 << 20);
        // 1 MiB of JSON costs 16 MiB: the whole budget.
        let first = budget.admit(1 << 20, DeltaFormat::Json).await.unwrap();
        let refused = budget
            .admit(1 << 10, DeltaFormat::Parquet)
            .await
            .unwrap_err();
        assert_eq!(refused.budget_mib, 16);
        drop(first);
        // Bigger than the whole budget: admitted alone.
        let alone = budget.admit(64 << 20, DeltaFormat::Json).await.unwrap();
        assert!(budget.admit(1, DeltaFormat::ArrowStream).await.is_err());
        drop(alone);
        // Small bodies share it.
        let a = budget
            .admit(1 << 20, DeltaFormat::ArrowStream)
            .await
            .unwrap();
        let b = budget
            .admit(1 << 20, DeltaFormat::ArrowStream)
            .await
            .unwrap();
        drop((a, b));
    }
}
