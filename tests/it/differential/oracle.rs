//! DuckDB in a Python process (`tests/python/duckdb_oracle.py`): SQL with bound parameters
//! in, Arrow IPC out. The only thing it shares with Strata is the Parquet files.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde_json::{Value, json};

/// DuckDB's refusal of a statement, as it worded it.
#[derive(Debug)]
pub struct OracleError(pub String);

impl std::fmt::Display for OracleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Oracle {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    pub fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/duckdb_oracle.py");
        let mut child = Command::new(crate::queryd_binary::client_python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the DuckDB oracle");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Runs `sql` with `params` bound; the result, or DuckDB's error.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<(SchemaRef, Vec<RecordBatch>), OracleError> {
        let line = json!({"sql": sql, "params": params}).to_string();
        writeln!(self.stdin, "{line}").expect("writing to the oracle");
        self.stdin.flush().unwrap();
        let mut header = String::new();
        self.stdout.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if let Some(error) = header.strip_prefix("ERR ") {
            return Err(OracleError(error.to_owned()));
        }
        let len: usize = header
            .strip_prefix("OK ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the oracle answered {header:?}"));
        let mut body = vec![0; len];
        self.stdout.read_exact(&mut body).unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
        let schema = reader.schema();
        Ok((schema, reader.map(|b| b.unwrap()).collect()))
    }

    /// Runs a statement that must succeed.
    pub fn execute(&mut self, sql: &str, params: &[Value]) {
        if let Err(e) = self.query(sql, params) {
            panic!("oracle: {e}\n{sql}");
        }
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
